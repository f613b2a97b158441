/* bulkrcu/page_pool.h: bulkrcu's private page pool (C11 and C++).
 *
 * Pages of bulkrcu_page_size() bytes, page-aligned. Behind the API: a buddy allocator (orders
 * 0..9) over 2 MiB-aligned chunks from mmap(2), guarded by the zone lock, and per-CPU lists of
 * order-0 pages in front of it (count, high, batch), reached through rseq (or, without rseq,
 * sched_getcpu() and the list's try-lock). The lockless allocation takes only from the current
 * CPU's list and returns NULL rather than lock, as the kernel RFC "mm: Add
 * __rcu_alloc_page_lockless() func." proposes; a runtime thread refills lists that ran dry or
 * fell below their low mark. docs/POOL.md has the design, the sizing and the debug mode.
 * On x86-64 the hit paths of the three page calls are inlined into the caller (see the private
 * section at the end; BULKRCU_NO_INLINE turns that off); the functions keep their addresses.
 *
 * Memory ordering: a page returned by either allocation call is owned by the caller alone;
 * everything the previous owner wrote before bulkrcu_free_page happens-before the allocation
 * that returns the page again. Page contents are not preserved (debug mode poisons them).
 *
 * Debug mode (BULKRCU_POOL_DEBUG=1 in the environment; always on in bulkrcu's test builds):
 * free pages are poisoned and the poison is checked when a page is handed out; a double free,
 * a pointer the pool never handed out and a misaligned pointer abort the process with a
 * message naming the pointer. A misaligned pointer aborts in every mode.
 */
#ifndef BULKRCU_PAGE_POOL_H
#define BULKRCU_PAGE_POOL_H

#include <stddef.h>

#include "bulkrcu/export.h"
#include "bulkrcu/rseq_asm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The system page size. Blocks: no. Allocates: no. Async-signal-safe: yes. Inside a reader: yes. */
BULKRCU_API size_t bulkrcu_page_size(void);

/* A page from this CPU's list, else from the zone (may take the zone lock and map a chunk).
 * Returns NULL with errno = ENOMEM only when the OS refuses memory.
 * Blocks: may wait for the zone lock. Allocates: may mmap(2) a 2 MiB chunk.
 * Async-signal-safe: no. Inside a reader: yes. */
BULKRCU_API void* bulkrcu_alloc_page(void);

/* A page from this CPU's list only: never locks, never blocks, never maps memory, never
 * enters malloc. Returns NULL when the list is empty (or, in the fallback without rseq, when
 * the list's try-lock is busy, e.g. in a signal handler that interrupted a pool call).
 * On a miss, or when the list falls below its low mark, it asks the runtime thread to refill
 * the list with atomic flags only; it makes no system call, so a sleeping runtime thread sees
 * the request when it next polls (within 1 s, then every 100 ms; callers that may make a
 * system call, such as kvfree's blocking paths, ring it at once). At most one request per CPU
 * is outstanding, and none while refills are backed off under memory pressure.
 * Blocks: no. Allocates: no. Async-signal-safe: yes. Inside a reader: yes. */
BULKRCU_API void* bulkrcu_alloc_page_lockless(void);

/* Returns a page obtained from this pool to this CPU's list (above `high`, `batch` pages go
 * back to the zone under its lock; a chunk that becomes wholly free may be unmapped). NULL is
 * a no-op. A misaligned pointer aborts; in debug mode a double free or a foreign pointer
 * aborts too, with a message naming the pointer.
 * Blocks: may wait for the zone lock. Allocates: no (may munmap). Async-signal-safe: no.
 * Inside a reader: yes. */
BULKRCU_API void bulkrcu_free_page(void* page);

/* Moves every CPU's list back to the zone and drops pending refill requests; for a while
 * afterwards (5 s) the refill worker maps no new chunk.
 * Blocks: yes (zone lock, remote fences). Allocates: no. Async-signal-safe: no.
 * Inside a reader: yes. */
BULKRCU_API void bulkrcu_page_pool_drain(void);

/* Returns memory to the OS: kvfree's cached block pages go back to the pool first (and its
 * emergency reserve moves to the fullest chunk), then wholly free chunks are unmapped down to
 * the pool's floor (one chunk) and free runs of 16 or more pages inside partly used chunks are
 * given back with MADV_DONTNEED. Chunks that become wholly free are also returned
 * automatically, keeping one spare. Does not drain the per-CPU lists (bulkrcu_page_pool_drain).
 * Blocks: yes (locks, remote fences, munmap, madvise). Allocates: no (the reserve's move takes
 * free pages only, never a new chunk). Async-signal-safe: no. Inside a reader: yes. */
BULKRCU_API void bulkrcu_page_pool_shrink(void);

/* ---- private: the inline page fast paths (x86-64). Layout and names may change. ----------
 * The hit paths of bulkrcu_alloc_page_lockless, bulkrcu_alloc_page and bulkrcu_free_page are
 * one restartable sequence (rseq(2)) each on this CPU's list, inlined into the caller: no
 * call, no lock, no atomic read-modify-write, no fence; about 20 instructions a call. They run
 * only while the library has opened the fast path (bulkrcu__pool_fast.slots != NULL: rseq
 * mode, debug checks off, no fault injection); otherwise, and on every miss, full list,
 * locked slot, pending refill request or odd pointer, the exported function does the whole
 * job. Under ThreadSanitizer, with BULKRCU_NO_INLINE and inside the library, the exported
 * functions are always called. docs/POOL.md, "The lockless page". */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define BULKRCU__HAVE_POOL_FAST 1
/* Slot layout (src/pool/pool.cpp asserts it): 64 bytes per possible CPU; the lock word at 0
 * (nonzero: a remote side owns the list), the list's head word at 8, a statistic of the
 * library's trims at 16, and the statistics bumped by bulkrcu_alloc_page at 32,
 * bulkrcu_free_page at 40, the lockless call at 48. A head word is (first page | count), count
 * in its low 12 bits (pages are 4 KiB aligned and a list holds fewer than 4096 pages), 0 for an
 * empty list; a free page on a list starts with the head word of the pages below it. */
#define BULKRCU__PCP_SHIFT 6
#define BULKRCU__PCP_HEAD 8
#define BULKRCU__PCP_TRIMS 16
#define BULKRCU__PCP_ALLOCS 32
#define BULKRCU__PCP_FREES 40
#define BULKRCU__PCP_HITS 48
struct bulkrcu__pool_fast_line {
  void* slots;                 /* the per-CPU slots while the fast path is open, else NULL */
  unsigned long page_mask;     /* bulkrcu_page_size() - 1 */
  unsigned long low;           /* a lockless hit leaving fewer pages asks for a refill */
  unsigned long high;          /* the inline free leaves lists of `high` pages to the library */
  unsigned int refill_pending; /* nonzero: a refill request waits for the runtime thread */
};
/* One cache line, read-mostly; the fields are set before `slots` (release). */
extern BULKRCU_API struct bulkrcu__pool_fast_line bulkrcu__pool_fast;
extern BULKRCU_API long bulkrcu__rseq_offset; /* glibc's __rseq_offset (also in rcu.h) */
/* A lockless hit left fewer than `low` pages on this CPU's list: ask for a refill (atomics
 * only, no system call). Blocks: no. Allocates: no. Async-signal-safe: yes. */
BULKRCU_API void bulkrcu__pool_refill_low(void);

/* Pops this CPU's first page. Returns the page (and *left = the pages still on the list, and
 * the statistic at byte `stat_off` of the slot bumped), NULL when the list is empty, or
 * (void*)-1 when the slot's lock is held. The commit is the store of the next head word (the
 * popped page's first word); the count comes with the head word, so nothing else is read.
 * The statistic is bumped after the commit, on the slot the sequence ran on (a preemption
 * there may bump a slot another CPU now uses: a statistic, never the list). */
static inline __attribute__((always_inline)) void* bulkrcu__pool_pop(void* base, unsigned long stat_off,
                                                                     unsigned long* left) {
  void* node;
  unsigned long l;
  __asm__ __volatile__(BULKRCU__RSEQ_START
                       "shlq %[shift], %%rax\n\t"
                       "addq %[base], %%rax\n\t"
                       "movq $-1, %[node]\n\t"
                       "cmpl $0, (%%rax)\n\t"
                       "jnz 5f\n\t"
                       "movq %c[head](%%rax), %[left]\n\t"
                       "movq %[left], %[node]\n\t"
                       "andq $-4096, %[node]\n\t"
                       "jz 5f\n\t"
                       "movq (%[node]), %%rdx\n\t"
                       "movq %%rdx, %c[head](%%rax)\n\t" BULKRCU__RSEQ_END
                       "andl $4095, %k[left]\n\t"
                       "decq %[left]\n\t"
                       "incq (%%rax,%[stat])\n\t"
                       "5:\n\t"
                       : [node] "=&r"(node), [left] "=&r"(l)
                       : [off] "r"(bulkrcu__rseq_offset), [base] "r"(base), [stat] "r"(stat_off),
                         [shift] "i"(BULKRCU__PCP_SHIFT), [head] "i"(BULKRCU__PCP_HEAD)
                       : "rax", "rdx", "memory", "cc");
  *left = l;
  return node;
}

/* Pushes `page` (4 KiB aligned) onto this CPU's list unless the list already holds `high`
 * pages (high < 4096) or the slot's lock is held; bumps the statistic at `stat_off` after the
 * commit. Returns 0 when pushed, 1 when the slot was locked, 2 when the list was full (nothing
 * done in either case). The page's first word gets the old head word before the commit (the
 * store of page | (count + 1)); a restart rewrites it. */
static inline __attribute__((always_inline)) int bulkrcu__pool_push(void* base, void* page,
                                                                    unsigned long high,
                                                                    unsigned long stat_off) {
  __asm__ goto(BULKRCU__RSEQ_START
               "shlq %[shift], %%rax\n\t"
               "addq %[base], %%rax\n\t"
               "cmpl $0, (%%rax)\n\t"
               "jnz %l[locked]\n\t"
               "movq %c[head](%%rax), %%rcx\n\t"
               "movl %%ecx, %%edx\n\t"
               "andl $4095, %%edx\n\t"
               "cmpq %[high], %%rdx\n\t"
               "jae %l[full]\n\t"
               "leaq 1(%[page],%%rdx), %%rdx\n\t"
               "movq %%rcx, (%[page])\n\t"
               "movq %%rdx, %c[head](%%rax)\n\t" BULKRCU__RSEQ_END "incq (%%rax,%[stat])\n\t"
               :
               : [off] "r"(bulkrcu__rseq_offset), [base] "r"(base), [page] "r"(page), [high] "r"(high),
                 [stat] "r"(stat_off), [shift] "i"(BULKRCU__PCP_SHIFT), [head] "i"(BULKRCU__PCP_HEAD)
               : "rax", "rcx", "rdx", "memory", "cc"
               : locked, full);
  return 0;
locked:
  return 1;
full:
  return 2;
}
#endif /* x86-64 */

#if defined(__SANITIZE_THREAD__)
#define BULKRCU__POOL_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define BULKRCU__POOL_TSAN 1
#endif
#endif

#if defined(BULKRCU__HAVE_POOL_FAST) && !defined(BULKRCU__POOL_TSAN) && !defined(BULKRCU__BUILDING_LIBRARY)
#define BULKRCU__INLINE_POOL 1
/* (void*)-1 (locked) and NULL (empty) both fail `p - 1 < -2`. */
#define BULKRCU__POOL_IS_PAGE(p) ((unsigned long)(__UINTPTR_TYPE__)(p)-1 < (unsigned long)-2)
static inline __attribute__((always_inline)) void* bulkrcu__alloc_page_lockless_inline(void) {
  void* base = __atomic_load_n(&bulkrcu__pool_fast.slots, __ATOMIC_ACQUIRE);
  if (__builtin_expect(base != NULL, 1)) {
    unsigned long left;
    void* p = bulkrcu__pool_pop(base, BULKRCU__PCP_HITS, &left);
    if (__builtin_expect(BULKRCU__POOL_IS_PAGE(p), 1)) {
      if (__builtin_expect(left < __atomic_load_n(&bulkrcu__pool_fast.low, __ATOMIC_RELAXED), 0))
        bulkrcu__pool_refill_low();
      return p;
    }
  }
  return (bulkrcu_alloc_page_lockless)(); /* a miss: counted, and a refill asked, there */
}
static inline __attribute__((always_inline)) void* bulkrcu__alloc_page_inline(void) {
  void* base = __atomic_load_n(&bulkrcu__pool_fast.slots, __ATOMIC_ACQUIRE);
  if (__builtin_expect(base != NULL && !__atomic_load_n(&bulkrcu__pool_fast.refill_pending, __ATOMIC_RELAXED),
                       1)) {
    unsigned long left;
    void* p = bulkrcu__pool_pop(base, BULKRCU__PCP_ALLOCS, &left);
    if (__builtin_expect(BULKRCU__POOL_IS_PAGE(p), 1)) return p;
  }
  return (bulkrcu_alloc_page)(); /* refills from the zone, rings the runtime thread's doorbell */
}
static inline __attribute__((always_inline)) void bulkrcu__free_page_inline(void* page) {
  void* base = __atomic_load_n(&bulkrcu__pool_fast.slots, __ATOMIC_ACQUIRE);
  __UINTPTR_TYPE__ a = (__UINTPTR_TYPE__)page;
  if (__builtin_expect(base != NULL && a != 0 &&
                           (a & __atomic_load_n(&bulkrcu__pool_fast.page_mask, __ATOMIC_RELAXED)) == 0 &&
                           !__atomic_load_n(&bulkrcu__pool_fast.refill_pending, __ATOMIC_RELAXED),
                       1) &&
      __builtin_expect(
          bulkrcu__pool_push(base, page, __atomic_load_n(&bulkrcu__pool_fast.high, __ATOMIC_RELAXED),
                             BULKRCU__PCP_FREES) == 0,
          1))
    return;
  (bulkrcu_free_page)(page); /* NULL, misaligned, full list (trim), locked slot, doorbell */
}
#ifndef BULKRCU_NO_INLINE
/* The function-like macros inline the fast paths; `(bulkrcu_free_page)(p)` and the functions'
 * addresses still reach the exported functions. */
#define bulkrcu_alloc_page_lockless() bulkrcu__alloc_page_lockless_inline()
#define bulkrcu_alloc_page() bulkrcu__alloc_page_inline()
#define bulkrcu_free_page(page) bulkrcu__free_page_inline(page)
#endif
#endif

#ifdef __cplusplus
}
#endif

#endif /* BULKRCU_PAGE_POOL_H */
