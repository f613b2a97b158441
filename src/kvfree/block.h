// bulkrcu/src/kvfree/block.h: the block layout and its states, and the per-CPU slot (Krc)
// that holds the fronts (layer kvfree; includes base/ and percpu/).
//
// A block is one pool page: a 64-byte Block header followed by `capacity` pointers, all of one
// deleter channel. Its life cycle (owner of each stage in brackets; `state` in parentheses):
//   active  [this CPU: rseq appends; remote: the runtime thread under lock + fence] (kOpen)
//       front[ch] of a Krc, or a thread's magazine block (magazine.h); 0 <= nr <= cap
//   closed  [nobody appends: cap was set to 0 (sealed) or nr == cap (full)] (kOpen)
//       chained behind front[ch] through `next`, or on the magazines' closed list. A try-lock
//       mode closer records `cookie` under the slot's lock and sets kWaiting; an rseq closer
//       records nothing (retire.cpp says why)
//   waiting [whoever holds the monitor's mutex] (kWaiting) in a batch of the monitor until
//       poll_state(cookie); `cookie` covers every pointer of the block
//   ready   [a Krc's `incoming` list (lock-free; any thread takes the whole list) or `ready`
//       list (this CPU pops with rseq; the runtime thread pushes and takes idle lists under
//       lock)] (kReady: its `nr` is counted in its home Krc's ready_objs) done == nr unless it
//       is a stolen cursor handed back
//   cursor  [the thread whose reader-slot word holds it] (kReady) 0 <= done <= nr:
//       ptrs[0, done) are still to be freed, from the top; the runtime thread may steal it
//       (exchange the word, then wait a grace period) and hand it back to its CPU
//   reclaim [whoever took it off the last list] (kReclaim: out of ready_objs) its deleter
//       runs over ptrs[0, done) (reclaim.cpp), then the page is recycled (pages.cpp)
//
// Invariants: 0 <= done <= nr <= capacity; while active nr only grows; cap == 0 means sealed
// (and, for a block in a monitor's batch of stolen cursors, cap is that list's link:
// monitor.cpp). A block is charged to the budget once for its page (installed) and once for
// its objects (closed; obj_size's kCharged bit), and credited once when its page is recycled
// (budget.h). Only kReady blocks are counted in Krc::ready_objs.
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/base.h"
#include "bulkrcu/rcu.h"
#include "percpu/percpu.h"

namespace bulkrcu::detail::kvfree {

using Deleter = void (*)(void*);

// The allocator channels: free() (nullptr) and the C++ API's ::operator delete of objects of
// one size (BULKRCU__DELETE_BIT | size, include/bulkrcu/rcu.h: values, never called). They run
// no user code, so their elapsed blocks are freed by retiring threads (reclaim.h's cursors) and
// by the monitor; every other channel's blocks go to run_deleters, which calls them.
static_assert(sizeof(void*) == 8, "the allocator channels' encoding needs 64-bit pointers");
BULKRCU_ALWAYS_INLINE bool allocator_channel(Deleter fn) noexcept {
  return fn == nullptr || (reinterpret_cast<std::uintptr_t>(fn) & BULKRCU__DELETE_BIT) != 0;
}
BULKRCU_ALWAYS_INLINE std::size_t delete_channel_size(Deleter fn) noexcept {
  return static_cast<std::size_t>(reinterpret_cast<std::uintptr_t>(fn) & ~BULKRCU__DELETE_BIT);
}

inline constexpr int kChannels = 16;  // active channels per CPU (hash of the deleter)
// Block::obj_size: kCharged is set (atomically) by whoever charges a closed block's objects,
// once; kUnsized (with kCharged) marks objects counted against the object bound.
inline constexpr std::uint32_t kCharged = 0x80000000u;
inline constexpr std::uint32_t kUnsized = 0x7FFFFFFFu;
#ifdef BULKRCU_TESTING
inline constexpr std::size_t kTestBlockCapacity = 4;  // reach every block-full path
#endif

// The stage of a block that decides what the monitor and reclaim do with it (the life cycle
// above). Written only by the block's owner of the moment.
enum class BlockState : std::uint32_t {
  kOpen = 0,     // no cookie yet: active, or closed and not yet detached by the monitor
  kWaiting = 1,  // `cookie` covers every pointer (set by the monitor or a try-lock closer)
  kReady = 2,    // handed over to its home CPU: counted in Krc::ready_objs
  kReclaim = 3,  // out of the ready count: its holder frees what is left and recycles it
};

// Invariant: 0 <= done <= nr <= capacity; while active, nr only grows; cap == 0 means sealed.
struct Block {
  std::uint64_t nr;         // committed pointers (rseq commit target)
  std::uint64_t cap;        // room: capacity while active, 0 once sealed
  Deleter fn;               // channel: nullptr means free()
  Block* next;              // chain behind front / ready list / cache list
  unsigned long cookie;     // grace period covering every pointer (valid from kWaiting on)
  std::uint32_t done;       // ready blocks: pointers [0, done) not yet claimed
  BlockState state;         // see BlockState
  std::uint64_t est_bytes;  // bytes charged to the budget: the page, and its objects once closed
  std::uint32_t home;       // CPU slot the block was filled on
  std::uint32_t obj_size;   // bytes an object, when the retiring call knew it (0: unknown;
                            // kUnsized once closed: counted against the object bound instead)
  void* ptrs[];             // capacity = (page_size - sizeof(Block)) / sizeof(void*)
};
// The inline stores (bulkrcu__kv_store, bulkrcu__mag_store in include/bulkrcu/rcu.h) rely on
// this layout.
static_assert(offsetof(Block, nr) == 0 && offsetof(Block, cap) == 8 && offsetof(Block, fn) == 16 &&
              sizeof(Block) == 64);

// One per possible CPU (the kernel's kfree_rcu_cpu). 256 bytes: the inline store finds this
// CPU's slot with a shift (BULKRCU__KRC_SHIFT in include/bulkrcu/rcu.h).
struct alignas(1 << BULKRCU__KRC_SHIFT) Krc {
  SlotLock lock;  // offset 0 (percpu.h protocol)
  std::uint32_t pad_ = 0;
  Block* front[kChannels] = {};  // owner: rseq appends; remote: runtime thread under lock+fence
  Block* ready = nullptr;        // owner: rseq claims/pops; remote: runtime pushes/takes
  Block* cache = nullptr;        // empty pages; owner pops/pushes; runtime trims and refills
  // Blocks whose grace period has elapsed, pushed by the runtime thread without the slot's
  // lock (compare-and-swap); any helper takes the whole list (one exchange) as its cursor.
  std::atomic<Block*> incoming{nullptr};
  // Backlog control: pointers handed over to this CPU (incoming, ready or a thread's cursor)
  // and not yet freed, counted per block; above `behind_limit` (set by the monitor: what it
  // handed this CPU in its last window) a helping thread frees a second batch per help.
  std::atomic<std::uint64_t> ready_objs{0};
  std::atomic<std::uint64_t> behind_limit{0};
};
static_assert(sizeof(Krc) == (1u << BULKRCU__KRC_SHIFT) && offsetof(Krc, front) == BULKRCU__KRC_FRONT);

// The slot array, alone on its cache line: every help loads it, and a neighbour that another
// CPU writes (the monitor's timestamps, say) would make that load miss. alignas pads the type
// to the whole line, so the linker cannot place anything beside it.
struct alignas(kCacheLine) KrcArray : std::atomic<Krc*> {
  using std::atomic<Krc*>::atomic;
};
static_assert(sizeof(KrcArray) == kCacheLine);
extern KrcArray g_krcs;
inline Krc* krcs() noexcept { return get_slots(g_krcs); }

BULKRCU_ALWAYS_INLINE std::size_t channel_of(Deleter fn) noexcept { return bulkrcu__kv_channel(fn); }
BULKRCU_ALWAYS_INLINE std::size_t front_off(std::size_t ch) noexcept {
  return offsetof(Krc, front) + ch * sizeof(Block*);
}

// Block geometry, set once at load time (init_sizes; retire_slow and the monitor check it).
extern std::size_t g_page;      // bytes of a pool page
extern std::size_t g_capacity;  // pointers a block holds
void init_sizes() noexcept;
BULKRCU_ALWAYS_INLINE void ensure_sizes() noexcept {
  if (BULKRCU_UNLIKELY(g_page == 0)) init_sizes();
}

// An empty page becomes an active block of channel fn filled on CPU slot `home`.
inline Block* init_block(void* page, Deleter fn, std::uint64_t home, std::size_t size = 0) noexcept {
  auto* b = static_cast<Block*>(page);
  b->nr = 0;
  b->cap = g_capacity;
  b->fn = fn;
  b->next = nullptr;
  b->cookie = 0;
  b->done = 0;
  b->state = BlockState::kOpen;
  b->est_bytes = 0;
  b->home = static_cast<std::uint32_t>(home);
  b->obj_size = size < kUnsized ? static_cast<std::uint32_t>(size) : kUnsized - 1;  // never kCharged
  return b;
}

inline void push(Block** list, Block* b) noexcept {
  b->next = *list;
  *list = b;
}

// Runs f(slot, index) on a locked slot, preferring this CPU's; false when every slot is busy
// (the kLock mode's form of a per-CPU step).
template <class F>
bool with_locked_slot(F&& f) noexcept {
  Krc* base = krcs();
  const int n = nr_slots();
  const int cpu = current_cpu();
  for (int i = 0; i < n; ++i) {
    int idx = (cpu + i) % n;
    Krc& k = base[idx];
    if (k.lock.try_lock()) {
      f(k, idx);
      k.lock.unlock();
      return true;
    }
  }
  return false;
}

// ThreadSanitizer cannot see the order that rseq sequences and plain-store publication give
// (percpu.h), so the edges are annotated by hand; in every other build these are no-ops. The
// address is the synchronization object's: &g_krcs for the fronts and ready lists, the page for
// a page cache entry.
BULKRCU_ALWAYS_INLINE void tsan_acquire([[maybe_unused]] const void* addr) noexcept {
#if BULKRCU_TSAN
  __tsan_acquire(const_cast<void*>(addr));
#endif
}
BULKRCU_ALWAYS_INLINE void tsan_release([[maybe_unused]] const void* addr) noexcept {
#if BULKRCU_TSAN
  __tsan_release(const_cast<void*>(addr));
#endif
}

}  // namespace bulkrcu::detail::kvfree
