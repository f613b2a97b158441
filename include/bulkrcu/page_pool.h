/* bulkrcu/page_pool.h: bulkrcu's private page pool (C11 and C++).
 *
 * Pages of bulkrcu_page_size() bytes, page-aligned. Behind the API: a buddy allocator (orders
 * 0..9) over 2 MiB-aligned chunks from mmap(2), guarded by the zone lock, and per-CPU lists of
 * order-0 pages in front of it (count, high, batch), reached through rseq (or, without rseq,
 * sched_getcpu() and the list's try-lock). The lockless allocation takes only from the current
 * CPU's list and returns NULL rather than lock, as the kernel RFC "mm: Add
 * __rcu_alloc_page_lockless() func." proposes; a runtime thread refills lists that ran dry or
 * fell below their low mark. docs/POOL.md has the design, the sizing and the debug mode.
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

#ifdef __cplusplus
}
#endif

#endif /* BULKRCU_PAGE_POOL_H */
