// bulkrcu-bench: the implementations compared, one struct each.
//
// Every implementation is a struct with the same static interface (the Impl concept below);
// the workloads are templates over it, so the retire call is inlined exactly as a user's
// program would inline it, and no virtual call is added to a path that costs a few
// nanoseconds. impls.cpp lists them in one table; adding an implementation is one struct
// here and one line there.
//
// Objects: a workload's payload P (a class, first in the object), plus 16 bytes: the
// embedded head where the implementation needs one (struct bulkrcu_head, liburcu's struct
// rcu_head), or the same room left unused by the headless forms, so that every
// implementation allocates and frees objects of one size. With an 8-byte payload that is the
// 24-byte object of the kernel's rcuscale kfree test. rcu_obj_base adds its own 24 bytes
// (head + owner pointer) instead, and says so in the size column.
//
// Pending objects: the implementations whose reclaim calls a function of ours count each
// object freed there (count_freed(), a per-thread counter, no atomic read-modify-write);
// pending = retired - freed. Those that free with free() directly report what the library's
// statistics give, or nothing.
#pragma once

#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

#include "bulkrcu/cache.h"
#include "bulkrcu/rcu.h"
#include "bulkrcu/rcu.hpp"
#include "bulkrcu/stats.h"

// liburcu, memb flavour, with its inline read-side fast path (_LGPL_SOURCE), the way an
// application that cares about read cost uses it.
#define _LGPL_SOURCE 1
#include <urcu/urcu-memb.h>
#undef _LGPL_SOURCE

namespace bench {

// ---- freed-object counters: one slot per thread, summed by the sampler ----
struct alignas(64) FreedSlot {
  std::atomic<std::uint64_t> n{0};
};
inline constexpr int kMaxThreads = 4096;  // scale runs 1024 retiring threads
inline FreedSlot g_freed[kMaxThreads];
inline std::atomic<int> g_freed_next{0};
inline thread_local FreedSlot* t_freed = nullptr;

[[gnu::noinline]] FreedSlot* claim_freed_slot();
inline void count_freed() {
  FreedSlot* s = t_freed;
  if (__builtin_expect(s == nullptr, 0)) s = claim_freed_slot();
  // Only this thread writes the slot: a relaxed load and store, no read-modify-write.
  s->n.store(s->n.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}
std::uint64_t total_freed();

inline std::uint64_t bulkrcu_grace_periods() {
  bulkrcu_stats s;
  bulkrcu_get_stats(&s, sizeof s);
  return s.grace_periods;
}

// ---- the interface ----
struct Small {  // the kfree-scale / flood payload: 8 bytes
  std::uint64_t payload;
};

template <class I>
concept Impl = requires(Small* p) {
  { I::kName } -> std::convertible_to<const char*>;
  { I::kWhat } -> std::convertible_to<const char*>;
  { I::kDefers } -> std::convertible_to<bool>;            // false: retire frees at once (the floor)
  { I::kBulkrcu } -> std::convertible_to<bool>;           // grace periods counted by bulkrcu_get_stats
  { I::kCountsFreed } -> std::convertible_to<bool>;       // pending = retired - total_freed()
  { I::kHasSync } -> std::convertible_to<bool>;           // synchronize() rows in `latency`
  { I::kSyncLabel } -> std::convertible_to<const char*>;  // what synchronize() calls
  { I::template size<Small>() } -> std::convertible_to<std::size_t>;
  { I::template make<Small>() } -> std::same_as<Small*>;
  I::template retire<Small>(p);
  I::thread_online();  // every thread that reads or retires calls these first and last
  I::thread_offline();
  I::barrier();  // waits until everything retired so far is freed
  I::read_lock();
  I::read_unlock();
  I::synchronize();
};

// Plain free(): no grace period at all. The floor: the cost of a malloc + free pair.
struct FreeImpl {
  static constexpr const char* kName = "free";
  static constexpr const char* kWhat = "malloc + free() at once, no grace period (the floor)";
  static constexpr bool kDefers = false, kBulkrcu = false, kCountsFreed = false, kHasSync = false;
  static constexpr const char* kSyncLabel = "";
  template <class P>
  struct Box {
    P p;
    unsigned char room[16];
  };
  template <class P>
  static std::size_t size() {
    return sizeof(Box<P>);
  }
  template <class P>
  static P* make() {
    return &static_cast<Box<P>*>(std::malloc(sizeof(Box<P>)))->p;
  }
  template <class P>
  static void retire(P* p) {
    std::free(p);
  }
  static void thread_online() {}
  static void thread_offline() {}
  static void barrier() {}
  static void read_lock() {}
  static void read_unlock() {}
  static void synchronize() {}
};

// An object with a callback head (bulkrcu_head or liburcu's rcu_head) after the payload; the
// callback counts and frees the whole object. Shared by the two call_rcu-shaped rows.
template <class Head>
struct EmbeddedHeadObject {
  template <class P>
  struct Box {
    P p;
    Head head;
  };
  template <class P>
  static std::size_t size() {
    return sizeof(Box<P>);
  }
  template <class P>
  static P* make() {
    return &static_cast<Box<P>*>(std::malloc(sizeof(Box<P>)))->p;
  }
  template <class P>
  static void cb(Head* h) {
    count_freed();
    std::free(reinterpret_cast<char*>(h) - offsetof(Box<P>, head));
  }
};

// bulkrcu_call with struct bulkrcu_head embedded after the payload.
struct BulkrcuCallImpl : EmbeddedHeadObject<bulkrcu_head> {
  static constexpr const char* kName = "call";
  static constexpr const char* kWhat = "bulkrcu_call(&obj->head, cb), cb frees (embedded bulkrcu_head)";
  static constexpr bool kDefers = true, kBulkrcu = true, kCountsFreed = true, kHasSync = true;
  static constexpr const char* kSyncLabel = "bulkrcu_synchronize";
  template <class P>
  static void retire(P* p) {
    bulkrcu_call(&reinterpret_cast<Box<P>*>(p)->head, &cb<P>);
  }
  static void thread_online() {}
  static void thread_offline() {}
  static void barrier() { bulkrcu_barrier(); }
  static void read_lock() { bulkrcu_read_lock(); }
  static void read_unlock() { bulkrcu_read_unlock(); }
  static void synchronize() { bulkrcu_synchronize(); }
};

// bulkrcu_call_bounded: bulkrcu_call with back-pressure, the entry point for a producer that
// would rather wait than let the backlog grow (flood workload only: elsewhere it is `call`).
struct BulkrcuCallBoundedImpl : BulkrcuCallImpl {
  static constexpr const char* kName = "call_bounded";
  static constexpr const char* kWhat =
      "bulkrcu_call_bounded(&obj->head, cb, 65536): bulkrcu_call that waits while over 64 Ki callbacks are "
      "pending";
  static constexpr bool kFloodOnly = true;
  static constexpr std::size_t kMaxPending = 65536;
  template <class P>
  static void retire(P* p) {
    bulkrcu_call_bounded(&reinterpret_cast<Box<P>*>(p)->head, &cb<P>, kMaxPending);
  }
};

// Rows that only the flood runs (kFloodOnly): the other workloads measure what they would
// measure for another row already.
template <class I>
constexpr bool flood_only() {
  if constexpr (requires { I::kFloodOnly; })
    return I::kFloodOnly;
  else
    return false;
}

// A deleter that counts, for the C++ forms (an empty class: it costs no storage).
template <class T>
struct CountingDelete {
  void operator()(T* p) const {
    count_freed();
    delete p;
  }
};

// C++ bulkrcu::rcu_retire(p, d) on an object that does not derive from rcu_obj_base.
struct RcuRetireImpl {
  static constexpr const char* kName = "rcu_retire";
  static constexpr const char* kWhat = "C++ bulkrcu::rcu_retire(p, deleter) (headless object, new/delete)";
  static constexpr bool kDefers = true, kBulkrcu = true, kCountsFreed = true, kHasSync = false;
  static constexpr const char* kSyncLabel = "bulkrcu::rcu_synchronize";
  template <class P>
  struct Box {
    P p;
    unsigned char room[16];
  };
  template <class P>
  static std::size_t size() {
    return sizeof(Box<P>);
  }
  template <class P>
  static P* make() {
    return &(new Box<P>)->p;
  }
  template <class P>
  static void retire(P* p) {
    bulkrcu::rcu_retire(reinterpret_cast<Box<P>*>(p), CountingDelete<Box<P>>{});
  }
  static void thread_online() {}
  static void thread_offline() {}
  static void barrier() { bulkrcu::rcu_barrier(); }
  static void read_lock() { bulkrcu::rcu_default_domain().lock(); }
  static void read_unlock() { bulkrcu::rcu_default_domain().unlock(); }
  static void synchronize() { bulkrcu::rcu_synchronize(); }
};

// C++ bulkrcu::rcu_retire(p) with the default deleter of a trivially destructible type: no
// user code runs, so it takes the allocator channel (::operator delete on retiring threads, as
// bulkrcu_kvfree's free()). Nothing of ours counts the frees: pending comes from the statistics.
struct RcuRetireDefaultImpl : RcuRetireImpl {
  static constexpr const char* kName = "rcu_retire_default";
  static constexpr const char* kWhat =
      "C++ bulkrcu::rcu_retire(p) with std::default_delete (trivially destructible: ::operator delete, "
      "no user code)";
  static constexpr bool kCountsFreed = false, kStatsPending = true;
  template <class P>
  static void retire(P* p) {
    bulkrcu::rcu_retire(reinterpret_cast<Box<P>*>(p));
  }
};

// C++ rcu_obj_base<T, D>::retire(): the payload is the first base class, so a P* converts
// to the object with a static_cast.
struct ObjRetireImpl {
  static constexpr const char* kName = "obj_retire";
  static constexpr const char* kWhat = "C++ rcu_obj_base<T, D>::retire() (in-object head, new/delete)";
  static constexpr bool kDefers = true, kBulkrcu = true, kCountsFreed = true, kHasSync = false;
  static constexpr const char* kSyncLabel = "bulkrcu::rcu_synchronize";
  template <class P>
  struct Box : P, bulkrcu::rcu_obj_base<Box<P>, CountingDelete<Box<P>>> {};
  template <class P>
  static std::size_t size() {
    return sizeof(Box<P>);
  }
  template <class P>
  static P* make() {
    return new Box<P>;
  }
  template <class P>
  static void retire(P* p) {
    static_cast<Box<P>*>(p)->retire();
  }
  static void thread_online() {}
  static void thread_offline() {}
  static void barrier() { bulkrcu::rcu_barrier(); }
  static void read_lock() { bulkrcu::rcu_default_domain().lock(); }
  static void read_unlock() { bulkrcu::rcu_default_domain().unlock(); }
  static void synchronize() { bulkrcu::rcu_synchronize(); }
};

// liburcu (memb) call_rcu with struct rcu_head embedded after the payload. Every thread
// registers as a reader (call_rcu itself enters a read-side section on some paths).
struct UrcuCallImpl : EmbeddedHeadObject<rcu_head> {
  static constexpr const char* kName = "urcu_call_rcu";
  static constexpr const char* kWhat = "liburcu memb call_rcu(&obj->head, cb), cb frees (embedded rcu_head)";
  static constexpr bool kDefers = true, kBulkrcu = false, kCountsFreed = true, kHasSync = true;
  static constexpr const char* kSyncLabel = "liburcu synchronize_rcu";
  template <class P>
  static void retire(P* p) {
    urcu_memb_call_rcu(&reinterpret_cast<Box<P>*>(p)->head, &cb<P>);
  }
  static void thread_online() { urcu_memb_register_thread(); }
  static void thread_offline() { urcu_memb_unregister_thread(); }
  static void barrier() { urcu_memb_barrier(); }
  static void read_lock() { urcu_memb_read_lock(); }
  static void read_unlock() { urcu_memb_read_unlock(); }
  static void synchronize() { urcu_memb_synchronize_rcu(); }
};

// A headless object (no head inside): the payload with 16 bytes of room, so that it is the same
// size as the objects of the head-carrying rows; `fn` frees it and counts the free.
struct HeadlessObject {
  template <class P>
  struct Box {
    P p;
    unsigned char room[16];
  };
  template <class P>
  static std::size_t size() {
    return sizeof(Box<P>);
  }
  template <class P>
  static P* make() {
    return &static_cast<Box<P>*>(std::malloc(sizeof(Box<P>)))->p;
  }
  static void fn(void* p) {
    count_freed();
    std::free(p);
  }
};

// liburcu (memb) defer_rcu(fn, p): headless; needs the reader and the defer registration.
struct UrcuDeferImpl : HeadlessObject {
  static constexpr const char* kName = "urcu_defer_rcu";
  static constexpr const char* kWhat = "liburcu memb defer_rcu(fn, p), fn frees (headless)";
  static constexpr bool kDefers = true, kBulkrcu = false, kCountsFreed = true, kHasSync = false;
  static constexpr const char* kSyncLabel = "liburcu synchronize_rcu";
  template <class P>
  static void retire(P* p) {
    urcu_memb_defer_rcu(&fn, p);
  }
  static void thread_online() {
    urcu_memb_register_thread();
    if (urcu_memb_defer_register_thread() != 0) std::abort();
  }
  static void thread_offline() {
    urcu_memb_defer_unregister_thread();
    urcu_memb_unregister_thread();
  }
  // defer_rcu's barrier flushes every registered thread's queue.
  static void barrier() { urcu_memb_defer_barrier(); }
  static void read_lock() { urcu_memb_read_lock(); }
  static void read_unlock() { urcu_memb_read_unlock(); }
  static void synchronize() { urcu_memb_synchronize_rcu(); }
};

#if BENCH_HAVE_KVFREE
// ---- the kvfree forms (issue 4): per-CPU blocks of pointers ----
// Pending objects from bulkrcu_get_stats (kv_pending_objects: closed blocks and fallbacks
// waiting for reclaim; the block each CPU is still filling is not counted).
inline std::uint64_t kvfree_pending_from_stats() {
  bulkrcu_stats s;
  bulkrcu_get_stats(&s, sizeof s);
  return s.kv_pending_objects;
}

struct KvfreeBase {
  static constexpr bool kDefers = true, kBulkrcu = true, kHasSync = false;
  static constexpr const char* kSyncLabel = "bulkrcu_synchronize";
  static void thread_online() {}
  static void thread_offline() {}
  static void barrier() { bulkrcu_kvfree_barrier(); }
  static void read_lock() { bulkrcu_read_lock(); }
  static void read_unlock() { bulkrcu_read_unlock(); }
  static void synchronize() { bulkrcu_synchronize(); }
};

// bulkrcu_kvfree(p): headless, the deleter is free().
struct KvfreeImpl : KvfreeBase, HeadlessObject {
  static constexpr const char* kName = "kvfree";
  static constexpr const char* kWhat = "bulkrcu_kvfree(p) (headless; blocks of pointers, deleter free)";
  static constexpr bool kCountsFreed = false, kStatsPending = true;
  template <class P>
  static void retire(P* p) {
    bulkrcu_kvfree(p);
  }
};

// bulkrcu_kfree_head(p, &p->head): the two-argument form, head embedded after the payload.
struct KfreeHeadImpl : KvfreeBase {
  static constexpr const char* kName = "kfree_head";
  static constexpr const char* kWhat =
      "bulkrcu_kfree_head(p, &p->head) (two-argument; blocks, head as fallback)";
  static constexpr bool kCountsFreed = false, kStatsPending = true;
  template <class P>
  struct Box {
    P p;
    bulkrcu_head head;
  };
  template <class P>
  static std::size_t size() {
    return sizeof(Box<P>);
  }
  template <class P>
  static P* make() {
    return &static_cast<Box<P>*>(std::malloc(sizeof(Box<P>)))->p;
  }
  template <class P>
  static void retire(P* p) {
    bulkrcu_kfree_head(p, &reinterpret_cast<Box<P>*>(p)->head);
  }
};

// bulkrcu_defer(fn, p): headless with our deleter (which counts the objects it frees).
struct DeferImpl : KvfreeBase, HeadlessObject {
  static constexpr const char* kName = "defer";
  static constexpr const char* kWhat = "bulkrcu_defer(fn, p), fn frees (headless; blocks, own channel)";
  static constexpr bool kCountsFreed = true;
  template <class P>
  static void retire(P* p) {
    bulkrcu_defer(&fn, p);
  }
};
#endif  // BENCH_HAVE_KVFREE

// ---- object caches (issue 13): objects from a bulkrcu_cache of the row's object size ----
template <unsigned kFlags>
struct CacheBase {
  static constexpr bool kBulkrcu = true, kCountsFreed = false, kHasSync = false;
  static constexpr const char* kSyncLabel = "bulkrcu_synchronize";
  template <class P>
  struct Box {
    P p;
    unsigned char room[16];
  };
  template <class P>
  static std::size_t size() {
    return sizeof(Box<P>);
  }
  // One cache per payload type (a workload uses one or two); barrier() covers them all.
  static inline std::atomic<bulkrcu_cache*> all[4];
  template <class P>
  static bulkrcu_cache* cache() {
    static bulkrcu_cache* c = [] {
      bulkrcu_cache* made = bulkrcu_cache_create("bench", sizeof(Box<P>), 0, kFlags);
      for (auto& slot : all) {
        bulkrcu_cache* expected = nullptr;
        if (slot.compare_exchange_strong(expected, made)) break;
      }
      return made;
    }();
    return c;
  }
  static void barrier_all() {
    for (auto& slot : all)
      if (bulkrcu_cache* c = slot.load()) bulkrcu_cache_barrier(c);
  }
  template <class P>
  static P* make() {
    return &static_cast<Box<P>*>(bulkrcu_cache_alloc(cache<P>()))->p;
  }
  static void thread_online() {}
  static void thread_offline() {}
  static void read_lock() { bulkrcu_read_lock(); }
  static void read_unlock() { bulkrcu_read_unlock(); }
  static void synchronize() { bulkrcu_synchronize(); }
};

// bulkrcu_cache_free_rcu: a retired array is reused whole after one grace period.
struct CacheImpl : CacheBase<0> {
  static constexpr const char* kName = "cache";
  static constexpr const char* kWhat =
      "bulkrcu_cache_alloc + bulkrcu_cache_free_rcu (per-CPU arrays, no free())";
  static constexpr bool kDefers = true;
  // Pending: cache_pending_objects (sealed arrays and overflowed objects waiting for their
  // grace period; each CPU's array still filling, at most 504 objects, is not counted).
  static constexpr bool kCacheStatsPending = true;
  template <class P>
  static void retire(P* p) {
    bulkrcu_cache_free_rcu(cache<P>(), p);
  }
  static void barrier() { barrier_all(); }
};

// A typesafe-by-rcu cache: bulkrcu_cache_free reuses at once (readers revalidate); no grace
// period per object, slabs go back to the pool after one.
struct CacheTypesafeImpl : CacheBase<BULKRCU_CACHE_TYPESAFE_BY_RCU> {
  static constexpr const char* kName = "cache_typesafe";
  static constexpr const char* kWhat =
      "typesafe-by-rcu cache: bulkrcu_cache_alloc + bulkrcu_cache_free at once";
  static constexpr bool kDefers = false;
  template <class P>
  static void retire(P* p) {
    bulkrcu_cache_free(cache<P>(), p);
  }
  static void barrier() {}
};

}  // namespace bench
