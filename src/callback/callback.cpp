#include "callback/callback.h"

#include <stddef.h>
#include <stdlib.h>

namespace bulkrcu::detail::cb {
namespace {

// One per possible CPU. head: owner side pushes (rseq, or under lock in kLock mode); the
// runtime thread detaches it under lock + fence_remote (see percpu.h's protocol).
struct alignas(kCacheLine) CbSlot {
  SlotLock lock;
  bulkrcu_head* head = nullptr;
};

std::atomic<CbSlot*> g_slots{nullptr};
BULKRCU_ALWAYS_INLINE CbSlot* slots() { return get_slots(g_slots); }
__attribute__((constructor)) void cb_init() { (void)slots(); }

// Shared overflow list: lock-free push (CAS), detached whole by exchange, so no ABA.
std::atomic<bulkrcu_head*> g_overflow{nullptr};
std::atomic<std::uint64_t> g_nr_overflow{0};

// Runtime-thread-private state.
struct Segment {
  unsigned long cookie;
  std::uint64_t sweep;
  bulkrcu_head* first;  // FIFO, linked through next
  std::uint64_t n;
  Segment* next;
};
// A FIFO of segments, oldest first. Plain pointers (constant-initialized): the runtime thread
// may start before this file's dynamic initializers run.
Segment* g_seg_head = nullptr;
Segment* g_seg_tail = nullptr;
std::uint64_t g_sweeps = 0;
std::uint64_t g_invoked_through = 0;
std::atomic<std::uint64_t> g_nr_queued{0}, g_nr_invoked{0}, g_nr_pending{0}, g_nr_head_frees{0};

thread_local bool t_in_callback = false;

void push_overflow(bulkrcu_head* head) {
  bulkrcu_head* old = g_overflow.load(std::memory_order_relaxed);
  do {
    head->next = old;
  } while (
      !g_overflow.compare_exchange_weak(old, head, std::memory_order_release, std::memory_order_relaxed));
  g_nr_overflow.fetch_add(1, std::memory_order_relaxed);
}

// Reverses a LIFO chain; returns the new first node, *last = new last node.
bulkrcu_head* reverse(bulkrcu_head* h, bulkrcu_head** last, std::uint64_t* n) {
  bulkrcu_head* prev = nullptr;
  *last = h;
  while (h) {
    bulkrcu_head* next = h->next;
    h->next = prev;
    prev = h;
    h = next;
    ++*n;
  }
  return prev;
}

}  // namespace

void call_free_head(bulkrcu_head* head, std::uintptr_t offset) noexcept {
  call(head, reinterpret_cast<void (*)(bulkrcu_head*)>(offset));
}

void call(bulkrcu_head* head, void (*func)(bulkrcu_head*)) noexcept {
  head->func = func;
  CbSlot* base = slots();
  bool done = false;
#if BULKRCU_HAVE_RSEQ_ASM
  if (BULKRCU_LIKELY(mode() == PercpuMode::kRseq)) {
    done =
        subtle::rseq_push<offsetof(CbSlot, head), offsetof(bulkrcu_head, next)>(base, sizeof(CbSlot), head);
  } else
#endif
  {
    CbSlot& s = base[current_cpu()];
    if (s.lock.try_lock()) {
      head->next = s.head;
      __atomic_store_n(&s.head, head, __ATOMIC_RELAXED);  // has_unswept() peeks without the lock
      s.lock.unlock();
      done = true;
    }
  }
  if (BULKRCU_UNLIKELY(!done)) push_overflow(head);
  doorbell_ring_if_idle();
}

bool has_unswept() noexcept {
  if (g_overflow.load(std::memory_order_relaxed)) return true;
  CbSlot* base = slots();
  for (int i = 0; i < nr_slots(); ++i)
    if (__atomic_load_n(&base[i].head, __ATOMIC_RELAXED)) return true;
  return false;
}

std::uint64_t sweep() noexcept {
  CbSlot* base = slots();
  const int n = nr_slots();
  bulkrcu_head* taken[256];
  bulkrcu_head** lists = n <= 256 ? taken : new bulkrcu_head*[n];
  // The overflow list first, before any slot is locked, and its chain first in the segment: a
  // push that found its slot locked by this sweep lands in the next sweep, and so does every
  // later push of that thread, so a thread's callbacks keep their order on one CPU.
  bulkrcu_head* over = g_overflow.exchange(nullptr, std::memory_order_acquire);
  // R1 on every slot, one R2 for all CPUs, then take and R3 (percpu.h's protocol).
  for (int i = 0; i < n; ++i) base[i].lock.lock();
  subtle::fence_remote_all();
  for (int i = 0; i < n; ++i) {
    lists[i] = base[i].head;
    base[i].head = nullptr;
#if BULKRCU_TSAN
    // rseq_push released each node by its own address (TSan cannot see the asm store).
    for (bulkrcu_head* h = lists[i]; h; h = h->next) __tsan_acquire(h);
#endif
  }
  for (int i = 0; i < n; ++i) base[i].lock.unlock();

  // Concatenate the overflow chain, then each CPU's chain, each in queueing order.
  bulkrcu_head* first = nullptr;
  bulkrcu_head* tail = nullptr;
  std::uint64_t count = 0;
  auto append = [&](bulkrcu_head* lifo) {
    if (!lifo) return;
    bulkrcu_head* last;
    bulkrcu_head* fifo = reverse(lifo, &last, &count);
    if (tail)
      tail->next = fifo;
    else
      first = fifo;
    tail = last;
  };
  append(over);
  for (int i = 0; i < n; ++i) append(lists[i]);
  if (lists != taken) delete[] lists;

  const std::uint64_t id = ++g_sweeps;
  if (first) {
    // The cookie is taken after the detach: every callback in the segment was queued before it.
    auto* seg = new Segment{gp::get_state(), id, first, count, nullptr};
    if (g_seg_tail)
      g_seg_tail->next = seg;
    else
      g_seg_head = seg;
    g_seg_tail = seg;
    g_nr_queued.fetch_add(count, std::memory_order_relaxed);
    g_nr_pending.fetch_add(count, std::memory_order_relaxed);
  } else if (!g_seg_head) {
    g_invoked_through = id;
  }
  return id;
}

bool oldest_pending(unsigned long* cookie) noexcept {
  if (!g_seg_head) return false;
  *cookie = g_seg_head->cookie;
  return true;
}

std::uint64_t invoke_ready() noexcept {
  while (g_seg_head && gp::poll_state(g_seg_head->cookie)) {
    Segment seg = *g_seg_head;
    delete g_seg_head;
    g_seg_head = seg.next;
    if (!g_seg_head) g_seg_tail = nullptr;
    std::uint64_t head_frees = 0;
    t_in_callback = true;
    for (bulkrcu_head* h = seg.first; h;) {
      bulkrcu_head* next = h->next;  // read before func: func may free or requeue h
      const auto f = reinterpret_cast<std::uintptr_t>(h->func);
      if (f < kMaxHeadOffset) {
        free(reinterpret_cast<char*>(h) - f);
        ++head_frees;
      } else {
        h->func(h);
      }
      h = next;
    }
    t_in_callback = false;
    g_nr_invoked.fetch_add(seg.n, std::memory_order_relaxed);
    g_nr_head_frees.fetch_add(head_frees, std::memory_order_relaxed);
    g_nr_pending.fetch_sub(seg.n, std::memory_order_relaxed);
    g_invoked_through = seg.sweep;
  }
  if (!g_seg_head) g_invoked_through = g_sweeps;
  return g_invoked_through;
}

bool in_callback() noexcept { return t_in_callback; }

Stats stats() noexcept {
  Stats s{};
  s.queued = g_nr_queued.load(std::memory_order_relaxed);
  s.invoked = g_nr_invoked.load(std::memory_order_relaxed);
  s.overflow = g_nr_overflow.load(std::memory_order_relaxed);
  s.pending = g_nr_pending.load(std::memory_order_relaxed);
  s.head_frees = g_nr_head_frees.load(std::memory_order_relaxed);
  return s;
}

}  // namespace bulkrcu::detail::cb
