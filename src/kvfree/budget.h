// bulkrcu/src/kvfree/budget.h: the memory budget and the pressure response (layer kvfree).
//
// Protocol. The budget bounds what waits for reclaim: BULKRCU_MAX_PENDING bytes and
// BULKRCU_MAX_PENDING_OBJECTS objects whose size the library cannot know.
//   charge page:    when a block is installed (a front, a magazine block): est_bytes = page
//   charge objects: when it closes, by whoever turns its cap from non-zero to 0 (a closer's
//                   seal, the monitor detaching a front or a late-installed chain block, the
//                   runtime taking a magazine). Two sealers may race (an rseq S1 checks only
//                   the front): the first to set obj_size's kCharged bit charges, once
//   credit:         when the page is recycled (empty), whatever its state, once (est_bytes
//                   is then 0)
// Invariants: pending_bytes == sum of est_bytes over blocks in use (plus a charge in flight);
// pending_objs == sum of nr over blocks whose obj_size is kCharged | kUnsized; each block
// moves page-charged -> objects-charged -> credited, and only forward. Blocks still filling
// count by their page only, so the counts exceed the budget by at most one block per CPU,
// channel and live magazine, plus what retires that never wait add (inside readers, deleters,
// callbacks, the runtime thread).
//
// Over the budget: the monitor's pass is not paced and reclaims elapsed free() blocks itself
// (monitor.cpp, PassMode::kPressure); blocking retires throttle (below); defer_nowait refuses.
// Memory pressure (bulkrcu_memory_pressure) backs off page-cache refills, makes the next pass
// take every magazine, and runs the pool's response (which calls pages.cpp's release hook).
#pragma once

#include <cstdint>

#include "kvfree/block.h"

namespace bulkrcu::detail::kvfree {

void charge_page(Block* b) noexcept;
// `may_size`: the caller may ask malloc (not a signal handler): a free() block's objects are
// then sized with malloc_usable_size, every pointer of a block under kSizeAllBelow, else an
// unbiased stratified sample of kSizeSamples pointers (budget.cpp says why that is enough).
inline constexpr std::uint64_t kSizeAllBelow = 64;
inline constexpr std::uint64_t kSizeSamples = 32;
void charge_objects(Block* b, bool may_size) noexcept;
// The estimate charge_objects uses for the first n pointers of a free() block (for tests).
std::uint64_t sized_bytes(const Block* b, std::uint64_t n) noexcept;
void credit(Block* b) noexcept;
bool over_budget() noexcept;

// Back-pressure for a blocking retire over the budget: asks for a grace period at once, helps
// reclaim this CPU's ready free() blocks, and waits (boundedly, about 200 ms) for the monitor
// to make progress. Never on bulkrcu's threads or inside user code that bulkrcu called (a
// deleter or callback): the passes it waits for are made by the runtime thread (retire_slow
// checks).
void throttle() noexcept;

// For the monitor's pass: true once after bulkrcu_memory_pressure (the pass takes every
// magazine), and whether page-cache refills are backed off at `now`.
bool take_magazine_pressure() noexcept;
bool refill_allowed(std::uint64_t now) noexcept;

}  // namespace bulkrcu::detail::kvfree
