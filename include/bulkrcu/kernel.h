/* bulkrcu/kernel.h: the Linux kernel's RCU spellings over <bulkrcu/rcu.h> (C11 and C++).
 *
 * Code written against the kernel's API compiles with these inline functions (and the few
 * macros that must be macros: rcu_head, kvfree_rcu, kfree_rcu, rcu_dereference,
 * rcu_assign_pointer); each maps one to one to a bulkrcu_ function and keeps its contract (see rcu.h for
 * blocking, allocation, async-signal-safety and use inside a reader).
 *
 * Memory ordering: rcu_assign_pointer(p, v) is a release store of v into p: everything written
 * to *v before it is visible to a reader that loads v with rcu_dereference(p), an acquire load
 * (the kernel uses a dependency-ordered load; compilers implement consume as acquire, and on
 * x86-64 both are plain loads). The grace-period orderings are those of rcu.h.
 */
#ifndef BULKRCU_KERNEL_H
#define BULKRCU_KERNEL_H

#include "bulkrcu/rcu.h"

/* struct rcu_head is bulkrcu's callback head (a macro: C has no other way to alias a tag). */
#define rcu_head bulkrcu_head

/* The kernel's functions are inline functions, not macros: their addresses can be taken, and
 * no C++ name is replaced. In C++ with `using namespace bulkrcu;`, an unqualified
 * rcu_barrier() names both ::rcu_barrier (callbacks only, as in the kernel) and
 * bulkrcu::rcu_barrier (every deleter): the call is ambiguous, a compile error. Each one keeps
 * the contract of the bulkrcu_ function it calls (rcu.h). */
static inline void rcu_read_lock(void) { bulkrcu__read_lock_inline(); }
static inline void rcu_read_unlock(void) { bulkrcu__read_unlock_inline(); }
static inline int rcu_read_lock_held(void) { return bulkrcu__read_lock_held_inline(); }
static inline void synchronize_rcu(void) { bulkrcu_synchronize(); }
static inline void synchronize_rcu_expedited(void) { bulkrcu_synchronize_expedited(); }
static inline unsigned long get_state_synchronize_rcu(void) { return (bulkrcu_get_state)(); }
static inline unsigned long start_poll_synchronize_rcu(void) { return (bulkrcu_start_poll)(); }
static inline bool poll_state_synchronize_rcu(unsigned long cookie) { return bulkrcu_poll_state(cookie); }
static inline void cond_synchronize_rcu(unsigned long cookie) { bulkrcu_cond_synchronize(cookie); }
static inline void call_rcu(struct bulkrcu_head* head, void (*func)(struct bulkrcu_head*)) {
  (bulkrcu_call)(head, func);
}
/* Waits for the callbacks queued with call_rcu (bulkrcu_barrier); kvfree_rcu_barrier waits
 * for kvfree_rcu's objects too. */
static inline void rcu_barrier(void) { (bulkrcu_barrier)(); }

/* kvfree_rcu(ptr) frees a malloc'ed object after a grace period (bulkrcu_kvfree);
 * kvfree_rcu(ptr, rhf) names the struct rcu_head field of *ptr used when no block page is
 * available without waiting (bulkrcu_kfree_head: never blocks). kfree_rcu(ptr, rhf) is the
 * two-argument form; the _mightsleep forms are the one-argument form. */
#define BULKRCU__KVFREE_1(ptr) bulkrcu_kvfree(ptr)
#define BULKRCU__KVFREE_2(ptr, rhf)                                   \
  do {                                                                \
    __typeof__(ptr) bulkrcu__p = (ptr);                               \
    if (bulkrcu__p) bulkrcu_kfree_head(bulkrcu__p, &bulkrcu__p->rhf); \
  } while (0)
#define BULKRCU__KVFREE_PICK(_1, _2, name, ...) name
#define kvfree_rcu(...) \
  BULKRCU__KVFREE_PICK(__VA_ARGS__, BULKRCU__KVFREE_2, BULKRCU__KVFREE_1, unused)(__VA_ARGS__)
#define kfree_rcu(ptr, rhf) BULKRCU__KVFREE_2(ptr, rhf)
/* kvfree_rcu and kfree_rcu stay macros: the second argument is a field name. */
static inline void kvfree_rcu_mightsleep(void* ptr) { bulkrcu_kvfree(ptr); }
static inline void kfree_rcu_mightsleep(void* ptr) { bulkrcu_kvfree(ptr); }
static inline void kvfree_rcu_barrier(void) { (bulkrcu_kvfree_barrier)(); }

/* Acquire load of an RCU-protected pointer. Blocks: no. Allocates: no. Async-signal-safe: yes.
 * Inside a reader: that is where it belongs. */
#define rcu_dereference(p) __atomic_load_n(&(p), __ATOMIC_ACQUIRE)
/* Release store publishing v in p. Blocks: no. Allocates: no. Async-signal-safe: yes.
 * Inside a reader: yes. */
#define rcu_assign_pointer(p, v) __atomic_store_n(&(p), (v), __ATOMIC_RELEASE)

/* ---- object caches (<bulkrcu/cache.h>) in the kernel's spellings ---------------------------
 * struct kmem_cache is struct bulkrcu_cache. kvfree_rcu(p) and kfree_rcu(p, rhf) of an object
 * of a cache give it back to its cache after the grace period, as kfree_rcu does in the kernel
 * (kvfree's reclaim finds the cache from the address); a pointer that lies in no cache goes to
 * free().
 * gfp flags are mapped, not ignored: a mask without GFP_KERNEL's "may block" bit (GFP_NOWAIT,
 * GFP_ATOMIC) allocates with bulkrcu_cache_alloc_lockless (never locks: NULL instead);
 * __GFP_ZERO zeroes the object; other bits are ignored. Each function keeps the contract of the
 * bulkrcu_cache_ function it calls (cache.h). */
#include <string.h>

#include "bulkrcu/cache.h"

#define kmem_cache bulkrcu_cache
#define SLAB_TYPESAFE_BY_RCU BULKRCU_CACHE_TYPESAFE_BY_RCU
#ifndef SLAB_HWCACHE_ALIGN
#define SLAB_HWCACHE_ALIGN 0x2000u /* align objects to the 64-byte cache line */
#endif
#ifndef GFP_KERNEL
typedef unsigned int gfp_t;
#define GFP_KERNEL 0x01u /* may block: the cache's lock, the pool's zone lock */
#define GFP_NOWAIT 0x02u /* never locks or blocks */
#define GFP_ATOMIC 0x04u /* never locks or blocks */
#define __GFP_ZERO 0x100u
#endif

static inline struct bulkrcu_cache* kmem_cache_create(const char* name, size_t size, size_t align,
                                                      unsigned long flags, void (*ctor)(void*)) {
  if (flags & SLAB_HWCACHE_ALIGN) align = align > 64 ? align : 64;
  return bulkrcu_cache_create_ctor(name, size, align, (unsigned)(flags & ~(unsigned long)SLAB_HWCACHE_ALIGN),
                                   ctor);
}
static inline void* kmem_cache_alloc(struct bulkrcu_cache* c, gfp_t gfp) {
  void* p = (gfp & GFP_KERNEL) ? bulkrcu_cache_alloc(c) : bulkrcu_cache_alloc_lockless(c);
  if (p && (gfp & __GFP_ZERO)) memset(p, 0, bulkrcu_cache_object_size(c));
  return p;
}
static inline void* kmem_cache_zalloc(struct bulkrcu_cache* c, gfp_t gfp) {
  return kmem_cache_alloc(c, gfp | __GFP_ZERO);
}
static inline void kmem_cache_free(struct bulkrcu_cache* c, void* p) { bulkrcu_cache_free(c, p); }
static inline void kmem_cache_destroy(struct bulkrcu_cache* c) { bulkrcu_cache_destroy(c); }
static inline int kmem_cache_shrink(struct bulkrcu_cache* c) {
  bulkrcu_cache_shrink(c);
  return 0;
}
/* Waits for c's bulkrcu_cache_free_rcu objects and, since kvfree_rcu'd objects reach their
 * cache only through kvfree's reclaim, for kvfree's barrier too. Blocks: yes. Inside a reader:
 * forbidden (aborts). */
static inline void kvfree_rcu_barrier_on_cache(struct bulkrcu_cache* c) {
  bulkrcu_cache_barrier(c);
  bulkrcu_kvfree_barrier();
}

#endif /* BULKRCU_KERNEL_H */
