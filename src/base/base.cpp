#include "base/base.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

extern "C" {
int bulkrcu__reader_fence = 1;  // declared in include/bulkrcu/rcu.h
}

namespace bulkrcu::detail {

namespace {

// Parses the kernel's CPU list format ("0-3,8-11") and returns highest index + 1.
int parse_cpu_list(const char* s) {
  int highest = -1;
  while (*s) {
    char* end = nullptr;
    long a = strtol(s, &end, 10);
    if (end == s) break;
    long b = a;
    s = end;
    if (*s == '-') {
      ++s;
      b = strtol(s, &end, 10);
      if (end == s) break;
      s = end;
    }
    if (b > highest) highest = static_cast<int>(b);
    while (*s == ',' || *s == '\n' || *s == ' ') ++s;
  }
  return highest + 1;
}

int read_possible_cpus() {
  int n = 0;
  int fd = open("/sys/devices/system/cpu/possible", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    char buf[256];
    ssize_t r = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (r > 0) {
      buf[r] = '\0';
      n = parse_cpu_list(buf);
    }
  }
  long conf = sysconf(_SC_NPROCESSORS_CONF);
  if (conf > n) n = static_cast<int>(conf);
#ifdef BULKRCU_TESTING
  // Test builds may pretend to have more possible CPUs than the machine (every per-CPU array,
  // sweep and pass then covers CPUs that never run anything): BULKRCU_TEST_POSSIBLE_CPUS=256.
  if (const char* v = getenv("BULKRCU_TEST_POSSIBLE_CPUS")) {
    long want = strtol(v, nullptr, 10);
    if (want > n && want <= 4096) n = static_cast<int>(want);
  }
#endif
  return n < 1 ? 1 : n;
}

char ascii_lower(char ch) { return ch >= 'A' && ch <= 'Z' ? static_cast<char>(ch - 'A' + 'a') : ch; }

bool equals_nocase(const char* a, const char* b) {
  for (; *a && *b; ++a, ++b)
    if (ascii_lower(*a) != ascii_lower(*b)) return false;
  return *a == *b;
}

// Digits, then (kSize) an optional K/M/G with an optional B or iB; nothing else.
bool parse_number(const EnvSpec& spec, const char* s, std::uint64_t* out, const char** why) {
  if (*s == '-') return *why = "negative", false;
  if (*s < '0' || *s > '9') return *why = "not a decimal integer", false;
  std::uint64_t v = 0;
  bool overflow = false;
  for (; *s >= '0' && *s <= '9'; ++s) {
    const unsigned d = static_cast<unsigned>(*s - '0');
    if (v > (UINT64_MAX - d) / 10) overflow = true;
    v = v * 10 + d;
  }
  if (spec.kind == EnvKind::kSize && *s) {
    unsigned shift = 0;
    switch (ascii_lower(*s)) {
      case 'k':
        shift = 10;
        break;
      case 'm':
        shift = 20;
        break;
      case 'g':
        shift = 30;
        break;
      default:
        break;
    }
    if (shift) {
      ++s;
      if (equals_nocase(s, "b") || equals_nocase(s, "ib")) s += strlen(s);
      if (!overflow && v > (UINT64_MAX >> shift)) overflow = true;
      v <<= shift;
    }
  }
  if (*s) {
    if (*s == '.' || *s == ',') return *why = "a fraction is not accepted", false;
    if (*s == 'e' || *s == 'E') return *why = "an exponent is not accepted", false;
    if ((*s == 'x' || *s == 'X') && v == 0 && s[-1] == '0')
      return *why = "hexadecimal is not accepted", false;
    return *why = "unexpected characters after the number", false;
  }
  if (overflow || v < spec.min || v > spec.max) return *why = "out of range", false;
  *out = v;
  return true;
}

bool parse_bool(const char* s, std::uint64_t* out, const char** why) {
  static const char* const kTrue[] = {"1", "true", "yes", "on"};
  static const char* const kFalse[] = {"0", "false", "no", "off"};
  for (const char* t : kTrue)
    if (equals_nocase(s, t)) return *out = 1, true;
  for (const char* f : kFalse)
    if (equals_nocase(s, f)) return *out = 0, true;
  *why = "not a boolean";
  return false;
}

// The variables in Config; load_config() reads them by index.
enum : std::size_t {
  kStall,
  kNoRseq,
  kNoMembarrier,
  kDrain,
  kMaxPending,
  kMaxPendingObjects,
  kPoolDebug,
  kNrSpecs
};
constexpr EnvSpec kSpecs[kNrSpecs] = {
    {"BULKRCU_STALL_TIMEOUT", EnvKind::kUint, 21, 1, 86400, "seconds"},
    {"BULKRCU_NO_RSEQ", EnvKind::kBool, 0, 0, 1, nullptr},
    {"BULKRCU_NO_MEMBARRIER", EnvKind::kBool, 0, 0, 1, nullptr},
    {"BULKRCU_DRAIN_MS", EnvKind::kUint, 100, 1, 60000, "milliseconds"},
    {"BULKRCU_MAX_PENDING", EnvKind::kSize, 64ull << 20, 4096, 1ull << 40, "bytes"},
    {"BULKRCU_MAX_PENDING_OBJECTS", EnvKind::kSize, 1ull << 20, 1, 1ull << 30, "objects"},
#ifdef BULKRCU_TESTING
    {"BULKRCU_POOL_DEBUG", EnvKind::kBool, 1, 0, 1, nullptr},  // test builds check by default
#else
    {"BULKRCU_POOL_DEBUG", EnvKind::kBool, 0, 0, 1, nullptr},
#endif
};

Config load_config() {
  Config c{};
  c.stall_timeout_ns = env_read(kSpecs[kStall]) * 1000000000ull;
  c.no_rseq = env_read(kSpecs[kNoRseq]) != 0;
  c.no_membarrier = env_read(kSpecs[kNoMembarrier]) != 0;
  c.drain_ns = env_read(kSpecs[kDrain]) * 1000000ull;
  c.max_pending_bytes = env_read(kSpecs[kMaxPending]);
  c.max_pending_objects = env_read(kSpecs[kMaxPendingObjects]);
  c.pool_debug = env_read(kSpecs[kPoolDebug]) != 0;
  return c;
}

std::atomic<std::uint64_t> g_stall_override{0};
bool g_has_membarrier = false;  // set once, by the load-time constructor below
std::atomic<std::uint32_t> g_doorbell{0};
std::atomic<std::uint32_t> g_polling{0};

// Priority 101 (0-100 belong to the implementation): before any other bulkrcu constructor.
__attribute__((constructor(101))) void base_init() {
  if (config().no_membarrier) return;
  long mask = subtle::membarrier(MEMBARRIER_CMD_QUERY, 0, 0);
  if (mask < 0 || !(mask & MEMBARRIER_CMD_PRIVATE_EXPEDITED)) return;
  if (subtle::membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) != 0) return;
  g_has_membarrier = true;
  // Order: heavy_fence() switches to membarrier before any light fence is dropped.
  __atomic_store_n(&bulkrcu__reader_fence, 0, __ATOMIC_SEQ_CST);
}

}  // namespace

bool membarrier_ready() noexcept { return g_has_membarrier; }

void heavy_fence() noexcept {
  if (g_has_membarrier && subtle::membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0)
    fatal("membarrier(PRIVATE_EXPEDITED) failed after a successful registration");
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

std::atomic<std::uint32_t>* doorbell_word() noexcept { return &g_doorbell; }

void doorbell_nudge() noexcept {
  if (!g_polling.load(std::memory_order_relaxed)) g_polling.store(1, std::memory_order_relaxed);
}

std::uint64_t doorbell_poll_ns() noexcept {
  return g_polling.load(std::memory_order_relaxed) ? kNudgePollNs : kIdlePollNs;
}

void doorbell_ring() noexcept {
  if (g_doorbell.exchange(0, std::memory_order_relaxed) != 0) subtle::futex_wake(&g_doorbell, 1);
}

namespace {
constinit Once<int> g_possible_cpus;
constinit Once<Config> g_config;
}  // namespace

void once_wait(unsigned round) noexcept {
  if (round < 64)
    cpu_relax();
  else
    sched_yield();
}

int possible_cpus() noexcept { return g_possible_cpus.get(read_possible_cpus); }

std::uint64_t now_ns() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

void sleep_ns(std::uint64_t ns) noexcept {
  timespec ts{static_cast<time_t>(ns / 1000000000ull), static_cast<long>(ns % 1000000000ull)};
  nanosleep(&ts, nullptr);
}

namespace {
__thread bool t_latency_sensitive __attribute__((tls_model("initial-exec"))) = false;
}

bool become_latency_sensitive() noexcept {
  prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
#ifdef SYS_sched_setattr
  struct {  // struct sched_attr (the libc of this platform does not declare it)
    std::uint32_t size, sched_policy;
    std::uint64_t sched_flags;
    std::int32_t sched_nice;
    std::uint32_t sched_priority;
    std::uint64_t sched_runtime, sched_deadline, sched_period;
  } attr{};
  attr.size = sizeof attr;
  attr.sched_policy = 0;        // SCHED_OTHER
  attr.sched_runtime = 100000;  // ns: the requested slice (the kernel's minimum)
  t_latency_sensitive = syscall(SYS_sched_setattr, 0, &attr, 0u) == 0;
#endif
  return t_latency_sensitive;
}

bool latency_sensitive() noexcept { return t_latency_sensitive; }

int this_tid() noexcept { return static_cast<int>(syscall(SYS_gettid)); }

void fatal(const char* msg) noexcept {
  static const char prefix[] = "bulkrcu: ";
  ssize_t ignored = write(2, prefix, sizeof prefix - 1);
  ignored = write(2, msg, strlen(msg));
  ignored = write(2, "\n", 1);
  (void)ignored;
  abort();
}

void log_warning(const char* fmt, ...) noexcept {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (n >= static_cast<int>(sizeof buf)) n = sizeof buf - 1;
  ssize_t ignored = write(2, buf, static_cast<size_t>(n));
  (void)ignored;
}

const Config& config() noexcept { return g_config.get(load_config); }

Config read_config() noexcept { return load_config(); }

EnvSpecs config_specs() noexcept { return {kSpecs, kNrSpecs}; }

bool env_parse(const EnvSpec& spec, const char* s, std::uint64_t* out, const char** why) noexcept {
  const char* ignored = nullptr;
  if (!why) why = &ignored;
  if (!s) return *why = "unset", false;
  return spec.kind == EnvKind::kBool ? parse_bool(s, out, why) : parse_number(spec, s, out, why);
}

std::uint64_t env_read(const EnvSpec& spec) noexcept {
  const char* v = getenv(spec.name);
  if (!v || !*v) return spec.def;
  std::uint64_t out = 0;
  const char* why = nullptr;
  if (env_parse(spec, v, &out, &why)) return out;
  // One write(2): the whole message, the value cut to 64 characters.
  if (spec.kind == EnvKind::kBool)
    log_warning(
        "bulkrcu: ignoring %s=\"%.64s\" (%s): expected 1/0, true/false, yes/no or on/off; "
        "keeping the default %s\n",
        spec.name, v, why, spec.def ? "1" : "0");
  else if (spec.kind == EnvKind::kSize)
    log_warning(
        "bulkrcu: ignoring %s=\"%.64s\" (%s): expected a whole number of %s in [%llu, %llu], "
        "optionally with a K, M or G suffix (KB/MB/GB and KiB/MiB/GiB too, all powers of "
        "1024); keeping the default %llu\n",
        spec.name, v, why, spec.unit, static_cast<unsigned long long>(spec.min),
        static_cast<unsigned long long>(spec.max), static_cast<unsigned long long>(spec.def));
  else
    log_warning(
        "bulkrcu: ignoring %s=\"%.64s\" (%s): expected a whole number of %s in [%llu, %llu]; "
        "keeping the default %llu\n",
        spec.name, v, why, spec.unit, static_cast<unsigned long long>(spec.min),
        static_cast<unsigned long long>(spec.max), static_cast<unsigned long long>(spec.def));
  return spec.def;
}

std::uint64_t env_uint(const char* name, std::uint64_t def, std::uint64_t min, std::uint64_t max,
                       const char* unit) noexcept {
  return env_read(EnvSpec{name, EnvKind::kUint, def, min, max, unit});
}

std::uint64_t env_size(const char* name, std::uint64_t def, std::uint64_t min, std::uint64_t max) noexcept {
  return env_read(EnvSpec{name, EnvKind::kSize, def, min, max, "bytes"});
}

bool env_bool(const char* name, bool def) noexcept {
  return env_read(EnvSpec{name, EnvKind::kBool, def ? 1u : 0u, 0, 1, nullptr}) != 0;
}

void set_stall_timeout_ns(std::uint64_t ns) noexcept {
  g_stall_override.store(ns, std::memory_order_relaxed);
}

std::uint64_t stall_timeout_ns() noexcept {
  std::uint64_t o = g_stall_override.load(std::memory_order_relaxed);
  return o ? o : config().stall_timeout_ns;
}

namespace subtle {

long membarrier(int cmd, unsigned flags, int cpu_id) noexcept {
  return syscall(__NR_membarrier, cmd, flags, cpu_id);
}

long futex_wait(std::atomic<std::uint32_t>* addr, std::uint32_t expected, std::uint64_t timeout_ns) noexcept {
  timespec ts{};
  timespec* tsp = nullptr;
  if (timeout_ns) {
    ts.tv_sec = static_cast<time_t>(timeout_ns / 1000000000ull);
    ts.tv_nsec = static_cast<long>(timeout_ns % 1000000000ull);
    tsp = &ts;
  }
  return syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(addr), FUTEX_WAIT_PRIVATE, expected, tsp,
                 nullptr, 0);
}

long futex_wake(std::atomic<std::uint32_t>* addr, int count) noexcept {
  return syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(addr), FUTEX_WAKE_PRIVATE, count, nullptr,
                 nullptr, 0);
}

}  // namespace subtle
}  // namespace bulkrcu::detail
