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
#include "bulkrcu/rseq_asm.h"

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
 * arrays (membarrier system calls), and, when no retired array is ready while more than 2 MiB
 * of retired objects wait, sleep up to 1 ms for their grace period before taking new memory
 * (it never waits longer for a reader, and never waits inside one). Allocates: slabs from the pool.
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

/* ---- private: the inline fast paths (x86-64). Layout and names may change. ----------------
 * bulkrcu_cache_alloc, bulkrcu_cache_free and bulkrcu_cache_free_rcu are function-like macros
 * for these inline paths (one restartable sequence each, no call); every case they do not
 * handle (debug mode, the rseq-less mode, an empty or full array, a locked slot, a pointer the
 * address map does not place in this cache) calls the exported function, which does the full
 * job. Under ThreadSanitizer, with BULKRCU_NO_INLINE and inside the library the exported
 * functions are called always; `(bulkrcu_cache_free)(c, p)` and the functions' addresses
 * always reach them.
 *
 * A cache begins with struct bulkrcu__cache_fast (src/cache/cache.cpp asserts it). `slots` is
 * set once, when the cache is created, and only when the inline paths are exact: rseq mode,
 * no debug mode (BULKRCU_POOL_DEBUG), 4 KiB pages. Slots are 128 bytes per possible CPU, the
 * lock word at 0, the allocation array's word at 8 and the retired array's at 16; a word is
 * (array address | nr), 0 for none, with the objects from byte 64 of the page-aligned array.
 * The address map: bulkrcu__cache_map[a >> 34] is NULL or a table of one 32-bit entry per
 * 4 KiB page of those 16 GiB, entry ((a >> 12) & (2^22 - 1)), equal to the cache's `tag` for
 * the pages of its slabs; tables are never unmapped. */
#define BULKRCU__CACHE_MAIN_OFF 8
#define BULKRCU__CACHE_RCU_OFF 16
#define BULKRCU__CACHE_MAP_CELLS 8192 /* 2^(47 - 34) */
struct bulkrcu__cache_fast {
  void* slots;       /* the per-CPU slots while the inline paths may run, else NULL */
  unsigned long cap; /* objects per array */
  unsigned int tag;  /* the address-map entry of this cache's slab pages */
  unsigned int pad_;
};
extern BULKRCU_API unsigned int* bulkrcu__cache_map[BULKRCU__CACHE_MAP_CELLS];
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define BULKRCU__HAVE_CACHE_FAST 1
extern BULKRCU_API long bulkrcu__rseq_offset; /* glibc's __rseq_offset (also in rcu.h) */

/* A sequence's start (rseq_asm.h) with the slot of this CPU: base + (cpu << 7). */
#define BULKRCU__CACHE_RSEQ_BEGIN \
  BULKRCU__RSEQ_START             \
  "shlq $7, %%rax\n\t"            \
  "addq %[base], %%rax\n\t"
/* How many pops ahead the object is prefetched (objects come back a grace period after their
 * retire, cold). */
#define BULKRCU__CACHE_PREFETCH 4

/* Pops objs[nr - 1] of the array whose word is at byte `soff` of this CPU's slot and commits
 * word - 1. Returns 1 with the object in *out; 0 when there is no array, it is empty or the
 * slot's lock is held. Reading objs[nr - 1] before the commit is safe: only this CPU's
 * sequences (which restart this one) or a locked-and-fenced remote (which excludes it) change
 * an installed array. */
#define BULKRCU__CACHE_DEFINE_POP(name, soff)                                                 \
  static inline __attribute__((always_inline)) int name(long off, void* base, void** out) {   \
    void* obj;                                                                                \
    unsigned long tmp;                                                                        \
    __asm__ goto(BULKRCU__CACHE_RSEQ_BEGIN                                                    \
                 "cmpl $0, (%%rax)\n\t"                                                       \
                 "jnz %l[none]\n\t"                                                           \
                 "movq " #soff                                                                \
                 "(%%rax), %%rcx\n\t"                                                         \
                 "movl %%ecx, %%edx\n\t"                                                      \
                 "andl $0xfff, %%edx\n\t"                                                     \
                 "jz %l[none]\n\t"                                                            \
                 "subq %%rdx, %%rcx\n\t"                                                      \
                 "movq 56(%%rcx,%%rdx,8), %[obj]\n\t"                                         \
                 "cmpq $%c[pfd1], %%rdx\n\t"                                                  \
                 "jb 3f\n\t"                                                                  \
                 "movq %c[pfoff](%%rcx,%%rdx,8), %[tmp]\n\t"                                  \
                 "prefetcht0 (%[tmp])\n\t"                                                    \
                 "3:\n\t"                                                                     \
                 "leaq -1(%%rcx,%%rdx), %%rcx\n\t"                                            \
                 "movq %%rcx, " #soff "(%%rax)\n\t" BULKRCU__RSEQ_END                         \
                 : [obj] "=&r"(obj), [tmp] "=&r"(tmp)                                         \
                 : [off] "r"(off), [base] "r"(base), [pfd1] "i"(BULKRCU__CACHE_PREFETCH + 1), \
                   [pfoff] "i"(56 - 8 * BULKRCU__CACHE_PREFETCH)                              \
                 : "rax", "rcx", "rdx", "memory", "cc"                                        \
                 : none);                                                                     \
    *out = obj;                                                                               \
    return 1;                                                                                 \
  none:                                                                                       \
    return 0;                                                                                 \
  }
/* Stores p at objs[nr] of the array whose word is at byte `soff` of this CPU's slot and commits
 * word + 1. Returns 1 when stored, 0 when there is no array or it holds `cap`, -1 when the
 * slot's lock is held. The store into objs[nr] before the commit is harmless if the sequence
 * restarts: nr does not cover it. */
#define BULKRCU__CACHE_DEFINE_PUSH(name, soff)                                                               \
  static inline __attribute__((always_inline)) long name(long off, void* base, unsigned long cap, void* p) { \
    __asm__ goto(BULKRCU__CACHE_RSEQ_BEGIN                                                                   \
                 "cmpl $0, (%%rax)\n\t"                                                                      \
                 "jnz %l[locked]\n\t"                                                                        \
                 "movq " #soff                                                                               \
                 "(%%rax), %%rcx\n\t"                                                                        \
                 "testq %%rcx, %%rcx\n\t"                                                                    \
                 "jz %l[full]\n\t"                                                                           \
                 "movl %%ecx, %%edx\n\t"                                                                     \
                 "andl $0xfff, %%edx\n\t"                                                                    \
                 "cmpq %[cap], %%rdx\n\t"                                                                    \
                 "jae %l[full]\n\t"                                                                          \
                 "subq %%rdx, %%rcx\n\t"                                                                     \
                 "movq %[p], 64(%%rcx,%%rdx,8)\n\t"                                                          \
                 "leaq 1(%%rcx,%%rdx), %%rcx\n\t"                                                            \
                 "movq %%rcx, " #soff "(%%rax)\n\t" BULKRCU__RSEQ_END                                        \
                 :                                                                                           \
                 : [off] "r"(off), [base] "r"(base), [p] "r"(p), [cap] "r"(cap)                              \
                 : "rax", "rcx", "rdx", "memory", "cc"                                                       \
                 : locked, full);                                                                            \
    return 1;                                                                                                \
  locked:                                                                                                    \
    return -1;                                                                                               \
  full:                                                                                                      \
    return 0;                                                                                                \
  }
BULKRCU__CACHE_DEFINE_POP(bulkrcu__cache_pop_main, 8)
BULKRCU__CACHE_DEFINE_PUSH(bulkrcu__cache_push_main, 8)
BULKRCU__CACHE_DEFINE_PUSH(bulkrcu__cache_push_rcu, 16)

/* 1 when the address map places p in a slab of the cache whose tag is `tag`. */
static inline __attribute__((always_inline)) int bulkrcu__cache_map_is(const void* p, unsigned int tag) {
  __UINTPTR_TYPE__ a = (__UINTPTR_TYPE__)p;
  unsigned int* l2;
  if (__builtin_expect(a >> 34 >= BULKRCU__CACHE_MAP_CELLS, 0)) return 0;
  l2 = __atomic_load_n(&bulkrcu__cache_map[a >> 34], __ATOMIC_ACQUIRE);
  return l2 != 0 && __atomic_load_n(&l2[(a >> 12) & ((1ul << 22) - 1)], __ATOMIC_RELAXED) == tag;
}
#endif /* x86-64 */

#if defined(__SANITIZE_THREAD__)
#define BULKRCU__CACHE_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define BULKRCU__CACHE_TSAN 1
#endif
#endif

#if defined(BULKRCU__HAVE_CACHE_FAST) && !defined(BULKRCU__CACHE_TSAN) && !defined(BULKRCU__BUILDING_LIBRARY)
#define BULKRCU__INLINE_CACHE 1
#define BULKRCU__CACHE_FAST(c) ((const struct bulkrcu__cache_fast*)(const void*)(c))
static inline __attribute__((always_inline)) void* bulkrcu__cache_alloc_inline(struct bulkrcu_cache* c) {
  void* base = BULKRCU__CACHE_FAST(c)->slots;
  void* o;
  if (__builtin_expect(base != 0, 1) &&
      __builtin_expect(bulkrcu__cache_pop_main(bulkrcu__rseq_offset, base, &o), 1))
    return o;
  return (bulkrcu_cache_alloc)(c); /* an empty array, a locked slot, debug or rseq-less mode */
}
/* The inline part of both frees: 1 when p went into this CPU's allocation array (rcu == 0) or
 * retired array (rcu != 0, a constant after inlining); 0: the exported function must run. */
static inline __attribute__((always_inline)) int bulkrcu__cache_free_fast(struct bulkrcu_cache* c, void* p,
                                                                          int rcu) {
  const struct bulkrcu__cache_fast* f = BULKRCU__CACHE_FAST(c);
  void* base = f->slots;
  if (__builtin_expect(base == 0 || !bulkrcu__cache_map_is(p, f->tag), 0)) return 0;
  return (rcu ? bulkrcu__cache_push_rcu(bulkrcu__rseq_offset, base, f->cap, p)
              : bulkrcu__cache_push_main(bulkrcu__rseq_offset, base, f->cap, p)) > 0;
}
static inline __attribute__((always_inline)) void bulkrcu__cache_free_inline(struct bulkrcu_cache* c,
                                                                             void* p) {
  if (__builtin_expect(!bulkrcu__cache_free_fast(c, p, 0), 0))
    (bulkrcu_cache_free)(c, p); /* NULL, a foreign pointer (aborts), a full array, a locked slot */
}
static inline __attribute__((always_inline)) void bulkrcu__cache_free_rcu_inline(struct bulkrcu_cache* c,
                                                                                 void* p) {
  if (__builtin_expect(!bulkrcu__cache_free_fast(c, p, 1), 0))
    (bulkrcu_cache_free_rcu)(c, p); /* NULL, a foreign pointer (aborts), a full array (seal) */
}
#ifndef BULKRCU_NO_INLINE
#define bulkrcu_cache_alloc(c) bulkrcu__cache_alloc_inline(c)
#define bulkrcu_cache_free(c, p) bulkrcu__cache_free_inline((c), (p))
#define bulkrcu_cache_free_rcu(c, p) bulkrcu__cache_free_rcu_inline((c), (p))
#endif
#endif

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* BULKRCU_CACHE_H */
