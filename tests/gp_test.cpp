// Grace periods: synchronize against pre-existing readers, cookies (get_state, poll_state,
// start_poll, cond_synchronize), expedited grace periods, sharing among concurrent callers,
// the stall warning.
#include "gp/gp.h"

#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "base/base.h"
#include "bulkrcu/kernel.h"
#include "bulkrcu/rcu.h"
#include "bulkrcu/stats.h"
#include "test_support.h"

using namespace bulkrcu_test;
namespace gp = bulkrcu::detail::gp;

#if BULKRCU_TSAN
// The children of these tests start threads (the runtime thread, readers); TSan refuses that
// after a multi-threaded fork unless told otherwise.
extern "C" const char* __tsan_default_options() { return "die_after_fork=0"; }
#endif

namespace {

// A reader thread that enters a section (nested twice, the inner one already left) and holds
// it until released; it records whether the waiter had finished while it still held the section.
class HeldReader {
 public:
  explicit HeldReader(std::atomic<bool>* waiter_done) : waiter_done_(waiter_done) {
    t_ = std::thread([this] {
      bulkrcu_read_lock();
      bulkrcu_read_lock();
      bulkrcu_read_unlock();  // still inside the outer section
      in_ = true;
      wait_until([this] { return release_.load(); });
      saw_done_ = waiter_done_->load();
      bulkrcu_read_unlock();
    });
    wait_until([this] { return in_.load(); });
  }
  // Releases the reader; returns whether the waiter had finished while the section was held.
  bool release_and_join() {
    release_ = true;
    t_.join();
    return saw_done_;
  }

 private:
  std::atomic<bool>* waiter_done_;
  std::atomic<bool> in_{false}, release_{false};
  bool saw_done_ = true;
  std::thread t_;
};

// Runs `wait` on a thread while a reader holds a section that began before; the wait must not
// finish before the reader leaves.
template <class Wait>
void expect_waits_for_reader(Wait wait) {
  std::atomic<bool> done{false};
  HeldReader reader(&done);
  std::thread waiter([&] {
    wait();
    done = true;
  });
  wait_until([] { return gp_in_progress(); });
  give_window();
  EXPECT_FALSE(done.load());
  EXPECT_FALSE(reader.release_and_join()) << "the wait ended while a pre-existing reader was inside";
  waiter.join();
  EXPECT_TRUE(done.load());
}

TEST(Gp, SynchronizeWaitsForPreExistingReader) {
  const bulkrcu_stats before = stats();
  expect_waits_for_reader([] { bulkrcu_synchronize(); });
  const bulkrcu_stats after = stats();
  EXPECT_GE(after.grace_periods, before.grace_periods + 1);
  EXPECT_EQ(after.synchronize_calls, before.synchronize_calls + 1);
}

TEST(Gp, SynchronizeExpeditedWaitsForPreExistingReader) {
  const bulkrcu_stats before = stats();
  expect_waits_for_reader([] { bulkrcu_synchronize_expedited(); });
  const bulkrcu_stats after = stats();
  EXPECT_GE(after.expedited_grace_periods, before.expedited_grace_periods + 1);
  EXPECT_EQ(after.synchronize_calls, before.synchronize_calls + 1);
}

TEST(Gp, CondSynchronizeWaitsForPreExistingReader) {
  unsigned long cookie = 0;
  std::atomic<bool> done{false};
  HeldReader reader(&done);
  cookie = bulkrcu_get_state();  // after the reader began
  std::thread waiter([&] {
    bulkrcu_cond_synchronize(cookie);
    done = true;
  });
  wait_until([] { return gp_in_progress(); });
  give_window();
  EXPECT_FALSE(bulkrcu_poll_state(cookie));
  EXPECT_FALSE(reader.release_and_join());
  waiter.join();
  EXPECT_TRUE(bulkrcu_poll_state(cookie));
}

// ---- wake on unlock: a waiter sleeps until the reader it waits for ends its section --------
// A reader thread that holds a section until told to end it; reports its wake flag.
class FlaggedReader {
 public:
  FlaggedReader() {
    th_ = std::thread([this] {
      bulkrcu_read_lock();
      r_ = bulkrcu__tls_reader;
      in_ = true;
      wait_until([this] { return release_.load(); });
      if (exit_inside_) return;  // the thread-exit handler ends the section
      bulkrcu_read_unlock();
      flag_after_ = __atomic_load_n(&r_->wake, __ATOMIC_RELAXED);
    });
    wait_until([this] { return in_.load(); });
  }
  bool flagged() const { return __atomic_load_n(&r_->wake, __ATOMIC_RELAXED) != 0; }
  void release(bool exit_inside = false) {
    exit_inside_ = exit_inside;
    release_ = true;
    th_.join();
  }
  unsigned flag_after() const { return flag_after_; }

 private:
  std::thread th_;
  bulkrcu__reader* r_ = nullptr;
  std::atomic<bool> in_{false}, release_{false};
  bool exit_inside_ = false;
  unsigned flag_after_ = 99;
};

// Waits until the waiter has flagged `r` and gone to sleep (its sleep counter moved).
void wait_for_sleeping_waiter(const FlaggedReader& r, std::uint64_t sleeps_before) {
  wait_until([&] { return r.flagged() && gp::wait_stats().sleeps > sleeps_before; });
}

void expect_unlock_wakes(bool expedited) {
  const gp::WaitStats before = gp::wait_stats();
  FlaggedReader reader;
  std::atomic<bool> done{false};
  std::thread waiter([&] {
    if (expedited)
      bulkrcu_synchronize_expedited();
    else
      bulkrcu_synchronize();
    done = true;
  });
  wait_for_sleeping_waiter(reader, before.sleeps);
  EXPECT_FALSE(done.load());
  reader.release();
  waiter.join();
  const gp::WaitStats after = gp::wait_stats();
  EXPECT_GE(after.reader_wakes, before.reader_wakes + 1) << "the unlock did not wake the waiter";
  EXPECT_EQ(reader.flag_after(), 0U) << "the unlock left its wake flag set";
  // The sleep's bound is 1 s (1 ms without membarrier, where a wake may be lost): a wake that
  // never came shows as a timeout.
  if (!bulkrcu__reader_fence) {
    EXPECT_EQ(after.timeouts, before.timeouts) << "the waiter woke on its timer";
  }
}

TEST(GpWake, UnlockWakesTheSleepingWaiter) { expect_unlock_wakes(false); }
TEST(GpWake, UnlockWakesTheSleepingExpeditedWaiter) { expect_unlock_wakes(true); }

TEST(GpWake, WaiterSleepsAgainForTheNextReaderAndClearsEveryFlag) {
  const gp::WaitStats before = gp::wait_stats();
  FlaggedReader a, b;
  std::atomic<bool> done{false};
  std::thread waiter([&] {
    bulkrcu_synchronize();
    done = true;
  });
  wait_until([&] { return a.flagged() && b.flagged() && gp::wait_stats().sleeps > before.sleeps; });
  const std::uint64_t sleeps = gp::wait_stats().sleeps;
  a.release();
  // Woken by a, the waiter finds b still inside and sleeps again (b stays flagged).
  wait_until([&] { return gp::wait_stats().sleeps > sleeps; });
  EXPECT_FALSE(done.load());
  EXPECT_TRUE(b.flagged());
  b.release();
  waiter.join();
  EXPECT_GE(gp::wait_stats().reader_wakes, before.reader_wakes + 2);
  EXPECT_EQ(a.flag_after(), 0U);
  EXPECT_EQ(b.flag_after(), 0U);
}

TEST(GpWake, ThreadExitInsideASectionWakesTheWaiter) {
  const gp::WaitStats before = gp::wait_stats();
  FlaggedReader reader;
  std::thread waiter([] { bulkrcu_synchronize(); });
  wait_for_sleeping_waiter(reader, before.sleeps);
  reader.release(/*exit_inside=*/true);  // warns that it exits inside a section
  waiter.join();
  const gp::WaitStats after = gp::wait_stats();
  EXPECT_GE(after.reader_wakes, before.reader_wakes + 1);
  if (!bulkrcu__reader_fence) {
    EXPECT_EQ(after.timeouts, before.timeouts) << "the waiter woke on its timer";
  }
}

TEST(Gp, SynchronizeWithoutReadersReturns) {
  for (int i = 0; i < 100; ++i) bulkrcu_synchronize();
  for (int i = 0; i < 100; ++i) bulkrcu_synchronize_expedited();
  bulkrcu_read_lock();
  bulkrcu_read_unlock();
  bulkrcu_synchronize();  // the caller's own finished section does not block it
}

TEST(Gp, TryGracePeriodNowFailsWhileAReaderHoldsASectionAndKeepsCookiesMonotonic) {
  bulkrcu_kvfree_barrier();  // nothing pending: the runtime thread has no grace period to run
  bulkrcu_synchronize();
  std::atomic<bool> never{false};
  HeldReader reader(&never);
  const unsigned long cookie = bulkrcu_get_state();
  const unsigned long seq = bulkrcu::detail::gp::current_seq();
  EXPECT_FALSE(bulkrcu::detail::gp::try_grace_period_now());
  // The attempt is abandoned, not undone: the sequence never moves backwards (it stays odd for
  // the next grace period to take over, unless one already has), so a cookie taken now is never
  // satisfied before the one taken before the attempt; neither is satisfied yet.
  const unsigned long after = bulkrcu::detail::gp::current_seq();
  EXPECT_TRUE(after == seq || after == (seq | 1)) << seq << " -> " << after;
  const unsigned long later = bulkrcu_get_state();
  EXPECT_GE(static_cast<long>(later - cookie), 0)
      << "get_state() went backwards: " << cookie << " then " << later;
  EXPECT_FALSE(bulkrcu_poll_state(cookie));
  reader.release_and_join();
  // Without readers it completes a grace period on this thread (retried: the runtime thread
  // may hold the engine's mutex for a moment).
  bool ok = false;
  for (int i = 0; i < 100000 && !ok; ++i) ok = bulkrcu::detail::gp::try_grace_period_now();
  EXPECT_TRUE(ok);
  bulkrcu_synchronize();  // whatever the attempts did, a full grace period satisfies the cookie
  EXPECT_TRUE(bulkrcu_poll_state(cookie));
}

// The torture's cookie check relies on this: a cookie taken later is never satisfied before
// one taken earlier. An attempt abandoned because a reader is inside used to put the sequence
// back to its even value, so an observer that saw the odd value saw it move backwards.
TEST(Gp, SequenceNeverMovesBackwardsWhenAttemptsAreAbandoned) {
  std::atomic<bool> never{false};
  HeldReader reader(&never);
  std::atomic<bool> stop{false};
  std::atomic<long> backwards{0}, odd_seen{0};
  std::thread observer([&] {
    unsigned long last = bulkrcu::detail::gp::current_seq();
    unsigned long last_cookie = bulkrcu_get_state();
    while (!stop.load(std::memory_order_relaxed)) {
      const unsigned long v = bulkrcu::detail::gp::current_seq();
      const unsigned long c = bulkrcu_get_state();
      if (static_cast<long>(v - last) < 0 || static_cast<long>(c - last_cookie) < 0) backwards.fetch_add(1);
      if (v & 1) odd_seen.fetch_add(1);
      last = v;
      last_cookie = c;
    }
  });
  // Attempts fail while the reader is inside (bounded: until the observer has seen an odd
  // sequence often enough for a backwards step to have been visible).
  long failed = 0;
  for (int i = 0; i < 200000 && (i < 2000 || odd_seen.load() < 1000); ++i)
    if (!bulkrcu::detail::gp::try_grace_period_now()) ++failed;
  stop = true;
  observer.join();
  EXPECT_GT(failed, 0);
  EXPECT_GT(odd_seen.load(), 0) << "the observer never ran during an attempt";
  EXPECT_EQ(backwards.load(), 0) << "the grace-period sequence (or get_state()) moved backwards";
  reader.release_and_join();
  bulkrcu_synchronize();
}

TEST(Gp, TryGracePeriodNowSatisfiesACookie) {
  const unsigned long cookie = bulkrcu_get_state();
  bool done = false;
  for (int i = 0; i < 100000 && !done; ++i) {
    bulkrcu::detail::gp::try_grace_period_now();
    done = bulkrcu_poll_state(cookie);
  }
  EXPECT_TRUE(done);
}

TEST(Gp, CookieNotSatisfiedBeforeGracePeriodSatisfiedAfter) {
  bulkrcu_read_lock();  // no grace period that starts after the cookie can end before unlock
  const unsigned long cookie = bulkrcu_get_state();
  EXPECT_FALSE(bulkrcu_poll_state(cookie));
  const unsigned long cookie2 = bulkrcu_get_state();
  EXPECT_GE(static_cast<long>(cookie2 - cookie), 0) << "cookies never go backwards";
  EXPECT_FALSE(bulkrcu_poll_state(cookie));
  bulkrcu_read_unlock();
  bulkrcu_synchronize();
  EXPECT_TRUE(bulkrcu_poll_state(cookie));
  EXPECT_TRUE(bulkrcu_poll_state(cookie2));
  // Stays satisfied.
  bulkrcu_synchronize();
  EXPECT_TRUE(bulkrcu_poll_state(cookie));
}

TEST(Gp, KernelSpellings) {
  rcu_read_lock();
  EXPECT_TRUE(rcu_read_lock_held());
  unsigned long c = get_state_synchronize_rcu();
  EXPECT_FALSE(poll_state_synchronize_rcu(c));
  rcu_read_unlock();
  synchronize_rcu();
  EXPECT_TRUE(poll_state_synchronize_rcu(c));
  c = start_poll_synchronize_rcu();
  cond_synchronize_rcu(c);
  EXPECT_TRUE(poll_state_synchronize_rcu(c));
  synchronize_rcu_expedited();
}

TEST(Gp, CondSynchronizeOnElapsedCookieRunsNoGracePeriod) {
  const unsigned long cookie = bulkrcu_get_state();
  bulkrcu_synchronize();
  ASSERT_TRUE(bulkrcu_poll_state(cookie));
  const uint64_t gps = stats().grace_periods;
  for (int i = 0; i < 10; ++i) bulkrcu_cond_synchronize(cookie);
  EXPECT_EQ(stats().grace_periods, gps);
}

TEST(Gp, CondSynchronizeOnFreshCookieWaits) {
  const unsigned long cookie = bulkrcu_get_state();
  bulkrcu_cond_synchronize(cookie);
  EXPECT_TRUE(bulkrcu_poll_state(cookie));
}

// start_poll alone makes a grace period happen: nobody calls synchronize.
TEST(Gp, StartPollProgressesWithoutSynchronize) {
  std::atomic<bool> dummy{false};
  const bulkrcu_stats before = stats();
  unsigned long cookie;
  {
    HeldReader reader(&dummy);
    cookie = bulkrcu_start_poll();
    wait_until([] { return gp_in_progress(); });  // the runtime thread started one
    give_window();
    EXPECT_FALSE(bulkrcu_poll_state(cookie)) << "cookie satisfied while a pre-existing reader is inside";
    reader.release_and_join();
  }
  wait_until([&] { return bulkrcu_poll_state(cookie); });
  const bulkrcu_stats after = stats();
  EXPECT_EQ(after.synchronize_calls, before.synchronize_calls);
  EXPECT_GE(after.grace_periods, before.grace_periods + 1);
}

TEST(Gp, StartPollInsideReader) {
  bulkrcu_read_lock();
  const unsigned long cookie = bulkrcu_start_poll();
  EXPECT_FALSE(bulkrcu_poll_state(cookie));  // the grace period waits for this very reader
  bulkrcu_read_unlock();
  wait_until([&] { return bulkrcu_poll_state(cookie); });
  // Many outstanding start_poll requests are all satisfied.
  std::vector<unsigned long> cookies;
  for (int i = 0; i < 50; ++i) cookies.push_back(bulkrcu_start_poll());
  for (unsigned long c : cookies) wait_until([&] { return bulkrcu_poll_state(c); });
}

// 64 callers that enter synchronize while one grace period is held up by a reader share the
// grace periods that follow.
TEST(Gp, ConcurrentSynchronizeCallersShareGracePeriods) {
  constexpr int kCallers = 64;
  std::atomic<bool> dummy{false};
  const bulkrcu_stats before = stats();
  std::vector<std::thread> callers;
  {
    HeldReader reader(&dummy);
    std::atomic<bool> go{false};
    for (int i = 0; i < kCallers; ++i)
      callers.emplace_back([&] {
        wait_until([&] { return go.load(); });
        bulkrcu_synchronize();
      });
    go = true;
    wait_until([&] { return stats().synchronize_calls >= before.synchronize_calls + kCallers; });
    reader.release_and_join();
  }
  for (auto& t : callers) t.join();
  const bulkrcu_stats after = stats();
  EXPECT_EQ(after.synchronize_calls, before.synchronize_calls + kCallers);
  const uint64_t used = after.grace_periods - before.grace_periods;
  EXPECT_GE(used, 1u);
  printf("64 concurrent synchronize callers: %llu grace periods\n", static_cast<unsigned long long>(used));
  EXPECT_LE(used, 8u) << "64 concurrent synchronize callers used " << used << " grace periods";
}

// ---- stall warning ----------------------------------------------------------------------------

// In a child process (fork), with stderr on a pipe: a reader named "rcu-staller" holds its
// section past a 50 ms stall timeout while a synchronize waits. Exactly one warning, naming
// the thread by tid and name; the grace period keeps waiting, then completes.
TEST(GpStall, OneWarningNamingTheThread) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(fds[0]);
    dup2(fds[1], 2);
    alarm(120);  // deadlock guard only
    bulkrcu::detail::set_stall_timeout_ns(50 * 1000 * 1000);
    int code = 0;
    std::atomic<bool> sync_done{false};
    std::atomic<int> tid{0};
    SectionHolder reader([&] {
      pthread_setname_np(pthread_self(), "rcu-staller");
      tid = static_cast<int>(syscall(SYS_gettid));
    });
    std::thread syncer([&] {
      bulkrcu_synchronize();
      sync_done = true;
    });
    wait_until([] { return stats().stall_warnings >= 1; });
    if (sync_done.load()) code |= 1;  // the grace period must keep waiting
    // Stay stalled for several more timeouts: a second warning for the same stall is a bug.
    nap_us(300 * 1000);
    if (sync_done.load()) code |= 2;
    reader.release_and_join();
    syncer.join();
    if (!sync_done.load()) code |= 4;
    if (stats().stall_warnings != 1) code |= 8;
    dprintf(2, "\nstaller-tid=%d\n", tid.load());
    _exit(code);
  }
  close(fds[1]);
  std::string err;
  char buf[4096];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) err.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "child died: status " << status << "\n" << err;
  EXPECT_EQ(WEXITSTATUS(status), 0) << err;
  const size_t tid_pos = err.find("staller-tid=");
  ASSERT_NE(tid_pos, std::string::npos) << err;
  const int tid = atoi(err.c_str() + tid_pos + 12);
  size_t warnings = 0;
  for (size_t pos = 0; (pos = err.find("grace-period stall", pos)) != std::string::npos; ++pos) ++warnings;
  EXPECT_EQ(warnings, 1u) << err;
  EXPECT_NE(err.find("thread " + std::to_string(tid) + " (rcu-staller)"), std::string::npos) << err;
  EXPECT_NE(err.find("keeps waiting"), std::string::npos) << err;
}

}  // namespace

namespace {
// ---- cancellation: bulkrcu's waits are not cancellation points ----------------------------

// A thread that loops on `wait`, with a cancellation point between calls.
template <class Wait>
struct CancelLoop {
  static void* run(void* arg) {
    auto* self = static_cast<CancelLoop*>(arg);
    for (;;) {
      self->calls.fetch_add(1);
      self->wait();
      pthread_testcancel();
    }
    return nullptr;
  }
  Wait wait;
  std::atomic<long> calls{0};
};

// Cancels a thread while it sleeps inside `wait` (a reader holds the grace period open): the
// process must not abort, the thread must end cancelled at its next cancellation point, and the
// engine must be usable afterwards (no lock left held).
template <class Wait>
void expect_cancel_safe(Wait wait) {
  SectionHolder reader;
  CancelLoop<Wait> loop{wait};
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, nullptr, &CancelLoop<Wait>::run, &loop), 0);
  wait_until([&] { return loop.calls.load() >= 1 && gp_in_progress(); });
  give_window();  // long enough for the waiter to reach its sleeps
  ASSERT_EQ(pthread_cancel(t), 0);
  give_window();
  reader.release_and_join();
  void* result = nullptr;
  ASSERT_EQ(pthread_join(t, &result), 0);
  EXPECT_EQ(result, PTHREAD_CANCELED);
  bulkrcu_synchronize();  // gp_mutex is free
  std::atomic<bool> done{false};
  SectionHolder again;
  std::thread waiter([&] {
    bulkrcu_synchronize();
    done = true;
  });
  wait_until([] { return gp_in_progress(); });
  EXPECT_FALSE(done.load());
  again.release_and_join();
  waiter.join();
}

TEST(GpCancel, SynchronizeIsNotACancellationPoint) {
  expect_cancel_safe([] { bulkrcu_synchronize(); });
}

TEST(GpCancel, SynchronizeExpeditedIsNotACancellationPoint) {
  expect_cancel_safe([] { bulkrcu_synchronize_expedited(); });
}

TEST(GpCancel, CondSynchronizeIsNotACancellationPoint) {
  expect_cancel_safe([] { bulkrcu_cond_synchronize(bulkrcu_get_state()); });
}

// (PTHREAD_CANCEL_ASYNCHRONOUS is not tested: POSIX allows only async-cancel-safe functions,
// which bulkrcu's waits are not, with it enabled.)

// ---- the no-reader shortcut -----------------------------------------------------------------
// Run in a fresh process (the test program re-executes itself with a filter), where no thread
// has ever read: synchronize returns without a grace period, and stops doing so as soon as a
// thread holds a section.

TEST(GpNoReader, ShortcutInFreshProcess) {
  if (!env_set("BULKRCU_TEST_FRESH")) GTEST_SKIP() << "runs in a child (GpNoReader.Spawn)";
  ASSERT_TRUE(bulkrcu::detail::gp::no_reader_slot_owned());
  // No membarrier and no wait: the shortcut's grace periods are counted, but never expedited
  // and never wait (no stall; a cookie taken before is satisfied after).
  const bulkrcu_stats st0 = stats();
  const unsigned long cookie = bulkrcu_get_state();
  for (int i = 0; i < 100; ++i) bulkrcu_synchronize();
  bulkrcu_synchronize_expedited();
  EXPECT_TRUE(bulkrcu_poll_state(cookie));
  EXPECT_EQ(stats().expedited_grace_periods, st0.expedited_grace_periods)
      << "synchronize ran the full engine with no reader at all";
  EXPECT_GE(stats().no_reader_grace_periods - st0.no_reader_grace_periods, 100u);
  // Every other way to a grace period takes the shortcut too: the caches' attempt, the
  // non-blocking attempt, and the runtime thread's grace period for a polled cookie.
  {
    const bulkrcu_stats a = stats();
    const unsigned long c1 = bulkrcu_get_state();
    ASSERT_TRUE(bulkrcu::detail::gp::try_no_reader_grace_period());
    EXPECT_TRUE(bulkrcu_poll_state(c1));
    const unsigned long c2 = bulkrcu_get_state();
    ASSERT_TRUE(bulkrcu::detail::gp::try_grace_period_now());
    EXPECT_TRUE(bulkrcu_poll_state(c2));
    const unsigned long c3 = bulkrcu_start_poll();
    for (int i = 0; i < 20000 && !bulkrcu_poll_state(c3); ++i) usleep(100);
    EXPECT_TRUE(bulkrcu_poll_state(c3)) << "the runtime thread never ran the polled grace period";
    const bulkrcu_stats b = stats();
    EXPECT_EQ(b.no_reader_grace_periods - a.no_reader_grace_periods, b.grace_periods - a.grace_periods);
    EXPECT_GE(b.no_reader_grace_periods - a.no_reader_grace_periods, 3u);
  }
  const uint64_t gp0 = stats().grace_periods;
  // A thread that read and exited leaves no owned slot behind.
  std::thread([] {
    bulkrcu_read_lock();
    bulkrcu_read_unlock();
  }).join();
  EXPECT_TRUE(bulkrcu::detail::gp::no_reader_slot_owned());
  const uint64_t exp0 = stats().expedited_grace_periods;
  bulkrcu_synchronize_expedited();
  EXPECT_EQ(stats().expedited_grace_periods, exp0);
  // With a reader inside a section, synchronize must wait for it.
  expect_waits_for_reader([] { bulkrcu_synchronize(); });
  EXPECT_GT(stats().grace_periods, gp0);
  // A live thread that owns a slot (outside any section) turns the shortcut off: the
  // cache's attempt refuses and changes nothing; the full grace period still completes.
  std::atomic<bool> owned{false}, done{false};
  std::thread t([&] {
    bulkrcu_read_lock();
    bulkrcu_read_unlock();
    owned = true;
    while (!done) usleep(100);
  });
  while (!owned) usleep(100);
  const bulkrcu_stats a = stats();
  const unsigned long c = bulkrcu_get_state();
  EXPECT_FALSE(bulkrcu::detail::gp::try_no_reader_grace_period());
  bulkrcu_synchronize();
  EXPECT_TRUE(bulkrcu_poll_state(c));
  EXPECT_EQ(stats().no_reader_grace_periods, a.no_reader_grace_periods);
  done = true;
  t.join();
}

TEST(GpNoReader, Spawn) {
  if (env_set("BULKRCU_TEST_FRESH")) GTEST_SKIP();
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    setenv("BULKRCU_TEST_FRESH", "1", 1);
    execl("/proc/self/exe", "gp_test", "--gtest_filter=GpNoReader.ShortcutInFreshProcess", (char*)nullptr);
    _exit(127);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
