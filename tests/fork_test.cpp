// fork(): the child can read, synchronize, call and barrier (its runtime thread restarts), also
// when another parent thread was inside a reader, and when callbacks were pending at fork time.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "bulkrcu/rcu.h"
#include "bulkrcu/stats.h"
#include "test_support.h"

using namespace bulkrcu_test;

#if BULKRCU_TSAN
// The children of these tests start threads (the runtime thread, readers); TSan refuses that
// after a multi-threaded fork unless told otherwise.
extern "C" const char* __tsan_default_options() { return "die_after_fork=0"; }
#endif

namespace {

std::atomic<int> g_child_cb_runs{0};
void child_cb(bulkrcu_head*) { g_child_cb_runs.fetch_add(1); }

// The child's checks; returns a bit mask of failures (0 = all good).
int child_checks() {
  int fail = 0;
  bulkrcu_read_lock();
  if (!bulkrcu_read_lock_held()) fail |= 1;
  const unsigned long cookie = bulkrcu_get_state();
  if (bulkrcu_poll_state(cookie)) fail |= 2;
  bulkrcu_read_unlock();
  bulkrcu_synchronize();
  if (!bulkrcu_poll_state(cookie)) fail |= 4;
  bulkrcu_synchronize_expedited();
  static bulkrcu_head heads[16];
  g_child_cb_runs = 0;
  for (auto& h : heads) bulkrcu_call(&h, child_cb);
  bulkrcu_barrier();
  if (g_child_cb_runs.load() != 16) fail |= 8;
  const unsigned long polled = bulkrcu_start_poll();
  wait_until([&] { return bulkrcu_poll_state(polled); });
  // A new thread in the child reads and exits.
  std::thread t([] {
    bulkrcu_read_lock();
    bulkrcu_read_unlock();
  });
  t.join();
  bulkrcu_synchronize();
  return fail;
}

// Forks, runs child_checks() in the child, returns the child's exit status.
int fork_and_check() {
  pid_t pid = fork();
  if (pid == 0) {
    alarm(120);  // deadlock guard only: a hung child fails the test instead of hanging it
    _exit(child_checks());
  }
  int status = -1;
  if (pid < 0 || waitpid(pid, &status, 0) != pid) return -1;
  return status;
}

TEST(Fork, ChildCanReadSynchronizeCallAndBarrier) {
  bulkrcu_synchronize();  // the parent has used everything once
  int status = fork_and_check();
  ASSERT_TRUE(WIFEXITED(status)) << "child died, status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  // The parent keeps working too.
  static bulkrcu_head h;
  g_child_cb_runs = 0;
  bulkrcu_call(&h, child_cb);
  bulkrcu_barrier();
  EXPECT_EQ(g_child_cb_runs.load(), 1);
}

TEST(Fork, ChildWhileAnotherParentThreadIsInsideReader) {
#if BULKRCU_TSAN
  // TSan cannot follow threads started in a child forked from a process with several threads
  // ("dup thread with used id" when a new thread reuses a vanished parent thread's id).
  GTEST_SKIP() << "ThreadSanitizer limitation: threads started after a multi-threaded fork";
#endif
  SectionHolder reader({}, 2);
  int status = fork_and_check();
  reader.release_and_join();
  ASSERT_TRUE(WIFEXITED(status)) << "child died (a grace period stalled on the vanished reader?), status "
                                 << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(Fork, ChildWithCallbacksPendingInParent) {
#if BULKRCU_TSAN
  // TSan cannot follow threads started in a child forked from a process with several threads
  // ("dup thread with used id" when a new thread reuses a vanished parent thread's id).
  GTEST_SKIP() << "ThreadSanitizer limitation: threads started after a multi-threaded fork";
#endif
  // A reader holds the parent's callbacks back at fork time: both processes must run them.
  SectionHolder reader;
  static bulkrcu_head pending[8];
  g_child_cb_runs = 0;
  for (auto& h : pending) bulkrcu_call(&h, child_cb);
  // The runtime thread is inside the grace period those callbacks need, waiting for the reader.
  wait_until([] { return gp_in_progress(); });
  pid_t pid = fork();
  if (pid == 0) {
    alarm(120);
    bulkrcu_barrier();  // the parent's 8 pending callbacks run in the child as well
    _exit(g_child_cb_runs.load() == 8 ? 0 : 1);
  }
  ASSERT_GT(pid, 0);
  int status = -1;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  reader.release_and_join();
  bulkrcu_barrier();
  EXPECT_EQ(g_child_cb_runs.load(), 8);
  ASSERT_TRUE(WIFEXITED(status)) << "child died, status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

// Fork while a synchronize in another thread waits for a reader of a third thread: the fork
// must not wait for that grace period (the reader leaves only after the fork returns), and the
// child, where both threads are gone, abandons it and runs its own.
TEST(Fork, ChildWhileSynchronizeWaitsForReader) {
#if BULKRCU_TSAN
  // TSan cannot follow threads started in a child forked from a process with several threads
  // ("dup thread with used id" when a new thread reuses a vanished parent thread's id).
  GTEST_SKIP() << "ThreadSanitizer limitation: threads started after a multi-threaded fork";
#endif
  std::atomic<bool> sync_done{false};
  SectionHolder reader;
  std::thread syncer([&] {
    bulkrcu_synchronize();
    sync_done = true;
  });
  wait_until([] { return gp_in_progress(); });
  int status = fork_and_check();
  const bool done_before_release = sync_done.load();
  reader.release_and_join();
  syncer.join();
  EXPECT_FALSE(done_before_release);
  ASSERT_TRUE(WIFEXITED(status)) << "child died, status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

// Fork while other threads keep running grace periods and callbacks.
TEST(Fork, RepeatedForksUnderLoad) {
#if defined(__SANITIZE_ADDRESS__)
#define FORK_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FORK_TEST_ASAN 1
#endif
#endif
#ifdef FORK_TEST_ASAN
  // LLVM 14's ASan allocator takes no lock around fork(): a child forked while another thread
  // is inside malloc deadlocks in the allocator (seen: the child's new thread stuck in
  // SizeClassAllocator64::GetFromAllocator). glibc's malloc is fork-safe; Release runs it.
  GTEST_SKIP() << "AddressSanitizer limitation: its allocator is not fork-safe under load";
#endif
#if BULKRCU_TSAN
  // TSan cannot follow threads started in a child forked from a process with several threads
  // ("dup thread with used id" when a new thread reuses a vanished parent thread's id).
  GTEST_SKIP() << "ThreadSanitizer limitation: threads started after a multi-threaded fork";
#endif
  std::atomic<bool> stop{false};
  std::thread syncer([&] {
    while (!stop.load()) bulkrcu_synchronize();
  });
  std::thread caller([&] {
    static bulkrcu_head heads[64];
    static std::atomic<int> runs{0};
    while (!stop.load()) {
      for (auto& h : heads) bulkrcu_call(&h, [](bulkrcu_head*) { runs.fetch_add(1); });
      bulkrcu_barrier();
    }
  });
  int bad = 0;
  for (int i = 0; i < 20; ++i) {
    int status = fork_and_check();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++bad;
  }
  stop = true;
  syncer.join();
  caller.join();
  EXPECT_EQ(bad, 0);
}

}  // namespace
