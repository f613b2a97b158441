// bulkrcu/tests/test_support.h: helpers shared by the GoogleTest programs (tests only).
//
// No helper here measures time: waits are "until a condition holds", and a test that never
// reaches its condition is caught by ctest's per-test timeout.
#pragma once

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>

#include "bulkrcu/rcu.h"
#include "bulkrcu/stats.h"
#include "gp/gp.h"

namespace bulkrcu_test {

inline bulkrcu_stats stats() {
  bulkrcu_stats s;
  memset(&s, 0xff, sizeof s);  // every field must be written by the library
  bulkrcu_get_stats(&s, sizeof s);
  return s;
}

inline void nap_us(long us) {
  timespec ts{us / 1000000, (us % 1000000) * 1000};
  nanosleep(&ts, nullptr);
}

// Waits (yielding, then sleeping 50 us a round) until pred() is true.
template <class Pred>
void wait_until(Pred pred) {
  for (unsigned i = 0; !pred(); ++i) {
    if (i < 100)
      sched_yield();
    else
      nap_us(50);
  }
}

// wait_until with a limit: false if pred() is still false after `seconds` (for waits whose
// failure is the bug under test, so that it fails the test instead of hanging it).
template <class Pred>
bool wait_until_for(Pred pred, int seconds) {
  timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (unsigned i = 0; !pred(); ++i) {
    if (i < 100) {
      sched_yield();
      continue;
    }
    nap_us(50);
    timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    if (t.tv_sec - t0.tv_sec > seconds) return pred();
  }
  return true;
}

// True while some thread runs a grace period (waits for readers).
inline bool gp_in_progress() { return bulkrcu::detail::gp::driving(); }

// Gives a buggy grace period a window in which to finish too early. Correctness never depends
// on its length: a correct engine cannot finish while the reader is held, whatever the window.
inline void give_window() { nap_us(20000); }

inline bool env_set(const char* name) {
  const char* v = getenv(name);
  return v && *v && strcmp(v, "0") != 0;
}

// A thread that runs `setup`, enters a read-side critical section `depth` times nested, and
// holds it until release_and_join(); `at_release` runs inside the section just before it ends.
// The constructor returns once the section has begun.
class SectionHolder {
 public:
  explicit SectionHolder(std::function<void()> setup = {}, int depth = 1,
                         std::function<void()> at_release = {}) {
    t_ = std::thread([this, setup, depth, at_release] {
      if (setup) setup();
      for (int i = 0; i < depth; ++i) bulkrcu_read_lock();
      in_ = true;
      wait_until([this] { return release_.load(); });
      if (at_release) at_release();
      for (int i = 0; i < depth; ++i) bulkrcu_read_unlock();
    });
    wait_until([this] { return in_.load(); });
  }
  void release_and_join() {
    release_ = true;
    if (t_.joinable()) t_.join();
  }
  ~SectionHolder() { release_and_join(); }
  SectionHolder(const SectionHolder&) = delete;
  SectionHolder& operator=(const SectionHolder&) = delete;

 private:
  std::atomic<bool> in_{false}, release_{false};
  std::thread t_;
};

// Installs `handler` for `sig` with SA_RESTART (and SA_SIGINFO off).
inline void install_handler(int sig, void (*handler)(int)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(sig, &sa, nullptr);
}

// Runs retire_one() in a loop on a new thread while this one sends it `signals` signals `sig`
// (a 100 us pause every 64), then stops it and returns how many times retire_one() ran. The
// handler under test is the caller's; the kvfree tests use it to interrupt retire stores.
template <class F>
long retire_while_signalled(int sig, int signals, F retire_one) {
  std::atomic<bool> stop{false}, started{false};
  pthread_t target_thread;
  long retired = 0;
  std::thread target([&] {
    target_thread = pthread_self();
    started = true;
    while (!stop.load(std::memory_order_relaxed)) {
      retire_one();
      ++retired;
    }
  });
  while (!started) sched_yield();
  for (int i = 0; i < signals; ++i) {
    pthread_kill(target_thread, sig);
    if (i % 64 == 0) nap_us(100);
  }
  stop = true;
  target.join();
  return retired;
}

// Sends `sig` to `t` until pred() holds. One pthread_kill would do, but ThreadSanitizer defers
// and occasionally drops a signal aimed at a thread that is sleeping in an intercepted call.
template <class Pred>
void signal_until(pthread_t t, int sig, Pred pred) {
  while (!pred()) {
    pthread_kill(t, sig);
    for (int i = 0; i < 20 && !pred(); ++i) nap_us(50);
  }
}

}  // namespace bulkrcu_test
