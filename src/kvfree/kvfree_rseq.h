// bulkrcu/src/kvfree/kvfree_rseq.h: the kvfree layer's restartable sequences.
//
// DANGER: raw rseq critical sections over the block format of kvfree.cpp. Callers: kvfree.cpp
// only, in PercpuMode::kRseq. The operation follows src/percpu/percpu.h's protocol: it checks
// the slot's lock word inside the sequence and leaves without a commit when it is held.
#pragma once

#include <cstddef>
#include <cstdint>

#include "percpu/percpu.h"

namespace bulkrcu::detail::kvfree::subtle {

using bulkrcu::detail::subtle::g_rseq_offset;

// Block header offsets the sequences rely on (static_asserted in kvfree.cpp).
inline constexpr std::size_t kNrOff = 0;
inline constexpr std::size_t kCapOff = 8;
inline constexpr std::size_t kFnOff = 16;
inline constexpr std::size_t kPtrsOff = 64;

#if BULKRCU_HAVE_RSEQ_ASM
// The retire fast path. In this CPU's slot, block = *(slot + front_off); if the block exists,
// belongs to channel `fn` and has room: block->ptrs[nr] = ptr, then the commit
// block->nr = nr + 1. Returns the new nr (> 0), 0 when the slow path must run (no block, other
// channel, full), -1 when the slot's lock is held. About 16 instructions; no atomic
// read-modify-write, no fence. The store into ptrs[nr] before the commit is harmless when the
// sequence restarts: nr does not cover it, and the retry writes the slot again.
BULKRCU_ALWAYS_INLINE long rseq_store_ptr(void* base, std::size_t stride, std::size_t front_off, void* fn,
                                          void* ptr) noexcept {
  long res;
  asm volatile(BULKRCU_RSEQ_BEGIN
               "movq $-1, %[res]\n\t"
               "cmpl $0, (%%rax)\n\t"
               "jnz 5f\n\t"
               "xorl %k[res], %k[res]\n\t"
               "movq (%%rax,%[front]), %%rcx\n\t"
               "testq %%rcx, %%rcx\n\t"
               "jz 5f\n\t"
               "cmpq %[fn], 16(%%rcx)\n\t"
               "jne 5f\n\t"
               "movq (%%rcx), %%rdx\n\t"
               "cmpq 8(%%rcx), %%rdx\n\t"
               "jae 5f\n\t"
               "movq %[ptr], 64(%%rcx,%%rdx,8)\n\t"
               "leaq 1(%%rdx), %[res]\n\t"
               "movq %[res], (%%rcx)\n\t" BULKRCU_RSEQ_END "5:\n\t"
               : [res] "=&r"(res)
               : [off] "r"(g_rseq_offset), [stride] "r"(stride), [base] "r"(base), [front] "r"(front_off),
                 [fn] "r"(fn), [ptr] "r"(ptr)
               : "rax", "rcx", "rdx", "memory", "cc");
  return res;
}
#endif

}  // namespace bulkrcu::detail::kvfree::subtle
