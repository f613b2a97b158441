// bulkrcu-bench: tests of the option parser (options.h).
#include "options.h"

#include <gtest/gtest.h>

#include <vector>

#include "report.h"

namespace bench {
namespace {

std::string parse(std::vector<const char*> args, Options* o) {
  args.insert(args.begin(), "bulkrcu-bench");
  return parse_options(static_cast<int>(args.size()), args.data(), o);
}

TEST(Options, Defaults) {
  Options o;
  ASSERT_EQ(parse({}, &o), "");
  EXPECT_TRUE(o.workloads.empty());
  EXPECT_TRUE(o.impls.empty());
  EXPECT_EQ(o.suite, "default");
  EXPECT_EQ(o.alloc, "glibc");
  EXPECT_EQ(o.threads, 2);
  EXPECT_EQ(o.reps, 0);
  EXPECT_FALSE(o.child);
}

TEST(Options, RepeatableAndCommaSeparatedFilters) {
  Options o;
  ASSERT_EQ(parse({"--workload", "flood", "--workload=latency,flood", "--impl", "free,urcu_call_rcu"}, &o),
            "");
  EXPECT_EQ(o.workloads, (std::vector<std::string>{"flood", "latency"}));
  EXPECT_EQ(o.impls, (std::vector<std::string>{"free", "urcu_call_rcu"}));
}

TEST(Options, SuitesAndValues) {
  Options o;
  ASSERT_EQ(parse({"--quick", "--reps", "7", "--duration", "0.25", "--threads=3", "--readers", "8", "--alloc",
                   "mimalloc", "--out", "d", "--timeout", "9", "--no-plots"},
                  &o),
            "");
  EXPECT_EQ(o.suite, "quick");
  EXPECT_EQ(o.reps, 7);
  EXPECT_DOUBLE_EQ(o.duration, 0.25);
  EXPECT_EQ(o.threads, 3);
  EXPECT_EQ(o.readers, 8);
  EXPECT_EQ(o.alloc, "mimalloc");
  EXPECT_EQ(o.out_dir, "d");
  EXPECT_EQ(o.timeout, 9);
  EXPECT_TRUE(o.no_plots);
  ASSERT_EQ(parse({"--tiny"}, &o), "");
  EXPECT_EQ(o.suite, "tiny");
}

TEST(Options, Errors) {
  Options o;
  EXPECT_EQ(parse({"--nope"}, &o), "unknown option '--nope' (see --help)");
  EXPECT_NE(parse({"--workload", "kfree"}, &o).find("unknown workload 'kfree'"), std::string::npos);
  EXPECT_NE(parse({"--impl", "free,bogus"}, &o).find("unknown impl 'bogus'"), std::string::npos);
  EXPECT_NE(parse({"--workload"}, &o).find("needs a name"), std::string::npos);
  EXPECT_NE(parse({"--workload", ","}, &o).find("needs a name"), std::string::npos);
  EXPECT_NE(parse({"--reps", "0"}, &o).find("--reps"), std::string::npos);
  EXPECT_NE(parse({"--reps", "3x"}, &o).find("--reps"), std::string::npos);
  EXPECT_NE(parse({"--threads", "0"}, &o).find("--threads"), std::string::npos);
  EXPECT_NE(parse({"--duration", "0"}, &o).find("--duration"), std::string::npos);
  EXPECT_NE(parse({"--duration", "nan"}, &o).find("--duration"), std::string::npos);
  EXPECT_NE(parse({"--alloc", "hoard"}, &o).find("unknown allocator 'hoard'"), std::string::npos);
  EXPECT_EQ(parse({"--list=1"}, &o), "--list takes no value");
  EXPECT_EQ(parse({"extra"}, &o), "unexpected argument 'extra' (see --help)");
}

TEST(Options, ValueThatLooksLikeAnOptionIsRefused) {
  Options o;
  EXPECT_EQ(parse({"--out", "--list"}, &o),
            "--out needs a value, not the option '--list' (a value cannot start with '-')");
  EXPECT_NE(parse({"--workload", "--impl", "free"}, &o).find("not the option '--impl'"), std::string::npos);
  EXPECT_NE(parse({"--reps", "-3"}, &o).find("not the option '-3'"), std::string::npos);
  EXPECT_NE(parse({"--alloc", "--quick"}, &o).find("not the option '--quick'"), std::string::npos);
  EXPECT_NE(parse({"--out=--x"}, &o).find("not the option '--x'"), std::string::npos);
  EXPECT_EQ(parse({"--out", "-"}, &o), "");  // a lone '-' is a name
}

TEST(Options, ContradictionsAreRefused) {
  Options o;
  EXPECT_EQ(parse({"--quick", "--tiny"}, &o), "--quick and --tiny contradict each other: pick one");
  EXPECT_EQ(parse({"--tiny", "--quick"}, &o), "--quick and --tiny contradict each other: pick one");
  EXPECT_EQ(parse({"--quick", "--quick"}, &o), "");
  EXPECT_NE(parse({"--list", "--out", "d"}, &o).find("--list only lists"), std::string::npos);
  EXPECT_NE(parse({"--workload", "flood", "--list"}, &o).find("--list only lists"), std::string::npos);
  EXPECT_NE(parse({"--no-plots"}, &o).find("--no-plots needs --out"), std::string::npos);
  EXPECT_EQ(parse({"--help", "--quick", "--tiny"}, &o), "--quick and --tiny contradict each other: pick one");
  EXPECT_EQ(parse({"--help", "--list", "--out", "d"}, &o), "");  // --help wins: nothing runs
}

TEST(Options, RetryNoisy) {
  Options o;
  ASSERT_EQ(parse({"--retry-noisy"}, &o), "");
  EXPECT_TRUE(o.retry_noisy);
  EXPECT_EQ(parse({"--retry-noisy=2"}, &o), "--retry-noisy takes no value");
}

TEST(Options, ErrorLeavesOutputUntouched) {
  Options o;
  o.threads = 5;
  EXPECT_NE(parse({"--threads", "2", "--bogus"}, &o), "");
  EXPECT_EQ(o.threads, 5);
}

TEST(Options, ChildParameters) {
  Options o;
  ASSERT_EQ(parse({"--result-fd", "3", "--child", "part=flood", "impl=call", "rate=5e+06"}, &o), "");
  EXPECT_TRUE(o.child);
  EXPECT_EQ(o.result_fd, 3);
  EXPECT_EQ(o.child_params.at("part"), "flood");
  EXPECT_EQ(o.child_params.at("rate"), "5e+06");
  EXPECT_NE(parse({"--child", "part=flood"}, &o), "");                // no result descriptor
  EXPECT_NE(parse({"--result-fd", "3", "--child", "oops"}, &o), "");  // not key=value
}

TEST(Options, HelpListsEveryWorkloadAndImplementation) {
  std::string u = usage();
  for (const auto& w : workload_names()) EXPECT_NE(u.find("  " + w + " "), std::string::npos) << w;
  for (const auto& i : impl_names()) EXPECT_NE(u.find("  " + i), std::string::npos) << i;
}

// ---- the tables' statistics (report.h) ----
CaseRuns runs_of(const Case& c, std::vector<double> v, const std::string& key = "x") {
  CaseRuns r{&c, {}};
  for (double x : v) {
    CaseResult res;
    res.ok = true;
    res.metrics[key] = x;
    res.other_cpu_pct = 1;
    r.runs.push_back(res);
  }
  return r;
}

WorkloadDef table_def() {
  WorkloadDef w;
  w.name = w.file = "t";
  w.title = "t";
  w.primary = "x";
  w.primary_header = "x ns";
  w.columns = {{"n", "count", false, true}};
  return w;
}

TEST(Report, OddRunsShowTheMedianThatRan) {
  WorkloadDef w = table_def();
  Case c{"t", "", "free", {}, 3, 1, ""};
  std::vector<CaseRuns> rows = {runs_of(c, {30, 10, 20})};
  std::string t = table_text(w, rows);
  EXPECT_NE(t.find("free    20  [10-30] !"), std::string::npos) << t;  // 30 > 2 x 10
  EXPECT_NE(t.find("medians"), std::string::npos);
}

TEST(Report, EvenRunsShowEveryValueNotAMidpoint) {
  WorkloadDef w = table_def();
  Case c{"t", "", "free", {}, 2, 1, ""};
  std::vector<CaseRuns> rows = {runs_of(c, {4.92, 0.00016})};
  std::string t = table_text(w, rows);
  EXPECT_NE(t.find("4.92 / 0.00016"), std::string::npos) << t;
  EXPECT_EQ(t.find("2.46"), std::string::npos) << t;  // the midpoint never ran
  EXPECT_NE(t.find("every value is shown"), std::string::npos) << t;
}

TEST(Report, CountsStayWholeAndSpreadWithin2xIsUnmarked) {
  WorkloadDef w = table_def();
  Case c{"t", "", "free", {}, 3, 1, ""};
  CaseRuns r = runs_of(c, {10, 11, 12});
  for (std::size_t i = 0; i < r.runs.size(); ++i) r.runs[i].metrics["n"] = 557 + static_cast<double>(i);
  std::vector<CaseRuns> rows = {r};
  std::string t = table_text(w, rows);
  EXPECT_NE(t.find(" 558 "), std::string::npos) << t;
  EXPECT_EQ(t.find("557.5"), std::string::npos) << t;
  EXPECT_EQ(t.find("] !"), std::string::npos) << t;
}

TEST(Report, RatioColumnsAreNamedAfterTheirRow) {
  WorkloadDef w = table_def();
  w.columns = {{"x", "x again", true}};
  Case f{"t", "", "free", {}, 3, 1, ""}, u{"t", "", "urcu_call_rcu", {}, 3, 1, ""};
  std::vector<CaseRuns> rows = {runs_of(f, {1, 1, 1}), runs_of(u, {4, 4, 4})};
  std::string t = table_text(w, rows);
  EXPECT_NE(t.find("/free  /urcu_call_rcu  x again (/urcu_call_rcu)"), std::string::npos) << t;
  EXPECT_NE(t.find("0.25x"), std::string::npos) << t;
}

TEST(Report, NoisyRunsAreMarked) {
  WorkloadDef w = table_def();
  Case c{"t", "", "free", {}, 3, 1, ""};
  CaseRuns r = runs_of(c, {1, 1, 1});
  r.runs[1].other_cpu_pct = 55;
  std::vector<CaseRuns> rows = {r};
  EXPECT_NE(table_text(w, rows).find("55 !"), std::string::npos);
}

}  // namespace
}  // namespace bench
