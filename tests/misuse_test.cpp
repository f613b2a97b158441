// Misuse fails loudly: each case runs in a death-test child process and must abort with a
// message that names the mistake.
#include <gtest/gtest.h>

#include <thread>

#include "bulkrcu/rcu.h"
#include "bulkrcu/rcu.hpp"

namespace {

class Misuse : public testing::Test {
 protected:
  // The library has a runtime thread: re-execute the test binary for each death test instead
  // of forking a copy of a multi-threaded process.
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(Misuse, SynchronizeInsideReader) {
  EXPECT_DEATH(
      {
        bulkrcu_read_lock();
        bulkrcu_synchronize();
      },
      "bulkrcu_synchronize\\(\\) called inside a read-side critical section");
}

TEST_F(Misuse, SynchronizeInsideNestedReader) {
  EXPECT_DEATH(
      {
        bulkrcu_read_lock();
        bulkrcu_read_lock();
        bulkrcu_read_unlock();
        bulkrcu_synchronize();  // still inside the outer section
      },
      "bulkrcu_synchronize\\(\\) called inside a read-side critical section");
}

TEST_F(Misuse, SynchronizeExpeditedInsideReader) {
  EXPECT_DEATH(
      {
        bulkrcu_read_lock();
        bulkrcu_synchronize_expedited();
      },
      "bulkrcu_synchronize_expedited\\(\\) called inside a read-side critical section");
}

TEST_F(Misuse, CondSynchronizeInsideReader) {
  EXPECT_DEATH(
      {
        bulkrcu_read_lock();
        bulkrcu_cond_synchronize(bulkrcu_get_state());
      },
      "bulkrcu_cond_synchronize\\(\\) called inside a read-side critical section");
}

TEST_F(Misuse, CondSynchronizeInsideReaderEvenWhenElapsed) {
  // The check does not depend on whether the wait would be needed.
  const unsigned long cookie = bulkrcu_get_state();
  bulkrcu_synchronize();
  ASSERT_TRUE(bulkrcu_poll_state(cookie));
  EXPECT_DEATH(
      {
        bulkrcu_read_lock();
        bulkrcu_cond_synchronize(cookie);
      },
      "bulkrcu_cond_synchronize\\(\\) called inside a read-side critical section");
}

TEST_F(Misuse, BarrierInsideReader) {
  EXPECT_DEATH(
      {
        bulkrcu_read_lock();
        bulkrcu_barrier();
      },
      "bulkrcu_barrier\\(\\) called inside a read-side critical section");
}

TEST_F(Misuse, CxxSynchronizeAndBarrierInsideScopedLock) {
  EXPECT_DEATH(
      {
        std::scoped_lock lock(bulkrcu::rcu_default_domain());
        bulkrcu::rcu_synchronize();
      },
      "bulkrcu_synchronize\\(\\) called inside a read-side critical section");
  EXPECT_DEATH(
      {
        std::scoped_lock lock(bulkrcu::rcu_default_domain());
        bulkrcu::rcu_barrier();  // waits for kvfree and callbacks: bulkrcu_kvfree_barrier
      },
      "bulkrcu_kvfree_barrier\\(\\) called inside a read-side critical section");
}

void barrier_cb(bulkrcu_head*) { bulkrcu_barrier(); }

TEST_F(Misuse, BarrierInsideCallback) {
  EXPECT_DEATH(
      {
        static bulkrcu_head h;
        bulkrcu_call(&h, barrier_cb);
        bulkrcu_barrier();  // never returns: the callback aborts the process first
      },
      "bulkrcu_barrier\\(\\) called from inside an RCU callback");
}

TEST_F(Misuse, UnlockWithoutLockOnUnseenThread) {
  EXPECT_DEATH(
      {
        std::thread t([] { bulkrcu_read_unlock(); });  // bulkrcu never saw this thread
        t.join();
      },
      "bulkrcu_read_unlock\\(\\) called without a matching bulkrcu_read_lock\\(\\)");
}

TEST_F(Misuse, UnlockWithoutLockOnRegisteredThread) {
  EXPECT_DEATH(
      {
        bulkrcu_read_lock();
        bulkrcu_read_unlock();
        bulkrcu_read_unlock();
      },
      "bulkrcu_read_unlock\\(\\) called without a matching bulkrcu_read_lock\\(\\)");
}

TEST_F(Misuse, NestedOverUnlock) {
  EXPECT_DEATH(
      {
        bulkrcu_read_lock();
        bulkrcu_read_lock();
        bulkrcu_read_unlock();
        bulkrcu_read_unlock();
        bulkrcu_read_unlock();
      },
      "bulkrcu_read_unlock\\(\\) called without a matching bulkrcu_read_lock\\(\\)");
}

TEST_F(Misuse, OutOfLineUnlockWithoutLock) {
  EXPECT_DEATH(
      {
        std::thread t([] { (bulkrcu_read_unlock)(); });
        t.join();
      },
      "bulkrcu_read_unlock\\(\\) called without a matching bulkrcu_read_lock\\(\\)");
}

// The same calls outside a reader are fine (the checks do not fire spuriously).
TEST_F(Misuse, CorrectUseDoesNotAbort) {
  bulkrcu_read_lock();
  bulkrcu_read_unlock();
  bulkrcu_synchronize();
  bulkrcu_synchronize_expedited();
  bulkrcu_cond_synchronize(bulkrcu_get_state());
  bulkrcu_barrier();
  SUCCEED();
}

}  // namespace
