#include "callback/callback.h"

#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdlib.h>

#include "base/trace.h"
#include "base/user_code.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BULKRCU_CB_LSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define BULKRCU_CB_LSAN 1
#endif
#ifdef BULKRCU_CB_LSAN
#include <sanitizer/lsan_interface.h>
#endif

namespace bulkrcu::detail::cb {
namespace {

#ifdef BULKRCU_TESTING
constexpr int kSegPool = 6;           // small: the merge and carry paths run in tests
constexpr std::size_t kBatch = 64;    // several batches a segment
constexpr std::uint64_t kHigh = 256;  // backlog that expedites grace periods
#else
constexpr int kSegPool = 128;  // lanes x (ready + waiting cookies) needs about 5 a lane
constexpr std::size_t kBatch = 4096;
constexpr std::uint64_t kHigh = 65536;
#endif
constexpr int kSweepChunk = 256;  // slots locked at once, one remote fence per chunk

// One per possible CPU; what `head` and `tail` mean depends on the mode (percpu.h):
//  * kRseq: a FIFO. The owner side appends (percpu.h's rseq_append): `tail` is the address of
//    the link that gets the next node (&head when the list is empty). Only `tail` tells where
//    the list ends and whether it is empty: an append that aborted may have left a stale
//    address in the last node's link, or in `head` of an empty list. The runtime thread
//    detaches the list under lock + fence_remote (percpu.h's protocol), rewrites the last link
//    to null and resets both fields. The sweep never walks the chain: its length is the growth
//    of `queued` since the last sweep (`swept`, the runtime thread's).
//  * kLock: a LIFO pushed by compare-and-swap on `head` (`tail` unused), detached by exchange
//    and reversed by the sweep, which counts it on the way.
// queued: the owner side's count (an rseq add after the append; in kLock mode an atomic add);
// others only read it. Since the add follows the append, a sweep that lands between the two
// counts that callback one sweep late (has_unswept() sees queued != swept and asks for it).
struct alignas(kCacheLine) CbSlot {
  SlotLock lock;
  bulkrcu_head* head = nullptr;
  bulkrcu_head** tail = &head;
  std::uint64_t queued = 0;
  std::uint64_t swept = 0;
};

std::atomic<CbSlot*> g_slots{nullptr};
BULKRCU_ALWAYS_INLINE CbSlot* slots() { return get_slots(g_slots); }

int compute_lanes() {
  int n = nr_slots();
  return n < kMaxLanes ? n : kMaxLanes;
}

// Per-lane overflow lists: lock-free push (CAS), detached whole by exchange, so no ABA.
struct alignas(kCacheLine) Overflow {
  std::atomic<bulkrcu_head*> head{nullptr};
  std::atomic<std::uint64_t> count{0};
};
Overflow g_overflow[kMaxLanes];

// ---- segments (everything below is guarded by g_mu) ----------------------------------------
struct Segment {
  Segment* next;
  unsigned long cookie;
  std::uint64_t sweep;  // the oldest sweep whose callbacks it holds
  bulkrcu_head* first;  // FIFO, linked through next, last->next == nullptr
  bulkrcu_head* last;
  std::uint64_t n;
  int lane;
};

struct Fifo {
  Segment* head = nullptr;
  Segment* tail = nullptr;
  void push(Segment* s) {
    s->next = nullptr;
    if (tail)
      tail->next = s;
    else
      head = s;
    tail = s;
  }
  Segment* pop() {
    Segment* s = head;
    head = s->next;
    if (!head) tail = nullptr;
    return s;
  }
};

// Constant-initialized: the runtime thread may start before this file's dynamic initializers.
pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
Segment g_pool[kSegPool];
int g_pool_used = 0;  // g_pool[0 .. used) have been handed out at least once
Segment* g_free = nullptr;
Fifo g_waiting;  // sweep order
Fifo g_ready[kMaxLanes];
bool g_busy[kMaxLanes];  // a thread runs the head segment of this lane
// Chains swept without a segment (pool dry), prepended to the lane's next sweep.
bulkrcu_head* g_carry_first[kMaxLanes];
bulkrcu_head* g_carry_last[kMaxLanes];
std::uint64_t g_carry_n[kMaxLanes];
std::uint64_t g_carry_sweep[kMaxLanes];
std::uint64_t g_sweeps = 0;
// The batch a thread runs now, for a fork child (written by the running thread, relaxed).
std::atomic<bulkrcu_head*> g_cursor[kMaxLanes];
std::atomic<std::uint64_t> g_cursor_done[kMaxLanes];
int g_rr = 0;  // round-robin start for picking a lane

std::atomic<bool> g_any_carry{false};
std::atomic<std::uint64_t> g_nr_swept{0}, g_nr_invoked{0}, g_nr_head_frees{0};
// Ready callbacks not yet invoked, per lane. Signed: a callback counted one sweep late (CbSlot's
// queued) may be invoked before it is counted, so a count can dip below zero for a moment.
std::atomic<std::int64_t> g_lane_ready[kMaxLanes];

struct Locked {
  Locked() { pthread_mutex_lock(&g_mu); }
  ~Locked() { pthread_mutex_unlock(&g_mu); }
};

Segment* seg_alloc() {
  if (g_free) {
    Segment* s = g_free;
    g_free = s->next;
    return s;
  }
  return g_pool_used < kSegPool ? &g_pool[g_pool_used++] : nullptr;
}
void seg_free(Segment* s) {
  s->next = g_free;
  g_free = s;
}

std::uint64_t through_locked() {
  std::uint64_t m = ~std::uint64_t{0};
  auto consider = [&](std::uint64_t s) {
    if (s < m) m = s;
  };
  if (g_waiting.head) consider(g_waiting.head->sweep);
  for (int l = 0; l < kMaxLanes; ++l) {
    if (g_ready[l].head) consider(g_ready[l].head->sweep);
    if (g_carry_first[l]) consider(g_carry_sweep[l]);
  }
  return m == ~std::uint64_t{0} ? g_sweeps : m - 1;
}

void push_overflow(bulkrcu_head* head, int cpu) {
  Overflow& o = g_overflow[cpu % nr_lanes()];
  bulkrcu_head* old = o.head.load(std::memory_order_relaxed);
  do {
    head->next = old;
  } while (!o.head.compare_exchange_weak(old, head, std::memory_order_release, std::memory_order_relaxed));
  o.count.fetch_add(1, std::memory_order_relaxed);
}

// Reverses a LIFO chain; returns the new first node, *last = new last node.
bulkrcu_head* reverse(bulkrcu_head* h, bulkrcu_head** last, std::uint64_t* n) {
  bulkrcu_head* prev = nullptr;
  *last = h;
  while (h) {
    bulkrcu_head* next = h->next;
    h->next = prev;
    prev = h;
    h = next;
    ++*n;
  }
  return prev;
}

// The one place a callback is invoked.
BULKRCU_ALWAYS_INLINE bool invoke_one(bulkrcu_head* h) {
  const auto f = reinterpret_cast<std::uintptr_t>(h->func);
  if (f < kMaxHeadOffset) {
    if (g_free_object)
      g_free_object(reinterpret_cast<char*>(h) - f);
    else
      free(reinterpret_cast<char*>(h) - f);
    return true;
  }
  h->func(h);
  return false;
}

void fork_child();

__attribute__((constructor)) void cb_init() {
  CbSlot* s = slots();
#ifdef BULKRCU_CB_LSAN
  // The CPU lists live in mmap'ed memory LeakSanitizer does not scan: callbacks still queued at
  // exit are reachable, not leaked.
  __lsan_register_root_region(s, sizeof(CbSlot) * static_cast<std::size_t>(nr_slots()));
#else
  (void)s;
#endif
  pthread_atfork(nullptr, nullptr, fork_child);
}

}  // namespace

void before_fork() noexcept { pthread_mutex_lock(&g_mu); }
void after_fork_parent() noexcept { pthread_mutex_unlock(&g_mu); }

namespace {

void fork_child() {
  // Only the forking thread exists in the child: no one else holds these. The queue mutex was
  // held across the fork (before_fork), so the segments and lanes are whole; a busy lane's
  // cursor was written by its worker before each callback it ran.
  CbSlot* base = slots();
  for (int i = 0; i < nr_slots(); ++i) base[i].lock.word.store(0, std::memory_order_relaxed);
  pthread_mutex_init(&g_mu, nullptr);
  for (int l = 0; l < kMaxLanes; ++l) {
    if (!g_busy[l]) continue;
    g_busy[l] = false;
    Segment* seg = g_ready[l].head;
    const std::uint64_t done = g_cursor_done[l].load(std::memory_order_relaxed);
    seg->first = g_cursor[l].load(std::memory_order_relaxed);
    seg->n = seg->n > done ? seg->n - done : 0;
    g_nr_invoked.fetch_add(done, std::memory_order_relaxed);
    g_lane_ready[l].fetch_sub(static_cast<std::int64_t>(done), std::memory_order_relaxed);
    if (!seg->first) seg_free(g_ready[l].pop());
  }
}

}  // namespace

namespace {
constinit Once<int> g_nr_lanes;
}  // namespace

int nr_lanes() noexcept { return g_nr_lanes.get(compute_lanes); }

void hold_slot_lock_for_test(int cpu, bool hold) noexcept {
  SlotLock& l = slots()[cpu].lock;
  if (hold) {
    while (!l.try_lock()) cpu_relax();
  } else {
    l.unlock();
  }
}

void hold_queue_lock_for_test(bool hold) noexcept {
  if (hold)
    pthread_mutex_lock(&g_mu);
  else
    pthread_mutex_unlock(&g_mu);
}

void call_free_head(bulkrcu_head* head, std::uintptr_t offset) noexcept {
  call(head, reinterpret_cast<void (*)(bulkrcu_head*)>(offset));
}

void call(bulkrcu_head* head, void (*func)(bulkrcu_head*)) noexcept {
  head->func = func;
  CbSlot* base = slots();
#if BULKRCU_HAVE_RSEQ_ASM
  if (BULKRCU_LIKELY(mode() == PercpuMode::kRseq)) {
    head->next = nullptr;
    if (BULKRCU_LIKELY((subtle::rseq_append<offsetof(CbSlot, tail), offsetof(bulkrcu_head, next)>(
            base, sizeof(CbSlot), head)))) {
      subtle::rseq_add_slot<offsetof(CbSlot, queued)>(base, sizeof(CbSlot), 1);
    } else {
      const int cpu = sched_getcpu();
      push_overflow(head, cpu < 0 ? 0 : cpu);
    }
  } else
#endif
  {
    // Without rseq: a lock-free push (compare-and-swap) onto this CPU's list and an atomic add
    // of its count; the sweep detaches the list with an exchange. Never the overflow list: with
    // the slot's try-lock, a push that found another pusher holding it (preempted there, or
    // interrupted by the signal handler that pushes) took the overflow list, which the sweep
    // runs first, before that thread's own earlier callbacks still on the CPU list
    // (CallbackWorkers.BacklogStartsAWorkerAndKeepsPerCpuOrder saw 13 of 80,000 out of order
    // in CI's no-rseq step).
    CbSlot& s = base[current_cpu()];
    bulkrcu_head* old = __atomic_load_n(&s.head, __ATOMIC_RELAXED);
    do {
      head->next = old;
    } while (!__atomic_compare_exchange_n(&s.head, &old, head, true, __ATOMIC_RELEASE, __ATOMIC_RELAXED));
    __atomic_fetch_add(&s.queued, 1, __ATOMIC_RELAXED);
  }
  doorbell_ring_if_idle_for_callbacks();  // a paced runtime thread sweeps at its deadline
}

bool has_unswept() noexcept {
  if (g_any_carry.load(std::memory_order_relaxed)) return true;
  for (int l = 0; l < nr_lanes(); ++l)
    if (g_overflow[l].head.load(std::memory_order_relaxed)) return true;
  CbSlot* base = slots();
  if (mode() == PercpuMode::kRseq) {
    for (int i = 0; i < nr_slots(); ++i)
      if (__atomic_load_n(&base[i].tail, __ATOMIC_RELAXED) != &base[i].head ||
          __atomic_load_n(&base[i].queued, __ATOMIC_RELAXED) != base[i].swept)
        return true;
    return false;
  }
  for (int i = 0; i < nr_slots(); ++i)
    if (__atomic_load_n(&base[i].head, __ATOMIC_RELAXED)) return true;
  return false;
}

namespace {
// kRseq: takes slot `s`'s FIFO chain, between R2 and R3 (no aborted append can still store
// after the fence). The chain is null-terminated on return; n counts its callbacks, give or take
// those whose count lands one sweep late (CbSlot).
struct Detached {
  bulkrcu_head* first;
  bulkrcu_head* last;
  std::uint64_t n;
};
Detached detach_fifo(CbSlot& s) {
  Detached d{nullptr, nullptr, 0};
  bulkrcu_head** t = __atomic_load_n(&s.tail, __ATOMIC_RELAXED);
  if (t != &s.head) {
    d.first = __atomic_load_n(&s.head, __ATOMIC_RELAXED);
    d.last = reinterpret_cast<bulkrcu_head*>(reinterpret_cast<char*>(t) - offsetof(bulkrcu_head, next));
#if BULKRCU_TSAN
    __tsan_acquire(d.last);  // rseq_append released it (TSan cannot see the asm stores)
#endif
    *t = nullptr;  // may hold an aborted append's stale address
  }
  __atomic_store_n(&s.head, nullptr, __ATOMIC_RELAXED);
  __atomic_store_n(&s.tail, &s.head, __ATOMIC_RELAXED);
  // Read inside the lock: no append commits before R3, so every add counted here belongs to a
  // callback detached now or by an earlier sweep.
  const std::uint64_t q = __atomic_load_n(&s.queued, __ATOMIC_RELAXED);
  d.n = q - s.swept;
  s.swept = q;
  return d;
}
}  // namespace

std::uint64_t sweep() noexcept {
  CbSlot* base = slots();
  const int n = nr_slots();
  const int lanes = nr_lanes();
  // Per lane, in queueing order: the carried chain, the overflow chain, then each CPU's chain.
  bulkrcu_head* first[kMaxLanes] = {};
  bulkrcu_head* tail[kMaxLanes] = {};
  std::uint64_t count[kMaxLanes] = {};
  auto link = [&](int l, bulkrcu_head* f, bulkrcu_head* last) {
    if (tail[l])
      tail[l]->next = f;
    else
      first[l] = f;
    tail[l] = last;
  };
  auto append_lifo = [&](int l, bulkrcu_head* lifo) {
    if (!lifo) return;
    bulkrcu_head* last;
    bulkrcu_head* fifo = reverse(lifo, &last, &count[l]);
    link(l, fifo, last);
  };
  // The overflow lists first, before any slot is locked, and their chains first in the lane: a
  // push that found its slot locked by this sweep lands in the next sweep, and so does every
  // later push of that thread, so a thread's callbacks keep their order on one CPU.
  for (int l = 0; l < lanes; ++l)
    append_lifo(l, g_overflow[l].head.exchange(nullptr, std::memory_order_acquire));
  // R1 on a chunk of slots, one R2 for all CPUs, then take and R3 (percpu.h's protocol).
  const bool fifo = mode() == PercpuMode::kRseq;
  for (int c0 = 0; c0 < n; c0 += kSweepChunk) {
    const int c1 = c0 + kSweepChunk < n ? c0 + kSweepChunk : n;
    Detached taken[kSweepChunk];
    for (int i = c0; i < c1; ++i) base[i].lock.lock();
    subtle::fence_remote_all();
    for (int i = c0; i < c1; ++i) {
      Detached& t = taken[i - c0];
      if (fifo) {
        t = detach_fifo(base[i]);
      } else {
        // An exchange: without rseq, pushes are compare-and-swaps that the slot's lock does not
        // hold back.
        t = Detached{__atomic_exchange_n(&base[i].head, nullptr, __ATOMIC_ACQUIRE), nullptr, 0};
      }
#if BULKRCU_TSAN
      // Pushes and appends released each node by its own address (TSan cannot see asm stores).
      for (bulkrcu_head* h = t.first; h; h = h->next) __tsan_acquire(h);
#endif
    }
    for (int i = c0; i < c1; ++i) base[i].lock.unlock();
    for (int i = c0; i < c1; ++i) {
      const Detached& t = taken[i - c0];
      const int l = i % lanes;
      if (!fifo) {
        append_lifo(l, t.first);
        continue;
      }
      if (t.first) link(l, t.first, t.last);
      count[l] += t.n;
    }
  }

  // The cookie is taken after the detach: every callback swept was queued before it.
  const unsigned long cookie = gp::get_state();
  Locked lk;
  const std::uint64_t id = ++g_sweeps;
  std::uint64_t total = 0;
  bool carry = false;
  for (int l = 0; l < lanes; ++l) {
    if (g_carry_first[l]) {  // carried callbacks go first: they were queued earlier
      if (first[l]) {
        g_carry_last[l]->next = first[l];
      } else {
        tail[l] = g_carry_last[l];
      }
      first[l] = g_carry_first[l];
      count[l] += g_carry_n[l];
      g_carry_first[l] = nullptr;
      total -= g_carry_n[l];  // counted as swept when first carried
    }
    if (!first[l]) {
      // Only callbacks counted late (CbSlot's queued): they are in an older segment, waiting or
      // ready. Counted as ready now; that segment was counted short by as many.
      total += count[l];
      g_lane_ready[l].fetch_add(static_cast<std::int64_t>(count[l]), std::memory_order_relaxed);
      continue;
    }
    total += count[l];
    const std::uint64_t seg_sweep = g_carry_n[l] ? g_carry_sweep[l] : id;
    g_carry_n[l] = 0;
    // The lane's newest waiting segment, if any.
    Segment* newest = nullptr;
    for (Segment* s = g_waiting.head; s; s = s->next)
      if (s->lane == l) newest = s;
    Segment* seg = nullptr;
    if (!newest || newest->cookie != cookie) seg = seg_alloc();
    if (seg) {
      *seg = Segment{nullptr, cookie, seg_sweep, first[l], tail[l], count[l], l};
      g_waiting.push(seg);
    } else if (newest) {
      // Same cookie, or the pool is dry: join the lane's newest waiting segment. Its cookie
      // becomes the later of the two (waiting longer is always safe); its sweep stays the older.
      newest->last->next = first[l];
      newest->last = tail[l];
      newest->n += count[l];
      if (static_cast<long>(cookie - newest->cookie) > 0) newest->cookie = cookie;
    } else {
      g_carry_first[l] = first[l];
      g_carry_last[l] = tail[l];
      g_carry_n[l] = count[l];
      g_carry_sweep[l] = seg_sweep;
      carry = true;
    }
  }
  g_any_carry.store(carry, std::memory_order_relaxed);
  g_nr_swept.fetch_add(total, std::memory_order_relaxed);
  return id;
}

bool oldest_pending(unsigned long* cookie) noexcept {
  Locked lk;
  if (!g_waiting.head) return false;
  *cookie = g_waiting.head->cookie;
  for (Segment* s = g_waiting.head; s; s = s->next)  // a merge may have raised an older one's
    if (static_cast<long>(s->cookie - *cookie) < 0) *cookie = s->cookie;
  return true;
}

void promote_ready() noexcept {
  Locked lk;
  // Waiting segments are promoted in order; one whose cookie was raised by a merge holds back
  // the younger ones behind it until it is ready too.
  while (g_waiting.head && gp::poll_state(g_waiting.head->cookie)) {
    Segment* s = g_waiting.pop();
    Fifo& q = g_ready[s->lane];
    g_lane_ready[s->lane].fetch_add(static_cast<std::int64_t>(s->n), std::memory_order_relaxed);
    // Join the lane's last ready segment unless a thread runs it: both are ready, so order and
    // safety are kept, and the lane needs no more than two segments however far it falls behind.
    if (q.tail && !(g_busy[s->lane] && q.tail == q.head)) {
      q.tail->last->next = s->first;
      q.tail->last = s->last;
      q.tail->n += s->n;
      seg_free(s);
    } else {
      q.push(s);
    }
  }
}

unsigned ready_lanes() noexcept {
  Locked lk;
  unsigned mask = 0;
  for (int l = 0; l < nr_lanes(); ++l)
    if (g_ready[l].head && !g_busy[l]) mask |= 1u << l;
  return mask;
}

bool has_ready() noexcept { return ready_lanes() != 0; }

std::uint64_t ready_backlog(int lane) noexcept {
  const std::int64_t n = g_lane_ready[lane].load(std::memory_order_relaxed);
  return n > 0 ? static_cast<std::uint64_t>(n) : 0;
}

std::uint64_t ready_backlog() noexcept {
  std::int64_t n = 0;
  for (int l = 0; l < kMaxLanes; ++l) n += g_lane_ready[l].load(std::memory_order_relaxed);
  return n > 0 ? static_cast<std::uint64_t>(n) : 0;
}

std::size_t batch_limit() noexcept { return kBatch; }

std::size_t invoke_batch(std::size_t budget, std::uint64_t* through, unsigned lanes_mask) noexcept {
  Segment* seg = nullptr;
  int lane = -1;
  {
    Locked lk;
    const int lanes = nr_lanes();
    for (int i = 0; i < lanes; ++i) {
      const int l = (g_rr + i) % lanes;
      if ((lanes_mask >> l & 1u) && g_ready[l].head && !g_busy[l]) {
        lane = l;
        break;
      }
    }
    if (lane < 0) {
      *through = through_locked();
      return 0;
    }
    g_rr = lane + 1;
    g_busy[lane] = true;
    seg = g_ready[lane].head;
    g_cursor[lane].store(seg->first, std::memory_order_relaxed);
    g_cursor_done[lane].store(0, std::memory_order_relaxed);
  }
  // Only this thread touches seg's chain while the lane is busy (promote_ready joins a busy
  // lane's segments behind it, never into it).
  std::size_t done = 0;
  std::uint64_t head_frees = 0;
  bulkrcu_head* h = seg->first;
  // A prefetch walks kAhead nodes in front of h: each hop loads a node prefetched one callback
  // earlier, so the chain's cache misses overlap the callbacks instead of stalling each one.
  // The nodes in front are not invoked yet, so nothing frees them under the walk.
  constexpr int kAhead = 8;
  bulkrcu_head* ahead = h;
  for (int i = 0; i < kAhead && ahead; ++i) {
    ahead = ahead->next;
    if (ahead) __builtin_prefetch(ahead);
  }
  {
    UserCode user(Section::kNone);  // base/user_code.h: until the end of this batch
    while (h && done < budget) {
      if (ahead) {
        ahead = ahead->next;
        if (ahead) __builtin_prefetch(ahead);
      }
      bulkrcu_head* next = h->next;  // read before func: func may free or requeue h
      g_cursor[lane].store(next, std::memory_order_relaxed);
      g_cursor_done[lane].store(done + 1, std::memory_order_relaxed);
      head_frees += invoke_one(h);
      h = next;
      ++done;
    }
  }
  BULKRCU_TRACE(callbacks_invoked, done, head_frees);
  Locked lk;
  // Counted under the queue mutex, with the segment's update: a fork child (which counts a busy
  // lane's finished callbacks itself) sees both or neither.
  g_nr_invoked.fetch_add(done, std::memory_order_relaxed);
  g_nr_head_frees.fetch_add(head_frees, std::memory_order_relaxed);
  g_lane_ready[lane].fetch_sub(static_cast<std::int64_t>(done), std::memory_order_relaxed);
  seg->first = h;
  seg->n = seg->n > done ? seg->n - done : 0;  // n may lag by a callback counted late
  if (!h) seg_free(g_ready[lane].pop());
  g_busy[lane] = false;
  *through = through_locked();
  return done;
}

std::uint64_t invoked_through() noexcept {
  Locked lk;
  return through_locked();
}

std::uint64_t invoke_ready(unsigned lanes_mask) noexcept {
  promote_ready();
  std::uint64_t through;
  invoke_batch(kBatch, &through, lanes_mask);
  return through;
}

bool in_callback() noexcept { return in_user_code(); }

Stats stats() noexcept {
  Stats s{};
  CbSlot* base = slots();
  for (int i = 0; i < nr_slots(); ++i) s.queued += __atomic_load_n(&base[i].queued, __ATOMIC_RELAXED);
  for (int l = 0; l < kMaxLanes; ++l) s.overflow += g_overflow[l].count.load(std::memory_order_relaxed);
  s.queued += s.overflow;
  s.swept = g_nr_swept.load(std::memory_order_relaxed);
  s.invoked = g_nr_invoked.load(std::memory_order_relaxed);
  s.pending = s.queued > s.invoked ? s.queued - s.invoked : 0;
  s.head_frees = g_nr_head_frees.load(std::memory_order_relaxed);
  return s;
}

std::uint64_t backlog() noexcept { return stats().pending; }

bool backlog_high() noexcept { return backlog() > kHigh; }

void (*g_free_object)(void*) noexcept = nullptr;

}  // namespace bulkrcu::detail::cb
