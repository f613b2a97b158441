// bulkrcu-bench: tests of the option parser (options.h).
#include "options.h"

#include <gtest/gtest.h>

#include <vector>

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

}  // namespace
}  // namespace bench
