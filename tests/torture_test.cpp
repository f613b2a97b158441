// Torture: readers check that every object they reach is alive while writers replace objects
// and retire the old ones through every path the library offers. Readers also run in signal
// handlers and in short-lived threads. Sized by iteration counts, never by time.
//
// An object's `magic` is kAlive from construction until its destructor writes kDead; a reader
// that loads an object from a slot and then finds magic != kAlive inside the same read-side
// critical section has reached a freed (or being-freed) object: a grace-period bug. Under
// AddressSanitizer such a read is reported as a use-after-free anyway.
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <thread>
#include <utility>
#include <vector>

#include "bulkrcu/rcu.h"
#include "bulkrcu/rcu.hpp"
#include "bulkrcu/stats.h"
#include "test_support.h"

using namespace bulkrcu_test;

namespace {

#if defined(__SANITIZE_ADDRESS__)
#define TORTURE_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TORTURE_SANITIZED 1
#endif
#endif
#if BULKRCU_TSAN || defined(TORTURE_SANITIZED)
constexpr int kWriterIters = 4000;  // per writer; sanitizers are ~10x slower
#else
constexpr int kWriterIters = 40000;
#endif
constexpr int kWriters = 2;
constexpr int kSlots = 16;
constexpr std::uint64_t kAlive = 0xA11CE5A11CE5A11Cull;
constexpr std::uint64_t kDead = 0xDEADDEADDEADDEADull;

std::atomic<long> g_constructed{0}, g_destroyed{0};
std::atomic<long> g_bad{0};  // dead objects reached by readers
std::atomic<long> g_checks{0};

struct Obj;
struct ObjDeleter {  // stateful: counts deletions per path
  std::atomic<long>* count = nullptr;
  void operator()(Obj* o) const;
};

struct Obj : bulkrcu::rcu_obj_base<Obj, ObjDeleter> {
  explicit Obj(long v) : value(v) {
    magic.store(kAlive, std::memory_order_relaxed);
    g_constructed.fetch_add(1, std::memory_order_relaxed);
  }
  ~Obj() {
    magic.store(kDead, std::memory_order_relaxed);
    g_destroyed.fetch_add(1, std::memory_order_relaxed);
  }
  std::atomic<std::uint64_t> magic;
  long value;
  struct CallNode {
    bulkrcu_head head;  // first: the callback recovers the node from it
    Obj* owner;
  } call_node{{}, this};  // for the bulkrcu_call path
};

void ObjDeleter::operator()(Obj* o) const {
  count->fetch_add(1, std::memory_order_relaxed);
  delete o;
}

std::atomic<Obj*> g_slot[kSlots];

// One read-side check: a few slots, each object must be alive for the whole section.
BULKRCU_ALWAYS_INLINE void read_check(unsigned seed) {
  bulkrcu_read_lock();
  for (unsigned k = 0; k < 3; ++k) {
    Obj* o = g_slot[(seed + k * 5) % kSlots].load(std::memory_order_acquire);
    if (o->magic.load(std::memory_order_relaxed) != kAlive) g_bad.fetch_add(1, std::memory_order_relaxed);
    if (k == 1) {  // a nested section inside the outer one
      bulkrcu_read_lock();
      if (o->value < 0) g_bad.fetch_add(1, std::memory_order_relaxed);
      bulkrcu_read_unlock();
    }
    for (int i = 0; i < 8; ++i) bulkrcu::detail::cpu_relax();  // widen the window
    if (o->magic.load(std::memory_order_relaxed) != kAlive) g_bad.fetch_add(1, std::memory_order_relaxed);
  }
  bulkrcu_read_unlock();
  g_checks.fetch_add(1, std::memory_order_relaxed);
}

std::atomic<long> g_handler_checks{0};
std::atomic<unsigned> g_handler_seed{0};
void read_handler(int) {
  read_check(g_handler_seed.fetch_add(1, std::memory_order_relaxed));
  g_handler_checks.fetch_add(1, std::memory_order_relaxed);
}

void delete_cb(bulkrcu_head* h) { delete reinterpret_cast<Obj::CallNode*>(h)->owner; }

struct PathCounts {
  std::atomic<long> sync{0}, expedited{0}, call{0}, get_state_poll{0}, start_poll_poll{0}, cond{0},
      obj_retire{0}, rcu_retire{0};
};

void writer(int id, PathCounts* pc) {
  std::deque<std::pair<unsigned long, Obj*>> polled;  // (cookie, object) waiting for a poll
  std::deque<std::pair<unsigned long, Obj*>> started;
  auto reap = [&](std::deque<std::pair<unsigned long, Obj*>>& q, std::atomic<long>& counter, bool all) {
    while (!q.empty()) {
      auto [cookie, o] = q.front();
      if (!bulkrcu_poll_state(cookie)) {
        if (!all && q.size() < 256) return;
        bulkrcu_cond_synchronize(cookie);
      }
      q.pop_front();
      delete o;
      counter.fetch_add(1, std::memory_order_relaxed);
    }
  };
  unsigned x = 12345u + static_cast<unsigned>(id) * 7919u;
  for (int it = 0; it < kWriterIters; ++it) {
    x = x * 1103515245u + 12345u;
    Obj* fresh = new Obj(it);
    Obj* old = g_slot[(x >> 8) % kSlots].exchange(fresh, std::memory_order_acq_rel);
    switch (it % 8) {
      case 0:
        bulkrcu_synchronize();
        delete old;
        pc->sync.fetch_add(1, std::memory_order_relaxed);
        break;
      case 1:
        bulkrcu_synchronize_expedited();
        delete old;
        pc->expedited.fetch_add(1, std::memory_order_relaxed);
        break;
      case 2:
        bulkrcu_call(&old->call_node.head, delete_cb);
        pc->call.fetch_add(1, std::memory_order_relaxed);
        break;
      case 3:
        polled.emplace_back(bulkrcu_get_state(), old);
        break;
      case 4:
        started.emplace_back(bulkrcu_start_poll(), old);
        break;
      case 5: {
        const unsigned long cookie = bulkrcu_get_state();
        read_check(x);  // some work between the cookie and the wait
        bulkrcu_cond_synchronize(cookie);
        delete old;
        pc->cond.fetch_add(1, std::memory_order_relaxed);
        break;
      }
      case 6:
        old->retire(ObjDeleter{&pc->obj_retire});
        break;
      case 7:
        bulkrcu::rcu_retire(old, ObjDeleter{&pc->rcu_retire});
        break;
    }
    reap(polled, pc->get_state_poll, false);
    reap(started, pc->start_poll_poll, false);
  }
  reap(polled, pc->get_state_poll, true);
  reap(started, pc->start_poll_poll, true);
}

TEST(Torture, ReadersNeverReachFreedObjects) {
  install_handler(SIGUSR1, read_handler);
  for (int i = 0; i < kSlots; ++i) g_slot[i] = new Obj(i);
  const long constructed0 = g_constructed.load();
  const long destroyed0 = g_destroyed.load();
  const bulkrcu_stats s0 = stats();

  std::atomic<bool> stop{false};
  PathCounts pc;
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r)
    readers.emplace_back([&, r] {
      unsigned seed = static_cast<unsigned>(r) * 31u;
      while (!stop.load(std::memory_order_relaxed)) read_check(seed++);
    });
  std::atomic<long> short_lived{0};
  std::thread spawner([&] {  // short-lived reader threads, one after another
    while (!stop.load(std::memory_order_relaxed)) {
      std::thread t([&] {
        for (unsigned i = 0; i < 50; ++i) read_check(i);
      });
      t.join();
      short_lived.fetch_add(1, std::memory_order_relaxed);
    }
  });
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) writers.emplace_back(writer, w, &pc);
  std::vector<pthread_t> targets;
  for (auto& t : readers) targets.push_back(t.native_handle());
  for (auto& t : writers) targets.push_back(t.native_handle());
  std::thread signaller([&] {  // readers in handlers, interrupting readers and writers
    for (unsigned i = 0; !stop.load(std::memory_order_relaxed); ++i) {
      pthread_kill(targets[i % targets.size()], SIGUSR1);
      nap_us(100);
    }
  });

  for (auto& t : writers) t.join();
  stop = true;
  signaller.join();
  spawner.join();
  for (auto& t : readers) t.join();
  bulkrcu::rcu_barrier();

  EXPECT_EQ(g_bad.load(), 0) << "readers reached freed objects";
  const long retired = static_cast<long>(kWriters) * kWriterIters;
  EXPECT_EQ(g_constructed.load() - constructed0, retired);
  EXPECT_EQ(g_destroyed.load() - destroyed0, retired) << "every replaced object is freed exactly once";
  const long per_path = retired / 8;
  EXPECT_EQ(pc.sync.load(), per_path);
  EXPECT_EQ(pc.expedited.load(), per_path);
  EXPECT_EQ(pc.cond.load(), per_path);
  EXPECT_EQ(pc.get_state_poll.load(), per_path);
  EXPECT_EQ(pc.start_poll_poll.load(), per_path);
  EXPECT_EQ(pc.obj_retire.load(), per_path);
  EXPECT_EQ(pc.rcu_retire.load(), per_path);
  const bulkrcu_stats s1 = stats();
  // bulkrcu_call runs callbacks; the C++ retires go through kvfree blocks (or, for
  // rcu_obj_base without a page, its embedded head and a callback).
  EXPECT_GE(s1.callbacks_invoked - s0.callbacks_invoked, static_cast<std::uint64_t>(per_path));
  EXPECT_GE((s1.callbacks_invoked - s0.callbacks_invoked) + (s1.kv_retired - s0.kv_retired),
            static_cast<std::uint64_t>(3 * per_path));
  EXPECT_GT(g_checks.load(), 0);
  EXPECT_GT(g_handler_checks.load(), 0);
  EXPECT_GT(short_lived.load(), 0);
  printf(
      "torture: %ld retired, %ld reader checks (%ld in handlers), %ld short-lived threads, %llu grace "
      "periods\n",
      retired, g_checks.load(), g_handler_checks.load(), short_lived.load(),
      static_cast<unsigned long long>(s1.grace_periods - s0.grace_periods));

  for (auto& s : g_slot) delete s.exchange(nullptr);
}

}  // namespace
