// bulkrcu/src/cache/cache_rseq.h: the object caches' restartable sequences (layer cache).
//
// ---------------------------------------------------------------------------------------------
// DANGER: raw rseq. Callers: cache.cpp's owner-side fast paths only, only when
// mode() == PercpuMode::kRseq. They follow percpu.h's protocol (SlotLock at offset 0 of the
// slot, the lock word checked inside the sequence and never written, one commit store, the
// abort handler preceded by glibc's signature). A remote side (barrier, shrink, destroy) locks
// the slot and calls fence_remote(cpu) before it touches the slot or the arrays it points to.
// ---------------------------------------------------------------------------------------------
//
// Array ("sheaf") layout both sequences rely on: nr at offset 0, cap at 8, objs[] from 64.
// The slot holds a pointer to an array at a fixed offset (kSheafOff), possibly nullptr.
#pragma once

#include <cstddef>
#include <cstdint>

#include "percpu/percpu.h"

namespace bulkrcu::detail::subtle {

#if BULKRCU_HAVE_RSEQ_ASM
// Pops objs[nr - 1] of the array this CPU's slot points to at kSheafOff; the commit is the
// store nr - 1. Returns the object, nullptr when there is no array or it is empty, and
// kSlotLocked when the slot's lock is held. About 18 instructions. It also prefetches the
// object four pops ahead: objects come back a grace period after they were retired, cold.
// Reading objs[nr - 1] before the commit is safe: only this CPU's sequences (which restart us)
// or a locked-and-fenced remote (which excludes us) change the array while it is in the slot.
template <std::size_t kSheafOff>
BULKRCU_ALWAYS_INLINE void* rseq_sheaf_pop(void* base, std::size_t stride) noexcept {
  void* obj;
  asm volatile(BULKRCU_RSEQ_BEGIN
               "movq $-1, %[obj]\n\t"
               "cmpl $0, (%%rax)\n\t"
               "jnz 5f\n\t"
               "xorl %k[obj], %k[obj]\n\t"
               "movq %c[soff](%%rax), %%rcx\n\t"
               "testq %%rcx, %%rcx\n\t"
               "jz 5f\n\t"
               "movq (%%rcx), %%rdx\n\t"
               "testq %%rdx, %%rdx\n\t"
               "jz 5f\n\t"
               "movq 56(%%rcx,%%rdx,8), %[obj]\n\t"
               "cmpq $5, %%rdx\n\t"
               "jb 3f\n\t"
               "movq 24(%%rcx,%%rdx,8), %%rax\n\t"
               "prefetcht0 (%%rax)\n\t"
               "3:\n\t"
               "decq %%rdx\n\t"
               "movq %%rdx, (%%rcx)\n\t" BULKRCU_RSEQ_END "5:\n\t"
               : [obj] "=&r"(obj)
               : [off] "r"(g_rseq_offset), [stride] "r"(stride), [base] "r"(base), [soff] "i"(kSheafOff)
               : "rax", "rcx", "rdx", "memory", "cc");
  return obj;
}

// Stores p at objs[nr] of the array this CPU's slot points to at kSheafOff and commits
// nr + 1. Returns the new nr (> 0), 0 when there is no array or it is full, -1 when the slot's
// lock is held. The store into objs[nr] before the commit is harmless if the sequence
// restarts: nr does not cover it. About 14 instructions.
template <std::size_t kSheafOff>
BULKRCU_ALWAYS_INLINE long rseq_sheaf_push(void* base, std::size_t stride, void* p) noexcept {
  long res;
  asm volatile(
      BULKRCU_RSEQ_BEGIN
      "movq $-1, %[res]\n\t"
      "cmpl $0, (%%rax)\n\t"
      "jnz 5f\n\t"
      "xorl %k[res], %k[res]\n\t"
      "movq %c[soff](%%rax), %%rcx\n\t"
      "testq %%rcx, %%rcx\n\t"
      "jz 5f\n\t"
      "movq (%%rcx), %%rdx\n\t"
      "cmpq 8(%%rcx), %%rdx\n\t"
      "jae 5f\n\t"
      "movq %[p], 64(%%rcx,%%rdx,8)\n\t"
      "leaq 1(%%rdx), %[res]\n\t"
      "movq %[res], (%%rcx)\n\t" BULKRCU_RSEQ_END "5:\n\t"
      : [res] "=&r"(res)
      : [off] "r"(g_rseq_offset), [stride] "r"(stride), [base] "r"(base), [soff] "i"(kSheafOff), [p] "r"(p)
      : "rax", "rcx", "rdx", "memory", "cc");
  return res;
}

// The CPU number in the rseq area (a hint outside a sequence).
BULKRCU_ALWAYS_INLINE unsigned cache_rseq_cpu() noexcept {
  unsigned cpu;
  asm volatile("movl %%fs:4(%1), %0" : "=r"(cpu) : "r"(g_rseq_offset));
  return cpu;
}
#endif

}  // namespace bulkrcu::detail::subtle
