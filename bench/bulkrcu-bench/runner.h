// bulkrcu-bench: the process runner. Every case runs in a fresh copy of this program
// (/proc/self/exe --result-fd 3 --child key=value...), with the chosen allocator preloaded,
// and sends its result back over a pipe on descriptor 3.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "options.h"

namespace bench {

struct CaseResult {
  bool ok = false;
  std::string error;       // why not ok
  double seconds = 0;      // wall time of the child process
  double child_cpu_s = 0;  // CPU time the child used (wait4)
  // CPU time that other processes used while the child ran, in % of the machine (all CPUs):
  // busy time from /proc/stat minus the child's and this process's own. -1: unknown.
  double other_cpu_pct = -1;
  int attempts = 1;  // > 1: retried because other processes disturbed it (--retry-noisy)
  std::map<std::string, double> metrics;
  std::map<std::string, std::string> info;
  std::map<std::string, std::vector<std::vector<std::string>>> series;  // first row: column names
  std::map<std::string, std::vector<std::pair<double, std::uint64_t>>> hists;
};

// The shared object to preload for an allocator name ("" for glibc).
std::string alloc_library(const std::string& alloc);

// Runs one case in a child process; kills it after `timeout_s` seconds.
CaseResult run_case(const std::map<std::string, std::string>& params, const std::string& alloc,
                    int timeout_s);

// A run is "noisy" when other processes used more than this share of the machine's CPU time.
inline constexpr double kNoisyPct = 10.0;
inline bool noisy(const CaseResult& r) { return r.other_cpu_pct > kNoisyPct; }

// Parses the child's result stream (measure.h's ResultWriter format) into *r.
void parse_result(const std::string& text, CaseResult* r);

// The child side: runs the case described by o.child_params and returns the exit status.
int child_main(const Options& o);

}  // namespace bench
