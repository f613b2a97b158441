// bulkrcu/src/pool/pool_rseq.h: the pool's own restartable sequence (layer pool).
//
// ---------------------------------------------------------------------------------------------
// DANGER: raw rseq. Callers: pool.cpp's owner-side fast path only, only when
// mode() == PercpuMode::kRseq. It follows percpu.h's protocol exactly (SlotLock at offset 0 of
// the slot, lock checked inside the sequence and never written, the commit a single store, the
// abort handler preceded by glibc's signature), and a remote side must lock the slot and call
// fence_remote(cpu) before touching the list. It lives here rather than in percpu/ because it
// knows the pool's node layout (the depth field); percpu.h's rseq_pop is used as is.
// ---------------------------------------------------------------------------------------------
#pragma once

#include <cstddef>
#include <cstdint>

#include "percpu/percpu.h"

namespace bulkrcu::detail::subtle {

#if BULKRCU_HAVE_RSEQ_ASM
// Pushes `node` onto the list at kHeadOff in this CPU's slot and keeps the list's count in the
// nodes: node->depth = (old head ? old head->depth : 0) + 1 and node->next = old head are both
// written before the commit (the store of the head), so count == head ? head->depth : 0 holds
// whenever no sequence is in flight. Reading the old head's depth is safe for the same reason
// rseq_pop may read a node's link: only this CPU's sequences or a locked-and-fenced remote can
// take that node, and either restarts or excludes us. Returns the new count (>= 1), or 0 when
// the slot's lock is held (nothing done). About 16 instructions.
template <std::size_t kHeadOff, std::size_t kNextOff, std::size_t kDepthOff>
BULKRCU_ALWAYS_INLINE std::uintptr_t rseq_push_counted(void* base, std::size_t stride, void* node) noexcept {
#if BULKRCU_TSAN
  __tsan_release(node);
#endif
  // No output operands: GCC 12 was seen to return the output register on the `locked` path of
  // an asm goto with outputs (PercpuRseq.LockedSlotIsLeftAlone caught it). The count goes to a
  // local through memory, written before the commit (rewritten if the sequence restarts); not
  // read back from the node, which another thread on this CPU may pop right after the commit.
  std::uintptr_t count = 0;
  asm goto(BULKRCU_RSEQ_BEGIN
           "cmpl $0, (%%rax)\n\t"
           "jnz %l[locked]\n\t"
           "movq %c[headoff](%%rax), %%rcx\n\t"
           "movq %%rcx, %c[nextoff](%[node])\n\t"
           "movl $1, %%edx\n\t"
           "testq %%rcx, %%rcx\n\t"
           "jz 3f\n\t"
           "movq %c[depthoff](%%rcx), %%rdx\n\t"
           "incq %%rdx\n\t"
           "3:\n\t"
           "movq %%rdx, %c[depthoff](%[node])\n\t"
           "movq %%rdx, (%[count])\n\t"
           "movq %[node], %c[headoff](%%rax)\n\t" BULKRCU_RSEQ_END
           :
           : [off] "r"(g_rseq_offset), [stride] "r"(stride), [base] "r"(base), [node] "r"(node),
             [count] "r"(&count), [headoff] "i"(kHeadOff), [nextoff] "i"(kNextOff), [depthoff] "i"(kDepthOff)
           : "rax", "rcx", "rdx", "memory", "cc"
           : locked);
  return count;
locked:
  return 0;
}

// The release fast path's pop (bulkrcu_alloc_page_lockless, bulkrcu_alloc_page): rseq_pop
// plus the list's bookkeeping in the same asm, so that no second read of the CPU number is
// needed. Inside the sequence: lock check, head, the popped node's depth and link, the commit
// (store of the new head). After the commit, outside the sequence, with the slot still in
// %rax: the count hint (*hint = depth - 1) and one `incq` of the statistic at kStatOff. Those
// two land on the slot of the CPU the commit ran on; a preemption and migration between the
// commit and the `incq` makes it race with that CPU's owner (an increment may be lost: the
// statistics' documented imprecision). Returns the node, nullptr (empty) or kSlotLocked;
// *left = pages left on the list (only meaningful with a node). About 16 instructions.
template <std::size_t kHeadOff, std::size_t kNextOff, std::size_t kDepthOff, std::size_t kHintOff,
          std::size_t kStatOff>
BULKRCU_ALWAYS_INLINE void* rseq_pop_counted(void* base, std::size_t stride, std::uintptr_t* left) noexcept {
  void* node;
  std::uintptr_t l;
  asm volatile(
      BULKRCU_RSEQ_BEGIN
      "movq $-1, %[node]\n\t"
      "cmpl $0, (%%rax)\n\t"
      "jnz 5f\n\t"
      "movq %c[headoff](%%rax), %[node]\n\t"
      "testq %[node], %[node]\n\t"
      "jz 5f\n\t"
      "movq %c[depthoff](%[node]), %[left]\n\t"
      "movq %c[nextoff](%[node]), %%rdx\n\t"
      "movq %%rdx, %c[headoff](%%rax)\n\t" BULKRCU_RSEQ_END
      "decq %[left]\n\t"
      "movq %[left], %c[hintoff](%%rax)\n\t"
      "incq %c[statoff](%%rax)\n\t"
      "5:\n\t"
      : [node] "=&r"(node), [left] "=&r"(l)
      : [off] "r"(g_rseq_offset), [stride] "r"(stride), [base] "r"(base), [headoff] "i"(kHeadOff),
        [nextoff] "i"(kNextOff), [depthoff] "i"(kDepthOff), [hintoff] "i"(kHintOff), [statoff] "i"(kStatOff)
      : "rax", "rdx", "memory", "cc");
#if BULKRCU_TSAN
  if (node != nullptr && node != kSlotLocked) __tsan_acquire(node);
#endif
  *left = l;
  return node;
}

// The release fast path's push (bulkrcu_free_page): rseq_push_counted that refuses to grow
// the list beyond kHigh pages. Returns 0 when pushed, 1 when the slot's lock is held, 2 when
// the list already holds kHigh pages (both leave the list and the node alone: the caller's
// slow path pushes and trims). The node's link and depth are written only once the checks
// passed, before the commit; after the commit, as in rseq_pop_counted, the count hint and the
// statistic at kStatOff. About 18 instructions.
template <std::size_t kHeadOff, std::size_t kNextOff, std::size_t kDepthOff, std::size_t kHintOff,
          std::size_t kStatOff, std::uintptr_t kHigh>
BULKRCU_ALWAYS_INLINE int rseq_push_bounded(void* base, std::size_t stride, void* node) noexcept {
  static_assert(kHigh > 0 && kHigh < (std::uintptr_t{1} << 31));
#if BULKRCU_TSAN
  __tsan_release(node);
#endif
  asm goto(BULKRCU_RSEQ_BEGIN
           "cmpl $0, (%%rax)\n\t"
           "jnz %l[locked]\n\t"
           "movq %c[headoff](%%rax), %%rcx\n\t"
           "movl $1, %%edx\n\t"
           "testq %%rcx, %%rcx\n\t"
           "jz 3f\n\t"
           "movq %c[depthoff](%%rcx), %%rdx\n\t"
           "cmpq %[high], %%rdx\n\t"
           "jae %l[full]\n\t"
           "incq %%rdx\n\t"
           "3:\n\t"
           "movq %%rcx, %c[nextoff](%[node])\n\t"
           "movq %%rdx, %c[depthoff](%[node])\n\t"
           "movq %[node], %c[headoff](%%rax)\n\t" BULKRCU_RSEQ_END
           "movq %%rdx, %c[hintoff](%%rax)\n\t"
           "incq %c[statoff](%%rax)\n\t"
           :
           : [off] "r"(g_rseq_offset), [stride] "r"(stride), [base] "r"(base), [node] "r"(node),
             [headoff] "i"(kHeadOff), [nextoff] "i"(kNextOff), [depthoff] "i"(kDepthOff),
             [hintoff] "i"(kHintOff), [statoff] "i"(kStatOff), [high] "i"(kHigh)
           : "rax", "rcx", "rdx", "memory", "cc"
           : locked, full);
  return 0;
locked:
  return 1;
full:
  return 2;
}

// The CPU number from the rseq area (kRseq mode only). Outside a sequence it is a hint: the
// thread may migrate right after the load. Used to pick the slot whose statistics to bump.
BULKRCU_ALWAYS_INLINE unsigned rseq_cpu_hint() noexcept {
  unsigned cpu;
  asm volatile("movl %%fs:4(%1), %0" : "=r"(cpu) : "r"(g_rseq_offset));
  return cpu;
}
#endif

}  // namespace bulkrcu::detail::subtle
