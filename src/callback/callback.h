// bulkrcu/src/callback/callback.h: call_rcu (layer callback; includes base/, percpu/, gp/).
//
// Owner side: bulkrcu_call appends the head to this CPU's list (an rseq append onto a FIFO; in
// the kLock mode a compare-and-swap push onto a LIFO) and bumps this CPU's queued count. When the slot is
// held by the runtime thread, or the try-lock fails (another thread, or a signal handler interrupting this
// one), the head goes onto its lane's overflow list with a lock-free push. It never blocks,
// allocates or waits for a lock.
//
// Lanes. CPU c belongs to lane c % nr_lanes() (at most kMaxLanes). A lane is the unit of order
// and of parallel invocation: its callbacks run in queueing order, by one thread at a time; two
// lanes may run on two threads at once (runtime.h: lane l's worker, on lane l's CPUs). Callbacks queued on
// one CPU therefore run in the order they were queued, whichever thread runs them.
//
// Runtime side. sweep() (the runtime thread) detaches every CPU's list and the overflow lists,
// restores queueing order where a list is LIFO (the overflow lists, and the CPU lists in the
// kLock mode; with rseq a CPU list is taken whole, never walked), and appends one segment per
// lane, tagged with a
// fresh grace-period cookie, to the waiting queue. promote_ready() moves the segments whose
// cookie has elapsed onto their lane's ready queue. invoke_batch() (the runtime thread or an
// invocation worker) runs at most `budget` callbacks of one lane that no other thread is
// running, so that no thread spends long away from sweeping and grace periods.
//
// Segments come from a fixed pool: nothing here allocates. When the pool runs dry a new
// segment is merged into its lane's newest waiting one (its cookie raised, which only delays)
// or, with none, carried into the next sweep.
#pragma once

#include <cstddef>
#include <cstdint>

#include "bulkrcu/rcu.h"
#include "gp/gp.h"
#include "percpu/percpu.h"

namespace bulkrcu::detail::cb {

inline constexpr int kMaxLanes = 8;

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

// Number of lanes: min(possible CPUs, kMaxLanes).
int nr_lanes() noexcept;
// Tests: takes (true) or releases (false) CPU slot `cpu`'s lock, as a bulkrcu_call caller
// preempted inside its push would hold it.
void hold_slot_lock_for_test(int cpu, bool hold) noexcept;
// Tests: takes (true) or releases (false) the queue mutex, as an invocation worker updating a
// segment holds it.
void hold_queue_lock_for_test(bool hold) noexcept;

// ---- runtime side ----
// True when a CPU list, an overflow list or a carried chain holds callbacks not yet in a
// segment (racy peek).
bool has_unswept() noexcept;
// Runtime thread only. Detaches everything queued so far into new segments. Returns the sweep
// number.
std::uint64_t sweep() noexcept;
// True when segments wait for their grace period; *cookie = the oldest one's cookie.
bool oldest_pending(unsigned long* cookie) noexcept;
// Moves waiting segments whose cookie has elapsed to their lanes' ready queues.
void promote_ready() noexcept;
// Lanes (bit l: lane l) with ready callbacks that no thread is running (racy peek).
unsigned ready_lanes() noexcept;
// True when some lane has ready callbacks that no thread is running (racy peek).
bool has_ready() noexcept;
// Ready callbacks not yet invoked, in all lanes or in one (racy).
std::uint64_t ready_backlog() noexcept;
std::uint64_t ready_backlog(int lane) noexcept;
// Callbacks queued and not yet invoked, swept or not (racy).
std::uint64_t backlog() noexcept;
// True when the backlog is large enough that grace periods should be expedited and more
// invocation threads used.
bool backlog_high() noexcept;
// Bulkrcu's threads only (the runtime thread, invocation workers). Runs at most `budget` ready
// callbacks of one lane in `lanes_mask` (bit l: lane l) that no other thread is running; returns
// how many it ran (0: nothing to do). *through = the highest sweep number whose segments (and
// every older one's) have been invoked.
std::size_t invoke_batch(std::size_t budget, std::uint64_t* through, unsigned lanes_mask) noexcept;
// The highest sweep number whose segments (and every older one's) have been invoked.
std::uint64_t invoked_through() noexcept;
// promote_ready(), then one bounded invoke_batch() of a lane in `lanes_mask`; returns *through
// of it (runtime thread).
std::uint64_t invoke_ready(unsigned lanes_mask) noexcept;
// Callbacks one invoke_batch() runs at most.
std::size_t batch_limit() noexcept;
// True while the calling thread runs a callback.
bool in_callback() noexcept;

// Fork. The runtime's prepare handler calls before_fork() after it takes its driver mutex (the
// order the runtime thread takes the two): the queue mutex is then held across the fork, so the
// child never copies a segment, a lane or a counter half-updated by an invocation worker (the
// workers take the queue mutex without the driver mutex). after_fork_parent() releases it. In
// the child, the slot locks, the queue mutex and the lanes' busy flags are reset (their holders
// do not exist there). A batch a worker was running at the fork resumes after the callback that
// was running then (that one is not run in the child).
void before_fork() noexcept;
void after_fork_parent() noexcept;

struct Stats {
  std::uint64_t queued;  // counted by bulkrcu_call, per CPU
  std::uint64_t swept;
  std::uint64_t invoked;
  std::uint64_t overflow;    // pushes that took an overflow list
  std::uint64_t pending;     // queued, not yet invoked
  std::uint64_t head_frees;  // objects freed through call_free_head
};
Stats stats() noexcept;

}  // namespace bulkrcu::detail::cb
