// bulkrcu/src/kvfree/stats.h: the kvfree layer's counters (layer kvfree; includes base/).
//
// One global, g_counters, defined in kvfree.cpp with fill_stats. Every field is relaxed: they
// are statistics, and the budget's estimate (pending_bytes, blocks, pending_objs: budget.h),
// which orders nothing. They are kept off the cache lines the fast path reads (g_krcs, the
// percpu mode and rseq offset): a counter written by one CPU would otherwise evict them on the
// other. The per-retire-ish counter (the backlog of pointers handed to a CPU) lives in each
// CPU's Krc instead, and pointers freed by helpers are counted once per block (reclaim.cpp).
#pragma once

#include <atomic>
#include <cstdint>

#include "base/base.h"

namespace bulkrcu::detail::kvfree {

struct alignas(kCacheLine) KvfreeCounters {
  // The budget (budget.h): bytes and blocks charged and not yet credited.
  alignas(kCacheLine) std::atomic<std::uint64_t> pending_bytes{0};
  std::atomic<std::uint64_t> blocks{0};
  std::atomic<std::uint64_t> pending_objs{0};  // objects of unknown size in closed blocks
  std::atomic<std::uint64_t> throttles{0};
  // The monitor.
  alignas(kCacheLine) std::atomic<std::uint64_t> collected{0}, gps{0}, monitor_freed{0}, passes{0};
  // Retire fallbacks.
  alignas(kCacheLine) std::atomic<std::uint64_t> fb_head{0}, fb_inplace{0}, fb_reserve{0}, fb_sync{0};
  std::atomic<std::uint64_t> nowait_refused{0}, fallback_objects{0}, budget_hits{0};
  // Page sources (pages.h) and reclaim by retiring threads.
  alignas(kCacheLine) std::atomic<std::uint64_t> cache_hits{0}, cache_misses{0}, lockless{0};
  std::atomic<std::uint64_t> helped{0}, cursors_stolen{0}, drives{0};
  alignas(kCacheLine) std::atomic<std::uint64_t> helps_dry{0};
};
extern KvfreeCounters g_counters;

}  // namespace bulkrcu::detail::kvfree
