// bulkrcu-bench: the parent's view of the workloads: names, suites (sizes, durations,
// repetitions) and the columns of each table.
#include "workloads.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "pool.h"

namespace bench {

std::string Params::str(const std::string& k) const {
  auto it = kv.find(k);
  if (it == kv.end()) {
    fprintf(stderr, "bulkrcu-bench: child: missing parameter '%s'\n", k.c_str());
    std::exit(2);
  }
  return it->second;
}

long Params::num(const std::string& k) const {
  std::string s = str(k);
  char* end = nullptr;
  long v = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end) {
    fprintf(stderr, "bulkrcu-bench: child: parameter %s=%s is not a whole number\n", k.c_str(), s.c_str());
    std::exit(2);
  }
  return v;
}

double Params::real(const std::string& k) const {
  std::string s = str(k);
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end) {
    fprintf(stderr, "bulkrcu-bench: child: parameter %s=%s is not a number\n", k.c_str(), s.c_str());
    std::exit(2);
  }
  return v;
}

const ImplEntry* find_impl(const std::string& name) {
  for (const auto& e : impl_table())
    if (name == e.name) return &e;
  return nullptr;
}

const std::vector<std::string>& workload_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n = {"kfree-scale", "flood", "read-mostly", "latency"};
    if (pool_available()) n.push_back("pool");
    return n;
  }();
  return names;
}

const std::vector<std::string>& impl_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& e : impl_table()) n.push_back(e.name);
    return n;
  }();
  return names;
}

std::string impl_description(const std::string& name) {
  const ImplEntry* e = find_impl(name);
  return e ? e->what : "";
}

const std::vector<std::string>& alloc_names() {
  static const std::vector<std::string> names = {"glibc", "jemalloc", "tcmalloc", "mimalloc"};
  return names;
}

namespace {

struct Suite {
  int kfree_reps, kfree_loops;
  int flood_reps, rate_reps;
  double flood_dur, rate_dur;
  int rm_reps;
  double rm_dur;
  int lat_reps;
  double lat_dur, sync_dur;
};

Suite suite_for(const Options& o) {
  Suite s;
  if (o.suite == "tiny")
    s = Suite{1, 1, 1, 1, 0.1, 0.1, 1, 0.1, 1, 0.1, 0.1};
  else if (o.suite == "quick")
    s = Suite{3, 100, 3, 2, 1.0, 0.4, 2, 0.4, 2, 0.4, 0.3};
  else
    s = Suite{5, 300, 5, 3, 3.0, 2.0, 3, 2.0, 3, 2.0, 1.0};
  if (o.reps) s.kfree_reps = s.flood_reps = s.rate_reps = s.rm_reps = s.lat_reps = o.reps;
  if (o.duration > 0) s.flood_dur = s.rate_dur = s.rm_dur = s.lat_dur = s.sync_dur = o.duration;
  return s;
}

std::string num(double v) {
  char buf[64];
  snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

bool selected(const std::vector<std::string>& filter, const std::string& name) {
  return filter.empty() || std::find(filter.begin(), filter.end(), name) != filter.end();
}

// One case per selected implementation (those with `need` set, if given).
void add_cases(WorkloadDef& w, const Options& o, const std::string& variant,
               std::map<std::string, std::string> params, int reps, bool sync_only = false) {
  for (const auto& e : impl_table()) {
    if (!selected(o.impls, e.name)) continue;
    if (sync_only && !e.has_sync) continue;
    Case c{w.name, variant, e.name, params, reps};
    c.params["impl"] = e.name;
    w.cases.push_back(std::move(c));
  }
}

}  // namespace

std::vector<WorkloadDef> build_suite(const Options& o) {
  const Suite s = suite_for(o);
  std::vector<WorkloadDef> out;

  if (selected(o.workloads, "kfree-scale")) {
    WorkloadDef w;
    w.name = "kfree-scale";
    w.file = "kfree_scale";
    w.title = "kfree-scale: the kernel's rcuscale kfree test in user space";
    w.notes = {std::to_string(o.threads) + " threads x " + std::to_string(s.kfree_loops) +
                   " loops x 8000 allocations, each retired at once; then a barrier.",
               "CPU ns/obj: process CPU time (all threads, the libraries' background threads included) / "
               "objects, from the start to the end of the barrier; the floor is a malloc + free pair."};
    w.primary = "cpu_ns_per_obj";
    w.primary_header = "CPU ns/obj";
    w.columns = {{"obj_bytes", "obj B"},         {"wall_s", "wall s"},
                 {"grace_periods", "GPs"},       {"objs_per_gp", "objs/GP"},
                 {"peak_rss_mb", "peak RSS MB"}, {"rss_after_mb", "RSS after MB"}};
    add_cases(w, o, "",
              {{"part", "kfree_scale"},
               {"threads", std::to_string(o.threads)},
               {"loops", std::to_string(s.kfree_loops)},
               {"per_loop", "8000"}},
              s.kfree_reps);
    out.push_back(std::move(w));
  }

  if (selected(o.workloads, "flood")) {
    WorkloadDef w;
    w.name = "flood";
    w.file = "flood";
    w.title = "flood: 1 writer retiring 24-byte objects while 1 reader spins lock/unlock";
    w.notes = {
        "flat out for " + num(s.flood_dur) + " s, then paced at 1, 5, 20 M objects/s for " + num(s.rate_dur) +
            " s each (the writer may not reach the target: see rate).",
        "CPU ns/obj: process CPU time minus the spinning reader's, up to the end of the barrier, / objects.",
        "pending = retired - freed, sampled every 10 ms (n/a: the implementation cannot tell); "
        "max 256 us: the longest time the writer took for 256 retires (a blocked writer shows here)."};
    w.primary = "cpu_ns_per_obj";
    w.primary_header = "CPU ns/obj";
    w.columns = {{"rate_mops", "rate M/s", true},  {"peak_pending", "peak pending", true},
                 {"mean_pending", "mean pending"}, {"peak_rss_mb", "peak RSS MB"},
                 {"rss_after_mb", "RSS after MB"}, {"objs_per_gp", "objs/GP"},
                 {"max_chunk_us", "max 256 us"}};
    struct Rate {
      const char* label;
      double rate;
    };
    for (Rate r : {Rate{"flat out", 0}, Rate{"1 M/s", 1e6}, Rate{"5 M/s", 5e6}, Rate{"20 M/s", 2e7}}) {
      bool flat = r.rate == 0;
      add_cases(w, o, r.label,
                {{"part", "flood"},
                 {"rate", num(r.rate)},
                 {"dur", num(flat ? s.flood_dur : s.rate_dur)},
                 {"sample_ms", "10"}},
                flat ? s.flood_reps : s.rate_reps);
    }
    out.push_back(std::move(w));
  }

  if (selected(o.workloads, "read-mostly")) {
    WorkloadDef w;
    w.name = "read-mostly";
    w.file = "read_mostly";
    w.title = "read-mostly: an RCU hash map (4096 keys, 1024 buckets), lookups and replacing updates";
    const long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    w.notes = {std::to_string(o.readers) + " threads on " + std::to_string(ncpu) + " CPUs" +
                   (o.readers > ncpu ? " (OVERSUBSCRIBED: a preempted reader delays grace periods), "
                                     : " (not oversubscribed), ") +
                   num(s.rm_dur) + " s per case; each thread runs the whole mix.",
               "free: no grace period is possible with concurrent readers, so the floor keeps replaced nodes "
               "until the threads stop (no reclamation during the run)."};
    w.primary = "mops";
    w.primary_header = "M ops/s";
    w.columns = {{"cpu_ns_per_op", "CPU ns/op", true},
                 {"lookup_mops", "lookup M/s"},
                 {"update_mops", "update M/s"},
                 {"grace_periods", "GPs"},
                 {"peak_rss_mb", "peak RSS MB"}};
    for (int pm : {50, 10})
      add_cases(w, o, pm == 50 ? "95/5" : "99/1",
                {{"part", "read_mostly"},
                 {"threads", std::to_string(o.readers)},
                 {"update_per_mille", std::to_string(pm)},
                 {"dur", num(s.rm_dur)},
                 {"keys", "4096"}},
                s.rm_reps);
    out.push_back(std::move(w));
  }

  if (selected(o.workloads, "latency")) {
    WorkloadDef w;
    w.name = "latency";
    w.file = "latency_retire";
    w.title = "latency: one retire call, timed by the time-stamp counter, under the flood";
    w.notes = {"1 writer flat out for " + num(s.lat_dur) +
               " s, 1 reader spinning; the timer's own cost (timer ns) is included, not subtracted."};
    w.primary = "p50_ns";
    w.primary_header = "p50 ns";
    w.columns = {{"p99_ns", "p99 ns", true}, {"p999_ns", "p99.9 ns", true}, {"p9999_ns", "p99.99 ns", true},
                 {"max_ns", "max ns", true}, {"timer_ns", "timer ns"},      {"samples", "samples"}};
    add_cases(w, o, "", {{"part", "retire_latency"}, {"dur", num(s.lat_dur)}}, s.lat_reps);
    out.push_back(std::move(w));

    WorkloadDef y;
    y.name = "latency";
    y.file = "latency_sync";
    y.title = "latency: synchronize (wait for a grace period) with 0, 1, 2 readers spinning lock/unlock";
    y.notes = {"bulkrcu_synchronize (row `call`) and liburcu synchronize_rcu (row `urcu_call_rcu`), " +
               num(s.sync_dur) + " s of back-to-back calls per case."};
    y.primary = "p50_ns";
    y.primary_header = "p50 ns";
    y.columns = {
        {"p99_ns", "p99 ns", true}, {"p999_ns", "p99.9 ns"}, {"max_ns", "max ns"}, {"samples", "calls"}};
    for (int r : {0, 1, 2})
      add_cases(y, o, std::to_string(r) + (r == 1 ? " reader" : " readers"),
                {{"part", "sync_latency"}, {"dur", num(s.sync_dur)}, {"readers", std::to_string(r)}},
                s.lat_reps,
                /*sync_only=*/true);
    out.push_back(std::move(y));
  }
  if (pool_available() && selected(o.workloads, "pool")) {
    WorkloadDef w;
    w.name = "pool";
    w.file = "pool";
    w.title = "pool: page allocation (4 KiB), bulkrcu's page pool against malloc(4096)/free and mmap/munmap";
    w.notes = {
        "each thread allocates a batch of pages, writes a word into each, frees them; CPU ns/page: process "
        "CPU time / pages.",
        "pool_lockless: bulkrcu_alloc_page_lockless, falling back to bulkrcu_alloc_page on a miss (miss % "
        "column); --impl does not apply to these rows."};
    w.primary = "cpu_ns_per_page";
    w.primary_header = "CPU ns/page";
    w.floor = "malloc";
    w.ref = "mmap";
    w.columns = {{"wall_ns_per_page", "wall ns/page/thread"},
                 {"lockless_miss_pct", "lockless miss %"},
                 {"peak_rss_mb", "peak RSS MB"}};
    const long pairs = o.suite == "tiny" ? 5000 : o.suite == "quick" ? 100000 : 500000;
    struct Shape {
      const char* label;
      int threads;
      int batch;
    };
    for (Shape sh : {Shape{"1 thread, alloc/free pairs", 1, 1}, Shape{"2 threads, batches of 64", 2, 64}}) {
      for (const auto& impl : pool_impl_names()) {
        Case c{w.name,
               sh.label,
               impl,
               {{"part", "pool"},
                {"impl", impl},
                {"threads", std::to_string(sh.threads)},
                {"batch", std::to_string(sh.batch)},
                {"pairs", std::to_string(pairs)}},
               s.kfree_reps};
        w.cases.push_back(std::move(c));
      }
    }
    out.push_back(std::move(w));
  }
  return out;
}

}  // namespace bench
