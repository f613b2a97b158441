// bulkrcu/src/base/base.h: the bottom layer's umbrella header.
//
// Owns compiler hints, the cache-line size, the possible-CPU count, thin wrappers over the
// membarrier and futex system calls, clocks and the environment configuration. Includes no
// other layer.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <ctime>

#include "bulkrcu/export.h"

#define BULKRCU_LIKELY(x) __builtin_expect(!!(x), 1)
#define BULKRCU_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define BULKRCU_NOINLINE __attribute__((noinline))
#define BULKRCU_ALWAYS_INLINE inline __attribute__((always_inline))
#define BULKRCU_INITIAL_EXEC __attribute__((tls_model("initial-exec")))

#if defined(__SANITIZE_THREAD__)
#define BULKRCU_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define BULKRCU_TSAN 1
#endif
#endif
#ifndef BULKRCU_TSAN
#define BULKRCU_TSAN 0
#endif

extern "C" BULKRCU_API int bulkrcu__reader_fence;  // 1 until membarrier registration succeeds

namespace bulkrcu::detail {

inline constexpr std::size_t kCacheLine = 64;

// Compiler-only barrier: orders the compiler, emits no instruction.
BULKRCU_ALWAYS_INLINE void compiler_barrier() { std::atomic_signal_fence(std::memory_order_seq_cst); }

BULKRCU_ALWAYS_INLINE void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  compiler_barrier();
#endif
}

// Number of possible CPUs (/sys/devices/system/cpu/possible), not the online count: CPUs may
// come online later and every per-CPU array is sized once. Never less than 1.
int possible_cpus() noexcept;

// Monotonic clock in nanoseconds.
std::uint64_t now_ns() noexcept;

// Sleeps for `ns` nanoseconds (restarts on EINTR is not attempted: callers loop anyway).
void sleep_ns(std::uint64_t ns) noexcept;

// Makes the calling thread a latency-sensitive one: a short scheduler slice (EEVDF, Linux
// 6.12+: its wakeups preempt a busy CPU's task instead of waiting up to a full slice, about
// 3 ms) and a 1 us timer slack. Returns whether the kernel accepted the slice; older kernels
// reject it and nothing else changes. For the runtime thread only.
bool become_latency_sensitive() noexcept;
// Whether become_latency_sensitive() succeeded on the calling thread.
bool latency_sensitive() noexcept;

// The calling thread's kernel thread id.
int this_tid() noexcept;

// Aborts the process after printing "bulkrcu: <message>" to stderr. Async-signal-safe: uses
// write(2) and abort(3) only; `msg` is printed as is (no formatting).
[[noreturn]] void fatal(const char* msg) noexcept;

// Formats into a stack buffer and writes to stderr with a single write(2).
void log_warning(const char* fmt, ...) noexcept __attribute__((format(printf, 1, 2)));

// --- environment configuration (read once, on first use) ---------------------------------
// One strict parser for every BULKRCU_* variable. A value is taken only when it is, in full:
//   integer  decimal digits, no sign, no blanks, no "0x", no fraction or exponent, within the
//            variable's [min, max] (after the suffix);
//   size     an integer, optionally followed by K, M or G (also KB/MB/GB, KiB/MiB/GiB; any case;
//            all mean powers of 1024);
//   boolean  1/0, true/false, yes/no, on/off (any case).
// An unset or empty variable means the default. Anything else is refused with one message on
// stderr naming the variable, the value and what was expected, and the default is kept.
// Not async-signal-safe (getenv); call at initialisation or from config().
enum class EnvKind : std::uint8_t { kUint, kSize, kBool };
struct EnvSpec {
  const char* name;
  EnvKind kind;
  std::uint64_t def, min, max;  // bool: def is 0 or 1, min/max unused
  const char* unit;             // words for the message ("seconds", "bytes"; nullptr for bool)
};
// Pure parsers (no getenv, no message): true and *out set when `s` is valid for `spec`; else
// false with *why set to a short static reason ("not a number", "out of range", ...).
bool env_parse(const EnvSpec& spec, const char* s, std::uint64_t* out, const char** why) noexcept;
// getenv(spec.name), parsed by env_parse; refusals print one message and give spec.def.
std::uint64_t env_read(const EnvSpec& spec) noexcept;
// One-line readers for a variable outside Config (e.g. BULKRCU_MAX_PENDING_OBJECTS):
//   env_uint("BULKRCU_X", 1000, 1, 1u << 30, "objects")
std::uint64_t env_uint(const char* name, std::uint64_t def, std::uint64_t min, std::uint64_t max,
                       const char* unit) noexcept;
std::uint64_t env_size(const char* name, std::uint64_t def, std::uint64_t min, std::uint64_t max) noexcept;
bool env_bool(const char* name, bool def) noexcept;

// Every variable in Config, in one table (README's "Environment" table lists the same).
struct EnvSpecs {
  const EnvSpec* spec;
  std::size_t n;
};
EnvSpecs config_specs() noexcept;

void once_wait(unsigned round) noexcept;  // Once's wait: cpu_relax, then sched_yield

// A value computed on first use without the C++ runtime's static-local guard
// (__cxa_guard_acquire: the static library needs no libstdc++). The first caller computes it;
// a concurrent caller spins (then yields) until it is published. Constant-initialized, so it
// may live at namespace scope and be used from any constructor. `compute` must not use the
// same Once. Blocks: only while another thread computes. Async-signal-safe: only once computed.
template <class T>
class Once {
 public:
  template <class F>
  const T& get(F compute) noexcept {
    if (BULKRCU_LIKELY(state_.load(std::memory_order_acquire) == kReady)) return value_;
    return slow(compute);
  }

 private:
  static constexpr int kEmpty = 0, kBusy = 1, kReady = 2;
  template <class F>
  BULKRCU_NOINLINE const T& slow(F compute) noexcept {
    int expected = kEmpty;
    if (state_.compare_exchange_strong(expected, kBusy, std::memory_order_acquire)) {
      value_ = compute();
      state_.store(kReady, std::memory_order_release);
      return value_;
    }
    for (unsigned i = 0; state_.load(std::memory_order_acquire) != kReady; ++i) once_wait(i);
    return value_;
  }
  std::atomic<int> state_{kEmpty};
  T value_{};
};
struct Config {
  std::uint64_t stall_timeout_ns;     // BULKRCU_STALL_TIMEOUT (integer seconds 1..86400, default 21)
  bool no_rseq;                       // BULKRCU_NO_RSEQ (boolean) forces the try-lock fallback
  bool no_membarrier;                 // BULKRCU_NO_MEMBARRIER (boolean) forces fenced readers
  std::uint64_t drain_ns;             // BULKRCU_DRAIN_MS (integer milliseconds 1..60000, default 100)
  std::uint64_t max_pending_bytes;    // BULKRCU_MAX_PENDING (size 4K..1T, default 64M)
  bool pool_debug;                    // BULKRCU_POOL_DEBUG (boolean): the page pool's checks
  std::uint64_t max_pending_objects;  // BULKRCU_MAX_PENDING_OBJECTS (size 1..1G, default 1M)
};
const Config& config() noexcept;
// Parses the environment now (config() does it once and keeps the result). For tests.
Config read_config() noexcept;
// Test hook: replaces the stall timeout at run time.
void set_stall_timeout_ns(std::uint64_t ns) noexcept;
std::uint64_t stall_timeout_ns() noexcept;

// --- asymmetric fences ----------------------------------------------------------------------
// heavy_fence(): a full barrier on every CPU running a thread of this process
// (membarrier(PRIVATE_EXPEDITED) once registered at load time, else a plain full fence).
// light_fence(): its partner on hot paths; a compiler barrier when membarrier is registered,
// else a full fence. Readers use the same flag inline (bulkrcu__reader_fence in rcu.h).
bool membarrier_ready() noexcept;
void heavy_fence() noexcept;
BULKRCU_ALWAYS_INLINE void light_fence() noexcept {
  if (BULKRCU_UNLIKELY(__atomic_load_n(&::bulkrcu__reader_fence, __ATOMIC_RELAXED)))
    std::atomic_thread_fence(std::memory_order_seq_cst);
  else
    compiler_barrier();
}

// --- the runtime thread's doorbell ---------------------------------------------------------
// The runtime thread sets `sleeping` to kDoorbellIdle (or kDoorbellPaced), runs heavy_fence(),
// rechecks every source of work, then futex-waits on `sleeping`. A producer publishes its
// work, then ring_if_idle(): a light fence and one load; only when the runtime thread sleeps
// does it pay a futex wake. The asymmetric Dekker pair (light_fence here, heavy_fence there)
// guarantees that either the recheck sees the work or the producer sees sleeping != 0.
// kDoorbellPaced: the thread sleeps until its next callback grace period is due (a deadline
// it set itself); new callbacks need not wake it (doorbell_ring_if_idle_for_callbacks), any
// other producer does.
inline constexpr std::uint32_t kDoorbellIdle = 1;
inline constexpr std::uint32_t kDoorbellPaced = 2;
std::atomic<std::uint32_t>* doorbell_word() noexcept;
void doorbell_ring() noexcept;  // async-signal-safe: an exchange and at most one futex wake
BULKRCU_ALWAYS_INLINE void doorbell_ring_if_idle() noexcept {
  light_fence();
  if (BULKRCU_UNLIKELY(doorbell_word()->load(std::memory_order_relaxed) != 0)) doorbell_ring();
}
BULKRCU_ALWAYS_INLINE void doorbell_ring_if_idle_for_callbacks() noexcept {
  light_fence();
  if (BULKRCU_UNLIKELY(doorbell_word()->load(std::memory_order_relaxed) == kDoorbellIdle)) doorbell_ring();
}

// Producers that promise no system call (bulkrcu_alloc_page_lockless, bulkrcu_defer_nowait)
// cannot wake a sleeping runtime thread. They nudge instead: a relaxed store. An idle runtime
// thread never sleeps longer than kIdlePollNs, so the first nudge is seen within a second;
// from then on it polls every kNudgePollNs.
inline constexpr std::uint64_t kIdlePollNs = 1000000000;  // 1 s
inline constexpr std::uint64_t kNudgePollNs = 100000000;  // 100 ms
void doorbell_nudge() noexcept;
// Idle sleep bound for the runtime thread.
std::uint64_t doorbell_poll_ns() noexcept;

namespace subtle {
// Thin system-call wrappers. Callers: the percpu and gp layers (heavy side of asymmetric
// fences) and the runtime's sleeping threads. Each returns the raw syscall result.
long membarrier(int cmd, unsigned flags, int cpu_id) noexcept;
long futex_wait(std::atomic<std::uint32_t>* addr, std::uint32_t expected,
                std::uint64_t timeout_ns /* 0 = forever */) noexcept;
long futex_wake(std::atomic<std::uint32_t>* addr, int count) noexcept;
}  // namespace subtle

}  // namespace bulkrcu::detail
