// bulkrcu-bench: command-line options.
//
// parse_options() never exits: it returns an error string for the caller to print (exit
// status 2), so that the parser is testable on its own (options_test.cpp).
#pragma once

#include <map>
#include <string>
#include <vector>

namespace bench {

struct Options {
  std::vector<std::string> workloads;  // empty: all
  std::vector<std::string> impls;      // empty: all
  std::string suite = "default";       // default | quick | tiny
  std::string alloc = "glibc";         // glibc | jemalloc | tcmalloc | mimalloc
  std::string out_dir;                 // empty: no CSV or plots
  int reps = 0;                        // 0: the suite's
  int threads = 2;                     // kfree-scale threads
  int readers = 4;                     // read-mostly threads
  double duration = 0;                 // seconds; 0: the suite's
  int timeout = 300;                   // seconds per case before the child is killed
  bool help = false;
  bool list = false;
  bool no_plots = false;
  bool retry_noisy = false;  // rerun a run that other processes disturbed (up to 2 times)
  // Hidden: run one case in this process and write its result to result_fd.
  bool child = false;
  int result_fd = -1;
  std::map<std::string, std::string> child_params;
};

// Names known to the program (workloads.cpp); parse_options checks --workload and --impl
// against them.
const std::vector<std::string>& workload_names();
const std::vector<std::string>& impl_names();
const std::vector<std::string>& alloc_names();
// One line describing an implementation, for --help.
std::string impl_description(const std::string& name);

// Parses argv[1..argc-1] into *out. Returns "" on success, else a one-line message: an
// unknown option, a bad value, a value that looks like an option (`--out --list`), or two
// options that contradict each other (`--quick --tiny`).
std::string parse_options(int argc, const char* const* argv, Options* out);

// The --help text.
std::string usage();

}  // namespace bench
