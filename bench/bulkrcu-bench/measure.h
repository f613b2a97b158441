// bulkrcu-bench: measurement helpers used inside a child process: clocks, process CPU time,
// resident memory, the allocator that serves malloc, a log-linear latency histogram, and the
// result stream written back to the parent.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "../clock.h"  // now_ns, process_cpu_ns

namespace bench {

// Resident set now (/proc/self/statm) and the peak so far (getrusage ru_maxrss), in bytes.
std::uint64_t rss_bytes();
std::uint64_t peak_rss_bytes();
// Which allocator serves malloc in this process: "glibc", "jemalloc", "tcmalloc", "mimalloc",
// decided from the library that defines the malloc symbol the program resolves to, and
// cross-checked with a symbol only that allocator exports.
std::string malloc_provider();

// Time-stamp counter, calibrated against CLOCK_MONOTONIC once per process.
inline std::uint64_t ticks() { return __builtin_ia32_rdtsc(); }
double ns_per_tick();

// Log-linear histogram of non-negative integers (ticks or ns): exact below 32, then 16
// sub-buckets per power of two (relative error under 6.25%).
class Histogram {
 public:
  Histogram() : counts_(64 * 16, 0) {}
  void add(std::uint64_t v) {
    ++counts_[index(v)];
    if (v > max_) max_ = v;
    ++n_;
  }
  std::uint64_t count() const { return n_; }
  std::uint64_t max() const { return max_; }
  // Upper bound of the bucket holding the q-quantile (0 <= q <= 1).
  std::uint64_t quantile(double q) const;
  // Non-empty buckets as (lower bound, count).
  std::vector<std::pair<std::uint64_t, std::uint64_t>> buckets() const;

 private:
  static unsigned index(std::uint64_t v) {
    if (v < 32) return static_cast<unsigned>(v);
    unsigned e = 63 - static_cast<unsigned>(__builtin_clzll(v));  // >= 5
    return (e - 3) * 16 + static_cast<unsigned>((v >> (e - 4)) & 15);
  }
  static std::uint64_t lower(unsigned i) {
    if (i < 32) return i;
    unsigned e = i / 16 + 3;
    return (std::uint64_t{16} | (i % 16)) << (e - 4);
  }
  static std::uint64_t upper(unsigned i) {
    if (i < 32) return i;
    unsigned e = i / 16 + 3;
    return lower(i) + (std::uint64_t{1} << (e - 4)) - 1;
  }
  std::vector<std::uint64_t> counts_;
  std::uint64_t max_ = 0, n_ = 0;
};

// The child's half of the result protocol: one record per line.
//   m <key> <value>                      a scalar metric
//   s <series> <v1> <v2> ...             a row of a series (the first row names the columns)
//   h <name> <lower> <count>             a histogram bucket
//   i <key> <text>                       an informational string (allocator, notes)
class ResultWriter {
 public:
  explicit ResultWriter(int fd);
  ~ResultWriter();
  void metric(const std::string& key, double v);
  void info(const std::string& key, const std::string& text);
  void row(const std::string& series, const std::vector<std::string>& cells);
  void row(const std::string& series, const std::vector<double>& cells);
  void histogram(const std::string& name, const Histogram& h, double scale);

 private:
  FILE* f_;
};

}  // namespace bench
