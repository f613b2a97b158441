// bulkrcu/src/kvfree/reclaim.h: reclaim cursors, helps, and the one place that runs user
// deleters (layer kvfree).
//
// Protocol (cursors). A retiring thread's reclaim cursor is a chain of elapsed free() blocks
// kept in its reader-slot word (gp::thread_words: `word`). The thread takes it whole: one
// block popped from this CPU's ready list, else a whole `incoming` hand-over list (one
// exchange), else another CPU's; of a hand-over list it keeps the first block and pushes the
// others onto this CPU's ready list (one rseq sequence; a chain only when the slot is locked),
// so that a thread preempted with its cursor holds one block. Every kHelpEvery-th retire
// frees the next kHelpBatch pointers from the top of the cursor block (done -> done - k), with
// plain loads and stores (help). When the block is empty, the thread moves the word along the
// chain with a CAS (block -> block->next) and recycles the block.
//   runtime steal: exchange(word, nullptr) on timer, pressure and barrier passes; the chain
//                  is then the runtime's, but a help in flight may still read it, so the
//                  runtime touches it only after a help fence (below; the chains are linked
//                  through `cap` meanwhile: chain_link) and hands it back to its home CPUs with
//                  `done` as the thread left it.
// Whoever exchanges the word from the block to something else owns the block: the thread when
// it empties it, the monitor when it steals it. The interleaving this prevents: the thread
// reads `done`, the runtime takes the block and frees ptrs[0, done) itself, the thread frees
// the same pointers again. With the help fence between steal and touch, the help has ended
// (and its store of `done` is visible) before the runtime reads `done`.
//
// Help sequence (the help's own grace period). Until 2026-12-04 a help ran inside a read-side
// critical section and the steal waited for a grace period. With more threads than CPUs a
// thread preempted inside a help then held up every grace period of the process until the
// scheduler ran it again (docs/PERFORMANCE.md, 2026-12-04). Now a help only makes its slot's
// `seq` odd for its duration:
//   H1  seq = s + 1 (relaxed), light_fence, then the loads of `word` and the cursor;
//   H2  seq = s + 2 (release) after the help's last access.
//   M   the monitor exchanges the words, heavy_fence, then loads every seq (acquire).
// The asymmetric Dekker pair (H1, M): either M's load sees s + 1, and the fence waits until seq
// moves on (H2: everything the help did is visible), or the help's load of `word` comes after
// the exchange and sees nullptr or a block it took itself. A help fence (help_fence_start /
// _done, non-blocking, under the monitor's mutex: `mark` holds the odd value seen) waits for
// exactly the helps in flight when it started; help_fence_wait blocks until they have ended
// (the kvfree barrier's last step). A help that is preempted delays only these, never a
// grace period. The same pair covers a barrier's collection (M's exchanges are then those of
// the ready and hand-over lists): after a fence started behind it, no help still holds a
// block it popped before. The monitor numbers its fences like grace periods (monitor.cpp): one
// in flight at a time, and a need that arises meanwhile waits for the next, so continuous helps
// never keep a fence from passing.
// Invariants: a cursor holds blocks of the allocator channels only (free() and ::operator
// delete, block.h's allocator_channel: a user deleter never runs on a retiring thread); 0 <= done <= nr; a
// cursor block is kReady until count_helped moves it to kReclaim and takes its nr out of Krc::ready_objs,
// exactly once.
//
// Protocol (deleters). Blocks of user deleters whose grace period has elapsed, and the
// last-resort nodes of retires that found no page, are pushed onto lock-free lists that
// run_deleters() takes whole and runs, through UserCode (base/user_code.h) inside one read-side
// critical section, with no lock held. A kvfree barrier's completion (g_barrier_pending, set by
// the monitor after it queued every block of the barrier) is published by run_deleters once
// they have run: the barrier request number is loaded before the lists are taken.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>

#include "cache/cache.h"
#include "kvfree/block.h"

namespace bulkrcu::detail::kvfree {

// The free() channel's deleter: a pointer in an object cache's slab (kvfree_rcu of a cache
// object, as kfree_rcu in the kernel) goes back to its cache, anything else to free().
// cache::owns is two table loads (docs/CACHE.md measures it).
inline void free_ptr(void* p) noexcept {
  if (BULKRCU_UNLIKELY(cache::owns(p)))
    cache::free_retired(p);
  else
    free(p);
}

// The C++ allocator channels' deleter (BULKRCU__DELETE_BIT | size): the header's
// global_delete (::operator delete with the size `new` was given), or the object's cache. Set
// by bulkrcu__retire_delete before it makes the first block of such a channel.
using OperatorDelete = void (*)(void*, std::size_t);
extern std::atomic<OperatorDelete> g_operator_delete;
inline void delete_ptr(void* p, std::size_t size) noexcept {
  if (BULKRCU_UNLIKELY(cache::owns(p)))
    cache::free_retired(p);
  else
    g_operator_delete.load(std::memory_order_acquire)(p, size);
}
// A pointer of an allocator channel (allocator_channel(fn)).
inline void free_in_channel(Deleter fn, void* p) noexcept {
  if (fn == nullptr)
    free_ptr(p);
  else
    delete_ptr(p, delete_channel_size(fn));
}

// Frees every pointer still in a free() block on this thread, then the page; a user deleter's
// block goes to run_deleters instead (never run here: this may be a retiring thread, or hold
// g_driver_mutex).
void reclaim_list(Block* list) noexcept;
// An elapsed block of a user deleter, for run_deleters (lock-free push).
void queue_deleter_block(Block* b) noexcept;
// The last resort of a user deleter that found no page, after the grace period that covers
// ptr has elapsed: runs it here on bulkrcu's own threads, else hands it to run_deleters on a
// node on this thread's stack and waits until it has run (no memory needed).
void run_deleter_after_grace_period(Deleter fn, void* ptr) noexcept;
// Every block of barrier request `req` is freed or queued for run_deleters (the monitor's
// pass): the next run_deleters publishes it.
void barrier_reclaimed(std::uint64_t req) noexcept;
std::uint64_t barriers_done() noexcept;

// ---- cursors, for the monitor ----
bool cursors_pending() noexcept;
// Takes every thread's cursor (exchange of its word): chains linked through chain_link.
// Their blocks must not be touched before a help fence started after the steal has passed.
Block* steal_cursors() noexcept;
inline Block* chain_link(Block* head) noexcept { return reinterpret_cast<Block*>(head->cap); }
inline void set_chain_link(Block* head, Block* next) noexcept {
  head->cap = reinterpret_cast<std::uintptr_t>(next);
}

// Help fences (protocol above). start: marks the helps in flight now (one heavy_fence); done:
// true once every marked help has ended (clears those marks). Both under the monitor's mutex.
void help_fence_start() noexcept;
bool help_fence_done() noexcept;
// Blocks until every help in flight when it was called has ended (any thread, outside a help).
void help_fence_wait() noexcept;

void reclaim_after_fork_child() noexcept;

#ifdef BULKRCU_TESTING
// Tests: `hook` runs inside every help (between H1 and H2) with the number of pointers it freed,
// and with -n when the help took a hand-over chain and is about to move its n other blocks
// onto this CPU's ready list.
void set_help_hook(void (*hook)(long freed) noexcept) noexcept;
#endif

}  // namespace bulkrcu::detail::kvfree
