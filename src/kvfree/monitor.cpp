// bulkrcu/src/kvfree/monitor.cpp: the monitor's passes, batches, pacing and the barrier
// (protocol in monitor.h).
#include "kvfree/monitor.h"

#include <pthread.h>

#include <algorithm>

#include "base/trace.h"
#include "base/user_code.h"
#include "gp/gp.h"
#include "kvfree/budget.h"
#include "kvfree/kvfree.h"
#include "kvfree/magazine.h"
#include "kvfree/pages.h"
#include "kvfree/reclaim.h"
#include "kvfree/stats.h"

namespace bulkrcu::detail::kvfree {

namespace {

// Grace periods for kvfree are at least this far apart (unless a barrier, the budget or
// memory pressure asks): one grace period then covers every block closed meanwhile (the range
// of DESIGN.md 5a; docs/PERFORMANCE.md, "kvfree: measurements behind the constants").
constexpr std::uint64_t kGpPaceNs = 500000;
// A help fence in flight is polled at an eighth of its age, from 100 us to 10 ms: a help is a
// few frees, and one that takes long has a thread stopped inside it (preempted, or stopped by
// a debugger), which should not keep the runtime thread waking 10,000 times a second.
constexpr std::uint64_t kFencePollMinNs = 100000;
constexpr std::uint64_t kFencePollMaxNs = 10000000;
// A retiring thread that finds nothing to free while the runtime thread has not made a pass
// for this long makes a lite pass itself (drive_if_late), at most once per kDriveEveryNs:
// when both CPUs are busy the runtime thread's wakeups can be late, and retiring threads that
// run dry let their allocator caches empty (docs/PERFORMANCE.md, "kvfree: measurements behind
// the constants").
#ifdef BULKRCU_TESTING
constexpr std::uint64_t kDriveAfterNs = 0;  // test builds: every dry help may drive
constexpr std::uint64_t kDriveEveryNs = 20000;
#else
constexpr std::uint64_t kDriveAfterNs = 600000;
constexpr std::uint64_t kDriveEveryNs = 100000;
#endif
constexpr std::uint64_t kBacklogWindowNs = 2 * kGpPaceNs;
constexpr int kGroup = 256;  // slots locked at once, so one broadcast fence covers them

std::atomic<std::uint32_t> g_kick{0};         // a closer filled a block: flood, pass now
std::atomic<std::uint64_t> g_barrier_req{0};  // kvfree barriers requested
std::atomic<std::uint32_t> g_progress{0};     // futex: bumped after every monitor pass
std::atomic<std::uint32_t> g_progress_waiters{0};
std::atomic<std::uint64_t> g_pace_due_ns{0};  // the monitor's last grace-period request + pace

struct alignas(kCacheLine) CpuMon {
  Block* seen_front[kChannels] = {};  // fronts at the previous drain-timer pass
  Block* seen_ready = nullptr;        // ready head at the previous drain-timer pass
  Block* handoff = nullptr;           // elapsed blocks to push onto this CPU's ready list
  std::uint64_t handoff_objs = 0;     // pointers handed over in this window (backlog control)
  std::uint64_t win_start_ns = 0;
};
// Per-CPU monitor state, mapped once at load time (kvfree_init) like the Krc slots.
std::atomic<CpuMon*> g_cpumon{nullptr};
CpuMon* cpumons() noexcept { return get_slots(g_cpumon); }

// The blocks one pass collected, waiting for the newest cookie among them (polled: a batch
// whose cookie has already elapsed is handed over at the next pass without a new grace period).
// Batches live in a fixed ring inside the Monitor: nothing is allocated. When the ring is full
// a new batch merges into the newest one (which then waits for the later of the two cookies:
// correct, only later).
struct Batch {
  unsigned long cookie;
  Block* blocks;  // collected blocks, linked through `next`
};
constexpr unsigned kBatches = 64;

// A kvfree barrier moves through these stages across passes (the runtime thread's; no pass
// waits): kCollected: every front, chain, hand-over and ready list was taken (one locked
// round); once a help fence started after that has passed, every thread that popped a ready
// block before the collection has stored it in its word, so kStolen takes the threads'
// cursors; once the grace period of every batch has elapsed and the stolen cursors' help fence
// has passed, the pass reclaims them all and the barrier is complete.
enum class BarrierStage { kIdle, kCollected, kStolen };

struct Monitor {
  Batch ring[kBatches] = {};  // FIFO of batches in collection order (ring[first], count)
  unsigned first = 0, count = 0;
  std::uint64_t next_timer_ns = 0;
  unsigned long last_requested = 0;
  bool requested_any = false;
  std::uint64_t last_request_ns = 0;  // pacing
  bool deferred = false;              // a cookie waits for the pace before it is requested
  bool has_want = false;              // lite passes: the grace period they want (not requested)
  unsigned long want = 0;
  BarrierStage bar_stage = BarrierStage::kIdle;
  std::uint64_t bar_target = 0;  // the barrier request number in progress (or last completed)
  unsigned long bar_cookie = 0;  // the grace period the current stage waits for
  bool bar_mag_left = false;     // a barrier's take of the magazines missed one (owner storing)
  std::uint64_t bar_fence = 0;   // the help fence the barrier's collection waits for
  // Help fences (reclaim.h, "Help sequence"), numbered like grace periods: at most one is in
  // flight (fence_started - fence_passed <= 1); a need that arises meanwhile waits for the next,
  // started when this one passes. Each waits only for the helps in flight at its start.
  std::uint64_t fence_started = 0;
  std::uint64_t fence_passed = 0;
  bool fence_wanted = false;
  std::uint64_t fence_start_ns = 0;  // when the fence in flight started (its poll interval)
  // Stolen reclaim cursors (chains whose heads are linked through `cap`: chain_link) waiting
  // for help fence held_fence, and those stolen after it started (they wait for the next one).
  Block* held = nullptr;
  std::uint64_t held_fence = 0;
  Block* held_next = nullptr;
};
constinit Monitor g_monitor;  // static storage: set up before any code runs, never allocated
// Guards the Monitor (and the monitor's right to change a front's link): held by the runtime
// thread's passes and by the lite passes of retiring threads (drive_if_late), and across fork.
// Nothing waits for a grace period or runs a user deleter while holding it.
pthread_mutex_t g_mon_mutex = PTHREAD_MUTEX_INITIALIZER;
std::atomic<std::uint64_t> g_last_pass_ns{0};   // end of the latest pass (either kind)
std::atomic<std::uint64_t> g_next_drive_ns{0};  // rate limit of lite passes from dry helps
std::atomic<std::uint64_t> g_last_drive_ns{0};  // latest lite pass
struct MonLock {
  MonLock() { pthread_mutex_lock(&g_mon_mutex); }
  ~MonLock() { pthread_mutex_unlock(&g_mon_mutex); }
  MonLock(const MonLock&) = delete;
  MonLock& operator=(const MonLock&) = delete;
};

Monitor& mon() noexcept { return g_monitor; }

bool cookie_after(unsigned long a, unsigned long b) noexcept { return static_cast<long>(a - b) > 0; }
Batch* oldest(Monitor& m) noexcept { return m.count ? &m.ring[m.first] : nullptr; }
Batch* newest(Monitor& m) noexcept { return m.count ? &m.ring[(m.first + m.count - 1) % kBatches] : nullptr; }
void pop_oldest(Monitor& m) noexcept {
  m.first = (m.first + 1) % kBatches;
  --m.count;
}

void add_batch(Monitor& m, unsigned long cookie, Block* blocks) noexcept {
  Batch* bt;
  if (m.count == kBatches) {
    bt = newest(m);
    if (cookie_after(cookie, bt->cookie)) bt->cookie = cookie;
  } else {
    bt = &m.ring[(m.first + m.count) % kBatches];
    ++m.count;
    *bt = Batch{cookie, nullptr};
  }
  while (blocks) {
    Block* next = blocks->next;
    push(&bt->blocks, blocks);
    blocks = next;
  }
}

// ---- help fences (under g_mon_mutex) ----

// The number of a help fence that starts after this call: the one started now, or, while one
// is in flight, the next (started when the current one passes).
std::uint64_t need_fence(Monitor& m) noexcept {
  if (m.fence_started == m.fence_passed) {
    help_fence_start();
    m.fence_start_ns = now_ns();
    return ++m.fence_started;
  }
  m.fence_wanted = true;
  return m.fence_started + 1;
}

// Moves the fences on (non-blocking): the one in flight passes once its helps have ended.
void poll_fences(Monitor& m) noexcept {
  if (m.fence_started != m.fence_passed && help_fence_done()) m.fence_passed = m.fence_started;
  if (m.fence_started == m.fence_passed && m.fence_wanted) {
    m.fence_wanted = false;
    help_fence_start();
    m.fence_start_ns = now_ns();
    ++m.fence_started;
  }
}

bool fence_passed(const Monitor& m, std::uint64_t n) noexcept { return m.fence_passed >= n; }

void append_chains(Block** list, Block* chains) noexcept {
  while (chains) {
    Block* next = chain_link(chains);
    set_chain_link(chains, *list);
    *list = chains;
    chains = next;
  }
}

bool retirers_driving(std::uint64_t now) noexcept;
bool drive(std::uint64_t now) noexcept;

bool cpu_state_pending() noexcept {
  Krc* base = g_krcs.load(std::memory_order_acquire);
  if (!base) return false;
  if (cursors_pending() || mag::pending()) return true;
  for (int i = 0; i < nr_slots(); ++i) {
    Krc& k = base[i];
    if (__atomic_load_n(&k.ready, __ATOMIC_RELAXED) || k.incoming.load(std::memory_order_relaxed))
      return true;
    for (Block* const& f : k.front) {
      // Fronts are detached only by this thread, so the block cannot be recycled under us.
      Block* b = __atomic_load_n(&f, __ATOMIC_ACQUIRE);
      if (b) tsan_acquire(&g_krcs);  // the closer released before publishing b
      if (b &&
          (__atomic_load_n(&b->nr, __ATOMIC_RELAXED) != 0 || __atomic_load_n(&b->next, __ATOMIC_RELAXED)))
        return true;
    }
  }
  return false;
}

void push_incoming(Krc& k, Block* first, Block* last) noexcept {
  Block* head = k.incoming.load(std::memory_order_relaxed);
  do {
    last->next = head;
  } while (
      !k.incoming.compare_exchange_weak(head, first, std::memory_order_release, std::memory_order_relaxed));
}

// ---- one pass, as named steps ----------------------------------------------------------------

// Who makes the pass: the runtime thread (kFull), or a retiring thread (kLite, drive): a lite
// pass only hands over elapsed blocks, collects closed chains and asks for their grace period:
// no locked round, no reclaim, no barrier stage (while a barrier is in progress it leaves
// elapsed batches to the runtime thread).
enum class PassKind { kFull, kLite };

// What else the pass does, decided once at its start (plan_pass); every step reads it.
enum PassMode : unsigned {
  kTimer = 1u << 0,     // the drain timer is due: idle fronts, idle ready lists, idle magazines,
                        // cursors
  kPressure = 1u << 1,  // over the budget or memory pressure: no pacing, reclaim in the pass,
                        // take every magazine, take cursors
  kRefill = 1u << 2,    // page caches are refilled (no back-off, no pressure)
  kBarrier = 1u << 3,   // a barrier is in progress (or starts now): reclaim in the pass
};

// The barrier stage this pass moves on, if any (see BarrierStage).
enum class BarrierStep { kNone, kStart, kSteal, kFinish };

struct Pass {
  PassKind kind;
  unsigned mode;
  BarrierStep barrier;
  std::uint64_t now;
  std::uint64_t barrier_req;   // g_barrier_req at the start of the pass
  Block* collected = nullptr;  // closed blocks detached by this pass: one batch (step 3)
  std::uint64_t collected_objs = 0;
  Block* to_reclaim = nullptr;   // elapsed free() blocks the caller reclaims after the unlock
  Block* spare_pages = nullptr;  // pages trimmed from the caches, back to the pool

  bool lite() const noexcept { return kind == PassKind::kLite; }
  bool has(PassMode f) const noexcept { return (mode & f) != 0; }
  // A barrier (until it completes) and the budget reclaim elapsed blocks in the pass instead of
  // handing them over: nothing new reaches a ready list or a cursor while a barrier runs.
  bool direct() const noexcept { return has(kBarrier) || has(kPressure); }
  // Timer, barrier-start and pressure passes lock the slots (step 2).
  bool locked_round() const noexcept { return collects_ready() || has(kTimer) || has(kPressure); }
  // A barrier's collection takes every front, hand-over and ready list at its start.
  bool collects_all() const noexcept { return barrier == BarrierStep::kStart; }
  // And the hand-over and ready lists again when it steals the cursors: a help in flight at
  // the start may have moved the rest of a hand-over it took onto a ready list (the help fence
  // before the steal has seen it end).
  bool collects_ready() const noexcept { return collects_all() || barrier == BarrierStep::kSteal; }
};

// What a pass leaves for its caller to do once g_mon_mutex is released.
struct PassResult {
  Block* reclaim = nullptr;        // free() blocks to reclaim on this thread
  std::uint64_t barrier_done = 0;  // a barrier whose blocks are all in `reclaim` or queued
};

bool barrier_may_steal(Monitor& m) noexcept {
  if (m.bar_stage != BarrierStage::kCollected || !gp::poll_state(m.bar_cookie)) return false;
  poll_fences(m);
  return fence_passed(m, m.bar_fence);
}
bool barrier_may_finish(const Monitor& m) noexcept {
  return m.bar_stage == BarrierStage::kStolen && gp::poll_state(m.bar_cookie) && !m.held;
}

Pass plan_pass(Monitor& m, PassKind kind) noexcept {
  Pass p{kind, 0, BarrierStep::kNone, now_ns(), g_barrier_req.load(std::memory_order_acquire)};
  if (p.lite()) {
    if (m.bar_stage != BarrierStage::kIdle) p.mode |= kBarrier;
    return p;
  }
  if (m.bar_stage == BarrierStage::kIdle && p.barrier_req > m.bar_target)
    p.barrier = BarrierStep::kStart;
  else if (barrier_may_steal(m))
    p.barrier = BarrierStep::kSteal;
  // Checked before step 1: every batch collected before the cursors were taken has elapsed,
  // and the stolen cursors were reclaimed by an earlier pass, so step 1 reclaims the rest.
  else if (barrier_may_finish(m))
    p.barrier = BarrierStep::kFinish;
  if (m.bar_stage != BarrierStage::kIdle || p.barrier == BarrierStep::kStart) p.mode |= kBarrier;
  if (p.now >= m.next_timer_ns) p.mode |= kTimer;
  if (over_budget() || take_magazine_pressure()) p.mode |= kPressure;
  if (!p.has(kPressure) && refill_allowed(p.now)) p.mode |= kRefill;
  return p;
}

// Step 1 for one elapsed batch: allocator channels' blocks (free(), ::operator delete) to their home CPU's
// hand-over (or to the pass's reclaim list), user deleters' blocks to run_deleters.
void dispatch_batch(const Batch& bt, Pass& p, CpuMon* cms, Krc* base) noexcept {
  BULKRCU_TRACE(batch_ready, bt.cookie, p.direct());
  for (Block* b = bt.blocks; b;) {
    Block* next = b->next;
    b->done = static_cast<std::uint32_t>(b->nr);
    if (!allocator_channel(b->fn)) {
      queue_deleter_block(b);
    } else if (!p.direct()) {
      // To the home CPU's ready list: its retiring threads free it with warm allocator caches.
      // If that CPU has gone idle, the drain timer finds the list unchanged and frees it.
      CpuMon& cm = cms[b->home];
      push(&cm.handoff, b);
      cm.handoff_objs += b->nr;
      b->state = BlockState::kReady;
      base[b->home].ready_objs.fetch_add(b->nr, std::memory_order_relaxed);
    } else {
      push(&p.to_reclaim, b);
    }
    b = next;
  }
}

// Step 1 for stolen cursors whose help fence has passed: `done` kept, still kReady and counted.
void dispatch_chains(Block* chains, Pass& p, CpuMon* cms) noexcept {
  for (Block* h = chains; h;) {
    Block* next_chain = chain_link(h);
    for (Block* b = h; b;) {
      Block* next = b->next;
      push(p.direct() ? &p.to_reclaim : &cms[b->home].handoff, b);
      b = next;
    }
    h = next_chain;
  }
}

// Step 1: every batch whose grace period has elapsed, and the stolen cursors whose help fence
// has passed.
void hand_over_elapsed(Monitor& m, Pass& p) noexcept {
  if (p.lite() && p.has(kBarrier)) return;
  CpuMon* cms = cpumons();
  Krc* base = krcs();
  while (oldest(m) && gp::poll_state(oldest(m)->cookie)) {
    const Batch bt = *oldest(m);
    pop_oldest(m);
    dispatch_batch(bt, p, cms, base);
  }
  poll_fences(m);
  if (m.held && fence_passed(m, m.held_fence)) {
    dispatch_chains(m.held, p, cms);
    m.held = m.held_next;  // stolen after that fence started: they wait for the next one
    m.held_next = nullptr;
    ++m.held_fence;
  }
}

// Backlog control. The limit is what the CPU was handed in the last window of kBacklogWindowNs
// (about that long of its retires), plus two blocks: a backlog above it means its helpers fall
// behind, and they free two batches per help until it is below again. Below it, the backlog is
// a buffer against late hand-overs (a limit taken from the last hand-over alone swings with
// the pace and drains that buffer).
void update_backlog_limits(std::uint64_t now) noexcept {
  CpuMon* cms = cpumons();
  Krc* base = krcs();
  for (int i = 0; i < nr_slots(); ++i) {
    CpuMon& cm = cms[i];
    if (cm.win_start_ns == 0) cm.win_start_ns = now;
    const std::uint64_t elapsed = now - cm.win_start_ns;
    if (elapsed >= kBacklogWindowNs) {
      const std::uint64_t per_window =
          static_cast<std::uint64_t>(static_cast<double>(cm.handoff_objs) *
                                     static_cast<double>(kBacklogWindowNs) / static_cast<double>(elapsed));
      base[i].behind_limit.store(per_window + 2 * g_capacity, std::memory_order_relaxed);
      cm.handoff_objs = 0;
      cm.win_start_ns = now;
    }
  }
}

// A block taken from the chain behind a front. Nobody appends to it any more (it is not the
// front), but a late install may have closed it without a seal (close_and_install_rseq):
// charge it then, once.
void close_collected(Block* b) noexcept {
  if (__atomic_load_n(&b->cap, __ATOMIC_RELAXED) != 0) {
    charge_objects(b, true);
    b->cap = 0;
  }
}

// Step 2, for a chain detached from behind a front of CPU slot i.
void collect_chain(Block* b, int i, Pass& p) noexcept {
  while (b) {
    Block* next = b->next;
    close_collected(b);
    b->home = static_cast<std::uint32_t>(i);
    p.collected_objs += b->nr;
    push(&p.collected, b);
    b = next;
  }
}

// Step 2 of the common pass: no lock and no IPI. Only this thread changes the link of a block
// that is already front (closers link a new front to the old one before installing it, and
// never touch a front's link afterwards), so the closed chain behind a front is detached with
// an exchange; elapsed blocks go to the CPU's `incoming` list with a compare-and-swap.
void collect_lockless(Pass& p) noexcept {
  CpuMon* cms = cpumons();
  Krc* base = krcs();
  const int n = nr_slots();
  for (int i = 0; i < n; ++i) {
    Krc& k = base[i];
    CpuMon& cm = cms[i];
    for (int ch = 0; ch < kChannels; ++ch) {
      // Acquire pairs with the closer's commit of the front (a plain store after it wrote
      // nb->next; x86-TSO orders the two, and the sequence's "memory" clobber the compiler).
      Block* f = __atomic_load_n(&k.front[ch], __ATOMIC_ACQUIRE);
      if (!f) continue;
      tsan_acquire(&g_krcs);  // the same edge, for TSan: the closer released before S1
      if (!__atomic_load_n(&f->next, __ATOMIC_RELAXED)) continue;
      collect_chain(__atomic_exchange_n(&f->next, nullptr, __ATOMIC_ACQ_REL), i, p);
    }
    if (Block* first = cm.handoff) {
      Block* last = first;
      while (last->next) last = last->next;
      cm.handoff = nullptr;
      push_incoming(k, first, last);
    }
  }
}

// Step 2 of a locked round, the fronts of one slot: chains, and a front that holds pointers
// when a barrier collects everything or the timer finds it unchanged since its previous pass.
void collect_fronts_locked(Krc& k, CpuMon& cm, int i, Pass& p) noexcept {
  const bool collect_all = p.collects_all();
  for (int ch = 0; ch < kChannels; ++ch) {
    Block* f = k.front[ch];
    if (!f) {
      cm.seen_front[ch] = nullptr;
      continue;
    }
    collect_chain(__atomic_exchange_n(&f->next, nullptr, __ATOMIC_ACQ_REL), i, p);
    if (f->nr > 0 && (collect_all || (p.has(kTimer) && cm.seen_front[ch] == f))) {
      __atomic_store_n(&k.front[ch], nullptr, __ATOMIC_RELAXED);  // others peek at it
      if (f->cap != 0) charge_objects(f, true);                   // not sealed by a closer: we close it
      f->cap = 0;
      f->state = BlockState::kOpen;
      f->home = static_cast<std::uint32_t>(i);
      p.collected_objs += f->nr;
      push(&p.collected, f);
    }
    if (p.has(kTimer)) cm.seen_front[ch] = k.front[ch];
  }
}

// Step 2 of a locked round, the rest of one slot: hand-overs join the ready list (or, for a
// barrier, the reclaim list), an idle CPU's ready list is reclaimed, the page cache tended.
void round_ready_locked(Krc& k, CpuMon& cm, Pass& p) noexcept {
  const bool collect_all = p.collects_ready();
  // Handed-over blocks (this pass's and those no helper has taken yet) join the ready list.
  for (Block* b = k.incoming.exchange(nullptr, std::memory_order_acquire); b;) {
    Block* next = b->next;
    push(&cm.handoff, b);
    b = next;
  }
  while (Block* b = cm.handoff) {
    cm.handoff = b->next;
    if (collect_all) {
      push(&p.to_reclaim, b);
    } else {
      b->next = k.ready;
      tsan_release(&g_krcs);                            // pop_ready acquires
      __atomic_store_n(&k.ready, b, __ATOMIC_RELAXED);  // others peek at it
    }
  }
  if (k.ready && (collect_all || p.has(kPressure) || (p.has(kTimer) && cm.seen_ready == k.ready))) {
    for (Block* b = k.ready; b;) {  // an idle CPU's ready blocks: nobody else will free them
      Block* next = b->next;
      push(&p.to_reclaim, b);
      b = next;
    }
    __atomic_store_n(&k.ready, nullptr, __ATOMIC_RELAXED);
  }
  if (p.has(kTimer)) cm.seen_ready = k.ready;
  tend_cache(k, &p.spare_pages, p.has(kRefill));
}

// Step 2 of timer, barrier and pressure passes: the slots locked a group at a time, every CPU
// fenced with one broadcast (percpu.h protocol: R1 lock, R2 fence, R3 unlock).
void collect_locked(Pass& p) noexcept {
  CpuMon* cms = cpumons();
  Krc* base = krcs();
  const int n = nr_slots();
  for (int group = 0; group < n; group += kGroup) {
    const int end = group + kGroup < n ? group + kGroup : n;
    for (int i = group; i < end; ++i) base[i].lock.lock();  // R1 on every slot of the group
    bulkrcu::detail::subtle::fence_remote_all();            // R2, one broadcast
    tsan_acquire(&g_krcs);
    for (int i = group; i < end; ++i) {
      collect_fronts_locked(base[i], cms[i], i, p);
      round_ready_locked(base[i], cms[i], p);
    }
    for (int i = group; i < end; ++i) base[i].lock.unlock();  // R3
  }
}

// Step 2, magazines (magazine.h; not in lite passes): timer passes take those of threads idle since the
// previous timer pass; a barrier and memory pressure take them all. A barrier does not leave its first stage
// until a take found no owner in the middle of a store. Then the blocks owners closed.
void take_magazines(Monitor& m, Pass& p) noexcept {
  const bool retry = p.barrier == BarrierStep::kSteal && m.bar_mag_left;
  if (!p.lite() && (p.has(kTimer) || p.has(kPressure) || p.barrier == BarrierStep::kStart || retry)) {
    const bool all = p.barrier == BarrierStep::kStart || p.has(kPressure) || retry;
    const bool taken_all =
        mag::take(all ? mag::Take::kAll : mag::Take::kIdle, &p.collected, &p.collected_objs);
    if (p.barrier == BarrierStep::kStart) m.bar_mag_left = !taken_all;
    if (retry) {
      m.bar_mag_left = !taken_all;
      if (m.bar_mag_left) {  // retry after another grace period; the cursors wait for it
        p.barrier = BarrierStep::kNone;
        m.bar_cookie = gp::get_state();
        gp::request(m.bar_cookie);
      }
    }
  }
  mag::take_closed(&p.collected, &p.collected_objs);
  g_counters.collected.fetch_add(p.collected_objs, std::memory_order_relaxed);
}

// Step 2, reclaim cursors of threads (reclaim.h): taken on timer and pressure passes, so that
// a thread that stopped retiring (or exited) strands nothing, and by a barrier once a help
// fence started after its collection has passed (a thread that popped a ready block before the
// collection has stored it in its word by then). A help in flight may still read a stolen
// cursor: its blocks wait for a help fence started after the steal (never for a grace period,
// so a thread preempted inside a help delays only these) and then go back to their home CPU
// with the pointers the thread had not freed yet.
void take_cursors(Monitor& m, const Pass& p) noexcept {
  if (!(p.has(kTimer) || p.has(kPressure) || p.barrier == BarrierStep::kSteal)) return;
  Block* chains = steal_cursors();
  if (!chains) return;
  const std::uint64_t n = need_fence(m);
  if (!m.held || m.held_fence == n) {
    append_chains(&m.held, chains);
    m.held_fence = n;
  } else {  // n == m.held_fence + 1: the fence of `held` was in flight before this steal
    append_chains(&m.held_next, chains);
  }
}

// Step 3: cookies for detached blocks (every block an rseq closer closed: it takes none); the
// rest (try-lock mode closers) keep the cookie their closer recorded under the lock (polled
// grace periods: a block whose cookie has already elapsed needs no new one).
void tag_cookies(Monitor& m, Pass& p) noexcept {
  if (!p.collected) return;
  const unsigned long fresh = gp::get_state();
  unsigned long cookie = 0;
  bool first = true;
  for (Block* b = p.collected; b; b = b->next) {
    if (b->state == BlockState::kOpen) {
      b->cookie = fresh;
      b->state = BlockState::kWaiting;
    }
    if (first || cookie_after(b->cookie, cookie)) cookie = b->cookie;
    first = false;
  }
  add_batch(m, cookie, p.collected);
}

// Step 4: the barrier's stages (see BarrierStage): each asks for the grace period the next
// waits for.
void advance_barrier(Monitor& m, const Pass& p, PassResult& out) noexcept {
  switch (p.barrier) {
    case BarrierStep::kNone:
      return;
    case BarrierStep::kStart:
      m.bar_stage = BarrierStage::kCollected;
      m.bar_target = p.barrier_req;
      m.bar_cookie = gp::get_state();
      gp::request(m.bar_cookie);
      m.bar_fence = need_fence(m);
      return;
    case BarrierStep::kSteal:
      m.bar_stage = BarrierStage::kStolen;
      m.bar_cookie = gp::get_state();
      for (unsigned i = 0; i < m.count; ++i) {
        const unsigned long ck = m.ring[(m.first + i) % kBatches].cookie;
        if (cookie_after(ck, m.bar_cookie)) m.bar_cookie = ck;
      }
      gp::request(m.bar_cookie);
      return;
    case BarrierStep::kFinish:
      m.bar_stage = BarrierStage::kIdle;
      out.barrier_done = m.bar_target;
      return;
  }
}

// Step 5: the newest batch's grace period, paced (a lite pass leaves it to its driver).
void request_grace_period(Monitor& m, const Pass& p) noexcept {
  Batch* nb = newest(m);
  const unsigned long newest_cookie = nb ? nb->cookie : 0;
  m.deferred = false;
  if (!nb || gp::poll_state(newest_cookie)) return;
  if (!(p.has(kBarrier) || p.has(kPressure) || p.now >= m.last_request_ns + kGpPaceNs)) {
    m.deferred = true;
    return;
  }
  if (!m.requested_any || m.last_requested != newest_cookie) {
    g_counters.gps.fetch_add(1, std::memory_order_relaxed);
    m.last_requested = newest_cookie;
    m.requested_any = true;
  }
  m.last_request_ns = p.now;
  g_pace_due_ns.store(p.now + kGpPaceNs, std::memory_order_relaxed);
  if (p.lite()) {  // the driving thread runs it, or requests it if it cannot
    m.has_want = true;
    m.want = newest_cookie;
  } else {
    gp::request(newest_cookie);
  }
}

// One pass; g_mon_mutex held. Never waits for a grace period and never runs a user deleter.
PassResult monitor_pass_locked(PassKind kind) noexcept {
  ensure_sizes();
  Monitor& m = mon();
  Pass p = plan_pass(m, kind);
  PassResult out;
  g_kick.store(0, std::memory_order_relaxed);
  g_counters.passes.fetch_add(1, std::memory_order_relaxed);
  hand_over_elapsed(m, p);  // 1
  update_backlog_limits(p.now);
  if (p.locked_round())  // 2
    collect_locked(p);
  else
    collect_lockless(p);
  take_magazines(m, p);
  take_cursors(m, p);
  tag_cookies(m, p);                           // 3
  advance_barrier(m, p, out);                  // 4
  request_grace_period(m, p);                  // 5
  free_spare_pages(p.spare_pages, !p.lite());  // free() blocks are reclaimed after the unlock
  if (p.has(kTimer)) m.next_timer_ns = p.now + config().drain_ns;
  if (!p.lite()) refill_reserve();  // independent of the cache back-off and of the budget
  g_last_pass_ns.store(now_ns(), std::memory_order_relaxed);
  out.reclaim = p.to_reclaim;
  return out;
}

// After a pass, with g_mon_mutex released: free() blocks here, and a completed barrier handed
// to run_deleters (which publishes it once the user deleters queued before it have run).
void finish_pass(const PassResult& r) noexcept {
  reclaim_list(r.reclaim);
  if (r.barrier_done) barrier_reclaimed(r.barrier_done);
  publish_progress();
}

// A lite pass on a retiring thread (g_mon_mutex not held; returns false when another pass
// holds it): hand over what has elapsed, collect what has closed, run the wanted grace period
// here if that needs no waiting (else ask the runtime thread for it), and hand over again.
bool drive(std::uint64_t now) noexcept {
  if (pthread_mutex_trylock(&g_mon_mutex) != 0) return false;
  Monitor& m = mon();
  m.has_want = false;
  monitor_pass_locked(PassKind::kLite);
  if (oldest(m) && !gp::poll_state(oldest(m)->cookie) && gp::reader_nesting() == 0) {
    // Two at most: a cookie taken while a grace period ran needs the next one too.
    for (int i = 0; i < 2 && !gp::poll_state(oldest(m)->cookie); ++i)
      if (!gp::try_grace_period_now()) break;
    if (gp::poll_state(oldest(m)->cookie)) monitor_pass_locked(PassKind::kLite);
  }
  if (m.has_want && !gp::poll_state(m.want)) gp::request(m.want);  // the runtime thread runs it
  m.has_want = false;
  g_last_drive_ns.store(now, std::memory_order_relaxed);
  pthread_mutex_unlock(&g_mon_mutex);
  publish_progress();
  // User deleters elapsed in this pass run on the runtime thread, never here.
  if (deleters_pending()) doorbell_ring_if_idle();
  g_counters.drives.fetch_add(1, std::memory_order_relaxed);
  return true;
}

// Retiring threads made a lite pass within twice the pace: the runtime thread need not wake
// at every pace (it keeps a backstop of twice the pace).
bool retirers_driving(std::uint64_t now) noexcept {
  return now < g_last_drive_ns.load(std::memory_order_relaxed) + 2 * kGpPaceNs;
}

}  // namespace

void kick_monitor(unsigned flags) noexcept {
  if (flags & kMayBlock) {
    const std::uint64_t now = now_ns();
    if (now >= g_pace_due_ns.load(std::memory_order_relaxed)) {
      if (drive(now)) return;
    } else if (retirers_driving(now)) {
      g_kick.store(1, std::memory_order_relaxed);  // a later close drives; the runtime thread
      return;                                      // backs it up after twice the pace
    }
  }
  // Only the first kick after a monitor pass rings: in a flood a block closes every few
  // microseconds, and the monitor acts at most once per kGpPaceNs anyway.
  if (g_kick.load(std::memory_order_relaxed)) return;
  g_kick.store(1, std::memory_order_relaxed);
  if (flags & kNoSyscall)
    doorbell_nudge();
  else
    doorbell_ring_if_idle();
}

void arm_timer(unsigned flags) noexcept {
  if (flags & kNoSyscall)
    doorbell_nudge();
  else
    doorbell_ring_if_idle();
}

void publish_progress() noexcept {
  g_progress.fetch_add(1, std::memory_order_release);
  if (g_progress_waiters.load(std::memory_order_seq_cst))
    bulkrcu::detail::subtle::futex_wake(&g_progress, INT32_MAX);
}

void kick_and_wait_for_pass(std::uint64_t timeout_ns) noexcept {
  g_progress_waiters.fetch_add(1, std::memory_order_seq_cst);
  std::uint32_t seen = g_progress.load(std::memory_order_acquire);
  kick_monitor();
  bulkrcu::detail::subtle::futex_wait(&g_progress, seen, timeout_ns);
  g_progress_waiters.fetch_sub(1, std::memory_order_relaxed);
}

void init_monitor() noexcept { (void)cpumons(); }

void monitor_pass() noexcept {
  PassResult r;
  {
    MonLock lock;
    r = monitor_pass_locked(PassKind::kFull);
  }
  finish_pass(r);
}

void drive_if_late() noexcept {
  const std::uint64_t now = now_ns();
  if (now < g_last_pass_ns.load(std::memory_order_relaxed) + kDriveAfterNs) return;
  std::uint64_t next = g_next_drive_ns.load(std::memory_order_relaxed);
  if (now < next ||
      !g_next_drive_ns.compare_exchange_strong(next, now + kDriveEveryNs, std::memory_order_relaxed))
    return;
  drive(now);
}

bool has_work() noexcept {
  if (deleters_pending()) return true;
  MonLock lock;
  Monitor& m = mon();
  if (m.bar_stage == BarrierStage::kIdle && g_barrier_req.load(std::memory_order_acquire) > m.bar_target)
    return true;
  if (barrier_may_steal(m) || barrier_may_finish(m)) return true;
  // Kicks (a block closed) and deferred cookies wait for the pace: one grace period then
  // covers every block closed meanwhile.
  const std::uint64_t now = now_ns();
  const std::uint64_t pace = retirers_driving(now) ? 2 * kGpPaceNs : kGpPaceNs;
  const bool pace_ok = now >= m.last_request_ns + pace || over_budget();
  if (pace_ok && (m.deferred || g_kick.load(std::memory_order_relaxed))) return true;
  if (oldest(m) && gp::poll_state(oldest(m)->cookie)) return true;
  if (m.held) {
    poll_fences(m);
    if (fence_passed(m, m.held_fence)) return true;
  }
  CpuMon* cms = cpumons();
  for (int i = 0; i < nr_slots(); ++i)
    if (cms[i].handoff) return true;
  return now_ns() >= m.next_timer_ns && cpu_state_pending();
}

std::uint64_t next_timeout_ns() noexcept {
  MonLock lock;
  Monitor& m = mon();
  const std::uint64_t now = now_ns();
  std::uint64_t t = 0;  // 0: nothing to time
  if (m.deferred || g_kick.load(std::memory_order_relaxed)) {
    const std::uint64_t pace = m.last_request_ns + (retirers_driving(now) ? 2 * kGpPaceNs : kGpPaceNs);
    t = pace > now ? pace - now : 1;
  } else if (oldest(m) || cpu_state_pending()) {
    t = m.next_timer_ns > now ? m.next_timer_ns - now : 1;
  }
  // A help fence in flight: its helps are a few frees each, unless a thread was preempted
  // inside one; it is polled, not woken.
  if (m.fence_started != m.fence_passed) {
    const std::uint64_t age = now > m.fence_start_ns ? now - m.fence_start_ns : 0;
    const std::uint64_t poll = std::clamp(age / 8, kFencePollMinNs, kFencePollMaxNs);
    if (t == 0 || t > poll) t = poll;
  }
  return t;
}

void barrier() noexcept {
  // First: a deleter runs inside a read-side critical section, and this is the message it needs.
  if (in_user_code())
    fatal(
        "bulkrcu_kvfree_barrier() called from inside an RCU callback or deleter: it would wait "
        "for itself");
  gp::assert_not_in_reader("bulkrcu_kvfree_barrier()");
  const std::uint64_t target = g_barrier_req.fetch_add(1, std::memory_order_acq_rel) + 1;
  g_progress_waiters.fetch_add(1, std::memory_order_seq_cst);
  doorbell_ring();
  for (;;) {
    std::uint32_t seen = g_progress.load(std::memory_order_acquire);
    if (barriers_done() >= target) break;
    bulkrcu::detail::subtle::futex_wait(&g_progress, seen, 0);
  }
  g_progress_waiters.fetch_sub(1, std::memory_order_relaxed);
  // Claims in flight on retiring threads end with their help (help sequence, reclaim.h);
  // deleters in flight on any thread run inside read-side critical sections.
  help_fence_wait();
  gp::wait_for_cookie(gp::get_state(), false);
}

void before_fork() noexcept { pthread_mutex_lock(&g_mon_mutex); }
void after_fork_parent() noexcept { pthread_mutex_unlock(&g_mon_mutex); }

void monitor_after_fork_child() noexcept {
  pthread_mutex_init(&g_mon_mutex, nullptr);
  g_progress_waiters.store(0, std::memory_order_relaxed);
}

}  // namespace bulkrcu::detail::kvfree
