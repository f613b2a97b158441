// Pass cost against the number of possible CPUs (issue 11 item 4).
//
// Every operation here walks all possible CPUs' slots. This program links the test build of
// the library (bulkrcu_shrunk), which honours BULKRCU_TEST_POSSIBLE_CPUS=N: every per-CPU array
// then has N slots, N - 2 of which belong to CPUs that never run anything, as on a large
// machine where most CPUs run other processes. bench/micro/pass_scaling.sh runs it for several
// N and prints one table.
//
//   BM_KvfreeMonitorPass  one kvfree monitor pass (kvfree::monitor_pass, as the runtime thread
//                         or a late retiring thread makes it) after 64 kvfree retires
//   BM_PoolDrain          bulkrcu_page_pool_drain(): lock every CPU list (256 at a time),
//                         one broadcast fence per group, move the pages to the zone
//   BM_CallBarrier        one bulkrcu_call + bulkrcu_barrier: a callback sweep of every CPU
//                         list plus the grace period and the invocation
//   BM_Stats              bulkrcu_get_stats (sums every CPU's counters)
//   BM_FenceAll           the remote fence the passes use: one membarrier(..._RSEQ) broadcast
//   BM_FencePerCpu        the design it replaced: one aimed membarrier per possible CPU (aimed
//                         at the machine's real CPUs in turn, since the others do not exist)
//
// Single thread; the runtime thread runs beside it. The constants are the shrunk ones of the
// test build (smaller blocks and caches), which changes the per-slot work, not its count.
#include <benchmark/benchmark.h>
#include <stdlib.h>
#include <unistd.h>

#include "bulkrcu/page_pool.h"
#include "bulkrcu/rcu.h"
#include "kvfree/kvfree.h"
#include "percpu/percpu.h"

namespace {

namespace d = bulkrcu::detail;

void set_cpus(benchmark::State& state) { state.counters["cpus"] = d::nr_slots(); }

void BM_KvfreeMonitorPass(benchmark::State& state) {
  for (auto _ : state) {
    state.PauseTiming();
    for (int i = 0; i < 64; ++i) bulkrcu_kvfree(malloc(24));
    state.ResumeTiming();
    d::kvfree::monitor_pass();
  }
  bulkrcu_kvfree_barrier();
  set_cpus(state);
}

void BM_PoolDrain(benchmark::State& state) {
  for (auto _ : state) {
    state.PauseTiming();
    void* p = bulkrcu_alloc_page();
    if (p) bulkrcu_free_page(p);  // at least this CPU's list holds a page
    state.ResumeTiming();
    bulkrcu_page_pool_drain();
  }
  set_cpus(state);
}

void noop_cb(bulkrcu_head*) {}

void BM_CallBarrier(benchmark::State& state) {
  bulkrcu_head h;
  for (auto _ : state) {
    bulkrcu_call(&h, noop_cb);
    bulkrcu_barrier();
  }
  set_cpus(state);
}

void BM_Stats(benchmark::State& state) {
  bulkrcu_stats s;
  for (auto _ : state) {
    bulkrcu_get_stats(&s, sizeof s);
    benchmark::DoNotOptimize(s);
  }
  set_cpus(state);
}

void BM_FenceAll(benchmark::State& state) {
  if (d::mode() != d::PercpuMode::kRseq) state.SkipWithError("not in the rseq mode: no fence to measure");
  for (auto _ : state) d::subtle::fence_remote_all();
  set_cpus(state);
}

void BM_FencePerCpu(benchmark::State& state) {
  if (d::mode() != d::PercpuMode::kRseq) state.SkipWithError("not in the rseq mode: no fence to measure");
  const int real = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  const int n = d::nr_slots();
  for (auto _ : state)
    for (int cpu = 0; cpu < n; ++cpu) d::subtle::fence_remote(cpu % real);
  set_cpus(state);
}

BENCHMARK(BM_KvfreeMonitorPass)->UseRealTime();
BENCHMARK(BM_PoolDrain)->UseRealTime();
BENCHMARK(BM_CallBarrier)->UseRealTime();
BENCHMARK(BM_Stats);
BENCHMARK(BM_FenceAll)->UseRealTime();
BENCHMARK(BM_FencePerCpu)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
