// bulkrcu/src/runtime/runtime.h: the one place that owns background threads (layer runtime,
// the top of src/; includes every layer below).
//
// One runtime thread ("bulkrcu-rt") runs the loop: sweep the callback lists into a segment,
// drive the grace period the oldest segment and any bulkrcu_start_poll() request need, invoke
// ready callbacks, publish barrier progress, and sleep on the gp doorbell when idle.
// It starts when the library loads and, in a fork child, at the first call that needs it.
#pragma once

#include <sched.h>

#include <atomic>
#include <cstdint>

#include "base/base.h"

namespace bulkrcu::detail::runtime {

// started: 0 none, 1 starting, 2 running. Reset to 0 in a fork child.
extern std::atomic<int> g_started;
void start_slow() noexcept;

// Starts the runtime thread if this process (or this fork child) has none yet. One load and
// a branch once it runs (inline: every retire calls it).
BULKRCU_ALWAYS_INLINE void ensure_started() noexcept {
  if (BULKRCU_LIKELY(g_started.load(std::memory_order_acquire) == 2)) return;
  start_slow();
}

// Waits until every callback queued before the call has been invoked.
void callback_barrier() noexcept;

// True on the runtime thread.
bool on_runtime_thread() noexcept;

// ---- invocation threads: the runtime thread, and one worker per lane at most, started on demand
// when that lane's ready backlog outgrows two batches (see callback.h's lanes). Worker l runs
// lane l alone, on lane l's CPUs; the runtime thread runs the lanes that have no worker. For
// layers that map other APIs (liburcu's call_rcu_data) onto bulkrcu's invocation threads.
// Threads that invoke callbacks now: the runtime thread (once started) plus workers.
int invocation_threads() noexcept;
// Upper bound on invocation threads, clamped to [1, cb::kMaxLanes + 1]; default: the runtime
// thread plus one worker per lane. With n, only lanes 0 .. n-2 get a worker. Lowering it stops
// no running worker.
void set_max_invocation_threads(int n) noexcept;
int max_invocation_threads() noexcept;
// Pins invocation thread i (0: the runtime thread, i >= 1: lane i-1's worker, started now if
// missing) to `set`. Returns 0 or an errno value (EINVAL for a bad index: i > lanes; EAGAIN if
// the worker cannot start).
int pin_invocation_thread(int i, const cpu_set_t* set) noexcept;
// Batches the runtime thread ran of a lane whose worker had not taken it for 10 ms.
std::uint64_t worker_takeovers() noexcept;
#ifdef BULKRCU_TESTING
// Tests: workers stop taking batches (each waits on its bell, 1 ms at a time), as workers whose
// CPUs are taken by threads of a real-time class would.
void pause_workers_for_test(bool pause) noexcept;
#endif

}  // namespace bulkrcu::detail::runtime
