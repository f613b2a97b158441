// bulkrcu-bench: the workloads.
//
// Child side: one function per (workload part, implementation), instantiated from templates
// in children.cpp and listed in the implementation table (impls.cpp).
// Parent side: each workload's cases (variants x implementations), repetition counts and
// table columns for a suite (workloads.cpp).
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "measure.h"
#include "options.h"

namespace bench {

// key=value parameters of one case, as passed to the child.
struct Params {
  std::map<std::string, std::string> kv;
  std::string str(const std::string& k) const;
  long num(const std::string& k) const;  // aborts with a message when missing or malformed
  double real(const std::string& k) const;
};

using ChildFn = void (*)(const Params&, ResultWriter&);

// One row of the implementation table.
struct ImplEntry {
  const char* name;
  const char* what;
  std::size_t obj_size;  // bytes allocated per retired object (8-byte payload)
  bool defers;           // false: frees at once, unsafe with readers (the floor)
  bool has_sync;
  ChildFn kfree_scale, flood, read_mostly, retire_latency, sync_latency, scale_retire, scale_sync;
  const char* sync_label;  // what synchronize calls in this implementation (plots, tables)
  bool flood_only;         // a row of the flood workload only (unless --impl names it)
};
const std::vector<ImplEntry>& impl_table();
const ImplEntry* find_impl(const std::string& name);

// ---- parent side ----
struct Column {
  std::string key;       // metric key written by the child
  std::string header;    // table header, with its unit
  bool ratio = false;    // also show the ratio to the workload's `ref` row
  bool integer = false;  // a count: printed as a whole number
};

struct Case {
  std::string workload, variant, impl;
  std::map<std::string, std::string> params;  // passed to the child (workload, impl included)
  int reps;
  double budget_s = 1;  // expected wall time of one run (progress ETA before the first run)
  std::string label;    // what ran, when the impl name does not say it (synchronize rows)
};

struct WorkloadDef {
  std::string name;                // what --workload selects
  std::string file;                // CSV / plot file stem
  std::string title;               // one line above the tables
  std::vector<std::string> notes;  // printed under the title
  std::string primary;             // key of the metric shown with spread and ratios
  std::string primary_header;
  std::string floor = "free", ref = "urcu_call_rcu";  // rows the ratio columns divide by
  bool integer_primary = false;
  std::vector<Column> columns;  // further medians
  std::vector<Case> cases;
};

// Sizes, durations and repetitions of a suite (workloads.cpp); exposed for the report.
std::string suite_summary(const Options& o);

std::vector<WorkloadDef> build_suite(const Options& o);

}  // namespace bench
