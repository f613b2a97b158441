// bulkrcu/src/kvfree/pages.h: where block pages come from and go back to (layer kvfree).
//
// Protocol. Sources, cheapest first (get_page): this CPU's page cache (Krc::cache: the owner
// pops and pushes with one rseq sequence, or under the slot's try-lock; the monitor trims and
// refills it under the lock after the fence), bulkrcu_alloc_page_lockless(), then, for callers
// that may block, the in-place bulkrcu_alloc_page() (the zone lock, never a grace-period
// wait), and inside a reader the emergency reserve (g_reserve: one exchange takes a page; the
// monitor refills it on every full pass). Sinks: an emptied page goes to this CPU's cache,
// else to the pool (blocking callers) or to the spare list (non-blocking callers: a lock-free
// push; the monitor returns it to the pool), and a reserve page whose block was never
// installed goes back to the reserve.
// Invariants: a cached or spare page holds no pointers and is credited (est_bytes == 0);
// Krc::cache holds at most kCacheMax pages after a monitor pass; one retire takes at most one
// reserve page.
#pragma once

#include "kvfree/block.h"

namespace bulkrcu::detail::kvfree {

// A page for a new block, cheapest source first. Never blocks with kNoWait; otherwise the
// in-place bulkrcu_alloc_page may take the zone lock and map memory (not a grace-period wait,
// so it is allowed inside a reader); inside a reader the emergency reserve is the last source
// (*from_reserve is then set).
void* get_page(unsigned flags, bool in_reader, bool* from_reserve = nullptr) noexcept;

// A page that holds no pointers any more (credited here if it is still charged): to this
// CPU's cache or back to the pool; the _nowait form never takes the pool's zone lock.
void recycle_page(Block* b) noexcept;
void recycle_page_nowait(Block* b) noexcept;
void recycle_page(Block* b, unsigned flags) noexcept;  // by the kMayBlock flag

// A reserve page whose block was never installed (its closer lost the race) goes back to the
// reserve, not to the page cache: a pressure pass may empty the cache before the retry, which
// would then take a second reserve page for one retire. False when the reserve is full again.
bool return_reserve(Block* b) noexcept;

// ---- the monitor ----
// Keeps the CPU's page cache at kCacheMax pages (slot locked and fenced): trims extras onto
// *spare, refills from the pool's lockless path when `refill`.
void tend_cache(Krc& k, Block** spare, bool refill) noexcept;
void refill_reserve() noexcept;
// Returns `pages` and the spare list to the pool (the spare list only when take_spare).
void free_spare_pages(Block* pages, bool take_spare) noexcept;

}  // namespace bulkrcu::detail::kvfree
