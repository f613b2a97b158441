// bench/micro/gp_bench.cpp: the grace-period engine beside liburcu 0.13 memb (issue 2).
//
// Both libraries run in this one process (each registers membarrier(2) on its own):
//   1. read lock+unlock pair: bulkrcu inline and out-of-line, liburcu memb inline (its
//      _LGPL_SOURCE static read side) and out-of-line; also a nested pair (inside a held section).
//   2. synchronize latency, median and p99 of per-call latencies, with 0, 1, 2, 4 reader threads
//      spinning lock/unlock, and with 64 threads doing short sections (oversubscribed);
//      bulkrcu's synchronize_expedited too.
//   3. call + invocation: process CPU time (CLOCK_PROCESS_CPUTIME_ID, every thread) per callback
//      for bulkrcu_call + bulkrcu_barrier vs urcu_memb_call_rcu + urcu_memb_barrier; a trivial
//      callback and a free() callback.
//   4. 64 concurrent synchronize callers: grace periods used per round (bulkrcu stats), and the
//      round's wall time for both libraries.
//
// Run with --benchmark_repetitions=5 and read the median aggregates (docs/benchmarks-micro.md).
#define _LGPL_SOURCE
#include <urcu/urcu-memb.h>
// <urcu/urcu-memb.h> maps the generic liburcu names (rcu_read_lock, call_rcu, ...) to memb
// ones; bulkrcu is used through its bulkrcu_* names only, so the two do not collide.

#include <benchmark/benchmark.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "../clock.h"
#include "bulkrcu/rcu.h"
#include "bulkrcu/stats.h"

// liburcu's exported (out-of-line) read side. With _LGPL_SOURCE the names are object-like
// macros for the inline versions, so reach the library symbols through asm labels.
extern "C" void liburcu_read_lock_ool(void) __asm__("urcu_memb_read_lock");
extern "C" void liburcu_read_unlock_ool(void) __asm__("urcu_memb_read_unlock");

namespace {

// ---- the two libraries behind one shape ---------------------------------------------------
struct Bulk {
  static constexpr const char* kName = "bulkrcu";
  static void thread_online() {}  // readers need no registration
  static void thread_offline() {}
  static inline __attribute__((always_inline)) void lock() { bulkrcu_read_lock(); }
  static inline __attribute__((always_inline)) void unlock() { bulkrcu_read_unlock(); }
  static void synchronize() { bulkrcu_synchronize(); }
};

struct BulkExp : Bulk {
  static constexpr const char* kName = "bulkrcu_expedited";
  static void synchronize() { bulkrcu_synchronize_expedited(); }
};

struct Urcu {
  static constexpr const char* kName = "liburcu_memb";
  static void thread_online() { urcu_memb_register_thread(); }
  static void thread_offline() { urcu_memb_unregister_thread(); }
  static inline __attribute__((always_inline)) void lock() { urcu_memb_read_lock(); }
  static inline __attribute__((always_inline)) void unlock() { urcu_memb_read_unlock(); }
  static void synchronize() { urcu_memb_synchronize_rcu(); }
};

using bench::now_ns;
using bench::process_cpu_ns;

int online_cpus() { return static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)); }

// What spinning readers dereference inside their sections.
std::atomic<long> g_published{42};

// ---- 1. read lock+unlock pair -------------------------------------------------------------
// The loop body is the pair only; both libraries' lock and unlock contain a compiler barrier,
// so the compiler can neither merge nor drop iterations.
void BM_ReadPair_BulkInline(benchmark::State& state) {
  for (auto _ : state) {
    bulkrcu_read_lock();
    bulkrcu_read_unlock();
  }
}
void BM_ReadPair_BulkOutOfLine(benchmark::State& state) {
  for (auto _ : state) {
    (bulkrcu_read_lock)();
    (bulkrcu_read_unlock)();
  }
}
void BM_ReadPair_UrcuInline(benchmark::State& state) {
  for (auto _ : state) {
    urcu_memb_read_lock();
    urcu_memb_read_unlock();
  }
}
void BM_ReadPair_UrcuOutOfLine(benchmark::State& state) {
  for (auto _ : state) {
    liburcu_read_lock_ool();
    liburcu_read_unlock_ool();
  }
}
// Nested: the measured pair runs at depth 2, inside a section held across the whole loop (no
// grace period runs meanwhile: nothing in this process asks for one during these benchmarks).
void BM_ReadPairNested_BulkInline(benchmark::State& state) {
  bulkrcu_read_lock();
  for (auto _ : state) {
    bulkrcu_read_lock();
    bulkrcu_read_unlock();
  }
  bulkrcu_read_unlock();
}
void BM_ReadPairNested_BulkOutOfLine(benchmark::State& state) {
  bulkrcu_read_lock();
  for (auto _ : state) {
    (bulkrcu_read_lock)();
    (bulkrcu_read_unlock)();
  }
  bulkrcu_read_unlock();
}
void BM_ReadPairNested_UrcuInline(benchmark::State& state) {
  urcu_memb_read_lock();
  for (auto _ : state) {
    urcu_memb_read_lock();
    urcu_memb_read_unlock();
  }
  urcu_memb_read_unlock();
}

// ---- 2. synchronize latency with spinning readers ------------------------------------------
template <class Lib>
class SpinningReaders {
 public:
  explicit SpinningReaders(int n) {
    for (int i = 0; i < n; ++i) {
      threads_.emplace_back([this] {
        Lib::thread_online();
        started_.fetch_add(1, std::memory_order_release);
        while (!stop_.load(std::memory_order_relaxed)) {
          Lib::lock();
          benchmark::DoNotOptimize(g_published.load(std::memory_order_acquire));
          Lib::unlock();
        }
        Lib::thread_offline();
      });
    }
    while (started_.load(std::memory_order_acquire) != n) std::this_thread::yield();
  }
  ~SpinningReaders() {
    stop_.store(true, std::memory_order_relaxed);
    for (auto& t : threads_) t.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int> started_{0};
  std::vector<std::thread> threads_;
};

void report_latencies(benchmark::State& state, std::vector<std::uint64_t>& lat) {
  if (lat.empty()) return;
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double p) {
    size_t i = static_cast<size_t>(p * static_cast<double>(lat.size() - 1) + 0.5);
    return static_cast<double>(lat[i]) / 1000.0;
  };
  state.counters["p50_us"] = pct(0.50);
  state.counters["p99_us"] = pct(0.99);
  state.counters["max_us"] = static_cast<double>(lat.back()) / 1000.0;
  state.counters["samples"] = static_cast<double>(lat.size());
}

template <class Lib>
void BM_Synchronize(benchmark::State& state) {
  const int readers = static_cast<int>(state.range(0));
  std::vector<std::uint64_t> lat;
  lat.reserve(1 << 16);
  {
    SpinningReaders<Lib> spin(readers);
    for (auto _ : state) {
      std::uint64_t t0 = now_ns();
      Lib::synchronize();
      lat.push_back(now_ns() - t0);
    }
  }
  report_latencies(state, lat);
  std::string label = std::string(Lib::kName) + ", " + std::to_string(readers) + " spinning reader(s)";
  if (readers + 1 > online_cpus())
    label += "; " + std::to_string(readers) + " readers + the writer oversubscribe " +
             std::to_string(online_cpus()) + " CPUs";
  state.SetLabel(label);
}

// 64 threads (oversubscribing the CPUs) doing short sections with a little work outside them,
// yielding now and then as a thread with real work would be preempted.
template <class Lib>
void BM_SynchronizeShortSections(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  std::vector<std::uint64_t> lat;
  lat.reserve(1 << 16);
  {
    std::atomic<bool> stop{false};
    std::atomic<int> started{0};
    std::vector<std::thread> ts;
    for (int i = 0; i < n; ++i)
      ts.emplace_back([&] {
        Lib::thread_online();
        started.fetch_add(1);
        for (unsigned k = 0; !stop.load(std::memory_order_relaxed); ++k) {
          Lib::lock();
          benchmark::DoNotOptimize(g_published.load(std::memory_order_acquire));
          Lib::unlock();
          for (int j = 0; j < 64; ++j) benchmark::DoNotOptimize(j);
          if ((k & 1023) == 0) std::this_thread::yield();
        }
        Lib::thread_offline();
      });
    while (started.load() != n) std::this_thread::yield();
    for (auto _ : state) {
      std::uint64_t t0 = now_ns();
      Lib::synchronize();
      lat.push_back(now_ns() - t0);
    }
    stop = true;
    for (auto& t : ts) t.join();
  }
  report_latencies(state, lat);
  state.SetLabel(std::string(Lib::kName) + ", " + std::to_string(n) + " threads doing short sections on " +
                 std::to_string(online_cpus()) + " CPUs");
}

// ---- 3. call + invocation, CPU per callback -------------------------------------------------
struct Obj {
  bulkrcu_head bh;
  rcu_head uh;  // liburcu's (urcu/call-rcu.h)
  char payload[32];
};

std::atomic<std::uint64_t> g_invoked{0};

void bulk_count(bulkrcu_head*) { g_invoked.fetch_add(1, std::memory_order_relaxed); }
void bulk_free(bulkrcu_head* h) {
  g_invoked.fetch_add(1, std::memory_order_relaxed);
  free(reinterpret_cast<char*>(h) - offsetof(Obj, bh));
}
void urcu_count(rcu_head*) { g_invoked.fetch_add(1, std::memory_order_relaxed); }
void urcu_free(rcu_head* h) {
  g_invoked.fetch_add(1, std::memory_order_relaxed);
  free(reinterpret_cast<char*>(h) - offsetof(Obj, uh));
}

enum CallbackKind { kCount = 0, kFree = 1 };

struct BulkCall {
  static void call(Obj* o, CallbackKind k) { bulkrcu_call(&o->bh, k == kCount ? bulk_count : bulk_free); }
  static void barrier() { bulkrcu_barrier(); }
};
struct UrcuCall {
  static void call(Obj* o, CallbackKind k) {
    urcu_memb_call_rcu(&o->uh, k == kCount ? urcu_count : urcu_free);
  }
  static void barrier() { urcu_memb_barrier(); }
};

// One iteration: queue n callbacks from this thread, then wait with the library's barrier.
// Objects for kFree are malloc'ed before the timed part (their free() is inside it).
template <class Lib>
void BM_CallInvoke(benchmark::State& state) {
  const auto kind = static_cast<CallbackKind>(state.range(0));
  const size_t n = static_cast<size_t>(state.range(1));
  std::vector<Obj> reused(kind == kCount ? n : 0);
  std::vector<Obj*> objs(n);
  std::uint64_t cpu = 0, wall = 0, queue_wall = 0, total = 0;
  const std::uint64_t invoked0 = g_invoked.load(std::memory_order_relaxed);
  for (auto _ : state) {
    for (size_t i = 0; i < n; ++i)
      objs[i] = kind == kCount ? &reused[i] : static_cast<Obj*>(malloc(sizeof(Obj)));
    const std::uint64_t c0 = process_cpu_ns(), t0 = now_ns();
    for (size_t i = 0; i < n; ++i) Lib::call(objs[i], kind);
    const std::uint64_t t1 = now_ns();
    Lib::barrier();
    const std::uint64_t t2 = now_ns(), c1 = process_cpu_ns();
    cpu += c1 - c0;
    wall += t2 - t0;
    queue_wall += t1 - t0;
    total += n;
    state.SetIterationTime(static_cast<double>(t2 - t0) / 1e9);
  }
  if (g_invoked.load(std::memory_order_relaxed) - invoked0 != total) {
    state.SkipWithError("barrier returned before every callback ran");
    return;
  }
  const double cbs = static_cast<double>(total);
  state.counters["cpu_ns_per_cb"] = static_cast<double>(cpu) / cbs;
  state.counters["wall_ns_per_cb"] = static_cast<double>(wall) / cbs;
  state.counters["queue_ns_per_cb"] = static_cast<double>(queue_wall) / cbs;
  state.SetItemsProcessed(static_cast<int64_t>(total));
  state.SetLabel(kind == kCount ? "trivial callback (counter increment)" : "free() callback");
}

// ---- 4. 64 concurrent synchronize callers ---------------------------------------------------
// 64 threads live for the whole run; each round releases them together through a barrier, each
// calls synchronize once, and the round ends when all have returned.
//   held = 0: nothing holds the grace period open; on 2 CPUs the callers reach synchronize about
//             one at a time as the scheduler wakes them, so they rarely overlap.
//   held = 1: this thread holds a read-side section from before the round until every caller
//             has announced it is entering synchronize, plus 2 ms, so that all 64 callers wait
//             together: the case grace-period sharing is for. Round time then includes the 2 ms.
template <class Lib>
void BM_ConcurrentSynchronize(benchmark::State& state) {
  constexpr int kCallers = 64;
  const bool held = state.range(0) != 0;
  std::barrier sync_point(kCallers + 1);
  std::atomic<bool> stop{false};
  std::atomic<int> entered{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kCallers; ++i) {
    threads.emplace_back([&] {
      for (;;) {
        sync_point.arrive_and_wait();  // round start
        if (stop.load(std::memory_order_relaxed)) return;
        entered.fetch_add(1, std::memory_order_relaxed);
        Lib::synchronize();
        sync_point.arrive_and_wait();  // round end
      }
    });
  }
  std::uint64_t gp_total = 0, gp_max = 0, rounds = 0;
  for (auto _ : state) {
    bulkrcu_stats before, after;
    bulkrcu_get_stats(&before, sizeof before);
    entered.store(0, std::memory_order_relaxed);
    if (held) Lib::lock();
    sync_point.arrive_and_wait();
    if (held) {
      while (entered.load(std::memory_order_relaxed) != kCallers) std::this_thread::yield();
      timespec ts{0, 2000000};
      nanosleep(&ts, nullptr);
      Lib::unlock();
    }
    sync_point.arrive_and_wait();
    bulkrcu_get_stats(&after, sizeof after);
    const std::uint64_t gps = after.grace_periods - before.grace_periods;
    gp_total += gps;
    gp_max = std::max(gp_max, gps);
    ++rounds;
  }
  stop.store(true, std::memory_order_relaxed);
  sync_point.arrive_and_wait();
  for (auto& t : threads) t.join();
  // Only bulkrcu's grace periods are counted (liburcu exposes no count).
  if (std::string(Lib::kName) == "bulkrcu") {
    state.counters["gp_per_round"] = static_cast<double>(gp_total) / static_cast<double>(rounds);
    state.counters["gp_max"] = static_cast<double>(gp_max);
  }
  state.SetLabel(std::string(Lib::kName) + ", 64 callers per round" +
                 (held ? ", a reader holds the grace period until all 64 are waiting" : ", no reader"));
}

BENCHMARK(BM_ReadPair_BulkInline);
BENCHMARK(BM_ReadPair_BulkOutOfLine);
BENCHMARK(BM_ReadPair_UrcuInline);
BENCHMARK(BM_ReadPair_UrcuOutOfLine);
BENCHMARK(BM_ReadPairNested_BulkInline);
BENCHMARK(BM_ReadPairNested_BulkOutOfLine);
BENCHMARK(BM_ReadPairNested_UrcuInline);

BENCHMARK(BM_Synchronize<Bulk>)
    ->ArgName("readers")
    ->Arg(0)
    ->Arg(1)
    ->Arg(2)
    ->Arg(4)
    ->UseRealTime()
    ->MinTime(1.0);
BENCHMARK(BM_Synchronize<BulkExp>)
    ->ArgName("readers")
    ->Arg(0)
    ->Arg(1)
    ->Arg(2)
    ->Arg(4)
    ->UseRealTime()
    ->MinTime(1.0);
BENCHMARK(BM_Synchronize<Urcu>)
    ->ArgName("readers")
    ->Arg(0)
    ->Arg(1)
    ->Arg(2)
    ->Arg(4)
    ->UseRealTime()
    ->MinTime(1.0);
BENCHMARK(BM_SynchronizeShortSections<Bulk>)->ArgName("threads")->Arg(64)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_SynchronizeShortSections<BulkExp>)->ArgName("threads")->Arg(64)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_SynchronizeShortSections<Urcu>)->ArgName("threads")->Arg(64)->UseRealTime()->MinTime(1.0);

BENCHMARK(BM_CallInvoke<BulkCall>)
    ->ArgNames({"kind", "n"})
    ->Args({kCount, 10000})
    ->Args({kFree, 10000})
    ->UseManualTime();
BENCHMARK(BM_CallInvoke<UrcuCall>)
    ->ArgNames({"kind", "n"})
    ->Args({kCount, 10000})
    ->Args({kFree, 10000})
    ->UseManualTime();

BENCHMARK(BM_ConcurrentSynchronize<Bulk>)->ArgName("held")->DenseRange(0, 1)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_ConcurrentSynchronize<Urcu>)->ArgName("held")->DenseRange(0, 1)->UseRealTime()->MinTime(1.0);

}  // namespace

int main(int argc, char** argv) {
  // liburcu memb readers must be registered; the benchmark thread reads with both libraries.
  urcu_memb_register_thread();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  urcu_memb_unregister_thread();
  return 0;
}
