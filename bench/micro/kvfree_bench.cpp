// kvfree micro benchmarks (issue 4: "retire fast path: median <= 3 ns single-threaded").
//
//   BM_NowaitFlood      bulkrcu_defer_nowait(noop, p) flat out: never helps and never waits, so
//                       once the lockless page sources run dry it refuses (counter
//                       refused_frac); the time mixes stores and refusals
//   BM_RetireStore      the retire fast path alone: bulkrcu_defer_nowait(noop, p) into a block
//                       with room (4096 stores per round, then, untimed, a barrier empties the
//                       blocks; one store in 504 installs a block)
//   BM_RetireFastPath   the store into a block with room, nothing else: per iteration, a barrier
//                       and one store install a block (untimed), then 400 stores are timed
//                       (manual time per round of 400; counter ns_per_store)
//   BM_DeferNoop        bulkrcu_defer(noop, p): the store plus this thread's share of reclaim
//                       (7 claimed pointers per 7 stores, a no-op deleter)
//   BM_MallocKvfree     malloc(24) + bulkrcu_kvfree: the retiring side of kfree-scale, with the
//                       frees its helping does
//   BM_MallocFree       malloc(24) + free: the floor
//   BM_UrcuDeferMalloc  malloc(24) + liburcu defer_rcu(free): the headless baseline
//
// Single thread; the runtime thread runs beside it (grace periods, hand-over). Report medians
// of repetitions: --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <chrono>

#define _LGPL_SOURCE
#include <urcu/urcu-memb.h>

#include "bulkrcu/rcu.h"

namespace {

char g_dummy[64];
void noop(void*) {}

void BM_NowaitFlood(benchmark::State& state) {
  std::size_t i = 0;
  std::size_t refused = 0;
  for (auto _ : state) {
    if (!bulkrcu_defer_nowait(noop, g_dummy + (i++ & 63))) ++refused;
  }
  state.counters["refused_frac"] = static_cast<double>(refused) / static_cast<double>(i ? i : 1);
  bulkrcu_kvfree_barrier();
}
BENCHMARK(BM_NowaitFlood);

void BM_RetireStore(benchmark::State& state) {
  constexpr int kPerRound = 4096;
  std::size_t refused = 0;
  bulkrcu_kvfree_barrier();
  for (auto _ : state) {
    for (int i = 0; i < kPerRound; ++i)
      if (!bulkrcu_defer_nowait(noop, g_dummy + (i & 63))) ++refused;
    state.PauseTiming();
    bulkrcu_kvfree_barrier();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * kPerRound);
  state.counters["ns_per_store"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * kPerRound,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["refused"] = static_cast<double>(refused);
}
BENCHMARK(BM_RetireStore);

// The fast path alone: a block with room (installed by an untimed first store after the
// barrier), then 400 timed stores (manual time: steady_clock around them, not PauseTiming).
void BM_RetireFastPath(benchmark::State& state) {
  constexpr int kPerRound = 400;  // < 504: every timed store finds room
  std::size_t refused = 0;
  for (auto _ : state) {
    bulkrcu_kvfree_barrier();
    if (!bulkrcu_defer_nowait(noop, g_dummy)) ++refused;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < kPerRound; ++i)
      if (!bulkrcu_defer_nowait(noop, g_dummy + (i & 63))) ++refused;
    const auto t1 = std::chrono::steady_clock::now();
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * kPerRound);
  state.counters["ns_per_store"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * kPerRound,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["refused"] = static_cast<double>(refused);
}
// A fixed count: every iteration runs an untimed barrier (milliseconds), which manual time
// does not see when it sizes the run.
BENCHMARK(BM_RetireFastPath)->UseManualTime()->Iterations(3000);

void BM_DeferNoop(benchmark::State& state) {
  std::size_t i = 0;
  for (auto _ : state) bulkrcu_defer(noop, g_dummy + (i++ & 63));
  bulkrcu_kvfree_barrier();
}
BENCHMARK(BM_DeferNoop);

void BM_MallocKvfree(benchmark::State& state) {
  for (auto _ : state) {
    void* p = malloc(24);
    benchmark::DoNotOptimize(p);
    bulkrcu_kvfree(p);
  }
  bulkrcu_kvfree_barrier();
}
BENCHMARK(BM_MallocKvfree);

void BM_MallocFree(benchmark::State& state) {
  for (auto _ : state) {
    void* p = malloc(24);
    benchmark::DoNotOptimize(p);
    free(p);
  }
}
BENCHMARK(BM_MallocFree);

void BM_UrcuDeferMalloc(benchmark::State& state) {
  // Registered for this run only: liburcu asserts on a second registration of a thread's defer
  // queue, and, at exit, when a thread is still registered (the benchmark aborted at exit).
  urcu_memb_register_thread();
  urcu_memb_defer_register_thread();
  for (auto _ : state) {
    void* p = malloc(24);
    benchmark::DoNotOptimize(p);
    urcu_memb_defer_rcu(free, p);
  }
  urcu_memb_defer_barrier_thread();
  urcu_memb_defer_unregister_thread();
  urcu_memb_unregister_thread();
}
BENCHMARK(BM_UrcuDeferMalloc);

}  // namespace

BENCHMARK_MAIN();
