// bulkrcu/src/runtime/runtime.h: the one place that owns background threads (layer runtime,
// the top of src/; includes every layer below).
//
// One runtime thread ("bulkrcu-rt") runs the loop: sweep the callback lists into a segment,
// drive the grace period the oldest segment and any bulkrcu_start_poll() request need, invoke
// ready callbacks, publish barrier progress, and sleep on the gp doorbell when idle.
// It starts when the library loads and, in a fork child, at the first call that needs it.
#pragma once

#include <cstdint>

namespace bulkrcu::detail::runtime {

// Starts the runtime thread if this process (or this fork child) has none yet.
void ensure_started() noexcept;

// Waits until every callback queued before the call has been invoked.
void callback_barrier() noexcept;

// True on the runtime thread.
bool on_runtime_thread() noexcept;

}  // namespace bulkrcu::detail::runtime
