// kvfree: retiring never surprises the caller (issue 10). One test per way a correct program
// was found to hang, abort or be surprised: who runs deleters, fork while a barrier waits or a
// deleter blocks, a barrier inside a deleter, the head check, exit().
#include <gtest/gtest.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "bulkrcu/rcu.h"
#include "bulkrcu/rcu.hpp"
#include "bulkrcu/stats.h"
#include "test_support.h"

namespace {

using bulkrcu_test::stats;
using bulkrcu_test::wait_until;

// Set by the test around its retire calls: a deleter that sees it ran inside one.
thread_local bool t_in_retire = false;
std::atomic<long> g_ran{0}, g_inside_retire{0}, g_outside_reader{0};
std::mutex g_update_lock;  // the writers' update lock; the deleters take it too

void checked_delete(void* p) {
  if (t_in_retire) g_inside_retire.fetch_add(1);
  if (!bulkrcu_read_lock_held()) g_outside_reader.fetch_add(1);
  { std::lock_guard<std::mutex> g(g_update_lock); }  // would self-deadlock inside a retire
  g_ran.fetch_add(1);
  delete static_cast<long*>(p);
}

struct Node : bulkrcu::rcu_obj_base<Node> {
  long v = 0;
  ~Node() {
    if (t_in_retire) g_inside_retire.fetch_add(1);
    if (!bulkrcu_read_lock_held()) g_outside_reader.fetch_add(1);
    { std::lock_guard<std::mutex> g(g_update_lock); }
    g_ran.fetch_add(1);
  }
};
struct Plain {
  long v = 0;
  ~Plain() {
    if (t_in_retire) g_inside_retire.fetch_add(1);
    if (!bulkrcu_read_lock_held()) g_outside_reader.fetch_add(1);
    { std::lock_guard<std::mutex> g(g_update_lock); }
    g_ran.fetch_add(1);
  }
};

class Trust : public ::testing::Test {
 protected:
  void SetUp() override {
    bulkrcu_kvfree_barrier();
    g_ran = 0;
    g_inside_retire = 0;
    g_outside_reader = 0;
  }
};

// The standard update pattern: writers retire while holding their update lock, and the deleter
// takes that lock. Before the fix, help() ran other callers' deleters inside the retire call
// (175,301 of 200,000 in the review's reproducer) and this test hung.
TEST_F(Trust, UserDeletersNeverRunInsideARetireCall) {
  constexpr int kThreads = 2, kPer = 50000;
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([] {
      for (int i = 0; i < kPer; ++i) {
        std::lock_guard<std::mutex> g(g_update_lock);
        t_in_retire = true;
        switch (i % 4) {
          case 0:
            bulkrcu_defer(checked_delete, new long(i));
            break;
          case 1:
            (new Node)->retire();
            break;
          case 2:
            bulkrcu::rcu_retire(new Plain);
            break;
          default:
            // free() may run here (it keeps the tcache warm): kvfree and the kernel spellings.
            bulkrcu_kvfree(malloc(16));
            bulkrcu_kvfree(malloc(16));
            break;
        }
        t_in_retire = false;
      }
    });
  for (auto& t : ts) t.join();
  bulkrcu_kvfree_barrier();
  EXPECT_EQ(g_ran.load(), kThreads * kPer / 4 * 3);
  EXPECT_EQ(g_inside_retire.load(), 0);
  EXPECT_EQ(g_outside_reader.load(), 0);  // rcu.h: deleters run inside a read-side section
}

std::atomic<long> g_on_caller{0};
thread_local bool t_reclaiming = false;
void counted_delete(void* p) {
  if (t_reclaiming) g_on_caller.fetch_add(1);
  if (!bulkrcu_read_lock_held()) g_outside_reader.fetch_add(1);
  g_ran.fetch_add(1);
  free(p);
}

// bulkrcu_kvfree_reclaim() runs elapsed deleters on the calling thread and says how many.
TEST_F(Trust, ReclaimRunsElapsedDeletersOnTheCallingThread) {
  g_on_caller = 0;
  long returned = 0;
  constexpr int kN = 20000;
  for (int i = 0; i < kN; ++i) {
    bulkrcu_defer(counted_delete, malloc(8));
    if (i % 64 == 0) {
      t_reclaiming = true;
      returned += static_cast<long>(bulkrcu_kvfree_reclaim());
      t_reclaiming = false;
    }
  }
  for (;;) {  // until everything ran (on this thread or the runtime thread)
    t_reclaiming = true;
    returned += static_cast<long>(bulkrcu_kvfree_reclaim());
    t_reclaiming = false;
    if (g_ran.load() == kN) break;
    bulkrcu_synchronize();
  }
  EXPECT_EQ(g_on_caller.load(), returned);
  EXPECT_EQ(g_outside_reader.load(), 0);
}

void barrier_in_deleter(void*) { bulkrcu_kvfree_barrier(); }

// rcu.h: a barrier inside a deleter aborts with the message (it hung on the runtime thread).
TEST(TrustDeath, ABarrierInsideADeleterOnTheRuntimeThreadAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        bulkrcu_defer(barrier_in_deleter, nullptr);
        for (;;) bulkrcu_synchronize();  // the runtime thread runs it after the drain timer
      },
      "bulkrcu_kvfree_barrier\\(\\) called from inside an RCU callback or deleter");
}

TEST(TrustDeath, ABarrierInsideADeleterRunByReclaimAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        for (int i = 0; i < 64; ++i) bulkrcu_defer(barrier_in_deleter, nullptr);
        for (;;) {
          bulkrcu_synchronize();
          bulkrcu_kvfree_reclaim();
        }
      },
      "bulkrcu_kvfree_barrier\\(\\) called from inside an RCU callback or deleter");
}

pid_t fork_and_reap() {
  pid_t pid = fork();
  if (pid == 0) _exit(7);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// fork() while a kvfree barrier waits for a reader: the barrier's grace-period waits happen
// with no lock held, so fork's prepare handler does not wait (before: it hung until the reader
// ended, here never).
TEST_F(Trust, ForkWhileAKvfreeBarrierWaitsForAReader) {
  bulkrcu_test::SectionHolder reader;
  for (int i = 0; i < 100; ++i) bulkrcu_kvfree(malloc(32));
  std::atomic<bool> barrier_done{false};
  std::thread b([&] {
    bulkrcu_kvfree_barrier();
    barrier_done = true;
  });
  // The barrier cannot finish while the reader holds its section; fork meanwhile, often.
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(fork_and_reap(), 7);
    bulkrcu_test::nap_us(1000);
  }
  EXPECT_FALSE(barrier_done.load());
  reader.release_and_join();
  b.join();
  EXPECT_TRUE(barrier_done.load());
}

std::mutex g_fork_lock;
std::atomic<bool> g_deleter_waiting{false};
void blocking_delete(void* p) {
  g_deleter_waiting = true;
  std::lock_guard<std::mutex> g(g_fork_lock);
  g_ran.fetch_add(1);
  free(p);
}

// fork() from a thread that holds a lock a running deleter waits for: deleters run with no
// bulkrcu lock held, so fork's prepare handler does not wait for the deleter (before: the
// runtime thread held g_driver_mutex around them, and this deadlocked).
TEST_F(Trust, ForkWhileADeleterWaitsForTheForkingThread) {
  g_deleter_waiting = false;
  g_fork_lock.lock();
  bulkrcu_defer(blocking_delete, malloc(8));
  wait_until([] { return g_deleter_waiting.load(); });  // the runtime thread is inside it
  EXPECT_EQ(fork_and_reap(), 7);
  g_fork_lock.unlock();
  bulkrcu_kvfree_barrier();
  EXPECT_EQ(g_ran.load(), 1);
}

// The head must lie wholly inside the object (the no-page fallback writes it).
TEST(TrustDeath, HeadPastTheEndOfASmallObjectAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        char* p = static_cast<char*>(malloc(16));
        const size_t usable = malloc_usable_size(p);  // 24 with glibc
        bulkrcu_kfree_head(p, reinterpret_cast<bulkrcu_head*>(p + (usable & ~size_t{7})));
      },
      "the head must lie inside the object");
}

// The inline fast path checks only the offset and the alignment; the fit is checked on the
// library's path, which runs at least once a block. Valid calls first (this thread's block is
// then partly full, so the bad ones start on the fast path), then heads just past the end of
// 24-byte chunks: the check must fire within a few blocks' worth of calls (production blocks
// hold ~500 pointers, test blocks 4), never after the head was written.
TEST(TrustDeath, HeadPastTheEndIsCaughtWithinABlockOfCalls) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        for (int i = 0; i < 100; ++i) bulkrcu_kvfree(malloc(16));
        for (int i = 0; i < 4096; ++i) {
          char* p = static_cast<char*>(malloc(16));
          const size_t usable = malloc_usable_size(p);
          bulkrcu_kfree_head(p, reinterpret_cast<bulkrcu_head*>(p + (usable & ~size_t{7})));
        }
        fprintf(stderr, "not caught in 4096 calls\n");
        _exit(0);
      },
      "the head must lie inside the object");
}

TEST(TrustDeath, MisalignedHeadAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        char* p = static_cast<char*>(malloc(64));
        bulkrcu_kfree_head(p, reinterpret_cast<bulkrcu_head*>(p + 3));
      },
      "pointer-aligned");
}

TEST_F(Trust, AHeadThatFitsIsAccepted) {
  const bulkrcu_stats s0 = stats();
  char* p = static_cast<char*>(malloc(40));
  const size_t usable = malloc_usable_size(p);
  bulkrcu_kfree_head(p, reinterpret_cast<bulkrcu_head*>(p + ((usable - sizeof(bulkrcu_head)) & ~size_t{7})));
  bulkrcu_kvfree_barrier();
  EXPECT_EQ(stats().kv_freed - s0.kv_freed, 1u);
}

// exit(): once bulkrcu's handler has run (it runs before the destructors of static objects
// constructed before the first deleter ran, like this handler), no deleter starts; the
// objects still pending are left to the OS, and exit() does not hang.
std::atomic<long> g_exit_ran{0};
void slow_delete(void* p) {
  g_exit_ran.fetch_add(1);
  bulkrcu_test::nap_us(200);
  free(p);
}
void check_at_exit() {
  const long seen = g_exit_ran.load();
  bulkrcu_test::nap_us(20000);  // a deleter that still ran would show here
  _exit(g_exit_ran.load() == seen && seen < 5000 ? 0 : 3);
}

TEST(TrustExit, NoDeleterRunsAfterExitBegins) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        atexit(check_at_exit);  // before the first deleter: runs after bulkrcu's handler
        for (int i = 0; i < 5000; ++i) bulkrcu_defer(slow_delete, malloc(8));
        wait_until([] { return g_exit_ran.load() > 0; });
        exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

}  // namespace
