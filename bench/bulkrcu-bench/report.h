// bulkrcu-bench: output. Tables of medians with spread and ratios on stdout, one CSV per
// workload table, and gnuplot plots.
#pragma once

#include <string>
#include <vector>

#include "runner.h"
#include "workloads.h"

namespace bench {

// All repetitions of one case.
struct CaseRuns {
  const Case* c;
  std::vector<CaseResult> runs;
};

// The table(s) of one workload definition, as printed on stdout and put in report.md.
std::string table_text(const WorkloadDef& w, const std::vector<CaseRuns>& runs);

// The last successful run of a case (the one whose series and histograms are plotted).
const CaseResult* last_ok(const CaseRuns& r);

// The row name of a case: what ran (the synchronize rows) or the implementation.
std::string row_name(const Case& c);

// What report.md holds: where and how the run was made, the tables, the plots.
struct Report {
  std::string command, commit, versions, machine, suite, load_start, load_end, elapsed, summary;
  std::vector<std::string> warnings, tables, pngs;
};
// Writes DIR/report.md.
void write_report(const Report& r, const std::string& dir);

// Writes DIR/<file>.csv (one row per run), series / histogram data files, and gnuplot
// scripts; returns the data files written.
std::vector<std::string> write_csv(const WorkloadDef& w, const std::vector<CaseRuns>& runs,
                                   const std::string& dir);

// plots.cpp: writes the gnuplot scripts for everything written so far and runs gnuplot on them unless
// `run` is false. Returns the PNG files made (or, when gnuplot fails, an empty list and a
// message in *error).
std::vector<std::string> make_plots(const std::vector<WorkloadDef>& defs,
                                    const std::vector<std::vector<CaseRuns>>& runs, const std::string& dir,
                                    bool run, std::string* error);

// Median and range of the values of `key` over the successful runs; false when none has it.
struct Stat {
  double median, min, max;
  int n;
  bool median_ran;  // n is odd: the median is one of the values (else: the midpoint of two)
};
bool stat_of(const CaseRuns& r, const std::string& key, Stat* s);

// Compact number formatting for tables.
std::string fmt(double v);

}  // namespace bench
