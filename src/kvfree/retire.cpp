// bulkrcu/src/kvfree/retire.cpp: the retire slow path and its fallbacks (protocol in
// retire.h).
#include "kvfree/retire.h"

#include <malloc.h>
#include <sched.h>

#include "base/trace.h"
#include "base/user_code.h"
#include "callback/callback.h"
#include "gp/gp.h"
#include "kvfree/budget.h"
#include "kvfree/kvfree.h"
#include "kvfree/magazine.h"
#include "kvfree/monitor.h"
#include "kvfree/pages.h"
#include "kvfree/reclaim.h"
#include "kvfree/stats.h"

namespace bulkrcu::detail::kvfree {

namespace {

// One attempt of the per-CPU path. kStored: ptr went into a block (*nr: its new count);
// kInstalled: into a new block; kBusy: the slot is locked (the monitor holds it for a few
// microseconds, or another thread in the kLock mode); kRetry: a race was lost, try again at
// once; kNoPage: every page source failed.
enum class Step { kStored, kInstalled, kBusy, kRetry, kNoPage };

bool refuse() noexcept {
  g_counters.nowait_refused.fetch_add(1, std::memory_order_relaxed);
  return false;
}

// A new block of channel fn on CPU slot `home` holding ptr, charged its page.
Block* first_of_block(void* page, Deleter fn, void* ptr, std::uint64_t home, std::size_t size) noexcept {
  Block* nb = init_block(page, fn, home, size);
  nb->ptrs[0] = ptr;
  nb->nr = 1;
  charge_page(nb);
  return nb;
}

#if BULKRCU_HAVE_RSEQ_ASM
// A new block that lost its install: its page goes back where it came from.
Step give_back(Block* nb, bool reserve_page, unsigned flags) noexcept {
  nb->nr = 0;
  if (reserve_page) {
    if (nb->est_bytes) credit(nb);
    if (return_reserve(nb)) return Step::kRetry;
  }
  if (flags & kNoWait)
    recycle_page_nowait(nb);  // never the pool's zone lock on a non-blocking path
  else
    recycle_page(nb);
  return Step::kRetry;
}

// S1 of the protocol, and the charge of the block it sealed. False: `old` is no longer front.
bool seal(Krc* base, std::size_t off, Block* old, unsigned flags) noexcept {
  const auto u = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p); };
  // Inside a read-side critical section from before the seal: whoever detaches `old` takes
  // its cookie after the seal, so it is not reclaimed while its objects are sized below.
  bulkrcu__read_lock_inline();
  if (bulkrcu::detail::subtle::rseq_if_eq_store(base, sizeof(Krc), off, u(old),
                                                reinterpret_cast<std::uintptr_t*>(&old->cap), 0) != 1) {
    bulkrcu__read_unlock_inline();
    return false;
  }
  // `old` was installed (and filled) by rseq sequences of other threads on this CPU, which
  // released before publishing it; the seal makes them happen-before the sizing.
  tsan_acquire(&g_krcs);
  charge_objects(old, (flags & kNoSyscall) == 0);  // we sealed it: nr is final
  bulkrcu__read_unlock_inline();
  return true;
}

// One attempt of the rseq slow path: S1 and S3 of the protocol.
Step close_and_install_rseq(Deleter fn, void* ptr, unsigned flags, bool in_reader,
                            std::size_t size) noexcept {
  Krc* base = krcs();
  const std::size_t ch = channel_of(fn);
  const std::size_t off = front_off(ch);
  const int cpu = current_cpu();
  // Only the pointer value is used: it is never dereferenced outside a sequence.
  Block* old = __atomic_load_n(&base[cpu].front[ch], __ATOMIC_RELAXED);
  bool reserve_page = false;
  void* page = get_page(flags, in_reader, &reserve_page);
  if (!page) return Step::kNoPage;
  Block* nb = first_of_block(page, fn, ptr, static_cast<std::uint64_t>(cpu), size);
  nb->next = old;
  // The sequences below publish nb with plain stores TSan cannot see; the monitor acquires.
  tsan_release(&g_krcs);
  if (old && !seal(base, off, old, flags)) return give_back(nb, reserve_page, flags);  // S1
  const auto u = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p); };
  if (bulkrcu::detail::subtle::rseq_cmpxchg_slot(base, sizeof(Krc), off, u(old), u(nb)) != 1)
    return give_back(nb, reserve_page, flags);  // S3
  // 0: closed by a retiring thread (rseq). Not old->nr: old is the monitor's after S3.
  if (old) BULKRCU_TRACE(block_close, cpu, 0);
  if (old)
    kick_monitor(flags);  // this CPU now holds a closed block: flood detection
  else
    arm_timer(flags);
  return Step::kInstalled;
}

// One attempt in rseq mode: the store, else the close and install.
Step attempt_rseq(Deleter fn, void* ptr, unsigned flags, bool in_reader, std::size_t size,
                  long* nr) noexcept {
  // The sequence publishes with plain stores TSan cannot see; the monitor acquires g_krcs.
  // (Under TSan every retire comes here: bulkrcu__kv_try declines.)
  tsan_release(&g_krcs);
  const long r = bulkrcu__kv_store(krcs(), front_off(channel_of(fn)), fn, ptr);
  if (r > 0) {
    *nr = r;
    return Step::kStored;
  }
  if (r < 0) return Step::kBusy;
  return close_and_install_rseq(fn, ptr, flags, in_reader, size);
}
#endif

// One attempt in kLock mode: the store, or the close and install, under the slot's try-lock.
Step attempt_locked(Deleter fn, void* ptr, unsigned flags, bool in_reader, std::size_t size,
                    long* nr_out) noexcept {
  const std::size_t ch = channel_of(fn);
  Step step = Step::kBusy;
  bool closed = false;
  bool locked = with_locked_slot([&](Krc& k, int idx) {
    Block* old = k.front[ch];
    if (old && old->fn == fn && old->nr < old->cap) {
      old->ptrs[old->nr] = ptr;
      __atomic_store_n(&old->nr, old->nr + 1, __ATOMIC_RELAXED);  // the monitor peeks at it
      *nr_out = static_cast<long>(old->nr);
      step = Step::kStored;
      return;
    }
    void* page = k.cache;
    if (page) {
      k.cache = k.cache->next;
      g_counters.cache_hits.fetch_add(1, std::memory_order_relaxed);
    } else {
      page = get_page(flags, in_reader);  // the cache pop inside finds other slots or nothing
    }
    if (!page) {
      step = Step::kNoPage;
      return;
    }
    Block* nb = first_of_block(page, fn, ptr, static_cast<std::uint64_t>(idx), size);
    if (old) {
      old->cap = 0;
      charge_objects(old, (flags & kNoSyscall) == 0);  // under the lock: we sealed it
      old->cookie = gp::get_state();                   // under the lock: no append can follow it
      old->state = BlockState::kWaiting;
      closed = true;
      BULKRCU_TRACE(block_close, idx, 1);  // 1: by a retiring thread (try-lock mode)
    }
    nb->next = old;
    __atomic_store_n(&k.front[ch], nb, __ATOMIC_RELEASE);  // the monitor reads it without the lock
    *nr_out = 1;
    step = Step::kStored;
  });
  if (!locked) return Step::kBusy;
  if (closed)
    kick_monitor(flags);
  else if (step == Step::kStored && *nr_out == 1)
    arm_timer(flags);
  return step;
}

void spin_a_little(int attempt) noexcept {
  if (attempt < 64)
    cpu_relax();
  else
    sched_yield();
}

// The budget check of every slow retire. False: refused (kNoWait over the budget).
bool admit(unsigned flags, bool in_reader) noexcept {
  if (!over_budget()) return true;
  g_counters.budget_hits.fetch_add(1, std::memory_order_relaxed);
  if (flags & kNoWait) return refuse();
  // Never on bulkrcu's threads or in a deleter or callback: they would wait for passes only
  // the runtime thread makes (a deleter runs inside a reader anyway).
  if (!in_reader && (flags & kMayBlock) && may_wait_for_reclaim()) throttle();
  return true;
}

// A pointer was stored and its block now holds nr: every kHelpEvery-th store helps.
bool stored(long nr, unsigned flags) noexcept {
  if ((flags & kHelp) && nr % kHelpEvery == 0) help(flags);
  return true;
}

// The last resort of a headless retire outside any reader: wait, then free inline (free()),
// or hand the deleter to run_deleters.
void synchronize_and_free(Deleter fn, void* ptr) noexcept {
  g_counters.fb_sync.fetch_add(1, std::memory_order_relaxed);
  BULKRCU_TRACE(fallback_synchronize, ptr);
  g_counters.fallback_objects.fetch_add(1, std::memory_order_relaxed);
  gp::wait_for_cookie(gp::get_state(), false);
  if (allocator_channel(fn))
    free_in_channel(fn, ptr);
  else
    run_deleter_after_grace_period(fn, ptr);
}

// Every page source failed.
bool no_page(Deleter fn, void* ptr, unsigned flags, bool in_reader) noexcept {
  if (flags & kNoWait) return refuse();
  if (in_reader)
    fatal(
        "out of memory inside a read-side critical section: no page for a kvfree block and the "
        "emergency reserve is exhausted (retire outside the reader, or free memory)");
  synchronize_and_free(fn, ptr);
  return true;
}

}  // namespace

bool retire_slow(Deleter fn, void* ptr, unsigned flags, std::size_t size) noexcept {
  const bool in_reader = gp::reader_nesting() != 0;
  ensure_sizes();
  if (!admit(flags, in_reader)) return false;
  // This thread's magazine (magazine.h): a new block when the old one is full, once per block.
  if (const long r = mag::retire_slow(fn, ptr, flags, size); r > 0) return stored(r, flags);
  for (int attempt = 0;; ++attempt) {
    long nr = 0;
    Step step;
#if BULKRCU_HAVE_RSEQ_ASM
    if (mode() == PercpuMode::kRseq)
      step = attempt_rseq(fn, ptr, flags, in_reader, size, &nr);
    else
#endif
      step = attempt_locked(fn, ptr, flags, in_reader, size, &nr);
    switch (step) {
      case Step::kStored:
        return stored(nr, flags);
      case Step::kInstalled:
        return true;
      case Step::kRetry:
        continue;
      case Step::kBusy:
        if (flags & kNoWait) return refuse();
        spin_a_little(attempt);
        continue;
      case Step::kNoPage:
        return no_page(fn, ptr, flags, in_reader);
    }
  }
}

#ifdef BULKRCU__MAX_HEAD_OFFSET  // the inline fast path's offset check (include/bulkrcu/rcu.h)
static_assert(BULKRCU__MAX_HEAD_OFFSET == cb::kMaxHeadOffset && alignof(bulkrcu_head) == sizeof(void*));
#endif

// The library's path of bulkrcu_kfree_head: every check, then the store (the inline fast path
// checked only the offset and the alignment, and calls this when it cannot store).
void kfree_head(void* ptr, bulkrcu_head* head) noexcept {
  if (!ptr) return;
  const std::uintptr_t offset =
      reinterpret_cast<std::uintptr_t>(head) - reinterpret_cast<std::uintptr_t>(ptr);
  // The fallback writes the head: it must lie wholly inside the object, aligned.
  // (malloc_usable_size only for malloc's objects: an object cache's pointer is not one.)
  if (BULKRCU_UNLIKELY(offset >= cb::kMaxHeadOffset || offset % alignof(bulkrcu_head) != 0 ||
                       (!cache::owns(ptr) && offset + sizeof(bulkrcu_head) > malloc_usable_size(ptr))))
    fatal(
        "bulkrcu_kfree_head(): the head must lie inside the object (offset + sizeof(head) <= "
        "malloc_usable_size(ptr)), pointer-aligned, within its first 4096 bytes");
  if (BULKRCU_LIKELY(retire(nullptr, ptr, kNoWait | kHelp))) return;
  // No page without waiting: link the object through its own head (never blocks).
  g_counters.fb_head.fetch_add(1, std::memory_order_relaxed);
  BULKRCU_TRACE(fallback_head, ptr);
  g_counters.fallback_objects.fetch_add(1, std::memory_order_relaxed);
  cb::call_free_head(head, offset);
}

void enable_fast_path(bool on) noexcept {
#if BULKRCU_HAVE_RSEQ_ASM
  void* base = nullptr;
  if (on && mode() == PercpuMode::kRseq) base = krcs();
  __atomic_store_n(&bulkrcu__kv_fast, base, __ATOMIC_RELEASE);
#else
  (void)on;
#endif
}

// ---- block operations for the magazines (magazine.cpp) ----------------------------------------
namespace support {
Block* new_block(Deleter fn, void* first, unsigned flags, std::size_t size) noexcept {
  ensure_sizes();
  // Never the blocking sources: without a page the per-CPU path runs its fallbacks.
  void* page = get_page(flags | kNoWait, gp::reader_nesting() != 0);
  if (!page) return nullptr;
  return first_of_block(page, fn, first, static_cast<std::uint64_t>(current_cpu()), size);
}
void close_full(Block* b, unsigned flags) noexcept {
  b->home = static_cast<std::uint32_t>(current_cpu());
  b->state = BlockState::kOpen;
  charge_objects(b, (flags & kNoSyscall) == 0);
}
void charge_taken(Block* b) noexcept { charge_objects(b, true); }
void recycle_empty(Block* b, unsigned flags) noexcept { recycle_page(b, flags); }
void installed(unsigned flags) noexcept { arm_timer(flags); }
void kick(unsigned flags) noexcept { kick_monitor(flags); }
}  // namespace support

}  // namespace bulkrcu::detail::kvfree

#if BULKRCU_HAVE_RSEQ_ASM
// The public header's inline fast path (include/bulkrcu/rcu.h): the per-CPU slots while it is
// on (enable_fast_path).
alignas(bulkrcu::detail::kCacheLine) void* bulkrcu__kv_fast = nullptr;
#endif
