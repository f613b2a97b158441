// bulkrcu/src/kvfree/kvfree.h: kvfree_rcu for user space (layer kvfree; includes base/,
// percpu/, gp/ and callback/; the page pool through its public header).
//
// Retired pointers go into per-CPU blocks: one pool page holding a Block header and an array
// of pointers, one block per deleter channel at the front of each CPU's Krc slot. One grace
// period covers a whole block; once it has elapsed, the block's deleter runs over its pointers
// in small steps on threads that keep retiring (each frees about as many as it retires, so its
// allocator caches stay warm), and the runtime thread frees only what no retiring thread will
// (idle CPUs, barriers). Retiring threads also make the monitor's passes when they can
// (drive_if_late, and kick_monitor in monitor.cpp).
//
// The block layout and its life cycle are in block.h; each protocol has its own file and a
// protocol comment at its top (docs/KVFREE.md, "Where each protocol lives").
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/base.h"
#include "bulkrcu/rcu.h"
#include "bulkrcu/stats.h"
#include "kvfree/block.h"
#include "percpu/percpu.h"

namespace bulkrcu::detail::kvfree {

// Slow paths (out of line).
// kMayBlock: the blocking fallbacks and back-pressure are allowed. kNoWait: never block (no
// in-place allocation, no grace-period wait). kNoSyscall: no system call either (the doorbell
// is nudged instead of rung). kHelp: this thread may free() ready pointers of the free()
// channel (never a user deleter: those run on the runtime thread, run_deleters), so it must
// not be a signal handler. `size` (C++ retire: sizeof(T)) is the bytes of every object of the
// channel's block this call installs; 0: unknown (then malloc_usable_size for the free()
// channel, the object bound for the others).
enum : unsigned { kMayBlock = 1u, kNoWait = 2u, kNoSyscall = 4u, kHelp = 8u };
BULKRCU_NOINLINE bool retire_slow(Deleter fn, void* ptr, unsigned flags, std::size_t size = 0) noexcept;
BULKRCU_NOINLINE void help(unsigned flags) noexcept;

// Every kHelpEvery-th pointer stored on a CPU makes the storing thread free up to
// kHelpBatch ready pointers of its cursor (glibc's tcache holds 7 chunks per size class). Test
// builds: every 2nd store, their blocks holding 4 pointers.
inline constexpr long kHelpEvery = BULKRCU__KV_HELP_EVERY;
static_assert(kMayBlock == BULKRCU__KV_MAY_BLOCK && kNoWait == BULKRCU__KV_NO_WAIT &&
              kHelp == BULKRCU__KV_HELP);

// Turns the rseq fast path on (bulkrcu__kv_fast, include/bulkrcu/rcu.h) when the process runs
// in rseq mode: the runtime layer calls it after starting the thread, and with false in a fork
// child until the thread restarts. One load replaces three checks on every retire.
void enable_fast_path(bool on) noexcept;

// The retire fast path (the same code the public header inlines). False: nothing was stored,
// the caller runs retire_slow.
BULKRCU_ALWAYS_INLINE bool retire_fast(Deleter fn, void* ptr, unsigned flags) noexcept {
#if BULKRCU_HAVE_RSEQ_ASM && !BULKRCU_TSAN
  return bulkrcu__kv_try(fn, ptr, flags);  // the magazine, then this CPU's block
#else
  // Under TSan: the magazine only (its protocol is atomics TSan follows, magazine.h); the
  // per-CPU store runs in retire_slow, which annotates it.
  (void)flags;
  const long r = bulkrcu__mag_store(fn, ptr);
  if (r > 0 && (flags & kHelp) && r % kHelpEvery == 0) help(flags);
  return r > 0;
#endif
}

BULKRCU_ALWAYS_INLINE bool retire(Deleter fn, void* ptr, unsigned flags, std::size_t size = 0) noexcept {
  return retire_fast(fn, ptr, flags) || retire_slow(fn, ptr, flags, size);
}

void kfree_head(void* ptr, bulkrcu_head* head) noexcept;
void barrier() noexcept;
// Runs the user deleters (channels other than free()) whose grace period has elapsed, and the
// last-resort deleters of retires that found no page, on the calling thread, through
// base/user_code.h inside a read-side critical section; publishes a kvfree barrier whose
// blocks have all run. The runtime thread calls it after each pass, with no lock held;
// bulkrcu_kvfree_reclaim() on any thread. Returns the number of deleters run.
std::size_t run_deleters() noexcept;
// True when run_deleters() has work.
bool deleters_pending() noexcept;
// exit(): after it returns no user deleter starts, and none is running (except on the calling
// thread). Pending objects are left to the OS.
void quiesce() noexcept;
void memory_pressure() noexcept;

// ---- runtime thread ----
// One monitor pass: hand elapsed blocks to busy CPUs or reclaim them, collect closed blocks
// (and, on the drain timer, idle fronts and ready lists), tag cookies, request the grace
// period. A pending kvfree barrier makes it a full pass that waits and reclaims everything.
void monitor_pass() noexcept;
// A retiring thread found nothing to free: if the runtime thread has made no pass for a while,
// make a lite pass here (hand over elapsed blocks, collect closed ones, and run their grace
// period if that needs no waiting). Never waits; a few system calls at most. Outside readers.
void drive_if_late() noexcept;
void before_fork() noexcept;
void after_fork_parent() noexcept;
// True when monitor_pass() has something to do now.
bool has_work() noexcept;
// Nanoseconds until the drain timer needs a pass (0: nothing is pending anywhere).
std::uint64_t next_timeout_ns() noexcept;
void after_fork_child() noexcept;

// Fills the kv_* fields of a bulkrcu_stats snapshot (include/bulkrcu/stats.h).
void fill_stats(bulkrcu_stats* s) noexcept;

// For tests: whether the calling thread holds a reclaim cursor (a ready block it frees from).
bool thread_has_cursor() noexcept;
// For tests: pages the emergency reserve holds now (pool pages that bulkrcu_page_pool_shrink
// moves but never gives back).
int reserve_pages() noexcept;

}  // namespace bulkrcu::detail::kvfree
