// Readers: nesting, read_lock_held, threads bulkrcu never saw, thread exit (slot release, exit
// inside a section), many short-lived threads, signal handlers, the configuration fallbacks.
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "bulkrcu/rcu.h"
#include "bulkrcu/stats.h"
#include "gp/gp.h"
#include "test_support.h"

using bulkrcu::detail::gp::reader_nesting;
using namespace bulkrcu_test;

namespace {

TEST(Reader, NestingCountsAndHeld) {
  EXPECT_FALSE(bulkrcu_read_lock_held());
  for (unsigned long depth = 1; depth <= 5; ++depth) {
    bulkrcu_read_lock();
    EXPECT_TRUE(bulkrcu_read_lock_held());
    EXPECT_EQ(reader_nesting(), depth);
  }
  for (unsigned long depth = 5; depth >= 1; --depth) {
    EXPECT_EQ(reader_nesting(), depth);
    EXPECT_TRUE(bulkrcu_read_lock_held());
    bulkrcu_read_unlock();
  }
  EXPECT_FALSE(bulkrcu_read_lock_held());
  EXPECT_EQ(reader_nesting(), 0u);
}

TEST(Reader, OutOfLineEntryPointsMatchInline) {
  (bulkrcu_read_lock)();
  EXPECT_TRUE((bulkrcu_read_lock_held)());
  bulkrcu_read_lock();  // inline, nested over the out-of-line lock
  EXPECT_EQ(reader_nesting(), 2u);
  (bulkrcu_read_unlock)();
  EXPECT_TRUE(bulkrcu_read_lock_held());
  bulkrcu_read_unlock();
  EXPECT_FALSE((bulkrcu_read_lock_held)());
}

TEST(Reader, ThreadNeverSeenRegistersOnFirstLock) {
  const uint64_t before = stats().readers_registered;
  std::atomic<bool> registered{false}, release{false};
  bool held_before = true, held_inside = false, held_after = true;
  std::thread t([&] {
    held_before = bulkrcu_read_lock_held();  // no slot yet: must not register or crash
    bulkrcu_read_lock();
    held_inside = bulkrcu_read_lock_held();
    bulkrcu_read_unlock();
    held_after = bulkrcu_read_lock_held();
    registered = true;
    wait_until([&] { return release.load(); });
  });
  wait_until([&] { return registered.load(); });
  EXPECT_EQ(stats().readers_registered, before + 1);
  release = true;
  t.join();
  EXPECT_FALSE(held_before);
  EXPECT_TRUE(held_inside);
  EXPECT_FALSE(held_after);
  EXPECT_EQ(stats().readers_registered, before);
}

// Five threads need three chunks of the shrunk pool (two slots a chunk); their exit releases
// every slot, and the next threads reuse them instead of mapping more.
TEST(Reader, ThreadExitReleasesSlot) {
  bulkrcu_read_lock();  // make sure this thread's own slot is counted in the baseline
  bulkrcu_read_unlock();
  const bulkrcu_stats base = stats();
  constexpr int kThreads = 5;
  for (int round = 0; round < 3; ++round) {
    std::atomic<int> ready{0};
    std::atomic<bool> release{false};
    std::vector<std::thread> ts;
    for (int i = 0; i < kThreads; ++i)
      ts.emplace_back([&] {
        bulkrcu_read_lock();
        bulkrcu_read_unlock();
        ready.fetch_add(1);
        wait_until([&] { return release.load(); });
      });
    wait_until([&] { return ready.load() == kThreads; });
    bulkrcu_stats live = stats();
    EXPECT_EQ(live.readers_registered, base.readers_registered + kThreads);
    EXPECT_GE(live.reader_slots, live.readers_registered);
    release = true;
    for (auto& t : ts) t.join();
    EXPECT_EQ(stats().readers_registered, base.readers_registered) << "round " << round;
  }
  // Three rounds of five threads: slots were reused, not mapped three times over.
  EXPECT_LE(stats().reader_slots, base.reader_slots + kThreads + 2 /* one chunk of slack */);
  bulkrcu_synchronize();  // no released slot stalls a grace period
}

// A thread that exits inside a critical section: the library warns, ends the section, and a
// grace period that was waiting for it completes.
TEST(Reader, ExitInsideSectionDoesNotStallGracePeriod) {
  const uint64_t registered_before = stats().readers_registered;
  std::atomic<bool> in_section{false}, exit_now{false}, sync_done{false};
  std::atomic<int> tid{0};
  testing::internal::CaptureStderr();
  std::thread reader([&] {
    tid = static_cast<int>(syscall(SYS_gettid));
    bulkrcu_read_lock();
    bulkrcu_read_lock();  // depth 2
    in_section = true;
    wait_until([&] { return exit_now.load(); });
    // returns without unlocking
  });
  wait_until([&] { return in_section.load(); });
  std::thread syncer([&] {
    bulkrcu_synchronize();
    sync_done = true;
  });
  wait_until([] { return gp_in_progress(); });
  give_window();
  EXPECT_FALSE(sync_done.load()) << "synchronize returned while a reader was inside its section";
  exit_now = true;
  reader.join();
  syncer.join();  // hangs (ctest timeout) if the exited thread stalls the grace period
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(sync_done.load());
  EXPECT_NE(err.find("thread " + std::to_string(tid.load()) + " exited inside a read-side critical section"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("depth 2"), std::string::npos) << err;
  EXPECT_EQ(stats().readers_registered, registered_before);
  bulkrcu_synchronize();
}

TEST(Reader, ThousandsOfShortLivedThreads) {
  bulkrcu_read_lock();
  bulkrcu_read_unlock();
  const bulkrcu_stats base = stats();
  constexpr int kBatch = 8;
  constexpr int kTotal = 2000;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> syncs{0};
  // A grace period runs all along: neither registering nor exiting threads may stall it.
  std::thread syncer([&] {
    while (!stop.load()) {
      bulkrcu_synchronize();
      syncs.fetch_add(1);
    }
  });
  std::atomic<int> in_reader_checks{0};
  testing::internal::CaptureStderr();
  for (int done = 0; done < kTotal; done += kBatch) {
    std::vector<std::thread> ts;
    for (int i = 0; i < kBatch; ++i)
      ts.emplace_back([&, i] {
        for (int k = 0; k < 3; ++k) {
          bulkrcu_read_lock();
          if (bulkrcu_read_lock_held()) in_reader_checks.fetch_add(1, std::memory_order_relaxed);
          if (i & 1) return;  // odd threads exit inside the section: it must end for them
          bulkrcu_read_unlock();
        }
      });
    for (auto& t : ts) t.join();
  }
  stop = true;
  syncer.join();
  std::string err = testing::internal::GetCapturedStderr();
  size_t warnings = 0;
  for (size_t pos = 0;
       (pos = err.find("exited inside a read-side critical section", pos)) != std::string::npos; ++pos)
    ++warnings;
  EXPECT_EQ(warnings, static_cast<size_t>(kTotal / 2));
  EXPECT_EQ(in_reader_checks.load(), kTotal / 2 * 3 + kTotal / 2);
  bulkrcu_stats after = stats();
  EXPECT_EQ(after.readers_registered, base.readers_registered);
  // Slots are recycled: at most one batch's worth (and a chunk for racing claims) was added.
  EXPECT_LE(after.reader_slots, base.reader_slots + 2 * kBatch + 2);
  EXPECT_GE(syncs.load(), 1u);
  bulkrcu_synchronize();
}

// ---- signal handlers ------------------------------------------------------------------------

struct HandlerLog {
  std::atomic<int> runs{0};
  std::atomic<bool> held_before{false};
  std::atomic<unsigned long> nesting_inside{0};
  std::atomic<bool> held_after{false};
  std::atomic<unsigned long> nesting_after{99};
};
HandlerLog g_log;

void nesting_handler(int) {
  g_log.held_before = bulkrcu_read_lock_held();
  bulkrcu_read_lock();
  g_log.nesting_inside = reader_nesting();
  bulkrcu_read_unlock();
  g_log.held_after = bulkrcu_read_lock_held();
  g_log.nesting_after = reader_nesting();
  g_log.runs.fetch_add(1);
}

TEST(ReaderSignal, HandlerInterruptsReader) {
  install_handler(SIGUSR1, nesting_handler);
  g_log.runs = 0;
  std::atomic<bool> in_section{false};
  unsigned long nesting_back = 0;
  bool held_end = true;
  std::thread t([&] {
    bulkrcu_read_lock();
    in_section = true;
    wait_until([] { return g_log.runs.load() >= 1; });
    nesting_back = reader_nesting();
    bulkrcu_read_unlock();
    held_end = bulkrcu_read_lock_held();
  });
  wait_until([&] { return in_section.load(); });
  signal_until(t.native_handle(), SIGUSR1, [] { return g_log.runs.load() >= 1; });
  t.join();
  EXPECT_TRUE(g_log.held_before.load());
  EXPECT_EQ(g_log.nesting_inside.load(), 2u);
  EXPECT_TRUE(g_log.held_after.load());
  EXPECT_EQ(g_log.nesting_after.load(), 1u);
  EXPECT_EQ(nesting_back, 1u);
  EXPECT_FALSE(held_end);
}

TEST(ReaderSignal, HandlerInterruptsNonReader) {
  install_handler(SIGUSR1, nesting_handler);
  g_log.runs = 0;
  std::atomic<bool> ready{false};
  bool held_end = true;
  std::thread t([&] {
    bulkrcu_read_lock();  // registered, but outside a section when the signal comes
    bulkrcu_read_unlock();
    ready = true;
    wait_until([] { return g_log.runs.load() >= 1; });
    held_end = bulkrcu_read_lock_held();
  });
  wait_until([&] { return ready.load(); });
  signal_until(t.native_handle(), SIGUSR1, [] { return g_log.runs.load() >= 1; });
  t.join();
  EXPECT_FALSE(g_log.held_before.load());
  EXPECT_EQ(g_log.nesting_inside.load(), 1u);
  EXPECT_FALSE(g_log.held_after.load());
  EXPECT_EQ(g_log.nesting_after.load(), 0u);
  EXPECT_FALSE(held_end);
}

// A handler's read-side critical section is a real one: a grace period waits for it.
std::atomic<bool> g_h_in{false}, g_h_release{false}, g_h_sync_seen{true}, g_sync_done{false};
std::atomic<int> g_h_runs{0};
void holding_handler(int) {
  const bool first = g_h_runs.fetch_add(1) == 0;  // a resent signal may run it again: ignore that
  bulkrcu_read_lock();
  g_h_in = true;
  while (!g_h_release.load()) {
  }
  if (first) g_h_sync_seen = g_sync_done.load();
  bulkrcu_read_unlock();
}

TEST(ReaderSignal, GracePeriodWaitsForHandlerOnUnseenThread) {
  install_handler(SIGUSR2, holding_handler);
  g_h_in = false;
  g_h_runs = 0;
  g_h_release = false;
  g_sync_done = false;
  std::atomic<bool> started{false}, done{false};
  bool held_end = true;
  std::thread t([&] {  // never calls bulkrcu itself: the handler's lock registers it
    started = true;
    wait_until([&] { return done.load(); });
    held_end = bulkrcu_read_lock_held();
  });
  wait_until([&] { return started.load(); });
  const uint64_t registered = stats().readers_registered;
  signal_until(t.native_handle(), SIGUSR2, [] { return g_h_in.load(); });
  EXPECT_EQ(stats().readers_registered, registered + 1);
  std::thread syncer([] {
    bulkrcu_synchronize();
    g_sync_done = true;
  });
  wait_until([] { return gp_in_progress(); });
  give_window();
  g_h_release = true;
  syncer.join();
  done = true;
  t.join();
  EXPECT_FALSE(g_h_sync_seen.load()) << "synchronize returned inside the handler's section";
  EXPECT_TRUE(g_sync_done.load());
  EXPECT_FALSE(held_end);
}

// Signals aimed at threads while they run their first (registering) read_lock: the handler
// registers the thread itself when it wins, and no slot may be lost or shared either way.
std::atomic<int> g_reg_handler_runs{0}, g_reg_handler_bad{0};
void registering_handler(int) {
  unsigned long before = reader_nesting();
  bulkrcu_read_lock();
  if (reader_nesting() != before + 1) g_reg_handler_bad.fetch_add(1);
  bulkrcu_read_unlock();
  if (reader_nesting() != before) g_reg_handler_bad.fetch_add(1);
  g_reg_handler_runs.fetch_add(1, std::memory_order_relaxed);
}

TEST(ReaderSignal, SignalDuringFirstLock) {
  install_handler(SIGUSR1, registering_handler);
  bulkrcu_read_lock();
  bulkrcu_read_unlock();
  const uint64_t base = stats().readers_registered;
  g_reg_handler_runs = 0;
  g_reg_handler_bad = 0;
  constexpr int kThreads = 300;
  int bad_nesting = 0;
  for (int i = 0; i < kThreads; ++i) {
    std::atomic<bool> go{false}, finished{false};
    std::atomic<unsigned long> depth{0};
    std::thread t([&] {
      wait_until([&] { return go.load(); });
      bulkrcu_read_lock();  // the registering lock, under a hail of signals
      bulkrcu_read_lock();
      depth = reader_nesting();
      bulkrcu_read_unlock();
      bulkrcu_read_unlock();
      finished = true;
    });
    pthread_t h = t.native_handle();
    go = true;
    while (!finished.load()) pthread_kill(h, SIGUSR1);
    t.join();
    if (depth.load() != 2) ++bad_nesting;
  }
  EXPECT_EQ(bad_nesting, 0);
  EXPECT_EQ(g_reg_handler_bad.load(), 0);
  EXPECT_GT(g_reg_handler_runs.load(), 0);
  EXPECT_EQ(stats().readers_registered, base) << "a slot leaked";
  bulkrcu_synchronize();
}

// ---- configuration fallbacks ----------------------------------------------------------------

TEST(ReaderConfig, FallbacksMatchEnvironment) {
  bulkrcu_read_lock();
  bulkrcu_read_unlock();
  bulkrcu_stats s = stats();
  const bool expect_no_rseq = env_set("BULKRCU_EXPECT_NO_RSEQ") || env_set("BULKRCU_NO_RSEQ");
  const bool expect_fences = env_set("BULKRCU_EXPECT_NO_MEMBARRIER") || env_set("BULKRCU_NO_MEMBARRIER");
  EXPECT_EQ(s.percpu_rseq, expect_no_rseq ? 0u : 1u);
  EXPECT_EQ(s.reader_fences, expect_fences ? 1u : 0u);
  EXPECT_GE(s.nr_cpu_slots, static_cast<uint64_t>(sysconf(_SC_NPROCESSORS_ONLN)));
  // Whatever the mode, grace periods and callbacks work.
  bulkrcu_synchronize();
  bulkrcu_synchronize_expedited();
}

}  // namespace
