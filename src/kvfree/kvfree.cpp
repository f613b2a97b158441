// bulkrcu/src/kvfree/kvfree.cpp: the layer's set-up, fork child and statistics. The protocols
// live in their own files (docs/KVFREE.md, "Where each protocol lives"): block.h (layout and
// states), retire.{h,cpp}, reclaim.{h,cpp}, monitor.{h,cpp}, budget.{h,cpp}, pages.{h,cpp},
// magazine.{h,cpp}.
#include "kvfree/kvfree.h"

#include "bulkrcu/page_pool.h"
#include "callback/callback.h"
#include "kvfree/magazine.h"
#include "kvfree/monitor.h"
#include "kvfree/reclaim.h"
#include "kvfree/stats.h"

namespace bulkrcu::detail::kvfree {

constinit KrcArray g_krcs{nullptr};
std::size_t g_page = 0;
std::size_t g_capacity = 0;
KvfreeCounters g_counters;

void init_sizes() noexcept {
  if (g_page) return;
  std::size_t page = bulkrcu_page_size();
#ifdef BULKRCU_TESTING
  g_capacity = kTestBlockCapacity;
#else
  g_capacity = (page - sizeof(Block)) / sizeof(void*);
#endif
  g_page = page;
}

namespace {
__attribute__((constructor(104))) void kvfree_init() {
  init_sizes();
  (void)krcs();
  init_monitor();
}
}  // namespace

void after_fork_child() noexcept {
  monitor_after_fork_child();
  // Threads that held a slot lock at fork time do not exist in the child.
  if (Krc* base = g_krcs.load(std::memory_order_acquire))
    for (int i = 0; i < nr_slots(); ++i) base[i].lock.unlock();
  reclaim_after_fork_child();
  mag::after_fork_child();
}

void fill_stats(bulkrcu_stats* s) noexcept {
  const KvfreeCounters& c = g_counters;
  const auto ld = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  s->kv_freed_by_retirers = ld(c.helped);
  s->kv_freed_by_runtime = ld(c.monitor_freed);
  s->kv_fallback_synchronize = ld(c.fb_sync);
  s->kv_freed =
      s->kv_freed_by_retirers + s->kv_freed_by_runtime + s->kv_fallback_synchronize + cb::stats().head_frees;
  s->kv_retired = ld(c.collected) + ld(c.fallback_objects);
  s->kv_pending_objects = s->kv_retired > s->kv_freed ? s->kv_retired - s->kv_freed : 0;
  s->kv_pending_bytes = ld(c.pending_bytes);
  s->kv_blocks_in_use = ld(c.blocks);
  s->kv_grace_periods = ld(c.gps);
  s->kv_fallback_head = ld(c.fb_head);
  s->kv_fallback_inplace = ld(c.fb_inplace);
  s->kv_fallback_reserve = ld(c.fb_reserve);
  s->kv_nowait_refused = ld(c.nowait_refused);
  s->kv_cache_hits = ld(c.cache_hits);
  s->kv_cache_misses = ld(c.cache_misses);
  s->kv_lockless_pages = ld(c.lockless);
  s->kv_budget_hits = ld(c.budget_hits);
  s->kv_budget_bytes = config().max_pending_bytes;
  s->kv_monitor_passes = ld(c.passes);
  s->kv_cursors_stolen = ld(c.cursors_stolen);
  s->kv_retirer_passes = ld(c.drives);
  s->kv_helps_dry = ld(c.helps_dry);
  s->kv_throttles = ld(c.throttles);
  s->kv_pending_unsized = ld(c.pending_objs);
  s->kv_budget_objects = config().max_pending_objects;
}

}  // namespace bulkrcu::detail::kvfree
