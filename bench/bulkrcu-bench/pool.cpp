// bulkrcu-bench: the `pool` workload (issue 3's page pool against the allocators a user
// would otherwise take pages from). Compiled in when src/pool/ defines the allocation calls
// (BENCH_HAVE_POOL, set by CMakeLists.txt).
//
// Each thread allocates `batch` pages, writes one word into each (so that mmap pays its
// page fault, as a user of the page would), and frees them, until it has done `pairs`
// allocations. CPU per page: process CPU time / pages. pool_lockless takes a page with
// bulkrcu_alloc_page_lockless and, when that returns NULL, from bulkrcu_alloc_page (and
// counts the miss): the way the kvfree path uses it.
#include "pool.h"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <thread>
#include <vector>

#if BENCH_HAVE_POOL
#include "bulkrcu/page_pool.h"
#endif

namespace bench {

#if BENCH_HAVE_POOL
bool pool_available() { return true; }
#else
bool pool_available() { return false; }
#endif

const std::vector<std::string>& pool_impl_names() {
  static const std::vector<std::string> names = {"malloc", "mmap", "pool_locked", "pool_lockless"};
  return names;
}

#if BENCH_HAVE_POOL
namespace {

constexpr std::size_t kPage = 4096;

struct Alloc {
  void* (*alloc)(std::uint64_t* misses);
  void (*free)(void*);
};

void* malloc_page(std::uint64_t*) { return std::malloc(kPage); }
void free_malloc_page(void* p) { std::free(p); }
void* mmap_page(std::uint64_t*) {
  void* p = mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}
void munmap_page(void* p) { munmap(p, kPage); }
void* pool_page(std::uint64_t*) { return bulkrcu_alloc_page(); }
void* pool_page_lockless(std::uint64_t* misses) {
  void* p = bulkrcu_alloc_page_lockless();
  if (__builtin_expect(p == nullptr, 0)) {
    ++*misses;
    p = bulkrcu_alloc_page();
  }
  return p;
}
void free_pool_page(void* p) { bulkrcu_free_page(p); }

Alloc find_alloc(const std::string& name) {
  if (name == "malloc") return {malloc_page, free_malloc_page};
  if (name == "mmap") return {mmap_page, munmap_page};
  if (name == "pool_locked") return {pool_page, free_pool_page};
  if (name == "pool_lockless") return {pool_page_lockless, free_pool_page};
  fprintf(stderr, "bulkrcu-bench: pool: unknown allocator '%s'\n", name.c_str());
  std::exit(2);
}

}  // namespace

void pool_child(const Params& prm, ResultWriter& out) {
  const Alloc a = find_alloc(prm.str("impl"));
  const int nthreads = static_cast<int>(prm.num("threads"));
  const long batch = prm.num("batch");
  const std::uint64_t dur_ns = static_cast<std::uint64_t>(prm.real("dur") * 1e9);
  if (bulkrcu_page_size() != kPage) {
    fprintf(stderr, "bulkrcu-bench: pool: page size %zu, expected %zu\n", bulkrcu_page_size(), kPage);
    std::exit(1);
  }
  std::atomic<bool> go{false};
  std::atomic<int> ready{0};
  std::atomic<std::uint64_t> misses{0}, failures{0}, total{0};
  std::atomic<std::uint64_t> t0{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < nthreads; ++t) {
    threads.emplace_back([&] {
      std::vector<void*> pages(static_cast<std::size_t>(batch));
      std::uint64_t miss = 0, fail = 0;
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      // Bounded by time, not by a count: mmap costs 100x what the pool does. The clock is read
      // every 256 pages (or every batch, if larger).
      const std::uint64_t start = t0.load(std::memory_order_relaxed);
      const long per_check = std::max(batch, 256L);
      long done = 0;
      for (;; done += batch) {
        if (done % per_check == 0 && now_ns() - start >= dur_ns) break;
        for (long i = 0; i < batch; ++i) {
          void* p = a.alloc(&miss);
          if (!p) {
            ++fail;
            pages[static_cast<std::size_t>(i)] = nullptr;
            continue;
          }
          *static_cast<volatile long*>(p) = i;
          pages[static_cast<std::size_t>(i)] = p;
        }
        for (long i = 0; i < batch; ++i)
          if (pages[static_cast<std::size_t>(i)]) a.free(pages[static_cast<std::size_t>(i)]);
      }
      misses.fetch_add(miss);
      failures.fetch_add(fail);
      total.fetch_add(static_cast<std::uint64_t>(done));
    });
  }
  while (ready.load() < nthreads) std::this_thread::yield();
  const std::uint64_t cpu0 = process_cpu_ns();
  t0.store(now_ns(), std::memory_order_relaxed);
  go.store(true, std::memory_order_release);
  for (auto& th : threads) th.join();
  const std::uint64_t t1 = now_ns(), cpu1 = process_cpu_ns();
  if (failures.load()) {
    fprintf(stderr, "bulkrcu-bench: pool: %llu allocations failed\n",
            static_cast<unsigned long long>(failures.load()));
    std::exit(1);
  }
  const double pages = static_cast<double>(total.load());
  out.info("allocator", malloc_provider());
  out.metric("pages", pages);
  out.metric("cpu_ns_per_page", static_cast<double>(cpu1 - cpu0) / pages);
  out.metric("wall_ns_per_page", static_cast<double>(t1 - t0.load()) / pages * nthreads);
  out.metric("lockless_miss_pct", 100.0 * static_cast<double>(misses.load()) / pages);
  out.metric("peak_rss_mb", peak_rss_bytes() / 1048576.0);
}
#else
void pool_child(const Params&, ResultWriter&) {
  fprintf(stderr, "bulkrcu-bench: pool: this build has no page pool\n");
  std::exit(1);
}
#endif

}  // namespace bench
