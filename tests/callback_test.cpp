// Callbacks (bulkrcu_call, bulkrcu_barrier): exactly once, after a grace period, FIFO per
// thread, barrier across threads, from signal handlers, from callbacks, inside readers.
#include "callback/callback.h"

#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "bulkrcu/kernel.h"
#include "bulkrcu/rcu.h"
#include "bulkrcu/stats.h"
#include "percpu/percpu.h"
#include "runtime/runtime.h"
#include "test_support.h"

using namespace bulkrcu_test;

#if BULKRCU_TSAN
// The fork tests' children start threads (the runtime thread); TSan refuses that after a
// multi-threaded fork unless told otherwise.
extern "C" const char* __tsan_default_options() { return "die_after_fork=0"; }
#endif

namespace {

struct Counted {
  bulkrcu_head head;
  std::atomic<int> runs{0};
  int producer = 0;
  long index = 0;
};

void count_cb(bulkrcu_head* h) {
  reinterpret_cast<Counted*>(h)->runs.fetch_add(1, std::memory_order_relaxed);
}

TEST(Callback, RunsOnceAfterBarrier) {
  Counted c;
  const bulkrcu_stats before = stats();
  bulkrcu_call(&c.head, count_cb);
  bulkrcu_barrier();
  EXPECT_EQ(c.runs.load(), 1);
  bulkrcu_barrier();
  bulkrcu_synchronize();
  bulkrcu_barrier();
  EXPECT_EQ(c.runs.load(), 1);
  const bulkrcu_stats after = stats();
  EXPECT_EQ(after.callbacks_invoked, before.callbacks_invoked + 1);
  EXPECT_EQ(after.callbacks_queued, before.callbacks_queued + 1);
  EXPECT_EQ(after.callbacks_pending, 0u);
}

// A reader active when bulkrcu_call is made blocks the callback until it unlocks.
TEST(Callback, WaitsForPreExistingReader) {
  Counted c;
  int runs_seen_inside = -1;
  const uint64_t swept_before = stats().callbacks_swept;
  SectionHolder reader({}, 1, [&] { runs_seen_inside = c.runs.load(); });
  bulkrcu_call(&c.head, count_cb);
  // The runtime thread has swept the callback and is running its grace period.
  wait_until([&] { return stats().callbacks_swept == swept_before + 1 && gp_in_progress(); });
  give_window();
  reader.release_and_join();
  bulkrcu_barrier();
  EXPECT_EQ(runs_seen_inside, 0) << "callback ran while a pre-existing reader was inside";
  EXPECT_EQ(c.runs.load(), 1);
}

TEST(Callback, ManyFromManyThreadsEachExactlyOnce) {
  constexpr int kThreads = 4;
  constexpr int kPer = 20000;
  std::vector<std::unique_ptr<Counted[]>> objs;
  for (int t = 0; t < kThreads; ++t) objs.emplace_back(new Counted[kPer]);
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < kPer; ++i) {
        if (i % 3 == 0) bulkrcu_read_lock();  // call inside a reader, too
        bulkrcu_call(&objs[t][i].head, count_cb);
        if (i % 3 == 0) bulkrcu_read_unlock();
      }
    });
  for (auto& t : ts) t.join();
  bulkrcu_barrier();
  long wrong = 0;
  for (int t = 0; t < kThreads; ++t)
    for (int i = 0; i < kPer; ++i) wrong += objs[t][i].runs.load() != 1;
  EXPECT_EQ(wrong, 0);
}

// ---- order ------------------------------------------------------------------------------------

struct OrderLog {
  std::atomic<long> next_expected[8];
  std::atomic<long> out_of_order{0};
};
OrderLog g_order;

void order_cb(bulkrcu_head* h) {
  Counted* c = reinterpret_cast<Counted*>(h);
  c->runs.fetch_add(1, std::memory_order_relaxed);
  // Only the runtime thread runs callbacks: plain read-modify-write is enough.
  long want = g_order.next_expected[c->producer].load(std::memory_order_relaxed);
  if (c->index != want) g_order.out_of_order.fetch_add(1, std::memory_order_relaxed);
  g_order.next_expected[c->producer].store(c->index + 1, std::memory_order_relaxed);
}

// Per-thread FIFO: each of several concurrent producers sees its callbacks run in the order it
// queued them. `pin`: every producer runs on CPU 0 (contention for one CPU's list, no migration).
// `hold`: a reader holds every grace period until all callbacks are queued (they then become
// ready at once, a backlog of many batches, however fast grace periods are).
void run_fifo(bool pin, bool hold = false) {
  constexpr int kThreads = 4;
  constexpr int kPer = 20000;
  for (auto& e : g_order.next_expected) e = 0;
  g_order.out_of_order = 0;
  std::vector<std::unique_ptr<Counted[]>> objs;
  for (int t = 0; t < kThreads; ++t) {
    objs.emplace_back(new Counted[kPer]);
    for (int i = 0; i < kPer; ++i) {
      objs[t][i].producer = t;
      objs[t][i].index = i;
    }
  }
  std::unique_ptr<SectionHolder> reader;
  if (hold) reader = std::make_unique<SectionHolder>();
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&, t] {
      if (pin) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(0, &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);
      }
      for (int i = 0; i < kPer; ++i) {
        bulkrcu_call(&objs[t][i].head, order_cb);
        if (i % 256 == 0) sched_yield();  // interleave with the other producers and the sweeps
      }
    });
  for (auto& t : ts) t.join();
  reader.reset();
  bulkrcu_barrier();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(g_order.next_expected[t].load(), kPer);
  EXPECT_EQ(g_order.out_of_order.load(), 0);
}

TEST(CallbackOrder, PerThreadFifoPinned) { run_fifo(true); }

// Without rseq a push never takes the overflow list. With the slot's try-lock, a push that
// found another pusher holding the lock (preempted there) went to the overflow list, which the
// sweep runs first: the thread's later callback ran before its earlier one, still on the CPU
// list (CI's no-rseq step saw 13 of 80,000 out of order). Deterministic form: the slot's lock
// is held, as by a preempted pusher, between two calls of one pinned thread. (With rseq only a
// sweep holds a slot, after detaching its list: nothing to test there.)
TEST(CallbackOrder, APushWhileAnotherPusherHoldsTheSlotKeepsOrder) {
  if (bulkrcu::detail::mode() == bulkrcu::detail::PercpuMode::kRseq)
    GTEST_SKIP() << "rseq: only sweeps lock a slot";
  std::thread t([] {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    ASSERT_EQ(pthread_setaffinity_np(pthread_self(), sizeof set, &set), 0);
    for (auto& e : g_order.next_expected) e = 0;
    g_order.out_of_order = 0;
    constexpr int kRounds = 200;
    std::vector<Counted> objs(2 * kRounds);
    for (int r = 0; r < kRounds; ++r) {
      for (int k = 0; k < 2; ++k) {
        objs[2 * r + k].producer = 0;
        objs[2 * r + k].index = 2 * r + k;
      }
      bulkrcu_call(&objs[2 * r].head, order_cb);
      bulkrcu::detail::cb::hold_slot_lock_for_test(0, true);
      bulkrcu_call(&objs[2 * r + 1].head, order_cb);
      bulkrcu::detail::cb::hold_slot_lock_for_test(0, false);
    }
    bulkrcu_barrier();
    EXPECT_EQ(g_order.next_expected[0].load(), 2 * kRounds);
    EXPECT_EQ(g_order.out_of_order.load(), 0);
  });
  t.join();
}
// Order is promised per CPU list (rcu.h: "Callbacks queued on one CPU run in the order they
// were queued"), as in the kernel, not per thread: a thread that migrates between two
// bulkrcu_call()s may see the later callback run first (docs/ARCHITECTURE.md).

// ---- barrier ----------------------------------------------------------------------------------

TEST(Barrier, WaitsForCallbacksQueuedByOtherThreads) {
  constexpr int kThreads = 4;
  constexpr int kPer = 1000;
  std::vector<std::unique_ptr<Counted[]>> objs;
  for (int t = 0; t < kThreads; ++t) objs.emplace_back(new Counted[kPer]);
  std::atomic<int> queued{0};
  std::atomic<bool> release{false};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < kPer; ++i) bulkrcu_call(&objs[t][i].head, count_cb);
      queued.fetch_add(1);
      wait_until([&] { return release.load(); });  // alive, but silent, during the barrier
    });
  wait_until([&] { return queued.load() == kThreads; });
  bulkrcu_barrier();
  long missing = 0;
  for (int t = 0; t < kThreads; ++t)
    for (int i = 0; i < kPer; ++i) missing += objs[t][i].runs.load() != 1;
  release = true;
  for (auto& t : ts) t.join();
  EXPECT_EQ(missing, 0);
}

TEST(Barrier, WithNothingQueuedReturns) {
  bulkrcu_barrier();
  bulkrcu_barrier();
  rcu_barrier();
}

// Concurrent barriers and producers: each barrier covers what its caller queued before it.
TEST(Barrier, ConcurrentBarriersCoverTheirOwnCallbacks) {
  constexpr int kThreads = 3;
  constexpr int kRounds = 200;
  std::atomic<long> bad{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&] {
      for (int r = 0; r < kRounds; ++r) {
        Counted c[4];
        for (auto& x : c) bulkrcu_call(&x.head, count_cb);
        bulkrcu_barrier();
        for (auto& x : c) bad += x.runs.load() != 1;
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad.load(), 0);
}

// ---- callbacks queued from unusual places -------------------------------------------------------

Counted g_sig_objs[64];
std::atomic<int> g_sig_next{0};
void calling_handler(int) {
  int i = g_sig_next.fetch_add(1);
  if (i < 64) bulkrcu_call(&g_sig_objs[i].head, count_cb);
}

TEST(CallbackSignal, CallFromHandler) {
  install_handler(SIGUSR1, calling_handler);
  g_sig_next = 0;
  raise(SIGUSR1);  // handler on this thread
  bulkrcu_barrier();
  EXPECT_EQ(g_sig_objs[0].runs.load(), 1);
}

// Handlers that interrupt a thread in the middle of its own bulkrcu_call loop (same CPU slot;
// in the try-lock mode they find it held and take the overflow list).
TEST(CallbackSignal, HandlerInterruptsCallingThread) {
  install_handler(SIGUSR1, calling_handler);
  g_sig_next = 1;
  for (int i = 1; i < 64; ++i) g_sig_objs[i].runs = 0;
  constexpr int kPer = 200000;
  std::unique_ptr<Counted[]> objs(new Counted[kPer]);
  std::atomic<bool> stop{false};
  std::thread caller([&] {
    for (int i = 0; i < kPer; ++i) {
      bulkrcu_call(&objs[i].head, count_cb);
      // Stretch the loop until signals have landed: on a fast machine 200k calls take about a
      // millisecond, and the loop could end before the first signal arrives.
      if ((i & 1023) == 0 && g_sig_next.load() < 16) nap_us(50);
    }
    stop = true;
  });
  pthread_t h = caller.native_handle();
  while (!stop.load() && g_sig_next.load() < 64) {
    pthread_kill(h, SIGUSR1);
    nap_us(100);
  }
  caller.join();
  bulkrcu_barrier();
  long wrong = 0;
  for (int i = 0; i < kPer; ++i) wrong += objs[i].runs.load() != 1;
  EXPECT_EQ(wrong, 0);
  const int sent = std::min(g_sig_next.load(), 64);
  EXPECT_GT(sent, 1);
  for (int i = 1; i < sent; ++i) EXPECT_EQ(g_sig_objs[i].runs.load(), 1) << i;
}

struct Chain {
  bulkrcu_head head;
  bulkrcu_head second;
  std::atomic<int> first_runs{0}, second_runs{0};
  std::atomic<bool> second_before_first_returned{false};
};

void second_cb(bulkrcu_head* h) {
  Chain* c = reinterpret_cast<Chain*>(reinterpret_cast<char*>(h) - offsetof(Chain, second));
  c->second_runs.fetch_add(1);
}
void first_cb(bulkrcu_head* h) {
  Chain* c = reinterpret_cast<Chain*>(h);
  bulkrcu_call(&c->second, second_cb);  // call from inside a callback
  if (c->second_runs.load() != 0) c->second_before_first_returned = true;
  c->first_runs.fetch_add(1);
}

TEST(Callback, CallFromInsideCallback) {
  Chain c;
  bulkrcu_call(&c.head, first_cb);
  bulkrcu_barrier();  // waits for first_cb, which queued second_cb before returning
  EXPECT_EQ(c.first_runs.load(), 1);
  bulkrcu_barrier();  // second_cb was queued before this barrier
  EXPECT_EQ(c.second_runs.load(), 1);
  EXPECT_FALSE(c.second_before_first_returned.load());
}

// A callback may use a reader and poll for cookies (it runs outside any reader).
std::atomic<int> g_cb_reader_ok{0};
void reader_cb(bulkrcu_head*) {
  bool ok = !bulkrcu_read_lock_held();
  bulkrcu_read_lock();
  ok = ok && bulkrcu_read_lock_held();
  unsigned long c = bulkrcu_get_state();
  ok = ok && !bulkrcu_poll_state(c);
  bulkrcu_read_unlock();
  if (ok) g_cb_reader_ok.fetch_add(1);
}

TEST(Callback, CallbackMayRead) {
  bulkrcu_head h;
  bulkrcu_call(&h, reader_cb);
  bulkrcu_barrier();
  EXPECT_EQ(g_cb_reader_ok.load(), 1);
}

TEST(Callback, CallInsideReaderRunsAfterUnlock) {
  Counted c;
  const uint64_t swept_before = stats().callbacks_swept;
  bulkrcu_read_lock();
  call_rcu(&c.head, count_cb);
  wait_until([&] { return stats().callbacks_swept == swept_before + 1 && gp_in_progress(); });
  give_window();
  EXPECT_EQ(c.runs.load(), 0) << "callback ran inside the caller's own section";
  bulkrcu_read_unlock();
  bulkrcu_barrier();
  EXPECT_EQ(c.runs.load(), 1);
}

// ---- invocation threads ---------------------------------------------------------------------

// A backlog larger than one invocation batch starts an invocation worker; callbacks of one CPU
// keep their order across the threads that run them (a lane runs on one thread at a time).
TEST(CallbackWorkers, BacklogStartsAWorkerAndKeepsPerCpuOrder) {
  // 80,000 callbacks on CPU 0's list, ready at once: many batches of the shrunk size. (Without
  // the held reader, grace periods that need no membarrier, as when no thread owned a reader
  // slot, let the runtime thread keep up batch by batch under load: no worker started.)
  // Up to three rounds: under ctest -j2 on 2 CPUs one round was seen to end with no worker
  // started (2026-12-04, twice in CI, never in 50 runs alone; cause not found yet). Each round
  // checks the order; a build that never starts a worker fails all three.
  for (int round = 0; round < 3 && bulkrcu::detail::runtime::invocation_threads() < 2; ++round)
    run_fifo(true, true);
  EXPECT_GE(stats().callbacks_invocation_threads, 2u);
  EXPECT_GE(bulkrcu::detail::runtime::invocation_threads(), 2);
}

// A worker that does not take its ready lane (paused by the test hook, as a worker whose CPUs
// a real-time thread keeps busy) gives it to the runtime thread after 10 ms: the barrier
// completes and the runtime thread counts its take-overs. Fails (the barrier never returns, the
// waiter below gives up) if the runtime thread leaves a worker's lane alone whatever happens.
TEST(CallbackWorkers, AStalledWorkersLaneIsTakenOver) {
  // A worker on lane 0: a backlog pinned to CPU 0 (the same as the test above).
  for (int round = 0; round < 3 && bulkrcu::detail::runtime::invocation_threads() < 2; ++round)
    run_fifo(true, true);
  ASSERT_GE(bulkrcu::detail::runtime::invocation_threads(), 2);
  const std::uint64_t before = bulkrcu::detail::runtime::worker_takeovers();
  bulkrcu::detail::runtime::pause_workers_for_test(true);
  std::atomic<bool> done{false};
  std::thread t([&] {
    run_fifo(true, false);  // its barrier must complete with every worker paused
    done.store(true);
  });
  const bool finished = wait_until_for([&] { return done.load(); }, 30);
  bulkrcu::detail::runtime::pause_workers_for_test(false);
  t.join();
  EXPECT_TRUE(finished);
  EXPECT_GT(bulkrcu::detail::runtime::worker_takeovers(), before);
}

TEST(CallbackWorkers, PinAnInvocationThread) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(0, &set);
  EXPECT_EQ(bulkrcu::detail::runtime::pin_invocation_thread(1, &set), 0);
  EXPECT_GE(bulkrcu::detail::runtime::invocation_threads(), 2);
  EXPECT_EQ(bulkrcu::detail::runtime::pin_invocation_thread(-1, &set), EINVAL);
  // Callbacks still run, on whichever invocation thread takes their lane.
  Counted c[300];
  for (auto& x : c) bulkrcu_call(&x.head, count_cb);
  bulkrcu_barrier();
  long wrong = 0;
  for (auto& x : c) wrong += x.runs.load() != 1;
  EXPECT_EQ(wrong, 0);
}

// The statistics show the whole backlog: queued counts bulkrcu_call at once, swept and
// invoked follow; pending = queued - invoked, swept or not.
TEST(CallbackStats, BacklogVisibleBeforeTheSweep) {
  SectionHolder reader;  // holds every grace period open
  Counted first;
  const bulkrcu_stats s0 = stats();
  bulkrcu_call(&first.head, count_cb);
  wait_until([&] { return stats().callbacks_swept == s0.callbacks_swept + 1 && gp_in_progress(); });
  std::unique_ptr<Counted[]> more(new Counted[1000]);
  for (int i = 0; i < 1000; ++i) bulkrcu_call(&more[i].head, count_cb);
  const bulkrcu_stats s1 = stats();
  EXPECT_EQ(s1.callbacks_queued, s0.callbacks_queued + 1001);
  EXPECT_GE(s1.callbacks_pending, 1001u);
  EXPECT_EQ(s1.callbacks_invoked, s0.callbacks_invoked);
  reader.release_and_join();
  bulkrcu_barrier();
  const bulkrcu_stats s2 = stats();
  EXPECT_EQ(s2.callbacks_invoked, s0.callbacks_invoked + 1001);
  EXPECT_EQ(s2.callbacks_swept, s0.callbacks_swept + 1001);
  EXPECT_EQ(s2.callbacks_pending, 0u);
}

// With BULKRCU_TEST_POSSIBLE_CPUS (ctest's *_256_cpus runs) every per-CPU array is that wide.
TEST(CallbackCpus, PossibleCpuKnob) {
  const char* v = getenv("BULKRCU_TEST_POSSIBLE_CPUS");
  if (!v) GTEST_SKIP() << "BULKRCU_TEST_POSSIBLE_CPUS not set";
  EXPECT_GE(stats().nr_cpu_slots, static_cast<uint64_t>(atoi(v)));
}

// ---- fork under load ---------------------------------------------------------------------------

void free_cb(bulkrcu_head* h) { free(h); }

// Children forked while other threads call bulkrcu_call complete a barrier. In the try-lock
// mode (BULKRCU_NO_RSEQ=1: ctest runs this test that way too) a caller may hold its slot's
// lock at the fork; the child resets the locks. A child that hangs is caught by the timeout.
TEST(CallbackFork, ChildBarrierWhileOthersCall) {
#if defined(__SANITIZE_ADDRESS__) || BULKRCU_TSAN
  GTEST_SKIP() << "the sanitizer's allocator is not fork-safe while other threads allocate";
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  GTEST_SKIP() << "the sanitizer's allocator is not fork-safe while other threads allocate";
#endif
#endif
  std::atomic<bool> stop{false};
  std::vector<std::thread> callers;
  for (int t = 0; t < 2; ++t)
    callers.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        for (int i = 0; i < 1024; ++i)
          bulkrcu_call(static_cast<bulkrcu_head*>(malloc(sizeof(bulkrcu_head))), free_cb);
        // Flat out, but the backlog stays bounded (memory, not the callers, is what we limit).
        while (stats().callbacks_pending > 20000 && !stop.load(std::memory_order_relaxed)) nap_us(100);
      }
    });
  int bad = 0;
  for (int i = 0; i < 300; ++i) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      Counted c;
      bulkrcu_call(&c.head, count_cb);
      bulkrcu_barrier();
      _exit(c.runs.load() == 1 ? 0 : 10 + static_cast<int>(c.runs.load()));
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok)
      ADD_FAILURE() << "child " << i << ": " << (WIFEXITED(status) ? "exit " : "signal ")
                    << (WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    bad += !ok;
  }
  stop = true;
  for (auto& t : callers) t.join();
  bulkrcu_barrier();
  EXPECT_EQ(bad, 0);
}

// The deterministic form of the test above: another thread holds a CPU slot's lock at the
// fork (a caller preempted inside its push, in the try-lock mode). Without the child's reset
// the child's barrier spins on that lock forever (its alarm then kills it).
TEST(CallbackFork, ChildBarrierWithASlotLockHeldAtFork) {
#if BULKRCU_TSAN
  GTEST_SKIP() << "ThreadSanitizer limitation: threads started after a multi-threaded fork";
#endif
  std::atomic<int> phase{0};
  std::thread holder([&] {
    bulkrcu::detail::cb::hold_slot_lock_for_test(0, true);
    phase = 1;
    while (phase.load() != 2) nap_us(100);
    bulkrcu::detail::cb::hold_slot_lock_for_test(0, false);
  });
  wait_until([&] { return phase.load() == 1; });
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    alarm(30);
    Counted c;
    bulkrcu_call(&c.head, count_cb);
    bulkrcu_barrier();
    _exit(c.runs.load() == 1 ? 0 : 1);
  }
  int status = 0;
  const pid_t waited = waitpid(pid, &status, 0);
  phase = 2;
  holder.join();
  ASSERT_EQ(waited, pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "the child did not complete its barrier (status " << status << ")";
}

// The queue mutex is held across fork: a fork while an invocation worker holds it (updating a
// segment or a lane) waits for it, so the child never copies a half-updated queue. Without the
// prepare handler's lock the fork returns at once (this test then fails); on a machine too slow
// to reach fork() within the hold the test proves nothing but cannot fail.
TEST(CallbackFork, ForkWaitsForTheQueueMutex) {
#if BULKRCU_TSAN
  GTEST_SKIP() << "ThreadSanitizer limitation: threads started after a multi-threaded fork";
#endif
  bulkrcu_barrier();  // the runtime thread is up and idle
  bulkrcu::detail::cb::hold_queue_lock_for_test(true);
  std::atomic<bool> entering{false}, returned{false};
  pid_t pid = -1;
  std::thread forker([&] {
    entering = true;
    pid = fork();
    if (pid == 0) {
      alarm(30);
      Counted c;
      bulkrcu_call(&c.head, count_cb);
      bulkrcu_barrier();
      _exit(c.runs.load() == 1 ? 0 : 1);
    }
    returned = true;
  });
  wait_until([&] { return entering.load(); });
  nap_us(200 * 1000);
  const bool returned_while_held = returned.load();
  bulkrcu::detail::cb::hold_queue_lock_for_test(false);
  forker.join();
  EXPECT_FALSE(returned_while_held) << "fork() returned while the callback queue's mutex was held";
  ASSERT_GT(pid, 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
}

// ---- back-pressure -------------------------------------------------------------------------------

std::atomic<long> g_bounded_runs{0};
void bounded_cb(bulkrcu_head* h) {
  g_bounded_runs.fetch_add(1, std::memory_order_relaxed);
  free(h);
}

// While a reader holds back every grace period, a bounded producer stops near its bound (a
// plain bulkrcu_call producer would run through); once the reader leaves it finishes, and
// the backlog never went much past the bound (64 calls a thread between checks).
TEST(CallbackBounded, WaitsWhileTheBacklogIsOverTheBound) {
  bulkrcu_barrier();
  const std::uint64_t base = stats().callbacks_pending;
  constexpr std::size_t kMax = 256;
  constexpr long kCalls = 4096;
  g_bounded_runs = 0;
  std::atomic<long> made{0};
  std::atomic<std::uint64_t> peak{0};
  SectionHolder reader;  // no grace period can end while it holds its section
  std::thread producer([&] {
    for (long i = 0; i < kCalls; ++i) {
      bulkrcu_call_bounded(static_cast<bulkrcu_head*>(malloc(sizeof(bulkrcu_head))), bounded_cb, kMax);
      made.fetch_add(1, std::memory_order_relaxed);
      const std::uint64_t p = stats().callbacks_pending;
      if (p > peak.load(std::memory_order_relaxed)) peak.store(p, std::memory_order_relaxed);
    }
  });
  // It must stop: the callbacks cannot run while the reader is inside.
  wait_until([&] { return made.load() >= static_cast<long>(kMax); });
  give_window();
  const long stalled_at = made.load();
  EXPECT_LT(stalled_at, kCalls) << "bulkrcu_call_bounded did not wait while the backlog was over its bound";
  EXPECT_LE(stalled_at, static_cast<long>(kMax + 64 + base));
  reader.release_and_join();
  producer.join();
  EXPECT_EQ(made.load(), kCalls);
  EXPECT_LE(peak.load(), base + kMax + 64 + 1);
  bulkrcu_barrier();
  EXPECT_EQ(g_bounded_runs.load(), kCalls);
}

// Inside a reader it only queues (a wait there would hold back its own callbacks).
TEST(CallbackBounded, NeverWaitsInsideAReader) {
  bulkrcu_barrier();
  g_bounded_runs = 0;
  bulkrcu_read_lock();
  for (int i = 0; i < 1024; ++i)
    bulkrcu_call_bounded(static_cast<bulkrcu_head*>(malloc(sizeof(bulkrcu_head))), bounded_cb, 1);
  bulkrcu_read_unlock();
  bulkrcu_barrier();
  EXPECT_EQ(g_bounded_runs.load(), 1024);
}

// ---- cancellation ------------------------------------------------------------------------------

std::atomic<bool> g_block_cb_release{false};
std::atomic<bool> g_block_cb_running{false};
void blocking_cb(bulkrcu_head*) {
  g_block_cb_running = true;
  wait_until([] { return g_block_cb_release.load(); });
}

void* barrier_loop(void*) {
  for (;;) {
    bulkrcu_barrier();
    pthread_testcancel();
  }
  return nullptr;
}

TEST(CallbackCancel, BarrierIsNotACancellationPoint) {
  bulkrcu_head h;
  g_block_cb_release = false;
  g_block_cb_running = false;
  bulkrcu_call(&h, blocking_cb);
  wait_until([] { return g_block_cb_running.load(); });
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, nullptr, barrier_loop, nullptr), 0);
  give_window();  // the barrier waits for blocking_cb
  ASSERT_EQ(pthread_cancel(t), 0);
  give_window();
  g_block_cb_release = true;
  void* result = nullptr;
  ASSERT_EQ(pthread_join(t, &result), 0);
  EXPECT_EQ(result, PTHREAD_CANCELED);
  Counted c;
  bulkrcu_call(&c.head, count_cb);
  bulkrcu_barrier();
  EXPECT_EQ(c.runs.load(), 1);
}

// ---- exit with callbacks queued ----------------------------------------------------------------
// LeakSanitizer must see callbacks still queued at exit as reachable: some sit in a segment
// waiting for a grace period a reader holds open, the rest on the CPU lists (mmap'ed memory,
// registered as a root region). Runs in a fresh process (exit with leak checking); without
// ASan the child just exits.

TEST(CallbackExit, QueuedAtExitChild) {
  if (!env_set("BULKRCU_TEST_EXIT_CALLS")) GTEST_SKIP() << "runs in a child (CallbackExit.QueuedAtExit)";
  static SectionHolder* reader = new SectionHolder();  // never released: no grace period ends
  (void)reader;
  const bulkrcu_stats s0 = stats();
  bulkrcu_call(static_cast<bulkrcu_head*>(malloc(64)), free_cb);
  wait_until([&] { return stats().callbacks_swept == s0.callbacks_swept + 1 && gp_in_progress(); });
  for (int i = 0; i < 1000; ++i) bulkrcu_call(static_cast<bulkrcu_head*>(malloc(64)), free_cb);
  exit(0);
}

TEST(CallbackExit, QueuedAtExit) {
  if (env_set("BULKRCU_TEST_EXIT_CALLS")) GTEST_SKIP();
  for (int run = 0; run < 5; ++run) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      setenv("BULKRCU_TEST_EXIT_CALLS", "1", 1);
      execl("/proc/self/exe", "callback_test", "--gtest_filter=CallbackExit.QueuedAtExitChild",
            static_cast<char*>(nullptr));
      _exit(127);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "run " << run << ": leak reported (or the child failed)";
  }
}

}  // namespace
