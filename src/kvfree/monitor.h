// bulkrcu/src/kvfree/monitor.h: the monitor: passes, batches, grace-period pacing, the kvfree
// barrier's stages (layer kvfree).
//
// Protocol. A pass runs with g_mon_mutex held (the runtime thread's full passes, and the lite
// passes of retiring threads under a try-lock: drive). Nothing waits for a grace period or runs
// a user deleter while holding it; what a pass leaves to free is freed after the unlock. Its
// steps, in order (monitor.cpp, monitor_pass_locked):
//   1 hand over: batches whose cookie has elapsed: free() blocks to their home CPU's
//     `incoming` list (kReady, counted in ready_objs) or, under pressure and during a
//     barrier, reclaimed by the pass's caller; user deleters' blocks to run_deleters; stolen
//     cursors whose help fence has passed (reclaim.h) back to their home CPUs
//   2 collect: the closed chain behind every front (one exchange: only the monitor changes a
//     front's link once it is front). Timer, barrier and pressure passes lock the slots and
//     fence every CPU (percpu.h) to also detach idle fronts, take idle ready lists and tend
//     the page caches; then magazines (magazine.h) and threads' cursors (reclaim.h)
//   3 cookies: collected blocks still kOpen get a fresh cookie (kWaiting); the collection
//     becomes one batch waiting for the newest cookie among them
//   4 barrier: the stage moves on (collect -> steal -> finish), each asking for the grace
//     period and the help fence the next waits for; the steal stage locks the slots again
//   5 grace period: the newest batch's cookie is requested, paced kGpPaceNs apart unless a
//     barrier or pressure asks; spare pages go back to the pool
// Invariants: batches are in collection order and their cookies do not decrease; a block is
// in at most one batch; a batch's blocks are touched after its cookie has elapsed only, and a
// stolen cursor's after its help fence has passed. While a barrier is in progress nothing new
// is handed over to a ready list or a cursor (a help in flight at the collection may still move
// a chain it took onto a ready list: the steal stage takes those), and lite passes leave
// elapsed batches alone.
#pragma once

#include <cstdint>

namespace bulkrcu::detail::kvfree {

// A retiring thread closed a block (flood detection): blocking forms whose pace is due make
// the monitor's pass themselves (drive); otherwise the first kick after a pass rings the
// runtime thread's doorbell (kNoSyscall: nudges it).
void kick_monitor(unsigned flags = 0) noexcept;
// A block was installed in an empty channel: a runtime thread sleeping without a timeout must
// arm its drain timer.
void arm_timer(unsigned flags) noexcept;
// After every pass: wakes throttled retires and barrier waiters.
void publish_progress() noexcept;
// The throttle's wait: kicks the monitor and waits until a pass has completed, or timeout_ns.
void kick_and_wait_for_pass(std::uint64_t timeout_ns) noexcept;
void init_monitor() noexcept;
void monitor_after_fork_child() noexcept;

}  // namespace bulkrcu::detail::kvfree
