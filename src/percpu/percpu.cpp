#include "percpu/percpu.h"

#include <linux/membarrier.h>
#include <sys/mman.h>
#include <sys/rseq.h>

#include "base/base.h"
#include "bulkrcu/rcu.h"

#if BULKRCU_HAVE_RSEQ_ASM
alignas(bulkrcu::detail::kCacheLine) long bulkrcu__rseq_offset = 0;
#endif

namespace bulkrcu::detail {

namespace percpu_internal {
alignas(kCacheLine) std::atomic<int> g_mode{0};

namespace {
void* thread_pointer() noexcept {
  void* tp;
  asm("movq %%fs:0, %0" : "=r"(tp));
  return tp;
}
}  // namespace

PercpuMode init_mode() noexcept {
  // Racing first callers compute the same answer; registration is idempotent.
  PercpuMode m = PercpuMode::kLock;
#if BULKRCU_HAVE_RSEQ_ASM
  if (!config().no_rseq && __rseq_size >= 20) {
    const volatile struct rseq* area =
        reinterpret_cast<const volatile struct rseq*>(static_cast<char*>(thread_pointer()) + __rseq_offset);
    if (static_cast<int>(area->cpu_id) >= 0 &&
        subtle::membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0) == 0) {
      subtle::g_rseq_offset = __rseq_offset;
      bulkrcu__rseq_offset = __rseq_offset;  // the public header's inline store
      m = PercpuMode::kRseq;
    }
  }
#endif
  g_mode.store(static_cast<int>(m), std::memory_order_relaxed);
  return m;
}
// Decide the mode at load time, while the process has one thread: first calls racing from
// several threads would write subtle::g_rseq_offset concurrently (a data race TSan reports).
__attribute__((constructor(102))) void init_mode_at_load() { (void)init_mode(); }
}  // namespace percpu_internal

namespace subtle {
alignas(kCacheLine) long g_rseq_offset = 0;

void fence_remote(int cpu) noexcept {
  if (mode() != PercpuMode::kRseq) return;
  if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, MEMBARRIER_CMD_FLAG_CPU, cpu) != 0)
    fatal("membarrier(PRIVATE_EXPEDITED_RSEQ) failed after a successful registration");
}

void fence_remote_all() noexcept {
  if (mode() != PercpuMode::kRseq) return;
  if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, 0, 0) != 0)
    fatal("membarrier(PRIVATE_EXPEDITED_RSEQ) failed after a successful registration");
}
}  // namespace subtle

int nr_slots() noexcept { return possible_cpus(); }

int current_cpu() noexcept {
  int cpu = sched_getcpu();
  if (cpu < 0) cpu = 0;
  int n = nr_slots();
  return cpu < n ? cpu : cpu % n;
}

void* alloc_slots(std::size_t slot_size) noexcept {
  std::size_t bytes = slot_size * static_cast<std::size_t>(nr_slots());
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) fatal("cannot map per-CPU slots (mmap failed)");
  return p;
}

void free_slots(void* mem, std::size_t slot_size) noexcept {
  munmap(mem, slot_size * static_cast<std::size_t>(nr_slots()));
}

}  // namespace bulkrcu::detail
