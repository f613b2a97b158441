/* bulkrcu/page_pool.h: bulkrcu's private page pool (C11 and C++).
 *
 * Pages of bulkrcu_page_size() bytes, page-aligned. Behind the API: a buddy allocator (orders
 * 0..9) over 2 MiB-aligned chunks from mmap(2), guarded by the zone lock, and per-CPU lists of
 * order-0 pages in front of it (count, high, batch), reached through rseq. The lockless
 * allocation takes only from the current CPU's list and returns NULL rather than lock, as the
 * kernel RFC "mm: Add __rcu_alloc_page_lockless() func." proposes; a runtime thread refills
 * lists that ran dry or fell below their low mark.
 *
 * Memory ordering: a page returned by either allocation call is owned by the caller alone;
 * everything the previous owner wrote before bulkrcu_free_page happens-before the allocation
 * that returns the page again. Page contents are not preserved (debug mode poisons them).
 */
#ifndef BULKRCU_PAGE_POOL_H
#define BULKRCU_PAGE_POOL_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The system page size. Blocks: no. Allocates: no. Async-signal-safe: yes. Inside a reader: yes. */
size_t bulkrcu_page_size(void);

/* A page from this CPU's list, else from the zone (may take the zone lock and map a chunk).
 * Returns NULL with errno = ENOMEM only when the OS refuses memory.
 * Blocks: may wait for the zone lock. Allocates: may mmap(2) a 2 MiB chunk.
 * Async-signal-safe: no. Inside a reader: yes. */
void* bulkrcu_alloc_page(void);

/* A page from this CPU's list only: never locks, never makes a system call, never blocks.
 * Returns NULL when the list is empty (and asks the runtime thread to refill it).
 * Blocks: no. Allocates: no. Async-signal-safe: yes. Inside a reader: yes. */
void* bulkrcu_alloc_page_lockless(void);

/* Returns a page obtained from this pool to this CPU's list (above `high`, `batch` pages go
 * back to the zone under its lock). NULL is a no-op. In debug mode (BULKRCU_POOL_DEBUG=1), a
 * double free, a foreign pointer or a misaligned pointer aborts with a message.
 * Blocks: may wait for the zone lock. Allocates: no. Async-signal-safe: no. Inside a reader: yes. */
void bulkrcu_free_page(void* page);

/* Moves every CPU's list back to the zone. Blocks: yes (zone lock, remote fences).
 * Allocates: no. Async-signal-safe: no. Inside a reader: yes. */
void bulkrcu_page_pool_drain(void);

/* Returns wholly free chunks to the OS (munmap), down to the pool's floor.
 * Blocks: yes. Allocates: no. Async-signal-safe: no. Inside a reader: yes. */
void bulkrcu_page_pool_shrink(void);

#ifdef __cplusplus
}
#endif

#endif /* BULKRCU_PAGE_POOL_H */
