// bulkrcu-bench: command-line parsing and the --help text.
#include "options.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <sstream>

namespace bench {
namespace {

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

// Splits "a,b,c" into its non-empty parts.
std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> parts;
  std::stringstream in(s);
  std::string p;
  while (std::getline(in, p, ','))
    if (!p.empty()) parts.push_back(p);
  return parts;
}

bool parse_int(const std::string& s, int lo, int hi, int* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(s.c_str(), &end, 10);
  if (errno || *end || v < lo || v > hi) return false;
  *out = static_cast<int>(v);
  return true;
}

bool parse_seconds(const std::string& s, double* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(s.c_str(), &end);
  if (errno || *end || !(v > 0) || v > 3600) return false;
  *out = v;
  return true;
}

}  // namespace

std::string usage() {
  std::ostringstream o;
  o << "usage: bulkrcu-bench [options]\n"
       "\n"
       "Runs RCU reclamation workloads with bulkrcu, liburcu (memb flavour) and plain free() side\n"
       "by side. Every case runs in its own process; cases interleave over repetitions; tables show\n"
       "medians of an odd number of runs, the spread (min-max, '!' when wider than 2x) and ratios to\n"
       "the floor (free) and to a liburcu row, each column named after the row it divides by.\n"
       "Every case is bounded by time. Progress goes to stderr; other processes' CPU use during each\n"
       "run is measured (/proc/stat) and noisy runs are flagged.\n"
       "\n"
       "workloads (--workload NAME, repeatable or comma-separated; default: all):\n"
       "  kfree-scale   the kernel's rcuscale kfree test: T threads x loops x 8000 24-byte objects,\n"
       "                each retired at once; wall time, CPU per object, grace periods, peak RSS\n"
       "  flood         1 writer retiring flat out and at 1, 5, 20 M objects/s while 1 reader spins;\n"
       "                rate, CPU per object, pending objects and RSS over time, RSS after the run\n"
       "  read-mostly   an RCU hash map, 95/5 and 99/1 lookup/update, --readers threads\n"
       "  latency       retire latency under the flood (p50..p99.99, max); synchronize latency\n"
       "                with 0, 1, 2 and 4 spinning readers and 64 short-section threads (2, 4\n"
       "                and 64 also expedited)\n"
       "  scale         retire with 2, 16, 128, 1024 threads (4 M objects in all, then the barrier):\n"
       "                CPU per object and peak RSS; synchronize with 1, 64, 1024, 8192 idle threads\n"
       "  pool          page allocation: bulkrcu's pool lockless / locked vs malloc(4096)/free vs\n"
       "                mmap/munmap (only in builds that have the page pool)\n"
       "\n"
       "implementations (--impl NAME, repeatable or comma-separated; default: all):\n";
  for (const auto& n : impl_names()) {
    std::string pad(n.size() < 16 ? 16 - n.size() : 1, ' ');
    o << "  " << n << pad << impl_description(n) << "\n";
  }
  o << "\n"
       "options:\n"
       "  --workload NAME  run only these workloads\n"
       "  --impl NAME      run only these implementations (a ratio column shows '-' when its\n"
       "                   reference row, free or urcu_call_rcu, is not run)\n"
       "  --quick          reduced suite: at most 2 minutes on a quiet 2-CPU machine (the default\n"
       "                   suite: at most 10)\n"
       "  --tiny           smallest suite, a few seconds, 1 repetition (for tests; numbers are noise)\n"
       "  --reps N         repetitions of every case (default: 5 for kfree-scale, flood flat out and\n"
       "                   scale retire, 3 for the others; --quick: 3). With an even N or N < 3 the\n"
       "                   tables show every value instead of a median\n"
       "  --duration S     seconds per timed case (flood, read-mostly, latency, scale synchronize)\n"
       "  --retry-noisy    rerun a run during which other processes used more than 10% of the CPUs,\n"
       "                   up to 2 more times, keeping the quietest\n"
       "  --threads N      kfree-scale threads (default 2)\n"
       "  --readers N      read-mostly threads (default 4)\n"
       "  --alloc NAME     run every case with this allocator preloaded (LD_PRELOAD):\n"
       "                   "
    << join(alloc_names())
    << "\n"
       "  --out DIR        write one CSV per workload, PNG plots (gnuplot) and report.md (machine,\n"
       "                   commit, command, load, tables, plots) into DIR\n"
       "  --no-plots       with --out: CSV and gnuplot scripts only, do not run gnuplot\n"
       "  --timeout S      kill a case after S seconds (default 300)\n"
       "  --list           list workloads and implementations, one per line\n"
       "  --help           this text\n"
       "\n"
       "A value cannot start with '-' (`--out --list` is refused); --quick and --tiny, --list and\n"
       "options that run cases, --no-plots without --out contradict each other and are refused.\n"
       "exit status: 0 success, 1 a case failed, 2 bad or contradictory options.\n";
  return o.str();
}

std::string parse_options(int argc, const char* const* argv, Options* out) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    std::string val;
    bool has_inline = false;
    if (a.rfind("--", 0) == 0) {
      size_t eq = a.find('=');
      if (eq != std::string::npos) {
        val = a.substr(eq + 1);
        a = a.substr(0, eq);
        has_inline = true;
      }
    }
    auto value = [&](std::string* v) -> bool {
      if (has_inline) {
        *v = val;
        return true;
      }
      if (i + 1 >= argc) return false;
      *v = argv[++i];
      return true;
    };
    // A value that looks like an option (`--out --list`) is a forgotten value, not a name.
    auto looks_like_option = [](const std::string& v) { return v.size() > 1 && v[0] == '-'; };
    const bool is_flag = a == "--help" || a == "-h" || a == "--list" || a == "--quick" || a == "--tiny" ||
                         a == "--no-plots" || a == "--retry-noisy" || a == "--child";
    if (is_flag && has_inline) return a + " takes no value";
    std::string v;
    auto take = [&](std::string* out_v) -> std::string {  // "" or an error message
      if (!value(out_v)) return "missing";
      if (looks_like_option(*out_v))
        return a + " needs a value, not the option '" + *out_v + "' (a value cannot start with '-')";
      return "";
    };
    if (o.child) {  // everything after --child is key=value case parameters
      size_t eq = a.find('=');
      if (eq == std::string::npos) return "bad child parameter '" + a + "'";
      o.child_params[a.substr(0, eq)] = a.substr(eq + 1);
      continue;
    }
    if (a == "--help" || a == "-h") {
      o.help = true;
    } else if (a == "--list") {
      o.list = true;
    } else if (a == "--quick" || a == "--tiny") {
      const std::string suite = a.substr(2);
      if (o.suite != "default" && o.suite != suite)
        return "--quick and --tiny contradict each other: pick one";
      o.suite = suite;
    } else if (a == "--no-plots") {
      o.no_plots = true;
    } else if (a == "--retry-noisy") {
      o.retry_noisy = true;
    } else if (a == "--workload" || a == "--impl") {
      if (std::string e = take(&v); !e.empty()) return e == "missing" ? a + " needs a name (see --help)" : e;
      auto parts = split_commas(v);
      if (parts.empty()) return a + " needs a name (see --help)";
      const auto& known = a == "--workload" ? workload_names() : impl_names();
      for (const auto& p : parts) {
        if (!contains(known, p))
          return "unknown " + a.substr(2) + " '" + p + "' (known: " + join(known) + ")";
        auto& dst = a == "--workload" ? o.workloads : o.impls;
        if (!contains(dst, p)) dst.push_back(p);
      }
    } else if (a == "--alloc") {
      if (std::string e = take(&v); !e.empty())
        return e == "missing" ? "--alloc needs a name: " + join(alloc_names()) : e;
      if (!contains(alloc_names(), v))
        return "unknown allocator '" + v + "' (known: " + join(alloc_names()) + ")";
      o.alloc = v;
    } else if (a == "--out") {
      if (std::string e = take(&v); !e.empty() || v.empty())
        return e.empty() || e == "missing" ? "--out needs a directory" : e;
      o.out_dir = v;
    } else if (a == "--reps") {
      if (std::string e = take(&v); !e.empty() && e != "missing") return e;
      if (!parse_int(v, 1, 1000, &o.reps)) return "--reps needs a whole number from 1 to 1000";
    } else if (a == "--threads") {
      if (std::string e = take(&v); !e.empty() && e != "missing") return e;
      if (!parse_int(v, 1, 256, &o.threads)) return "--threads needs a whole number from 1 to 256";
    } else if (a == "--readers") {
      if (std::string e = take(&v); !e.empty() && e != "missing") return e;
      if (!parse_int(v, 1, 256, &o.readers)) return "--readers needs a whole number from 1 to 256";
    } else if (a == "--timeout") {
      if (std::string e = take(&v); !e.empty() && e != "missing") return e;
      if (!parse_int(v, 1, 86400, &o.timeout))
        return "--timeout needs a whole number of seconds from 1 to 86400";
    } else if (a == "--duration") {
      if (std::string e = take(&v); !e.empty() && e != "missing") return e;
      if (!parse_seconds(v, &o.duration))
        return "--duration needs a number of seconds greater than 0 (at most 3600)";
    } else if (a == "--child") {
      o.child = true;
    } else if (a == "--result-fd") {
      if (!value(&v) || !parse_int(v, 0, 1 << 20, &o.result_fd)) return "--result-fd needs a descriptor";
    } else if (a.rfind("-", 0) == 0) {
      return "unknown option '" + a + "' (see --help)";
    } else {
      return "unexpected argument '" + a + "' (see --help)";
    }
  }
  if (o.child && o.result_fd < 0) return "--child needs --result-fd before it";
  if (!o.child && !o.help) {
    if (o.list && (!o.out_dir.empty() || !o.workloads.empty() || !o.impls.empty() || o.suite != "default"))
      return "--list only lists: it cannot be combined with options that run cases";
    if (o.no_plots && o.out_dir.empty()) return "--no-plots needs --out DIR (without --out no plot is drawn)";
  }
  *out = std::move(o);
  return "";
}

}  // namespace bench
