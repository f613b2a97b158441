// kvfree layer tests. Built against bulkrcu_shrunk: blocks of 4 pointers, a page cache of 1,
// so every block-full, cache, pool and fallback path runs within a few retires.
#include "kvfree/kvfree.h"

#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "bulkrcu/kernel.h"
#include "bulkrcu/rcu.h"
#include "bulkrcu/stats.h"
#include "pool/pool.h"
#include "test_support.h"

namespace {

bulkrcu_stats snap() {
  bulkrcu_stats s;
  bulkrcu_get_stats(&s, sizeof s);
  return s;
}

// A tracked object: the deleter checks it is freed once and only once.
constexpr std::uint64_t kAlive = 0xA11CE5A11CE5ull;
constexpr std::uint64_t kDead = 0xDEADDEADDEADull;
struct Obj {
  std::uint64_t magic = kAlive;
  std::atomic<bool>* reader_done = nullptr;  // when set: must be true at deletion time
  bulkrcu_head rh;
};
std::atomic<long> g_deleted{0};
std::atomic<long> g_bad{0};

void obj_delete(void* p) {
  auto* o = static_cast<Obj*>(p);
  if (o->magic != kAlive) g_bad.fetch_add(1);
  if (o->reader_done && !o->reader_done->load()) g_bad.fetch_add(1);
  o->magic = kDead;
  g_deleted.fetch_add(1);
  delete o;
}

struct FailInjection {
  explicit FailInjection(int mode) { bulkrcu::detail::pool::set_fail_injection(mode); }
  ~FailInjection() { bulkrcu::detail::pool::set_fail_injection(0); }
};

class Kvfree : public ::testing::Test {
 protected:
  void SetUp() override {
    bulkrcu_kvfree_barrier();
    g_deleted = 0;
    g_bad = 0;
  }
  void TearDown() override {
    bulkrcu_kvfree_barrier();
    EXPECT_EQ(g_bad.load(), 0);
  }
};

TEST_F(Kvfree, NullIsANoOp) {
  auto before = snap();
  bulkrcu_kvfree(nullptr);
  bulkrcu_kfree_head(nullptr, nullptr);
  bulkrcu_kvfree_barrier();
  auto after = snap();
  EXPECT_EQ(after.kv_retired, before.kv_retired);
}

TEST_F(Kvfree, DeferFreesEveryObjectOnceAfterBarrier) {
  constexpr long kN = 1000;
  for (long i = 0; i < kN; ++i) bulkrcu_defer(obj_delete, new Obj);
  bulkrcu_kvfree_barrier();
  EXPECT_EQ(g_deleted.load(), kN);
}

TEST_F(Kvfree, KvfreeAndKernelSpellings) {
  auto before = snap();
  for (int i = 0; i < 100; ++i) bulkrcu_kvfree(malloc(24));
  for (int i = 0; i < 50; ++i) {
    Obj* o = static_cast<Obj*>(malloc(sizeof(Obj)));
    kvfree_rcu(o, rh);
    kfree_rcu(static_cast<Obj*>(malloc(sizeof(Obj))), rh);
    kvfree_rcu(malloc(16));
    kvfree_rcu_mightsleep(malloc(16));
    kfree_rcu_mightsleep(malloc(16));
  }
  kvfree_rcu_barrier();
  auto after = snap();
  // Every retired object was freed (ASan's leak check confirms the frees are real).
  EXPECT_EQ(after.kv_retired - before.kv_retired, 100u + 50u * 5u);
  EXPECT_EQ(after.kv_freed - before.kv_freed, 100u + 50u * 5u);
}

TEST_F(Kvfree, AReaderActiveAtRetireDelaysTheDeleter) {
  std::atomic<bool> reader_done{false};
  std::atomic<bool> in_reader{false};
  std::atomic<int> early{0};
  std::thread reader([&] {
    bulkrcu_read_lock();
    in_reader = true;
    // Hold the section while the writer retires and the runtime thread works. (Checked after
    // the join: a gtest assertion inside a std::thread only leaves this lambda.)
    for (int i = 0; i < 200; ++i) {
      usleep(1000);
      if (g_deleted.load() != 0) early.fetch_add(1);
    }
    reader_done = true;
    bulkrcu_read_unlock();
  });
  while (!in_reader) sched_yield();
  for (int i = 0; i < 64; ++i) {
    Obj* o = new Obj;
    o->reader_done = &reader_done;
    bulkrcu_defer(obj_delete, o);
  }
  reader.join();
  EXPECT_EQ(early.load(), 0);
  bulkrcu_kvfree_barrier();
  EXPECT_EQ(g_deleted.load(), 64);
}

TEST_F(Kvfree, LoneRetireIsFreedWithoutABarrier) {
  // A retire that fills no block: the runtime thread's drain timer must detach it and run its
  // deleter on its own (no barrier, no other retire). A hang is caught by ctest's timeout.
  const bulkrcu_stats s0 = snap();
  const std::thread::id self = std::this_thread::get_id();
  static std::atomic<bool> on_caller{false};
  static std::thread::id caller;
  caller = self;
  bulkrcu_defer(
      [](void* p) {
        if (std::this_thread::get_id() == caller) on_caller = true;
        obj_delete(p);
      },
      new Obj);
  // kv_freed_by_runtime is counted after the block's deleters have run: wait for it.
  bulkrcu_stats s1 = snap();
  while (s1.kv_freed_by_runtime == s0.kv_freed_by_runtime) {
    usleep(1000);
    s1 = snap();
  }
  EXPECT_EQ(g_deleted.load(), 1);
  EXPECT_FALSE(on_caller.load());
  EXPECT_EQ(s1.kv_freed_by_runtime - s0.kv_freed_by_runtime, 1u);
  EXPECT_GT(s1.kv_monitor_passes, s0.kv_monitor_passes);
}

TEST_F(Kvfree, ManyDeletersShareAndSplitChannels) {
  // More deleters than channels: collisions seal blocks early, nothing is lost.
  static std::atomic<long> counts[24];
  using Fn = void (*)(void*);
  static const Fn fns[24] = {
#define F(i)       \
  [](void* p) {    \
    counts[i]++;   \
    obj_delete(p); \
  }
      F(0),  F(1),  F(2),  F(3),  F(4),  F(5),  F(6),  F(7),  F(8),  F(9),  F(10), F(11),
      F(12), F(13), F(14), F(15), F(16), F(17), F(18), F(19), F(20), F(21), F(22), F(23),
#undef F
  };
  for (auto& c : counts) c = 0;
  for (int round = 0; round < 50; ++round)
    for (int f = 0; f < 24; ++f) bulkrcu_defer(fns[f], new Obj);
  bulkrcu_kvfree_barrier();
  for (int f = 0; f < 24; ++f) EXPECT_EQ(counts[f].load(), 50) << "deleter " << f;
}

TEST_F(Kvfree, LocklessMissFallsBackToInPlaceAllocation) {
  auto before = snap();
  {
    FailInjection inject(1);
    bulkrcu_memory_pressure();  // empty the per-CPU page caches too
    for (int i = 0; i < 40; ++i) bulkrcu_defer(obj_delete, new Obj);
  }
  bulkrcu_kvfree_barrier();
  auto after = snap();
  EXPECT_EQ(g_deleted.load(), 40);
  EXPECT_GT(after.kv_fallback_inplace, before.kv_fallback_inplace);
}

TEST_F(Kvfree, NoPageAtAll) {
  auto before = snap();
  std::vector<Obj*> kept;
  {
    FailInjection inject(2);
    bulkrcu_memory_pressure();
    for (int i = 0; i < 40; ++i) {
      // Headless blocking form: synchronize and free inline (last resort).
      bulkrcu_defer(obj_delete, new Obj);
      // Two-argument form: linked through its head, never blocks.
      Obj* h = static_cast<Obj*>(malloc(sizeof(Obj)));
      bulkrcu_kfree_head(h, &h->rh);
      // The nowait form refuses once the current block is full; the caller keeps the object.
      Obj* n = new Obj;
      if (!bulkrcu_defer_nowait(obj_delete, n)) kept.push_back(n);
    }
  }
  bulkrcu_kvfree_barrier();
  auto after = snap();
  EXPECT_GT(after.kv_fallback_synchronize, before.kv_fallback_synchronize);
  EXPECT_GT(after.kv_fallback_head, before.kv_fallback_head);
  EXPECT_GT(after.kv_nowait_refused, before.kv_nowait_refused);
  EXPECT_FALSE(kept.empty());
  EXPECT_EQ(g_deleted.load(), 40 + 40 - static_cast<long>(kept.size()));
  for (Obj* o : kept) delete o;
}

TEST_F(Kvfree, NoPageInsideAReaderUsesTheReserve) {
  auto before = snap();
  {
    FailInjection inject(2);
    bulkrcu_memory_pressure();
    bulkrcu_read_lock();
    // Blocks of 4 in test builds: the reserve (2 pages) covers 8 more pointers at most, plus
    // what the current block still holds.
    for (int i = 0; i < 6; ++i) bulkrcu_defer(obj_delete, new Obj);
    bulkrcu_read_unlock();
  }
  bulkrcu_kvfree_barrier();
  auto after = snap();
  EXPECT_GT(after.kv_fallback_reserve, before.kv_fallback_reserve);
  EXPECT_EQ(after.kv_fallback_synchronize, before.kv_fallback_synchronize);
  EXPECT_EQ(g_deleted.load(), 6);
}

TEST(KvfreeDeath, ReserveExhaustedInsideAReaderAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        bulkrcu::detail::pool::set_fail_injection(2);
        bulkrcu_memory_pressure();
        bulkrcu_read_lock();
        for (int i = 0; i < 1000; ++i) bulkrcu_kvfree(malloc(8));
      },
      "out of memory inside a read-side critical section");
}

TEST(KvfreeDeath, BarrierInsideAReaderAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        bulkrcu_read_lock();
        bulkrcu_kvfree_barrier();
      },
      "bulkrcu_kvfree_barrier\\(\\) called inside a read-side critical section");
}

TEST(KvfreeDeath, HeadOutsideTheObjectAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        char* p = static_cast<char*>(malloc(16));
        bulkrcu_head h;
        bulkrcu_kfree_head(p, &h);
      },
      "head must lie inside the object");
}

TEST_F(Kvfree, ShortLivedThreadsRetireAndExit) {
  constexpr int kThreads = 2000;
  constexpr int kPer = 5;
  for (int t = 0; t < kThreads; t += 8) {
    std::vector<std::thread> ts;
    for (int j = 0; j < 8; ++j)
      ts.emplace_back([] {
        for (int i = 0; i < kPer; ++i) bulkrcu_defer(obj_delete, new Obj);
      });
    for (auto& th : ts) th.join();
  }
  bulkrcu_kvfree_barrier();
  EXPECT_EQ(g_deleted.load(), static_cast<long>(kThreads) * kPer);
}

TEST_F(Kvfree, AThreadThatStopsWithAPartlyFreedCursorStrandsNothing) {
  // The thread retires free() objects until one of its helps leaves its reclaim cursor partly
  // freed (test builds free 3 pointers of a 4-pointer block per help), then stops retiring but
  // stays alive. Without a barrier, the runtime thread must take the cursor back (counted) and
  // free the rest; a hang is caught by ctest's timeout.
  const bulkrcu_stats s0 = snap();
  std::atomic<bool> holding{false}, release{false};
  std::atomic<long> retired{0};
  std::thread t([&] {
    while (!bulkrcu::detail::kvfree::thread_has_cursor()) {
      for (int i = 0; i < 7; ++i) bulkrcu_kvfree(malloc(16));
      retired.fetch_add(7);
      usleep(1000);
    }
    holding = true;
    while (!release.load()) usleep(1000);
  });
  while (!holding.load()) usleep(1000);
  const std::uint64_t want = static_cast<std::uint64_t>(retired.load());
  bulkrcu_stats s = snap();
  while (s.kv_freed - s0.kv_freed < want || s.kv_cursors_stolen == s0.kv_cursors_stolen) {
    usleep(1000);
    s = snap();
  }
  EXPECT_EQ(s.kv_freed - s0.kv_freed, want);
  EXPECT_GT(s.kv_cursors_stolen, s0.kv_cursors_stolen);
  EXPECT_GT(s.kv_freed_by_retirers, s0.kv_freed_by_retirers);  // it did free some itself
  release = true;
  t.join();
}

TEST_F(Kvfree, RetiringThreadsDriveTheMonitorWhenNothingIsReady) {
  // Test builds let every help that finds nothing to free make a lite monitor pass (hand-over,
  // collection, a grace period if none needs waiting), concurrently with the runtime thread's
  // passes and with each other.
  const bulkrcu_stats s0 = snap();
  constexpr int kThreads = 4, kPer = 20000;
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([] {
      for (int i = 0; i < kPer; ++i) bulkrcu_defer(obj_delete, new Obj);
    });
  for (auto& th : ts) th.join();
  const bulkrcu_stats s1 = snap();
  bulkrcu_kvfree_barrier();
  EXPECT_EQ(g_deleted.load(), static_cast<long>(kThreads) * kPer);
  EXPECT_GT(s1.kv_helps_dry, s0.kv_helps_dry);
  EXPECT_GT(s1.kv_retirer_passes, s0.kv_retirer_passes);
}

// Retires from a signal handler that interrupts retires in progress.
// malloc is not async-signal-safe: the handler takes objects allocated beforehand.
constexpr int kSigObjs = 4096;
Obj* g_sig_objs[kSigObjs];
bool g_sig_refused[kSigObjs];
std::atomic<int> g_sig_next{0};
std::atomic<long> g_sig_queued{0};
void sig_free(void* p) { free(p); }
void on_signal(int) {
  int saved = errno;
  int i = g_sig_next.fetch_add(1);
  if (i < kSigObjs) {
    Obj* o = g_sig_objs[i];
    // The async-signal-safe form (two channels: free and a second deleter). It may refuse:
    // then the handler keeps the object, freed after the test (free is not signal-safe).
    if (!bulkrcu_defer_nowait(i % 2 ? free : sig_free, o)) g_sig_refused[i] = true;
    g_sig_queued.fetch_add(1);
  }
  errno = saved;
}

TEST_F(Kvfree, SignalHandlersRetireWhileInterruptingRetires) {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ASSERT_EQ(sigaction(SIGUSR1, &sa, nullptr), 0);
  g_sig_queued = 0;
  g_sig_next = 0;
  for (auto& r : g_sig_refused) r = false;
  for (auto& o : g_sig_objs) {
    o = static_cast<Obj*>(malloc(sizeof(Obj)));
    new (o) Obj;
  }
  const long retired = bulkrcu_test::retire_while_signalled(SIGUSR1, kSigObjs - 96,
                                                            [] { bulkrcu_defer(obj_delete, new Obj); });
  bulkrcu_kvfree_barrier();
  signal(SIGUSR1, SIG_DFL);
  EXPECT_EQ(g_deleted.load(), retired);  // the handler's objects are freed with free()
  EXPECT_GT(g_sig_queued.load(), 0);
  // Objects the handler never reached are still ours.
  for (int i = 0; i < kSigObjs; ++i)
    if (i >= g_sig_next.load() || g_sig_refused[i]) free(g_sig_objs[i]);
}

TEST_F(Kvfree, ConcurrentRetiresReadersAndBarriers) {
  constexpr int kWriters = 4;
  constexpr int kPer = 20000;
  std::atomic<bool> stop{false};
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r)
    readers.emplace_back([&] {
      while (!stop) {
        bulkrcu_read_lock();
        bulkrcu_read_unlock();
      }
    });
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w)
    writers.emplace_back([w] {
      for (int i = 0; i < kPer; ++i) {
        if (i % 3 == 0) {
          Obj* o = static_cast<Obj*>(malloc(sizeof(Obj)));
          new (o) Obj;
          bulkrcu_kfree_head(o, &o->rh);
        } else {
          bulkrcu_defer(obj_delete, new Obj);
        }
        if (w == 0 && i % 5000 == 0) bulkrcu_kvfree_barrier();
      }
    });
  for (auto& t : writers) t.join();
  stop = true;
  for (auto& t : readers) t.join();
  bulkrcu_kvfree_barrier();
  long headless = 0;
  for (int i = 0; i < kPer; ++i) headless += (i % 3 != 0);
  EXPECT_EQ(g_deleted.load(), headless * kWriters);
}

TEST_F(Kvfree, MemoryPressureReturnsCachedPages) {
  for (int i = 0; i < 200; ++i) bulkrcu_kvfree(malloc(32));
  bulkrcu_kvfree_barrier();
  bulkrcu_memory_pressure();
  auto s = snap();
  EXPECT_EQ(s.kv_blocks_in_use, 0u);
}

}  // namespace
