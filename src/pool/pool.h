// bulkrcu/src/pool/pool.h: the page pool's umbrella header (layer pool; includes only base/ and
// percpu/).
//
// The public API is include/bulkrcu/page_pool.h. This header adds what the layers above need:
// the runtime thread's refill hooks, the kvfree layer's pressure response and fault injection,
// higher-order blocks, and introspection for tests and statistics.
//
// Structure (docs/POOL.md has the full story):
//
//   zone (zone.h)            buddy allocator, orders 0..9, over 2 MiB mmap chunks; zone lock
//     ^  batch pages            ^ batch pages (free above `high`, drain, pressure)
//     |  (alloc_page on empty,  |
//     |   refill worker)        |
//   per-CPU lists            one singly linked LIFO of free order-0 pages per possible CPU,
//                            owner side in rseq sequences (or the slot's try-lock); the slot
//                            holds a head word, (first page | count), so the count needs no
//                            read of a page
//
// Per-CPU list invariants (whenever no owner sequence is in flight and the slot is unlocked):
//   head word == 0 (empty) or (first page | count), count in the low 12 bits (kCountMask);
//   a page's first word (link word) == the head word of the pages below it;
//   0 <= count <= high after an owner push (a free that finds `high` pages trims `batch`
//   first); a remote refill fills up to `target` (<= high); every page has state kOnList.
// Ownership: a page on a list belongs to the list; owner: any thread running on that CPU
// (rseq) or holding the slot's lock (kLock mode); remote (refill worker, drain, cpu_pages):
// only under the slot's lock followed by fence_remote(cpu) (percpu.h's protocol).
#pragma once

#include <cstddef>
#include <cstdint>

#include "bulkrcu/page_pool.h"
#include "percpu/percpu.h"
#include "pool/zone.h"

namespace bulkrcu::detail::pool {

// Sizing of the per-CPU lists. Production values are chosen for the kvfree layer, which takes
// about one page per 500 retired pointers (docs/POOL.md, "Sizing"); test builds shrink them so
// that every refill, trim and drain path runs within a few operations.
struct Params {
  std::size_t batch;                  // pages moved between a list and the zone at a time
  std::size_t high;                   // a free that leaves more than `high` pages trims `batch` of them
  std::size_t low;                    // a lockless allocation that leaves fewer than `low` asks for a refill
  std::size_t target;                 // the refill worker fills a list up to `target` pages
  unsigned floor_chunks;              // chunks the zone keeps mapped at least
  unsigned spare_chunks;              // wholly free chunks kept mapped above the floor
  std::uint64_t pressure_backoff_ns;  // refills stop this long after on_memory_pressure()
};
const Params& params() noexcept;

// True when debug checks run (BULKRCU_POOL_DEBUG on; its default is on in BULKRCU_TESTING builds).
bool debug() noexcept;
// True when the public calls take the release fast path (rseq mode, no debug checks, no fault
// injection); else every call takes the checked path. For tests.
bool fast_path_open() noexcept;

// ---- runtime hooks (called by the runtime thread only) ----------------------------------------
// A racy peek: true when some CPU asked for a refill since the last refill_step(), or a parked
// request is due. Blocks: no. Allocates: no. Async-signal-safe: yes.
bool refill_wanted() noexcept;
// Nanoseconds until a parked refill request is due (1 if it is due now), 0 when none is
// parked: the runtime thread sleeps no longer. Blocks: no. Async-signal-safe: yes.
std::uint64_t next_timeout_ns() noexcept;
// Refills every CPU list that asked, up to `target`. A request that cannot be served now is
// parked, its flag kept: while refills are backed off (until the back-off ends), or when the
// zone is empty while growth is held off (until the hold-off ends). A refill that fails to map
// memory is dropped (the next miss asks again). Regular context: takes the zone lock, may mmap
// a chunk, locks each slot and runs fence_remote(cpu).
void refill_step() noexcept;

// ---- kvfree layer and tests ---------------------------------------------------------------------
// Fault injection: 0 off; 1 bulkrcu_alloc_page_lockless() returns NULL (counted as a miss, no
// refill asked); 2 every allocation returns NULL with errno ENOMEM. Blocks: no.
void set_fail_injection(int mode) noexcept;
// Memory pressure: no refill for `ns` nanoseconds from now (0 ends a back-off). Requests made
// meanwhile are parked until the back-off ends (no doorbell). Blocks: no. Async-signal-safe: yes.
void back_off_refill(std::uint64_t ns) noexcept;
// Memory pressure: back off refills for params().pressure_backoff_ns, drain every CPU list to
// the zone, run the release hook, unmap wholly free chunks above the floor and give large free
// runs back (Zone::shrink). Blocks: yes (zone lock, remote fences).
void on_memory_pressure() noexcept;
// What the pool's chunks hold resident now (mincore over every chunk; takes the zone lock),
// and what it maps (chunks * 2 MiB). For tests and tools.
std::uint64_t resident_bytes() noexcept;
std::uint64_t mapped_bytes() noexcept;

// True while refills are backed off after on_memory_pressure() (the kvfree layer's page-cache
// refills follow it too). Blocks: no. Async-signal-safe: yes.
bool refill_backed_off() noexcept;
// True while the zone may not map chunks for the refill worker (after a drain, a shrink or
// on_memory_pressure()): a refill then takes only what the zone holds, and one that finds the
// zone empty is parked until the hold-off ends. Blocks: no. Async-signal-safe: yes.
bool growth_held_off() noexcept;
// The layer above's pages, reached by bulkrcu_page_pool_shrink() and on_memory_pressure():
// `hook` gives its cached pages back (free_pages(p, 0), straight to the zone) and may move
// pages it must keep to the fullest chunk (alloc_pages(0), then free the old one). Set once,
// by the kvfree layer at load time; runs on the shrinking thread, no pool lock held.
void set_release_hook(void (*hook)() noexcept) noexcept;

// A block of 2^order pages straight from the zone (order <= max_order()); NULL with errno
// ENOMEM (or EINVAL for a bad order). Freed with free_pages(p, order), never bulkrcu_free_page.
// Blocks: zone lock, may mmap. Not async-signal-safe.
// With may_grow false, only from the zone's free blocks (never maps a chunk).
void* alloc_pages(unsigned order, bool may_grow = true) noexcept;
void free_pages(void* block, unsigned order) noexcept;

// ---- introspection ------------------------------------------------------------------------------
// The exact number of pages on `cpu`'s list (locks the slot and fences that CPU: blocks).
std::size_t cpu_pages(int cpu) noexcept;
// Runs Zone::check() on the pool's zone: nullptr when its invariants hold.
const char* check_zone() noexcept;

struct Stats {
  std::uint64_t allocs;            // pages handed out by both allocation calls
  std::uint64_t frees;             // bulkrcu_free_page calls with a page
  std::uint64_t lockless_hits;     // bulkrcu_alloc_page_lockless returning a page
  std::uint64_t lockless_misses;   // ... returning NULL
  std::uint64_t refill_requests;   // lockless paths that asked the worker
  std::uint64_t refills;           // batches moved zone -> a list (alloc_page on empty + worker)
  std::uint64_t worker_refills;    // ... of which by the refill worker
  std::uint64_t drains;            // batches moved a list -> zone (trim above high, drain)
  std::uint64_t chunks_mapped;     // cumulative
  std::uint64_t chunks_unmapped;   // cumulative
  std::uint64_t chunks;            // mapped now
  std::uint64_t pages_percpu;      // pages on all CPU lists (gauge, from per-list hints)
  std::uint64_t pages_percpu_max;  // pages on the fullest CPU list (gauge, hint)
  std::uint64_t pages_zone;        // free pages in the zone (gauge)
};
// Relaxed reads, no lock. The per-CPU counters are bumped with a single non-atomic `inc` on the
// slot of the CPU the operation probably ran on; an increment can be lost only when a thread
// migrates between reading its CPU number and the `inc` while another CPU bumps the same
// counter at the same instant (TSan builds use atomic adds instead).
Stats stats() noexcept;

}  // namespace bulkrcu::detail::pool
