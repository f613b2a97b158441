/* bulkrcu/stats.h: counters for monitoring and tests (C11 and C++).
 *
 * Memory ordering: every counter is read with a relaxed load; a snapshot is not atomic as a
 * whole (two counters may come from slightly different moments). Counters only grow, except
 * the "pending", "registered" and gauge fields.
 */
#ifndef BULKRCU_STATS_H
#define BULKRCU_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "bulkrcu/export.h"

#ifdef __cplusplus
extern "C" {
#endif

struct bulkrcu_stats {
  /* grace-period engine */
  uint64_t grace_periods;           /* grace periods completed */
  uint64_t expedited_grace_periods; /* of which expedited */
  uint64_t synchronize_calls;       /* bulkrcu_synchronize + _expedited calls */
  uint64_t stall_warnings;          /* stall warnings printed */
  uint64_t reader_slots;            /* reader slots mapped */
  uint64_t readers_registered;      /* reader slots owned by live threads (gauge) */
  /* callbacks (bulkrcu_call) */
  uint64_t callbacks_queued;   /* bulkrcu_call calls (per-CPU counts, summed) */
  uint64_t callbacks_invoked;  /* callbacks that have run */
  uint64_t callbacks_pending;  /* queued - invoked: the whole backlog, swept or not (gauge) */
  uint64_t callbacks_overflow; /* queued on an overflow list (slot held by a sweep; rseq mode only) */
  /* configuration */
  uint64_t percpu_rseq;   /* 1: per-CPU data via rseq; 0: sched_getcpu + try-lock fallback */
  uint64_t reader_fences; /* 1: readers run full fences (no membarrier) */
  uint64_t nr_cpu_slots;  /* possible CPUs */
  /* page pool (bulkrcu/page_pool.h) */
  uint64_t pool_allocs;           /* pages handed out by bulkrcu_alloc_page and _lockless */
  uint64_t pool_frees;            /* pages given back by bulkrcu_free_page */
  uint64_t pool_lockless_hits;    /* bulkrcu_alloc_page_lockless returned a page */
  uint64_t pool_lockless_misses;  /* ... returned NULL */
  uint64_t pool_refill_requests;  /* lockless misses / low lists that asked the refill worker */
  uint64_t pool_refills;          /* batches moved zone -> a CPU list (direct and worker) */
  uint64_t pool_worker_refills;   /* ... of which by the refill worker */
  uint64_t pool_drains;           /* batches moved a CPU list -> zone (above high, drain) */
  uint64_t pool_chunks_mapped;    /* 2 MiB chunks mmap'ed (cumulative) */
  uint64_t pool_chunks_unmapped;  /* ... munmap'ed (cumulative) */
  uint64_t pool_chunks;           /* chunks mapped now (gauge) */
  uint64_t pool_pages_percpu;     /* pages on all CPU lists (gauge; per-list hints) */
  uint64_t pool_pages_percpu_max; /* pages on the fullest CPU list (gauge; hint) */
  uint64_t pool_pages_zone;       /* free pages in the zone (gauge) */
  /* kvfree (bulkrcu_kvfree, _defer, _defer_nowait, _kfree_head, C++ retire) */
  uint64_t kv_retired;              /* objects in closed blocks plus fallback objects */
  uint64_t kv_freed;                /* objects whose deleter has run */
  uint64_t kv_pending_objects;      /* retired - freed (gauge; excludes blocks still filling) */
  uint64_t kv_pending_bytes;        /* the budget's count (gauge): pages of blocks in use, plus the
                                       objects of closed blocks: malloc_usable_size of each free()
                                       pointer, sizeof(T) for C++ retire, 8 bytes an object of
                                       unknown size; objects of blocks still filling excluded */
  uint64_t kv_blocks_in_use;        /* block pages holding pointers (gauge) */
  uint64_t kv_grace_periods;        /* grace periods the monitor asked for */
  uint64_t kv_fallback_head;        /* two-argument form linked through its head (no page) */
  uint64_t kv_fallback_inplace;     /* block page from bulkrcu_alloc_page (lockless sources empty) */
  uint64_t kv_fallback_reserve;     /* block page from the emergency reserve (inside a reader) */
  uint64_t kv_fallback_synchronize; /* no page at all: waited for a grace period, freed inline */
  uint64_t kv_nowait_refused;       /* bulkrcu_defer_nowait returned false */
  uint64_t kv_cache_hits;           /* block pages from the per-CPU cache */
  uint64_t kv_cache_misses;         /* ... not there */
  uint64_t kv_lockless_pages;       /* block pages from bulkrcu_alloc_page_lockless */
  uint64_t kv_budget_hits;          /* retires that found the budget exceeded */
  uint64_t kv_freed_by_retirers;    /* freed by retiring threads (warm allocator caches) */
  uint64_t kv_freed_by_runtime;     /* freed by the runtime thread (idle CPUs, barriers, pressure) */
  uint64_t kv_budget_bytes;         /* BULKRCU_MAX_PENDING */
  uint64_t kv_monitor_passes;       /* passes of the runtime thread over the CPUs' blocks */
  uint64_t kv_cursors_stolen;       /* threads' reclaim blocks taken back by the runtime thread */
  uint64_t kv_retirer_passes;       /* lite monitor passes made by retiring threads (runtime late) */
  uint64_t kv_helps_dry;            /* helps that found nothing elapsed to free (tcache runs dry) */
  /* callbacks, continued */
  uint64_t callbacks_swept;              /* moved by the runtime thread into grace-period segments */
  uint64_t callbacks_invocation_threads; /* threads that run callbacks now (gauge) */
  /* kvfree, continued */
  uint64_t kv_throttles;       /* blocking retires that waited for reclaim (over the budget) */
  uint64_t kv_pending_unsized; /* objects of unknown size in closed blocks (gauge) */
  uint64_t kv_budget_objects;  /* BULKRCU_MAX_PENDING_OBJECTS */
  /* object caches (bulkrcu_cache_free_rcu), over every cache; gauges */
  uint64_t cache_pending_objects; /* retired objects waiting for their grace period: sealed
                                     arrays and overflowed objects (each CPU's array still
                                     filling excluded); 0 once the newest sealed array's grace
                                     period has elapsed, before any cache promotes them */
  uint64_t cache_pending_bytes;   /* their share of the budget (BULKRCU_MAX_PENDING): objects'
                                     bytes plus each sealed array's page */
  /* grace-period engine, continued */
  uint64_t no_reader_grace_periods; /* of grace_periods: completed without membarrier because no
                                       thread owned a reader slot (no thread had ever read, or
                                       every one that had has exited) */
};

/* Copies min(size, sizeof(struct bulkrcu_stats)) bytes of a fresh snapshot into *out; pass
 * sizeof(*out) so that a program built against an older header keeps working.
 * Blocks: no. Allocates: no. Async-signal-safe: no (walks shared lists with relaxed loads; it
 * takes no lock, but is not meant for handlers). Inside a reader: yes. */
BULKRCU_API void bulkrcu_get_stats(struct bulkrcu_stats* out, size_t size);

#ifdef __cplusplus
}
#endif

#endif /* BULKRCU_STATS_H */
