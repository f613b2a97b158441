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

// The release fast path's pop and bounded push (with the count hint and the statistics written
// after the commit) are the public header's bulkrcu__pool_pop and bulkrcu__pool_push
// (include/bulkrcu/page_pool.h), so that callers outside the library can inline them.

// The CPU number from the rseq area (kRseq mode only). Outside a sequence it is a hint: the
// thread may migrate right after the load. Used to pick the slot whose statistics to bump.
BULKRCU_ALWAYS_INLINE unsigned rseq_cpu_hint() noexcept {
  unsigned cpu;
  asm volatile("movl %%fs:4(%1), %0" : "=r"(cpu) : "r"(g_rseq_offset));
  return cpu;
}
#endif

}  // namespace bulkrcu::detail::subtle
