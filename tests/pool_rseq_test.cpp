// Tests of the raw per-CPU list sequences the pool is built on: percpu.h's subtle::rseq_push /
// subtle::rseq_pop and pool_rseq.h's subtle::rseq_push_counted, against the remote side of
// percpu.h's protocol (lock + fence_remote) and against signal handlers. kRseq mode only.
#include "pool/pool_rseq.h"

#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>

#include <atomic>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "bulkrcu/page_pool.h"
#include "percpu/percpu.h"
#include "test_support.h"

namespace {

using namespace bulkrcu::detail;

struct Node {
  Node* next;
  std::uintptr_t depth;
  std::atomic<int> owner;  // 0 while on a list
};

struct alignas(kCacheLine) TSlot {
  SlotLock lock;
  Node* head = nullptr;
};

constexpr std::size_t kHead = offsetof(TSlot, head);
constexpr std::size_t kNext = offsetof(Node, next);
constexpr std::size_t kDepth = offsetof(Node, depth);

#if BULKRCU_HAVE_RSEQ_ASM
std::atomic<TSlot*> g_plain{nullptr}, g_counted{nullptr};
std::atomic<std::uint64_t> g_bad{0}, g_handler_ops{0};

// Takes a node from `counted` or plain list of this CPU, owns it briefly, gives it back.
void cycle(bool counted, int me) {
  TSlot* base = counted ? get_slots(g_counted) : get_slots(g_plain);
  void* n = subtle::rseq_pop<kHead, kNext>(base, sizeof(TSlot));
  if (n == nullptr || n == subtle::kSlotLocked) return;
  Node* node = static_cast<Node*>(n);
  int expected = 0;
  if (!node->owner.compare_exchange_strong(expected, me)) g_bad.fetch_add(1);
  for (int i = 0; i < 8; ++i) cpu_relax();
  expected = me;
  if (!node->owner.compare_exchange_strong(expected, 0)) g_bad.fetch_add(1);
  for (;;) {  // a pushed node must not be lost: retry while a remote holds the slot
    bool ok = counted ? subtle::rseq_push_counted<kHead, kNext, kDepth>(base, sizeof(TSlot), node) != 0
                      : subtle::rseq_push<kHead, kNext>(base, sizeof(TSlot), node);
    if (ok) break;
    sched_yield();
  }
}

void handler(int) {
  cycle(false, 1000);
  cycle(true, 1001);
  g_handler_ops.fetch_add(1, std::memory_order_relaxed);
}

// Remote side: lock, fence, walk (checking the depth chain of the counted list), and move the
// whole list to another slot. Returns the nodes seen.
std::size_t remote_move(TSlot* base, bool counted, int from, int to, std::set<Node*>* seen) {
  TSlot& a = base[from];
  a.lock.lock();
  subtle::fence_remote(from);
  Node* chain = a.head;
  a.head = nullptr;
  a.lock.unlock();
  std::size_t n = 0;
  std::vector<Node*> nodes;
  for (Node* p = chain; p; p = p->next, ++n) {
    if (counted && p->depth != 1 + (p->next ? p->next->depth : 0)) g_bad.fetch_add(1);
    if (p->owner.load() != 0) g_bad.fetch_add(1);
    if (seen && !seen->insert(p).second) g_bad.fetch_add(1);
    nodes.push_back(p);
  }
  TSlot& b = base[to];
  b.lock.lock();
  subtle::fence_remote(to);
  for (auto it = nodes.rbegin(); it != nodes.rend(); ++it) {
    Node* p = *it;
    p->next = b.head;
    p->depth = b.head ? b.head->depth + 1 : 1;
    b.head = p;
  }
  b.lock.unlock();
  return n;
}
#endif

TEST(PercpuRseq, PushPopUnderMigrationRemoteMovesAndSignals) {
#if !BULKRCU_HAVE_RSEQ_ASM
  GTEST_SKIP() << "no rseq asm on this architecture";
#else
  if (mode() != PercpuMode::kRseq) GTEST_SKIP() << "rseq unavailable (fallback mode)";
  constexpr int kNodes = 256;
  std::vector<Node> plain(kNodes), counted(kNodes);
  TSlot* pb = get_slots(g_plain);
  TSlot* cb = get_slots(g_counted);
  for (int i = 0; i < kNodes; ++i) {  // seed: all nodes on slot 0, depths right
    Node* p = &plain[i];
    p->owner = 0;
    p->next = pb[0].head;
    pb[0].head = p;
    Node* c = &counted[i];
    c->owner = 0;
    c->next = cb[0].head;
    c->depth = cb[0].head ? cb[0].head->depth + 1 : 1;
    cb[0].head = c;
  }

  cpu_set_t all;
  sched_getaffinity(0, sizeof all, &all);
  std::vector<int> cpus;
  for (int i = 0; i < CPU_SETSIZE; ++i)
    if (CPU_ISSET(i, &all)) cpus.push_back(i);

  struct sigaction sa {};
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  struct sigaction old {};
  sigaction(SIGUSR2, &sa, &old);

  const int nthreads = static_cast<int>(cpus.size()) * 3;
  std::atomic<int> running{nthreads};
  std::vector<std::thread> threads;
  std::vector<pthread_t> handles(nthreads);
  std::atomic<int> started{0};
  for (int t = 0; t < nthreads; ++t) {
    threads.emplace_back([&, t] {
      handles[t] = pthread_self();
      started.fetch_add(1);
      std::mt19937 rng(t);
      for (int i = 0; i < 200000; ++i) {
        if (i % 1000 == 0) {
          cpu_set_t set;
          CPU_ZERO(&set);
          CPU_SET(cpus[rng() % cpus.size()], &set);
          sched_setaffinity(0, sizeof set, &set);
        }
        cycle(i & 1, t + 1);
      }
      running.fetch_sub(1);
    });
  }
  bulkrcu_test::wait_until([&] { return started.load() == nthreads; });
  std::mt19937 rng(99);
  std::uint64_t moves = 0;
  while (running.load() > 0) {
    const int from = rng() % nr_slots(), to = rng() % nr_slots();
    remote_move(pb, false, from, to, nullptr);
    remote_move(cb, true, from, to, nullptr);
    ++moves;
    pthread_kill(handles[rng() % nthreads], SIGUSR2);
  }
  for (auto& th : threads) th.join();
  sigaction(SIGUSR2, &old, nullptr);

  // Every node is on exactly one list, free, and the counted lists' depths are consistent.
  std::set<Node*> seen_plain, seen_counted;
  std::size_t n_plain = 0, n_counted = 0;
  for (int cpu = 0; cpu < nr_slots(); ++cpu) {
    n_plain += remote_move(pb, false, cpu, cpu, &seen_plain);
    n_counted += remote_move(cb, true, cpu, cpu, &seen_counted);
  }
  EXPECT_EQ(g_bad.load(), 0u);
  EXPECT_EQ(n_plain, static_cast<std::size_t>(kNodes));
  EXPECT_EQ(n_counted, static_cast<std::size_t>(kNodes));
  EXPECT_GT(moves, 0u);
  EXPECT_GT(g_handler_ops.load(), 0u);
#endif
}

TEST(PercpuRseq, LockedSlotIsLeftAlone) {
#if !BULKRCU_HAVE_RSEQ_ASM
  GTEST_SKIP();
#else
  if (mode() != PercpuMode::kRseq) GTEST_SKIP() << "rseq unavailable (fallback mode)";
  TSlot* base = get_slots(g_counted);
  for (int i = 0; i < nr_slots(); ++i) base[i].lock.lock();
  Node n{};
  EXPECT_FALSE((subtle::rseq_push<kHead, kNext>(base, sizeof(TSlot), &n)));
  EXPECT_EQ((subtle::rseq_push_counted<kHead, kNext, kDepth>(base, sizeof(TSlot), &n)), 0u);
  EXPECT_EQ((subtle::rseq_pop<kHead, kNext>(base, sizeof(TSlot))), subtle::kSlotLocked);
  for (int i = 0; i < nr_slots(); ++i) base[i].lock.unlock();
  // Unlocked and pinned: push returns the count, pop returns the nodes in LIFO order.
  cpu_set_t set, old;
  sched_getaffinity(0, sizeof old, &old);
  CPU_ZERO(&set);
  for (int i = 0; i < CPU_SETSIZE; ++i)
    if (CPU_ISSET(i, &old)) {
      CPU_SET(i, &set);
      break;
    }
  sched_setaffinity(0, sizeof set, &set);
  static std::atomic<TSlot*> own{nullptr};
  TSlot* ob = get_slots(own);
  Node a{}, b{};
  EXPECT_EQ((subtle::rseq_push_counted<kHead, kNext, kDepth>(ob, sizeof(TSlot), &a)), 1u);
  EXPECT_EQ((subtle::rseq_push_counted<kHead, kNext, kDepth>(ob, sizeof(TSlot), &b)), 2u);
  EXPECT_EQ((subtle::rseq_pop<kHead, kNext>(ob, sizeof(TSlot))), &b);
  EXPECT_EQ((subtle::rseq_pop<kHead, kNext>(ob, sizeof(TSlot))), &a);
  EXPECT_EQ((subtle::rseq_pop<kHead, kNext>(ob, sizeof(TSlot))), nullptr);
  sched_setaffinity(0, sizeof old, &old);
#endif
}

// The public header's sequences (bulkrcu__pool_pop, bulkrcu__pool_push: the inline fast paths
// of page_pool.h) on a private slot array laid out as the header says: the bound, the locked
// slot, the depth, the count hint and the statistics, exactly, on a pinned thread.
struct alignas(64) HSlot {
  std::uint32_t lock;
  void* head;
  std::uint64_t hint;
  std::uint64_t pad;
  std::uint64_t allocs, frees, hits, misses;
};
static_assert(sizeof(HSlot) == std::size_t{1} << BULKRCU__PCP_SHIFT &&
              offsetof(HSlot, head) == BULKRCU__PCP_HEAD && offsetof(HSlot, hint) == BULKRCU__PCP_HINT &&
              offsetof(HSlot, allocs) == BULKRCU__PCP_ALLOCS &&
              offsetof(HSlot, frees) == BULKRCU__PCP_FREES && offsetof(HSlot, hits) == BULKRCU__PCP_HITS);

TEST(PercpuRseq, HeaderSequencesBoundCountAndAccount) {
#if !BULKRCU_HAVE_RSEQ_ASM || !defined(BULKRCU__HAVE_POOL_FAST)
  GTEST_SKIP();
#else
  if (mode() != PercpuMode::kRseq) GTEST_SKIP() << "rseq unavailable (fallback mode)";
  cpu_set_t set, old;
  sched_getaffinity(0, sizeof old, &old);
  CPU_ZERO(&set);
  for (int i = 0; i < CPU_SETSIZE; ++i)
    if (CPU_ISSET(i, &old)) {
      CPU_SET(i, &set);
      break;
    }
  ASSERT_EQ(sched_setaffinity(0, sizeof set, &set), 0);
  HSlot* base = static_cast<HSlot*>(alloc_slots(sizeof(HSlot)));
  HSlot& s = base[sched_getcpu()];
  constexpr unsigned long kHigh = 5;
  static Node nodes[kHigh + 1];
  for (unsigned long i = 0; i < kHigh; ++i) {
    ASSERT_EQ(bulkrcu__pool_push(base, &nodes[i], kHigh), 0);
    EXPECT_EQ(nodes[i].depth, i + 1);
    EXPECT_EQ(s.hint, i + 1);
  }
  EXPECT_EQ(s.frees, kHigh);
  EXPECT_EQ(bulkrcu__pool_push(base, &nodes[kHigh], kHigh), 2) << "a list of `high` pages takes no more";
  EXPECT_EQ(s.head, &nodes[kHigh - 1]);
  s.lock = 1;
  EXPECT_EQ(bulkrcu__pool_push(base, &nodes[kHigh], kHigh), 1);
  unsigned long left = 99;
  EXPECT_EQ(bulkrcu__pool_pop(base, BULKRCU__PCP_HITS, &left), reinterpret_cast<void*>(~std::uintptr_t{0}));
  s.lock = 0;
  EXPECT_EQ(s.frees, kHigh);
  EXPECT_EQ(s.head, &nodes[kHigh - 1]);
  for (unsigned long i = kHigh; i-- > 0;) {
    EXPECT_EQ(bulkrcu__pool_pop(base, (i & 1) ? BULKRCU__PCP_HITS : BULKRCU__PCP_ALLOCS, &left), &nodes[i]);
    EXPECT_EQ(left, i);
    EXPECT_EQ(s.hint, i);
  }
  EXPECT_EQ(bulkrcu__pool_pop(base, BULKRCU__PCP_HITS, &left), nullptr);
  EXPECT_EQ(s.hits, kHigh / 2);
  EXPECT_EQ(s.allocs, kHigh - kHigh / 2);
  EXPECT_EQ(s.misses, 0u);
  sched_setaffinity(0, sizeof old, &old);
#endif
}

}  // namespace
