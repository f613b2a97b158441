// bulkrcu/src/pool/pool_rseq.h: the pool's own restartable sequence (layer pool).
//
// ---------------------------------------------------------------------------------------------
// DANGER: raw rseq. Callers: pool.cpp's owner-side fast path only, only when
// mode() == PercpuMode::kRseq. It follows percpu.h's protocol exactly (SlotLock at offset 0 of
// the slot, lock checked inside the sequence and never written, the commit a single store, the
// abort handler preceded by glibc's signature), and a remote side must lock the slot and call
// fence_remote(cpu) before touching the list. The sequences themselves are the public header's
// (they know the pool's head-word layout); this header keeps the CPU-number hint.
// ---------------------------------------------------------------------------------------------
#pragma once

#include <cstddef>
#include <cstdint>

#include "percpu/percpu.h"

namespace bulkrcu::detail::subtle {

#if BULKRCU_HAVE_RSEQ_ASM
// The pool's pop and bounded push (the count in the head word, a statistic bumped after the
// commit) are the public header's bulkrcu__pool_pop and bulkrcu__pool_push
// (include/bulkrcu/page_pool.h): the library's checked paths, trims and batch refills run the
// same sequences that callers outside the library inline.

// The CPU number from the rseq area (kRseq mode only). Outside a sequence it is a hint: the
// thread may migrate right after the load. Used to pick the slot whose statistics to bump.
BULKRCU_ALWAYS_INLINE unsigned rseq_cpu_hint() noexcept {
  unsigned cpu;
  asm volatile("movl %%fs:4(%1), %0" : "=r"(cpu) : "r"(g_rseq_offset));
  return cpu;
}
#endif

}  // namespace bulkrcu::detail::subtle
