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
// Array ("sheaf") layout the sequences rely on: objs[] from 64, the array page-aligned. The
// slot holds a word at a fixed offset (kSheafOff): (array address | nr), or 0.
#pragma once

#include <cstddef>
#include <cstdint>

#include "bulkrcu/cache.h"
#include "percpu/percpu.h"

namespace bulkrcu::detail::subtle {

inline constexpr std::uintptr_t kSheafNrMask = 0xfff;  // nr in a slot word (the asm's $0xfff)

#if BULKRCU_HAVE_RSEQ_ASM
// The slot word at kSheafOff is (array address | nr), 0 for no array: arrays are page-aligned
// and nr <= cap < 4096 (kSheafNrMask), so while an array is installed its count lives in the
// slot word and the array's own nr field is stale (cache.cpp's unpack() writes it back when the
// array leaves the slot). One load of the slot then gives both, and the commit is one store of
// the word.
//
// The sequences themselves are the public header's (include/bulkrcu/cache.h, section
// "private: the inline fast paths"), so that callers outside the library inline the same code
// the library runs: bulkrcu__cache_pop_main, bulkrcu__cache_push_main, bulkrcu__cache_push_rcu.
// They find this CPU's slot by a shift (`cpu << 7`: a CpuSlot is two 64-byte lines) rather than
// a multiply by a stride register, and take the words at the header's fixed offsets.
inline constexpr std::size_t kCacheSlotBytes = 128;  // the sequences' shift
inline constexpr std::size_t kSheafPrefetch = BULKRCU__CACHE_PREFETCH;
static_assert(BULKRCU__CACHE_MAIN_OFF == 8 && BULKRCU__CACHE_RCU_OFF == 16);

// Pops objs[nr - 1] of the array in this CPU's slot word at kSheafOff (the allocation array's
// word only); true with the object in *out, false when there is no array, it is empty or the
// slot's lock is held (the caller's slow path tells them apart). Prefetches the object
// kSheafPrefetch pops ahead.
template <std::size_t kSheafOff>
BULKRCU_ALWAYS_INLINE bool rseq_sheaf_pop(void* base, void** out) noexcept {
  static_assert(kSheafOff == BULKRCU__CACHE_MAIN_OFF);
  return bulkrcu__cache_pop_main(g_rseq_offset, base, out) != 0;
}

// Stores p at objs[nr] of the array in this CPU's slot word at kSheafOff and commits word + 1.
// Returns 1 when stored, 0 when there is no array or it holds `cap`, -1 when the slot's lock
// is held.
template <std::size_t kSheafOff>
BULKRCU_ALWAYS_INLINE long rseq_sheaf_push(void* base, std::size_t cap, void* p) noexcept {
  static_assert(kSheafOff == BULKRCU__CACHE_MAIN_OFF || kSheafOff == BULKRCU__CACHE_RCU_OFF);
  if constexpr (kSheafOff == BULKRCU__CACHE_MAIN_OFF)
    return bulkrcu__cache_push_main(g_rseq_offset, base, cap, p);
  else
    return bulkrcu__cache_push_rcu(g_rseq_offset, base, cap, p);
}

// The CPU number in the rseq area (a hint outside a sequence).
BULKRCU_ALWAYS_INLINE unsigned cache_rseq_cpu() noexcept {
  unsigned cpu;
  asm volatile("movl %%fs:4(%1), %0" : "=r"(cpu) : "r"(g_rseq_offset));
  return cpu;
}
#endif

}  // namespace bulkrcu::detail::subtle
