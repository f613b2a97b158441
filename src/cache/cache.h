// bulkrcu/src/cache/cache.h: RCU object caches, user-space sheaves (layer cache; includes
// base/, percpu/, pool/ and gp/).
//
// The public API is include/bulkrcu/cache.h; docs/CACHE.md has the design. This header adds
// what the layers above need: kvfree's reclaim routes a retired pointer that lies in a slab to
// its cache (owns() and free_retired()), the runtime's memory-pressure entry reaches every cache,
// and tests read a cache's state.
//
// Structure:
//
//   per-CPU slot  { lock, main, rcu }     main: array to allocate from and free into
//        |  full rcu array: cookie         rcu:  array collecting bulkrcu_cache_free_rcu
//        v  (bulkrcu_start_poll)
//   inbox        lock-free stack of sealed arrays (and one of empty arrays); any context pushes
//        v  (slow paths, under the cache's mutex)
//   depot        waiting (cookie not yet elapsed) -> ready (elapsed: allocate as is) ; empty
//        v  (imbalance, shrink)
//   slabs        partial / full / empty lists; an empty slab beyond kKeepEmptySlabs goes back to
//                the pool (typesafe caches: after a grace period, through the dying list)
//
// Array ("sheaf") invariants: 0 <= nr <= cap; objs[0..nr) are objects of the cache that no
// user holds; owner: the slot it is installed in (this CPU's sequences, or a remote under the
// slot lock + fence_remote), else whoever took it off a list or stack.
// Slab invariants (under the cache's mutex): inuse == nobj - |freelist| - (nobj - bump);
// list == kEmpty iff inuse == 0, kFull iff no free object, else kPartial (kDying: off the
// lists, waiting for its grace period before it goes back to the pool).
#pragma once

#include <cstddef>
#include <cstdint>

#include "bulkrcu/cache.h"

namespace bulkrcu::detail::cache {

// True when p lies in some cache's slab. Lock-free, async-signal-safe: two table loads.
bool owns(const void* p) noexcept;

// kvfree's reclaim of a pointer retired with bulkrcu_kvfree (free() channel) that owns()
// claimed: its grace period has elapsed, so it is freed to its cache at once (debug checks as
// bulkrcu_cache_free). Regular context: may take the cache's mutex and the zone lock.
void free_retired(void* p) noexcept;

// Bytes retired with bulkrcu_cache_free_rcu that wait for their grace period, over every cache
// (sealed arrays with their page, overflowed objects); kvfree's budget (BULKRCU_MAX_PENDING)
// adds them to its own count. Reads 0 once the newest sealed array's grace period has elapsed,
// even before any cache slow path has promoted them. Lock-free, async-signal-safe; an estimate
// (relaxed counters, exact once the caches are quiet).
std::uint64_t pending_bytes() noexcept;
// The objects of those bytes (statistics: cache_pending_objects); 0 when pending_bytes() is.
std::uint64_t pending_objects() noexcept;
// Cumulative: seals and overflows that found the caches over the budget (and asked for a grace
// period at once).
std::uint64_t budget_hits() noexcept;

// bulkrcu_memory_pressure(): every cache returns its free arrays and empty slabs (typesafe
// caches' slabs after a grace period, without waiting here); retired arrays still waiting get
// their grace period expedited (one non-blocking attempt on this thread outside a reader, and a
// request to the runtime thread), and those it covers go back too. Blocks: locks. Inside a
// reader: yes.
void on_memory_pressure() noexcept;

// ---- introspection (tests) ----------------------------------------------------------------
struct Info {
  std::size_t stride;               // bytes per object in a slab
  std::size_t slab_bytes;           // bytes per slab
  std::size_t objs_per_slab;        //
  std::size_t sheaf_cap;            // objects per array
  std::uint64_t slabs;              // slabs now (all lists, dying included)
  std::uint64_t objects_out;        // objects not on a slab's free list (arrays + users)
  std::uint64_t ready;              // arrays in the depot ready for allocation
  std::uint64_t waiting;            // arrays in the depot waiting for their grace period
  std::uint64_t empty_sheaves;      // empty arrays kept in the depot
  std::uint64_t overflowed;         // cumulative: free_rcu objects that found no array (fallback)
  std::uint64_t overflow_chains;    // overflow chains waiting for their grace period
  std::uint64_t sealed;             // cumulative: retired arrays that took a cookie
  std::uint64_t reused;             // cumulative: retired arrays that became ready as they were
  std::uint64_t slab_allocs;        // cumulative
  std::uint64_t slab_frees;         // cumulative
  std::uint64_t trimmed;            // cumulative: ready arrays the depot's bound sent back to the slabs
  std::uint64_t filled;             // cumulative: allocation arrays filled from the slabs
  std::uint64_t driven;             // cumulative: grace periods an allocation ran itself
  std::uint64_t throttled;          // cumulative: refills that waited for retired arrays' grace period
  std::uint64_t throttle_timeouts;  // ... and gave up after the bound (1 ms)
};
// Tests: the waiting bytes above which a refill waits briefly (default 2 MiB); returns the old.
std::size_t set_throttle_bytes(std::size_t bytes) noexcept;
// Drains the inbox into the depot first. Blocks: the cache's mutex.
Info info(bulkrcu_cache* c) noexcept;

}  // namespace bulkrcu::detail::cache
