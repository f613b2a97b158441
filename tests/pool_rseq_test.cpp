// Tests of the raw per-CPU list sequences the pool is built on: percpu.h's subtle::rseq_push /
// subtle::rseq_pop and the public header's bulkrcu__pool_push / bulkrcu__pool_pop (the pool's
// counted lists: a head word of first page | count), against the remote side of percpu.h's
// protocol (lock + fence_remote) and against signal handlers. kRseq mode only.
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

// Nodes are page-aligned: the counted lists keep the count in the low 12 bits of the words.
struct alignas(4096) Node {
  Node* next;              // plain list: the link; counted list: the word of the rest
  std::atomic<int> owner;  // 0 while on a list
};

// Laid out as the header's slots (64 bytes, lock at 0, head at 8); `ops` takes the statistic.
struct alignas(kCacheLine) TSlot {
  SlotLock lock;
  Node* head = nullptr;  // plain: the first node; counted: the head word
  std::uint64_t ops = 0;
};
static_assert(sizeof(TSlot) == std::size_t{1} << BULKRCU__PCP_SHIFT &&
              offsetof(TSlot, head) == BULKRCU__PCP_HEAD);

constexpr std::size_t kHead = offsetof(TSlot, head);
constexpr std::size_t kNext = offsetof(Node, next);
constexpr std::size_t kOps = offsetof(TSlot, ops);
constexpr std::uintptr_t kCountMask = 0xfff;
std::uintptr_t word_of(Node* p, std::uintptr_t count) { return reinterpret_cast<std::uintptr_t>(p) | count; }
Node* page_of(std::uintptr_t w) { return reinterpret_cast<Node*>(w & ~kCountMask); }

// Pins the calling thread to the first CPU it may run on, for the scope (sequences on a slot of
// a known CPU); restores the old affinity after.
struct PinnedToOneCpu {
  cpu_set_t old;
  bool ok = false;
  PinnedToOneCpu() {
    sched_getaffinity(0, sizeof old, &old);
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int i = 0; i < CPU_SETSIZE; ++i)
      if (CPU_ISSET(i, &old)) {
        CPU_SET(i, &set);
        break;
      }
    ok = sched_setaffinity(0, sizeof set, &set) == 0;
  }
  ~PinnedToOneCpu() { sched_setaffinity(0, sizeof old, &old); }
  PinnedToOneCpu(const PinnedToOneCpu&) = delete;
  PinnedToOneCpu& operator=(const PinnedToOneCpu&) = delete;
};

#if BULKRCU_HAVE_RSEQ_ASM
std::atomic<TSlot*> g_plain{nullptr}, g_counted{nullptr};
std::atomic<std::uint64_t> g_bad{0}, g_handler_ops{0};

// Takes a node from `counted` or plain list of this CPU, owns it briefly, gives it back.
void cycle(bool counted, int me) {
  TSlot* base = counted ? get_slots(g_counted) : get_slots(g_plain);
  unsigned long left;
  void* n =
      counted ? bulkrcu__pool_pop(base, kOps, &left) : subtle::rseq_pop<kHead, kNext>(base, sizeof(TSlot));
  if (n == nullptr || n == subtle::kSlotLocked) return;
  Node* node = static_cast<Node*>(n);
  int expected = 0;
  if (!node->owner.compare_exchange_strong(expected, me)) g_bad.fetch_add(1);
  for (int i = 0; i < 8; ++i) cpu_relax();
  expected = me;
  if (!node->owner.compare_exchange_strong(expected, 0)) g_bad.fetch_add(1);
  for (;;) {  // a pushed node must not be lost: retry while a remote holds the slot
    bool ok = counted ? bulkrcu__pool_push(base, node, kCountMask, kOps) == 0
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

// Remote side: lock, fence, walk (checking the counts of the counted list's words: each one
// counts the nodes from it to the bottom), and move the whole list to another slot. Returns
// the nodes seen.
std::size_t remote_move(TSlot* base, bool counted, int from, int to, std::set<Node*>* seen) {
  TSlot& a = base[from];
  a.lock.lock();
  subtle::fence_remote(from);
  const std::uintptr_t first = reinterpret_cast<std::uintptr_t>(a.head);
  a.head = nullptr;
  a.lock.unlock();
  std::vector<Node*> nodes;
  std::vector<std::uintptr_t> counts;
  for (std::uintptr_t w = first; counted ? page_of(w) != nullptr : w != 0;) {
    Node* p = counted ? page_of(w) : reinterpret_cast<Node*>(w);
    counts.push_back(w & kCountMask);
    if (p->owner.load() != 0) g_bad.fetch_add(1);
    if (seen && !seen->insert(p).second) g_bad.fetch_add(1);
    nodes.push_back(p);
    w = reinterpret_cast<std::uintptr_t>(p->next);
  }
  if (counted)
    for (std::size_t i = 0; i < nodes.size(); ++i)
      if (counts[i] != nodes.size() - i) g_bad.fetch_add(1);
  TSlot& b = base[to];
  b.lock.lock();
  subtle::fence_remote(to);
  std::uintptr_t w = reinterpret_cast<std::uintptr_t>(b.head);
  for (auto it = nodes.rbegin(); it != nodes.rend(); ++it) {
    Node* p = *it;
    p->next = reinterpret_cast<Node*>(w);
    w = counted ? word_of(p, (w & kCountMask) + 1) : reinterpret_cast<std::uintptr_t>(p);
  }
  b.head = reinterpret_cast<Node*>(w);
  b.lock.unlock();
  return nodes.size();
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
  for (int i = 0; i < kNodes; ++i) {  // seed: all nodes on slot 0, counts right
    Node* p = &plain[i];
    p->owner = 0;
    p->next = pb[0].head;
    pb[0].head = p;
    Node* c = &counted[i];
    c->owner = 0;
    c->next = cb[0].head;
    cb[0].head = reinterpret_cast<Node*>(word_of(c, static_cast<std::uintptr_t>(i) + 1));
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

  // Every node is on exactly one list, free, and the counted lists' counts are consistent.
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
  static Node n{};
  unsigned long left;
  EXPECT_FALSE((subtle::rseq_push<kHead, kNext>(base, sizeof(TSlot), &n)));
  EXPECT_EQ(bulkrcu__pool_push(base, &n, kCountMask, kOps), 1);
  EXPECT_EQ((subtle::rseq_pop<kHead, kNext>(base, sizeof(TSlot))), subtle::kSlotLocked);
  EXPECT_EQ(bulkrcu__pool_pop(base, kOps, &left), subtle::kSlotLocked);
  for (int i = 0; i < nr_slots(); ++i) base[i].lock.unlock();
  // Unlocked and pinned: push returns the count, pop returns the nodes in LIFO order.
  PinnedToOneCpu pinned;
  static std::atomic<TSlot*> own{nullptr};
  TSlot* ob = get_slots(own);
  static Node a{}, b{};
  EXPECT_TRUE((subtle::rseq_push<kHead, kNext>(ob, sizeof(TSlot), &a)));
  EXPECT_TRUE((subtle::rseq_push<kHead, kNext>(ob, sizeof(TSlot), &b)));
  EXPECT_EQ((subtle::rseq_pop<kHead, kNext>(ob, sizeof(TSlot))), &b);
  EXPECT_EQ((subtle::rseq_pop<kHead, kNext>(ob, sizeof(TSlot))), &a);
  EXPECT_EQ((subtle::rseq_pop<kHead, kNext>(ob, sizeof(TSlot))), nullptr);
#endif
}

// rseq_push_chain (kvfree's helpers move the rest of a hand-over chain onto their CPU's ready
// list): the chain lands in front of what the list held, in order, and a locked slot is left
// alone.
TEST(PercpuRseq, PushChainKeepsOrderAndLeavesALockedSlotAlone) {
#if !BULKRCU_HAVE_RSEQ_ASM
  GTEST_SKIP();
#else
  if (mode() != PercpuMode::kRseq) GTEST_SKIP() << "rseq unavailable (fallback mode)";
  static std::atomic<TSlot*> own{nullptr};
  TSlot* ob = get_slots(own);
  static Node a{}, b{}, c{}, d{};
  for (int i = 0; i < nr_slots(); ++i) ob[i].lock.lock();
  b.next = &c;
  EXPECT_FALSE((subtle::rseq_push_chain<kHead, kNext>(ob, sizeof(TSlot), &b, &c)));
  for (int i = 0; i < nr_slots(); ++i) {
    EXPECT_EQ(ob[i].head, nullptr);
    ob[i].lock.unlock();
  }
  PinnedToOneCpu pinned;
  EXPECT_TRUE((subtle::rseq_push<kHead, kNext>(ob, sizeof(TSlot), &a)));
  d.next = &d;  // the chain's last link is overwritten with the old head
  b.next = &c;
  c.next = &d;
  EXPECT_TRUE((subtle::rseq_push_chain<kHead, kNext>(ob, sizeof(TSlot), &b, &d)));
  EXPECT_EQ((subtle::rseq_pop<kHead, kNext>(ob, sizeof(TSlot))), &b);
  EXPECT_EQ((subtle::rseq_pop<kHead, kNext>(ob, sizeof(TSlot))), &c);
  EXPECT_EQ((subtle::rseq_pop<kHead, kNext>(ob, sizeof(TSlot))), &d);
  EXPECT_EQ((subtle::rseq_pop<kHead, kNext>(ob, sizeof(TSlot))), &a);
  EXPECT_EQ((subtle::rseq_pop<kHead, kNext>(ob, sizeof(TSlot))), nullptr);
#endif
}

// rseq_append (the callback layer's FIFO lists): threads append their own numbered nodes while
// they migrate, a signal handler appends into the sequence it interrupts (an aborted append may
// have stored its node into the tail's link: the handler's append must overwrite it) and a
// remote side detaches lists under lock + fence the way the callback sweep does: it finds the
// end by the tail pointer, rewrites the last link to null and resets the list. Every node is
// detached exactly once, and within a detached chain each thread's nodes keep their order.
struct FNode {
  FNode* next;
  int producer;
  int seq;
};
struct alignas(kCacheLine) FSlot {
  SlotLock lock;
  FNode* head = nullptr;
  FNode** tail = &head;
};
constexpr std::size_t kFTail = offsetof(FSlot, tail);
constexpr std::size_t kFNext = offsetof(FNode, next);
std::atomic<FSlot*> g_fifo{nullptr};
constexpr int kHandlerNodes = 1 << 16;
FNode g_handler_nodes[kHandlerNodes];
std::atomic<int> g_handler_next{0};

void append_or_spin(FNode* n) {
  FSlot* base = get_slots(g_fifo);
  n->next = nullptr;
  while (!subtle::rseq_append<kFTail, kFNext>(base, sizeof(FSlot), n)) cpu_relax();
}

void fifo_handler(int) {
  const int i = g_handler_next.fetch_add(1, std::memory_order_relaxed);
  if (i >= kHandlerNodes) return;
  FNode* n = &g_handler_nodes[i];
  n->producer = -1;
  n->seq = i;
  FSlot* base = get_slots(g_fifo);
  n->next = nullptr;
  // A handler never spins on a lock its own thread cannot release; a locked slot is only held by
  // the remote side here, which releases it.
  while (!subtle::rseq_append<kFTail, kFNext>(base, sizeof(FSlot), n)) cpu_relax();
}

// Remote side: detaches slot `cpu`'s list; appends what it holds to `out`; returns false when
// the chain does not end at the tail (a stale link followed, or a cycle).
bool remote_detach(int cpu, std::vector<FNode*>* out, std::size_t limit) {
  FSlot* base = get_slots(g_fifo);
  FSlot& s = base[cpu];
  s.lock.lock();
  subtle::fence_remote(cpu);
  FNode** t = __atomic_load_n(&s.tail, __ATOMIC_RELAXED);
  FNode* first = nullptr;
  FNode* last = nullptr;
  if (t != &s.head) {
    first = __atomic_load_n(&s.head, __ATOMIC_RELAXED);
    last = reinterpret_cast<FNode*>(reinterpret_cast<char*>(t) - kFNext);
#if BULKRCU_TSAN
    __tsan_acquire(last);  // rseq_append released each node (TSan cannot see the asm stores)
#endif
    *t = nullptr;
  }
  __atomic_store_n(&s.head, nullptr, __ATOMIC_RELAXED);
  __atomic_store_n(&s.tail, &s.head, __ATOMIC_RELAXED);
  s.lock.unlock();
  std::size_t n = 0;
  FNode* prev = nullptr;
  for (FNode* h = first; h; h = h->next) {
#if BULKRCU_TSAN
    __tsan_acquire(h);
#endif
    if (++n > limit) return false;
    out->push_back(h);
    prev = h;
  }
  return prev == last;
}

// What an append that aborted between its two stores leaves behind, made by hand: a stale
// address in the tail's link (or in the head field of an empty list). The detach goes by the
// tail pointer and ignores both.
TEST(PercpuRseq, DetachIgnoresAnAbortedAppendsStaleLink) {
#if !BULKRCU_HAVE_RSEQ_ASM
  GTEST_SKIP() << "no rseq asm on this architecture";
#else
  if (mode() != PercpuMode::kRseq) GTEST_SKIP() << "rseq unavailable (fallback mode)";
  PinnedToOneCpu pinned;
  ASSERT_TRUE(pinned.ok);
  const int cpu = sched_getcpu();
  FSlot& s = get_slots(g_fifo)[cpu];
  static FNode a{}, b{}, stray{};
  std::vector<FNode*> got;
  s.head = &stray;  // empty list (tail == &head) with a stale head
  EXPECT_TRUE(remote_detach(cpu, &got, 8));
  EXPECT_TRUE(got.empty());
  append_or_spin(&a);
  append_or_spin(&b);
  *s.tail = &stray;  // the aborted append's store into b's link
  EXPECT_TRUE(remote_detach(cpu, &got, 8));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], &a);
  EXPECT_EQ(got[1], &b);
#endif
}

TEST(PercpuRseq, AppendUnderMigrationSignalsAndRemoteDetaches) {
#if !BULKRCU_HAVE_RSEQ_ASM
  GTEST_SKIP() << "no rseq asm on this architecture";
#else
  if (mode() != PercpuMode::kRseq) GTEST_SKIP() << "rseq unavailable (fallback mode)";
  cpu_set_t all;
  sched_getaffinity(0, sizeof all, &all);
  std::vector<int> cpus;
  for (int i = 0; i < CPU_SETSIZE; ++i)
    if (CPU_ISSET(i, &all)) cpus.push_back(i);
  struct sigaction sa {};
  sa.sa_handler = fifo_handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  struct sigaction old {};
  sigaction(SIGUSR2, &sa, &old);

  const int nthreads = static_cast<int>(cpus.size()) * 3;
  constexpr int kPer = 100000;
  std::vector<std::vector<FNode> > nodes(nthreads, std::vector<FNode>(kPer));
  std::atomic<int> running{nthreads}, started{0};
  std::vector<pthread_t> handles(nthreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < nthreads; ++t)
    threads.emplace_back([&, t] {
      handles[t] = pthread_self();
      started.fetch_add(1);
      std::mt19937 rng(t);
      for (int i = 0; i < kPer; ++i) {
        if (i % 500 == 0) {
          cpu_set_t set;
          CPU_ZERO(&set);
          CPU_SET(cpus[rng() % cpus.size()], &set);
          sched_setaffinity(0, sizeof set, &set);
        }
        FNode* n = &nodes[t][i];
        n->producer = t;
        n->seq = i;
        append_or_spin(n);
      }
      running.fetch_sub(1);
    });
  bulkrcu_test::wait_until([&] { return started.load() == nthreads; });
  const std::size_t total_max = static_cast<std::size_t>(nthreads) * kPer + kHandlerNodes;
  std::vector<FNode*> seen;
  seen.reserve(total_max);
  std::vector<int> last_seq(nthreads);
  long bad_chains = 0, out_of_order = 0;
  std::size_t detaches = 0;
  auto check = [&](std::size_t from) {
    std::fill(last_seq.begin(), last_seq.end(), -1);
    for (std::size_t k = from; k < seen.size(); ++k) {
      const FNode* n = seen[k];
      if (n->producer < 0) continue;
      if (n->seq <= last_seq[n->producer]) ++out_of_order;
      last_seq[n->producer] = n->seq;
    }
  };
  std::mt19937 rng(7);
  while (running.load() > 0) {
    const std::size_t from = seen.size();
    if (!remote_detach(static_cast<int>(rng() % nr_slots()), &seen, total_max)) ++bad_chains;
    check(from);
    ++detaches;
    pthread_kill(handles[rng() % nthreads], SIGUSR2);
  }
  for (auto& th : threads) th.join();
  sigaction(SIGUSR2, &old, nullptr);
  for (int cpu = 0; cpu < nr_slots(); ++cpu) {
    const std::size_t from = seen.size();
    if (!remote_detach(cpu, &seen, total_max)) ++bad_chains;
    check(from);
  }
  const int handler_nodes = std::min(g_handler_next.load(), kHandlerNodes);
  EXPECT_EQ(bad_chains, 0);
  EXPECT_EQ(out_of_order, 0);
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(nthreads) * kPer + static_cast<std::size_t>(handler_nodes));
  std::set<FNode*> unique(seen.begin(), seen.end());
  EXPECT_EQ(unique.size(), seen.size());
  EXPECT_GT(detaches, 0u);
  EXPECT_GT(handler_nodes, 0);
#endif
}

// The public header's sequences (bulkrcu__pool_pop, bulkrcu__pool_push: the inline fast paths
// of page_pool.h) on a private slot array laid out as the header says: the bound, the locked
// slot, the head word's count and the statistics, exactly, on a pinned thread.
struct alignas(64) HSlot {
  std::uint32_t lock;
  std::uintptr_t head;
  std::uint64_t trims;
  std::uint64_t pad;
  std::uint64_t allocs, frees, hits, misses;
};
static_assert(sizeof(HSlot) == std::size_t{1} << BULKRCU__PCP_SHIFT &&
              offsetof(HSlot, head) == BULKRCU__PCP_HEAD && offsetof(HSlot, trims) == BULKRCU__PCP_TRIMS &&
              offsetof(HSlot, allocs) == BULKRCU__PCP_ALLOCS &&
              offsetof(HSlot, frees) == BULKRCU__PCP_FREES && offsetof(HSlot, hits) == BULKRCU__PCP_HITS);

TEST(PercpuRseq, HeaderSequencesBoundCountAndAccount) {
#if !BULKRCU_HAVE_RSEQ_ASM || !defined(BULKRCU__HAVE_POOL_FAST)
  GTEST_SKIP();
#else
  if (mode() != PercpuMode::kRseq) GTEST_SKIP() << "rseq unavailable (fallback mode)";
  PinnedToOneCpu pinned;
  ASSERT_TRUE(pinned.ok);
  HSlot* base = static_cast<HSlot*>(alloc_slots(sizeof(HSlot)));
  HSlot& s = base[sched_getcpu()];
  constexpr unsigned long kHigh = 5;
  static Node nodes[kHigh + 1];
  for (unsigned long i = 0; i < kHigh; ++i) {
    ASSERT_EQ(bulkrcu__pool_push(base, &nodes[i], kHigh, BULKRCU__PCP_FREES), 0);
    EXPECT_EQ(s.head, word_of(&nodes[i], i + 1));
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(nodes[i].next), i ? word_of(&nodes[i - 1], i) : 0u);
  }
  EXPECT_EQ(s.frees, kHigh);
  EXPECT_EQ(bulkrcu__pool_push(base, &nodes[kHigh], kHigh, BULKRCU__PCP_FREES), 2)
      << "a list of `high` pages takes no more";
  EXPECT_EQ(s.head, word_of(&nodes[kHigh - 1], kHigh));
  s.lock = 1;
  EXPECT_EQ(bulkrcu__pool_push(base, &nodes[kHigh], kHigh, BULKRCU__PCP_FREES), 1);
  unsigned long left = 99;
  EXPECT_EQ(bulkrcu__pool_pop(base, BULKRCU__PCP_HITS, &left), reinterpret_cast<void*>(~std::uintptr_t{0}));
  s.lock = 0;
  EXPECT_EQ(s.frees, kHigh);
  EXPECT_EQ(s.head, word_of(&nodes[kHigh - 1], kHigh));
  for (unsigned long i = kHigh; i-- > 0;) {
    EXPECT_EQ(bulkrcu__pool_pop(base, (i & 1) ? BULKRCU__PCP_HITS : BULKRCU__PCP_ALLOCS, &left), &nodes[i]);
    EXPECT_EQ(left, i);
    EXPECT_EQ(s.head, i ? word_of(&nodes[i - 1], i) : 0u);
  }
  EXPECT_EQ(s.trims, 0u);
  EXPECT_EQ(bulkrcu__pool_pop(base, BULKRCU__PCP_HITS, &left), nullptr);
  EXPECT_EQ(s.hits, kHigh / 2);
  EXPECT_EQ(s.allocs, kHigh - kHigh / 2);
  EXPECT_EQ(s.misses, 0u);
#endif
}

}  // namespace
