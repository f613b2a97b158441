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

// BULKRCU_RSEQ_BEGIN (percpu.h) with the slot found by a shift: a CpuSlot is one 64-byte cache
// line, so `cpu << 6` replaces the multiply by a stride register (one instruction and one
// register fewer, and the multiply's latency off the chain every fast path waits on). Same
// descriptor, labels and protocol otherwise.
#define BULKRCU_CACHE_RSEQ_BEGIN       \
  ".pushsection __rseq_cs, \"aw\"\n\t" \
  ".balign 32\n\t"                     \
  "333:\n\t"                           \
  ".long 0x0, 0x0\n\t"                 \
  ".quad 1f, (2f - 1f), 4f\n\t"        \
  ".popsection\n\t"                    \
  "0:\n\t"                             \
  "leaq 333b(%%rip), %%rax\n\t"        \
  "movq %%rax, %%fs:8(%[off])\n\t"     \
  "1:\n\t"                             \
  "movl %%fs:4(%[off]), %%eax\n\t"     \
  "shlq $6, %%rax\n\t"                 \
  "addq %[base], %%rax\n\t"
inline constexpr std::size_t kCacheSlotBytes = 64;  // the shift above

// Pops objs[nr - 1] of the array in this CPU's slot word at kSheafOff (slots of
// kCacheSlotBytes); the commit is the store word - 1. Returns true with the object in *out,
// false when there is no array, it is empty or the slot's lock is held (the caller's slow path
// tells them apart).
// It also prefetches the object kSheafPrefetch pops ahead: objects come back a grace period
// after they were retired, cold. Reading objs[nr - 1] before the commit is safe: only this
// CPU's sequences (which restart us) or a locked-and-fenced remote (which excludes us) change
// the array while it is in the slot. An `asm goto`: the failure cases jump straight to the
// caller's slow path (no result register to set and test).
template <std::size_t kSheafOff>
BULKRCU_ALWAYS_INLINE bool rseq_sheaf_pop(void* base, void** out) noexcept {
  void* obj;
  std::uintptr_t tmp;
  asm goto(BULKRCU_CACHE_RSEQ_BEGIN
           "cmpl $0, (%%rax)\n\t"
           "jnz %l[none]\n\t"
           "movq %c[soff](%%rax), %%rcx\n\t"
           "movl %%ecx, %%edx\n\t"
           "andl $0xfff, %%edx\n\t"
           "jz %l[none]\n\t"
           "subq %%rdx, %%rcx\n\t"
           "movq 56(%%rcx,%%rdx,8), %[obj]\n\t"
           "cmpq $%c[pfd1], %%rdx\n\t"
           "jb 3f\n\t"
           "movq %c[pfoff](%%rcx,%%rdx,8), %[tmp]\n\t"
           "prefetcht0 (%[tmp])\n\t"
           "3:\n\t"
           "leaq -1(%%rcx,%%rdx), %%rcx\n\t"
           "movq %%rcx, %c[soff](%%rax)\n\t" BULKRCU_RSEQ_END
           : [obj] "=&r"(obj), [tmp] "=&r"(tmp)
           : [off] "r"(g_rseq_offset), [base] "r"(base), [soff] "i"(kSheafOff),
             [pfd1] "i"(kSheafPrefetch + 1), [pfoff] "i"(56 - 8 * static_cast<long>(kSheafPrefetch))
           : "rax", "rcx", "rdx", "memory", "cc"
           : none);
  *out = obj;
  return true;
none:
  return false;
}

// Stores p at objs[nr] of the array in this CPU's slot word at kSheafOff and commits word + 1.
// Returns 1 when stored, 0 when there is no array or it holds `cap`, -1 when the slot's lock
// is held (an `asm goto`: the compiler folds the constants into the caller's branches). The
// store into objs[nr] before the commit is harmless if the sequence restarts: nr does not
// cover it.
template <std::size_t kSheafOff>
BULKRCU_ALWAYS_INLINE long rseq_sheaf_push(void* base, std::size_t cap, void* p) noexcept {
  asm goto(BULKRCU_CACHE_RSEQ_BEGIN
           "cmpl $0, (%%rax)\n\t"
           "jnz %l[locked]\n\t"
           "movq %c[soff](%%rax), %%rcx\n\t"
           "testq %%rcx, %%rcx\n\t"
           "jz %l[full]\n\t"
           "movl %%ecx, %%edx\n\t"
           "andl $0xfff, %%edx\n\t"
           "cmpq %[cap], %%rdx\n\t"
           "jae %l[full]\n\t"
           "subq %%rdx, %%rcx\n\t"
           "movq %[p], 64(%%rcx,%%rdx,8)\n\t"
           "leaq 1(%%rcx,%%rdx), %%rcx\n\t"
           "movq %%rcx, %c[soff](%%rax)\n\t" BULKRCU_RSEQ_END
           :
           : [off] "r"(g_rseq_offset), [base] "r"(base), [soff] "i"(kSheafOff), [p] "r"(p), [cap] "r"(cap)
           : "rax", "rcx", "rdx", "memory", "cc"
           : locked, full);
  return 1;
locked:
  return -1;
full:
  return 0;
}

// The CPU number in the rseq area (a hint outside a sequence).
BULKRCU_ALWAYS_INLINE unsigned cache_rseq_cpu() noexcept {
  unsigned cpu;
  asm volatile("movl %%fs:4(%1), %0" : "=r"(cpu) : "r"(g_rseq_offset));
  return cpu;
}
#endif

}  // namespace bulkrcu::detail::subtle
