// bulkrcu/src/kvfree/magazine.cpp: per-thread magazines (protocol in magazine.h).
#include "kvfree/magazine.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>

#include <new>

#include "kvfree/retire.h"  // support::, the block operations the magazine uses

extern "C" {
__thread bulkrcu__mag* bulkrcu__tls_mag __attribute__((tls_model("initial-exec"))) = nullptr;
}

namespace bulkrcu::detail::kvfree {
namespace mag {
namespace {

// One thread's magazine. `pub` is the inline ABI (rcu.h); the rest is the library's.
struct alignas(kCacheLine) MagSlot {
  bulkrcu__mag pub;                     // busy, block (protocol in magazine.h)
  std::atomic<std::uint32_t> owner{0};  // CAS 0->1 by a claiming thread; release-store 0 at exit
  // Runtime thread only (g_mon_mutex): the block and count at the previous idle take.
  Block* seen_block = nullptr;
  std::uint64_t seen_nr = 0;
  Block* cand = nullptr;  // the block sealed in the current take
};
static_assert(offsetof(MagSlot, pub) == 0);

#ifdef BULKRCU_TESTING
constexpr int kSlotsPerChunk = 2;  // tests reach chunk growth with a few threads
#else
constexpr int kSlotsPerChunk = 63;
#endif
struct alignas(kCacheLine) Chunk {
  Chunk* next = nullptr;  // immutable once published
  MagSlot slots[kSlotsPerChunk];
};
std::atomic<Chunk*> g_chunks{nullptr};  // push-only (CAS), newest first; never unmapped
std::atomic<Block*> g_closed{nullptr};  // full blocks the owners closed; the monitor takes all
std::atomic<std::uint64_t> g_taken{0};  // blocks the runtime took from idle threads
std::atomic<std::uint64_t> g_in_use{0};
std::atomic<std::uint64_t> g_nr_chunks{0};
std::atomic<std::uint64_t> g_misses{0};
pthread_key_t g_key;
std::atomic<int> g_key_state{0};  // 0 none, 1 being created, 2 ready, 3 failed
int g_enabled = -1;               // -1 unknown; set once (membarrier is registered at load)

void on_thread_exit(void* p) noexcept;

bool ensure_key() noexcept {
  int st = g_key_state.load(std::memory_order_acquire);
  if (BULKRCU_LIKELY(st == 2)) return true;
  if (st == 0 && g_key_state.compare_exchange_strong(st, 1, std::memory_order_acq_rel)) {
    const bool ok = pthread_key_create(&g_key, [](void* p) { on_thread_exit(p); }) == 0;
    g_key_state.store(ok ? 2 : 3, std::memory_order_release);
    return ok;
  }
  while ((st = g_key_state.load(std::memory_order_acquire)) == 1) sched_yield();
  return st == 2;
}

template <class F>
void for_each_slot(F&& f) {
  for (Chunk* c = g_chunks.load(std::memory_order_acquire); c; c = c->next)
    for (MagSlot& s : c->slots) f(s);
}

// Lock-free and async-signal-safe (a CAS; mmap when every slot is taken). nullptr: no memory.
MagSlot* claim(bool may_map) noexcept {
  for (Chunk* c = g_chunks.load(std::memory_order_acquire); c; c = c->next)
    for (MagSlot& s : c->slots) {
      std::uint32_t expected = 0;
      if (s.owner.load(std::memory_order_relaxed) == 0 &&
          s.owner.compare_exchange_strong(expected, 1, std::memory_order_acq_rel, std::memory_order_relaxed))
        return &s;
    }
  if (!may_map) return nullptr;
  void* mem = mmap(nullptr, sizeof(Chunk), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return nullptr;
  Chunk* c = new (mem) Chunk();
  g_nr_chunks.fetch_add(1, std::memory_order_relaxed);
  c->slots[0].owner.store(1, std::memory_order_relaxed);
  Chunk* head = g_chunks.load(std::memory_order_relaxed);
  do {
    c->next = head;
  } while (!g_chunks.compare_exchange_weak(head, c, std::memory_order_release, std::memory_order_relaxed));
  return &c->slots[0];
}

std::atomic<void*>& block_of(MagSlot& s) noexcept {
  return *reinterpret_cast<std::atomic<void*>*>(&s.pub.block);
}
std::atomic<unsigned long>& busy_of(MagSlot& s) noexcept {
  return *reinterpret_cast<std::atomic<unsigned long>*>(&s.pub.busy);
}

void push_closed(Block* b) noexcept {
  Block* head = g_closed.load(std::memory_order_relaxed);
  do {
    b->next = head;
  } while (!g_closed.compare_exchange_weak(head, b, std::memory_order_release, std::memory_order_relaxed));
}

// The owner gives its block up (thread exit, fork child): whoever wins the CAS owns it.
void flush(MagSlot& s, unsigned flags) noexcept {
  void* p = block_of(s).load(std::memory_order_acquire);
  if (!p || !block_of(s).compare_exchange_strong(p, nullptr, std::memory_order_acq_rel)) return;
  Block* b = static_cast<Block*>(p);
  if (__atomic_load_n(&b->nr, __ATOMIC_RELAXED) == 0) {
    support::recycle_empty(b, flags);
    return;
  }
  __atomic_store_n(&b->cap, 0, __ATOMIC_RELAXED);
  support::close_full(b, flags);
  push_closed(b);
  support::kick(flags);
}

void release(MagSlot& s) noexcept {
  g_in_use.fetch_sub(1, std::memory_order_relaxed);
  s.owner.store(0, std::memory_order_release);
}

// pthread key destructor: thread exit hands the magazine's block on, then frees the slot.
void on_thread_exit(void* p) noexcept {
  auto* s = static_cast<MagSlot*>(p);
  if (reinterpret_cast<bulkrcu__mag*>(s) != bulkrcu__tls_mag) return;  // released (fork child)
  // A handler that retired after the release would claim a slot nothing releases any more.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  busy_of(*s).store(1, std::memory_order_relaxed);
  compiler_barrier();  // M1 (the runtime's take pairs with it)
  flush(*s, kNoWait);  // no lite pass here: it could register a reader after its release
  busy_of(*s).store(0, std::memory_order_release);
  bulkrcu__tls_mag = nullptr;
  release(*s);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

// At load time: the key, and one chunk of slots, so that the first retire of a thread that
// only ever uses bulkrcu_defer_nowait (no system call allowed) finds a slot.
__attribute__((constructor(105))) void magazine_init() {
  if (!ensure_key()) return;
  if (MagSlot* s = claim(true)) s->owner.store(0, std::memory_order_release);
}

}  // namespace

bool enabled() noexcept {
  int e = __atomic_load_n(&g_enabled, __ATOMIC_RELAXED);
  if (BULKRCU_LIKELY(e >= 0)) return e != 0;
  // The strict boolean parser (base.h), as every variable in README's table.
  e = membarrier_ready() && !env_bool("BULKRCU_NO_MAGAZINE", false) ? 1 : 0;
  __atomic_store_n(&g_enabled, e, __ATOMIC_RELAXED);
  return e != 0;
}

long retire_slow(Deleter fn, void* ptr, unsigned flags, std::size_t size) noexcept {
  if (!enabled()) return 0;
  auto* s = reinterpret_cast<MagSlot*>(bulkrcu__tls_mag);
  if (!s) {
    // A form that promises no system call (bulkrcu_defer_nowait) claims only a free slot of a
    // mapped chunk, and only once the key exists. (glibc's pthread_setspecific stores into the
    // thread descriptor for the first 32 keys: no allocation, no lock.)
    const bool no_syscall = (flags & kNoSyscall) != 0;
    if (no_syscall ? g_key_state.load(std::memory_order_acquire) != 2 : !ensure_key()) return 0;
    s = claim(!no_syscall);
    if (!s) return 0;
    g_in_use.fetch_add(1, std::memory_order_relaxed);
    if (pthread_setspecific(g_key, s) != 0) {
      release(*s);
      return 0;
    }
    bulkrcu__tls_mag = &s->pub;
  }
  if (busy_of(*s).load(std::memory_order_relaxed)) return 0;  // a handler inside our store
  busy_of(*s).store(1, std::memory_order_relaxed);
  compiler_barrier();  // M1: the runtime's take pairs with it (magazine.h)
  long r = 0;
  void* cur = block_of(*s).load(std::memory_order_acquire);
  Block* b = static_cast<Block*>(cur);
  // cap is the runtime's seal: an atomic load (nr is written only by this thread).
  const std::uint64_t cap = b ? __atomic_load_n(&b->cap, __ATOMIC_RELAXED) : 0;
  if (b && b->fn == fn && b->nr < cap) {
    // Room after all (the inline store declined for a reason that is gone).
    b->ptrs[b->nr] = ptr;
    __atomic_store_n(&b->nr, b->nr + 1, __ATOMIC_RELAXED);
    r = static_cast<long>(b->nr);
  } else if (b && b->fn != fn && b->nr != 0 && b->nr < cap) {
    r = 0;  // another channel's block with room: this pointer takes the per-CPU path
  } else if (Block* nb = support::new_block(fn, ptr, flags, size)) {
    if (block_of(*s).compare_exchange_strong(cur, nb, std::memory_order_acq_rel)) {
      if (b) {  // ours now: nobody else stores into it
        if (__atomic_load_n(&b->nr, __ATOMIC_RELAXED) == 0) {
          support::recycle_empty(b, flags);
          b = nullptr;
        } else {
          __atomic_store_n(&b->cap, 0, __ATOMIC_RELAXED);
          support::close_full(b, flags);
          push_closed(b);
        }
      }
    } else {
      // The runtime took b meanwhile (the slot now holds nullptr; only this thread installs).
      void* none = nullptr;
      if (!block_of(*s).compare_exchange_strong(none, nb, std::memory_order_acq_rel))
        fatal("magazine: a slot changed under its owner");
      b = nullptr;
    }
    r = 1;
  }
  busy_of(*s).store(0, std::memory_order_release);  // M2
  if (r == 1) {
    if (b)
      support::kick(flags);
    else
      support::installed(flags);
  }
  return r;
}

bool take(Take mode, Block** out, std::uint64_t* objs) noexcept {
  if (!enabled()) return true;
  bool any = false;
  for_each_slot([&](MagSlot& s) {
    s.cand = nullptr;
    if (s.owner.load(std::memory_order_acquire) == 0) return;
    // Alive until a pass takes it from g_closed and a grace period later: we hold the
    // monitor's mutex, so even a block its owner closed meanwhile may be sealed again here.
    Block* b = static_cast<Block*>(block_of(s).load(std::memory_order_acquire));
    if (!b) return;
    const std::uint64_t nr = __atomic_load_n(&b->nr, __ATOMIC_RELAXED);
    if (mode == Take::kIdle) {
      const bool idle = b == s.seen_block && nr == s.seen_nr;
      s.seen_block = b;
      s.seen_nr = nr;
      if (!idle) return;
    }
    if (nr == 0) return;
    __atomic_store_n(&b->cap, 0, __ATOMIC_RELAXED);  // S: the seal
    s.cand = b;
    any = true;
  });
  if (!any) return true;
  heavy_fence();  // R: one membarrier for every candidate
  bool all = true;
  for_each_slot([&](MagSlot& s) {
    Block* b = s.cand;
    if (!b) return;
    s.cand = nullptr;
    if (busy_of(s).load(std::memory_order_acquire) != 0) {
      all = false;  // storing now: its next store sees the seal; a later pass retries
      g_misses.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    void* expected = b;
    if (!block_of(s).compare_exchange_strong(expected, nullptr, std::memory_order_acq_rel)) return;
    // The owner closed it itself (it is on g_closed) or exited: not ours.
    support::charge_taken(b);
    b->state = BlockState::kOpen;
    *objs += b->nr;
    b->next = *out;
    *out = b;
    s.seen_block = nullptr;
    g_taken.fetch_add(1, std::memory_order_relaxed);
  });
  return all;
}

void take_closed(Block** out, std::uint64_t* objs) noexcept {
  if (!g_closed.load(std::memory_order_relaxed)) return;
  for (Block* b = g_closed.exchange(nullptr, std::memory_order_acquire); b;) {
    Block* next = b->next;
    *objs += b->nr;
    b->next = *out;
    *out = b;
    b = next;
  }
}

bool pending() noexcept {
  if (g_closed.load(std::memory_order_relaxed)) return true;
  bool any = false;
  for_each_slot([&](MagSlot& s) {
    if (s.owner.load(std::memory_order_relaxed) == 0) return;
    Block* b = static_cast<Block*>(block_of(s).load(std::memory_order_acquire));
    if (b && __atomic_load_n(&b->nr, __ATOMIC_RELAXED) != 0) any = true;
  });
  return any;
}

void after_fork_child() noexcept {
  // The child has one thread (this one), and it is not inside a store.
  for_each_slot([](MagSlot& s) {
    if (s.owner.load(std::memory_order_relaxed) == 0) return;
    busy_of(s).store(0, std::memory_order_relaxed);  // a parent thread's store in progress
    flush(s, kNoSyscall);                            // no thread to wake here yet
    s.seen_block = nullptr;
    s.cand = nullptr;
    release(s);
  });
  bulkrcu__tls_mag = nullptr;  // the key's destructor then ignores this thread's old slot
}

std::uint64_t slots_in_use() noexcept { return g_in_use.load(std::memory_order_relaxed); }
std::uint64_t chunks_mapped() noexcept { return g_nr_chunks.load(std::memory_order_relaxed); }
std::uint64_t taken_over() noexcept { return g_taken.load(std::memory_order_relaxed); }
std::uint64_t take_misses() noexcept { return g_misses.load(std::memory_order_relaxed); }
long thread_block_nr() noexcept {
  bulkrcu__mag* m = bulkrcu__tls_mag;
  Block* b = m ? static_cast<Block*>(__atomic_load_n(&m->block, __ATOMIC_ACQUIRE)) : nullptr;
  return b ? static_cast<long>(__atomic_load_n(&b->nr, __ATOMIC_RELAXED)) : -1;
}
void set_thread_busy(bool busy) noexcept {
  if (bulkrcu__mag* m = bulkrcu__tls_mag) __atomic_store_n(&m->busy, busy ? 1UL : 0UL, __ATOMIC_RELEASE);
}

}  // namespace mag
}  // namespace bulkrcu::detail::kvfree
