// Micro benchmarks of the page pool (Google Benchmark), against glibc malloc(page) and mmap.
//
//   build-X/bench/micro/pool_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only
//
// * Pair benchmarks: one allocation and one free per iteration, so the per-CPU list stays warm
//   (the pool's fast path against malloc's; mmap+munmap pays two system calls).
// * Burst benchmarks: 1024 allocations then 1024 frees, so the pool moves batches between the
//   lists and the zone (the slow paths) and malloc walks its bins.
// * BM_LocklessSteadyProducerConsumer: a producer takes block pages with the lockless call and
//   fills each with 507 pointers (one kvfree block); a consumer on the other thread frees them,
//   so the producer's list only gets pages from the refill worker. The hit rate is a counter.
#include <benchmark/benchmark.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include "bulkrcu/page_pool.h"
#include "bulkrcu/stats.h"
#include "percpu/percpu.h"

namespace {

const std::size_t kPage = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));

void warm_pool() {
  // Put a few pages on this CPU's list (alloc_page refills a batch on an empty list).
  void* p = bulkrcu_alloc_page();
  bulkrcu_free_page(p);
}

void BM_PoolLocklessPair(benchmark::State& state) {
  warm_pool();
  std::uint64_t misses = 0;
  for (auto _ : state) {
    void* p = bulkrcu_alloc_page_lockless();
    benchmark::DoNotOptimize(p);
    if (__builtin_expect(p == nullptr, 0)) {
      ++misses;
      p = bulkrcu_alloc_page();
    }
    bulkrcu_free_page(p);
  }
  state.counters["misses"] = static_cast<double>(misses);
}
BENCHMARK(BM_PoolLocklessPair);

// The same pair through the exported functions (what BULKRCU_NO_INLINE, TSan builds, function
// pointers and the library itself call): BM_PoolLocklessPair minus this is the calls' cost.
void BM_PoolLocklessPairExported(benchmark::State& state) {
  warm_pool();
  std::uint64_t misses = 0;
  for (auto _ : state) {
    void* p = (bulkrcu_alloc_page_lockless)();
    benchmark::DoNotOptimize(p);
    if (__builtin_expect(p == nullptr, 0)) {
      ++misses;
      p = (bulkrcu_alloc_page)();
    }
    (bulkrcu_free_page)(p);
  }
  state.counters["misses"] = static_cast<double>(misses);
}
BENCHMARK(BM_PoolLocklessPairExported);

// The floor the lockless pair is measured against (issue 12): a bare rseq pop and push of one
// node on a private per-CPU array (percpu.h's sequences, inlined, no bookkeeping at all).
void BM_RseqFloorPair(benchmark::State& state) {
  namespace d = bulkrcu::detail;
  if (d::mode() != d::PercpuMode::kRseq) {
    state.SkipWithError("rseq unavailable");
    return;
  }
  struct alignas(64) Slot {
    d::SlotLock lock;
    void* head;
  };
  struct Node {
    Node* next;
  };
  static Slot* slots = static_cast<Slot*>(d::alloc_slots(sizeof(Slot)));
  static Node nodes[1024];
  for (int i = 0; i < 4; ++i) d::subtle::rseq_push<offsetof(Slot, head), 0>(slots, sizeof(Slot), &nodes[i]);
  for (auto _ : state) {
    void* n = d::subtle::rseq_pop<offsetof(Slot, head), 0>(slots, sizeof(Slot));
    benchmark::DoNotOptimize(n);
    if (__builtin_expect(n == nullptr || n == d::subtle::kSlotLocked, 0)) n = &nodes[1023];
    d::subtle::rseq_push<offsetof(Slot, head), 0>(slots, sizeof(Slot), n);
  }
}
BENCHMARK(BM_RseqFloorPair);

// The same floor behind two out-of-line calls, as an exported function must be called.
struct alignas(64) FloorSlot {
  bulkrcu::detail::SlotLock lock;
  void* head;
};
FloorSlot* g_floor_slots;
__attribute__((noinline)) void* floor_pop() {
  return bulkrcu::detail::subtle::rseq_pop<offsetof(FloorSlot, head), 0>(g_floor_slots, sizeof(FloorSlot));
}
__attribute__((noinline)) void floor_push(void* n) {
  bulkrcu::detail::subtle::rseq_push<offsetof(FloorSlot, head), 0>(g_floor_slots, sizeof(FloorSlot), n);
}
void BM_RseqFloorPairCalls(benchmark::State& state) {
  namespace d = bulkrcu::detail;
  if (d::mode() != d::PercpuMode::kRseq) {
    state.SkipWithError("rseq unavailable");
    return;
  }
  static void* nodes[1024];
  if (!g_floor_slots) g_floor_slots = static_cast<FloorSlot*>(d::alloc_slots(sizeof(FloorSlot)));
  for (int i = 0; i < 4; ++i) floor_push(&nodes[i]);
  for (auto _ : state) {
    void* n = floor_pop();
    benchmark::DoNotOptimize(n);
    if (__builtin_expect(n == nullptr || n == d::subtle::kSlotLocked, 0)) n = &nodes[1023];
    floor_push(n);
  }
}
BENCHMARK(BM_RseqFloorPairCalls);

void BM_PoolPair(benchmark::State& state) {
  warm_pool();
  for (auto _ : state) {
    void* p = bulkrcu_alloc_page();
    benchmark::DoNotOptimize(p);
    bulkrcu_free_page(p);
  }
}
BENCHMARK(BM_PoolPair)->Threads(1)->Threads(4)->UseRealTime();

void BM_MallocPagePair(benchmark::State& state) {
  for (auto _ : state) {
    void* p = malloc(kPage);
    benchmark::DoNotOptimize(p);
    free(p);
  }
}
BENCHMARK(BM_MallocPagePair)->Threads(1)->Threads(4)->UseRealTime();

void BM_MmapPagePair(benchmark::State& state) {
  for (auto _ : state) {
    void* p = mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    benchmark::DoNotOptimize(p);
    munmap(p, kPage);
  }
}
BENCHMARK(BM_MmapPagePair)->Threads(1)->Threads(4)->UseRealTime();

constexpr int kBurst = 1024;

void BM_PoolBurst(benchmark::State& state) {
  std::vector<void*> v(kBurst);
  for (auto _ : state) {
    for (int i = 0; i < kBurst; ++i) v[i] = bulkrcu_alloc_page();
    benchmark::DoNotOptimize(v.data());
    for (int i = 0; i < kBurst; ++i) bulkrcu_free_page(v[i]);
  }
  state.SetItemsProcessed(state.iterations() * kBurst);
}
BENCHMARK(BM_PoolBurst)->Threads(1)->Threads(4)->UseRealTime();

void BM_MallocPageBurst(benchmark::State& state) {
  std::vector<void*> v(kBurst);
  for (auto _ : state) {
    for (int i = 0; i < kBurst; ++i) v[i] = malloc(kPage);
    benchmark::DoNotOptimize(v.data());
    for (int i = 0; i < kBurst; ++i) free(v[i]);
  }
  state.SetItemsProcessed(state.iterations() * kBurst);
}
BENCHMARK(BM_MallocPageBurst)->Threads(1)->Threads(4)->UseRealTime();

// A single-producer single-consumer ring of pages.
struct Ring {
  static constexpr std::size_t kSize = 4096;
  void* slots[kSize];
  alignas(64) std::atomic<std::size_t> head{0};  // producer
  alignas(64) std::atomic<std::size_t> tail{0};  // consumer
  bool push(void* p) {
    std::size_t h = head.load(std::memory_order_relaxed);
    if (h - tail.load(std::memory_order_acquire) == kSize) return false;
    slots[h % kSize] = p;
    head.store(h + 1, std::memory_order_release);
    return true;
  }
  void* pop() {
    std::size_t t = tail.load(std::memory_order_relaxed);
    if (t == head.load(std::memory_order_acquire)) return nullptr;
    void* p = slots[t % kSize];
    tail.store(t + 1, std::memory_order_release);
    return p;
  }
};

void BM_LocklessSteadyProducerConsumer(benchmark::State& state) {
  const std::size_t pointers = (kPage - 16) / sizeof(void*);  // one kvfree block per page
  auto* ring = new Ring;
  std::atomic<bool> stop{false};
  std::thread consumer([&] {
    for (;;) {
      void* p = ring->pop();
      if (p) {
        bulkrcu_free_page(p);
        continue;
      }
      if (stop.load(std::memory_order_acquire) && !(p = ring->pop())) break;
      if (p) bulkrcu_free_page(p);
      sched_yield();
    }
  });
  warm_pool();
  std::uint64_t hits = 0, misses = 0;
  for (auto _ : state) {
    void* p = bulkrcu_alloc_page_lockless();
    if (p) {
      ++hits;
    } else {
      ++misses;
      p = bulkrcu_alloc_page();  // what kvfree's in-place fallback does when it may block
    }
    void** slots = static_cast<void**>(p);
    for (std::size_t i = 0; i < pointers; ++i) {  // the retires that fill one block
      void* obj = reinterpret_cast<void*>(i * 64);
      benchmark::DoNotOptimize(obj);
      slots[i] = obj;
    }
    while (!ring->push(p)) sched_yield();
  }
  stop.store(true, std::memory_order_release);
  consumer.join();
  delete ring;
  state.counters["hit_rate_pct"] = 100.0 * static_cast<double>(hits) / static_cast<double>(hits + misses);
  state.counters["misses"] = static_cast<double>(misses);
  bulkrcu_stats s;
  bulkrcu_get_stats(&s, sizeof s);
  state.counters["worker_refills"] = static_cast<double>(s.pool_worker_refills);
}
BENCHMARK(BM_LocklessSteadyProducerConsumer)->Iterations(200000)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
