// bulkrcu/src/runtime/stats_dump.cpp: BULKRCU_STATS=1 prints the statistics to stderr when the
// process exits, one `bulkrcu.<name> <value>` line per field of struct bulkrcu_stats, in the
// header's order. The names are the field names: scripts may rely on them.
#include "runtime/stats_dump.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cstdio>

#include "bulkrcu/stats.h"

namespace bulkrcu::detail::runtime {
namespace {

// Every field of struct bulkrcu_stats, in order. A field added to the struct must be added
// here too (the static_assert below says so).
#define BULKRCU_STATS_FIELDS(X)   \
  X(grace_periods)                \
  X(expedited_grace_periods)      \
  X(synchronize_calls)            \
  X(stall_warnings)               \
  X(reader_slots)                 \
  X(readers_registered)           \
  X(callbacks_queued)             \
  X(callbacks_invoked)            \
  X(callbacks_pending)            \
  X(callbacks_overflow)           \
  X(percpu_rseq)                  \
  X(reader_fences)                \
  X(nr_cpu_slots)                 \
  X(pool_allocs)                  \
  X(pool_frees)                   \
  X(pool_lockless_hits)           \
  X(pool_lockless_misses)         \
  X(pool_refill_requests)         \
  X(pool_refills)                 \
  X(pool_worker_refills)          \
  X(pool_drains)                  \
  X(pool_chunks_mapped)           \
  X(pool_chunks_unmapped)         \
  X(pool_chunks)                  \
  X(pool_pages_percpu)            \
  X(pool_pages_percpu_max)        \
  X(pool_pages_zone)              \
  X(kv_retired)                   \
  X(kv_freed)                     \
  X(kv_pending_objects)           \
  X(kv_pending_bytes)             \
  X(kv_blocks_in_use)             \
  X(kv_grace_periods)             \
  X(kv_fallback_head)             \
  X(kv_fallback_inplace)          \
  X(kv_fallback_reserve)          \
  X(kv_fallback_synchronize)      \
  X(kv_nowait_refused)            \
  X(kv_cache_hits)                \
  X(kv_cache_misses)              \
  X(kv_lockless_pages)            \
  X(kv_budget_hits)               \
  X(kv_freed_by_retirers)         \
  X(kv_freed_by_runtime)          \
  X(kv_budget_bytes)              \
  X(kv_monitor_passes)            \
  X(kv_cursors_stolen)            \
  X(kv_retirer_passes)            \
  X(kv_helps_dry)                 \
  X(callbacks_swept)              \
  X(callbacks_invocation_threads) \
  X(kv_throttles)                 \
  X(kv_pending_unsized)           \
  X(kv_budget_objects)            \
  X(cache_pending_objects)        \
  X(cache_pending_bytes)          \
  X(no_reader_grace_periods)

#define BULKRCU_COUNT_FIELD(name) +1
static_assert(sizeof(bulkrcu_stats) == sizeof(uint64_t) * (0 BULKRCU_STATS_FIELDS(BULKRCU_COUNT_FIELD)),
              "struct bulkrcu_stats changed: list every field in BULKRCU_STATS_FIELDS (stats_dump.cpp)");
#undef BULKRCU_COUNT_FIELD

void dump_at_exit() {
  bulkrcu_stats s;
  bulkrcu_get_stats(&s, sizeof s);
  char buf[8192];
  size_t n = 0;
#define BULKRCU_PRINT_FIELD(name)                                                          \
  if (n < sizeof buf)                                                                      \
    n += static_cast<size_t>(snprintf(buf + n, sizeof buf - n, "bulkrcu." #name " %llu\n", \
                                      static_cast<unsigned long long>(s.name)));
  BULKRCU_STATS_FIELDS(BULKRCU_PRINT_FIELD)
#undef BULKRCU_PRINT_FIELD
  if (n > sizeof buf) n = sizeof buf;
  // One write: the lines stay together even when other threads print at exit.
  for (size_t off = 0; off < n;) {
    ssize_t w = write(2, buf + off, n - off);
    if (w <= 0) break;
    off += static_cast<size_t>(w);
  }
}

}  // namespace

void stats_dump_install() noexcept {
  const char* v = getenv("BULKRCU_STATS");
  if (v && *v && strcmp(v, "0") != 0) atexit(dump_at_exit);
}

}  // namespace bulkrcu::detail::runtime
