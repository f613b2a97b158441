// bulkrcu/src/kvfree/kvfree.h: kvfree_rcu for user space (layer kvfree; includes base/,
// percpu/, gp/ and callback/; the page pool through its public header).
//
// Retired pointers go into per-CPU blocks: one pool page holding a Block header and an array
// of pointers, one block per deleter channel at the front of each CPU's Krc slot. One grace
// period covers a whole block; once it has elapsed, the block's deleter runs over its pointers
// in small steps on threads that keep retiring on that CPU (their allocator caches are warm),
// and the runtime thread frees only what no retiring thread will (idle CPUs, barriers).
//
// Block life cycle (owner of each state in brackets):
//   active  [this CPU: rseq appends; remote: the runtime thread under lock + fence]
//       front[ch] of a Krc; 0 <= nr <= cap; cookie == kCookieUnset
//   closed  [nobody appends: cap was set to 0 (sealed) or nr == cap (full)]
//       chained behind front[ch] through `next`; cookie: the grace period that covers every
//       pointer in it (set by the closing thread after the seal, or by the runtime thread)
//   waiting [runtime thread only] in the monitor's list until poll_state(cookie)
//   ready   [this CPU's ready list] done == nr; a retiring thread pops it (rseq) as its
//       reclaim cursor, the runtime thread takes idle lists
//   cursor  [the thread whose reader-slot word holds it] 0 <= done <= nr: ptrs[0, done) are
//       still to be freed, kHelpBatch at a time from the top; the runtime thread may steal it
//       (exchange the word, then wait a grace period) and hand it back to its CPU
//   empty   [whoever popped it] back to the CPU's page cache or to the pool
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/base.h"
#include "bulkrcu/rcu.h"
#include "kvfree/kvfree_rseq.h"
#include "percpu/percpu.h"

namespace bulkrcu::detail::kvfree {

using Deleter = void (*)(void*);

inline constexpr int kChannels = 16;              // active channels per CPU (hash of the deleter)
inline constexpr unsigned long kCookieUnset = 1;  // cookies are even
inline constexpr unsigned long kCookieReady = 3;  // handed over: counted in Krc::ready_objs
#ifdef BULKRCU_TESTING
inline constexpr std::size_t kTestBlockCapacity = 4;  // reach every block-full path
#endif

// Invariant: 0 <= nr <= capacity; while active, nr only grows; cap == 0 means sealed.
struct Block {
  std::uint64_t nr;         // committed pointers (rseq commit target)
  std::uint64_t cap;        // room: capacity while active, 0 once sealed
  Deleter fn;               // channel: nullptr means free()
  Block* next;              // chain behind front / ready list / cache list
  unsigned long cookie;     // grace period covering every pointer (kCookieUnset until closed)
  std::uint64_t done;       // ready blocks: pointers [0, done) not yet claimed
  std::uint64_t est_bytes;  // pending-bytes estimate charged to the budget when closed
  std::uint64_t home;       // CPU slot the block was filled on
  void* ptrs[];             // capacity = (page_size - sizeof(Block)) / sizeof(void*)
};
static_assert(offsetof(Block, nr) == subtle::kNrOff && offsetof(Block, cap) == subtle::kCapOff &&
              offsetof(Block, fn) == subtle::kFnOff && sizeof(Block) == subtle::kPtrsOff);

// One per possible CPU (the kernel's kfree_rcu_cpu).
struct alignas(kCacheLine) Krc {
  SlotLock lock;  // offset 0 (percpu.h protocol)
  std::uint32_t pad_ = 0;
  Block* front[kChannels] = {};  // owner: rseq appends; remote: runtime thread under lock+fence
  Block* ready = nullptr;        // owner: rseq claims/pops; remote: runtime pushes/takes
  Block* cache = nullptr;        // empty pages; owner pops/pushes; runtime trims and refills
  // Blocks whose grace period has elapsed, pushed by the runtime thread without the slot's
  // lock (compare-and-swap); a helper that finds `ready` empty adopts the whole list.
  std::atomic<Block*> incoming{nullptr};
  // Backlog control: pointers handed over to this CPU (incoming or ready, wherever they were
  // adopted) and not yet freed, counted per block; above `behind_limit` (set by the monitor
  // from the size of its last hand-over) a helping thread frees a second batch per help.
  std::atomic<std::uint64_t> ready_objs{0};
  std::atomic<std::uint64_t> behind_limit{0};
};

extern std::atomic<Krc*> g_krcs;

BULKRCU_ALWAYS_INLINE std::size_t channel_of(Deleter fn) noexcept {
  return static_cast<std::size_t>((reinterpret_cast<std::uintptr_t>(fn) * 0x9E3779B97F4A7C15ull) >> 60);
}
BULKRCU_ALWAYS_INLINE std::size_t front_off(std::size_t ch) noexcept {
  return offsetof(Krc, front) + ch * sizeof(Block*);
}

// Slow paths (out of line).
// kMayBlock: the blocking fallbacks and back-pressure are allowed. kNoWait: never block (no
// in-place allocation, no grace-period wait). kNoSyscall: no system call either (the doorbell
// is nudged instead of rung). kHelp: this thread may run deleters (free) over ready pointers
// of its CPU, so it must not be a signal handler.
enum : unsigned { kMayBlock = 1u, kNoWait = 2u, kNoSyscall = 4u, kHelp = 8u };
BULKRCU_NOINLINE bool retire_slow(Deleter fn, void* ptr, unsigned flags) noexcept;
BULKRCU_NOINLINE void help(unsigned flags) noexcept;

// Every kHelpEvery-th pointer stored on a CPU makes the storing thread free up to
// kHelpBatch ready pointers of that CPU (glibc's tcache holds 7 chunks per size class).
#ifdef BULKRCU_TESTING
inline constexpr long kHelpEvery = 2;  // test blocks hold 4 pointers: nr reaches 2 and 4
#else
inline constexpr long kHelpEvery = 7;
#endif

// Non-null only while the rseq fast path may run: rseq mode, the slots exist, and the runtime
// thread runs (the runtime layer sets it after starting the thread and clears it in a fork
// child until the thread restarts). One load replaces three checks on every retire.
extern std::atomic<Krc*> g_fast_krcs;
void enable_fast_path(bool on) noexcept;

// The retire fast path: one load, about 16 instructions in the rseq sequence, and the help
// test. False: nothing was stored, the caller runs retire_slow.
BULKRCU_ALWAYS_INLINE bool retire_fast(Deleter fn, void* ptr, unsigned flags) noexcept {
#if BULKRCU_HAVE_RSEQ_ASM
  Krc* base = g_fast_krcs.load(std::memory_order_acquire);
  if (BULKRCU_LIKELY(base != nullptr)) {
#if BULKRCU_TSAN
    __tsan_release(&g_krcs);
#endif
    long r = subtle::rseq_store_ptr(base, sizeof(Krc), front_off(channel_of(fn)), reinterpret_cast<void*>(fn),
                                    ptr);
    if (BULKRCU_LIKELY(r > 0)) {
      // Only forms with kHelp free on this thread (freeing is not async-signal-safe). `flags`
      // is a constant at every call site, so the test folds away.
      if ((flags & kHelp) && BULKRCU_UNLIKELY(r % kHelpEvery == 0)) help(flags);
      return true;
    }
  }
#endif
  return false;
}

BULKRCU_ALWAYS_INLINE bool retire(Deleter fn, void* ptr, unsigned flags) noexcept {
  return retire_fast(fn, ptr, flags) || retire_slow(fn, ptr, flags);
}

void kfree_head(void* ptr, bulkrcu_head* head) noexcept;
void barrier() noexcept;
void memory_pressure() noexcept;

// ---- runtime thread ----
// One monitor pass: hand elapsed blocks to busy CPUs or reclaim them, collect closed blocks
// (and, on the drain timer, idle fronts and ready lists), tag cookies, request the grace
// period. A pending kvfree barrier makes it a full pass that waits and reclaims everything.
void monitor_pass() noexcept;
// True when monitor_pass() has something to do now.
bool has_work() noexcept;
// Nanoseconds until the drain timer needs a pass (0: nothing is pending anywhere).
std::uint64_t next_timeout_ns() noexcept;
void after_fork_child() noexcept;

struct Stats {
  std::uint64_t retired, freed, pending_objects, pending_bytes, blocks_in_use, grace_periods;
  std::uint64_t fb_head, fb_inplace, fb_reserve, fb_synchronize, nowait_refused;
  std::uint64_t cache_hits, cache_misses, lockless_pages, budget_hits, helped, monitor_freed;
  std::uint64_t budget_bytes, passes, cursors_stolen;
};

// For tests: whether the calling thread holds a reclaim cursor (a ready block it frees from).
bool thread_has_cursor() noexcept;
Stats stats() noexcept;

}  // namespace bulkrcu::detail::kvfree
