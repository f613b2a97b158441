/* bulkrcu/cache.h: RCU object caches, user-space sheaves (C11 and C++).
 *
 * A cache hands out objects of one size from slabs (power-of-two blocks of pool pages, each
 * holding a few dozen objects or more). Every CPU keeps two arrays of object pointers (the
 * kernel's "sheaves"): one to allocate from and free into, one that collects objects retired
 * with bulkrcu_cache_free_rcu. A full retired array takes one grace-period cookie and, once
 * the cookie has elapsed (polled), becomes an array ready for allocation as it is: the objects
 * are not touched and no per-object free runs. Arrays beyond what the CPUs hold go to the
 * cache's depot; slabs with no object in use go back to the page pool. docs/CACHE.md has the
 * design and the costs.
 *
 * Typesafe-by-rcu caches (BULKRCU_CACHE_TYPESAFE_BY_RCU, the kernel's SLAB_TYPESAFE_BY_RCU):
 * a freed object may be reused at once for a new object of the same cache, but its memory
 * stays an object of this cache until every reader that might hold it has finished: slabs go
 * back to the pool only after a grace period. Readers must revalidate what they find (a key,
 * a generation, a reference count taken with a compare-and-swap), see docs/CACHE.md. The free
 * list link of such a cache lies outside the object, so a free never writes the object.
 *
 * Memory ordering:
 *  - bulkrcu_cache_free_rcu(c, p) happens-before the allocation that returns p again, and
 *    every read-side critical section that began before the free_rcu call has ended before
 *    that allocation returns.
 *  - bulkrcu_cache_free(c, p) happens-before the allocation that returns p again.
 *  - bulkrcu_cache_barrier(c) returns after every object freed with bulkrcu_cache_free_rcu(c)
 *    before the call is ready for reuse (its grace period has elapsed).
 *
 * Debug mode (BULKRCU_POOL_DEBUG=1; always on in test builds): freed objects of caches that
 * are neither typesafe nor constructed are poisoned (0x6b; objects retired with free_rcu once
 * their grace period has elapsed) and the poison is checked on allocation; a double free, a
 * pointer that is not the start of an object of the cache, and a free to the wrong cache
 * abort with a message naming the cache and the pointer. A pointer outside every slab and a
 * free to the wrong cache abort in every mode.
 */
#ifndef BULKRCU_CACHE_H
#define BULKRCU_CACHE_H

#include <stddef.h>

#include "bulkrcu/export.h"

#ifdef __cplusplus
extern "C" {
#endif

struct bulkrcu_cache;

/* Reuse at once for the same type; slab pages go back to the pool only after a grace period. */
#define BULKRCU_CACHE_TYPESAFE_BY_RCU 1u

/* Creates a cache of objects of `size` bytes aligned to `align` (0: 8; a power of two, at
 * most the page size). `name` is copied (up to 63 bytes) and used in messages. A size of 0,
 * a size over what the largest slab holds, a bad alignment or unknown flags print a message
 * naming the cache and return NULL with errno = EINVAL (ENOMEM when memory is exhausted).
 * Blocks: yes (locks; maps per-CPU arrays). Allocates: the cache's metadata (mmap).
 * Async-signal-safe: no. Inside a reader: yes. */
BULKRCU_API struct bulkrcu_cache* bulkrcu_cache_create(const char* name, size_t size, size_t align,
                                                       unsigned flags);

/* As bulkrcu_cache_create; ctor (may be NULL) runs once on every object when its slab is
 * created, not on each allocation (the kernel's constructor semantics: a freed object must be
 * left in its constructed state). ctor runs inside allocation calls. */
BULKRCU_API struct bulkrcu_cache* bulkrcu_cache_create_ctor(const char* name, size_t size, size_t align,
                                                            unsigned flags, void (*ctor)(void*));

/* An object, uninitialized (or as the constructor left it); NULL with errno = ENOMEM when
 * memory is exhausted. Fast path: a restartable sequence pops this CPU's array (about 15
 * instructions, no lock, no atomic read-modify-write).
 * Blocks: may take the cache's lock and the pool's zone lock (and map a chunk) when this CPU's
 * array is empty; outside a reader it may then also try to run the grace period of retired
 * arrays (membarrier system calls; it never waits for a reader). Allocates: slabs from the pool.
 * Async-signal-safe: no (use bulkrcu_cache_alloc_lockless). Inside a reader: yes. */
BULKRCU_API void* bulkrcu_cache_alloc(struct bulkrcu_cache* c);

/* An object from this CPU's array or from arrays whose grace period has elapsed, taken
 * without locking; NULL when there is none at hand (nothing is mapped or refilled).
 * Blocks: no. Locks: none. System calls: none. Allocates: no. Async-signal-safe: yes.
 * Inside a reader: yes. */
BULKRCU_API void* bulkrcu_cache_alloc_lockless(struct bulkrcu_cache* c);

/* Frees p at once: no reader may still hold it (for a typesafe cache, readers that
 * revalidate may). NULL is a no-op. A pointer that is not an object of c aborts with a message.
 * Blocks: may take the cache's lock and the zone lock when this CPU's array is full.
 * Allocates: an array page. Async-signal-safe: no. Inside a reader: yes. */
BULKRCU_API void bulkrcu_cache_free(struct bulkrcu_cache* c, void* p);

/* Frees p after a grace period: it is reused only once every read-side critical section that
 * began before the call has ended. NULL is a no-op. A bad pointer aborts as bulkrcu_cache_free.
 * Fast path: a restartable sequence stores p in this CPU's retired array (about 15
 * instructions). A full array takes a cookie (bulkrcu_start_poll) and goes to the depot; the
 * next one comes from the depot's empty arrays or the pool's lockless page list; without one
 * p is pushed onto the cache's lock-free overflow stack, linked through a word every object
 * carries after its end (never through the object itself: readers may still use it).
 * Blocks: no. Locks: none. Allocates: pool pages, lockless only. Async-signal-safe: yes (except
 * as the first bulkrcu call of a fork child, as bulkrcu_start_poll). Inside a reader: yes. */
BULKRCU_API void bulkrcu_cache_free_rcu(struct bulkrcu_cache* c, void* p);

/* Waits until every object freed with bulkrcu_cache_free_rcu(c, ...) before the call is
 * ready for reuse; other caches' and kvfree's pending frees are not waited for (objects of c
 * retired with bulkrcu_kvfree reach c through kvfree's reclaim: kvfree_rcu_barrier_on_cache
 * in kernel.h waits for those too). Blocks: yes (one grace period). Allocates: no.
 * Async-signal-safe: no. Inside a reader: forbidden (aborts with a message). */
BULKRCU_API void bulkrcu_cache_barrier(struct bulkrcu_cache* c);

/* Returns the CPUs' arrays of free objects and the depot's to the slabs, and every slab with
 * no object in use to the page pool (bulkrcu_page_pool_shrink then returns wholly free chunks
 * to the OS). Objects retired and still waiting for their grace period stay. For a typesafe
 * cache the slabs go back after a grace period, which this call waits for.
 * Blocks: yes (locks, remote fences; a grace period for typesafe caches). Allocates: no.
 * Async-signal-safe: no. Inside a reader: yes, except for a typesafe cache (aborts). */
BULKRCU_API void bulkrcu_cache_shrink(struct bulkrcu_cache* c);

/* Waits for c's deferred frees (as bulkrcu_cache_barrier), returns every slab to the pool and
 * frees c. Objects still allocated: aborts with "bulkrcu_cache_destroy(\"name\"): N objects
 * still allocated". NULL is a no-op. Blocks: yes. Allocates: no. Async-signal-safe: no.
 * Inside a reader: forbidden (aborts). No other call on c may run concurrently or follow. */
BULKRCU_API void bulkrcu_cache_destroy(struct bulkrcu_cache* c);

/* The cache whose slab holds p, or NULL when p lies in no cache's slab (a malloc pointer, a
 * pointer of the page pool that is no slab). Lock-free: two table loads and a header check.
 * Blocks: no. Allocates: no. Async-signal-safe: yes. Inside a reader: yes. */
BULKRCU_API struct bulkrcu_cache* bulkrcu_cache_of(const void* p);

/* The object size the cache was created with. Blocks: no. Allocates: no. Async-signal-safe: yes. */
BULKRCU_API size_t bulkrcu_cache_object_size(const struct bulkrcu_cache* c);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* BULKRCU_CACHE_H */
