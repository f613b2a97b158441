// bulkrcu-bench: the driver. Parses options, builds the suite, runs every case in its own
// process with repetitions interleaved (A B C A B C ...), prints the tables, and writes CSV
// files and plots.
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "options.h"
#include "report.h"
#include "runner.h"
#include "workloads.h"

#ifndef BENCH_URCU_VERSION
#define BENCH_URCU_VERSION "?"
#endif
#ifndef BENCH_BULKRCU_VERSION
#define BENCH_BULKRCU_VERSION "?"
#endif

namespace bench {
namespace {

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "?";
}

std::string loadavg() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

std::string fmt_duration(double s) {
  char buf[32];
  if (s >= 60)
    snprintf(buf, sizeof buf, "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  else
    snprintf(buf, sizeof buf, "%.0fs", s);
  return buf;
}

bool make_dirs(const std::string& path) {
  std::string cur;
  for (std::size_t i = 0; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      if (!cur.empty() && mkdir(cur.c_str(), 0777) != 0 && errno != EEXIST) return false;
    }
    if (i < path.size()) cur += path[i];
  }
  return true;
}

}  // namespace

int bench_main(int argc, char** argv) {
  Options o;
  std::string err = parse_options(argc, argv, &o);
  if (!err.empty()) {
    fprintf(stderr, "bulkrcu-bench: %s\n", err.c_str());
    return 2;
  }
  if (o.child) return child_main(o);
  if (o.help) {
    fputs(usage().c_str(), stdout);
    return 0;
  }
  if (o.list) {
    for (const auto& w : workload_names()) printf("workload %s\n", w.c_str());
    for (const auto& e : impl_table()) printf("impl %s  %s\n", e.name, e.what);
    return 0;
  }
  if (!o.alloc.empty() && o.alloc != "glibc" && access(alloc_library(o.alloc).c_str(), R_OK) != 0) {
    fprintf(stderr, "bulkrcu-bench: --alloc %s: %s is missing (scripts/install-deps.sh installs it)\n",
            o.alloc.c_str(), alloc_library(o.alloc).c_str());
    return 2;
  }
  if (!o.out_dir.empty() && !make_dirs(o.out_dir)) {
    fprintf(stderr, "bulkrcu-bench: --out %s: cannot create the directory: %s\n", o.out_dir.c_str(),
            strerror(errno));
    return 2;
  }

  std::vector<WorkloadDef> defs = build_suite(o);
  std::vector<std::vector<CaseRuns>> all(defs.size());
  int total = 0;
  for (std::size_t i = 0; i < defs.size(); ++i) {
    for (const auto& c : defs[i].cases) {
      all[i].push_back(CaseRuns{&c, {}});
      total += c.reps;
    }
  }
  if (total == 0) {
    fprintf(stderr, "bulkrcu-bench: nothing to run (the --impl filter leaves no case in these workloads)\n");
    return 2;
  }

  utsname u;
  uname(&u);
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  printf("bulkrcu-bench (bulkrcu %s, liburcu %s, %s): %s suite, allocator %s\n", BENCH_BULKRCU_VERSION,
         BENCH_URCU_VERSION, __VERSION__, o.suite.c_str(), o.alloc.c_str());
  printf("machine: %s, %ld CPUs online, Linux %s; load average at start: %s\n", cpu_model().c_str(), ncpu,
         u.release, loadavg().c_str());
  fflush(stdout);

  const bool tty = isatty(2);
  const std::uint64_t t_start = now_ns();
  int done = 0, failed = 0;
  for (std::size_t i = 0; i < defs.size(); ++i) {
    const WorkloadDef& w = defs[i];
    int max_reps = 0;
    for (const auto& c : w.cases) max_reps = std::max(max_reps, c.reps);
    if (!tty) fprintf(stderr, "bulkrcu-bench: %s (%zu cases)\n", w.file.c_str(), w.cases.size());
    for (int rep = 0; rep < max_reps; ++rep) {
      for (auto& cr : all[i]) {
        if (rep >= cr.c->reps) continue;
        double elapsed = (now_ns() - t_start) * 1e-9;
        if (tty) {
          std::string eta = done ? " eta " + fmt_duration(elapsed / done * (total - done)) : "";
          fprintf(stderr, "\r\033[K[%d/%d %s%s] %s %s %s rep %d/%d", done + 1, total,
                  fmt_duration(elapsed).c_str(), eta.c_str(), w.name.c_str(), cr.c->variant.c_str(),
                  cr.c->impl.c_str(), rep + 1, cr.c->reps);
          fflush(stderr);
        }
        CaseResult r = run_case(cr.c->params, o.alloc, o.timeout);
        if (r.ok && r.info["allocator"].rfind(o.alloc, 0) != 0) {
          // The preload did not take (or another allocator won): the numbers are not what
          // was asked for, so the run counts as failed.
          r.ok = false;
          r.error = "asked for " + o.alloc + ", but malloc was served by " + r.info["allocator"];
        }
        if (!r.ok) {
          ++failed;
          fprintf(stderr, "%sbulkrcu-bench: %s %s %s rep %d FAILED: %s\n", tty ? "\r\033[K" : "",
                  w.name.c_str(), cr.c->variant.c_str(), cr.c->impl.c_str(), rep + 1, r.error.c_str());
        }
        cr.runs.push_back(std::move(r));
        ++done;
      }
    }
    if (tty) fprintf(stderr, "\r\033[K");
    print_table(w, all[i], stdout);
    fflush(stdout);
    if (!o.out_dir.empty()) write_csv(w, all[i], o.out_dir);
  }
  printf("\n%d runs in %s (load average at the end: %s)%s\n", done,
         fmt_duration((now_ns() - t_start) * 1e-9).c_str(), loadavg().c_str(),
         failed ? (", " + std::to_string(failed) + " FAILED").c_str() : "");
  if (!o.out_dir.empty()) {
    std::string perr;
    std::vector<std::string> pngs = make_plots(defs, all, o.out_dir, !o.no_plots, &perr);
    if (!perr.empty()) fprintf(stderr, "bulkrcu-bench: %s\n", perr.c_str());
    printf("CSV and plots in %s/ (%zu PNG files)\n", o.out_dir.c_str(), pngs.size());
  }
  return failed ? 1 : 0;
}

}  // namespace bench

int main(int argc, char** argv) { return bench::bench_main(argc, argv); }
