// bulkrcu/src/percpu/percpu.h: per-CPU slots, rseq critical sections and their fallback.
//
// Layer: percpu (includes only base/).
//
// A per-CPU structure in bulkrcu is an array of cache-line-aligned slots, one per possible CPU.
// Every slot begins with a SlotLock. Two modes, chosen once per process (mode()):
//
//  * kRseq: the owner side runs restartable sequences (glibc's registration, reached through
//    __rseq_offset; the CPU number is read *inside* the sequence). A sequence first checks the
//    slot's lock word and leaves (returns "locked") when it is held. It never writes the lock.
//  * kLock: rseq is unavailable (valgrind, GLIBC_TUNABLES=glibc.pthread.rseq=0, old kernels) or
//    BULKRCU_NO_RSEQ=1. The owner side picks sched_getcpu()'s slot and try-locks it.
//
// Synchronization protocol between the owner side and a remote side (a runtime thread that
// detaches a CPU's list or takes its pages):
//
//   remote:  lock(slot)            -- (R1) spin-acquire the lock word
//            fence_remote(cpu)     -- (R2) kRseq only: membarrier(PRIVATE_EXPEDITED_RSEQ) aimed
//                                          at that CPU; restarts any sequence in flight there
//            ... read / write the slot ...
//            unlock(slot)          -- (R3) release store
//
//   owner:   rseq: read cpu; load lock word (O1); ... ; commit store (O2)
//
// The interleaving R2 prevents: an owner sequence loads lock == 0 (O1) just before R1, the
// remote then takes the list head, and the owner commits (O2) a head that links the taken
// node: the node would be owned twice. A sequence that loaded lock == 0 before R1 is either
// still running on its CPU when R2 arrives (the kernel restarts it at its abort handler, and
// the retry sees lock != 0 because R1 happened-before the IPI), or was preempted inside the
// sequence (it restarts on resumption), or has already committed (O2 happened-before R2's
// barrier on that CPU, so the remote sees it). In kLock mode the try-lock alone excludes.
//
// A signal handler may interrupt an owner sequence: the kernel restarts the sequence after the
// handler, so a handler may use the same slot. In kLock mode a handler that interrupts a holder
// of the slot's lock finds it held and must take its caller's fallback (never spin on it).
#pragma once

#include <sched.h>
#include <stddef.h>

#include <atomic>
#include <cstdint>
#include <new>

#include "base/base.h"
#include "bulkrcu/rseq_asm.h"

#if BULKRCU_TSAN
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

namespace bulkrcu::detail {

enum class PercpuMode : int { kUnknown = 0, kRseq = 1, kLock = 2 };

// Lock word at offset 0 of every per-CPU slot.
struct SlotLock {
  std::atomic<std::uint32_t> word{0};

  bool try_lock() noexcept {
    std::uint32_t expected = 0;
    return word.load(std::memory_order_relaxed) == 0 &&
           word.compare_exchange_strong(expected, 1, std::memory_order_acquire, std::memory_order_relaxed);
  }
  void lock() noexcept {
    while (!try_lock()) cpu_relax();
  }
  void unlock() noexcept { word.store(0, std::memory_order_release); }
};

namespace percpu_internal {
extern std::atomic<int> g_mode;
PercpuMode init_mode() noexcept;
}  // namespace percpu_internal

// The mode this process runs in; decided on first call and never changes afterwards.
BULKRCU_ALWAYS_INLINE PercpuMode mode() noexcept {
  int m = percpu_internal::g_mode.load(std::memory_order_relaxed);
  if (BULKRCU_LIKELY(m != 0)) return static_cast<PercpuMode>(m);
  return percpu_internal::init_mode();
}

// Number of slots in every per-CPU array: the possible-CPU count.
int nr_slots() noexcept;

// The CPU this thread probably runs on, in [0, nr_slots()); for the kLock mode and statistics.
int current_cpu() noexcept;

// Allocates a zeroed, cache-line-aligned array of nr_slots() slots of type T (never freed:
// per-CPU arrays live as long as the process). Uses mmap so it may run before malloc is usable.
void* alloc_slots(std::size_t slot_size) noexcept;

template <class T>
T* make_slots() noexcept {
  static_assert(alignof(T) >= kCacheLine, "per-CPU slots must be cache-line aligned");
  void* mem = alloc_slots(sizeof(T));
  T* slots = static_cast<T*>(mem);
  for (int i = 0; i < nr_slots(); ++i) new (&slots[i]) T();
  return slots;
}

// Returns the slot array held in `cell`, creating it on first use. Lock-free and
// async-signal-safe (mmap and a compare-and-swap; a racing loser unmaps its copy).
void free_slots(void* mem, std::size_t slot_size) noexcept;
template <class T>
BULKRCU_ALWAYS_INLINE T* get_slots(std::atomic<T*>& cell) noexcept {
  T* s = cell.load(std::memory_order_acquire);
  if (BULKRCU_LIKELY(s != nullptr)) return s;
  T* fresh = make_slots<T>();
  if (cell.compare_exchange_strong(s, fresh, std::memory_order_acq_rel, std::memory_order_acquire))
    return fresh;
  free_slots(fresh, sizeof(T));
  return s;
}

namespace subtle {
// ---------------------------------------------------------------------------------------
// DANGER: raw restartable sequences. Callers: the callback, pool and kvfree layers' owner-side
// fast paths, only when mode() == kRseq. Each operation names its slot by (base, stride); the
// slot's SlotLock must be at offset 0. A remote side must follow the protocol above.
// ---------------------------------------------------------------------------------------

extern "C++" {
// Set to glibc's __rseq_offset when mode() == kRseq.
extern long g_rseq_offset;
}

// Remote fence (R2): after it returns, no owner sequence on `cpu` that read the slot's lock
// word before the caller's lock() can commit. No-op in kLock mode.
void fence_remote(int cpu) noexcept;
// The same for every CPU at once (one IPI broadcast).
void fence_remote_all() noexcept;

#if defined(__x86_64__)
#define BULKRCU_HAVE_RSEQ_ASM 1

// What every bulkrcu restartable sequence shares (x86-64) is in the public private header
// bulkrcu/rseq_asm.h (the inline fast paths of rcu.h, page_pool.h and cache.h use it too):
// the descriptor (start 1, post-commit 2, abort 4) in __rseq_cs, the arming of rseq_cs (label
// 0, where the abort handler restarts: the kernel clears rseq_cs on abort), the CPU number read
// inside the sequence, and BULKRCU__RSEQ_END: label 2 and the abort handler behind the
// signature. BULKRCU_RSEQ_BEGIN adds the slot of this CPU in %rax, computed from the operands
// [off] (__rseq_offset), [stride] and [base]; the body follows and ends with its one commit
// store, then BULKRCU_RSEQ_END.
#define BULKRCU_RSEQ_BEGIN     \
  BULKRCU__RSEQ_START          \
  "imulq %[stride], %%rax\n\t" \
  "addq %[base], %%rax\n\t"
#define BULKRCU_RSEQ_END BULKRCU__RSEQ_END

// Pushes the chain first .. last (linked through `next_off`; last's link is written before the
// commit, and rewritten if the sequence restarts) onto the singly linked list whose head
// pointer is at `head_off` in this CPU's slot. Returns false (nothing done) when the slot's
// lock is held. About 9 instructions; the commit is the store of the head.
template <std::size_t kHeadOff, std::size_t kNextOff>
BULKRCU_ALWAYS_INLINE bool rseq_push_chain(void* base, std::size_t stride, void* first, void* last) noexcept {
#if BULKRCU_TSAN
  __tsan_release(first);
#endif
  asm goto(BULKRCU_RSEQ_BEGIN
           "cmpl $0, (%%rax)\n\t"
           "jnz %l[locked]\n\t"
           "movq %c[headoff](%%rax), %%rcx\n\t"
           "movq %%rcx, %c[nextoff](%[last])\n\t"
           "movq %[first], %c[headoff](%%rax)\n\t" BULKRCU_RSEQ_END
           :
           : [off] "r"(g_rseq_offset), [stride] "r"(stride), [base] "r"(base), [first] "r"(first),
             [last] "r"(last), [headoff] "i"(kHeadOff), [nextoff] "i"(kNextOff)
           : "rax", "rcx", "memory", "cc"
           : locked);
  return true;
locked:
  return false;
}

// Pushes `node` (a chain of one) the same way.
template <std::size_t kHeadOff, std::size_t kNextOff>
BULKRCU_ALWAYS_INLINE bool rseq_push(void* base, std::size_t stride, void* node) noexcept {
  return rseq_push_chain<kHeadOff, kNextOff>(base, stride, node, node);
}

// Appends `node` to the FIFO list of this CPU's slot whose tail pointer (the address of the
// link field that gets the next node: the slot's head field when the list is empty) is at
// `tail_off`. `node`'s own link (at `next_off`) must be null. Returns false (nothing done)
// when the slot's lock is held. The store of `node` into the old tail's link comes before the
// commit (the store of the new tail): a sequence that aborts between the two leaves that link
// pointing at a node that is not in the list. Only the link at the tail can hold such a stale
// address (any later append overwrites it before its commit), so a remote side that detaches
// the list (after R1 and R2, when no aborted store can still land) tells the end by the tail
// pointer alone, rewrites that last link to null, and tells an empty list by a tail pointer
// that points at the head field (whose value is then stale, too). About 9 instructions.
template <std::size_t kTailOff, std::size_t kNextOff>
BULKRCU_ALWAYS_INLINE bool rseq_append(void* base, std::size_t stride, void* node) noexcept {
#if BULKRCU_TSAN
  __tsan_release(node);
#endif
  void* const link = static_cast<char*>(node) + kNextOff;
  asm goto(BULKRCU_RSEQ_BEGIN
           "cmpl $0, (%%rax)\n\t"
           "jnz %l[locked]\n\t"
           "movq %c[tailoff](%%rax), %%rcx\n\t"
           "movq %[node], (%%rcx)\n\t"
           "movq %[link], %c[tailoff](%%rax)\n\t" BULKRCU_RSEQ_END
           :
           : [off] "r"(g_rseq_offset), [stride] "r"(stride), [base] "r"(base), [node] "r"(node),
             [link] "r"(link), [tailoff] "i"(kTailOff)
           : "rax", "rcx", "memory", "cc"
           : locked);
  return true;
locked:
  return false;
}

// Pops the first node of the list at `head_off` in this CPU's slot. Returns nullptr when the
// list is empty, and `locked` when the slot's lock is held (both leave the list alone).
// The commit is the store of the new head; the popped node's link is only read.
inline void* const kSlotLocked = reinterpret_cast<void*>(~std::uintptr_t{0});
template <std::size_t kHeadOff, std::size_t kNextOff>
BULKRCU_ALWAYS_INLINE void* rseq_pop(void* base, std::size_t stride) noexcept {
  // A plain asm with the result in a register on every path (no asm goto with outputs: GCC 12
  // was seen returning a stale output register on a goto path, see src/pool/pool_rseq.h).
  void* node;
  asm volatile(BULKRCU_RSEQ_BEGIN
               "movq $-1, %[node]\n\t"
               "cmpl $0, (%%rax)\n\t"
               "jnz 5f\n\t"
               "movq %c[headoff](%%rax), %[node]\n\t"
               "testq %[node], %[node]\n\t"
               "jz 5f\n\t"
               "movq %c[nextoff](%[node]), %%rdx\n\t"
               "movq %%rdx, %c[headoff](%%rax)\n\t" BULKRCU_RSEQ_END "5:\n\t"
               : [node] "=&r"(node)
               : [off] "r"(g_rseq_offset), [stride] "r"(stride), [base] "r"(base), [headoff] "i"(kHeadOff),
                 [nextoff] "i"(kNextOff)
               : "rax", "rdx", "memory", "cc");
#if BULKRCU_TSAN
  if (node != nullptr && node != kSlotLocked) __tsan_acquire(node);
#endif
  return node;  // kSlotLocked, nullptr (empty) or the popped node
}
// If the pointer-sized field at `check_off` in this CPU's slot equals `expected`, stores
// `value` into *target (the commit) and returns 1; returns 0 when it differs and -1 when the
// slot's lock is held. `target` may lie outside the slot (a block header the slot points to).
// About 10 instructions.
BULKRCU_ALWAYS_INLINE int rseq_if_eq_store(void* base, std::size_t stride, std::size_t check_off,
                                           std::uintptr_t expected, std::uintptr_t* target,
                                           std::uintptr_t value) noexcept {
  int rc;
  asm volatile(BULKRCU_RSEQ_BEGIN
               "movl $-1, %[rc]\n\t"
               "cmpl $0, (%%rax)\n\t"
               "jnz 5f\n\t"
               "movl $0, %[rc]\n\t"
               "cmpq %[expected], (%%rax,%[check])\n\t"
               "jne 5f\n\t"
               "movl $1, %[rc]\n\t"
               "movq %[value], (%[target])\n\t" BULKRCU_RSEQ_END "5:\n\t"
               : [rc] "=&r"(rc)
               : [off] "r"(g_rseq_offset), [stride] "r"(stride), [base] "r"(base), [check] "r"(check_off),
                 [expected] "r"(expected), [target] "r"(target), [value] "r"(value)
               : "rax", "memory", "cc");
  return rc;
}
// If the pointer-sized field at `off` in this CPU's slot equals `expected`, replaces it with
// `desired` (the commit) and returns 1; returns 0 when it differs and -1 when the slot's lock
// is held. A compare-and-swap on this CPU's slot without a locked instruction.
BULKRCU_ALWAYS_INLINE int rseq_cmpxchg_slot(void* base, std::size_t stride, std::size_t off,
                                            std::uintptr_t expected, std::uintptr_t desired) noexcept {
  int rc;
  asm volatile(BULKRCU_RSEQ_BEGIN
               "movl $-1, %[rc]\n\t"
               "cmpl $0, (%%rax)\n\t"
               "jnz 5f\n\t"
               "movl $0, %[rc]\n\t"
               "cmpq %[expected], (%%rax,%[field])\n\t"
               "jne 5f\n\t"
               "movl $1, %[rc]\n\t"
               "movq %[desired], (%%rax,%[field])\n\t" BULKRCU_RSEQ_END "5:\n\t"
               : [rc] "=&r"(rc)
               : [off] "r"(g_rseq_offset), [stride] "r"(stride), [base] "r"(base), [field] "r"(off),
                 [expected] "r"(expected), [desired] "r"(desired)
               : "rax", "memory", "cc");
  return rc;
}
// Adds `delta` to the 64-bit counter at `off` in this CPU's slot without a locked instruction
// (the add is the commit). Ignores the slot's lock: for counters that remote sides only read.
template <std::size_t kOff>
BULKRCU_ALWAYS_INLINE void rseq_add_slot(void* base, std::size_t stride, std::uint64_t delta) noexcept {
  asm volatile(BULKRCU_RSEQ_BEGIN "addq %[delta], %c[field](%%rax)\n\t" BULKRCU_RSEQ_END
               :
               : [off] "r"(g_rseq_offset), [stride] "r"(stride), [base] "r"(base), [delta] "r"(delta),
                 [field] "i"(kOff)
               : "rax", "memory", "cc");
}
#else
#define BULKRCU_HAVE_RSEQ_ASM 0
#endif

}  // namespace subtle
}  // namespace bulkrcu::detail
