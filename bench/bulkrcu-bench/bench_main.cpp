// bulkrcu-bench: the driver. Parses options, builds the suite, runs every case in its own
// process with repetitions interleaved (A B C A B C ...), prints the tables, and writes CSV
// files and plots.
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
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

// The commit of the source tree this program was built from, "+ local changes" when the tree
// differs from it ("unknown" outside a git checkout).
std::string source_commit() {
#ifdef BENCH_SOURCE_DIR
  std::string cmd = std::string("git -C '") + BENCH_SOURCE_DIR + "' rev-parse --short=12 HEAD 2>/dev/null";
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[128];
    while (fgets(buf, sizeof buf, p)) out += buf;
    pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  if (out.empty()) return "unknown";
  cmd = std::string("git -C '") + BENCH_SOURCE_DIR + "' status --porcelain --untracked-files=no 2>/dev/null";
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[128];
    bool dirty = fgets(buf, sizeof buf, p) != nullptr;
    while (fgets(buf, sizeof buf, p)) {
    }
    pclose(p);
    if (dirty) out += " + local changes";
  }
  return out;
#else
  return "unknown";
#endif
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
  double budget_total = 0;
  for (std::size_t i = 0; i < defs.size(); ++i) {
    for (const auto& c : defs[i].cases) {
      all[i].push_back(CaseRuns{&c, {}});
      total += c.reps;
      budget_total += c.reps * c.budget_s;
    }
  }
  if (total == 0) {
    fprintf(stderr, "bulkrcu-bench: nothing to run (the --impl filter leaves no case in these workloads)\n");
    return 2;
  }

  utsname u;
  uname(&u);
  const long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  std::string command;
  for (int i = 0; i < argc; ++i) {
    if (i) command += ' ';
    command += argv[i];
  }
  Report rep;
  rep.command = command;
  rep.commit = source_commit();
  rep.versions = std::string("bulkrcu ") + BENCH_BULKRCU_VERSION + ", liburcu " + BENCH_URCU_VERSION + ", " +
                 __VERSION__;
  rep.machine = cpu_model() + ", " + std::to_string(ncpu) + " CPUs online, Linux " + u.release;
  rep.load_start = loadavg();
  rep.suite = suite_summary(o) + ", allocator " + o.alloc;
  printf("bulkrcu-bench (%s): %s\n", rep.versions.c_str(), rep.suite.c_str());
  printf("machine: %s; load average at start: %s\n", rep.machine.c_str(), rep.load_start.c_str());
  printf("commit: %s\n", rep.commit.c_str());
  int ncases = 0;
  for (const auto& w : defs) ncases += static_cast<int>(w.cases.size());
  printf("%d cases, %d runs (each in its own process), planned about %s\n", ncases, total,
         fmt_duration(budget_total).c_str());
  const double load1 = std::atof(rep.load_start.c_str());
  if (load1 > 0.5 * static_cast<double>(ncpu)) {
    std::string wmsg = "WARNING: load average " + rep.load_start + " on " + std::to_string(ncpu) +
                       " CPUs: other processes compete for the CPUs, the figures will be noisy (rows marked "
                       "'!' in the 'other CPU %' column)";
    printf("%s\n", wmsg.c_str());
    rep.warnings.push_back(wmsg);
  }
  fflush(stdout);

  const bool tty = isatty(2);
  const std::uint64_t t_start = now_ns();
  int done = 0, failed = 0, noisy_runs = 0, retried = 0;
  double spent_s = 0, spent_budget = 0;  // completed runs: actual time and their budgets
  for (std::size_t i = 0; i < defs.size(); ++i) {
    const WorkloadDef& w = defs[i];
    int max_reps = 0;
    for (const auto& c : w.cases) max_reps = std::max(max_reps, c.reps);
    for (int r = 0; r < max_reps; ++r) {
      for (auto& cr : all[i]) {
        if (r >= cr.c->reps) continue;
        // ETA: the budgets of the runs left, scaled by how the budgets compared so far.
        double left_budget = 0;
        for (std::size_t j = i; j < defs.size(); ++j)
          for (const auto& c2 : all[j])
            left_budget += (c2.c->reps - static_cast<int>(c2.runs.size())) * c2.c->budget_s;
        const double scale = spent_budget > 0 ? spent_s / spent_budget : 1.0;
        const std::string what = w.name + (cr.c->variant.empty() ? "" : " " + cr.c->variant) + " " +
                                 cr.c->impl + " rep " + std::to_string(r + 1) + "/" +
                                 std::to_string(cr.c->reps);
        fprintf(stderr, "%s[%d/%d] %s, ETA %s%s", tty ? "\r\033[K" : "", done + 1, total, what.c_str(),
                fmt_duration(left_budget * scale).c_str(), tty ? "" : "\n");
        fflush(stderr);
        CaseResult res;
        for (int attempt = 1;; ++attempt) {
          CaseResult a = run_case(cr.c->params, o.alloc, o.timeout);
          if (a.ok && a.info["allocator"].rfind(o.alloc, 0) != 0) {
            // The preload did not take (or another allocator won): the numbers are not what
            // was asked for, so the run counts as failed.
            a.ok = false;
            a.error = "asked for " + o.alloc + ", but malloc was served by " + a.info["allocator"];
          }
          a.attempts = attempt;
          spent_s += a.seconds;
          if (attempt == 1 || (a.ok && a.other_cpu_pct < res.other_cpu_pct)) res = std::move(a);
          if (!o.retry_noisy || !res.ok || !noisy(res) || attempt == 3) break;
          ++retried;
          fprintf(stderr, "%s[%d/%d] %s: other processes used %.0f%% of the CPUs, retrying (%d/2)%s",
                  tty ? "\r\033[K" : "", done + 1, total, what.c_str(), res.other_cpu_pct, attempt,
                  tty ? "" : "\n");
        }
        spent_budget += cr.c->budget_s;
        if (noisy(res)) ++noisy_runs;
        if (!res.ok) {
          ++failed;
          fprintf(stderr, "%sbulkrcu-bench: %s FAILED: %s\n", tty ? "\r\033[K" : "", what.c_str(),
                  res.error.c_str());
        }
        cr.runs.push_back(std::move(res));
        ++done;
      }
    }
    if (tty) fprintf(stderr, "\r\033[K");
    std::string table = table_text(w, all[i]);
    fputs(table.c_str(), stdout);
    fflush(stdout);
    rep.tables.push_back(table);
    if (!o.out_dir.empty()) write_csv(w, all[i], o.out_dir);
  }
  const double elapsed = (now_ns() - t_start) * 1e-9;
  rep.load_end = loadavg();
  rep.elapsed = fmt_duration(elapsed);
  std::string end = std::to_string(done) + " runs in " + rep.elapsed +
                    " (load average at the end: " + rep.load_end + ")" +
                    (failed ? ", " + std::to_string(failed) + " FAILED" : "");
  printf("\n%s\n", end.c_str());
  rep.summary = end;
  if (noisy_runs) {
    char buf[400];
    snprintf(
        buf, sizeof buf,
        "WARNING: in %d of %d runs other processes used more than %.0f%% of the CPUs (%d retries); those "
        "figures are noisy: rerun on a quiet machine%s",
        noisy_runs, done, kNoisyPct, retried, o.retry_noisy ? "" : " or with --retry-noisy");
    printf("%s\n", buf);
    rep.warnings.push_back(buf);
  }
  fprintf(stderr, "bulkrcu-bench: done: %d runs in %s%s\n", done, rep.elapsed.c_str(),
          noisy_runs ? (", " + std::to_string(noisy_runs) + " noisy").c_str() : "");
  if (!o.out_dir.empty()) {
    std::string perr;
    std::vector<std::string> pngs = make_plots(defs, all, o.out_dir, !o.no_plots, &perr);
    if (!perr.empty()) fprintf(stderr, "bulkrcu-bench: %s\n", perr.c_str());
    rep.pngs = pngs;
    write_report(rep, o.out_dir);
    printf("CSV, plots and report.md in %s/ (%zu PNG files)\n", o.out_dir.c_str(), pngs.size());
  }
  return failed ? 1 : 0;
}

}  // namespace bench

int main(int argc, char** argv) { return bench::bench_main(argc, argv); }
