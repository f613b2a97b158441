// bulkrcu/src/kvfree/kvfree_rseq.h: the kvfree layer's restartable sequences.
//
// DANGER: raw rseq critical sections over the block format of kvfree.cpp. Callers: kvfree.cpp
// only, in PercpuMode::kRseq. Both operations follow src/percpu/percpu.h's protocol: they check
// the slot's lock word inside the sequence and leave without a commit when it is held.
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
inline constexpr std::size_t kDoneOff = 40;
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

// Claims up to `kmax` pointers from the ready block at the head of this CPU's ready list
// (at `ready_off` in the slot): copies ptrs[done-k .. done-1] into out[0..k-1] and *fn_out,
// then prefetches the objects of the next claim (ptrs[done-2k .. done-k-1]: their chunk
// headers will be cold by the time they are freed), then the commit block->done = done - k.
// Returns k (> 0); 0 when the ready list is empty; -2
// when its head block is exhausted (done == 0: pop it and recycle it); -1 when the slot's lock
// is held. The copies before the commit only write the caller's buffer.
// The slot stride, the ready list's offset and the batch are immediates: with ASan's reserved
// registers and a frame pointer, the sequence must fit in the remaining ones.
template <std::size_t kStride, std::size_t kReadyOff, long kMax>
BULKRCU_ALWAYS_INLINE long rseq_claim(void* base, void** out, void** fn_out) noexcept {
  long res;
  void* fn;
  asm volatile(BULKRCU_RSEQ_BEGIN
               "movq $-1, %[res]\n\t"
               "cmpl $0, (%%rax)\n\t"
               "jnz 5f\n\t"
               "xorl %k[res], %k[res]\n\t"
               "movq %c[ready](%%rax), %%rcx\n\t"
               "testq %%rcx, %%rcx\n\t"
               "jz 5f\n\t"
               "movq $-2, %[res]\n\t"
               "movq 40(%%rcx), %%rdx\n\t"
               "testq %%rdx, %%rdx\n\t"
               "jz 5f\n\t"
               "movq %[kmax], %%r8\n\t"
               "cmpq %%rdx, %%r8\n\t"
               "cmovaq %%rdx, %%r8\n\t"
               "movq %%rdx, %%r9\n\t"
               "subq %%r8, %%r9\n\t"
               "xorl %%r11d, %%r11d\n\t"
               "3:\n\t"
               "movq 64(%%rcx,%%r9,8), %%r10\n\t"
               "movq %%r10, (%[out],%%r11,8)\n\t"
               "incq %%r9\n\t"
               "incq %%r11\n\t"
               "cmpq %%r8, %%r11\n\t"
               "jb 3b\n\t"
               "movq %%rdx, %%r9\n\t"
               "subq %%r8, %%r9\n\t"
               "movq %%r9, %%r11\n\t"
               "subq %%r8, %%r11\n\t"
               "jns 6f\n\t"
               "xorl %%r11d, %%r11d\n\t"
               "6:\n\t"
               "cmpq %%r9, %%r11\n\t"
               "jae 7f\n\t"
               "8:\n\t"
               "movq 64(%%rcx,%%r11,8), %%r10\n\t"
               "prefetcht0 (%%r10)\n\t"
               "incq %%r11\n\t"
               "cmpq %%r9, %%r11\n\t"
               "jb 8b\n\t"
               "7:\n\t"
               "movq 16(%%rcx), %[fn]\n\t"
               "movq %%r8, %[res]\n\t"
               "subq %%r8, %%rdx\n\t"
               "movq %%rdx, 40(%%rcx)\n\t" BULKRCU_RSEQ_END "5:\n\t"
               : [res] "=&r"(res), [fn] "=&r"(fn)
               : [off] "r"(g_rseq_offset), [stride] "i"(kStride), [base] "r"(base), [ready] "i"(kReadyOff),
                 [out] "r"(out), [kmax] "i"(kMax)
               : "rax", "rcx", "rdx", "r8", "r9", "r10", "r11", "memory", "cc");
  *fn_out = fn;
  return res;
}
#endif

}  // namespace bulkrcu::detail::kvfree::subtle
