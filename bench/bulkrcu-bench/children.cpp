// bulkrcu-bench: the child side of every retire workload, as templates over an
// implementation (impls.h). Each function runs one case in a fresh process and writes its
// metrics with a ResultWriter; the parent repeats and aggregates.
#include <pthread.h>
#include <sys/prctl.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "impls.h"
#include "workloads.h"

namespace bench {

FreedSlot* claim_freed_slot() {
  int i = g_freed_next.fetch_add(1, std::memory_order_relaxed);
  if (i >= kMaxThreads) {
    fprintf(stderr, "bulkrcu-bench: more than %d threads freed objects\n", kMaxThreads);
    std::abort();
  }
  t_freed = &g_freed[i];
  return t_freed;
}

std::uint64_t total_freed() {
  int n = std::min(g_freed_next.load(std::memory_order_acquire), kMaxThreads);
  std::uint64_t s = 0;
  for (int i = 0; i < n; ++i) s += g_freed[i].n.load(std::memory_order_relaxed);
  return s;
}

namespace {

std::uint64_t thread_cpu_ns() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

void sleep_for_ns(std::uint64_t ns) {
  timespec ts{static_cast<time_t>(ns / 1000000000u), static_cast<long>(ns % 1000000000u)};
  nanosleep(&ts, nullptr);
}

template <Impl I>
std::uint64_t grace_periods() {
  if constexpr (I::kBulkrcu) return bulkrcu_grace_periods();
  return 0;
}

// Pending objects, or false when the implementation cannot tell.
template <Impl I>
bool pending(std::uint64_t retired, std::uint64_t* out) {
  if constexpr (!I::kDefers) {
    *out = 0;
    return true;
  } else if constexpr (I::kCountsFreed) {
    std::uint64_t f = total_freed();
    *out = retired > f ? retired - f : 0;
    return true;
#if BENCH_HAVE_KVFREE
  } else if constexpr (requires { I::kStatsPending; }) {
    (void)retired;
    *out = kvfree_pending_from_stats();
    return true;
#endif
  } else if constexpr (requires { I::kCacheStatsPending; }) {
    (void)retired;
    bulkrcu_stats s;
    bulkrcu_get_stats(&s, sizeof s);
    *out = s.cache_pending_objects;
    return true;
  } else {
    return false;
  }
}

template <Impl I>
void common_metrics(ResultWriter& out) {
  out.metric("obj_bytes", static_cast<double>(I::template size<Small>()));
  out.info("allocator", malloc_provider());
}

// A reader that spins lock / load / unlock until told to stop.
template <Impl I>
struct Spinner {
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> shared{1};
  std::uint64_t sections = 0, cpu_ns = 0;
  std::thread th;
  void start() {
    th = std::thread([this] {
      I::thread_online();
      std::uint64_t n = 0, sink = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        I::read_lock();
        sink += shared.load(std::memory_order_relaxed);
        I::read_unlock();
        ++n;
      }
      I::thread_offline();
      sections = n + (sink == 42);  // keep sink alive
      cpu_ns = thread_cpu_ns();
    });
  }
  void finish() {
    stop.store(true, std::memory_order_relaxed);
    th.join();
  }
};

// ---------------------------------------------------------------- kfree-scale
template <Impl I>
void kfree_scale(const Params& prm, ResultWriter& out) {
  const int nthreads = static_cast<int>(prm.num("threads"));
  const long loops = prm.num("loops");
  const long per_loop = prm.num("per_loop");
  const std::uint64_t max_ns = static_cast<std::uint64_t>(prm.real("max_s") * 1e9);
  I::thread_online();
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::atomic<std::uint64_t> done_objs{0};
  std::uint64_t t0 = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < nthreads; ++t) {
    threads.emplace_back([&] {
      I::thread_online();
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      long l = 0;
      for (; l < loops; ++l) {
        for (long j = 0; j < per_loop; ++j) {
          Small* p = I::template make<Small>();
          p->payload = static_cast<std::uint64_t>(j);
          I::template retire<Small>(p);
        }
        if (now_ns() - t0 >= max_ns) {  // the time bound: stop early, count what ran
          ++l;
          break;
        }
      }
      done_objs.fetch_add(static_cast<std::uint64_t>(l * per_loop));
      I::thread_offline();
    });
  }
  while (ready.load() < nthreads) std::this_thread::yield();
  const std::uint64_t gp0 = grace_periods<I>(), cpu0 = process_cpu_ns();
  t0 = now_ns();
  go.store(true, std::memory_order_release);
  for (auto& th : threads) th.join();
  const std::uint64_t t_retired = now_ns();
  I::barrier();  // everything freed: the work counted is the whole job
  const std::uint64_t t1 = now_ns(), cpu1 = process_cpu_ns(), gp1 = grace_periods<I>();
  const double objs = static_cast<double>(done_objs.load());
  common_metrics<I>(out);
  out.metric("objects", objs);
  out.metric("wall_s", (t1 - t0) * 1e-9);
  out.metric("retire_wall_s", (t_retired - t0) * 1e-9);
  out.metric("cpu_ns_per_obj", static_cast<double>(cpu1 - cpu0) / objs);
  if constexpr (I::kBulkrcu) {
    out.metric("grace_periods", static_cast<double>(gp1 - gp0));
    out.metric("objs_per_gp", gp1 > gp0 ? objs / static_cast<double>(gp1 - gp0) : objs);
    // Where the frees ran, and how often retiring threads drove the monitor (diagnostics:
    // whole-process counters, in the CSV only).
    bulkrcu_stats st;
    bulkrcu_get_stats(&st, sizeof st);
    const double freed = static_cast<double>(st.kv_freed_by_retirers + st.kv_freed_by_runtime);
    if (freed > 0)
      out.metric("freed_by_runtime_pct", 100.0 * static_cast<double>(st.kv_freed_by_runtime) / freed);
    out.metric("retirer_passes", static_cast<double>(st.kv_retirer_passes));
    out.metric("helps_dry", static_cast<double>(st.kv_helps_dry));
  }
  out.metric("peak_rss_mb", peak_rss_bytes() / 1048576.0);
  out.metric("rss_after_mb", rss_bytes() / 1048576.0);
  I::thread_offline();
}

// ---------------------------------------------------------------- flood
// One writer retires flat out (rate 0) or paced to `rate` objects/s for `dur` seconds while
// one reader spins; the main thread samples every `sample_ms`. CPU per object excludes the
// spinning reader's own CPU time (it spins whatever the implementation does).
template <Impl I>
void flood(const Params& prm, ResultWriter& out) {
  const double rate = prm.real("rate");
  const std::uint64_t dur_ns = static_cast<std::uint64_t>(prm.real("dur") * 1e9);
  const std::uint64_t sample_ns = static_cast<std::uint64_t>(prm.real("sample_ms") * 1e6);
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);  // precise pacing sleeps
  I::thread_online();
  // cpu0 before the reader starts: the process delta then holds all of the reader's CPU time,
  // which is subtracted at the end.
  const std::uint64_t gp0 = grace_periods<I>(), cpu0 = process_cpu_ns(), rss0 = rss_bytes();
  Spinner<I> reader;
  reader.start();

  std::atomic<std::uint64_t> retired{0};
  std::atomic<bool> done{false};
  std::uint64_t max_chunk_ns = 0, writer_cpu_ns = 0;
  constexpr int kChunk = 256;
  // The writer samples pending and RSS itself, every sample_ns, into storage reserved up
  // front: a sampler thread would be a third thread on 2 CPUs and miss whole phases.
  struct Sample {
    double t_s, retired, pending, rss_mb, gps;
  };
  std::vector<Sample> samples_v;
  samples_v.reserve(static_cast<std::size_t>(dur_ns / std::max<std::uint64_t>(sample_ns, 1)) + 64);
  std::uint64_t peak_pending = 0, sum_pending = 0, samples = 0, peak_rss = rss0;
  bool have_pending = true;
  const std::uint64_t t0 = now_ns();
  std::thread writer([&] {
    I::thread_online();
    std::uint64_t n = 0, prev = now_ns(), next_sample = t0;
    for (;;) {
      for (int k = 0; k < kChunk; ++k) {
        Small* p = I::template make<Small>();
        p->payload = n + static_cast<std::uint64_t>(k);
        I::template retire<Small>(p);
      }
      n += kChunk;
      retired.store(n, std::memory_order_relaxed);
      std::uint64_t now = now_ns();
      max_chunk_ns = std::max(max_chunk_ns, now - prev);
      if (now >= next_sample) {
        std::uint64_t pend = 0;
        have_pending = pending<I>(n, &pend) && have_pending;
        std::uint64_t rss = rss_bytes();
        peak_rss = std::max(peak_rss, rss);
        peak_pending = std::max(peak_pending, pend);
        sum_pending += pend;
        ++samples;
        if (samples_v.size() < samples_v.capacity())
          samples_v.push_back(Sample{(now - t0) * 1e-9, static_cast<double>(n),
                                     have_pending ? static_cast<double>(pend) : -1.0, rss / 1048576.0,
                                     static_cast<double>(grace_periods<I>() - gp0)});
        next_sample = now + sample_ns;
        now = now_ns();  // the sample's own cost is not the retires'
      }
      if (now - t0 >= dur_ns) break;
      if (rate > 0) {
        // Ahead of schedule: sleep until it catches up (never spin: spinning would be counted
        // as CPU per object).
        double due_ns = static_cast<double>(n) / rate * 1e9;
        double ahead = due_ns - static_cast<double>(now - t0);
        if (ahead > 1000) sleep_for_ns(static_cast<std::uint64_t>(ahead));
      }
      prev = now_ns();
    }
    I::thread_offline();
    writer_cpu_ns = thread_cpu_ns();
    done.store(true, std::memory_order_release);
  });

  // The main thread only waits: the writer samples itself.
  while (!done.load(std::memory_order_acquire)) sleep_for_ns(20'000'000);
  writer.join();
  const std::uint64_t t_end = now_ns();
  reader.finish();
  out.row("series", std::vector<std::string>{"t_s", "retired", "pending", "rss_mb", "grace_periods"});
  for (const Sample& x : samples_v)
    out.row("series", std::vector<double>{x.t_s, x.retired, x.pending, x.rss_mb, x.gps});
  out.metric("phase_s", dur_ns * 1e-9);
  I::barrier();
  const std::uint64_t cpu1 = process_cpu_ns(), gp1 = grace_periods<I>();
  const double objs = static_cast<double>(retired.load());
  common_metrics<I>(out);
  out.metric("objects", objs);
  out.metric("rate_mops", objs / ((t_end - t0) * 1e-9) / 1e6);
  out.metric("target_mops", rate / 1e6);
  const double cpu = static_cast<double>(cpu1 - cpu0) - static_cast<double>(reader.cpu_ns);
  out.metric("cpu_ns_per_obj", std::max(cpu, 0.0) / objs);
  out.metric("writer_cpu_ns_per_obj", static_cast<double>(writer_cpu_ns) / objs);
  out.metric("max_chunk_ms", max_chunk_ns / 1e6);
  out.metric("samples", static_cast<double>(samples));
  out.metric("reader_msections_s", static_cast<double>(reader.sections) / ((t_end - t0) * 1e-9) / 1e6);
  if (have_pending) {
    out.metric("peak_pending", static_cast<double>(peak_pending));
    out.metric("mean_pending", samples ? static_cast<double>(sum_pending) / static_cast<double>(samples) : 0);
  }
  out.metric("start_rss_mb", rss0 / 1048576.0);
  out.metric("peak_rss_mb", peak_rss / 1048576.0);
  out.metric("rss_after_mb", rss_bytes() / 1048576.0);
  if constexpr (I::kBulkrcu) {
    out.metric("grace_periods", static_cast<double>(gp1 - gp0));
    out.metric("objs_per_gp", gp1 > gp0 ? objs / static_cast<double>(gp1 - gp0) : objs);
  }
  I::thread_offline();
}

// ---------------------------------------------------------------- read-mostly
// A chained hash map with RCU readers: lookups walk a bucket inside a read-side section;
// an update replaces a node (copy, link the copy in place, retire the old one) under the
// bucket's mutex. Every thread runs the same lookup/update mix.
struct Node {
  std::atomic<Node*> next;
  std::uint64_t key;
  std::uint64_t val;
};

struct alignas(64) Bucket {
  std::atomic<Node*> head{nullptr};
  std::mutex mu;
};

inline std::uint64_t xorshift(std::uint64_t* s) {
  std::uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

template <Impl I>
void read_mostly(const Params& prm, ResultWriter& out) {
  const int nthreads = static_cast<int>(prm.num("threads"));
  const std::uint64_t update_per_mille = static_cast<std::uint64_t>(prm.num("update_per_mille"));
  const std::uint64_t dur_ns = static_cast<std::uint64_t>(prm.real("dur") * 1e9);
  const std::uint64_t nkeys = static_cast<std::uint64_t>(prm.num("keys"));
  const std::uint64_t nbuckets = nkeys / 4;
  I::thread_online();
  std::unique_ptr<Bucket[]> buckets(new Bucket[nbuckets]);
  for (std::uint64_t k = 0; k < nkeys; ++k) {
    Node* n = I::template make<Node>();
    Bucket& b = buckets[k % nbuckets];
    n->key = k;
    n->val = 0;
    n->next.store(b.head.load(std::memory_order_relaxed), std::memory_order_relaxed);
    b.head.store(n, std::memory_order_release);
  }
  std::atomic<bool> go{false}, stop{false};
  std::atomic<std::uint64_t> lookups{0}, updates{0}, hits{0};
  // The floor (no grace period) keeps replaced nodes until every thread has stopped.
  std::vector<std::vector<Node*>> kept(static_cast<std::size_t>(nthreads));
  std::vector<std::thread> threads;
  for (int t = 0; t < nthreads; ++t) {
    threads.emplace_back([&, t] {
      I::thread_online();
      std::uint64_t seed = 0x9E3779B97F4A7C15ull * static_cast<std::uint64_t>(t + 1);
      std::uint64_t nl = 0, nu = 0, nh = 0;
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      while (!stop.load(std::memory_order_relaxed)) {
        for (int i = 0; i < 64; ++i) {
          std::uint64_t r = xorshift(&seed);
          std::uint64_t key = (r >> 20) % nkeys;
          Bucket& b = buckets[key % nbuckets];
          if (r % 1000 < update_per_mille) {
            Node* fresh = I::template make<Node>();
            Node* old;
            {
              std::lock_guard<std::mutex> lock(b.mu);
              std::atomic<Node*>* link = &b.head;
              old = link->load(std::memory_order_relaxed);
              while (old->key != key) {
                link = &old->next;
                old = link->load(std::memory_order_relaxed);
              }
              fresh->key = key;
              fresh->val = old->val + 1;
              fresh->next.store(old->next.load(std::memory_order_relaxed), std::memory_order_relaxed);
              link->store(fresh, std::memory_order_release);
            }
            if constexpr (I::kDefers)
              I::template retire<Node>(old);
            else
              kept[static_cast<std::size_t>(t)].push_back(old);
            ++nu;
          } else {
            I::read_lock();
            for (Node* n = b.head.load(std::memory_order_acquire); n;
                 n = n->next.load(std::memory_order_acquire))
              if (n->key == key) {
                nh += n->val != ~0ull;
                break;
              }
            I::read_unlock();
            ++nl;
          }
        }
      }
      lookups.fetch_add(nl);
      updates.fetch_add(nu);
      hits.fetch_add(nh);
      I::thread_offline();
    });
  }
  const std::uint64_t gp0 = grace_periods<I>(), cpu0 = process_cpu_ns(), t0 = now_ns();
  go.store(true, std::memory_order_release);
  sleep_for_ns(dur_ns);
  stop.store(true, std::memory_order_relaxed);
  for (auto& th : threads) th.join();
  const std::uint64_t t1 = now_ns();
  I::barrier();
  const std::uint64_t cpu1 = process_cpu_ns(), gp1 = grace_periods<I>();
  for (auto& v : kept)
    for (Node* n : v) I::template retire<Node>(n);
  const double ops = static_cast<double>(lookups.load() + updates.load());
  if (hits.load() != lookups.load()) {
    fprintf(stderr, "bulkrcu-bench: read-mostly: %llu of %llu lookups missed a key that is always present\n",
            static_cast<unsigned long long>(lookups.load() - hits.load()),
            static_cast<unsigned long long>(lookups.load()));
    std::exit(1);
  }
  common_metrics<I>(out);
  out.metric("ops", ops);
  out.metric("mops", ops / ((t1 - t0) * 1e-9) / 1e6);
  out.metric("lookup_mops", static_cast<double>(lookups.load()) / ((t1 - t0) * 1e-9) / 1e6);
  out.metric("update_mops", static_cast<double>(updates.load()) / ((t1 - t0) * 1e-9) / 1e6);
  out.metric("cpu_ns_per_op", static_cast<double>(cpu1 - cpu0) / ops);
  out.metric("peak_rss_mb", peak_rss_bytes() / 1048576.0);
  if constexpr (I::kBulkrcu) out.metric("grace_periods", static_cast<double>(gp1 - gp0));
  for (std::uint64_t i = 0; i < nbuckets; ++i) {
    Node* n = buckets[i].head.load(std::memory_order_relaxed);
    while (n) {
      Node* next = n->next.load(std::memory_order_relaxed);
      I::template retire<Node>(n);
      n = next;
    }
  }
  I::barrier();
  I::thread_offline();
}

// ---------------------------------------------------------------- latency
// Retire latency: the flood's writer, flat out, with every retire timed by the time-stamp
// counter (the timer's own cost is reported, not subtracted).
template <Impl I>
void retire_latency(const Params& prm, ResultWriter& out) {
  const std::uint64_t dur_ns = static_cast<std::uint64_t>(prm.real("dur") * 1e9);
  const double tick_ns = ns_per_tick();
  I::thread_online();
  Spinner<I> reader;
  reader.start();
  Histogram h;
  Histogram overhead;
  std::uint64_t retire_ticks = 0;
  std::thread writer([&] {
    I::thread_online();
    for (int i = 0; i < 10000; ++i) {
      std::uint64_t a = ticks();
      std::uint64_t b = ticks();
      overhead.add(b - a);
    }
    const std::uint64_t t0 = now_ns();
    std::uint64_t n = 0;
    for (;;) {
      for (int k = 0; k < 256; ++k) {
        Small* p = I::template make<Small>();
        p->payload = n;
        std::uint64_t a = ticks();
        I::template retire<Small>(p);
        std::uint64_t b = ticks();
        h.add(b - a);
        retire_ticks += b - a;
      }
      n += 256;
      if (now_ns() - t0 >= dur_ns) break;
    }
    I::thread_offline();
  });
  writer.join();
  reader.finish();
  I::barrier();
  common_metrics<I>(out);
  out.metric("samples", static_cast<double>(h.count()));
  out.metric("timer_ns", static_cast<double>(overhead.quantile(0.5)) * tick_ns);
  out.metric("p50_ns", static_cast<double>(h.quantile(0.5)) * tick_ns);
  out.metric("p99_ns", static_cast<double>(h.quantile(0.99)) * tick_ns);
  out.metric("p999_ns", static_cast<double>(h.quantile(0.999)) * tick_ns);
  out.metric("p9999_ns", static_cast<double>(h.quantile(0.9999)) * tick_ns);
  out.metric("max_us", static_cast<double>(h.max()) * tick_ns / 1e3);
  out.metric("mean_ns",
             h.count() ? static_cast<double>(retire_ticks) * tick_ns / static_cast<double>(h.count()) : 0);
  out.histogram("retire", h, tick_ns);
  I::thread_offline();
}

// A thread doing short sections with a little work outside them, yielding now and then as a
// thread with real work would be preempted (bench/micro/gp_bench.cpp's short-section threads).
template <Impl I>
struct ShortSections {
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> shared{1};
  std::thread th;
  void start() {
    th = std::thread([this] {
      I::thread_online();
      std::uint64_t sink = 0;
      for (unsigned k = 0; !stop.load(std::memory_order_relaxed); ++k) {
        I::read_lock();
        sink += shared.load(std::memory_order_acquire);
        I::read_unlock();
        for (int j = 0; j < 64; ++j) asm volatile("" : "+r"(sink));
        if ((k & 1023) == 0) std::this_thread::yield();
      }
      I::thread_offline();
    });
  }
  void finish() {
    stop.store(true, std::memory_order_relaxed);
    th.join();
  }
};

// Synchronize latency with `readers` threads spinning lock/unlock (mode "spin") or doing short
// sections (mode "short"); exp=1: bulkrcu_synchronize_expedited for bulkrcu's rows (liburcu has
// no expedited form: its row is synchronize_rcu either way).
template <Impl I>
void sync_latency(const Params& prm, ResultWriter& out) {
  const std::uint64_t dur_ns = static_cast<std::uint64_t>(prm.real("dur") * 1e9);
  const int nreaders = static_cast<int>(prm.num("readers"));
  const bool short_sections = prm.str("mode") == "short";
  const bool expedited = prm.num("exp") != 0 && I::kBulkrcu;
  I::thread_online();
  std::vector<std::unique_ptr<Spinner<I>>> readers;
  std::vector<std::unique_ptr<ShortSections<I>>> shorts;
  for (int i = 0; i < nreaders; ++i) {
    if (short_sections) {
      shorts.push_back(std::make_unique<ShortSections<I>>());
      shorts.back()->start();
    } else {
      readers.push_back(std::make_unique<Spinner<I>>());
      readers.back()->start();
    }
  }
  Histogram h;
  const std::uint64_t t0 = now_ns();
  while (now_ns() - t0 < dur_ns) {
    std::uint64_t a = now_ns();
    if (expedited)
      bulkrcu_synchronize_expedited();
    else
      I::synchronize();
    h.add(now_ns() - a);
  }
  for (auto& r : readers) r->finish();
  for (auto& r : shorts) r->finish();
  common_metrics<I>(out);
  out.metric("samples", static_cast<double>(h.count()));
  out.metric("p50_ns", static_cast<double>(h.quantile(0.5)));
  out.metric("p99_ns", static_cast<double>(h.quantile(0.99)));
  out.metric("p999_ns", static_cast<double>(h.quantile(0.999)));
  out.metric("max_us", static_cast<double>(h.max()) / 1e3);
  out.histogram("sync", h, 1.0);
  I::thread_offline();
}

// ---------------------------------------------------------------- scale
// Threads with small stacks (scale starts up to 8,192 of them), running a std::function.
class SmallThread {
 public:
  explicit SmallThread(std::function<void()> fn) : fn_(std::move(fn)) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int rc = pthread_create(&th_, &attr, &SmallThread::run, this);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
      fprintf(stderr, "bulkrcu-bench: scale: pthread_create: %s\n", strerror(rc));
      std::exit(1);
    }
  }
  void join() { pthread_join(th_, nullptr); }

 private:
  static void* run(void* self) {
    static_cast<SmallThread*>(self)->fn_();
    return nullptr;
  }
  std::function<void()> fn_;
  pthread_t th_;
};

// T threads retire `objects` 24-byte objects in all, each freed at once by the thread that
// allocated it; then the barrier. Threads wait on a futex (not a yield loop) for the start,
// so that the process CPU counted is the retires', and stop early at the time bound.
template <Impl I>
void scale_retire(const Params& prm, ResultWriter& out) {
  const int nthreads = static_cast<int>(prm.num("threads"));
  const std::uint64_t per_thread =
      static_cast<std::uint64_t>(prm.num("objects")) / static_cast<std::uint64_t>(nthreads);
  const std::uint64_t max_ns = static_cast<std::uint64_t>(prm.real("max_s") * 1e9);
  I::thread_online();
  std::atomic<int> ready{0};
  std::atomic<int> go{0};
  std::atomic<std::uint64_t> done_objs{0};
  std::atomic<std::uint64_t> t0{0};
  std::vector<std::unique_ptr<SmallThread>> threads;
  for (int t = 0; t < nthreads; ++t) {
    threads.push_back(std::make_unique<SmallThread>([&] {
      I::thread_online();
      ready.fetch_add(1);
      go.wait(0, std::memory_order_acquire);
      const std::uint64_t start = t0.load(std::memory_order_relaxed);
      std::uint64_t j = 0;
      while (j < per_thread) {
        const std::uint64_t end = std::min(per_thread, j + 1024);
        for (; j < end; ++j) {
          Small* p = I::template make<Small>();
          p->payload = j;
          I::template retire<Small>(p);
        }
        if (now_ns() - start >= max_ns) break;
      }
      done_objs.fetch_add(j);
      I::thread_offline();
    }));
  }
  while (ready.load() < nthreads) sleep_for_ns(1'000'000);
  const std::uint64_t gp0 = grace_periods<I>(), cpu0 = process_cpu_ns();
  t0.store(now_ns(), std::memory_order_relaxed);
  go.store(1, std::memory_order_release);
  go.notify_all();
  for (auto& th : threads) th->join();
  I::barrier();
  const std::uint64_t t1 = now_ns(), cpu1 = process_cpu_ns(), gp1 = grace_periods<I>();
  const double objs = static_cast<double>(done_objs.load());
  common_metrics<I>(out);
  out.metric("objects", objs);
  out.metric("wall_s", (t1 - t0.load()) * 1e-9);
  out.metric("cpu_ns_per_obj", static_cast<double>(cpu1 - cpu0) / objs);
  if constexpr (I::kBulkrcu) out.metric("grace_periods", static_cast<double>(gp1 - gp0));
  out.metric("peak_rss_mb", peak_rss_bytes() / 1048576.0);
  out.metric("rss_after_mb", rss_bytes() / 1048576.0);
  I::thread_offline();
}

// synchronize with `idle` threads that each entered and left one read-side section, stay
// registered, and block in a futex wait while the calls are timed.
template <Impl I>
void scale_sync(const Params& prm, ResultWriter& out) {
  const std::uint64_t dur_ns = static_cast<std::uint64_t>(prm.real("dur") * 1e9);
  const int idle = static_cast<int>(prm.num("idle"));
  I::thread_online();
  std::atomic<int> ready{0};
  std::atomic<int> release{0};
  std::vector<std::unique_ptr<SmallThread>> threads;
  for (int t = 0; t < idle; ++t) {
    threads.push_back(std::make_unique<SmallThread>([&] {
      I::thread_online();
      I::read_lock();
      I::read_unlock();
      ready.fetch_add(1);
      release.wait(0, std::memory_order_acquire);
      I::thread_offline();
    }));
  }
  while (ready.load() < idle) sleep_for_ns(1'000'000);
  Histogram h;
  const std::uint64_t t0 = now_ns();
  while (now_ns() - t0 < dur_ns) {
    std::uint64_t a = now_ns();
    I::synchronize();
    h.add(now_ns() - a);
  }
  release.store(1, std::memory_order_release);
  release.notify_all();
  for (auto& th : threads) th->join();
  common_metrics<I>(out);
  out.metric("samples", static_cast<double>(h.count()));
  out.metric("p50_ns", static_cast<double>(h.quantile(0.5)));
  out.metric("p99_ns", static_cast<double>(h.quantile(0.99)));
  out.metric("max_us", static_cast<double>(h.max()) / 1e3);
  out.histogram("sync", h, 1.0);
  I::thread_offline();
}

}  // namespace

// ---------------------------------------------------------------- the table
template <Impl I>
ImplEntry entry() {
  return ImplEntry{I::kName,
                   I::kWhat,
                   I::template size<Small>(),
                   I::kDefers,
                   I::kHasSync,
                   &kfree_scale<I>,
                   &flood<I>,
                   &read_mostly<I>,
                   &retire_latency<I>,
                   I::kHasSync ? &sync_latency<I> : nullptr,
                   &scale_retire<I>,
                   I::kHasSync ? &scale_sync<I> : nullptr,
                   I::kSyncLabel,
                   flood_only<I>()};
}

// The implementations, in table order. Add one: a struct in impls.h and a line here.
const std::vector<ImplEntry>& impl_table() {
  // clang-format off
  static const std::vector<ImplEntry> table = {
      entry<FreeImpl>(),
#if BENCH_HAVE_KVFREE
      entry<KvfreeImpl>(),
      entry<KfreeHeadImpl>(),
      entry<DeferImpl>(),
#endif
      entry<CacheImpl>(),
      entry<CacheTypesafeImpl>(),
      entry<BulkrcuCallImpl>(),
      entry<BulkrcuCallBoundedImpl>(),
      entry<RcuRetireImpl>(),
      entry<RcuRetireDefaultImpl>(),
      entry<ObjRetireImpl>(),
      entry<UrcuCallImpl>(),
      entry<UrcuDeferImpl>(),
  };
  // clang-format on
  return table;
}

}  // namespace bench
