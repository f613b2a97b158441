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
// Array ("sheaf") layout both sequences rely on: objs[] from 64, the array page-aligned. The
// slot holds a word at a fixed offset (kSheafOff): (array address | nr), or 0.
#pragma once

#include <cstddef>
#include <cstdint>

#include "percpu/percpu.h"

namespace bulkrcu::detail::subtle {

// How far ahead of the pop the object is prefetched.
inline constexpr std::size_t kSheafPrefetch = 4;
inline constexpr std::uintptr_t kSheafNrMask = 0xfff;  // nr in a slot word (the asm's $0xfff)

#if BULKRCU_HAVE_RSEQ_ASM
// The slot word at kSheafOff is (array address | nr), 0 for no array: arrays are page-aligned
// and nr <= cap < 4096 (kSheafNrMask), so while an array is installed its count lives in the
// slot word and the array's own nr field is stale (cache.cpp's unpack() writes it back when the
// array leaves the slot). One load of the slot then gives both, and the commit is one store of
// the word.

// Pops objs[nr - 1] of the array in this CPU's slot word at kSheafOff; the commit is the store
// word - 1. Returns the object, nullptr when there is no array or it is empty, and kSlotLocked
// when the slot's lock is held. It also prefetches the object kSheafPrefetch pops ahead:
// objects come back a grace period after they were retired, cold. Reading objs[nr - 1] before
// the commit is safe: only this CPU's sequences (which restart us) or a locked-and-fenced
// remote (which excludes us) change the array while it is in the slot.
template <std::size_t kSheafOff>
BULKRCU_ALWAYS_INLINE void* rseq_sheaf_pop(void* base, std::size_t stride) noexcept {
  void* obj;
  std::uintptr_t tmp;
  asm volatile(BULKRCU_RSEQ_BEGIN
               "movq $-1, %[obj]\n\t"
               "cmpl $0, (%%rax)\n\t"
               "jnz 5f\n\t"
               "xorl %k[obj], %k[obj]\n\t"
               "movq %c[soff](%%rax), %%rcx\n\t"
               "movl %%ecx, %%edx\n\t"
               "andl $0xfff, %%edx\n\t"
               "jz 5f\n\t"
               "subq %%rdx, %%rcx\n\t"
               "movq 56(%%rcx,%%rdx,8), %[obj]\n\t"
               "cmpq $%c[pfd1], %%rdx\n\t"
               "jb 3f\n\t"
               "movq %c[pfoff](%%rcx,%%rdx,8), %[tmp]\n\t"
               "prefetcht0 (%[tmp])\n\t"
               "3:\n\t"
               "leaq -1(%%rcx,%%rdx), %%rcx\n\t"
               "movq %%rcx, %c[soff](%%rax)\n\t" BULKRCU_RSEQ_END "5:\n\t"
               : [obj] "=&r"(obj), [tmp] "=&r"(tmp)
               : [off] "r"(g_rseq_offset), [stride] "r"(stride), [base] "r"(base), [soff] "i"(kSheafOff),
                 [pfd1] "i"(kSheafPrefetch + 1), [pfoff] "i"(56 - 8 * static_cast<long>(kSheafPrefetch))
               : "rax", "rcx", "rdx", "memory", "cc");
  return obj;
}

// Stores p at objs[nr] of the array in this CPU's slot word at kSheafOff and commits word + 1.
// Returns the new nr (> 0), 0 when there is no array or it holds `cap`, -1 when the slot's
// lock is held. The store into objs[nr] before the commit is harmless if the sequence
// restarts: nr does not cover it.
template <std::size_t kSheafOff>
BULKRCU_ALWAYS_INLINE long rseq_sheaf_push(void* base, std::size_t stride, std::size_t cap,
                                           void* p) noexcept {
  long res;
  asm volatile(BULKRCU_RSEQ_BEGIN
               "movq $-1, %[res]\n\t"
               "cmpl $0, (%%rax)\n\t"
               "jnz 5f\n\t"
               "xorl %k[res], %k[res]\n\t"
               "movq %c[soff](%%rax), %%rcx\n\t"
               "testq %%rcx, %%rcx\n\t"
               "jz 5f\n\t"
               "movl %%ecx, %%edx\n\t"
               "andl $0xfff, %%edx\n\t"
               "cmpq %[cap], %%rdx\n\t"
               "jae 5f\n\t"
               "subq %%rdx, %%rcx\n\t"
               "movq %[p], 64(%%rcx,%%rdx,8)\n\t"
               "leaq 1(%%rdx), %[res]\n\t"
               "leaq 1(%%rcx,%%rdx), %%rcx\n\t"
               "movq %%rcx, %c[soff](%%rax)\n\t" BULKRCU_RSEQ_END "5:\n\t"
               : [res] "=&r"(res)
               : [off] "r"(g_rseq_offset), [stride] "r"(stride), [base] "r"(base), [soff] "i"(kSheafOff),
                 [p] "r"(p), [cap] "r"(cap)
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
