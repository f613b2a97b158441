/* bulkrcu/rcu.h: the C API (C11 and C++).
 *
 * Read-copy update for user space: readers run without locks or registration; writers publish
 * a new version, then free the old one after a grace period, either by waiting for it
 * (bulkrcu_synchronize) or by queueing a callback (bulkrcu_call).
 *
 * Every entry point states four things: may it block, may it allocate, is it
 * async-signal-safe, and may it be called inside a read-side critical section ("a reader").
 *
 * Memory ordering:
 *  - A grace period begins after the call that starts it (bulkrcu_synchronize,
 *    bulkrcu_synchronize_expedited, bulkrcu_start_poll, the cookie of bulkrcu_get_state, or a
 *    bulkrcu_call) and ends only after every read-side critical section that began before that
 *    point has ended. Everything a writer did before the call happens-before the end of the
 *    grace period, and every memory access made inside such a critical section happens-before
 *    the return of bulkrcu_synchronize, a true result of bulkrcu_poll_state, and the start of
 *    the callback.
 *  - A critical section that begins after a grace period began may see either version of
 *    data updated before it; it never sees memory freed at the end of that grace period.
 *  - Publish with rcu_assign_pointer (a release store) and read with rcu_dereference (an
 *    acquire load), both in <bulkrcu/kernel.h>, or with C11/C++ atomics of the same orders.
 *  - bulkrcu_barrier returns after every callback queued before it has returned; the
 *    callbacks' effects happen-before the return.
 *  - bulkrcu_read_lock and bulkrcu_read_unlock emit no fence and no atomic read-modify-write
 *    on machines with membarrier(2) (the grace period pays with membarrier instead); without
 *    membarrier, each outermost lock and unlock adds one full fence.
 *
 * Cancellation: no bulkrcu call is a cancellation point. The waits (bulkrcu_synchronize,
 * _synchronize_expedited, _cond_synchronize, _barrier, _kvfree_barrier) disable cancellation
 * while they wait; a pthread_cancel that arrives meanwhile acts at the thread's next
 * cancellation point after the call returns. No lock stays held and nothing unwinds through
 * the library.
 */
#ifndef BULKRCU_RCU_H
#define BULKRCU_RCU_H

#include <stdbool.h>
#include <stddef.h>

#include "bulkrcu/export.h"
#include "bulkrcu/rseq_asm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A callback head, embedded in the object to be reclaimed. Owned by bulkrcu from
 * bulkrcu_call until `func` is invoked. */
struct bulkrcu_head {
  struct bulkrcu_head* next;
  void (*func)(struct bulkrcu_head*);
};

/* Enters a read-side critical section. Sections nest; any thread may call it with no prior
 * call, including threads bulkrcu never saw and signal handlers.
 * Blocks: no. Allocates: only on a thread's first use, which claims a reader slot from a
 * process-wide pool (a compare-and-swap; a new 4 KiB chunk is mapped with mmap(2) when every
 * slot is taken) and sets a pthread key so thread exit releases the slot.
 * Async-signal-safe: yes (also on first use: the slot claim is lock-free).
 * Inside a reader: yes (nests). */
BULKRCU_API void bulkrcu_read_lock(void);

/* Leaves a read-side critical section. Calling it without a matching lock aborts with a
 * message (in every build: the check costs nothing on the outermost unlock). When a grace
 * period sleeps waiting for this section, the outermost unlock wakes it (one futex wake system
 * call; otherwise one load and a branch).
 * Blocks: no. Allocates: no. Async-signal-safe: yes. Inside a reader: it ends one. */
BULKRCU_API void bulkrcu_read_unlock(void);

/* True when the calling thread is inside a read-side critical section.
 * Blocks: no. Allocates: no. Async-signal-safe: yes. Inside a reader: yes. */
BULKRCU_API bool bulkrcu_read_lock_held(void);

/* Waits for a grace period: returns after every read-side critical section that began before
 * the call has ended. Concurrent callers share grace periods. Returns at once, without a
 * grace period, when no thread owns a reader slot (no thread that ever called
 * bulkrcu_read_lock is alive): no section can be running then.
 * Blocks: yes. Allocates: no. Async-signal-safe: no.
 * Inside a reader: forbidden; aborts at once with a message (it would wait for itself). */
BULKRCU_API void bulkrcu_synchronize(void);

/* bulkrcu_synchronize that ends as fast as the readers allow. Every synchronize spins a few
 * microseconds, then sleeps until the unlock of the reader it waits for wakes it (the fastest
 * way when readers are preempted inside sections); the expedited form also makes a grace period
 * the runtime thread is running spin as long as that before it sleeps.
 * Blocks: yes. Allocates: no. Async-signal-safe: no. Inside a reader: forbidden (aborts). */
BULKRCU_API void bulkrcu_synchronize_expedited(void);

/* Returns a cookie for the current state: bulkrcu_poll_state(cookie) becomes true once a full
 * grace period has elapsed after this call. Starts nothing.
 * Blocks: no. Allocates: no. Async-signal-safe: yes. Inside a reader: yes. */
BULKRCU_API unsigned long bulkrcu_get_state(void);

/* As bulkrcu_get_state, and makes sure a grace period that satisfies the cookie starts soon
 * (the runtime thread runs it).
 * Blocks: no. Allocates: no. Async-signal-safe: yes (at most one futex wake), except as the
 * first bulkrcu call of a fork child, which starts the runtime thread (pthread_create).
 * Inside a reader: yes (the grace period then waits for the reader to end, as it must). */
BULKRCU_API unsigned long bulkrcu_start_poll(void);

/* True once a full grace period has elapsed since `cookie` was taken.
 * Blocks: no. Allocates: no. Async-signal-safe: yes. Inside a reader: yes. */
BULKRCU_API bool bulkrcu_poll_state(unsigned long cookie);

/* Returns at once if the cookie's grace period has elapsed, else waits for it.
 * Blocks: yes. Allocates: no. Async-signal-safe: no. Inside a reader: forbidden (aborts). */
BULKRCU_API void bulkrcu_cond_synchronize(unsigned long cookie);

/* Queues `head` so that func(head) runs after a grace period on one of bulkrcu's invocation
 * threads: the runtime thread, and invocation workers it starts when callbacks pile up (one
 * per group of CPUs, running on those CPUs: callbacks run on the CPU that queued them, as in
 * the kernel). Callbacks queued on one CPU run in the order they were queued, one at a time.
 * The backlog (queued, not yet run) is visible as callbacks_pending in <bulkrcu/stats.h>;
 * when it grows, grace periods are expedited and invocation spreads over more threads.
 * Blocks: no. Allocates: no. Takes no lock: an rseq append to this CPU's list (without rseq, a
 * compare-and-swap push onto it); an append that finds the list held by a sweep takes a
 * lock-free push onto a shared overflow list instead. Async-signal-safe: yes,
 * except as the first bulkrcu call of a fork child (it then starts the runtime thread).
 * Inside a reader: yes. */
BULKRCU_API void bulkrcu_call(struct bulkrcu_head* head, void (*func)(struct bulkrcu_head*));

/* bulkrcu_call with back-pressure, for producers that would rather wait than let the backlog
 * grow: queues `head` as bulkrcu_call does, then, while more than `max_pending` callbacks
 * (callbacks_pending, from every thread) are queued and not yet run, waits for invocation to
 * catch up, asking for expedited grace periods meanwhile. The check is made on every 64th call
 * of a thread (it sums per-CPU counters), so the backlog may exceed the bound by up to 64
 * callbacks a calling thread. Never waits inside a read-side critical section, inside a
 * callback or deleter, or on bulkrcu's own threads (it then only queues): a wait there could
 * hold back the very invocations it waits for.
 * Blocks: yes (not a cancellation point). Allocates: no. Async-signal-safe: no.
 * Inside a reader: yes (it then does not wait). */
BULKRCU_API void bulkrcu_call_bounded(struct bulkrcu_head* head, void (*func)(struct bulkrcu_head*),
                                      size_t max_pending);

/* Waits until every callback queued (from any thread) before the call has returned.
 * Blocks: yes. Allocates: no. Async-signal-safe: no.
 * Inside a reader: forbidden (aborts). Inside a callback: forbidden (aborts: it would wait
 * for itself). */
BULKRCU_API void bulkrcu_barrier(void);

/* ---- kvfree: bulk reclamation through per-CPU blocks of pointers -------------------------
 * Retired pointers are stored in per-CPU page-sized blocks; one grace period covers a whole
 * block. Who then runs the deleter:
 *  - free() (bulkrcu_kvfree, bulkrcu_kfree_head): a few pointers at a time, mostly on threads
 *    that keep retiring (each frees about as many as it retires, so its allocator caches stay
 *    warm), else on the runtime thread. free() is the only deleter a retire call runs.
 *  - any other deleter (bulkrcu_defer, bulkrcu_defer_nowait, C++ retire and rcu_retire): never
 *    inside a retire call. It runs on bulkrcu's runtime thread, or on a thread that asks for it
 *    with bulkrcu_kvfree_reclaim(), inside a bulkrcu-internal read-side critical section (it
 *    must not wait for a grace period: bulkrcu_synchronize and the barriers abort there). So a
 *    writer may retire while holding its update lock even when the deleter takes that lock.
 * Nothing is stranded: the runtime thread frees what idle CPUs and exited threads leave, within
 * about 3 x BULKRCU_DRAIN_MS (default 100 ms) plus one grace period.
 * At exit(): user deleters stop (bulkrcu's atexit handler, registered when the library loads,
 * waits up to 1 s for those running to return); objects still pending are left to the OS.
 *
 * Memory ordering: a retire happens-before the deleter's call on that pointer, and every
 * read-side critical section that began before the retire has ended before that call.
 * bulkrcu_kvfree_barrier returns after every pointer retired (through any form below, and
 * every bulkrcu_call callback) before it has been freed; those frees happen-before its return.
 *
 * Memory budget: BULKRCU_MAX_PENDING (bytes, default 64M; K/M/G suffixes) caps the bytes
 * waiting for reclaim: the pages of blocks, and the objects of every closed block: each
 * pointer sized with malloc_usable_size for free() (bulkrcu_kvfree, bulkrcu_kfree_head),
 * sizeof(T) for C++ retire and rcu_retire. Objects of unknown size (bulkrcu_defer,
 * bulkrcu_defer_nowait) are bounded by BULKRCU_MAX_PENDING_OBJECTS (default 1M objects) instead.
 * Above either bound, the monitor asks for grace periods without waiting for its pacing,
 * reclaims elapsed free() blocks at once instead of handing them to retiring threads, blocking
 * retires (bulkrcu_kvfree, bulkrcu_defer outside a reader, a deleter or a callback) help reclaim
 * and wait for progress (at most about 200 ms a call), and bulkrcu_defer_nowait returns false.
 * Retires inside a reader, a deleter or on bulkrcu's threads never wait, so they may exceed the
 * budget by the blocks they fill. Blocks still filling (one per CPU and deleter channel) are
 * counted by their page only. */

/* free(ptr) after a grace period. NULL is a no-op. ptr must come from malloc and friends.
 * Blocks: only as a last resort (memory exhausted: it then waits for a grace period and frees
 * inline; never inside a reader) and, above the memory budget, to wait for reclaim.
 * Allocates: a pool page per block of about 500 pointers (lockless per-CPU first; in place,
 * possibly taking the pool's zone lock, when those are empty).
 * Async-signal-safe: no (use bulkrcu_defer_nowait). Inside a reader: yes; it never waits
 * there: with no page at all it takes one from a small emergency reserve, and aborts with a
 * message if even that is exhausted.
 * System calls: a call whose store closes a block (one in ~500) may make the kvfree monitor's
 * pass on this thread, about once per 500 us under load: a try-lock, no waiting, up to four
 * membarrier(2) calls (the grace period, when no reader is inside a section). */
BULKRCU_API void bulkrcu_kvfree(void* ptr);

/* fn(ptr) after a grace period; pointers with the same fn share blocks (a channel).
 * fn runs on the runtime thread or in bulkrcu_kvfree_reclaim(), never inside this call or any
 * other retire, inside a bulkrcu-internal read-side critical section: it must not wait for a
 * grace period (bulkrcu_synchronize and the barriers abort there); it may retire (that never
 * waits there) and take any lock.
 * Blocks, allocates, async-signal-safe, inside a reader: as bulkrcu_kvfree; the last resort
 * (no page at all) waits for a grace period and then until the runtime thread has run fn(ptr).
 * fn may be called while exit() runs only until bulkrcu's atexit handler (see above). */
BULKRCU_API void bulkrcu_defer(void (*fn)(void*), void* ptr);

/* As bulkrcu_defer, but never blocks, locks, allocates memory or makes a system call: it
 * stores into this CPU's block or takes a page from the per-CPU cache or the pool's lockless
 * list. Returns false when that is not possible (no page without locking, the memory budget is
 * exceeded, or the runtime thread holds this CPU's slot this instant): nothing was queued and
 * the caller keeps ptr. Blocks: no. Allocates: no. Async-signal-safe: yes. Inside a reader: yes. */
BULKRCU_API bool bulkrcu_defer_nowait(void (*fn)(void*), void* ptr);

/* The two-argument form: head lies inside the malloc'ed object at ptr: pointer-aligned, within
 * its first 4096 bytes, and (char*)head + sizeof(*head) <= (char*)ptr + malloc_usable_size(ptr);
 * aborts with a message otherwise (offset and alignment: on every call; the fit against
 * malloc_usable_size: whenever the call takes the library's path, which is a thread's first
 * call, a call that finds its block full, every few hundred calls, and always before the head
 * is written, so a wrong head never corrupts memory). free(ptr) after a grace period. Uses a
 * block like bulkrcu_kvfree; when no page is available without waiting, links the object
 * through its own head instead.
 * Blocks: no. Allocates: no (pages only from the lockless sources).
 * Async-signal-safe: no: like bulkrcu_kvfree it frees, on this thread and a few at a time,
 * objects of this CPU whose grace period has elapsed (that is what keeps it close to the cost
 * of a plain free); bulkrcu_defer_nowait is the async-signal-safe form.
 * Inside a reader: yes. NULL ptr is a no-op. */
BULKRCU_API void bulkrcu_kfree_head(void* ptr, struct bulkrcu_head* head);

/* Waits until every pointer retired before the call (any form, any thread) has been freed,
 * and every bulkrcu_call callback queued before it has run.
 * Blocks: yes. Allocates: no. Async-signal-safe: no. Inside a reader: forbidden (aborts with a
 * message). Inside a callback or deleter: forbidden (aborts with a message saying so). */
BULKRCU_API void bulkrcu_kvfree_barrier(void);

/* Runs, on the calling thread, the user deleters (bulkrcu_defer, C++ retire) whose grace period
 * has elapsed and that the runtime thread has not started yet, inside a read-side critical
 * section; returns how many ran. For programs that want deleters on a thread of their own
 * (the runtime thread runs them otherwise, and still does).
 * Blocks: only as long as the deleters it runs. Allocates: no. Async-signal-safe: no.
 * Inside a reader: yes (the deleters then run inside it). */
BULKRCU_API size_t bulkrcu_kvfree_reclaim(void);

/* Tells bulkrcu memory is short: returns the pool's per-CPU lists and every CPU's cached block
 * pages to the pool's zone, moves the emergency reserve to the fullest chunk, and gives wholly
 * free chunks and large free runs back to the OS (bulkrcu_page_pool_shrink); backs off the page
 * refills for a second (the pool's own for 5 s). The reserve itself is refilled at once.
 * Blocks: yes (locks, remote fences). Allocates: no. Async-signal-safe: no. Inside a reader: yes. */
BULKRCU_API void bulkrcu_memory_pressure(void);

/* ---- private: the inline reader fast path. Layout and names may change in any release. --- */
struct bulkrcu__reader {
  unsigned long ctr; /* 0 or phase bit: quiescent; else grace-period phase | nesting count */
  /* Nonzero: a grace period sleeps until this thread's section ends, and the outermost unlock
   * wakes it (bulkrcu__reader_wake). Set by the waiter, cleared by either. */
  unsigned int wake;
  unsigned int reserved_;
};
#define BULKRCU__NEST_MASK ((1UL << (sizeof(unsigned long) * 4)) - 1)

#if defined(__SANITIZE_THREAD__)
#define BULKRCU__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define BULKRCU__TSAN 1
#endif
#endif

/* ThreadSanitizer cannot see membarrier(2): under it the reader uses orders it understands. */
#ifdef BULKRCU__TSAN
#define BULKRCU__MO_LOCK __ATOMIC_SEQ_CST
#define BULKRCU__MO_UNLOCK __ATOMIC_SEQ_CST
/* TSan does not support atomic_thread_fence (gcc's -Wtsan): the full fence of the
 * no-membarrier path is a seq_cst read-modify-write of the reader's own counter instead (a
 * full barrier on the CPU, and an acquire-release operation TSan follows). The seq_cst stores
 * of the counter are the release the grace period's load of it acquires: TSan sees every
 * access of a section happen before the grace period that waited for it ends. */
#define BULKRCU__FULL_FENCE(ctr) ((void)__atomic_fetch_add((ctr), 0, __ATOMIC_SEQ_CST))
/* When the library itself is not built with TSan (an installed Release library under a user's
 * -fsanitize=thread build), TSan cannot see the grace period's loads. So, in TSan builds only,
 * every outermost unlock releases the address of bulkrcu__gp_ctr and the waits below acquire
 * it on return: each section that ended happens-before the return of every later wait (a
 * superset of the real order, so no false reports on memory freed after a wait). */
void __tsan_acquire(void* addr);
void __tsan_release(void* addr);
#define BULKRCU__TSAN_RELEASE_GP() __tsan_release((void*)&bulkrcu__gp_ctr)
#define BULKRCU__TSAN_ACQUIRE_GP() __tsan_acquire((void*)&bulkrcu__gp_ctr)
#else
#define BULKRCU__MO_LOCK __ATOMIC_RELAXED   /* ordered by fence A (see below) */
#define BULKRCU__MO_UNLOCK __ATOMIC_RELAXED /* ordered by fence B */
#define BULKRCU__FULL_FENCE(ctr) __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define BULKRCU__TSAN_RELEASE_GP() ((void)0)
#define BULKRCU__TSAN_ACQUIRE_GP() ((void)0)
#endif

/* initial-exec TLS: one pointer, reached with one %fs-relative load (no __tls_get_addr). */
extern BULKRCU_API __thread struct bulkrcu__reader* bulkrcu__tls_reader
    __attribute__((tls_model("initial-exec")));
extern BULKRCU_API unsigned long bulkrcu__gp_ctr; /* phase | 1; written by the grace-period engine */
extern BULKRCU_API int bulkrcu__reader_fence;     /* 1 when membarrier(2) is unavailable */
BULKRCU_API struct bulkrcu__reader* bulkrcu__reader_register(void);
BULKRCU_API void bulkrcu__unlock_unbalanced(void) __attribute__((noreturn, cold));
/* The outermost unlock's slow path when a grace period waits for this section: clears r->wake
 * and wakes the waiter (one futex wake; no lock, async-signal-safe). */
BULKRCU_API void bulkrcu__reader_wake(struct bulkrcu__reader* r) __attribute__((cold));
/* rcu_obj_base::retire's path: bulkrcu_defer that never blocks and never allocates (false:
 * no page without waiting; the caller then uses its embedded head). It may free() elapsed
 * bulkrcu_kvfree pointers on this thread, so it is not async-signal-safe. */
BULKRCU_API bool bulkrcu__defer_nonblocking(void (*fn)(void*), void* ptr);
/* The C++ API's slow paths with the size of every object of the channel (sizeof(T)): the
 * budget counts it in bytes instead of against the object bound. */
BULKRCU_API void bulkrcu__defer_sized(void (*fn)(void*), void* ptr, size_t size);
/* The C++ API's allocator channels: deleter values that are not functions, BULKRCU__DELETE_BIT
 * | sizeof(T) (no user-space address has bit 63 set). The library frees their pointers with
 * op_delete(ptr, size), which <bulkrcu/rcu.hpp> passes in and which calls the global
 * ::operator delete (the library itself references no C++ runtime symbol: C programs link it
 * with cc); an object cache's object goes back to its cache. rcu_retire and
 * rcu_obj_base::retire use them for std::default_delete<T> of a trivially destructible T
 * without a class-specific operator delete: no user code runs, only the allocator, so these
 * blocks are freed as free()'s are, a few at a time by retiring threads (where the objects and
 * the allocator's thread cache are warm), not on bulkrcu's threads. One channel per size, so
 * the budget counts a block's bytes exactly. bulkrcu__retire_delete is their slow path (every
 * block of such a channel is made there, after op_delete is known); nonblocking: as
 * bulkrcu__defer_nonblocking (false: nothing was queued), else as bulkrcu_defer (true). */
#define BULKRCU__DELETE_BIT ((__UINTPTR_TYPE__)1 << 63)
BULKRCU_API bool bulkrcu__retire_delete(void* ptr, size_t size, void (*op_delete)(void*, size_t),
                                        int nonblocking);
BULKRCU_API bool bulkrcu__defer_nonblocking_sized(void (*fn)(void*), void* ptr, size_t size);

/* About 7 instructions on the outermost lock, 4 when nested. */
static inline __attribute__((always_inline)) void bulkrcu__read_lock_inline(void) {
  struct bulkrcu__reader* r = bulkrcu__tls_reader;
  if (__builtin_expect(r == NULL, 0)) r = bulkrcu__reader_register();
  unsigned long tmp = __atomic_load_n(&r->ctr, __ATOMIC_RELAXED);
  if (__builtin_expect(!(tmp & BULKRCU__NEST_MASK), 1)) {
    __atomic_store_n(&r->ctr, __atomic_load_n(&bulkrcu__gp_ctr, __ATOMIC_RELAXED), BULKRCU__MO_LOCK);
    /* Fence A: orders the store above before the section's loads. A compiler barrier; the
     * grace period's membarrier (M1, M2 in src/gp/gp.cpp) supplies the CPU fence. */
    if (__builtin_expect(bulkrcu__reader_fence, 0))
      BULKRCU__FULL_FENCE(&r->ctr);
    else
      __atomic_signal_fence(__ATOMIC_SEQ_CST);
  } else {
    __atomic_store_n(&r->ctr, tmp + 1, __ATOMIC_RELAXED);
  }
}

static inline __attribute__((always_inline)) void bulkrcu__read_unlock_inline(void) {
  struct bulkrcu__reader* r = bulkrcu__tls_reader;
  if (__builtin_expect(r == NULL, 0)) bulkrcu__unlock_unbalanced();
  unsigned long tmp = __atomic_load_n(&r->ctr, __ATOMIC_RELAXED);
  if (__builtin_expect((tmp & BULKRCU__NEST_MASK) == 1, 1)) {
    /* Fence B: orders the section's loads before the store that ends it; pairs with M1/M2. */
    if (__builtin_expect(bulkrcu__reader_fence, 0))
      BULKRCU__FULL_FENCE(&r->ctr);
    else
      __atomic_signal_fence(__ATOMIC_SEQ_CST);
    BULKRCU__TSAN_RELEASE_GP();
    __atomic_store_n(&r->ctr, tmp - 1, BULKRCU__MO_UNLOCK);
    /* Fence C: orders the store above before the load below (a compiler barrier; the waiter's
     * membarrier after it sets r->wake supplies the CPU fence): either the waiter's scan sees
     * the section ended, or this load sees its request and wakes it. */
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    if (__builtin_expect(__atomic_load_n(&r->wake, __ATOMIC_RELAXED) != 0, 0)) bulkrcu__reader_wake(r);
  } else {
    if (__builtin_expect(!(tmp & BULKRCU__NEST_MASK), 0)) bulkrcu__unlock_unbalanced();
    __atomic_store_n(&r->ctr, tmp - 1, __ATOMIC_RELAXED);
  }
}

static inline __attribute__((always_inline)) bool bulkrcu__read_lock_held_inline(void) {
  struct bulkrcu__reader* r = bulkrcu__tls_reader;
  return r != NULL && (__atomic_load_n(&r->ctr, __ATOMIC_RELAXED) & BULKRCU__NEST_MASK) != 0;
}

/* ---- private: the inline retire fast path (x86-64). Layout and names may change. ----------
 * The store into this CPU's block is one restartable sequence (rseq(2)); about 20
 * instructions, no lock, no atomic read-modify-write, no fence. It runs only while the library
 * has turned it on (bulkrcu__kv_fast != NULL: rseq registered with glibc and membarrier, the
 * runtime thread started); otherwise, and whenever the block is full or the slot is busy, the
 * exported function does the whole job. Under ThreadSanitizer the exported functions are always
 * called (their annotations let it follow the per-CPU protocol). */
/* The channel (0-15) of a deleter: a multiplicative hash of its address. The library's slow
 * paths use the same function: both sides must pick the same block. */
static inline __attribute__((always_inline)) unsigned long bulkrcu__kv_channel(void (*fn)(void*)) {
  return (unsigned long)(((unsigned long long)(__UINTPTR_TYPE__)fn * 0x9E3779B97F4A7C15ull) >> 60);
}

/* The per-thread magazine (src/kvfree/magazine.h has the protocol): a block of the thread's
 * own, one pool page with the same header as a CPU's block. `busy` is 1 while the owner
 * stores into it; the runtime thread takes an idle thread's block over with a seal
 * (block->cap = 0), one membarrier(2) for all threads, then a check of `busy` (asymmetric
 * Dekker, like the readers' fences A and B). */
struct bulkrcu__mag {
  unsigned long busy; /* owner: 1 during a store; read by the runtime thread after membarrier */
  void* block;        /* owner: installs (compare-and-swap); runtime: takes (compare-and-swap) */
};
/* initial-exec TLS: NULL until the thread's first slow retire claims a magazine (never when
 * membarrier(2) is unavailable or BULKRCU_NO_MAGAZINE=1). */
extern BULKRCU_API __thread struct bulkrcu__mag* bulkrcu__tls_mag __attribute__((tls_model("initial-exec")));

/* About 18 instructions (x86-64, GCC 12), no rseq, no atomic read-modify-write, no fence.
 * Returns the block's new count (> 0) when ptr was stored; 0 when this thread has no magazine, a store of
 * this thread is in progress (a signal handler interrupted it) or the block holds another channel (the caller
 * uses the per-CPU path); -1 when the magazine's slow path must run (no block, full, or sealed by the runtime
 * thread). Block header: nr at 0, cap at 8, fn at 16, pointers from 64. */
static inline __attribute__((always_inline)) long bulkrcu__mag_store(void (*fn)(void*), void* ptr) {
  struct bulkrcu__mag* m = bulkrcu__tls_mag;
  if (__builtin_expect(m == NULL, 0)) return 0;
  if (__builtin_expect(__atomic_load_n(&m->busy, __ATOMIC_RELAXED) != 0, 0)) return 0;
  __atomic_store_n(&m->busy, 1UL, __ATOMIC_RELAXED);
  /* Fence M1: busy = 1 before the loads below. A compiler barrier (and a signal handler's
   * order); the runtime thread's membarrier between its seal and its load of busy supplies
   * the CPU fence. */
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
  unsigned long* b = (unsigned long*)__atomic_load_n(&m->block, __ATOMIC_RELAXED);
  long r = -1;
  if (__builtin_expect(b != NULL, 1)) {
    unsigned long n = __atomic_load_n(&b[0], __ATOMIC_RELAXED);
    if (__builtin_expect((void (*)(void*))b[2] != fn, 0)) {
      r = 0;
    } else if (__builtin_expect(n < __atomic_load_n(&b[1], __ATOMIC_RELAXED), 1)) {
      ((void**)b)[8 + n] = ptr;
      __atomic_store_n(&b[0], n + 1, __ATOMIC_RELAXED);
      r = (long)(n + 1);
    }
  }
  /* Fence M2: the store and the commit before busy = 0 (release: what the runtime thread's
   * acquire load of busy pairs with). */
  __atomic_store_n(&m->busy, 0UL, __ATOMIC_RELEASE);
  return r;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define BULKRCU__HAVE_RSEQ_STORE 1
extern BULKRCU_API void* bulkrcu__kv_fast;    /* per-CPU slots (256 bytes each) while the fast path is on */
extern BULKRCU_API long bulkrcu__rseq_offset; /* glibc's __rseq_offset, set before bulkrcu__kv_fast */
BULKRCU_API void bulkrcu__kv_help(unsigned flags); /* free()s a few elapsed pointers of this thread's CPU */
#define BULKRCU__KRC_SHIFT 8                       /* slot stride 256 */
#define BULKRCU__KRC_FRONT 8                       /* offset of the front block per channel in a slot */
#define BULKRCU__KV_MAY_BLOCK 1u
#define BULKRCU__KV_NO_WAIT 2u
#define BULKRCU__KV_HELP 8u
#ifdef BULKRCU_TESTING
#define BULKRCU__KV_HELP_EVERY 2 /* test builds: blocks of 4 pointers */
#else
#define BULKRCU__KV_HELP_EVERY 7 /* glibc's tcache depth: 7 frees per 7 retires */
#endif

/* In this CPU's slot: block = front[channel]; if it exists, belongs to fn and has room:
 * block->ptrs[nr] = ptr, then the commit block->nr = nr + 1. Returns the new nr (> 0); 0 when
 * the slow path must run (no block, another channel, full); -1 when the slot's lock is held.
 * The store into ptrs[nr] before the commit is harmless if the sequence restarts: nr does not
 * cover it, and the retry writes the slot again. Block header: nr at 0, cap at 8, fn at 16,
 * pointers from 64. */
static inline __attribute__((always_inline)) long bulkrcu__kv_store(void* base, unsigned long front_off,
                                                                    void (*fn)(void*), void* ptr) {
  long res;
  __asm__ __volatile__(BULKRCU__RSEQ_START
                       "shlq $8, %%rax\n\t"
                       "addq %[base], %%rax\n\t"
                       "movq $-1, %[res]\n\t"
                       "cmpl $0, (%%rax)\n\t"
                       "jnz 5f\n\t"
                       "xorl %k[res], %k[res]\n\t"
                       "movq (%%rax,%[front]), %%rcx\n\t"
                       "testq %%rcx, %%rcx\n\t"
                       "jz 5f\n\t"
                       "cmpq %[fn], 16(%%rcx)\n\t"
                       "jne 5f\n\t"
                       "movq (%%rcx), %%rdx\n\t"
                       "cmpq 8(%%rcx), %%rdx\n\t"
                       "jae 5f\n\t"
                       "movq %[ptr], 64(%%rcx,%%rdx,8)\n\t"
                       "leaq 1(%%rdx), %[res]\n\t"
                       "movq %[res], (%%rcx)\n\t" BULKRCU__RSEQ_END "5:\n\t"
                       : [res] "=&r"(res)
                       : [off] "r"(bulkrcu__rseq_offset), [base] "r"(base), [front] "r"(front_off),
                         [fn] "r"(fn), [ptr] "r"(ptr)
                       : "rax", "rcx", "rdx", "memory", "cc");
  return res;
}

/* The retire fast path: true when ptr was stored (and, with BULKRCU__KV_HELP in flags, this
 * thread's share of reclaim done). False: nothing was stored; the caller runs the slow path.
 * First this thread's magazine (plain stores, below); when the thread has none, or a signal
 * handler interrupted a magazine store, or the magazine holds another channel, this CPU's
 * front block (the rseq sequence above). */
static inline __attribute__((always_inline)) bool bulkrcu__kv_try(void (*fn)(void*), void* ptr,
                                                                  unsigned flags) {
#ifdef BULKRCU__TSAN
  /* The store publishes with plain stores ThreadSanitizer cannot see: under it every retire
   * takes the library's path, which tells it about the order (src/kvfree/retire.cpp's retire_slow). */
  (void)fn, (void)ptr, (void)flags;
  return false;
#endif
  long r = bulkrcu__mag_store(fn, ptr);
  if (__builtin_expect(r < 0, 0)) return false; /* the magazine's slow path: full, sealed, none */
  if (r == 0) {
    void* base = __atomic_load_n(&bulkrcu__kv_fast, __ATOMIC_ACQUIRE);
    if (__builtin_expect(base == NULL, 0)) return false;
    r = bulkrcu__kv_store(base, BULKRCU__KRC_FRONT + bulkrcu__kv_channel(fn) * sizeof(void*), fn, ptr);
    if (__builtin_expect(r <= 0, 0)) return false;
  }
  if ((flags & BULKRCU__KV_HELP) && __builtin_expect(r % BULKRCU__KV_HELP_EVERY == 0, 0))
    bulkrcu__kv_help(flags);
  return true;
}
#endif /* x86-64 */

#if defined(BULKRCU__HAVE_RSEQ_STORE) && !defined(BULKRCU__TSAN)
#define BULKRCU__INLINE_RETIRE 1
static inline __attribute__((always_inline)) void bulkrcu__kvfree_inline(void* ptr) {
  if (ptr == NULL) return;
  if (!bulkrcu__kv_try(NULL, ptr, BULKRCU__KV_MAY_BLOCK | BULKRCU__KV_HELP)) (bulkrcu_kvfree)(ptr);
}
/* bulkrcu_kfree_head's fast path stores only ptr and never writes the head, so it checks here
 * only what costs nothing: the head's offset (under 4096) and its alignment. The fit inside
 * the object (against malloc_usable_size) is checked by the library's function, which runs
 * whenever this store cannot be made: on a thread's first call, whenever its block is full
 * (every few hundred calls), under ThreadSanitizer, and always before the head is written
 * (the no-page fallback). A wrong head is therefore reported within a block's worth of calls
 * and never corrupts memory; checking every call cost about 40% of kfree-scale's kfree_head
 * row (docs/KVFREE.md). */
#define BULKRCU__MAX_HEAD_OFFSET 4096UL
static inline __attribute__((always_inline)) void bulkrcu__kfree_head_inline(void* ptr,
                                                                             struct bulkrcu_head* head) {
  if (ptr == NULL) return;
  const unsigned long off = (unsigned long)((__UINTPTR_TYPE__)head - (__UINTPTR_TYPE__)ptr);
  if (__builtin_expect(off < BULKRCU__MAX_HEAD_OFFSET && off % sizeof(void*) == 0, 1) &&
      bulkrcu__kv_try(NULL, ptr, BULKRCU__KV_NO_WAIT | BULKRCU__KV_HELP))
    return;
  (bulkrcu_kfree_head)(ptr, head);
}
static inline __attribute__((always_inline)) void bulkrcu__defer_inline(void (*fn)(void*), void* ptr) {
  if (!bulkrcu__kv_try(fn, ptr, BULKRCU__KV_MAY_BLOCK | BULKRCU__KV_HELP)) (bulkrcu_defer)(fn, ptr);
}
static inline __attribute__((always_inline)) bool bulkrcu__defer_nowait_inline(void (*fn)(void*), void* ptr) {
  return bulkrcu__kv_try(fn, ptr, 0) || (bulkrcu_defer_nowait)(fn, ptr);
}
static inline __attribute__((always_inline)) bool bulkrcu__defer_nonblocking_inline(void (*fn)(void*),
                                                                                    void* ptr) {
  return bulkrcu__kv_try(fn, ptr, BULKRCU__KV_NO_WAIT | BULKRCU__KV_HELP) ||
         (bulkrcu__defer_nonblocking)(fn, ptr);
}
#endif

/* The function-like macros inline the fast paths; `(bulkrcu_read_lock)()` and the function's
 * address still reach the exported function. Define BULKRCU_NO_INLINE to call it always. */
#if defined(BULKRCU__TSAN) && !defined(BULKRCU__BUILDING_LIBRARY)
/* TSan builds: the waits acquire what the readers' unlocks released (see BULKRCU__TSAN above).
 * (The library's own sources, which define these functions, build with
 * BULKRCU__BUILDING_LIBRARY.) */
static inline void bulkrcu__synchronize_tsan(void) {
  (bulkrcu_synchronize)();
  BULKRCU__TSAN_ACQUIRE_GP();
}
static inline void bulkrcu__synchronize_expedited_tsan(void) {
  (bulkrcu_synchronize_expedited)();
  BULKRCU__TSAN_ACQUIRE_GP();
}
static inline void bulkrcu__cond_synchronize_tsan(unsigned long cookie) {
  (bulkrcu_cond_synchronize)(cookie);
  BULKRCU__TSAN_ACQUIRE_GP();
}
static inline bool bulkrcu__poll_state_tsan(unsigned long cookie) {
  bool done = (bulkrcu_poll_state)(cookie);
  if (done) BULKRCU__TSAN_ACQUIRE_GP();
  return done;
}
#define bulkrcu_synchronize() bulkrcu__synchronize_tsan()
#define bulkrcu_synchronize_expedited() bulkrcu__synchronize_expedited_tsan()
#define bulkrcu_cond_synchronize(cookie) bulkrcu__cond_synchronize_tsan(cookie)
#define bulkrcu_poll_state(cookie) bulkrcu__poll_state_tsan(cookie)
#endif

#ifndef BULKRCU_NO_INLINE
#define bulkrcu_read_lock() bulkrcu__read_lock_inline()
#define bulkrcu_read_unlock() bulkrcu__read_unlock_inline()
#define bulkrcu_read_lock_held() bulkrcu__read_lock_held_inline()
#ifdef BULKRCU__INLINE_RETIRE
/* Variadic: C++ arguments may hold unparenthesized commas (template argument lists). */
#define bulkrcu_kvfree(...) bulkrcu__kvfree_inline(__VA_ARGS__)
#define bulkrcu_kfree_head(...) bulkrcu__kfree_head_inline(__VA_ARGS__)
#define bulkrcu_defer(...) bulkrcu__defer_inline(__VA_ARGS__)
#define bulkrcu_defer_nowait(...) bulkrcu__defer_nowait_inline(__VA_ARGS__)
#define bulkrcu__defer_nonblocking(...) bulkrcu__defer_nonblocking_inline(__VA_ARGS__)
#endif
#endif

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* BULKRCU_RCU_H */
