// bulkrcu/src/kvfree/retire.h: the retire slow path: the per-CPU store behind the magazine,
// closing a full block and installing a new one, and the fallbacks (layer kvfree).
//
// Synchronization protocol between a CPU's retiring threads and the runtime thread (monitor):
// owners only run rseq sequences on their own CPU's Krc (or, in the kLock mode, hold its
// try-lock); the monitor changes a Krc only under its lock after fence_remote (percpu.h).
//
// Closing a block (the slow path, rseq mode):
//   S1 seal:    if front[ch] == old: old->cap = 0        (no append can commit after this)
//   S3 install: nb->next = old;   if front[ch] == old: front[ch] = nb
// Each step is one rseq sequence whose check binds it to the CPU that owns `old`; if the front
// changed (another closer won, or the monitor detached `old`), the step does nothing and the
// closer starts over. The slow path never dereferences a block it does not own outside a
// sequence (S1's charge aside: it runs inside a read-side critical section begun before the
// seal, so whoever detaches `old` takes its cookie after the seal and it is not reclaimed
// while its objects are sized).
//
// The block's cookie is taken by the monitor when it detaches the block from the chain behind
// the front (after S3, so after every append), never by an rseq closer. A closer's cookie
// (the S2 step this protocol used to have: c = get_state(); if front[ch] == old:
// old->cookie = c) is not safe: the steps compare addresses, and a closer preempted between
// S1 and S2 may find `old` closed by another thread, reclaimed and reused as the new front of
// the same channel; its S2 then gave that block a cookie older than its later appends (an
// early free by one grace period). Installing on top of such a block (a late S3) is harmless:
// it is closed by that install, and charged by the monitor if nobody sealed it. In the
// try-lock mode the closer holds the slot's lock from seal to install, takes the cookie and
// moves the block to BlockState::kWaiting.
//
// Fallbacks when no page comes without waiting (pages.h lists the sources): a caller that
// may not wait (kNoWait) gets false and keeps the object; inside a reader, with the emergency
// reserve empty too, the process aborts (waiting there would deadlock, dropping would lose the
// object); otherwise the last resort waits for a grace period and frees inline (free()), or
// hands a user deleter to run_deleters (reclaim.h). kfree_head links the object through its own
// head onto the callback lists instead (never blocks).
// Invariants: a retire either stores its pointer into a block whose cookie is taken after the
// store, or returns false with nothing stored, or frees after a full grace period; no user
// code runs inside it.
#pragma once

#include <cstddef>

#include "kvfree/block.h"

namespace bulkrcu::detail::kvfree {

// Block operations for the magazines (magazine.cpp; nobody else calls them).
namespace support {
Block* new_block(Deleter fn, void* first, unsigned flags, std::size_t size) noexcept;
void close_full(Block* b, unsigned flags) noexcept;  // charges b (sealed, off its slot)
void charge_taken(Block* b) noexcept;                // the runtime took b: charge it once
void recycle_empty(Block* b, unsigned flags) noexcept;
void installed(unsigned flags) noexcept;  // a block was installed: arm the drain timer
void kick(unsigned flags) noexcept;       // a closed block waits: flood detection
}  // namespace support

}  // namespace bulkrcu::detail::kvfree
