// Object cache micro benchmarks (issue 13). Every benchmark reports cpu_ns: the process's CPU
// time per object (all threads: the runtime thread's grace periods included), next to the
// benchmark's own per-thread figures.
//
//   BM_MallocFree           malloc(24) + free: the floor
//   BM_MallocKvfree         malloc(24) + bulkrcu_kvfree: the `kvfree` row of kfree-scale
//   BM_CacheFreeRcu         bulkrcu_cache_alloc (24 bytes) + bulkrcu_cache_free_rcu: kfree-scale
//                           from a cache (the cache barrier after the run, timed)
//   BM_CacheFreeRcuThreads  the same on 4 threads (2 CPUs: oversubscribed)
//   BM_CacheAllocFree       bulkrcu_cache_alloc + bulkrcu_cache_free (no grace period)
//   BM_TypesafeAllocFree    the same on a typesafe-by-rcu cache (the pair the issue measures)
//   BM_KvfreeRoutingCheck   cache::owns() of a malloc pointer: what kvfree's free() channel now
//                           pays per pointer to route cache objects
//   BM_ReturnToOs           peak RSS of 2M retired 24-byte objects, then barrier + shrink +
//                           pool shrink: counter returned_frac (the issue asks >= 0.9)
//
// Report medians: --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <vector>

#include "../clock.h"
#include "bulkrcu/cache.h"
#include "bulkrcu/page_pool.h"
#include "bulkrcu/rcu.h"
#include "cache/cache.h"

namespace {

struct CpuCounter {
  std::uint64_t t0 = bench::process_cpu_ns();
  void report(benchmark::State& state, double objects_per_iteration = 1) {
    // Process CPU over all threads' objects (each thread's state counts only its own).
    const double n = static_cast<double>(state.iterations()) * objects_per_iteration * state.threads();
    state.counters["cpu_ns"] = static_cast<double>(bench::process_cpu_ns() - t0) / (n > 0 ? n : 1);
  }
};

void BM_MallocFree(benchmark::State& state) {
  CpuCounter cpu;
  for (auto _ : state) {
    void* p = malloc(24);
    benchmark::DoNotOptimize(p);
    *static_cast<volatile char*>(p) = 1;
    free(p);
  }
  cpu.report(state);
}
BENCHMARK(BM_MallocFree);

void BM_MallocKvfree(benchmark::State& state) {
  CpuCounter cpu;
  for (auto _ : state) {
    void* p = malloc(24);
    *static_cast<volatile char*>(p) = 1;
    bulkrcu_kvfree(p);
  }
  bulkrcu_kvfree_barrier();
  cpu.report(state);
}
BENCHMARK(BM_MallocKvfree);

bulkrcu_cache* cache24() {
  static bulkrcu_cache* c = bulkrcu_cache_create("bench24", 24, 0, 0);
  return c;
}
bulkrcu_cache* typesafe24() {
  static bulkrcu_cache* c = bulkrcu_cache_create("bench24-ts", 24, 0, BULKRCU_CACHE_TYPESAFE_BY_RCU);
  return c;
}

// Where the allocation arrays came from, per 1000 arrays the run took: reused (retired arrays
// whose grace period elapsed, no object touched), filled from the slabs (none was ready), and
// ready arrays the depot's bound sent back to the slabs (objects touched).
void depot_counters(benchmark::State& state, const bulkrcu::detail::cache::Info& a,
                    const bulkrcu::detail::cache::Info& b) {
  const double took = static_cast<double>((b.reused - a.reused) + (b.filled - a.filled));
  const double per = took > 0 ? 1000.0 / took : 0;
  state.counters["reused_pm"] = static_cast<double>(b.reused - a.reused) * per;
  state.counters["filled_pm"] = static_cast<double>(b.filled - a.filled) * per;
  state.counters["trimmed_pm"] = static_cast<double>(b.trimmed - a.trimmed) * per;
  state.counters["driven_pm"] = static_cast<double>(b.driven - a.driven) * per;
}

void BM_CacheFreeRcu(benchmark::State& state) {
  bulkrcu_cache* c = cache24();
  const auto info0 = bulkrcu::detail::cache::info(c);
  CpuCounter cpu;
  for (auto _ : state) {
    void* p = bulkrcu_cache_alloc(c);
    *static_cast<volatile char*>(p) = 1;
    bulkrcu_cache_free_rcu(c, p);
  }
  if (state.thread_index() == 0) {
    bulkrcu_cache_barrier(c);
    cpu.report(state);
    depot_counters(state, info0, bulkrcu::detail::cache::info(c));
  }
}
BENCHMARK(BM_CacheFreeRcu);
BENCHMARK(BM_CacheFreeRcu)->Name("BM_CacheFreeRcuThreads")->Threads(4)->UseRealTime();

void BM_CacheAllocFree(benchmark::State& state) {
  bulkrcu_cache* c = cache24();
  CpuCounter cpu;
  for (auto _ : state) {
    void* p = bulkrcu_cache_alloc(c);
    *static_cast<volatile char*>(p) = 1;
    bulkrcu_cache_free(c, p);
  }
  cpu.report(state);
}
BENCHMARK(BM_CacheAllocFree);

void BM_TypesafeAllocFree(benchmark::State& state) {
  bulkrcu_cache* c = typesafe24();
  CpuCounter cpu;
  for (auto _ : state) {
    void* p = bulkrcu_cache_alloc(c);
    *static_cast<volatile char*>(p) = 1;
    bulkrcu_cache_free(c, p);
  }
  cpu.report(state);
}
BENCHMARK(BM_TypesafeAllocFree);

void BM_KvfreeRoutingCheck(benchmark::State& state) {
  std::vector<void*> ptrs;
  for (int i = 0; i < 1024; ++i) ptrs.push_back(malloc(24));
  std::size_t i = 0, owned = 0;
  for (auto _ : state) owned += bulkrcu::detail::cache::owns(ptrs[i++ & 1023]);
  benchmark::DoNotOptimize(owned);
  for (void* p : ptrs) free(p);
}
BENCHMARK(BM_KvfreeRoutingCheck);

double rss_mb() {
  long pages = 0, resident = 0;
  FILE* f = fopen("/proc/self/statm", "r");
  if (f) {
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    fclose(f);
  }
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / 1048576.0;
}

void BM_ReturnToOs(benchmark::State& state) {
  for (auto _ : state) {
    bulkrcu_cache* c = bulkrcu_cache_create("rss24", 24, 0, 0);
    std::vector<void*> v(2000000);  // before the baseline: only the cache's memory counts
    const double base = rss_mb();
    for (auto& p : v) {
      p = bulkrcu_cache_alloc(c);
      *static_cast<volatile char*>(p) = 1;
    }
    for (void* p : v) bulkrcu_cache_free_rcu(c, p);
    const double peak = rss_mb();
    bulkrcu_cache_barrier(c);
    bulkrcu_cache_shrink(c);
    bulkrcu_page_pool_shrink();
    const double after = rss_mb();
    state.counters["cache_peak_mb"] = peak - base;
    state.counters["after_mb"] = after - base;
    state.counters["returned_frac"] = (peak - after) / (peak - base);
    bulkrcu_cache_destroy(c);
  }
}
BENCHMARK(BM_ReturnToOs)->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
