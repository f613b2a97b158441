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
    std::vector<std::string> n = {"kfree-scale", "flood", "read-mostly", "latency", "scale"};
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

// Every case is bounded by time: timed cases by their duration, counted ones (kfree-scale,
// scale) by a deadline after which their threads stop early and the objects done are counted.
// Repetitions are odd and at least 3 outside --tiny, so that a median is a value that ran.
struct Suite {
  int reps, main_reps;  // the main cases (kfree-scale, flood flat out, scale retire) run main_reps
  int kfree_loops;
  double kfree_max_s;
  double flood_dur, rate_dur;
  bool all_rates;  // false: only 5 M/s besides flat out
  double rm_dur, lat_dur, sync_dur, pool_dur;
  long scale_objs;
  double scale_max_s, scale_sync_dur;
  std::vector<int> scale_threads, scale_idle;
};

Suite suite_for(const Options& o) {
  Suite s;
  if (o.suite == "tiny")
    s = Suite{1, 1, 1, 2, 0.1, 0.1, true, 0.1, 0.1, 0.1, 0.05, 40000, 5, 0.05, {2, 16}, {1, 64}};
  else if (o.suite == "quick")
    s = Suite{3,
              3,
              100,
              3,
              0.4,
              0.25,
              false,
              0.2,
              0.2,
              0.2,
              0.1,
              1000000,
              3,
              0.15,
              {2, 16, 128, 1024},
              {1, 64, 1024, 8192}};
  else
    s = Suite{3,
              5,
              300,
              8,
              2.0,
              1.0,
              true,
              1.0,
              1.0,
              1.0,
              0.3,
              4000000,
              10,
              0.5,
              {2, 16, 128, 1024},
              {1, 64, 1024, 8192}};
  if (o.reps) s.reps = s.main_reps = o.reps;
  if (o.duration > 0)
    s.flood_dur = s.rate_dur = s.rm_dur = s.lat_dur = s.sync_dur = s.scale_sync_dur = o.duration;
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
               std::map<std::string, std::string> params, int reps, bool sync_only, double budget_s) {
  for (const auto& e : impl_table()) {
    if (!selected(o.impls, e.name)) continue;
    if (e.flood_only && w.name != "flood" && o.impls.empty()) continue;
    if (sync_only && !e.has_sync) continue;
    Case c{w.name, variant, e.name, params, reps, budget_s, sync_only ? e.sync_label : ""};
    c.params["impl"] = e.name;
    w.cases.push_back(std::move(c));
  }
}

}  // namespace

std::string suite_summary(const Options& o) {
  const Suite s = suite_for(o);
  return o.suite + " suite: " + std::to_string(s.main_reps) + " repetitions of the main cases, " +
         std::to_string(s.reps) + " of the others";
}

std::vector<WorkloadDef> build_suite(const Options& o) {
  const Suite s = suite_for(o);
  std::vector<WorkloadDef> out;
  const long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

  if (selected(o.workloads, "kfree-scale")) {
    WorkloadDef w;
    w.name = "kfree-scale";
    w.file = "kfree_scale";
    w.title = "kfree-scale: the kernel's rcuscale kfree test in user space";
    w.notes = {
        std::to_string(o.threads) + " threads x " + std::to_string(s.kfree_loops) +
            " loops x 8000 allocations, each retired at once; then a barrier. Threads stop early after " +
            num(s.kfree_max_s) + " s (objects column: what ran).",
        "CPU ns/obj: process CPU time (all threads, the libraries' background threads included) / "
        "objects, from the start to the end of the barrier; the floor is a malloc + free pair."};
    w.primary = "cpu_ns_per_obj";
    w.primary_header = "CPU ns/obj";
    w.columns = {{"obj_bytes", "obj B", false, true},
                 {"objects", "objects", false, true},
                 {"wall_s", "wall s"},
                 {"grace_periods", "grace periods", false, true},
                 {"objs_per_gp", "objs/GP", false, true},
                 {"peak_rss_mb", "peak RSS MiB"},
                 {"rss_after_mb", "RSS after MiB"}};
    add_cases(w, o, "",
              {{"part", "kfree_scale"},
               {"threads", std::to_string(o.threads)},
               {"loops", std::to_string(s.kfree_loops)},
               {"per_loop", "8000"},
               {"max_s", num(s.kfree_max_s)}},
              s.main_reps, false, 0.5);
    out.push_back(std::move(w));
  }

  if (selected(o.workloads, "flood")) {
    WorkloadDef w;
    w.name = "flood";
    w.file = "flood";
    w.title = "flood: 1 writer retiring 24-byte objects while 1 reader spins lock/unlock";
    w.notes = {
        "flat out for " + num(s.flood_dur) + " s, then paced at " + (s.all_rates ? "1, 5, 20" : "5") +
            " M objects/s for " + num(s.rate_dur) +
            " s each (the writer may not reach the target: see rate).",
        "CPU ns/obj: process CPU time minus the spinning reader's, up to the end of the barrier, / objects.",
        "pending = retired - freed, sampled by the writer itself every 10 ms (n/a: the implementation cannot "
        "tell); longest 256 ms: the longest time the writer took for 256 retires (a blocked writer shows "
        "here)."};
    w.primary = "cpu_ns_per_obj";
    w.primary_header = "CPU ns/obj";
    w.columns = {{"rate_mops", "rate M/s", true},
                 {"peak_pending", "peak pending", true, true},
                 {"mean_pending", "mean pending", false, true},
                 {"peak_rss_mb", "peak RSS MiB", true},
                 {"rss_after_mb", "RSS after MiB"},
                 {"objs_per_gp", "objs/GP", false, true},
                 {"max_chunk_ms", "longest 256 ms"}};
    struct Rate {
      const char* label;
      double rate;
    };
    std::vector<Rate> rates = {Rate{"flat out", 0}};
    if (s.all_rates)
      rates.insert(rates.end(), {Rate{"1 M/s", 1e6}, Rate{"5 M/s", 5e6}, Rate{"20 M/s", 2e7}});
    else
      rates.push_back(Rate{"5 M/s", 5e6});
    for (Rate r : rates) {
      bool flat = r.rate == 0;
      const double dur = flat ? s.flood_dur : s.rate_dur;
      add_cases(w, o, r.label,
                {{"part", "flood"}, {"rate", num(r.rate)}, {"dur", num(dur)}, {"sample_ms", "10"}},
                flat ? s.main_reps : s.reps, false, dur + 0.3);
    }
    out.push_back(std::move(w));
  }

  if (selected(o.workloads, "read-mostly")) {
    WorkloadDef w;
    w.name = "read-mostly";
    w.file = "read_mostly";
    w.title = "read-mostly: an RCU hash map (4096 keys, 1024 buckets), lookups and replacing updates";
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
                 {"grace_periods", "grace periods", false, true},
                 {"peak_rss_mb", "peak RSS MiB"}};
    for (int pm : {50, 10})
      add_cases(w, o, pm == 50 ? "95/5" : "99/1",
                {{"part", "read_mostly"},
                 {"threads", std::to_string(o.readers)},
                 {"update_per_mille", std::to_string(pm)},
                 {"dur", num(s.rm_dur)},
                 {"keys", "4096"}},
                s.reps, false, s.rm_dur + 0.1);
    out.push_back(std::move(w));
  }

  if (selected(o.workloads, "latency")) {
    WorkloadDef w;
    w.name = "latency";
    w.file = "latency_retire";
    w.title = "latency: one retire call, timed by the time-stamp counter, under the flood";
    w.notes = {
        "1 writer flat out for " + num(s.lat_dur) +
            " s, 1 reader spinning; the timer's own cost (timer ns) is included, not subtracted.",
        "'<=timer': the quantile is within 1.5x of the timer's own cost, below what this timer resolves; "
        "mean ns: wall time of the writer's retires / calls (timer included)."};
    w.primary = "p50_ns";
    w.primary_header = "p50 ns";
    w.columns = {{"mean_ns", "mean ns"},           {"p99_ns", "p99 ns", true}, {"p999_ns", "p99.9 ns", true},
                 {"p9999_ns", "p99.99 ns", true},  {"max_us", "max us", true}, {"timer_ns", "timer ns"},
                 {"samples", "calls", false, true}};
    add_cases(w, o, "", {{"part", "retire_latency"}, {"dur", num(s.lat_dur)}}, s.reps, false,
              s.lat_dur + 0.1);
    out.push_back(std::move(w));

    WorkloadDef y;
    y.name = "latency";
    y.file = "latency_sync";
    y.title =
        "latency: synchronize (wait for a grace period) with 0, 1, 2 and 4 readers spinning lock/unlock, "
        "and with 64 threads doing short sections";
    y.notes = {"rows: bulkrcu_synchronize (bulkrcu) and liburcu synchronize_rcu (liburcu), " +
                   num(s.sync_dur) + " s of back-to-back calls per case; " + std::to_string(ncpu) +
                   " CPUs, so 2 and 4 readers plus "
                   "the caller oversubscribe them.",
               "64 short-section threads: each loops lock, one load, unlock, a little work, a yield every "
               "1024 sections; 'expedited': bulkrcu_synchronize_expedited in bulkrcu's row (liburcu has no "
               "expedited form: synchronize_rcu)."};
    y.primary = "p50_ns";
    y.primary_header = "p50 ns";
    y.ref = "urcu_call_rcu";
    y.columns = {{"p99_ns", "p99 ns", true},
                 {"p999_ns", "p99.9 ns"},
                 {"max_us", "max us"},
                 {"samples", "calls", false, true}};
    struct SyncCase {
      const char* name;
      int readers;
      const char* mode;
      int exp;
    };
    for (const SyncCase& c :
         {SyncCase{"0 readers", 0, "spin", 0}, SyncCase{"1 reader", 1, "spin", 0},
          SyncCase{"2 readers", 2, "spin", 0}, SyncCase{"4 readers", 4, "spin", 0},
          SyncCase{"64 short-section threads", 64, "short", 0},
          SyncCase{"2 readers, expedited", 2, "spin", 1}, SyncCase{"4 readers, expedited", 4, "spin", 1},
          SyncCase{"64 short-section threads, expedited", 64, "short", 1}})
      add_cases(y, o, c.name,
                {{"part", "sync_latency"},
                 {"dur", num(s.sync_dur)},
                 {"readers", std::to_string(c.readers)},
                 {"mode", c.mode},
                 {"exp", std::to_string(c.exp)}},
                s.reps,
                /*sync_only=*/true, s.sync_dur + 0.1);
    out.push_back(std::move(y));
  }

  if (selected(o.workloads, "scale")) {
    WorkloadDef w;
    w.name = "scale";
    w.file = "scale_retire";
    const std::string objs =
        s.scale_objs >= 1000000 ? num(s.scale_objs / 1e6) + " M" : num(s.scale_objs / 1e3) + " k";
    w.title =
        "scale: T threads retire " + objs +
        " 24-byte objects in all, each retired at once by the thread that allocated it, then the barrier";
    w.notes = {"T threads on " + std::to_string(ncpu) + " CPUs (T > " + std::to_string(ncpu) +
                   ": oversubscribed; frees cross threads); threads stop early after " + num(s.scale_max_s) +
                   " s (objects column: what ran).",
               "CPU ns/obj: process CPU time (every thread, background threads included) from the start to "
               "the end of the barrier / objects; peak RSS: the process's high-water mark."};
    w.primary = "cpu_ns_per_obj";
    w.primary_header = "CPU ns/obj";
    w.ref = "urcu_defer_rcu";
    w.columns = {{"peak_rss_mb", "peak RSS MiB", true},
                 {"objects", "objects", false, true},
                 {"wall_s", "wall s"},
                 {"grace_periods", "grace periods", false, true}};
    for (int t : s.scale_threads) {
      for (const char* impl : {"free", "kvfree", "call", "urcu_call_rcu", "urcu_defer_rcu"}) {
        if (!selected(o.impls, impl) || !find_impl(impl)) continue;
        Case c{w.name,
               std::to_string(t) + " threads",
               impl,
               {{"part", "scale_retire"},
                {"impl", impl},
                {"threads", std::to_string(t)},
                {"objects", std::to_string(s.scale_objs)},
                {"max_s", num(s.scale_max_s)}},
               s.main_reps,
               0.5 + t * 0.0005,
               ""};
        w.cases.push_back(std::move(c));
      }
    }
    out.push_back(std::move(w));

    WorkloadDef y;
    y.name = "scale";
    y.file = "scale_sync";
    y.title = "scale: synchronize with N idle threads that each once read (lock/unlock) and stay registered";
    y.notes = {"rows: bulkrcu_synchronize (bulkrcu) and liburcu synchronize_rcu (liburcu), " +
               num(s.scale_sync_dur) +
               " s of back-to-back calls per case, the idle threads blocked in a wait."};
    y.primary = "p50_ns";
    y.primary_header = "p50 ns";
    y.columns = {{"p99_ns", "p99 ns", true}, {"max_us", "max us"}, {"samples", "calls", false, true}};
    for (int n : s.scale_idle)
      add_cases(y, o, std::to_string(n) + (n == 1 ? " idle thread" : " idle threads"),
                {{"part", "scale_sync"}, {"dur", num(s.scale_sync_dur)}, {"idle", std::to_string(n)}}, s.reps,
                /*sync_only=*/true, s.scale_sync_dur + n * 0.00005 + 0.1);
    out.push_back(std::move(y));
  }

  if (pool_available() && selected(o.workloads, "pool")) {
    WorkloadDef w;
    w.name = "pool";
    w.file = "pool";
    w.title = "pool: page allocation (4 KiB), bulkrcu's page pool against malloc(4096)/free and mmap/munmap";
    w.notes = {
        "each thread allocates a batch of pages, writes a word into each, frees them, for " +
            num(s.pool_dur) + " s; CPU ns/page: process CPU time / pages.",
        "pool_lockless: bulkrcu_alloc_page_lockless, falling back to bulkrcu_alloc_page on a miss (miss % "
        "column); --impl does not apply to these rows."};
    w.primary = "cpu_ns_per_page";
    w.primary_header = "CPU ns/page";
    w.floor = "malloc";
    w.ref = "mmap";
    w.columns = {{"wall_ns_per_page", "wall ns/page/thread"},
                 {"pages", "pages", false, true},
                 {"lockless_miss_pct", "lockless miss %"},
                 {"peak_rss_mb", "peak RSS MiB"}};
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
                {"dur", num(s.pool_dur)}},
               s.reps,
               s.pool_dur + 0.05,
               ""};
        w.cases.push_back(std::move(c));
      }
    }
    out.push_back(std::move(w));
  }
  return out;
}

}  // namespace bench
