// The memory budget under a flood, in a process started with BULKRCU_MAX_PENDING=64K (main()
// re-executes this binary with it set, before anything reads the configuration).
#include <gtest/gtest.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "bulkrcu/rcu.h"
#include "bulkrcu/stats.h"

namespace {

TEST(KvfreeBudget, BudgetHoldsUnderAFlood) {
  // The flood is throttled, and the pending estimate never exceeds the budget by more than
  // one block per CPU (x2 for the block being replaced while it closes).
  {
    {
      bulkrcu_stats s0;
      bulkrcu_get_stats(&s0, sizeof s0);
      const std::uint64_t budget = s0.kv_budget_bytes;
      std::uint64_t peak = 0;
      for (int i = 0; i < 200000; ++i) {
        bulkrcu_kvfree(malloc(64));
        if (i % 64 == 0) {
          bulkrcu_stats s;
          bulkrcu_get_stats(&s, sizeof s);
          if (s.kv_pending_bytes > peak) peak = s.kv_pending_bytes;
        }
      }
      bulkrcu_stats s;
      bulkrcu_get_stats(&s, sizeof s);
      const std::uint64_t slack = s.nr_cpu_slots * (4096 + 4 * 128) * 2;
      bool ok = budget == 64 * 1024 && s.kv_budget_hits > 0 && peak <= budget + slack;
      if (!ok)
        fprintf(stderr, "budget=%lu peak=%lu hits=%lu\n", (unsigned long)budget, (unsigned long)peak,
                (unsigned long)s.kv_budget_hits);
      EXPECT_TRUE(ok);
    }
  }
}

TEST(KvfreeBudget, NowaitRefusesAboveTheBudget) {
  // Retires inside a reader never wait, so they can push the estimate over the budget; then
  // the nowait form must refuse.
  bulkrcu_read_lock();
  for (int i = 0; i < 4000; ++i) bulkrcu_kvfree(malloc(64));
  bulkrcu_stats s;
  bulkrcu_get_stats(&s, sizeof s);
  bool refused = false;
  if (s.kv_pending_bytes > s.kv_budget_bytes) {
    void* p = malloc(8);
    refused = !bulkrcu_defer_nowait(free, p);
    if (refused) free(p);
  }
  bulkrcu_read_unlock();
  EXPECT_GT(s.kv_pending_bytes, s.kv_budget_bytes);
  EXPECT_TRUE(refused);
  bulkrcu_kvfree_barrier();
}

}  // namespace

int main(int argc, char** argv) {
  if (getenv("BULKRCU_BUDGET_TEST_CHILD") == nullptr) {
    setenv("BULKRCU_MAX_PENDING", "64K", 1);
    setenv("BULKRCU_BUDGET_TEST_CHILD", "1", 1);
    execv("/proc/self/exe", argv);
    perror("execv");
    return 1;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
