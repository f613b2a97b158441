// Tests of the page pool (src/pool/, include/bulkrcu/page_pool.h). Linked against the shrunk
// library: batch 4, high 16, low 2, target 8, debug checks on. No test measures time; waits are
// "until a condition holds" and ctest's timeout catches a hang.
#include "pool/pool.h"

#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "bulkrcu/page_pool.h"
#include "bulkrcu/rcu.h"
#include "bulkrcu/stats.h"
#include "kvfree/kvfree.h"
#include "percpu/percpu.h"
#include "test_support.h"

namespace {

using namespace bulkrcu::detail;
using bulkrcu_test::stats;
using bulkrcu_test::wait_until;

constexpr std::uint64_t kHour = 3600ull * 1000000000ull;

std::vector<int> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  sched_getaffinity(0, sizeof set, &set);
  std::vector<int> cpus;
  for (int i = 0; i < CPU_SETSIZE; ++i)
    if (CPU_ISSET(i, &set)) cpus.push_back(i);
  return cpus;
}

void pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  ASSERT_EQ(sched_setaffinity(0, sizeof set, &set), 0);
}

struct Unpin {
  std::vector<int> cpus = allowed_cpus();
  ~Unpin() {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int c : cpus) CPU_SET(c, &set);
    sched_setaffinity(0, sizeof set, &set);
  }
};

// Owner tags: a token at byte 64 of a page (past the free-page header), written when a page is
// taken and checked when it is given back. A page handed to two owners at once shows up as a
// token that changed under its first owner.
constexpr std::size_t kTagOffset = 64;
std::uint64_t* tag_of(void* page) {
  return reinterpret_cast<std::uint64_t*>(static_cast<char*>(page) + kTagOffset);
}
void tag(void* page, std::uint64_t token) { __atomic_store_n(tag_of(page), token, __ATOMIC_RELAXED); }
bool tag_ok(void* page, std::uint64_t token) {
  return __atomic_load_n(tag_of(page), __ATOMIC_RELAXED) == token;
}

std::size_t pages_per_chunk() { return pool::kChunkBytes / bulkrcu_page_size(); }

// ---- zone: buddy split and merge -----------------------------------------------------------------

TEST(PoolZone, SplitLeavesOneBlockPerOrder) {
  pool::Zone z{1, 1};
  z.set_debug(true);
  const unsigned mo = pool::max_order();
  void* p = z.alloc(0);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % pool::kChunkBytes, 0u) << "first page of a fresh chunk";
  EXPECT_EQ(z.chunks_mapped(), 1u);
  for (unsigned k = 0; k < mo; ++k) EXPECT_EQ(z.nr_free_blocks(k), 1u) << "order " << k;
  EXPECT_EQ(z.nr_free_blocks(mo), 0u);
  EXPECT_EQ(z.nr_free_pages(), pages_per_chunk() - 1);
  EXPECT_EQ(z.check(), nullptr);
  z.free(p, 0);  // merges all the way up
  for (unsigned k = 0; k < mo; ++k) EXPECT_EQ(z.nr_free_blocks(k), 0u) << "order " << k;
  EXPECT_EQ(z.nr_free_blocks(mo), 1u);
  EXPECT_EQ(z.nr_free_pages(), pages_per_chunk());
  EXPECT_EQ(z.check(), nullptr);
  z.destroy();
  EXPECT_EQ(z.nr_chunks(), 0u);
}

TEST(PoolZone, RandomOrdersAlignedDisjointAndMergeBack) {
  pool::Zone z{1, 1};
  z.set_debug(true);
  const std::size_t ps = bulkrcu_page_size();
  const unsigned mo = pool::max_order();
  std::mt19937 rng(12345);
  struct Block {
    char* p;
    unsigned order;
  };
  std::vector<Block> live;
  std::set<std::uintptr_t> pages;  // every live page, to prove blocks are disjoint
  for (int step = 0; step < 3000; ++step) {
    bool do_alloc = live.empty() || (rng() % 100) < 55;
    if (do_alloc) {
      unsigned order = rng() % 4 == 0 ? rng() % (mo + 1) : rng() % 3;
      char* p = static_cast<char*>(z.alloc(order));
      ASSERT_NE(p, nullptr);
      ASSERT_EQ(reinterpret_cast<std::uintptr_t>(p) % (ps << order), 0u) << "order " << order;
      for (std::size_t i = 0; i < (std::size_t{1} << order); ++i)
        ASSERT_TRUE(pages.insert(reinterpret_cast<std::uintptr_t>(p) + i * ps).second) << "overlap";
      live.push_back({p, order});
    } else {
      std::size_t i = rng() % live.size();
      Block b = live[i];
      live[i] = live.back();
      live.pop_back();
      for (std::size_t j = 0; j < (std::size_t{1} << b.order); ++j)
        pages.erase(reinterpret_cast<std::uintptr_t>(b.p) + j * ps);
      z.free(b.p, b.order);
    }
    if (step % 50 == 0) {
      ASSERT_EQ(z.check(), nullptr) << "step " << step;
    }
    ASSERT_EQ(z.nr_free_pages() + pages.size(), z.nr_chunks() * pages_per_chunk());
  }
  EXPECT_GT(z.chunks_mapped(), 1u) << "the walk should have needed several chunks";
  for (Block b : live) z.free(b.p, b.order);
  EXPECT_EQ(z.check(), nullptr);
  // Everything merged back into whole chunks; at most floor (1) + spare (1) stay mapped.
  EXPECT_EQ(z.nr_free_pages(), z.nr_chunks() * pages_per_chunk());
  EXPECT_EQ(z.nr_free_blocks(mo), z.nr_chunks());
  EXPECT_LE(z.nr_chunks(), 2u);
  EXPECT_EQ(z.chunks_mapped() - z.chunks_unmapped(), z.nr_chunks());
  z.destroy();
}

TEST(PoolZone, WhollyFreeChunksGoBackAboveFloorAndSpare) {
  const unsigned mo = pool::max_order();
  pool::Zone z{1, 1};
  void* a = z.alloc(mo);
  void* b = z.alloc(mo);
  void* c = z.alloc(mo);
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(z.nr_chunks(), 3u);
  z.free(a, mo);  // one wholly free chunk: kept as the spare
  EXPECT_EQ(z.nr_chunks(), 3u);
  z.free(b, mo);  // a second one: unmapped at once
  EXPECT_EQ(z.nr_chunks(), 2u);
  z.free(c, mo);
  EXPECT_EQ(z.nr_chunks(), 1u);
  EXPECT_EQ(z.chunks_unmapped(), 2u);
  EXPECT_EQ(z.shrink(), 0u) << "the floor keeps the last chunk";
  z.destroy();

  pool::Zone none{0, 0};
  void* p = none.alloc(0);
  ASSERT_NE(p, nullptr);
  EXPECT_NE(pool::chunk_of(p), nullptr);
  none.free(p, 0);
  EXPECT_EQ(none.nr_chunks(), 0u) << "floor 0, spare 0: the chunk goes back as soon as it is free";
  EXPECT_EQ(pool::chunk_of(p), nullptr) << "unmapped chunks leave the registry";
}

TEST(PoolZone, OrderZeroComesFromTheFullestChunk) {
  pool::Zone z{0, 4};
  const std::size_t ppc = pages_per_chunk();
  std::vector<void*> pages;
  for (std::size_t i = 0; i < 2 * ppc; ++i) {
    void* p = z.alloc(0);
    ASSERT_NE(p, nullptr);
    pages.push_back(p);
  }
  ASSERT_EQ(z.nr_chunks(), 2u);
  pool::Chunk* x = pool::chunk_of(pages.front());
  std::vector<void*> in_x, in_y;
  for (void* p : pages) (pool::chunk_of(p) == x ? in_x : in_y).push_back(p);
  ASSERT_EQ(in_x.size(), ppc);
  ASSERT_EQ(in_y.size(), ppc);
  // Y ends up the fuller chunk (10 free pages against 100) and its pages are freed first, so a
  // LIFO free list would hand out X's pages first.
  std::set<void*> freed_y;
  for (int i = 0; i < 10; ++i) {
    z.free(in_y[i * 7], 0);
    freed_y.insert(in_y[i * 7]);
  }
  for (int i = 0; i < 100; ++i) z.free(in_x[i * 3], 0);
  EXPECT_EQ(z.check(), nullptr);
  std::vector<void*> again;
  for (int i = 0; i < 10; ++i) {
    void* p = z.alloc(0);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(pool::chunk_of(p), pool::chunk_of(in_y[0])) << "page " << i << " not from the fullest chunk";
    EXPECT_EQ(freed_y.count(p), 1u);
    again.push_back(p);
  }
  void* from_x = z.alloc(0);
  EXPECT_EQ(pool::chunk_of(from_x), x) << "the fuller chunk is full now";
  again.push_back(from_x);
  EXPECT_EQ(z.check(), nullptr);
  std::set<void*> held(pages.begin(), pages.end());
  for (int i = 0; i < 100; ++i) held.erase(in_x[i * 3]);
  for (void* p : freed_y) held.erase(p);
  for (void* p : again) held.insert(p);
  for (void* p : held) z.free(p, 0);
  EXPECT_EQ(z.check(), nullptr);
  z.destroy();
}

// A chunk with one page still in use: shrink cannot unmap it, but gives its free runs back.
TEST(PoolZone, ShrinkGivesFreeRunsOfAPartlyUsedChunkBack) {
  pool::Zone z{1, 0};
  z.set_debug(true);
  const std::size_t ps = bulkrcu_page_size();
  const std::size_t ppc = pages_per_chunk();
  for (int round = 0; round < 3; ++round) {
    std::vector<void*> pages;
    for (std::size_t i = 0; i < ppc; ++i) {
      void* p = z.alloc(0);
      ASSERT_NE(p, nullptr);
      memset(p, 0x5a, ps);
      pages.push_back(p);
    }
    ASSERT_EQ(z.nr_chunks(), 1u);
    EXPECT_EQ(z.resident_bytes(), pool::kChunkBytes);
    for (std::size_t i = 0; i + 1 < ppc; ++i) z.free(pages[i], 0);  // all but the last page
    EXPECT_EQ(z.resident_bytes(), pool::kChunkBytes) << "free pages stay resident until a shrink";
    EXPECT_EQ(z.shrink(), 0u);
    EXPECT_EQ(z.nr_chunks(), 1u) << "one page is still in use";
    // The free runs are blocks of orders 0..8; those of order >= 4 keep only their header page.
    EXPECT_LE(z.resident_bytes(), pool::kChunkBytes / 8) << "round " << round;
    EXPECT_EQ(z.check(), nullptr);
    // The pages come back zeroed past their header, and the zone hands them out as usual.
    void* q = z.alloc(4);
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(static_cast<unsigned char*>(q)[ps + 100], 0u);
    z.free(q, 4);
    z.free(pages.back(), 0);
    EXPECT_EQ(z.check(), nullptr);
  }
  z.destroy();
}

TEST(PoolZone, DebugPoisonsFreshChunks) {
  pool::Zone z{0, 0};
  z.set_debug(true);
  void* p = z.alloc(0);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(pool::check_poison(p), 0u);
  static_cast<char*>(p)[100] = 1;
  EXPECT_EQ(pool::check_poison(p), 100u);
  pool::poison_page(p);
  z.free(p, 0);
}

// ---- per-CPU lists: high and batch ----------------------------------------------------------------

TEST(PoolPcp, HighAndBatchFollowTheKernelRules) {
  Unpin unpin;
  const int cpu = unpin.cpus.front();
  pin_to(cpu);
  pool::back_off_refill(kHour);  // the worker stays out of this test
  bulkrcu_page_pool_drain();
  const pool::Params& pp = pool::params();
  ASSERT_EQ(pool::cpu_pages(cpu), 0u);
  const std::uint64_t refills0 = stats().pool_refills;
  const std::uint64_t drains0 = stats().pool_drains;

  std::size_t model = 0, refills = 0, drains = 0, max_seen = 0;
  std::vector<void*> pages;
  for (std::size_t i = 0; i < 3 * pp.high; ++i) {
    void* p = bulkrcu_alloc_page();
    ASSERT_NE(p, nullptr);
    pages.push_back(p);
    if (model == 0) {  // empty: `batch` pages from the zone, one to the caller
      model = pp.batch - 1;
      ++refills;
    } else {
      --model;
    }
    ASSERT_EQ(pool::cpu_pages(cpu), model) << "after allocation " << i;
  }
  for (std::size_t i = 0; i < pages.size(); ++i) {
    bulkrcu_free_page(pages[i]);
    if (++model > pp.high) {  // above high: `batch` pages back to the zone
      model -= pp.batch;
      ++drains;
    }
    const std::size_t n = pool::cpu_pages(cpu);
    ASSERT_EQ(n, model) << "after free " << i;
    max_seen = std::max(max_seen, n);
  }
  EXPECT_LE(max_seen, pp.high);
  EXPECT_GT(drains, 0u);
  EXPECT_EQ(stats().pool_refills - refills0, refills);
  EXPECT_EQ(stats().pool_drains - drains0, drains);
  EXPECT_EQ(pool::check_zone(), nullptr);
  bulkrcu_page_pool_drain();
  EXPECT_EQ(pool::cpu_pages(cpu), 0u);
  pool::back_off_refill(0);
}

// ---- refill worker and drain --------------------------------------------------------------------------

TEST(PoolPcp, LocklessMissAndLowMarkWakeTheRefillWorker) {
  Unpin unpin;
  const int cpu = unpin.cpus.front();
  pin_to(cpu);
  const pool::Params& pp = pool::params();
  pool::back_off_refill(0);
  bulkrcu_page_pool_drain();
  // The drain may have unmapped every chunk and holds growth off for a while: a refill asked
  // for before then finds the zone empty and is dropped (docs/POOL.md), so wait it out.
  wait_until([] { return !pool::growth_held_off(); });
  const bulkrcu_stats s0 = stats();

  // An empty list: the lockless call misses and asks for a refill.
  void* miss = bulkrcu_alloc_page_lockless();
  if (miss) bulkrcu_free_page(miss);  // the worker may already have answered a stale request
  wait_until([&] { return pool::cpu_pages(cpu) >= pp.target; });
  const bulkrcu_stats s1 = stats();
  EXPECT_GE(s1.pool_worker_refills, s0.pool_worker_refills + 1);
  EXPECT_GE(s1.pool_refill_requests, s0.pool_refill_requests + 1);

  // Take pages until fewer than `low` remain: every one is a hit, the last asks again.
  std::vector<void*> pages;
  const std::size_t have = pool::cpu_pages(cpu);
  for (std::size_t i = 0; i + pp.low < have + 1; ++i) {
    void* p = bulkrcu_alloc_page_lockless();
    ASSERT_NE(p, nullptr) << "allocation " << i << " of " << have;
    pages.push_back(p);
  }
  wait_until([&] { return stats().pool_worker_refills >= s1.pool_worker_refills + 1; });
  wait_until([&] { return pool::cpu_pages(cpu) >= pp.target; });
  const bulkrcu_stats s2 = stats();
  EXPECT_GE(s2.pool_lockless_hits - s1.pool_lockless_hits, pages.size());
  for (void* p : pages) bulkrcu_free_page(p);
  EXPECT_EQ(pool::check_zone(), nullptr);
}

TEST(PoolPcp, DrainEmptiesEveryList) {
  Unpin unpin;
  pool::back_off_refill(kHour);
  std::vector<void*> pages;
  for (int i = 0; i < 40; ++i) pages.push_back(bulkrcu_alloc_page());
  // Free some on every CPU we may run on, so that several lists hold pages.
  std::size_t k = 0;
  for (int cpu : unpin.cpus) {
    pin_to(cpu);
    for (int i = 0; i < 10 && k < pages.size(); ++i) bulkrcu_free_page(pages[k++]);
  }
  while (k < pages.size()) bulkrcu_free_page(pages[k++]);
  std::size_t before = 0;
  for (int cpu = 0; cpu < nr_slots(); ++cpu) before += pool::cpu_pages(cpu);
  EXPECT_GT(before, 0u);
  const std::uint64_t zone_before = stats().pool_pages_zone;
  bulkrcu_page_pool_drain();
  for (int cpu = 0; cpu < nr_slots(); ++cpu) EXPECT_EQ(pool::cpu_pages(cpu), 0u) << "cpu " << cpu;
  const bulkrcu_stats s = stats();
  EXPECT_EQ(s.pool_pages_percpu, 0u);
  // Everything is free now: every mapped page is in the zone (some chunks may have gone back),
  // but kvfree's emergency reserve, filled if an earlier test (or repeat) retired.
  EXPECT_EQ(s.pool_pages_zone + static_cast<std::uint64_t>(bulkrcu::detail::kvfree::reserve_pages()),
            s.pool_chunks * pages_per_chunk());
  EXPECT_TRUE(s.pool_pages_zone >= zone_before || s.pool_chunks_unmapped > 0);
  EXPECT_EQ(pool::check_zone(), nullptr);
  pool::back_off_refill(0);
}

// ---- memory back to the OS --------------------------------------------------------------------------

std::size_t rss_bytes() {
  int fd = open("/proc/self/statm", O_RDONLY);
  char buf[128] = {};
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  unsigned long size = 0, resident = 0;
  if (n > 0) sscanf(buf, "%lu %lu", &size, &resident);
  return resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

TEST(PoolShrink, ShrinkGivesMemoryBack) {
  pool::back_off_refill(kHour);
  const std::size_t ps = bulkrcu_page_size();
  const std::size_t n = (64u << 20) / ps;  // 64 MiB
  const std::uint64_t mapped0 = stats().pool_chunks_mapped;
  std::vector<void*> pages;
  pages.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    void* p = bulkrcu_alloc_page();
    ASSERT_NE(p, nullptr);
    memset(p, 0x5a, ps);  // resident for sure
    pages.push_back(p);
  }
  EXPECT_GE(stats().pool_chunks_mapped - mapped0, (64u << 20) / pool::kChunkBytes - 1);
  const std::size_t rss_full = rss_bytes();
  for (void* p : pages) bulkrcu_free_page(p);
  bulkrcu_page_pool_drain();
  bulkrcu_page_pool_shrink();
  const std::size_t rss_after = rss_bytes();
  const bulkrcu_stats s = stats();
  EXPECT_LE(s.pool_chunks, pool::params().floor_chunks);
  EXPECT_GE(s.pool_chunks_unmapped, (64u << 20) / pool::kChunkBytes - 1);
  EXPECT_GE(rss_full - std::min(rss_full, rss_after), std::size_t{48} << 20)
      << "RSS " << (rss_full >> 20) << " MiB -> " << (rss_after >> 20) << " MiB";
  pool::back_off_refill(0);
}

TEST(PoolShrink, MemoryPressureDrainsShrinksAndBacksOff) {
  Unpin unpin;
  const int cpu = unpin.cpus.front();
  pin_to(cpu);
  pool::back_off_refill(0);
  std::vector<void*> pages;
  for (int i = 0; i < 12; ++i) pages.push_back(bulkrcu_alloc_page());
  for (void* p : pages) bulkrcu_free_page(p);
  EXPECT_GT(pool::cpu_pages(cpu), 0u);
  pool::on_memory_pressure();
  EXPECT_EQ(pool::cpu_pages(cpu), 0u);
  EXPECT_LE(stats().pool_chunks, pool::params().floor_chunks);
  // Backed off: a miss is parked (counted, but no refill is due and none is made) ...
  pool::back_off_refill(kHour);
  const std::uint64_t req0 = stats().pool_refill_requests;
  const std::uint64_t refills0 = stats().pool_worker_refills;
  EXPECT_EQ(bulkrcu_alloc_page_lockless(), nullptr);
  EXPECT_EQ(stats().pool_refill_requests, req0 + 1);
  EXPECT_FALSE(pool::refill_wanted());
  EXPECT_GT(pool::next_timeout_ns(), kHour / 2) << "parked until the back-off ends";
  pool::refill_step();  // nothing is due: the worker's step serves nothing
  EXPECT_EQ(pool::cpu_pages(cpu), 0u);
  EXPECT_EQ(stats().pool_worker_refills, refills0);
  // ... and served when the back-off ends, with no second miss (once growth is allowed again,
  // should the zone have gone empty).
  pool::back_off_refill(0);
  ASSERT_TRUE(bulkrcu_test::wait_until_for([&] { return pool::cpu_pages(cpu) > 0; }, 30))
      << "the parked request was never served";
  EXPECT_GT(stats().pool_worker_refills, refills0);
  EXPECT_EQ(stats().pool_refill_requests, req0 + 1);
}

// A miss while growth is held off and the zone is empty is parked, not dropped: it is served
// when the hold-off ends, without a second miss (a caller that only uses the lockless path,
// such as a signal handler, is not left waiting).
TEST(PoolPcp, AMissDuringTheGrowthHoldOffIsServedWhenItEnds) {
  Unpin unpin;
  const int cpu = unpin.cpus.front();
  pin_to(cpu);
  pool::back_off_refill(0);
  bulkrcu_kvfree_barrier();  // a full pass fills kvfree's reserve now, not during the test
  // Take every free page of the zone, so that a refill could only be served by a new chunk.
  std::vector<void*> held;
  bulkrcu_page_pool_drain();
  while (stats().pool_pages_zone > 0 || held.empty()) {
    void* p = pool::alloc_pages(0);
    ASSERT_NE(p, nullptr);
    held.push_back(p);
  }
  bulkrcu_page_pool_drain();  // holds growth off (for 50 ms in test builds)
  const std::uint64_t req0 = stats().pool_refill_requests;
  EXPECT_EQ(bulkrcu_alloc_page_lockless(), nullptr);
  EXPECT_EQ(stats().pool_refill_requests, req0 + 1);
  pool::refill_step();  // the worker's step, made here so that it has surely run once
  if (pool::growth_held_off()) {
    EXPECT_EQ(pool::cpu_pages(cpu), 0u);
    EXPECT_GT(pool::next_timeout_ns(), 0u) << "the request was dropped, not parked";
  }
  ASSERT_TRUE(bulkrcu_test::wait_until_for([&] { return pool::cpu_pages(cpu) > 0; }, 30))
      << "the request was dropped: nothing served it without a second miss";
  EXPECT_EQ(stats().pool_refill_requests, req0 + 1) << "served without a second miss";
  for (void* p : held) pool::free_pages(p, 0);
  bulkrcu_page_pool_drain();
  bulkrcu_page_pool_shrink();
}

TEST(PoolApi, FaultInjectionAndHigherOrders) {
  pool::set_fail_injection(1);
  EXPECT_EQ(bulkrcu_alloc_page_lockless(), nullptr);
  void* p = bulkrcu_alloc_page();
  EXPECT_NE(p, nullptr);
  pool::set_fail_injection(2);
  errno = 0;
  EXPECT_EQ(bulkrcu_alloc_page(), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_EQ(bulkrcu_alloc_page_lockless(), nullptr);
  EXPECT_EQ(pool::alloc_pages(2), nullptr);
  pool::set_fail_injection(0);
  bulkrcu_free_page(p);
  void* big = pool::alloc_pages(3);
  ASSERT_NE(big, nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(big) % (bulkrcu_page_size() << 3), 0u);
  memset(big, 1, bulkrcu_page_size() << 3);
  pool::free_pages(big, 3);
  EXPECT_EQ(pool::alloc_pages(pool::max_order() + 1), nullptr);
  EXPECT_EQ(pool::check_zone(), nullptr);
  // Test builds run the debug checks unless BULKRCU_POOL_DEBUG turns them off explicitly.
  EXPECT_EQ(pool::debug(), bulkrcu::detail::config().pool_debug);
  EXPECT_EQ(bulkrcu_page_size(), static_cast<size_t>(sysconf(_SC_PAGESIZE)));
  bulkrcu_free_page(nullptr);  // no-op
}

TEST(PoolApi, ModeMatchesEnvironment) {
  const char* v = getenv("BULKRCU_EXPECT_NO_RSEQ");
  const char* w = getenv("BULKRCU_NO_RSEQ");
  const bool no_rseq = (v && *v && strcmp(v, "0")) || (w && *w && strcmp(w, "0"));
  if (no_rseq) {
    EXPECT_EQ(mode(), PercpuMode::kLock);
  }
  EXPECT_EQ(stats().percpu_rseq, mode() == PercpuMode::kRseq ? 1u : 0u);
}

// Every page handed out has been freed: after a drain, the zone holds every mapped page. A
// refill the worker started before the back-off may still move pages onto a list, so drain
// until the count settles; a page really lost keeps it from settling (ctest's timeout).
// Every page is back in the zone, but kvfree's emergency reserve (filled by any earlier test
// that retired, and kept by design). The back-off stops kvfree's page-cache refills too, and
// the shrink's release hook gives its cached pages back.
void expect_every_page_free() {
  pool::back_off_refill(kHour);
  bulkrcu_page_pool_shrink();
  const bool all = bulkrcu_test::wait_until_for(
      [] {
        bulkrcu_page_pool_drain();
        const bulkrcu_stats s = stats();
        return s.pool_pages_zone + static_cast<std::uint64_t>(bulkrcu::detail::kvfree::reserve_pages()) ==
               s.pool_chunks * pages_per_chunk();
      },
      30);
  const bulkrcu_stats s = stats();
  EXPECT_TRUE(all) << "zone " << s.pool_pages_zone << " + reserve "
                   << bulkrcu::detail::kvfree::reserve_pages() << " of " << s.pool_chunks * pages_per_chunk()
                   << " pages";
  EXPECT_EQ(pool::check_zone(), nullptr);
  pool::back_off_refill(0);
}

// ---- the lockless allocation from a signal handler ----------------------------------------------

constexpr int kStash = 4096;
void* g_stash[kStash];                // written by the handler only while SIGUSR1 is unblocked
volatile sig_atomic_t g_stash_n = 0;  // main reads it with SIGUSR1 blocked
volatile sig_atomic_t g_in_pool = 0;  // main sets it around its pool calls
std::atomic<std::uint64_t> g_sig_runs{0}, g_sig_hits{0}, g_sig_inside{0}, g_sig_seq{0};

void lockless_handler(int) {
  const int saved = errno;
  g_sig_runs.fetch_add(1, std::memory_order_relaxed);
  if (g_in_pool) g_sig_inside.fetch_add(1, std::memory_order_relaxed);
  if (g_stash_n < kStash) {
    if (void* p = bulkrcu_alloc_page_lockless()) {
      tag(p, (std::uint64_t{0xffff} << 48) | g_sig_seq.fetch_add(1, std::memory_order_relaxed));
      g_stash[g_stash_n] = p;
      g_stash_n = g_stash_n + 1;
      g_sig_hits.fetch_add(1, std::memory_order_relaxed);
    }
  }
  errno = saved;
}

TEST(PoolSignal, LocklessFromAHandlerInterruptingThePool) {
  pool::back_off_refill(0);
  struct sigaction sa {};
  sa.sa_handler = lockless_handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  struct sigaction old {};
  ASSERT_EQ(sigaction(SIGUSR1, &sa, &old), 0);
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);

  std::atomic<bool> stop{false};
  pthread_t self = pthread_self();
  std::thread sender([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      pthread_kill(self, SIGUSR1);
      for (int i = 0; i < 200; ++i) cpu_relax();
    }
  });

  struct Held {
    void* p;
    std::uint64_t token;
  };
  std::vector<Held> held;
  std::mt19937 rng(7);
  std::uint64_t seq = 0, bad = 0, ops = 0;
  auto take = [&](void* p) {
    std::uint64_t t = (std::uint64_t{1} << 48) | ++seq;
    tag(p, t);
    held.push_back({p, t});
  };
  auto drain_stash = [&] {
    pthread_sigmask(SIG_BLOCK, &usr1, nullptr);
    for (int i = 0; i < g_stash_n; ++i) {
      void* p = g_stash[i];
      if ((__atomic_load_n(tag_of(p), __ATOMIC_RELAXED) >> 48) != 0xffff) ++bad;
      bulkrcu_free_page(p);
    }
    g_stash_n = 0;
    pthread_sigmask(SIG_UNBLOCK, &usr1, nullptr);
  };
  // Run until enough handlers allocated and enough of them interrupted a pool call (or for
  // 100 M operations).
  while (ops < 200000 || g_sig_hits.load() < 2000 || g_sig_inside.load() < 200) {
    ++ops;
    const unsigned r = rng() % 8;
    g_in_pool = 1;
    if (r < 3 || held.empty()) {
      void* p = (r & 1) ? bulkrcu_alloc_page_lockless() : bulkrcu_alloc_page();
      g_in_pool = 0;
      if (p) take(p);
    } else {
      std::size_t i = rng() % held.size();
      Held h = held[i];
      held[i] = held.back();
      held.pop_back();
      g_in_pool = 0;
      if (!tag_ok(h.p, h.token)) ++bad;
      g_in_pool = 1;
      bulkrcu_free_page(h.p);
      g_in_pool = 0;
    }
    if (held.size() > 64) {
      for (Held h : held) {
        if (!tag_ok(h.p, h.token)) ++bad;
        bulkrcu_free_page(h.p);
      }
      held.clear();
    }
    if (ops % 512 == 0) drain_stash();
    // On a loaded machine the sender runs seldom (1,100 handler runs in 100 M operations at load
    // 16): stop there, and let the checks below ask only that some handlers ran inside.
    if (ops >= 100000000u) break;
  }
  stop = true;
  sender.join();
  drain_stash();
  for (Held h : held) {
    if (!tag_ok(h.p, h.token)) ++bad;
    bulkrcu_free_page(h.p);
  }
  sigaction(SIGUSR1, &old, nullptr);
  EXPECT_EQ(bad, 0u) << "a page was owned twice";
  EXPECT_GT(g_sig_hits.load(), 0u) << g_sig_runs.load() << " handler runs, none got a page";
  EXPECT_GT(g_sig_inside.load(), 0u) << g_sig_runs.load() << " handler runs, none inside a pool call";
  expect_every_page_free();
}

// ---- more threads than CPUs, migrating ------------------------------------------------------------

TEST(PoolMigrate, ManyThreadsMigratingWhileTheWorkerRefillsAndDrains) {
  pool::back_off_refill(0);
  const std::vector<int> cpus = allowed_cpus();
  const int nthreads = static_cast<int>(cpus.size()) * 3 + 1;
  std::atomic<std::uint64_t> bad{0};
  std::atomic<int> running{nthreads};
  std::vector<std::thread> threads;
  // The lockless path only nudges the worker (no system call), so it acts within its poll
  // interval: keep going until it has refilled while the threads run (iteration-bounded).
  const std::uint64_t worker_refills0 = stats().pool_worker_refills;
  auto worker_seen = [&] { return stats().pool_worker_refills > worker_refills0; };
  for (int t = 0; t < nthreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(100 + t);
      struct Held {
        void* p;
        std::uint64_t token;
      };
      std::vector<Held> held;
      std::uint64_t seq = 0;
      for (int i = 0; i < 40000 || (!worker_seen() && i < 40000000); ++i) {
        if (i % 256 == 0) {
          cpu_set_t set;
          CPU_ZERO(&set);
          CPU_SET(cpus[rng() % cpus.size()], &set);
          sched_setaffinity(0, sizeof set, &set);
        }
        const unsigned r = rng() % 16;
        if (r < 7 || held.empty()) {
          void* p = (r & 1) ? bulkrcu_alloc_page_lockless() : bulkrcu_alloc_page();
          if (!p) continue;
          std::uint64_t token = (std::uint64_t(t + 1) << 40) | ++seq;
          tag(p, token);
          held.push_back({p, token});
        } else {
          std::size_t k = rng() % held.size();
          Held h = held[k];
          held[k] = held.back();
          held.pop_back();
          if (!tag_ok(h.p, h.token)) bad.fetch_add(1);
          bulkrcu_free_page(h.p);
        }
        if (held.size() > 48) {
          for (Held h : held) {
            if (!tag_ok(h.p, h.token)) bad.fetch_add(1);
            bulkrcu_free_page(h.p);
          }
          held.clear();
        }
      }
      for (Held h : held) {
        if (!tag_ok(h.p, h.token)) bad.fetch_add(1);
        bulkrcu_free_page(h.p);
      }
      running.fetch_sub(1);
    });
  }
  // A remote side working at the same time: drains and exact per-CPU counts (lock + fence).
  std::uint64_t drains = 0;
  while (running.load() > 0) {
    bulkrcu_page_pool_drain();
    for (int cpu = 0; cpu < nr_slots(); ++cpu) (void)pool::cpu_pages(cpu);
    ++drains;
    sched_yield();
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0u) << "a page was owned twice";
  EXPECT_GT(drains, 0u);
  EXPECT_GT(stats().pool_worker_refills, 0u);
  expect_every_page_free();
}

// ---- memory back to the OS (issue 10 items 10 and 11) -------------------------------------------

// A retire load (kvfree's block caches and reserve fill up) plus pages held and freed in a
// scattered order; then drain + shrink + pressure must give back at least half of the pool's
// peak, mapped and resident, every time.
TEST(PoolRelease, DrainShrinkPressureGiveBackHalfThePeakEveryTime) {
  const std::size_t ps = bulkrcu_page_size();
  const std::size_t n = (6u << 20) / ps;  // 6 MiB of pages at the peak: 3 to 4 chunks
  std::mt19937 rng(7);
  for (int run = 0; run < 20; ++run) {
    std::atomic<bool> stop{false};
    std::vector<std::thread> retirers;
    for (int t = 0; t < 2; ++t)
      retirers.emplace_back([&] {
        while (!stop.load(std::memory_order_relaxed))
          for (int i = 0; i < 256; ++i) bulkrcu_kvfree(malloc(48));
      });
    std::vector<void*> pages;
    pages.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      void* p = (i & 1) ? bulkrcu_alloc_page_lockless() : nullptr;
      if (!p) p = bulkrcu_alloc_page();
      ASSERT_NE(p, nullptr);
      memset(p, 0x5a, ps);
      pages.push_back(p);
    }
    const std::uint64_t peak_mapped = pool::mapped_bytes();
    const std::uint64_t peak_resident = pool::resident_bytes();
    std::shuffle(pages.begin(), pages.end(), rng);
    for (void* p : pages) bulkrcu_free_page(p);
    stop.store(true);
    for (auto& t : retirers) t.join();
    bulkrcu_kvfree_barrier();
    bulkrcu_page_pool_drain();
    bulkrcu_page_pool_shrink();
    bulkrcu_memory_pressure();
    const std::uint64_t mapped = pool::mapped_bytes();
    const std::uint64_t resident = pool::resident_bytes();
    EXPECT_LE(2 * mapped, peak_mapped) << "run " << run << ": mapped " << (mapped >> 10)
                                       << " KiB of a peak of " << (peak_mapped >> 10) << " KiB";
    EXPECT_LE(2 * resident, peak_resident) << "run " << run << ": resident " << (resident >> 10)
                                           << " KiB of a peak of " << (peak_resident >> 10) << " KiB";
    EXPECT_EQ(pool::check_zone(), nullptr);
  }
}

// One page held in every chunk: nothing can be unmapped, but the free runs go back.
TEST(PoolRelease, PartlyUsedChunksGiveTheirFreeRunsBack) {
  const std::size_t ps = bulkrcu_page_size();
  const std::size_t n = (8u << 20) / ps;
  std::vector<void*> pages;
  for (std::size_t i = 0; i < n; ++i) {
    void* p = bulkrcu_alloc_page();
    ASSERT_NE(p, nullptr);
    memset(p, 0x5a, ps);
    pages.push_back(p);
  }
  const std::uint64_t peak_resident = pool::resident_bytes();
  std::set<pool::Chunk*> seen;
  std::vector<void*> held;
  for (void* p : pages) {
    if (seen.insert(pool::chunk_of(p)).second)
      held.push_back(p);
    else
      bulkrcu_free_page(p);
  }
  bulkrcu_page_pool_drain();
  bulkrcu_page_pool_shrink();
  const std::uint64_t resident = pool::resident_bytes();
  EXPECT_LE(2 * resident, peak_resident)
      << "resident " << (resident >> 10) << " KiB of a peak of " << (peak_resident >> 10) << " KiB with "
      << held.size() << " chunks partly used";
  for (void* p : held) bulkrcu_free_page(p);
  bulkrcu_page_pool_drain();
  bulkrcu_page_pool_shrink();
  EXPECT_EQ(pool::check_zone(), nullptr);
}

// A refill asked for before a drain must not map a fresh chunk once the drain has run.
TEST(PoolRelease, APendingRefillTakesNoFreshChunkAfterADrain) {
  Unpin unpin;
  pin_to(unpin.cpus.front());
  pool::back_off_refill(0);
  bulkrcu_kvfree_barrier();  // a full pass fills kvfree's reserve now, not during the test
  bulkrcu_page_pool_drain();
  // Take every free page of the zone, so that a refill could only be served by a new chunk.
  std::vector<void*> held;
  while (stats().pool_pages_zone > 0 || held.empty()) {
    void* p = pool::alloc_pages(0);
    ASSERT_NE(p, nullptr);
    held.push_back(p);
  }
  bulkrcu_page_pool_drain();
  ASSERT_EQ(stats().pool_pages_zone, 0u);
  const std::uint64_t mapped0 = stats().pool_chunks_mapped;
  // A miss asks for a refill with a nudge only: the runtime thread polls for it within 100 ms
  // to 1 s, so the request is still pending when the drain runs a few microseconds later.
  EXPECT_EQ(bulkrcu_alloc_page_lockless(), nullptr);
  bulkrcu_page_pool_drain();  // drops the request
  pool::refill_step();        // the worker's step, made here so that it has surely run
  wait_until([] { return !pool::refill_wanted(); });
  EXPECT_EQ(stats().pool_chunks_mapped, mapped0) << "a refill mapped a chunk right after a drain";
  for (void* p : held) pool::free_pages(p, 0);
  bulkrcu_page_pool_shrink();
}

// kvfree's emergency reserve is refilled after use whatever the cache back-off and the budget
// say (kvfree_test --gtest_repeat=3 used to abort on its second repeat).
TEST(PoolRelease, TheReserveIsRefilledAfterEveryUse) {
  struct Obj {
    long v;
  };
  static std::atomic<int> deleted{0};
  auto del = [](void* p) {
    delete static_cast<Obj*>(p);
    deleted.fetch_add(1);
  };
  for (int round = 0; round < 4; ++round) {
    // A full monitor pass refills the reserve (the first one of the process fills it too);
    // round 1 onwards checks it was refilled after the previous round used it.
    bulkrcu_kvfree_barrier();
    const bulkrcu_stats before = stats();
    deleted.store(0);
    pool::set_fail_injection(2);
    bulkrcu_memory_pressure();
    // More than a block (a test block holds 4): both of the test build's reserve pages. The
    // round's bulkrcu_memory_pressure() kicks a pressure pass whose locked round may detach
    // the front while the first retire installs: that retire then retries, and its reserve
    // page must go back to the reserve (the pass empties the page cache), or the fifth retire
    // finds none and aborts (seen in the no-membarrier mode, 4 runs in 6, before the fix).
    bulkrcu_read_lock();
    for (int i = 0; i < 6; ++i) bulkrcu_defer(del, new Obj{i});  // no page but the reserve's
    bulkrcu_read_unlock();
    pool::set_fail_injection(0);
    bulkrcu_kvfree_barrier();
    const bulkrcu_stats after = stats();
    EXPECT_GT(after.kv_fallback_reserve, before.kv_fallback_reserve) << "round " << round;
    EXPECT_EQ(deleted.load(), 6) << "round " << round;
  }
}

// ---- the same tests without rseq, in every run ------------------------------------------------------

TEST(PoolFallback, ChildProcessWithoutRseq) {
  if (mode() == PercpuMode::kLock) GTEST_SKIP() << "this process already runs the fallback";
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    setenv("BULKRCU_NO_RSEQ", "1", 1);
    execl("/proc/self/exe", "pool_test", "--gtest_filter=PoolPcp.*:PoolSignal.*:PoolMigrate.*:PoolApi.*",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "pool tests failed with BULKRCU_NO_RSEQ=1 (output above)";
}

// The release fast path (no debug checks: the fast pop and the bounded push in pool_rseq.h)
// runs only with BULKRCU_POOL_DEBUG off, which test builds turn on by default: the same tests
// again in a child with it off.
TEST(PoolFastPath, ChildProcessWithoutDebugChecks) {
  if (!pool::debug()) GTEST_SKIP() << "this process already runs without the debug checks";
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    setenv("BULKRCU_POOL_DEBUG", "0", 1);
    execl("/proc/self/exe", "pool_test",
          "--gtest_filter=PoolPcp.*:PoolSignal.*:PoolMigrate.*:PoolApi.*:PoolShrink.*:PoolFastPath.Open*:"
          "PoolRelease.*",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "pool tests failed with BULKRCU_POOL_DEBUG=0 (output above)";
}

TEST(PoolFastPath, OpenExactlyWhenNothingIsChecked) {
  const bool open = !pool::debug() && mode() == PercpuMode::kRseq;
  EXPECT_EQ(pool::fast_path_open(), open);
  pool::set_fail_injection(1);
  EXPECT_FALSE(pool::fast_path_open());
  EXPECT_EQ(bulkrcu_alloc_page_lockless(), nullptr);
  pool::set_fail_injection(0);
  EXPECT_EQ(pool::fast_path_open(), open);
  // Pages go round the fast path and come back intact: pop, write, push, pop again.
  std::vector<void*> pages;
  for (int i = 0; i < 40; ++i) {
    void* p = bulkrcu_alloc_page();
    ASSERT_NE(p, nullptr);
    memset(p, i, bulkrcu_page_size());
    pages.push_back(p);
  }
  for (void* p : pages) bulkrcu_free_page(p);
  for (int round = 0; round < 1000; ++round) {
    void* p = bulkrcu_alloc_page_lockless();
    if (!p) p = bulkrcu_alloc_page();
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(reinterpret_cast<std::uintptr_t>(p) % bulkrcu_page_size(), 0u);
    static_cast<char*>(p)[bulkrcu_page_size() - 1] = 1;
    bulkrcu_free_page(p);
  }
  bulkrcu_page_pool_drain();
  EXPECT_EQ(pool::check_zone(), nullptr);
}

// The public header's inline paths (page_pool.h, BULKRCU__INLINE_POOL) and the exported
// functions they fall back to share the lists and the statistics. The runtime thread may take
// lockless pages itself (kvfree's page cache), hence the lower bounds.
TEST(PoolFastPath, OpenInlineAndExportedPathsShareListsAndStatistics) {
#if defined(__x86_64__) && !BULKRCU_TSAN && !defined(BULKRCU__INLINE_POOL)
  ADD_FAILURE() << "page_pool.h's inline fast paths are off in this build";
#endif
  const pool::Stats before = pool::stats();
  std::vector<void*> pages;
  std::uint64_t hits = 0, misses = 0;
  for (int i = 0; i < 200; ++i) {
    void* p = (i & 1) ? (bulkrcu_alloc_page_lockless)() : bulkrcu_alloc_page_lockless();
    if (p) {
      ++hits;
    } else {
      ++misses;
      p = (i & 2) ? (bulkrcu_alloc_page)() : bulkrcu_alloc_page();
    }
    ASSERT_NE(p, nullptr);
    for (void* q : pages) ASSERT_NE(q, p) << "a page handed out twice";
    static_cast<int*>(p)[16] = i;
    pages.push_back(p);
  }
  for (std::size_t i = 0; i < pages.size(); ++i) {
    ASSERT_EQ(static_cast<int*>(pages[i])[16], static_cast<int>(i));
    if (i & 1)
      (bulkrcu_free_page)(pages[i]);
    else
      bulkrcu_free_page(pages[i]);
  }
  const pool::Stats after = pool::stats();
  EXPECT_GE(after.lockless_hits - before.lockless_hits, hits);
  EXPECT_GE(after.lockless_misses - before.lockless_misses, misses);
  EXPECT_GE(after.allocs - before.allocs, pages.size());
  EXPECT_GE(after.frees - before.frees, pages.size());
  EXPECT_EQ(pool::check_zone(), nullptr);
}

// ---- debug-mode aborts ------------------------------------------------------------------------------

std::string hex(const void* p) {
  char buf[32];
  snprintf(buf, sizeof buf, "%p", p);
  return buf;
}

class PoolDeath : public ::testing::Test {
 protected:
  // "fast": the child is a fork of this process, so the pointers in the messages are the same.
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "fast"); }
};

TEST_F(PoolDeath, DoubleFree) {
  void* p = bulkrcu_alloc_page();
  ASSERT_NE(p, nullptr);
  bulkrcu_free_page(p);
  EXPECT_DEATH(bulkrcu_free_page(p), "bulkrcu_free_page\\(" + hex(p) + "\\): double free");
}

TEST_F(PoolDeath, ForeignPointer) {
  void* m = aligned_alloc(bulkrcu_page_size(), bulkrcu_page_size());
  ASSERT_NE(m, nullptr);
  EXPECT_DEATH(bulkrcu_free_page(m), "bulkrcu_free_page\\(" + hex(m) + "\\): not a page of this pool");
  free(m);
}

TEST_F(PoolDeath, MisalignedPointer) {
  void* p = bulkrcu_alloc_page();
  char* q = static_cast<char*>(p) + 8;
  EXPECT_DEATH(bulkrcu_free_page(q), "bulkrcu_free_page\\(" + hex(q) + "\\): misaligned pointer");
  bulkrcu_free_page(p);
}

TEST_F(PoolDeath, WriteAfterFreeIsCaughtWhenThePageIsHandedOut) {
  Unpin unpin;
  pin_to(unpin.cpus.front());
  void* p = bulkrcu_alloc_page();
  ASSERT_NE(p, nullptr);
  EXPECT_DEATH(
      {
        pool::back_off_refill(kHour);
        bulkrcu_free_page(p);
        static_cast<char*>(p)[1000] = 42;  // use after free
        // LIFO: the same page comes back (from this CPU's list, or via the zone when a remote
        // held the slot); keep taking pages until it does.
        for (int i = 0; i < 100000; ++i) bulkrcu_alloc_page();
      },
      "page " + hex(p) + " was written after it was freed \\(poison overwritten at byte offset 1000\\)");
  bulkrcu_free_page(p);
}

TEST_F(PoolDeath, InteriorPageOfAFreeBlock) {
  void* p = pool::alloc_pages(2);
  ASSERT_NE(p, nullptr);
  char* interior = static_cast<char*>(p) + bulkrcu_page_size();
  EXPECT_DEATH(bulkrcu_free_page(interior),
               "bulkrcu_free_page\\(" + hex(interior) + "\\): not a page the pool");
  pool::free_pages(p, 2);
}

}  // namespace
