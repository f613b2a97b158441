#include "pool/pool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "pool/pool_rseq.h"

namespace bulkrcu::detail::pool {
namespace {

#ifdef BULKRCU_TESTING
constexpr Params kParams{4, 16, 2, 8, 1, 1, 50'000'000ull};
#else
constexpr Params kParams{32, 256, 64, 128, 1, 1, 5'000'000'000ull};
#endif
static_assert(kParams.low <= kParams.target && kParams.target <= kParams.high &&
              kParams.batch <= kParams.high);

// One per possible CPU.
// The list's head word: (first page | count), 0 when empty; a page on the list starts with the
// head word of the pages below it (pool.h). Owner: rseq / try-lock; remote: under lock +
// fence_remote; statistics read it racily (a gauge).
struct alignas(kCacheLine) PcpSlot {
  SlotLock lock;                              // offset 0: percpu.h's protocol
  std::atomic<std::uintptr_t> head{0};        // the head word (atomic for the statistics' racy read)
  std::atomic<std::uint64_t> slow_ops{0};     // trims' pops and batch pushes (the sequences bump a statistic)
  std::atomic<std::uint32_t> want_refill{0};  // set by the lockless path, cleared by the worker
  // Statistics, bumped with bump() on the slot of the CPU the operation probably ran on.
  std::atomic<std::uint64_t> allocs{0};  // bulkrcu_alloc_page
  std::atomic<std::uint64_t> frees{0};
  std::atomic<std::uint64_t> hits{0};  // bulkrcu_alloc_page_lockless
  std::atomic<std::uint64_t> misses{0};
};
static_assert(offsetof(PcpSlot, lock) == 0);
// The layout the public header's inline fast paths use (include/bulkrcu/page_pool.h).
static_assert(sizeof(PcpSlot) == std::size_t{1} << BULKRCU__PCP_SHIFT);
static_assert(offsetof(PcpSlot, head) == BULKRCU__PCP_HEAD &&
              offsetof(PcpSlot, slow_ops) == BULKRCU__PCP_TRIMS);
static_assert(offsetof(PcpSlot, allocs) == BULKRCU__PCP_ALLOCS &&
              offsetof(PcpSlot, frees) == BULKRCU__PCP_FREES && offsetof(PcpSlot, hits) == BULKRCU__PCP_HITS);
static_assert(offsetof(FreePage, next) == 0);

// Head words (the header's sequences use the same encoding: `andq $-4096`, `andl $4095`).
constexpr std::uintptr_t kCountMask = 0xfff;  // pages are at least 4 KiB aligned
constexpr std::uintptr_t kMaxCount = kCountMask;
static_assert(kParams.high < kMaxCount && kParams.target < kMaxCount);
BULKRCU_ALWAYS_INLINE FreePage* word_page(std::uintptr_t w) noexcept {
  return reinterpret_cast<FreePage*>(w & ~kCountMask);
}
BULKRCU_ALWAYS_INLINE std::uintptr_t word_count(std::uintptr_t w) noexcept { return w & kCountMask; }
BULKRCU_ALWAYS_INLINE std::uintptr_t make_word(FreePage* p, std::uintptr_t count) noexcept {
  return reinterpret_cast<std::uintptr_t>(p) | count;
}
// The first word of a page on a list (FreePage::next, read and written as an integer): the head
// word of the pages below it.
BULKRCU_ALWAYS_INLINE std::uintptr_t link_word(const FreePage* p) noexcept {
  return reinterpret_cast<std::uintptr_t>(p->next);
}
BULKRCU_ALWAYS_INLINE void set_link_word(FreePage* p, std::uintptr_t w) noexcept {
  p->next = reinterpret_cast<FreePage*>(w);
}
BULKRCU_ALWAYS_INLINE std::uintptr_t head_word(const PcpSlot& s) noexcept {
  return s.head.load(std::memory_order_relaxed);
}

std::atomic<PcpSlot*> g_slots{nullptr};
BULKRCU_ALWAYS_INLINE PcpSlot* slots() noexcept { return get_slots(g_slots); }

constinit Zone g_zone{kParams.floor_chunks, kParams.spare_chunks};

// Process-wide flags, one load on every fast path: anything but exactly kInit takes the
// checked path (not yet initialized, debug mode, fault injection).
enum : unsigned { kInit = 1, kDebug = 2, kFailLockless = 4, kFailAll = 8 };
std::atomic<unsigned> g_flags{0};

// The release fast path's one cache line (read-mostly) is bulkrcu__pool_fast (defined below,
// exported for the public header's inline paths): `slots` is non-null only when the checked
// path has nothing to add (flags == kInit exactly, rseq mode), so the fast path makes one test
// instead of loading the flags, the slot array and the per-CPU mode. Its fields are plain C;
// the library reaches them through atomic_ref.
// Refill requests: want_refill per slot, then refill_pending (release), then the doorbell.
BULKRCU_ALWAYS_INLINE std::atomic_ref<unsigned> refill_pending() noexcept {
  return std::atomic_ref<unsigned>(bulkrcu__pool_fast.refill_pending);
}
BULKRCU_ALWAYS_INLINE PcpSlot* fast_slots() noexcept {
  return static_cast<PcpSlot*>(__atomic_load_n(&bulkrcu__pool_fast.slots, __ATOMIC_ACQUIRE));
}
std::atomic<std::uint64_t> g_backoff_until{0};  // now_ns() deadline; 0 = no back-off
// After a drain or shrink the refill worker serves requests from free pages only, without
// mapping a chunk, until this now_ns() deadline: a request pending from before the drain must
// not take a fresh chunk right after the memory went back. bulkrcu_alloc_page still maps.
std::atomic<std::uint64_t> g_nogrow_until{0};
std::atomic<void (*)() noexcept> g_release_hook{nullptr};
// Parked refill requests: a request that arrives while refills are backed off, or that finds
// the zone empty while growth is held off, keeps its slot's want_refill flag and is served when
// this now_ns() deadline passes (the runtime thread sleeps no longer: next_timeout_ns), so a
// caller that only uses the lockless path is not left waiting for a second miss. 0 = none.
std::atomic<std::uint64_t> g_parked_until{0};

// Parks until `until` (the latest deadline of those asked for wins). `backoff` is the back-off
// deadline the caller decided on; if back_off_refill() changed it meanwhile, the parked requests
// are due at once (refill_step decides again). Dekker pair with back_off_refill (seq_cst: store
// the deadline, then load the other side's word): either it sees this park or this sees its
// new deadline, so no request stays parked under a back-off that has been lifted.
void park_refills(std::uint64_t until, std::uint64_t backoff) noexcept {
  std::uint64_t cur = g_parked_until.load(std::memory_order_seq_cst);
  while (cur < until && !g_parked_until.compare_exchange_weak(cur, until, std::memory_order_seq_cst)) {
  }
  if (g_backoff_until.load(std::memory_order_seq_cst) != backoff)
    g_parked_until.store(now_ns(), std::memory_order_seq_cst);
}

// Slow-path counters (atomic adds).
std::atomic<std::uint64_t> g_refill_requests{0}, g_refills{0}, g_worker_refills{0}, g_drains{0};

// An `inc` is atomic with respect to signal handlers and preemption on this CPU (one
// instruction); it is not a locked RMW, see Stats in pool.h for the (rare) loss it allows.
BULKRCU_ALWAYS_INLINE void bump(std::atomic<std::uint64_t>& c) noexcept {
#if BULKRCU_TSAN || !defined(__x86_64__)
  c.fetch_add(1, std::memory_order_relaxed);
#else
  asm volatile("incq %0" : "+m"(*reinterpret_cast<std::uint64_t*>(&c)));
#endif
}

unsigned init_flags() noexcept {
  unsigned f = kInit;
  // BULKRCU_POOL_DEBUG, parsed by base/ (its default is on in BULKRCU_TESTING builds).
  if (config().pool_debug) f |= kDebug;
  g_zone.set_debug(f & kDebug);
  unsigned expected = 0;
  g_flags.compare_exchange_strong(expected, f, std::memory_order_relaxed);
  return g_flags.load(std::memory_order_relaxed);
}

BULKRCU_ALWAYS_INLINE unsigned flags() noexcept {
  unsigned f = g_flags.load(std::memory_order_relaxed);
  if (BULKRCU_UNLIKELY(!(f & kInit))) f = init_flags();
  return f;
}

// Opens or closes the fast path after the flags changed (initialisation, fault injection).
void publish_fast() noexcept {
  PcpSlot* base = slots();
  __atomic_store_n(&bulkrcu__pool_fast.page_mask, page_size() - 1, __ATOMIC_RELAXED);
  __atomic_store_n(&bulkrcu__pool_fast.low, kParams.low, __ATOMIC_RELAXED);
  __atomic_store_n(&bulkrcu__pool_fast.high, kParams.high, __ATOMIC_RELAXED);
  bool fast = flags() == kInit;
#if BULKRCU_HAVE_RSEQ_ASM
  fast = fast && mode() == PercpuMode::kRseq;
#else
  fast = false;
#endif
  // Release: a fast path that sees `slots` sees page_mask, low, high and the initialised slots.
  __atomic_store_n(&bulkrcu__pool_fast.slots, fast ? static_cast<void*>(base) : nullptr, __ATOMIC_RELEASE);
}

// ---- fatal messages naming a pointer (async-signal-safe: no printf) ----------------------------
struct Msg {
  char buf[256];
  std::size_t n = 0;
  Msg& s(const char* str) {
    while (*str && n < sizeof buf - 1) buf[n++] = *str++;
    buf[n] = '\0';
    return *this;
  }
  Msg& hex(std::uintptr_t v) {
    char tmp[19] = "0x";
    int digits = 0;
    for (std::uintptr_t t = v; t; t >>= 4) ++digits;
    if (digits == 0) digits = 1;
    for (int i = 0; i < digits; ++i) tmp[2 + digits - 1 - i] = "0123456789abcdef"[(v >> (4 * i)) & 15];
    tmp[2 + digits] = '\0';
    return s(tmp);
  }
  Msg& dec(std::size_t v) {
    char tmp[24];
    int i = 23;
    tmp[i] = '\0';
    do {
      tmp[--i] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v);
    return s(tmp + i);
  }
};

[[noreturn]] BULKRCU_NOINLINE void die(const char* call, const void* p, const char* what) noexcept {
  Msg m;
  m.s("page pool: ").s(call).s("(").hex(reinterpret_cast<std::uintptr_t>(p)).s("): ").s(what);
  fatal(m.buf);
}

// ---- debug checks ----------------------------------------------------------------------------------
inline std::size_t page_index(const Chunk* c, const void* p) noexcept {
  return static_cast<std::size_t>(static_cast<const char*>(p) - c->base) >> page_shift();
}

// A page leaves the pool: it must be on a list (state kOnList) and still carry the poison.
BULKRCU_NOINLINE void debug_handout(void* p, const char* call) noexcept {
  Chunk* c = chunk_of(p);
  if (!c) die(call, p, "about to hand out a page outside every chunk (corrupted free list)");
  std::uint8_t old = c->state[page_index(c, p)].exchange(kAllocated, std::memory_order_relaxed);
  if ((old & kStateMask) != kOnList)
    die(call, p, "about to hand out a page that is not free (corrupted free list)");
  if (old & kReleased) return;  // given back with MADV_DONTNEED since it was poisoned: reads as zero
  if (std::size_t off = check_poison(p)) {
    Msg m;
    m.s("page pool: ")
        .s(call)
        .s(": page ")
        .hex(reinterpret_cast<std::uintptr_t>(p))
        .s(" was written after it was freed (poison overwritten at byte offset ")
        .dec(off)
        .s(")");
    fatal(m.buf);
  }
}

// A page enters the pool: it must be one the pool handed out and still owned by the caller.
BULKRCU_NOINLINE void debug_on_free(void* p, const char* call) noexcept {
  Chunk* c = chunk_of(p);
  if (!c) die(call, p, "not a page of this pool (never handed out by it)");
  std::uint8_t expected = kAllocated;
  if (!c->state[page_index(c, p)].compare_exchange_strong(expected, kOnList, std::memory_order_relaxed)) {
    if ((expected & kStateMask) == kOnList || (expected & kFreeHead))
      die(call, p, "double free (the page is already free)");
    die(call, p, "not a page the pool handed out (inside a free or larger block)");
  }
  poison_page(p);
}

[[noreturn]] BULKRCU_NOINLINE void die_misaligned(void* p) noexcept {
  die("bulkrcu_free_page", p, "misaligned pointer (not the start of a page)");
}

// ---- owner-side list operations ------------------------------------------------------------------
// kLock mode: the slot of sched_getcpu(), try-locked. Return values as in the rseq versions.
FreePage* pop_trylock(PcpSlot* s, bool* locked, std::uintptr_t* left) noexcept {
  if (!s->lock.try_lock()) {
    *locked = true;
    return nullptr;
  }
  const std::uintptr_t w = s->head.load(std::memory_order_relaxed);
  FreePage* p = word_page(w);
  if (p) {
    s->head.store(link_word(p), std::memory_order_relaxed);
    *left = word_count(w) - 1;
  }
  s->lock.unlock();
  return p;
}

// 0: pushed; 1: the slot was locked; 2: the list held `high` pages (nothing done).
int push_trylock(PcpSlot* s, FreePage* p, std::uintptr_t high) noexcept {
  if (!s->lock.try_lock()) return 1;
  const std::uintptr_t w = s->head.load(std::memory_order_relaxed);
  int r = 2;
  if (word_count(w) < high) {
    set_link_word(p, w);
    s->head.store(make_word(p, word_count(w) + 1), std::memory_order_relaxed);
    r = 0;
  }
  s->lock.unlock();
  return r;
}

// This CPU's slot (a hint in rseq mode: the thread may migrate right after).
BULKRCU_ALWAYS_INLINE PcpSlot* local_slot(PcpSlot* base) noexcept {
#if BULKRCU_HAVE_RSEQ_ASM
  if (mode() == PercpuMode::kRseq) return &base[subtle::rseq_cpu_hint()];
#endif
  return &base[current_cpu()];
}

// The statistic at byte `off` of a slot (the offsets the sequences take).
BULKRCU_ALWAYS_INLINE std::atomic<std::uint64_t>& stat_at(PcpSlot* s, std::size_t off) noexcept {
  switch (off) {
    case offsetof(PcpSlot, allocs):
      return s->allocs;
    case offsetof(PcpSlot, frees):
      return s->frees;
    case offsetof(PcpSlot, hits):
      return s->hits;
    default:
      return s->slow_ops;
  }
}

// Pops one page from this CPU's list and bumps the statistic at byte `stat_off` of the slot
// it ran on (in kLock mode: of *slot). *slot = the slot to account on (a hint); *locked = the
// slot's lock was held (nothing popped); *left = the pages left on the list after a pop.
BULKRCU_ALWAYS_INLINE FreePage* pop_local(PcpSlot* base, std::size_t stat_off, PcpSlot** slot, bool* locked,
                                          std::uintptr_t* left) noexcept {
#if BULKRCU_HAVE_RSEQ_ASM
  if (BULKRCU_LIKELY(mode() == PercpuMode::kRseq)) {
    unsigned long l = 0;
    void* n = bulkrcu__pool_pop(base, stat_off, &l);
    *left = l;
    *slot = &base[subtle::rseq_cpu_hint()];
    if (BULKRCU_UNLIKELY(n == subtle::kSlotLocked)) {
      *locked = true;
      return nullptr;
    }
#if BULKRCU_TSAN
    if (n) __tsan_acquire(n);  // the pusher released it
#endif
    return static_cast<FreePage*>(n);
  }
#endif
  PcpSlot* s = &base[current_cpu()];
  *slot = s;
  FreePage* p = pop_trylock(s, locked, left);
  if (p) bump(stat_at(s, stat_off));
  return p;
}

// Pushes one page onto this CPU's list unless it holds `high` pages; bumps the statistic at
// `stat_off` when pushed. 0: pushed; 1: the slot was locked; 2: the list was full.
BULKRCU_ALWAYS_INLINE int push_local(PcpSlot* base, FreePage* p, std::uintptr_t high,
                                     std::size_t stat_off) noexcept {
#if BULKRCU_HAVE_RSEQ_ASM
  if (BULKRCU_LIKELY(mode() == PercpuMode::kRseq)) {
#if BULKRCU_TSAN
    __tsan_release(p);  // the next popper acquires it
#endif
    return bulkrcu__pool_push(base, p, high, stat_off);
  }
#endif
  PcpSlot* s = &base[current_cpu()];
  const int r = push_trylock(s, p, high);
  if (r == 0) bump(stat_at(s, stat_off));
  return r;
}

// ---- refill requests ---------------------------------------------------------------------------
BULKRCU_ALWAYS_INLINE bool backed_off() noexcept {
  std::uint64_t until = g_backoff_until.load(std::memory_order_relaxed);
  return until != 0 && now_ns() < until;
}

// Async-signal-safe and free of system calls: atomics, clock_gettime (vDSO) and a doorbell
// nudge (the runtime thread sees it within kNudgePollNs; callers that may make a system call
// ring the doorbell after a miss, see kvfree's get_page).
BULKRCU_NOINLINE void request_refill(PcpSlot* s) noexcept {
  // One request per slot until the worker clears it: later misses add no doorbell traffic.
  if (s->want_refill.load(std::memory_order_relaxed) || s->want_refill.exchange(1, std::memory_order_relaxed))
    return;
  g_refill_requests.fetch_add(1, std::memory_order_relaxed);
  // Backed off: parked until the back-off ends, with no doorbell (a flood of misses under memory
  // pressure wakes nobody).
  const std::uint64_t until = g_backoff_until.load(std::memory_order_seq_cst);
  if (until != 0 && now_ns() < until) return park_refills(until, until);
  // Release: the worker's acquire exchange of g_refill_pending then sees want_refill == 1.
  refill_pending().store(1, std::memory_order_release);
  doorbell_nudge();
}

BULKRCU_NOINLINE void lockless_miss(PcpSlot* s, bool empty) noexcept {
  bump(s->misses);
  if (empty) request_refill(s);
}

// ---- slow paths ------------------------------------------------------------------------------------
// The remote side's lock: the owner holds a slot's lock only for a few instructions (kLock
// mode), but may be preempted while holding it, so spin briefly then yield.
void lock_slot(PcpSlot* s) noexcept {
  for (unsigned i = 0; !s->lock.try_lock(); ++i) {
    if (i < 64)
      cpu_relax();
    else
      sched_yield();
  }
}

// The list grew above `high`: move `batch` pages from its top to the zone.
BULKRCU_NOINLINE void trim(PcpSlot* base) noexcept {
  FreePage* chain = nullptr;
#if BULKRCU_HAVE_RSEQ_ASM
  if (mode() == PercpuMode::kRseq) {
    // One pop sequence per page: the rseq commit is a single store, so a multi-node detach
    // would need a loop inside the sequence. batch pops cost ~batch * 2 ns.
    for (std::size_t i = 0; i < kParams.batch; ++i) {
      unsigned long left;
      void* n = bulkrcu__pool_pop(base, offsetof(PcpSlot, slow_ops), &left);
      if (n == nullptr || n == subtle::kSlotLocked) break;
#if BULKRCU_TSAN
      __tsan_acquire(n);
#endif
      FreePage* p = static_cast<FreePage*>(n);
      p->next = chain;
      chain = p;
    }
  } else
#endif
  {
    PcpSlot* s = &base[current_cpu()];
    if (!s->lock.try_lock()) return;  // a remote is draining or refilling it anyway
    // Each link word carries the count below it, so cutting the top `batch` pages leaves every
    // count right: the new head word is the last cut page's link word.
    std::uintptr_t w = s->head.load(std::memory_order_relaxed);
    for (std::size_t i = 0; i < kParams.batch && word_page(w); ++i) {
      FreePage* p = word_page(w);
      w = link_word(p);
      p->next = chain;
      chain = p;
    }
    s->head.store(w, std::memory_order_relaxed);
    s->lock.unlock();
  }
  if (chain) {
    g_zone.free_chain(chain);
    g_drains.fetch_add(1, std::memory_order_relaxed);
  }
}

// The page could not go onto a list (its slot was locked by a remote): straight to the zone.
BULKRCU_NOINLINE void free_to_zone(FreePage* p) noexcept {
  p->next = nullptr;
  g_zone.free_chain(p);
}

// bulkrcu_alloc_page found the list empty (or locked): `batch` pages from the zone, one for the
// caller and the rest onto this CPU's list.
BULKRCU_NOINLINE void* alloc_slow(PcpSlot* base, bool locked, unsigned f) noexcept {
  FreePage* p;
  if (locked) {
    p = static_cast<FreePage*>(g_zone.alloc(0));
    if (!p) return nullptr;  // errno = ENOMEM from the zone
  } else {
    FreePage* chain;
    if (g_zone.alloc_bulk(kParams.batch, &chain) == 0) {
      errno = ENOMEM;
      return nullptr;
    }
    p = chain;
    FreePage* rest = chain->next;
    FreePage* leftover = nullptr;
    while (rest) {
      FreePage* next = rest->next;
      // Bounded by the encoding only: these pages are the batch, not frees (no statistic).
      if (push_local(base, rest, kMaxCount, offsetof(PcpSlot, slow_ops)) != 0) {
        rest->next = leftover;
        leftover = rest;
      }
      rest = next;
    }
    if (leftover) g_zone.free_chain(leftover);
    g_refills.fetch_add(1, std::memory_order_relaxed);
  }
  PcpSlot* s = &base[current_cpu()];
  bump(s->allocs);
  if (f & kDebug) debug_handout(p, "bulkrcu_alloc_page");
  return p;
}

// Fills `cpu`'s list up to `target` pages (refill worker, regular context). Returns false when
// the zone was empty while growth is held off: the caller parks the request.
bool refill_cpu(PcpSlot* base, int cpu) noexcept {
  FreePage* chain;
  const bool may_grow = now_ns() >= g_nogrow_until.load(std::memory_order_relaxed);
  std::size_t got = g_zone.alloc_bulk(kParams.target, &chain, may_grow);
  if (got == 0) return may_grow;  // growing failed (no memory): dropped, the next miss asks
  PcpSlot* s = &base[cpu];
  lock_slot(s);               // R1
  subtle::fence_remote(cpu);  // R2: no owner sequence that saw the lock free can still commit
  // The count comes with the head word: no page of the list is read.
  std::uintptr_t w = s->head.load(std::memory_order_relaxed);
  std::uintptr_t count = word_count(w);
  while (count < kParams.target && chain) {
    FreePage* p = chain;
    chain = chain->next;
    set_link_word(p, w);
    w = make_word(p, ++count);
#if BULKRCU_TSAN
    __tsan_release(p);  // the owner's pop acquires it
#endif
  }
  s->head.store(w, std::memory_order_relaxed);
  s->lock.unlock();  // R3
  if (chain) g_zone.free_chain(chain);
  g_refills.fetch_add(1, std::memory_order_relaxed);
  g_worker_refills.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void hold_off_growth() noexcept {
  g_nogrow_until.store(now_ns() + kParams.pressure_backoff_ns, std::memory_order_relaxed);
}

void run_release_hook() noexcept {
  if (auto hook = g_release_hook.load(std::memory_order_acquire)) hook();
}

void drain_all() noexcept {
  hold_off_growth();
  PcpSlot* base = slots();
  const int n = nr_slots();
  FreePage* all = nullptr;
  constexpr int kGroup = 256;  // slots locked at once, so one broadcast fence covers them
  for (int first = 0; first < n; first += kGroup) {
    const int end = first + kGroup < n ? first + kGroup : n;
    std::uintptr_t lists[kGroup];
    for (int i = first; i < end; ++i) lock_slot(&base[i]);  // R1 on every slot of the group
    subtle::fence_remote_all();                             // R2, one broadcast
    for (int i = first; i < end; ++i) {
      lists[i - first] = base[i].head.load(std::memory_order_relaxed);
      base[i].head.store(0, std::memory_order_relaxed);
      base[i].want_refill.store(0, std::memory_order_relaxed);  // requests from before the drain
    }
    for (int i = first; i < end; ++i) base[i].lock.unlock();  // R3
    for (int i = first; i < end; ++i) {
      std::uintptr_t w = lists[i - first];
      while (FreePage* p = word_page(w)) {
#if BULKRCU_TSAN
        __tsan_acquire(p);
#endif
        w = link_word(p);
        p->next = all;
        all = p;
      }
    }
  }
  if (all) {
    g_zone.free_chain(all);
    g_drains.fetch_add(1, std::memory_order_relaxed);
  }
}

// ---- fork ----------------------------------------------------------------------------------------
// Lock order: (runtime's driver mutex ->) zone lock -> registry lock. Registered at priority
// 101, before the runtime's handlers (102), so our prepare handler runs after theirs.
void fork_prepare() {
  g_zone.lock();
  registry_lock_for_fork();
}
void fork_parent() {
  registry_unlock_after_fork(false);
  g_zone.unlock();
}
void fork_child() {
  registry_unlock_after_fork(true);
  g_zone.reinit_lock_in_child();
  // A slot lock held by a thread that does not exist in the child (a kLock owner, or a drain)
  // would stay held forever; the lists themselves are consistent at every store.
  PcpSlot* base = g_slots.load(std::memory_order_relaxed);
  if (base)
    for (int i = 0; i < nr_slots(); ++i) base[i].lock.word.store(0, std::memory_order_relaxed);
}

__attribute__((constructor(102))) void pool_init() {
  (void)page_size();
  (void)flags();
  (void)slots();
  publish_fast();
  pthread_atfork(fork_prepare, fork_parent, fork_child);
}

}  // namespace

// ---- internal API ---------------------------------------------------------------------------------

const Params& params() noexcept { return kParams; }
bool debug() noexcept { return flags() & kDebug; }
bool fast_path_open() noexcept { return fast_slots() != nullptr; }

namespace {
bool parked_due(std::uint64_t now) noexcept {
  const std::uint64_t until = g_parked_until.load(std::memory_order_relaxed);
  return until != 0 && now >= until;
}
}  // namespace

bool refill_wanted() noexcept {
  return refill_pending().load(std::memory_order_relaxed) != 0 ||
         (g_parked_until.load(std::memory_order_relaxed) != 0 && parked_due(now_ns()));
}

std::uint64_t next_timeout_ns() noexcept {
  const std::uint64_t until = g_parked_until.load(std::memory_order_relaxed);
  if (until == 0) return 0;
  const std::uint64_t now = now_ns();
  return until > now ? until - now : 1;
}

void refill_step() noexcept {
  const bool due = parked_due(now_ns());
  if (refill_pending().load(std::memory_order_relaxed) == 0 && !due) return;
  // Re-parked below if still not servable. An exchange: it reads a concurrent request's park
  // (seq_cst RMW after its flag store), so the loop below sees that request's flag.
  if (due) g_parked_until.exchange(0, std::memory_order_seq_cst);
  refill_pending().exchange(0, std::memory_order_acquire);  // pairs with request_refill's release
  const std::uint64_t backoff = g_backoff_until.load(std::memory_order_seq_cst);
  const bool skip = backoff != 0 && now_ns() < backoff;
  PcpSlot* base = slots();
  for (int cpu = 0; cpu < nr_slots(); ++cpu) {
    std::atomic<std::uint32_t>& w = base[cpu].want_refill;
    if (!w.load(std::memory_order_relaxed)) continue;
    if (skip) {
      park_refills(backoff, backoff);  // the flag stays set
      continue;
    }
    w.store(0, std::memory_order_relaxed);
    if (!refill_cpu(base, cpu)) {
      w.store(1, std::memory_order_relaxed);
      park_refills(g_nogrow_until.load(std::memory_order_relaxed), backoff);
    }
  }
}

void set_fail_injection(int m) noexcept {
  (void)flags();
  g_flags.fetch_and(~unsigned{kFailLockless | kFailAll}, std::memory_order_relaxed);
  if (m == 1) g_flags.fetch_or(kFailLockless, std::memory_order_relaxed);
  if (m == 2) g_flags.fetch_or(kFailAll, std::memory_order_relaxed);
  publish_fast();
}

void back_off_refill(std::uint64_t ns) noexcept {
  const std::uint64_t until = ns ? now_ns() + ns : 0;
  g_backoff_until.store(until, std::memory_order_seq_cst);
  // Requests parked by an earlier back-off are due now (refill_step parks again what it still
  // cannot serve). The other half of park_refills' Dekker pair.
  if (g_parked_until.load(std::memory_order_seq_cst) != 0)
    g_parked_until.store(now_ns(), std::memory_order_seq_cst);
}

void on_memory_pressure() noexcept {
  back_off_refill(kParams.pressure_backoff_ns);
  drain_all();
  run_release_hook();  // after the drain: pages it keeps move to the fullest chunk
  hold_off_growth();
  g_zone.shrink();
}

bool refill_backed_off() noexcept { return backed_off(); }

bool growth_held_off() noexcept { return now_ns() < g_nogrow_until.load(std::memory_order_relaxed); }

void set_release_hook(void (*hook)() noexcept) noexcept {
  g_release_hook.store(hook, std::memory_order_release);
}

std::uint64_t resident_bytes() noexcept { return g_zone.resident_bytes(); }
std::uint64_t mapped_bytes() noexcept { return g_zone.nr_chunks() * kChunkBytes; }

void* alloc_pages(unsigned order, bool may_grow) noexcept {
  unsigned f = flags();
  if (f & kFailAll) {
    errno = ENOMEM;
    return nullptr;
  }
  void* p = g_zone.alloc(order, may_grow);
  if (p && (f & kDebug)) {
    Chunk* c = chunk_of(p);
    c->state[page_index(c, p)].store(kAllocated, std::memory_order_relaxed);
  }
  return p;
}

void free_pages(void* block, unsigned order) noexcept {
  if (!block) return;
  if (reinterpret_cast<std::uintptr_t>(block) & ((page_size() << order) - 1))
    die("free_pages", block, "misaligned pointer for its order");
  if (flags() & kDebug) {
    Chunk* c = chunk_of(block);
    if (!c) die("free_pages", block, "not a block of this pool");
    std::uint8_t expected = kAllocated;
    if (!c->state[page_index(c, block)].compare_exchange_strong(expected, kOnList, std::memory_order_relaxed))
      die("free_pages", block, "double free or not a block the pool handed out");
    for (std::size_t i = 0; i < (std::size_t{1} << order); ++i)
      poison_page(static_cast<char*>(block) + i * page_size());
  }
  g_zone.free(block, order);
}

std::size_t cpu_pages(int cpu) noexcept {
  PcpSlot* s = &slots()[cpu];
  lock_slot(s);
  subtle::fence_remote(cpu);
  const std::size_t n = word_count(s->head.load(std::memory_order_relaxed));
  s->lock.unlock();
  return n;
}

const char* check_zone() noexcept { return g_zone.check(); }

Stats stats() noexcept {
  Stats st{};
  PcpSlot* base = slots();
  for (int i = 0; i < nr_slots(); ++i) {
    const PcpSlot& s = base[i];
    st.allocs += s.allocs.load(std::memory_order_relaxed) + s.hits.load(std::memory_order_relaxed);
    st.frees += s.frees.load(std::memory_order_relaxed);
    st.lockless_hits += s.hits.load(std::memory_order_relaxed);
    st.lockless_misses += s.misses.load(std::memory_order_relaxed);
    std::uint64_t c = word_count(head_word(s));
    st.pages_percpu += c;
    if (c > st.pages_percpu_max) st.pages_percpu_max = c;
  }
  st.refill_requests = g_refill_requests.load(std::memory_order_relaxed);
  st.refills = g_refills.load(std::memory_order_relaxed);
  st.worker_refills = g_worker_refills.load(std::memory_order_relaxed);
  st.drains = g_drains.load(std::memory_order_relaxed);
  st.chunks_mapped = g_zone.chunks_mapped();
  st.chunks_unmapped = g_zone.chunks_unmapped();
  st.chunks = g_zone.nr_chunks();
  st.pages_zone = g_zone.nr_free_pages();
  return st;
}

namespace {

// ---- the checked path: debug checks, fault injection, fallback mode, every slow case -----------
BULKRCU_NOINLINE void* alloc_lockless_checked() noexcept {
  const unsigned f = flags();
  if (BULKRCU_UNLIKELY(f & (kFailLockless | kFailAll))) {
    bump(slots()[current_cpu()].misses);
    return nullptr;
  }
  PcpSlot* base = slots();
  PcpSlot* s;
  bool locked = false;
  std::uintptr_t left = 0;
  FreePage* p = pop_local(base, offsetof(PcpSlot, hits), &s, &locked, &left);
  if (BULKRCU_UNLIKELY(!p)) {
    lockless_miss(s, !locked);
    return nullptr;
  }
  if (BULKRCU_UNLIKELY(left < kParams.low)) request_refill(s);
  if (BULKRCU_UNLIKELY(f & kDebug)) debug_handout(p, "bulkrcu_alloc_page_lockless");
  return p;
}

BULKRCU_NOINLINE void* alloc_page_checked() noexcept {
  const unsigned f = flags();
  if (BULKRCU_UNLIKELY(f & kFailAll)) {
    errno = ENOMEM;
    return nullptr;
  }
  PcpSlot* base = slots();
  PcpSlot* s;
  bool locked = false;
  std::uintptr_t left = 0;
  FreePage* p = pop_local(base, offsetof(PcpSlot, allocs), &s, &locked, &left);
  if (BULKRCU_UNLIKELY(refill_pending().load(std::memory_order_relaxed) != 0)) doorbell_ring_if_idle();
  if (BULKRCU_UNLIKELY(!p)) return alloc_slow(base, locked, f);
  if (BULKRCU_UNLIKELY(f & kDebug)) debug_handout(p, "bulkrcu_alloc_page");
  return p;
}

BULKRCU_NOINLINE void free_page_checked(void* page) noexcept {
  if (!page) return;
  if (BULKRCU_UNLIKELY(reinterpret_cast<std::uintptr_t>(page) & (page_size() - 1))) die_misaligned(page);
  const unsigned f = flags();
  if (BULKRCU_UNLIKELY(f & kDebug)) debug_on_free(page, "bulkrcu_free_page");
  PcpSlot* base = slots();
  FreePage* p = static_cast<FreePage*>(page);
  int r = push_local(base, p, kParams.high, offsetof(PcpSlot, frees));
  // A lockless miss only nudged the refill worker (no system call there); this call may make
  // one, so it wakes the worker now if it sleeps: producer/consumer users get prompt refills.
  if (BULKRCU_UNLIKELY(refill_pending().load(std::memory_order_relaxed) != 0)) doorbell_ring_if_idle();
  if (BULKRCU_LIKELY(r == 0)) return;
  if (r == 2) {  // `high` pages on the list: `batch` of them go to the zone, then this one on top
    trim(base);
    r = push_local(base, p, kParams.high, offsetof(PcpSlot, frees));
    if (r == 0) return;
  }
  bump(local_slot(base)->frees);
  free_to_zone(p);  // the slot was locked by a remote (or refilled full meanwhile)
}

// ---- the release fast path -----------------------------------------------------------------------
// What it leaves out, and where that went (measured in docs/POOL.md, "The lockless page"): the
// flags, slot-array and per-CPU-mode loads (one load of bulkrcu__pool_fast.slots instead), the
// debug checks and fault injection (slots is null then: the checked path), the second read of
// the CPU number and the separate count output (the statistic is bumped by the same asm after
// the commit, and the count comes with the head word), the page_size() call (page_mask), the trim check (the
// push refuses to grow the list past `high`). Every miss, refusal and rare case is a tail
// call. The sequences are the public header's (bulkrcu__pool_pop, bulkrcu__pool_push), which
// callers outside the library inline; the exported functions below are what those inline
// paths fall back to, and what the library, TSan builds and BULKRCU_NO_INLINE users call.
#if BULKRCU_HAVE_RSEQ_ASM
// A lockless hit left fewer than `low` pages: ask for a refill on the slot it popped from.
BULKRCU_NOINLINE void* lockless_low(PcpSlot* base, void* page) noexcept {
  request_refill(&base[subtle::rseq_cpu_hint()]);
  return page;
}

BULKRCU_NOINLINE void* lockless_fast_miss(PcpSlot* base, void* n) noexcept {
  lockless_miss(&base[subtle::rseq_cpu_hint()], n != subtle::kSlotLocked);
  return nullptr;
}

BULKRCU_NOINLINE void* alloc_ring(void* page) noexcept {
  doorbell_ring_if_idle();
  return page;
}

BULKRCU_NOINLINE void free_ring() noexcept { doorbell_ring_if_idle(); }

BULKRCU_ALWAYS_INLINE void* fast_pop(PcpSlot* base, std::size_t stat_off, std::uintptr_t* left) noexcept {
  unsigned long l;
  void* n = bulkrcu__pool_pop(base, stat_off, &l);
#if BULKRCU_TSAN
  if (n != nullptr && n != subtle::kSlotLocked) __tsan_acquire(n);  // the pusher released it
#endif
  *left = l;
  return n;
}

BULKRCU_ALWAYS_INLINE int fast_push(PcpSlot* base, void* page) noexcept {
#if BULKRCU_TSAN
  __tsan_release(page);  // the next popper acquires it
#endif
  return bulkrcu__pool_push(base, page, kParams.high, offsetof(PcpSlot, frees));
}
#endif

}  // namespace
}  // namespace bulkrcu::detail::pool

// ---- public API (include/bulkrcu/page_pool.h) --------------------------------------------------------
using namespace bulkrcu::detail;
using namespace bulkrcu::detail::pool;

extern "C" {

alignas(kCacheLine) bulkrcu__pool_fast_line bulkrcu__pool_fast = {nullptr, 0, 0, 0, 0};

size_t bulkrcu_page_size(void) { return page_size(); }

void bulkrcu__pool_refill_low(void) {
  PcpSlot* base = slots();
#if BULKRCU_HAVE_RSEQ_ASM
  if (mode() == PercpuMode::kRseq) return request_refill(&base[subtle::rseq_cpu_hint()]);
#endif
  request_refill(&base[current_cpu()]);
}

// About 30 instructions on a hit above the low mark, the return included.
void* bulkrcu_alloc_page_lockless(void) {
#if BULKRCU_HAVE_RSEQ_ASM
  if (PcpSlot* base = fast_slots(); BULKRCU_LIKELY(base != nullptr)) {
    std::uintptr_t left;
    void* n = fast_pop(base, offsetof(PcpSlot, hits), &left);
    if (BULKRCU_UNLIKELY(n == nullptr || n == subtle::kSlotLocked)) return lockless_fast_miss(base, n);
    if (BULKRCU_UNLIKELY(left < kParams.low)) return lockless_low(base, n);
    return n;
  }
#endif
  return alloc_lockless_checked();
}

void* bulkrcu_alloc_page(void) {
#if BULKRCU_HAVE_RSEQ_ASM
  if (PcpSlot* base = fast_slots(); BULKRCU_LIKELY(base != nullptr)) {
    std::uintptr_t left;
    void* n = fast_pop(base, offsetof(PcpSlot, allocs), &left);
    if (BULKRCU_LIKELY(n != nullptr && n != subtle::kSlotLocked)) {
      if (BULKRCU_UNLIKELY(refill_pending().load(std::memory_order_relaxed) != 0)) return alloc_ring(n);
      return n;
    }
  }
#endif
  return alloc_page_checked();
}

// About 35 instructions when the list has room.
void bulkrcu_free_page(void* page) {
#if BULKRCU_HAVE_RSEQ_ASM
  PcpSlot* base = fast_slots();
  const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(page);
  if (BULKRCU_LIKELY(base != nullptr && a != 0 &&
                     (a & __atomic_load_n(&bulkrcu__pool_fast.page_mask, __ATOMIC_RELAXED)) == 0)) {
    if (BULKRCU_LIKELY(fast_push(base, page) == 0)) {
      // A lockless miss only nudged the refill worker (no system call there); this call may make
      // one, so it wakes the worker now if it sleeps: producer/consumer users get prompt refills.
      if (BULKRCU_UNLIKELY(refill_pending().load(std::memory_order_relaxed) != 0)) return free_ring();
      return;
    }
  }
#endif
  free_page_checked(page);
}

void bulkrcu_page_pool_drain(void) { drain_all(); }

void bulkrcu_page_pool_shrink(void) {
  run_release_hook();
  hold_off_growth();
  g_zone.shrink();
}

}  // extern "C"
