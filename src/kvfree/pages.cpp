// bulkrcu/src/kvfree/pages.cpp: page sources and sinks for blocks (protocol in pages.h).
#include "kvfree/pages.h"

#include "base/trace.h"
#include "bulkrcu/page_pool.h"
#include "kvfree/budget.h"
#include "kvfree/kvfree.h"
#include "kvfree/stats.h"
#include "pool/pool.h"

namespace bulkrcu::detail::kvfree {

namespace {

#ifdef BULKRCU_TESTING
constexpr std::size_t kCacheMax = 1;  // page cache per CPU
constexpr int kReserve = 2;           // emergency pages for retires inside readers
#else
constexpr std::size_t kCacheMax = 5;  // the kernel keeps 5
constexpr int kReserve = 8;
#endif

constexpr std::size_t kCacheOff = offsetof(Krc, cache);
constexpr std::size_t kNextOff = offsetof(Block, next);

std::atomic<Block*> g_reserve[kReserve];
// Pages a non-blocking caller could not put in a cache: the monitor returns them to the pool.
std::atomic<Block*> g_spare{nullptr};

// Pushes an empty page onto this CPU's cache; false when the slot is locked.
bool push_cache(Block* b) noexcept {
#if BULKRCU_HAVE_RSEQ_ASM
  if (mode() == PercpuMode::kRseq)
    return bulkrcu::detail::subtle::rseq_push<kCacheOff, kNextOff>(krcs(), sizeof(Krc), b);
#endif
  return with_locked_slot([&](Krc& k, int) {
    b->next = k.cache;
    k.cache = b;
  });
}

Block* pop_cache() noexcept {
  Block* b = nullptr;
#if BULKRCU_HAVE_RSEQ_ASM
  if (mode() == PercpuMode::kRseq) {
    void* p = bulkrcu::detail::subtle::rseq_pop<kCacheOff, kNextOff>(krcs(), sizeof(Krc));
    return p == bulkrcu::detail::subtle::kSlotLocked ? nullptr : static_cast<Block*>(p);
  }
#endif
  with_locked_slot([&](Krc& k, int) {
    b = k.cache;
    if (b) k.cache = b->next;
  });
  return b;
}

Block* take_reserve() noexcept {
  for (auto& r : g_reserve)
    if (Block* b = r.exchange(nullptr, std::memory_order_acquire)) return b;
  return nullptr;
}

// The pool's release hook (bulkrcu_page_pool_shrink, memory pressure): every CPU's cached pages
// and the spare list straight back to the zone, and each emergency-reserve page moved to the
// zone's fullest chunk (a new page first, swapped in, then the old one freed: the reserve
// never looks empty to a retire inside a reader; when no page comes, the old one stays), so
// that neither pins an otherwise free chunk.
void release_pages() noexcept {
  Krc* base = g_krcs.load(std::memory_order_acquire);
  Block* pages = g_spare.exchange(nullptr, std::memory_order_acquire);
  const int n = base ? nr_slots() : 0;
  constexpr int kGroup = 256;  // slots locked at once, so one broadcast fence covers them
  for (int group = 0; group < n; group += kGroup) {
    const int end = group + kGroup < n ? group + kGroup : n;
    for (int i = group; i < end; ++i) base[i].lock.lock();
    bulkrcu::detail::subtle::fence_remote_all();
    for (int i = group; i < end; ++i) {
      Krc& k = base[i];
      while (Block* b = k.cache) {
        tsan_acquire(b);  // pushed by an owner's rseq_push
        k.cache = b->next;
        push(&pages, b);
      }
      k.lock.unlock();
    }
  }
  while (Block* b = pages) {
    pages = b->next;
    pool::free_pages(b, 0);
  }
  for (auto& r : g_reserve) {
    if (!r.load(std::memory_order_relaxed)) continue;
    void* fresh = pool::alloc_pages(0, /*may_grow=*/false);
    if (!fresh) break;
    if (Block* old = r.exchange(static_cast<Block*>(fresh), std::memory_order_acq_rel))
      pool::free_pages(old, 0);
  }
}
__attribute__((constructor(103))) void register_release_hook() { pool::set_release_hook(release_pages); }

}  // namespace

void* get_page(unsigned flags, bool in_reader, bool* from_reserve) noexcept {
  if (Block* b = pop_cache()) {
    g_counters.cache_hits.fetch_add(1, std::memory_order_relaxed);
    return b;
  }
  g_counters.cache_misses.fetch_add(1, std::memory_order_relaxed);
  if (void* p = bulkrcu_alloc_page_lockless()) {
    g_counters.lockless.fetch_add(1, std::memory_order_relaxed);
    return p;
  }
  // The pool nudged its refill worker; a caller allowed a system call wakes it now.
  if (!(flags & kNoSyscall)) doorbell_ring_if_idle();
  if (flags & kNoWait) return nullptr;
  if (void* p = bulkrcu_alloc_page()) {
    g_counters.fb_inplace.fetch_add(1, std::memory_order_relaxed);
    BULKRCU_TRACE(fallback_inplace, p);
    return p;
  }
  if (in_reader) {
    if (void* p = take_reserve()) {
      if (from_reserve) *from_reserve = true;
      g_counters.fb_reserve.fetch_add(1, std::memory_order_relaxed);
      BULKRCU_TRACE(fallback_reserve, p);
      return p;
    }
  }
  return nullptr;
}

void recycle_page(Block* b) noexcept {
  if (b->est_bytes) credit(b);
  if (!push_cache(b)) bulkrcu_free_page(b);
}

void recycle_page_nowait(Block* b) noexcept {
  if (b->est_bytes) credit(b);
  if (push_cache(b)) return;
  Block* head = g_spare.load(std::memory_order_relaxed);
  do {
    b->next = head;
  } while (!g_spare.compare_exchange_weak(head, b, std::memory_order_release, std::memory_order_relaxed));
}

void recycle_page(Block* b, unsigned flags) noexcept {
  if (flags & kMayBlock)
    recycle_page(b);
  else
    recycle_page_nowait(b);
}

bool return_reserve(Block* b) noexcept {
  for (auto& r : g_reserve) {
    Block* expected = nullptr;
    if (r.compare_exchange_strong(expected, b, std::memory_order_release, std::memory_order_relaxed))
      return true;
  }
  return false;
}

void tend_cache(Krc& k, Block** spare, bool refill) noexcept {
  std::size_t n = 0;
  Block** link = &k.cache;
  while (*link && n < kCacheMax) {
    tsan_acquire(*link);  // pushed by an owner's rseq_push (released there)
    tsan_release(*link);  // our read of its link happens-before its next owner's writes
    link = &(*link)->next;
    ++n;
  }
  Block* extra = *link;
  *link = nullptr;
  if (link != &k.cache)  // we wrote the last kept page's link: its next owner acquires it
    tsan_release(reinterpret_cast<char*>(link) - offsetof(Block, next));
  while (extra) {
    tsan_acquire(extra);  // pushed by an owner's rseq_push (released there), as above
    Block* next = extra->next;
    push(spare, extra);
    extra = next;
  }
  while (refill && n < kCacheMax) {
    void* p = bulkrcu_alloc_page_lockless();
    if (!p) break;
    Block* b = static_cast<Block*>(p);
    b->next = k.cache;
    tsan_release(b);  // the owner's rseq_pop of the cache acquires it
    k.cache = b;
    ++n;
  }
}

void refill_reserve() noexcept {
  for (auto& r : g_reserve) {
    if (r.load(std::memory_order_relaxed)) continue;
    void* p = bulkrcu_alloc_page();
    if (!p) return;
    Block* expected = nullptr;
    if (!r.compare_exchange_strong(expected, static_cast<Block*>(p), std::memory_order_release))
      bulkrcu_free_page(p);
  }
}

void free_spare_pages(Block* pages, bool take_spare) noexcept {
  for (Block* b = take_spare ? g_spare.exchange(nullptr, std::memory_order_acquire) : nullptr; b;) {
    Block* next = b->next;
    push(&pages, b);
    b = next;
  }
  while (Block* b = pages) {
    pages = b->next;
    bulkrcu_free_page(b);
  }
}

int reserve_pages() noexcept {
  int n = 0;
  for (auto& r : g_reserve) n += r.load(std::memory_order_relaxed) != nullptr;
  return n;
}

}  // namespace bulkrcu::detail::kvfree
