// kvfree: the help sequence (src/kvfree/reclaim.h). A retiring thread that helps reclaim is
// stopped inside its help by a test hook, as the scheduler stops a thread with more threads
// than CPUs: grace periods must go on without it (the help is not a read-side critical
// section), while the steal of its cursor and the kvfree barrier must wait until it has ended.
// Built against bulkrcu_shrunk (blocks of 4 pointers, helps of 3).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <thread>

#include "bulkrcu/rcu.h"
#include "gp/gp.h"
#include "kvfree/block.h"
#include "kvfree/reclaim.h"
#include "test_support.h"

namespace {

using bulkrcu_test::nap_us;
using bulkrcu_test::stats;
using bulkrcu_test::wait_until_for;

namespace kv = bulkrcu::detail::kvfree;

std::atomic<bool> g_arm{false};      // the next help that frees something on the retirer stops
std::atomic<bool> g_stopped{false};  // a help is stopped in the hook
std::atomic<bool> g_release{false};
std::atomic<long> g_cursor_left{0};  // pointers the stopped help's cursor had not freed yet
thread_local bool t_retirer = false;

// Holds the calling thread (the retirer, inside a help) until the test releases it.
void stop_here() noexcept {
  g_arm = false;
  g_stopped = true;
  while (!g_release.load()) nap_us(100);
  g_stopped = false;
}

// A kvfree barrier on its own thread, started while the retirer is stopped inside a help.
// Grace periods go on meanwhile (the barrier's own, the monitor's passes and steals); the
// barrier must not return while the help is in flight. Joined by the destructor.
struct BarrierWaiter {
  std::atomic<bool> done{false};
  std::thread t{[this] {
    bulkrcu_kvfree_barrier();
    done = true;
  }};
  void expect_waiting(int rounds) {
    for (int i = 0; i < rounds; ++i) {
      bulkrcu_synchronize();
      nap_us(5000);
    }
    EXPECT_FALSE(done.load()) << "the kvfree barrier returned while a help was in flight";
  }
  ~BarrierWaiter() { t.join(); }
};

// Stops a help that freed pointers and keeps a cursor (a chain with pointers left to free).
void stop_in_help(long freed) noexcept {
  if (!t_retirer || freed <= 0 || !g_arm.load()) return;
  long left = 0;
  for (auto* b = static_cast<kv::Block*>(bulkrcu::detail::gp::thread_word(bulkrcu__tls_reader)->load()); b;
       b = b->next)
    left += b->done;
  if (left == 0) return;
  g_cursor_left = left;
  stop_here();
}

class KvfreeHelp : public ::testing::Test {
 protected:
  void SetUp() override {
    bulkrcu_kvfree_barrier();
    g_arm = false;
    g_release = false;
    kv::set_help_hook(stop_in_help);
  }
  void TearDown() override {
    g_release = true;
    kv::set_help_hook(nullptr);
  }
};

// Retires on its own thread until one of its helps frees pointers, and stops there.
std::thread start_retirer() {
  g_arm = true;
  return std::thread([] {
    t_retirer = true;
    for (int round = 0; g_arm.load(); ++round) {
      for (int i = 0; i < 64 && g_arm.load(); ++i) bulkrcu_kvfree(malloc(24));
      if (round % 8 == 7) bulkrcu_synchronize();  // blocks elapse: helps find ready pointers
    }
  });
}

TEST_F(KvfreeHelp, AThreadStoppedInsideAHelpDelaysNoGracePeriod) {
  std::thread retirer = start_retirer();
  ASSERT_TRUE(wait_until_for([] { return g_stopped.load(); }, 120)) << "no help freed anything";
  // Before 2026-12-04 the help ran inside a read-side critical section: these waited for it.
  std::atomic<int> done{0};
  std::thread syncer([&] {
    for (int i = 0; i < 3; ++i) {
      bulkrcu_synchronize();
      done.fetch_add(1);
    }
  });
  const bool synced = wait_until_for([&] { return done.load() == 3; }, 60);
  g_release = true;
  syncer.join();
  retirer.join();
  EXPECT_TRUE(synced) << "bulkrcu_synchronize waited for a thread stopped inside a kvfree help";
  bulkrcu_kvfree_barrier();
}

TEST_F(KvfreeHelp, TheBarrierWaitsForAHelpInFlight) {
  std::thread retirer = start_retirer();
  ASSERT_TRUE(wait_until_for([] { return g_stopped.load(); }, 120)) << "no help freed anything";
  {
    // The stopped help still holds pointers it claimed but has not freed.
    BarrierWaiter waiter;
    waiter.expect_waiting(20);
    g_release = true;
    EXPECT_TRUE(wait_until_for([&] { return waiter.done.load(); }, 120)) << "the barrier never returned";
  }
  retirer.join();
  bulkrcu_kvfree_barrier();
  const bulkrcu_stats s = stats();
  EXPECT_EQ(s.kv_pending_objects, 0u);
}

// Stops a help that took a hand-over chain, before it moves the chain's other blocks onto
// its CPU's ready list.
std::atomic<long> g_chain_blocks{0};
void stop_before_ready_push(long n) noexcept {
  if (!t_retirer || n >= 0 || !g_arm.load()) return;
  g_chain_blocks = -n;
  stop_here();
}

// The barrier's collection runs while that help is stopped, so the rest of the chain reaches a
// ready list after it: the barrier must still free it before it returns (its steal stage takes
// the ready lists again, after the help fence has seen the help end).
TEST_F(KvfreeHelp, TheBarrierFreesAChainMovedToAReadyListDuringIt) {
  kv::set_help_hook(stop_before_ready_push);
  std::thread retirer = start_retirer();
  ASSERT_TRUE(wait_until_for([] { return g_stopped.load(); }, 120)) << "no help took a hand-over chain";
  {
    BarrierWaiter waiter;
    waiter.expect_waiting(10);
    g_release = true;
    retirer.join();  // retires nothing after its help: the barrier covers every retire
  }
  const bulkrcu_stats s = stats();
  EXPECT_EQ(s.kv_pending_objects, 0u) << "the barrier left pointers of a " << g_chain_blocks.load()
                                      << "-block hand-over chain on a ready list";
}

// The monitor steals the stopped thread's cursor on a drain-timer pass; the stolen blocks wait
// for the help to end (they stay pending however many passes run meanwhile) and then go back
// to their CPU with the pointers it had not freed: every pointer is freed exactly once (ASan
// reports a double free) and none is lost.
TEST_F(KvfreeHelp, AStolenCursorWaitsForItsHelpAndLosesNothing) {
  const bulkrcu_stats before = stats();
  std::thread retirer = start_retirer();
  ASSERT_TRUE(wait_until_for([] { return g_stopped.load(); }, 120)) << "no help freed anything";
  const bool stolen = wait_until_for([] { return !kv::cursors_pending(); }, 60);
  // Four more drain-timer passes (BULKRCU_DRAIN_MS, 100 ms): each reclaims idle CPUs' ready
  // lists, so a stolen cursor handed back before its help ended would be freed by now.
  for (int i = 0; i < 8; ++i) {
    bulkrcu_synchronize();
    nap_us(50000);
  }
  const bulkrcu_stats stopped = stats();
  g_release = true;
  retirer.join();
  ASSERT_TRUE(stolen) << "no drain-timer pass stole the stopped thread's cursor";
  EXPECT_GE(stopped.kv_pending_objects, static_cast<std::uint64_t>(g_cursor_left.load()))
      << "the stolen cursor was reclaimed while its help was still in flight";
  bulkrcu_kvfree_barrier();
  const bulkrcu_stats after = stats();
  EXPECT_EQ(after.kv_pending_objects, 0u);
  EXPECT_EQ(after.kv_retired - before.kv_retired, after.kv_freed - before.kv_freed);
}

}  // namespace
