// bulkrcu/bench/clock.h: the clocks both benchmark programs read (bulkrcu-bench and the
// Google Benchmark programs in bench/micro), in nanoseconds.
#pragma once

#include <time.h>

#include <cstdint>

namespace bench {

inline std::uint64_t clock_ns(clockid_t clock) {
  timespec ts;
  clock_gettime(clock, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u + static_cast<std::uint64_t>(ts.tv_nsec);
}
inline std::uint64_t now_ns() { return clock_ns(CLOCK_MONOTONIC); }
// CPU time of the whole process (every thread, background threads of the libraries included).
inline std::uint64_t process_cpu_ns() { return clock_ns(CLOCK_PROCESS_CPUTIME_ID); }

}  // namespace bench
