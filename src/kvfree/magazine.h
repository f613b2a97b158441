// bulkrcu/src/kvfree/magazine.h: per-thread magazines, the front of the retire path (layer
// kvfree; includes base/, percpu/ and kvfree.h).
//
// A magazine is a thread's own front block: one pool page with the Block header of kvfree.h,
// filled by plain stores of its thread (bulkrcu__mag_store in include/bulkrcu/rcu.h: no rseq,
// no atomic read-modify-write, no fence), and handed to the per-CPU machinery whole when it
// is full: one compare-and-swap onto a list the monitor takes (g_closed), once per block.
// The slot that holds it (MagSlot) lives in never-unmapped chunks and is recycled when its
// thread exits, so per-thread state is bounded by the threads alive at once, not by the
// threads that ever retired.
//
// Protocol (owner: the slot's thread; runtime: a non-lite monitor pass, g_mon_mutex held):
//   owner store:  if busy: per-CPU path (a signal handler interrupted a store of this thread)
//                 busy = 1; M1 (compiler barrier)
//                 b = block; if b && b->fn == fn && b->nr < b->cap: b->ptrs[nr] = p; nr + 1
//                 M2; busy = 0 (release)
//   owner slow:   busy = 1 for the whole step (a handler then takes the per-CPU path);
//                 a new block nb is installed with CAS(block: b -> nb); if that CAS wins, the
//                 owner owns b: it seals, charges and pushes b onto g_closed; if it fails, the
//                 runtime took b (block is now nullptr) and CAS(nullptr -> nb) installs nb.
//   runtime take: for each candidate slot (idle since the previous timer pass, or every slot
//                 for a barrier and memory pressure): b = block; b->cap = 0 (seal, S)
//                 ONE heavy_fence() (membarrier) for all candidates            (R)
//                 if busy == 0 (acquire): CAS(block: b -> nullptr); the winner owns b
//                 else: left sealed; the owner's next store closes b itself, or a later pass
//                 takes it (a barrier does not advance until every magazine was taken).
// The interleaving this prevents: the owner loads b->nr, is preempted, the runtime takes b
// and hands it on, the owner resumes and stores into a block that is no longer its own
// (a pointer lost, or written into a recycled page). With the protocol, either the owner's
// busy = 1 is visible to the runtime's load after R (it leaves b alone), or the owner's load
// of b->cap comes after R and sees the seal (it stores nothing and takes the slow path).
//
// Memory ordering: M1 is a compiler barrier only; R (membarrier(PRIVATE_EXPEDITED)) makes
// every running thread execute a full barrier, so for each owner either busy = 1 precedes R's
// barrier on its CPU (the runtime's load sees it) or the owner's loads after M1 follow it
// (they see the seal S, stored before R). busy = 0 is a release store after the commit of nr;
// the runtime's acquire load of busy pairs with it, so a block it takes holds every committed
// pointer. The CAS on `block` decides ownership between the owner's slow path and the runtime
// (acq_rel). Blocks on g_closed are published with a release CAS and taken with an acquire
// exchange. Without membarrier (BULKRCU_NO_MEMBARRIER, or a kernel without it) magazines are
// off: every retire takes the per-CPU path (a real fence per store would cost what the
// magazine saves).
//
// Invariants: a slot's block is nullptr or a Block with 0 <= nr <= capacity; cap == 0 only
// after the runtime sealed it (the owner seals a block only after its CAS removed it from the
// slot); owner == 0 (a free slot) implies block == nullptr.
#pragma once

#include "kvfree/kvfree.h"

namespace bulkrcu::detail::kvfree::mag {

// True when threads may get magazines (membarrier registered, BULKRCU_NO_MAGAZINE unset).
bool enabled() noexcept;

// The library-side fast path (the same store the public header inlines). > 0: stored, the
// block's new count; 0: use the per-CPU path; < 0: run the slow path (retire_slow).
BULKRCU_ALWAYS_INLINE long try_store(Deleter fn, void* ptr) noexcept { return bulkrcu__mag_store(fn, ptr); }

// The magazine's slow path (inside retire_slow, after the budget check): installs a block
// (closing the full one), or declines. Returns the new count (> 0) when ptr was stored; 0:
// the caller uses the per-CPU path (magazines off, nested in a handler, another channel's
// block, no page without waiting).
long retire_slow(Deleter fn, void* ptr, unsigned flags, std::size_t size) noexcept;

// ---- the monitor (g_mon_mutex held; non-lite passes only for take) ----
enum class Take { kIdle, kAll };
// Seals the candidates' blocks, one heavy fence, takes those whose owner is not storing:
// each taken block (sealed, charged, kOpen: no cookie yet) is pushed on *out (through `next`) and its
// pointers added to *objs. kIdle: blocks unchanged since the previous kIdle call. Returns
// false when a candidate could not be taken (its owner was storing): a barrier retries.
bool take(Take mode, Block** out, std::uint64_t* objs) noexcept;
// The blocks owners closed (full), pushed on *out the same way.
void take_closed(Block** out, std::uint64_t* objs) noexcept;
// True when any magazine holds pointers or a closed block waits (the drain timer runs).
bool pending() noexcept;

// fork child: the other threads' magazines are taken (they do not exist here), and this
// thread's is released (it claims a new one at its next slow retire, after ensure_started).
void after_fork_child() noexcept;

// Statistics and test hooks.
std::uint64_t slots_in_use() noexcept;     // magazines claimed by live threads
std::uint64_t chunks_mapped() noexcept;    // chunks of slots (never unmapped)
std::uint64_t taken_over() noexcept;       // blocks the runtime thread took from threads
std::uint64_t take_misses() noexcept;      // candidates left because their owner was storing
long thread_block_nr() noexcept;           // the calling thread's block count; -1: no block
void set_thread_busy(bool busy) noexcept;  // tests: pretend a store of this thread is in progress

}  // namespace bulkrcu::detail::kvfree::mag
