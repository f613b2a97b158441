// Unit tests of the object caches (include/bulkrcu/cache.h, src/cache/). Linked against the
// shrunk library: arrays of 4 objects, slabs of at least 8, no empty slab kept, a reserve of 4.
#include "bulkrcu/cache.h"

#include <errno.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "bulkrcu/page_pool.h"
#include "bulkrcu/rcu.h"
#include "cache/cache.h"
#include "pool/pool.h"
#include "test_support.h"

namespace {

using bulkrcu::detail::cache::info;
using bulkrcu_test::SectionHolder;

struct Obj {
  unsigned long id;
  unsigned long pad[2];
};

TEST(Cache, BadInputIsRefused) {
  errno = 0;
  EXPECT_EQ(bulkrcu_cache_create("zero", 0, 0, 0), nullptr);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(bulkrcu_cache_create("align3", 24, 3, 0), nullptr);
  EXPECT_EQ(bulkrcu_cache_create("huge", std::size_t{1} << 30, 0, 0), nullptr);
  EXPECT_EQ(bulkrcu_cache_create("flags", 24, 0, 0x80), nullptr);
  bulkrcu_cache* c = bulkrcu_cache_create("ok", 24, 16, 0);
  ASSERT_NE(c, nullptr);
  void* p = bulkrcu_cache_alloc(c);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 16, 0u);
  bulkrcu_cache_free(c, p);
  bulkrcu_cache_destroy(c);
}

TEST(Cache, SlabHoldsAFewDozenObjects) {
  bulkrcu_cache* c = bulkrcu_cache_create("geom", 24, 0, 0);
  auto i = info(c);
  EXPECT_GE(i.objs_per_slab, 8u);
  EXPECT_EQ(i.stride, 32u);  // 24 bytes and the out-of-object link word
  bulkrcu_cache* t = bulkrcu_cache_create("geom-ts", 24, 0, BULKRCU_CACHE_TYPESAFE_BY_RCU);
  EXPECT_EQ(info(t).stride, 32u);  // the free-list link lies outside the object
  bulkrcu_cache* big = bulkrcu_cache_create("geom-big", 100000, 0, 0);
  ASSERT_NE(big, nullptr);
  void* p = bulkrcu_cache_alloc(big);
  ASSERT_NE(p, nullptr);
  memset(p, 1, 100000);
  bulkrcu_cache_free(big, p);
  bulkrcu_cache_destroy(big);
  bulkrcu_cache_destroy(t);
  bulkrcu_cache_destroy(c);
}

TEST(Cache, AllocFreeDistinctObjectsAndOwnership) {
  bulkrcu_cache* c = bulkrcu_cache_create("distinct", sizeof(Obj), 0, 0);
  std::set<void*> seen;
  std::vector<Obj*> v;
  for (int i = 0; i < 1000; ++i) {
    Obj* o = static_cast<Obj*>(bulkrcu_cache_alloc(c));
    ASSERT_NE(o, nullptr);
    EXPECT_TRUE(seen.insert(o).second) << "handed out twice";
    EXPECT_EQ(bulkrcu_cache_of(o), c);
    o->id = i;
    v.push_back(o);
  }
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(v[i]->id, static_cast<unsigned long>(i));
  int x;
  EXPECT_EQ(bulkrcu_cache_of(&x), nullptr);
  void* m = malloc(24);
  EXPECT_EQ(bulkrcu_cache_of(m), nullptr);
  free(m);
  // objects_out counts objects in the CPUs' arrays too: a thread that migrated mid-loop leaves
  // the rest of a refill in the old CPU's array (1004 seen under taskset flipping). Shrink
  // returns the arrays to the slabs first, so exactly the objects users hold remain.
  bulkrcu_cache_shrink(c);
  EXPECT_EQ(info(c).objects_out, 1000u);
  for (Obj* o : v) bulkrcu_cache_free(c, o);
  bulkrcu_cache_shrink(c);
  EXPECT_EQ(info(c).objects_out, 0u);
  EXPECT_EQ(info(c).slabs, 0u);
  bulkrcu_cache_destroy(c);
}

// A retired object is not handed out again while a reader that began before the retire runs.
TEST(Cache, FreeRcuWaitsForReaders) {
  bulkrcu_cache* c = bulkrcu_cache_create("gp", sizeof(Obj), 0, 0);
  std::vector<void*> retired;
  for (int i = 0; i < 64; ++i) retired.push_back(bulkrcu_cache_alloc(c));
  {
    SectionHolder reader;
    for (void* p : retired) bulkrcu_cache_free_rcu(c, p);
    std::set<void*> r(retired.begin(), retired.end());
    std::vector<void*> fresh;
    for (int i = 0; i < 200; ++i) {
      void* p = bulkrcu_cache_alloc(c);
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(r.count(p), 0u) << "reused while a reader may hold it";
      fresh.push_back(p);
    }
    for (void* p : fresh) bulkrcu_cache_free(c, p);
    EXPECT_GT(info(c).waiting + info(c).overflow_chains, 0u);
  }
  bulkrcu_cache_barrier(c);
  auto i = info(c);
  EXPECT_EQ(i.waiting, 0u);
  EXPECT_GT(i.reused, 0u);  // whole retired arrays became ready as they were
  // After the barrier the retired objects come back.
  std::set<void*> r(retired.begin(), retired.end());
  std::vector<void*> again;
  std::size_t hits = 0;
  for (int i = 0; i < 400; ++i) {
    void* p = bulkrcu_cache_alloc(c);
    hits += r.count(p);
    again.push_back(p);
  }
  EXPECT_EQ(hits, retired.size());
  for (void* p : again) bulkrcu_cache_free(c, p);
  bulkrcu_cache_destroy(c);
}

// The allocator's pacing (kThrottleWaitNs in cache.cpp), with the threshold at 1 byte: a
// refill that finds no ready array while retired arrays wait first waits briefly for their
// grace period. With a reader holding it off, the wait gives up and the allocation is served
// from the slabs (it never depends on a reader); inside a reader it does not wait at all.
TEST(Cache, RefillWaitsBrieflyForRetiredArraysButNeverForAReader) {
  const std::size_t old = bulkrcu::detail::cache::set_throttle_bytes(1);
  // A retire seals its full array only if it finds an empty one without locking (the depot's,
  // else a lockless page): on a loaded machine the page list may be empty (the runtime
  // thread's refill is late) and every retire overflows instead, with nothing to wait for.
  // So this thread stays on one CPU and fills that CPU's page list first.
  cpu_set_t was, one;
  ASSERT_EQ(sched_getaffinity(0, sizeof was, &was), 0);
  CPU_ZERO(&one);
  CPU_SET(sched_getcpu(), &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
  bulkrcu_cache* c = bulkrcu_cache_create("pace", sizeof(Obj), 0, 0);
  std::vector<void*> retired, fresh;
  for (int i = 0; i < 64; ++i) retired.push_back(bulkrcu_cache_alloc(c));
  {
    std::vector<void*> pages;
    for (int i = 0; i < 16; ++i) pages.push_back(bulkrcu_alloc_page());
    for (void* pg : pages) bulkrcu_free_page(pg);
  }
  {
    SectionHolder reader;
    for (void* p : retired) bulkrcu_cache_free_rcu(c, p);
    const auto before = info(c);
    ASSERT_GT(before.waiting, 0u);
    for (int i = 0; i < 16; ++i) {  // more than one array: at least one refill
      void* p = bulkrcu_cache_alloc(c);
      ASSERT_NE(p, nullptr);
      fresh.push_back(p);
    }
    const auto after = info(c);
    EXPECT_GT(after.throttled, before.throttled) << "no refill waited for the retired arrays";
    EXPECT_EQ(after.throttle_timeouts - before.throttle_timeouts, after.throttled - before.throttled)
        << "a wait ended although the reader still holds the grace period";
    // Inside a reader the refill must not wait (its own section would hold the grace period).
    bulkrcu_read_lock();
    const auto in0 = info(c);
    for (int i = 0; i < 16; ++i) fresh.push_back(bulkrcu_cache_alloc(c));
    EXPECT_EQ(info(c).throttled, in0.throttled);
    bulkrcu_read_unlock();
  }
  for (void* p : fresh) bulkrcu_cache_free(c, p);
  bulkrcu_cache_barrier(c);
  bulkrcu_cache_destroy(c);
  bulkrcu::detail::cache::set_throttle_bytes(old);
  sched_setaffinity(0, sizeof was, &was);
}

// The LocalDepot cycle (cache.cpp): one thread that allocates and retires at once reuses its
// own retired arrays after their grace period, so the slabs stay few however long it runs,
// and a barrier still finds the arrays a LocalDepot holds.
TEST(Cache, RetireAndReuseCycleOnOneCpuKeepsTheSlabsFew) {
  bulkrcu_cache* c = bulkrcu_cache_create("cycle", sizeof(Obj), 0, 0);
  const auto before = info(c);
  constexpr int kObjs = 20000;
  std::set<void*> seen;
  for (int i = 0; i < kObjs; ++i) {
    void* p = bulkrcu_cache_alloc(c);
    ASSERT_NE(p, nullptr);
    seen.insert(p);
    bulkrcu_cache_free_rcu(c, p);
  }
  const auto after = info(c);
  const std::uint64_t sealed = after.sealed - before.sealed, reused = after.reused - before.reused;
  EXPECT_GE(sealed, static_cast<std::uint64_t>(kObjs) / after.sheaf_cap / 2);
  EXPECT_GE(reused * 10, sealed * 9) << "retired arrays did not come back as allocation arrays";
  EXPECT_LT(seen.size(), static_cast<std::size_t>(kObjs) / 10) << "objects were not reused";
  EXPECT_LE(after.slab_allocs - before.slab_allocs, 64u);
  bulkrcu_cache_barrier(c);
  EXPECT_EQ(info(c).waiting, 0u);
  bulkrcu_stats st;
  bulkrcu_get_stats(&st, sizeof st);
  EXPECT_EQ(st.cache_pending_objects, 0u);
  bulkrcu_cache_destroy(c);
}

TEST(Cache, BarrierIsPerCache) {
  bulkrcu_cache* a = bulkrcu_cache_create("a", 32, 0, 0);
  bulkrcu_cache* b = bulkrcu_cache_create("b", 32, 0, 0);
  for (int i = 0; i < 50; ++i) {
    bulkrcu_cache_free_rcu(a, bulkrcu_cache_alloc(a));
    bulkrcu_cache_free_rcu(b, bulkrcu_cache_alloc(b));
  }
  const unsigned long sealed_b = info(b).sealed;
  bulkrcu_cache_barrier(a);
  EXPECT_EQ(info(a).waiting, 0u);
  EXPECT_EQ(info(b).sealed, sealed_b);  // b's partial arrays were left alone
  bulkrcu_cache_destroy(a);
  bulkrcu_cache_destroy(b);
}

TEST(Cache, ShrinkReturnsMemoryToTheOs) {
  bulkrcu_cache* c = bulkrcu_cache_create("rss", 64, 0, 0);
  std::vector<void*> v;
  for (int i = 0; i < 200000; ++i) v.push_back(bulkrcu_cache_alloc(c));  // ~12.8 MiB
  const auto peak = info(c);
  EXPECT_GT(peak.slabs, 0u);
  for (void* p : v) bulkrcu_cache_free_rcu(c, p);
  bulkrcu_cache_barrier(c);
  bulkrcu_cache_shrink(c);
  EXPECT_EQ(info(c).slabs, 0u);
  EXPECT_GE(info(c).slab_frees, peak.slab_allocs);
  bulkrcu_page_pool_shrink();
  bulkrcu_cache_destroy(c);
}

TEST(Cache, MemoryPressureReachesCaches) {
  bulkrcu_cache* c = bulkrcu_cache_create("pressure", 48, 0, 0);
  std::vector<void*> v;
  for (int i = 0; i < 1000; ++i) v.push_back(bulkrcu_cache_alloc(c));
  for (void* p : v) bulkrcu_cache_free(c, p);
  EXPECT_GT(info(c).slabs, 0u);
  bulkrcu_memory_pressure();
  EXPECT_EQ(info(c).slabs, 0u);
  bulkrcu_cache_destroy(c);
}

// Retired arrays hold memory until their grace period: memory pressure expedites it (nobody
// else asks for one here: free_rcu's seals take a cookie without starting a grace period), so
// the arrays become ready and go back to the slabs, and the slabs to the pool, with no barrier.
TEST(Cache, MemoryPressureExpeditesRetiredArrays) {
  bulkrcu_cache* c = bulkrcu_cache_create("pressure-rcu", 48, 0, 0);
  std::vector<void*> v;
  for (int i = 0; i < 400; ++i) v.push_back(bulkrcu_cache_alloc(c));
  for (void* p : v) bulkrcu_cache_free_rcu(c, p);
  // Sealed arrays, or the overflow stack when no empty array was at hand (a pressure call just
  // before backs off the pool's refills): both wait for a grace period nobody asked for.
  EXPECT_GT(info(c).sealed + info(c).overflowed, 0u);
  // Bounded: the expedited grace period needs the runtime thread or this thread's attempt to
  // find no reader inside a section (none is); 10 s only guards against a hang.
  auto busy = [c] {
    const auto i = info(c);
    return i.waiting != 0 || i.overflow_chains != 0 || i.slabs != 0;
  };
  for (int i = 0; i < 10000 && busy(); ++i) {
    bulkrcu_memory_pressure();
    if (busy()) usleep(1000);
  }
  const auto after = info(c);
  EXPECT_EQ(after.waiting, 0u);
  EXPECT_EQ(after.overflow_chains, 0u);
  EXPECT_EQ(after.ready, 0u);
  EXPECT_EQ(after.slabs, 0u) << "objects out: " << after.objects_out;
  bulkrcu_cache_destroy(c);
}

// Retired arrays count in the budget from their seal until their grace period has elapsed
// (kvfree's over_budget() adds cache::pending_bytes(); tests/kvfree_budget_test.cpp checks that
// side), and no longer once it has, even before the cache promotes them.
TEST(Cache, PendingBytesCountRetiredArraysUntilTheirGracePeriod) {
  using bulkrcu::detail::cache::pending_bytes;
  bulkrcu_cache* c = bulkrcu_cache_create("pending", sizeof(Obj), 0, 0);
  std::vector<void*> v;
  for (int i = 0; i < 64; ++i) v.push_back(bulkrcu_cache_alloc(c));
  const std::uint64_t sealed0 = info(c).sealed, over0 = info(c).overflowed;
  std::uint64_t during = 0, sealed = 0, over = 0;
  bulkrcu_stats st{};
  {
    SectionHolder reader;
    for (void* p : v) bulkrcu_cache_free_rcu(c, p);
    during = pending_bytes();
    sealed = info(c).sealed - sealed0;
    over = info(c).overflowed - over0;  // no empty array at hand (the pool not yet refilled)
    bulkrcu_get_stats(&st, sizeof st);
  }
  EXPECT_GT(sealed + over, 0u);
  // Each sealed array is charged its page and at least one object, an overflowed object its stride.
  const std::uint64_t page = static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE)), stride = info(c).stride;
  EXPECT_GE(during, sealed * (page + stride) + over * stride);
  // The statistics show the same backlog: at least one object per sealed array and every
  // overflowed one, at most the 64 retired (the array each CPU still fills is not counted).
  EXPECT_GE(st.cache_pending_objects, sealed + over);
  EXPECT_LE(st.cache_pending_objects, 64u);
  EXPECT_GE(st.cache_pending_bytes, sealed * page + over * stride);
  bulkrcu_cache_barrier(c);
  EXPECT_EQ(pending_bytes(), 0u);
  bulkrcu_get_stats(&st, sizeof st);
  EXPECT_EQ(st.cache_pending_objects, 0u);
  EXPECT_EQ(st.cache_pending_bytes, 0u);
  bulkrcu_cache_destroy(c);
}

int g_ctor_calls = 0;
void ctor(void* p) {
  ++g_ctor_calls;
  static_cast<Obj*>(p)->id = 12345;
}

TEST(Cache, ConstructorRunsOncePerObjectOfASlab) {
  g_ctor_calls = 0;
  bulkrcu_cache* c = bulkrcu_cache_create_ctor("ctor", sizeof(Obj), 0, 0, ctor);
  Obj* o = static_cast<Obj*>(bulkrcu_cache_alloc(c));
  EXPECT_EQ(o->id, 12345u);
  EXPECT_EQ(static_cast<std::size_t>(g_ctor_calls), info(c).objs_per_slab);
  bulkrcu_cache_free(c, o);
  Obj* again = static_cast<Obj*>(bulkrcu_cache_alloc(c));
  EXPECT_EQ(again->id, 12345u);  // not poisoned, not linked through: as the constructor left it
  bulkrcu_cache_free(c, again);
  bulkrcu_cache_destroy(c);
}

// Typesafe-by-rcu: a freed object is reused at once, but its slab stays while a reader runs.
TEST(Cache, TypesafeReusesAtOnceAndKeepsSlabsUntilAGracePeriod) {
  bulkrcu_cache* c = bulkrcu_cache_create("typesafe", sizeof(Obj), 0, BULKRCU_CACHE_TYPESAFE_BY_RCU);
  std::vector<Obj*> v;
  for (int i = 0; i < 100; ++i) {
    v.push_back(static_cast<Obj*>(bulkrcu_cache_alloc(c)));
    v.back()->id = 7;
  }
  Obj* last = v.back();
  bulkrcu_cache_free(c, last);
  EXPECT_EQ(bulkrcu_cache_alloc(c), last);  // the same CPU's array: reused at once
  EXPECT_EQ(last->id, 7u);                  // a free never writes a typesafe object
  {
    SectionHolder reader;
    for (Obj* o : v) bulkrcu_cache_free(c, o);
    bulkrcu_memory_pressure();  // empty slabs go to the dying list, not to the pool
    EXPECT_GT(info(c).slabs, 0u);
    for (Obj* o : v) EXPECT_EQ(bulkrcu_cache_of(o), c);  // still this cache's memory
  }
  bulkrcu_cache_shrink(c);  // waits for the grace period, then frees them
  EXPECT_EQ(info(c).slabs, 0u);
  bulkrcu_cache_destroy(c);
}

// ---- signals: alloc_lockless and free_rcu from a handler ------------------------------------
bulkrcu_cache* g_sig_cache;
std::atomic<long> g_sig_allocs{0}, g_sig_nulls{0};
void on_signal(int) {
  void* p = bulkrcu_cache_alloc_lockless(g_sig_cache);
  if (!p) {
    g_sig_nulls.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  static_cast<Obj*>(p)->id = 99;
  g_sig_allocs.fetch_add(1, std::memory_order_relaxed);
  bulkrcu_cache_free_rcu(g_sig_cache, p);
}

TEST(Cache, LocklessAllocAndFreeRcuInSignalHandlers) {
  g_sig_cache = bulkrcu_cache_create("signals", sizeof(Obj), 0, 0);
  bulkrcu_test::install_handler(SIGUSR1, on_signal);
  std::atomic<bool> stop{false};
  pthread_t main_thread = pthread_self();
  std::thread sender([&] {
    while (!stop.load()) {
      pthread_kill(main_thread, SIGUSR1);
      bulkrcu_test::nap_us(20);
    }
  });
  for (int round = 0; round < 2000 || g_sig_allocs.load() < 50; ++round) {
    std::vector<void*> v;
    for (int i = 0; i < 20; ++i) v.push_back(bulkrcu_cache_alloc(g_sig_cache));
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (i % 2)
        bulkrcu_cache_free_rcu(g_sig_cache, v[i]);
      else
        bulkrcu_cache_free(g_sig_cache, v[i]);
    }
  }
  stop = true;
  sender.join();
  signal(SIGUSR1, SIG_IGN);
  EXPECT_GT(g_sig_allocs.load(), 0);
  bulkrcu_cache_destroy(g_sig_cache);
}

// ---- allocation failures --------------------------------------------------------------------
TEST(Cache, AllocationFailuresAreReportedAndSurvived) {
  bulkrcu_cache* c = bulkrcu_cache_create("faults", sizeof(Obj), 0, 0);
  bulkrcu::detail::pool::set_fail_injection(2);
  errno = 0;
  EXPECT_EQ(bulkrcu_cache_alloc(c), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_EQ(bulkrcu_cache_alloc_lockless(c), nullptr);
  bulkrcu::detail::pool::set_fail_injection(0);
  std::vector<void*> v;
  for (int i = 0; i < 100; ++i) v.push_back(bulkrcu_cache_alloc(c));
  // No lockless page for a new retired array: free_rcu falls back to the overflow stack.
  bulkrcu::detail::pool::set_fail_injection(1);
  for (void* p : v) bulkrcu_cache_free_rcu(c, p);
  EXPECT_GT(info(c).overflowed, 0u);
  bulkrcu::detail::pool::set_fail_injection(0);
  bulkrcu_cache_barrier(c);
  EXPECT_EQ(info(c).overflow_chains, 0u);
  bulkrcu_cache_destroy(c);  // every object came back: no abort
}

// ---- threads, churn, fork ---------------------------------------------------------------------
TEST(Cache, ThreadChurnStrandsNothing) {
  bulkrcu_cache* c = bulkrcu_cache_create("churn", sizeof(Obj), 0, 0);
  for (int gen = 0; gen < 20; ++gen) {
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; ++t)
      ts.emplace_back([c] {
        std::vector<void*> v;
        for (int i = 0; i < 300; ++i) v.push_back(bulkrcu_cache_alloc(c));
        for (std::size_t i = 0; i < v.size(); ++i) {
          if (i % 3 == 0)
            bulkrcu_cache_free(c, v[i]);
          else
            bulkrcu_cache_free_rcu(c, v[i]);
        }
      });
    for (auto& t : ts) t.join();
  }
  bulkrcu_cache_barrier(c);
  bulkrcu_cache_shrink(c);
  EXPECT_EQ(info(c).objects_out, 0u);
  bulkrcu_cache_destroy(c);
}

TEST(Cache, ForkChildUsesTheCache) {
#if BULKRCU_TSAN
  GTEST_SKIP() << "ThreadSanitizer limitation: threads started after a multi-threaded fork";
#endif
  bulkrcu_cache* c = bulkrcu_cache_create("fork", sizeof(Obj), 0, 0);
  std::atomic<bool> stop{false};
  std::thread busy([&] {
    while (!stop.load()) {
      void* p = bulkrcu_cache_alloc(c);
      bulkrcu_cache_free_rcu(c, p);
    }
  });
  for (int k = 0; k < 5; ++k) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      std::vector<void*> v;
      for (int i = 0; i < 500; ++i) v.push_back(bulkrcu_cache_alloc(c));
      for (void* p : v) bulkrcu_cache_free_rcu(c, p);
      bulkrcu_cache_barrier(c);
      bulkrcu_cache_shrink(c);
      _exit(v[0] && v[499] ? 0 : 1);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  stop = true;
  busy.join();
  bulkrcu_cache_barrier(c);
  bulkrcu_cache_destroy(c);
}

// ---- misuse ------------------------------------------------------------------------------------
TEST(CacheDeathTest, DestroyWithObjectsAllocatedNamesCacheAndCount) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        bulkrcu_cache* c = bulkrcu_cache_create("leaky", 24, 0, 0);
        for (int i = 0; i < 3; ++i) (void)bulkrcu_cache_alloc(c);
        bulkrcu_cache_destroy(c);
      },
      "bulkrcu_cache_destroy\\(\"leaky\"\\): 3 objects still allocated");
}

// Cache ids (the address map's tags) are taken back at destroy and handed out again: caches
// made after many others were destroyed still find their objects and refuse each other's.
TEST(Cache, IdsAreReusedAndKeepCachesApart) {
  for (int i = 0; i < 20; ++i) {
    bulkrcu_cache* c = bulkrcu_cache_create("churn", 24, 0, 0);
    ASSERT_NE(c, nullptr);
    void* p = bulkrcu_cache_alloc(c);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(bulkrcu_cache_of(p), c);
    bulkrcu_cache_free_rcu(c, p);
    bulkrcu_cache_destroy(c);
  }
  bulkrcu_cache* a = bulkrcu_cache_create("a", 24, 0, 0);
  bulkrcu_cache* b = bulkrcu_cache_create("b", 24, 0, 0);
  void* pa = bulkrcu_cache_alloc(a);
  void* pb = bulkrcu_cache_alloc(b);
  EXPECT_EQ(bulkrcu_cache_of(pa), a);
  EXPECT_EQ(bulkrcu_cache_of(pb), b);
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(bulkrcu_cache_free(a, pb), "object of cache \"b\" freed to the wrong cache");
  bulkrcu_cache_free(a, pa);
  bulkrcu_cache_free(b, pb);
  bulkrcu_cache_destroy(a);
  bulkrcu_cache_destroy(b);
}

TEST(CacheDeathTest, WrongCacheForeignPointerDoubleFree) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        bulkrcu_cache* a = bulkrcu_cache_create("one", 24, 0, 0);
        bulkrcu_cache* b = bulkrcu_cache_create("two", 24, 0, 0);
        bulkrcu_cache_free(b, bulkrcu_cache_alloc(a));
      },
      "bulkrcu_cache_free\\(\"two\", 0x[0-9a-f]+\\): object of cache \"one\" freed to the wrong cache");
  // Same size, same slab order: only the cache tag in the address map tells them apart, and
  // free_rcu checks it at the call (no barrier, no sealed array needed).
  EXPECT_DEATH(
      {
        bulkrcu_cache* a = bulkrcu_cache_create("one", 24, 0, 0);
        bulkrcu_cache* b = bulkrcu_cache_create("two", 24, 0, 0);
        bulkrcu_cache_free_rcu(b, bulkrcu_cache_alloc(a));
      },
      "bulkrcu_cache_free_rcu\\(\"two\", 0x[0-9a-f]+\\): object of cache \"one\" freed to the wrong cache");
  EXPECT_DEATH(
      {
        bulkrcu_cache* a = bulkrcu_cache_create("one", 24, 0, 0);
        static long x;
        bulkrcu_cache_free_rcu(a, &x);
      },
      "not an object of any cache");
  EXPECT_DEATH(
      {
        bulkrcu_cache* a = bulkrcu_cache_create("dbl", 24, 0, 0);
        void* p = bulkrcu_cache_alloc(a);
        bulkrcu_cache_free(a, p);
        bulkrcu_cache_free(a, p);
      },
      "double free");
  EXPECT_DEATH(
      {
        bulkrcu_cache* a = bulkrcu_cache_create("interior", 24, 0, 0);
        char* p = static_cast<char*>(bulkrcu_cache_alloc(a));
        bulkrcu_cache_free(a, p + 8);
      },
      "not the start of an object");
}

TEST(CacheDeathTest, UseAfterFreeIsDetected) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        bulkrcu_cache* a = bulkrcu_cache_create("uaf", 24, 0, 0);
        Obj* p = static_cast<Obj*>(bulkrcu_cache_alloc(a));
        bulkrcu_cache_free(a, p);
        p->pad[1] = 1;  // write after free
        (void)bulkrcu_cache_alloc(a);
      },
      "written after it was freed");
  // After a deferred free's grace period the object is poisoned: a late reader sees 0x6b.
  bulkrcu_cache* a = bulkrcu_cache_create("uaf-rcu", sizeof(Obj), 0, 0);
  Obj* p = static_cast<Obj*>(bulkrcu_cache_alloc(a));
  p->id = 1;
  bulkrcu_cache_free_rcu(a, p);
  bulkrcu_cache_barrier(a);
  EXPECT_EQ(p->pad[1], 0x6b6b6b6b6b6b6b6bul);
  bulkrcu_cache_destroy(a);
}

TEST(CacheDeathTest, BarrierInsideAReaderAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        bulkrcu_cache* a = bulkrcu_cache_create("reader", 24, 0, 0);
        bulkrcu_read_lock();
        bulkrcu_cache_barrier(a);
      },
      "inside a read-side critical section");
}

}  // namespace
