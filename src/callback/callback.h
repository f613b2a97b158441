// bulkrcu/src/callback/callback.h: call_rcu (layer callback; includes base/, percpu/, gp/).
//
// Owner side: bulkrcu_call pushes the head onto this CPU's list (an rseq push, or a try-lock of
// the slot in the kLock mode). When the slot is held by the runtime thread, or the try-lock
// fails (another thread, or a signal handler interrupting this one), the head goes onto one
// shared overflow list with a lock-free push. It never blocks, allocates or waits for a lock.
//
// Runtime side (the runtime thread only, see runtime/): sweep() detaches every CPU's list and
// the overflow list, restores queueing order (pushes are LIFO), and appends the result as one
// segment tagged with a fresh grace-period cookie; invoke_ready() runs the segments whose cookie
// has elapsed, oldest first. A CPU's callbacks therefore run in the order they were queued.
#pragma once

#include <cstdint>

#include "bulkrcu/rcu.h"
#include "gp/gp.h"
#include "percpu/percpu.h"

namespace bulkrcu::detail::cb {

void call(bulkrcu_head* head, void (*func)(bulkrcu_head*)) noexcept;

// The two-argument kvfree fallback (the kernel's trick): `head` lies `offset` bytes into a
// malloc'ed object; the offset is stored in head->func, where no function can live (the first
// page of the address space is never mapped), and invocation frees the object.
inline constexpr std::uintptr_t kMaxHeadOffset = 4096;
void call_free_head(bulkrcu_head* head, std::uintptr_t offset) noexcept;
// The free of call_free_head's objects: free() unless a layer above installs its own (the
// cache layer does, so that kfree_rcu of a cache object goes back to its cache). Set once,
// before any thread retires (a load-time constructor).
extern void (*g_free_object)(void*) noexcept;

// ---- runtime side (single thread) ----
// True when a CPU list or the overflow list holds callbacks not yet swept (racy peek).
bool has_unswept() noexcept;
// Detaches everything queued so far into a new segment. Returns the segment's sweep number.
std::uint64_t sweep() noexcept;
// True when segments wait for their grace period; *cookie = the oldest one's cookie.
bool oldest_pending(unsigned long* cookie) noexcept;
// Invokes the segments whose cookie has elapsed; returns the highest sweep number whose
// segment (and every older one) has been invoked.
std::uint64_t invoke_ready() noexcept;
// True while the calling thread runs a callback.
bool in_callback() noexcept;

// After fork, in the child: the runtime thread's private segment queue is kept as is (its
// callbacks still run); nothing else to reset.

struct Stats {
  std::uint64_t queued;  // counted when swept
  std::uint64_t invoked;
  std::uint64_t overflow;    // pushes that took the shared overflow list
  std::uint64_t pending;     // swept, not yet invoked
  std::uint64_t head_frees;  // objects freed through call_free_head
};
Stats stats() noexcept;

}  // namespace bulkrcu::detail::cb
