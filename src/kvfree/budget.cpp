// bulkrcu/src/kvfree/budget.cpp: charge, credit, the throttle and memory pressure (protocol
// in budget.h).
#include "kvfree/budget.h"

#include <malloc.h>

#include "base/trace.h"
#include "cache/cache.h"
#include "gp/gp.h"
#include "kvfree/kvfree.h"
#include "kvfree/monitor.h"
#include "kvfree/stats.h"
#include "pool/pool.h"

namespace bulkrcu::detail::kvfree {

namespace {
std::atomic<std::uint64_t> g_refill_backoff_until{0};
std::atomic<bool> g_mag_pressure{false};     // bulkrcu_memory_pressure: the next pass takes magazines
std::atomic<std::uint64_t> g_sample_seq{0};  // varies the sample positions from block to block

// An object cache's object is not malloc's: never ask malloc about it (its slab is the
// cache's memory; the object holds at least a pointer).
std::uint64_t object_bytes(void* p) noexcept {
  return cache::owns(p) ? sizeof(void*) : malloc_usable_size(p);
}
}  // namespace

// The bytes of a closing free() block's n objects. A small block is sized pointer by pointer.
// A large one by a stratified sample: kSizeSamples strata of equal length, one pointer at a
// pseudo-random position in each, weighted by its stratum's length. The estimate is unbiased
// whatever the mix of sizes (every pointer is drawn with probability 1/length of its
// stratum and then counts length times), so a large object among small ones is counted in
// expectation, and the sum over the blocks of a flood converges on the true bytes; the
// positions change from block to block, so a periodic pattern of sizes cannot keep its large
// objects out of every sample (the first-pointer estimate this replaced could: a flood of
// 16-byte objects with every 16th one 64 KiB grew RSS 124 MiB over a 32 MiB budget).
// Why not every pointer: malloc_usable_size over every pointer of a block was about 16% of
// kvfree's CPU per object on kfree-scale (docs/PERFORMANCE.md); 32 of ~500 is about 1%.
std::uint64_t sized_bytes(const Block* b, std::uint64_t n) noexcept {
  std::uint64_t bytes = 0;
  if (n < kSizeAllBelow) {
    for (std::uint64_t i = 0; i < n; ++i) bytes += object_bytes(b->ptrs[i]);
    return bytes;
  }
  // splitmix64 of the block's address and a sequence number: a new start for each block.
  std::uint64_t r = reinterpret_cast<std::uintptr_t>(b) ^
                    (g_sample_seq.fetch_add(1, std::memory_order_relaxed) * 0x9E3779B97F4A7C15ull);
  r = (r ^ (r >> 30)) * 0xBF58476D1CE4E5B9ull;
  r = (r ^ (r >> 27)) * 0x94D049BB133111EBull;
  r ^= r >> 31;
  for (std::uint64_t j = 0; j < kSizeSamples; ++j) {
    const std::uint64_t lo = j * n / kSizeSamples, len = (j + 1) * n / kSizeSamples - lo;
    r = r * 6364136223846793005ull + 1442695040888963407ull;  // an LCG step per stratum
    bytes += object_bytes(b->ptrs[lo + (r >> 33) % len]) * len;
  }
  return bytes;
}

void charge_page(Block* b) noexcept {
  b->est_bytes = g_page;
  g_counters.pending_bytes.fetch_add(g_page, std::memory_order_relaxed);
  g_counters.blocks.fetch_add(1, std::memory_order_relaxed);
}

void charge_objects(Block* b, bool may_size) noexcept {
  // Two closers may both seal a block (S1 checks only the front): the first to set kCharged
  // charges. Every cookie of the block is taken after that (retire.cpp).
  const std::uint32_t size = __atomic_fetch_or(&b->obj_size, kCharged, __ATOMIC_ACQ_REL);
  if (size & kCharged) return;
  const std::uint64_t n = b->nr;
  std::uint64_t bytes = 0;
  if (b->fn == nullptr && may_size) {
    bytes = sized_bytes(b, n);
  } else if (size != 0 && size != kUnsized) {
    bytes = n * size;
  } else {
    __atomic_store_n(&b->obj_size, kCharged | kUnsized, __ATOMIC_RELAXED);
    g_counters.pending_objs.fetch_add(n, std::memory_order_relaxed);
    bytes = n * sizeof(void*);  // the object holds at least a pointer
  }
  __atomic_fetch_add(&b->est_bytes, bytes, __ATOMIC_RELAXED);
  g_counters.pending_bytes.fetch_add(bytes, std::memory_order_relaxed);
}

void credit(Block* b) noexcept {
  g_counters.pending_bytes.fetch_sub(__atomic_load_n(&b->est_bytes, __ATOMIC_RELAXED),
                                     std::memory_order_relaxed);
  g_counters.blocks.fetch_sub(1, std::memory_order_relaxed);
  if (__atomic_load_n(&b->obj_size, __ATOMIC_RELAXED) == (kCharged | kUnsized))
    g_counters.pending_objs.fetch_sub(b->nr, std::memory_order_relaxed);
  b->est_bytes = 0;
  b->obj_size = 0;
}

bool over_budget() noexcept {
  // The object caches' retired arrays waiting for their grace period count too (issue 13).
  return g_counters.pending_bytes.load(std::memory_order_relaxed) + cache::pending_bytes() >
             config().max_pending_bytes ||
         g_counters.pending_objs.load(std::memory_order_relaxed) > config().max_pending_objects;
}

void throttle() noexcept {
  g_counters.throttles.fetch_add(1, std::memory_order_relaxed);
  BULKRCU_TRACE(budget_hit, 1);
  gp::request(gp::get_state());
  for (int round = 0; round < 200 && over_budget(); ++round) {
    help(kMayBlock | kHelp);
    if (!over_budget()) break;
    kick_and_wait_for_pass(1000000);
  }
}

bool take_magazine_pressure() noexcept {
  return g_mag_pressure.load(std::memory_order_relaxed) &&
         g_mag_pressure.exchange(false, std::memory_order_relaxed);
}

bool refill_allowed(std::uint64_t now) noexcept {
  return now >= g_refill_backoff_until.load(std::memory_order_relaxed) && !pool::refill_backed_off();
}

void memory_pressure() noexcept {
  g_mag_pressure.store(true, std::memory_order_relaxed);  // the next pass takes every magazine
  g_refill_backoff_until.store(now_ns() + 1000000000ull, std::memory_order_relaxed);
  pool::on_memory_pressure();  // drains the pool's lists, runs release_pages, shrinks the zone
  kick_monitor();
}

}  // namespace bulkrcu::detail::kvfree
