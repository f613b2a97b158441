// bulkrcu/src/kvfree/kvfree.cpp: the monitor (passes, batches, pacing, the barrier's stages),
// the layer's set-up, fork child and statistics. The other protocols live in their own files
// (docs/KVFREE.md, "Where each protocol lives"): block.h, retire.{h,cpp}, reclaim.{h,cpp},
// budget.{h,cpp}, pages.{h,cpp}, magazine.{h,cpp}; the monitor's protocol is in monitor.h.
#include "kvfree/kvfree.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/trace.h"
#include "base/user_code.h"
#include "bulkrcu/page_pool.h"
#include "cache/cache.h"
#include "callback/callback.h"
#include "gp/gp.h"
#include "kvfree/budget.h"
#include "kvfree/magazine.h"
#include "kvfree/monitor.h"
#include "kvfree/pages.h"
#include "kvfree/reclaim.h"
#include "kvfree/retire.h"
#include "kvfree/stats.h"
#include "pool/pool.h"

namespace bulkrcu::detail::kvfree {

alignas(kCacheLine) std::atomic<Krc*> g_krcs{nullptr};
std::size_t g_page = 0;
std::size_t g_capacity = 0;
KvfreeCounters g_counters;

void init_sizes() noexcept {
  if (g_page) return;
  std::size_t page = bulkrcu_page_size();
#ifdef BULKRCU_TESTING
  g_capacity = kTestBlockCapacity;
#else
  g_capacity = (page - sizeof(Block)) / sizeof(void*);
#endif
  g_page = page;
}

namespace {

// Grace periods for kvfree are at least this far apart (unless a barrier, the budget or
// memory pressure asks): one grace period then covers every block closed meanwhile.
// DESIGN.md 5a measured 0.25-1 ms as the range where one covers 100-280 blocks.
constexpr std::uint64_t kGpPaceNs = 500000;
// A retiring thread that finds nothing to free while the runtime thread has not made a pass
// for this long makes a lite pass itself (drive_if_late), at most once per kDriveEveryNs.
// Measured on this 2-CPU machine: when both CPUs are busy, the runtime thread's wakeups are
// sometimes a scheduler tick or more late, and the retiring threads then ran dry for
// milliseconds (no frees, so glibc's tcache emptied) before catching up twice as fast.
#ifdef BULKRCU_TESTING
constexpr std::uint64_t kDriveAfterNs = 0;  // test builds: every dry help may drive
constexpr std::uint64_t kDriveEveryNs = 20000;
#else
constexpr std::uint64_t kDriveAfterNs = 600000;
constexpr std::uint64_t kDriveEveryNs = 100000;
#endif
constexpr std::uint64_t kBacklogWindowNs = 2 * kGpPaceNs;

std::atomic<std::uint32_t> g_kick{0};         // a closer filled a block: flood, pass now
std::atomic<std::uint64_t> g_barrier_req{0};  // kvfree barriers requested
std::atomic<std::uint32_t> g_progress{0};     // futex: bumped after every monitor pass
std::atomic<std::uint32_t> g_progress_waiters{0};

__attribute__((constructor(104))) void kvfree_init() {
  init_sizes();
  (void)krcs();
  init_monitor();
}

bool drive(std::uint64_t now) noexcept;
bool retirers_driving(std::uint64_t now) noexcept;
std::atomic<std::uint64_t> g_pace_due_ns{0};  // the monitor's last grace-period request + pace

void push_incoming(Krc& k, Block* first, Block* last) noexcept {
  Block* head = k.incoming.load(std::memory_order_relaxed);
  do {
    last->next = head;
  } while (
      !k.incoming.compare_exchange_weak(head, first, std::memory_order_release, std::memory_order_relaxed));
}

}  // namespace

// ---- the monitor (runtime thread only) ------------------------------------------------------
namespace {

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
  // Reclaim cursors taken from threads (free() blocks; `done` is kept): chains through `next`
  // that a help in flight may still read until the grace period has elapsed, so the chains'
  // heads are linked through `cap` (unused once a block is closed, never read by a helper)
  // and relinked through `next` only afterwards.
  Block* chains;
};
constexpr unsigned kBatches = 64;

// A kvfree barrier moves through these stages across passes (the runtime thread's; no pass
// waits): kCollected: every front, chain, hand-over and ready list was taken (one locked
// round); a grace period later every thread that popped a ready block has stored it in its
// word, so kStolen takes the threads' cursors; once the grace period of every batch has
// elapsed, the pass reclaims them all and the barrier is complete.
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

void add_batch(Monitor& m, unsigned long cookie, Block* blocks, Block* chains) noexcept {
  Batch* bt;
  if (m.count == kBatches) {
    bt = newest(m);
    if (cookie_after(cookie, bt->cookie)) bt->cookie = cookie;
  } else {
    bt = &m.ring[(m.first + m.count) % kBatches];
    ++m.count;
    *bt = Batch{cookie, nullptr, nullptr};
  }
  while (blocks) {
    Block* next = blocks->next;
    push(&bt->blocks, blocks);
    blocks = next;
  }
  while (chains) {
    Block* next = chain_link(chains);
    set_chain_link(chains, bt->chains);
    bt->chains = chains;
    chains = next;
  }
}

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

}  // namespace

// A retiring thread closed a block. Blocking forms whose pace is due make the monitor's pass
// themselves (drive): no wakeup of the runtime thread, no wait for the scheduler.
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

// A block was installed in an empty channel: a runtime thread sleeping without a timeout must
// arm its drain timer.
void arm_timer(unsigned flags) noexcept {
  if (flags & kNoSyscall)
    doorbell_nudge();
  else
    doorbell_ring_if_idle();
}

void init_monitor() noexcept { (void)cpumons(); }

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

namespace {
// What a pass leaves for its caller to do once g_mon_mutex is released.
struct PassResult {
  Block* reclaim = nullptr;        // free() blocks to reclaim on this thread
  std::uint64_t barrier_done = 0;  // a barrier whose blocks are all in `reclaim` or queued
};

// The locked round of timer, barrier and pressure passes over one slot (locked and fenced).
struct RoundState {
  bool collect_all;  // barrier: detach every front that holds pointers
  bool timer, pressure, refill;
  Block** collected;
  Block** to_reclaim;
  Block** spare_pages;
  std::uint64_t* collected_objs;
};

// A block taken from the chain behind a front. Nobody appends to it any more (it is not the
// front), but a late install may have closed it without a seal (close_and_install_rseq):
// charge it then, once.
void close_collected(Block* b) noexcept {
  if (__atomic_load_n(&b->cap, __ATOMIC_RELAXED) != 0) {
    charge_objects(b, true);
    b->cap = 0;
  }
}

void locked_round_slot(Krc& k, CpuMon& cm, int i, const RoundState& r) noexcept {
  for (int ch = 0; ch < kChannels; ++ch) {
    Block* f = k.front[ch];
    if (!f) {
      cm.seen_front[ch] = nullptr;
      continue;
    }
    for (Block* b = __atomic_exchange_n(&f->next, nullptr, __ATOMIC_ACQ_REL); b;) {
      Block* next = b->next;
      close_collected(b);
      b->home = static_cast<std::uint32_t>(i);
      *r.collected_objs += b->nr;
      push(r.collected, b);
      b = next;
    }
    if (f->nr > 0 && (r.collect_all || (r.timer && cm.seen_front[ch] == f))) {
      __atomic_store_n(&k.front[ch], nullptr, __ATOMIC_RELAXED);  // others peek at it
      if (f->cap != 0) charge_objects(f, true);                   // not sealed by a closer: we close it
      f->cap = 0;
      f->state = BlockState::kOpen;
      f->home = static_cast<std::uint32_t>(i);
      *r.collected_objs += f->nr;
      push(r.collected, f);
    }
    if (r.timer) cm.seen_front[ch] = k.front[ch];
  }
  // Handed-over blocks (this pass's and those no helper has taken yet) join the ready list.
  for (Block* b = k.incoming.exchange(nullptr, std::memory_order_acquire); b;) {
    Block* next = b->next;
    push(&cm.handoff, b);
    b = next;
  }
  while (Block* b = cm.handoff) {
    cm.handoff = b->next;
    if (r.collect_all) {
      push(r.to_reclaim, b);
    } else {
      b->next = k.ready;
      tsan_release(&g_krcs);                            // pop_ready acquires
      __atomic_store_n(&k.ready, b, __ATOMIC_RELAXED);  // others peek at it
    }
  }
  if (k.ready && (r.collect_all || r.pressure || (r.timer && cm.seen_ready == k.ready))) {
    for (Block* b = k.ready; b;) {  // an idle CPU's ready blocks: nobody else will free them
      Block* next = b->next;
      push(r.to_reclaim, b);
      b = next;
    }
    __atomic_store_n(&k.ready, nullptr, __ATOMIC_RELAXED);
  }
  if (r.timer) cm.seen_ready = k.ready;
  tend_cache(k, r.spare_pages, r.refill);
}

// One pass; g_mon_mutex held. Never waits for a grace period and never runs a user deleter.
// A lite pass (a retiring thread's, drive_if_late) only hands over elapsed blocks, collects
// closed chains and asks for their grace period: no locked round, no reclaim, no barrier
// stage (while a barrier is in progress it leaves elapsed batches to the runtime thread).
PassResult monitor_pass_locked(bool lite) noexcept {
  ensure_sizes();
  Monitor& m = mon();
  CpuMon* cms = cpumons();
  Krc* base = krcs();
  const std::uint64_t now = now_ns();
  PassResult out;
  const std::uint64_t barrier_req = g_barrier_req.load(std::memory_order_acquire);
  const bool bar_start = !lite && m.bar_stage == BarrierStage::kIdle && barrier_req > m.bar_target;
  bool bar_steal = !lite && m.bar_stage == BarrierStage::kCollected && gp::poll_state(m.bar_cookie);
  // Checked before step 1: every batch collected before the cursors were taken has elapsed,
  // so step 1 below reclaims them all.
  const bool bar_finish = !lite && m.bar_stage == BarrierStage::kStolen && gp::poll_state(m.bar_cookie);
  const bool bar_active = m.bar_stage != BarrierStage::kIdle || bar_start;
  const bool timer = !lite && now >= m.next_timer_ns;
  const bool pressure = !lite && (over_budget() || take_magazine_pressure());
  const bool refill = !lite && !pressure && refill_allowed(now);
  // A barrier (until it completes) and the budget reclaim elapsed blocks in the pass instead of
  // handing them over: nothing new reaches a ready list or a cursor while a barrier runs.
  const bool direct = bar_active || pressure;
  g_kick.store(0, std::memory_order_relaxed);
  g_counters.passes.fetch_add(1, std::memory_order_relaxed);

  // 1. Batches whose grace period has elapsed: free() blocks to their CPU's hand-over list
  //    (or reclaimed by this pass's caller), user deleters' blocks to run_deleters.
  Block* to_reclaim = nullptr;
  while (!(lite && bar_active) && oldest(m) && gp::poll_state(oldest(m)->cookie)) {
    const Batch bt = *oldest(m);
    pop_oldest(m);
    BULKRCU_TRACE(batch_ready, bt.cookie, direct);
    for (Block* b = bt.blocks; b;) {
      Block* next = b->next;
      b->done = static_cast<std::uint32_t>(b->nr);
      if (b->fn) {
        queue_deleter_block(b);
      } else if (!direct) {
        // To the home CPU's ready list: its retiring threads free it with warm allocator caches.
        // If that CPU has gone idle, the drain timer finds the list unchanged and frees it.
        CpuMon& cm = cms[b->home];
        push(&cm.handoff, b);
        cm.handoff_objs += b->nr;
        b->state = BlockState::kReady;
        base[b->home].ready_objs.fetch_add(b->nr, std::memory_order_relaxed);
      } else {
        push(&to_reclaim, b);
      }
      b = next;
    }
    for (Block* h = bt.chains; h;) {  // stolen cursors: `done` kept, still kReady and counted
      Block* next_chain = chain_link(h);
      for (Block* b = h; b;) {
        Block* next = b->next;
        if (!direct)
          push(&cms[b->home].handoff, b);
        else
          push(&to_reclaim, b);
        b = next;
      }
      h = next_chain;
    }
  }
  for (int i = 0; i < nr_slots(); ++i) {
    // Backlog control. The limit is what the CPU was handed in the last window of kBacklogWindowNs
    // (about that long of its retires), plus two blocks: a backlog above it means its helpers
    // fall behind, and they free two batches per help until it is below again. Below it, the
    // backlog is a buffer against late hand-overs. (The size of the last hand-over alone
    // swung between a pace's worth and a few blocks; the small limits drained the buffer,
    // and helpers then ran dry at the next late hand-over.)
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

  // 2. A round over the CPUs. The common pass takes no lock and sends no IPI: only this
  //    thread changes the link of a block that is already front (closers link a new front to
  //    the old one before installing it, and never touch a front's link afterwards), so the
  //    closed chain behind a front is detached with an exchange; elapsed blocks go to the
  //    CPU's `incoming` list with a compare-and-swap. Timer, barrier and pressure passes lock
  //    the slots (a group at a time) and fence every CPU with one broadcast (percpu.h
  //    protocol) to detach fronts, take idle ready lists and tend the page cache.
  const bool locked_round = bar_start || timer || pressure;
  Block* collected = nullptr;
  Block* spare_pages = nullptr;
  std::uint64_t collected_objs = 0;
  const int n = nr_slots();
  if (!locked_round) {
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
        for (Block* b = __atomic_exchange_n(&f->next, nullptr, __ATOMIC_ACQ_REL); b;) {
          Block* next = b->next;
          close_collected(b);
          b->home = static_cast<std::uint32_t>(i);
          collected_objs += b->nr;
          push(&collected, b);
          b = next;
        }
      }
      if (Block* first = cm.handoff) {
        Block* last = first;
        while (last->next) last = last->next;
        cm.handoff = nullptr;
        push_incoming(k, first, last);
      }
    }
  } else {
    const RoundState r{bar_start,  timer,       pressure,     refill,
                       &collected, &to_reclaim, &spare_pages, &collected_objs};
    constexpr int kGroup = 256;  // slots locked at once, so one broadcast fence covers them
    for (int group = 0; group < n; group += kGroup) {
      const int end = group + kGroup < n ? group + kGroup : n;
      for (int i = group; i < end; ++i) base[i].lock.lock();  // R1 on every slot of the group
      bulkrcu::detail::subtle::fence_remote_all();            // R2, one broadcast
      tsan_acquire(&g_krcs);
      for (int i = group; i < end; ++i) locked_round_slot(base[i], cms[i], i, r);
      for (int i = group; i < end; ++i) base[i].lock.unlock();  // R3
    }
  }
  // Magazines (magazine.h): timer passes take those of threads idle since the previous timer
  // pass; a barrier and memory pressure take them all. A barrier does not leave its first
  // stage until a take found no owner in the middle of a store. Then the blocks owners closed.
  if (!lite && (timer || pressure || bar_start || (bar_steal && m.bar_mag_left))) {
    const bool all = bar_start || pressure || (bar_steal && m.bar_mag_left);
    const bool taken_all = mag::take(all ? mag::Take::kAll : mag::Take::kIdle, &collected, &collected_objs);
    if (bar_start) m.bar_mag_left = !taken_all;
    if (bar_steal && m.bar_mag_left) {
      m.bar_mag_left = !taken_all;
      if (m.bar_mag_left) {  // retry after another grace period; the cursors wait for it
        bar_steal = false;
        m.bar_cookie = gp::get_state();
        gp::request(m.bar_cookie);
      }
    }
  }
  mag::take_closed(&collected, &collected_objs);
  g_counters.collected.fetch_add(collected_objs, std::memory_order_relaxed);

  // Reclaim cursors of threads (help_step): taken on timer and pressure passes, so that a
  // thread that stopped retiring (or exited) strands nothing, and by a barrier one grace period
  // after its collection (a thread that popped a ready block before then has stored it in its
  // word by now: its help runs in a read-side critical section). Their blocks wait one grace
  // period (a help in flight ends with its section) and then go back to their home CPU with
  // the pointers the thread had not freed yet.
  if (!lite && (timer || pressure || bar_steal)) {
    if (Block* chains = steal_cursors()) add_batch(m, gp::get_state(), nullptr, chains);
  }

  // 3. Cookies for detached blocks (every block an rseq closer closed: it takes none); the rest
  //    (try-lock mode closers) keep the cookie their closer recorded under the lock (polled
  //    grace periods: a block whose cookie has already elapsed needs no new one).
  if (collected) {
    const unsigned long fresh = gp::get_state();
    unsigned long cookie = 0;
    bool first = true;
    for (Block* b = collected; b; b = b->next) {
      if (b->state == BlockState::kOpen) {
        b->cookie = fresh;
        b->state = BlockState::kWaiting;
      }
      if (first || cookie_after(b->cookie, cookie)) cookie = b->cookie;
      first = false;
    }
    add_batch(m, cookie, collected, nullptr);
  }

  // The barrier's stages (see BarrierStage): each asks for the grace period the next waits for.
  if (bar_start) {
    m.bar_stage = BarrierStage::kCollected;
    m.bar_target = barrier_req;
    m.bar_cookie = gp::get_state();
    gp::request(m.bar_cookie);
  } else if (bar_steal) {
    m.bar_stage = BarrierStage::kStolen;
    m.bar_cookie = gp::get_state();
    for (unsigned i = 0; i < m.count; ++i) {
      const unsigned long ck = m.ring[(m.first + i) % kBatches].cookie;
      if (cookie_after(ck, m.bar_cookie)) m.bar_cookie = ck;
    }
    gp::request(m.bar_cookie);
  } else if (bar_finish) {
    m.bar_stage = BarrierStage::kIdle;
    out.barrier_done = m.bar_target;
  }

  Batch* nb = newest(m);
  const unsigned long newest_cookie = nb ? nb->cookie : 0;
  m.deferred = false;
  if (nb && !gp::poll_state(newest_cookie)) {
    if (bar_active || pressure || now >= m.last_request_ns + kGpPaceNs) {
      if (!m.requested_any || m.last_requested != newest_cookie) {
        g_counters.gps.fetch_add(1, std::memory_order_relaxed);
        m.last_requested = newest_cookie;
        m.requested_any = true;
      }
      m.last_request_ns = now;
      g_pace_due_ns.store(now + kGpPaceNs, std::memory_order_relaxed);
      if (lite) {  // the driving thread runs it, or requests it if it cannot
        m.has_want = true;
        m.want = newest_cookie;
      } else {
        gp::request(newest_cookie);
      }
    } else {
      m.deferred = true;
    }
  }

  // 4. Return spare pages (free() blocks are reclaimed by the caller, after the unlock).
  free_spare_pages(spare_pages, !lite);
  if (timer) m.next_timer_ns = now + config().drain_ns;
  if (!lite) refill_reserve();  // independent of the cache back-off and of the budget
  g_last_pass_ns.store(now_ns(), std::memory_order_relaxed);
  out.reclaim = to_reclaim;
  return out;
}

// After a pass, with g_mon_mutex released: free() blocks here, and a completed barrier handed
// to run_deleters (which publishes it once the user deleters queued before it have run).
void finish_pass(const PassResult& r) noexcept {
  reclaim_list(r.reclaim);
  if (r.barrier_done) barrier_reclaimed(r.barrier_done);
  publish_progress();
}
}  // namespace

void monitor_pass() noexcept {
  PassResult r;
  {
    MonLock lock;
    r = monitor_pass_locked(false);
  }
  finish_pass(r);
}

namespace {
// A lite pass on a retiring thread (g_mon_mutex not held; returns false when another pass
// holds it): hand over what has elapsed, collect what has closed, run the wanted grace period
// here if that needs no waiting (else ask the runtime thread for it), and hand over again.
bool drive(std::uint64_t now) noexcept {
  if (pthread_mutex_trylock(&g_mon_mutex) != 0) return false;
  Monitor& m = mon();
  m.has_want = false;
  monitor_pass_locked(true);
  if (oldest(m) && !gp::poll_state(oldest(m)->cookie) && gp::reader_nesting() == 0) {
    // Two at most: a cookie taken while a grace period ran needs the next one too.
    for (int i = 0; i < 2 && !gp::poll_state(oldest(m)->cookie); ++i)
      if (!gp::try_grace_period_now()) break;
    if (gp::poll_state(oldest(m)->cookie)) monitor_pass_locked(true);
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
  if (m.bar_stage != BarrierStage::kIdle && gp::poll_state(m.bar_cookie)) return true;
  // Kicks (a block closed) and deferred cookies wait for the pace: one grace period then
  // covers every block closed meanwhile.
  const std::uint64_t now = now_ns();
  const std::uint64_t pace = retirers_driving(now) ? 2 * kGpPaceNs : kGpPaceNs;
  const bool pace_ok = now >= m.last_request_ns + pace || over_budget();
  if (pace_ok && (m.deferred || g_kick.load(std::memory_order_relaxed))) return true;
  if (oldest(m) && gp::poll_state(oldest(m)->cookie)) return true;
  CpuMon* cms = cpumons();
  for (int i = 0; i < nr_slots(); ++i)
    if (cms[i].handoff) return true;
  return now_ns() >= m.next_timer_ns && cpu_state_pending();
}

std::uint64_t next_timeout_ns() noexcept {
  MonLock lock;
  Monitor& m = mon();
  std::uint64_t now = now_ns();
  if (m.deferred || g_kick.load(std::memory_order_relaxed)) {
    std::uint64_t pace = m.last_request_ns + (retirers_driving(now) ? 2 * kGpPaceNs : kGpPaceNs);
    return pace > now ? pace - now : 1;
  }
  if (!oldest(m) && !cpu_state_pending()) return 0;
  return m.next_timer_ns > now ? m.next_timer_ns - now : 1;
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
  // Claims in flight on retiring threads, and deleters in flight on any thread, run inside
  // read-side critical sections.
  gp::wait_for_cookie(gp::get_state(), false);
}

void before_fork() noexcept { pthread_mutex_lock(&g_mon_mutex); }
void after_fork_parent() noexcept { pthread_mutex_unlock(&g_mon_mutex); }

void after_fork_child() noexcept {
  pthread_mutex_init(&g_mon_mutex, nullptr);
  // Threads that held a slot lock at fork time do not exist in the child.
  if (Krc* base = g_krcs.load(std::memory_order_acquire))
    for (int i = 0; i < nr_slots(); ++i) base[i].lock.unlock();
  g_progress_waiters.store(0, std::memory_order_relaxed);
  reclaim_after_fork_child();
  mag::after_fork_child();
}

void fill_stats(bulkrcu_stats* s) noexcept {
  const KvfreeCounters& c = g_counters;
  const auto ld = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  s->kv_freed_by_retirers = ld(c.helped);
  s->kv_freed_by_runtime = ld(c.monitor_freed);
  s->kv_fallback_synchronize = ld(c.fb_sync);
  s->kv_freed =
      s->kv_freed_by_retirers + s->kv_freed_by_runtime + s->kv_fallback_synchronize + cb::stats().head_frees;
  s->kv_retired = ld(c.collected) + ld(c.fallback_objects);
  s->kv_pending_objects = s->kv_retired > s->kv_freed ? s->kv_retired - s->kv_freed : 0;
  s->kv_pending_bytes = ld(c.pending_bytes);
  s->kv_blocks_in_use = ld(c.blocks);
  s->kv_grace_periods = ld(c.gps);
  s->kv_fallback_head = ld(c.fb_head);
  s->kv_fallback_inplace = ld(c.fb_inplace);
  s->kv_fallback_reserve = ld(c.fb_reserve);
  s->kv_nowait_refused = ld(c.nowait_refused);
  s->kv_cache_hits = ld(c.cache_hits);
  s->kv_cache_misses = ld(c.cache_misses);
  s->kv_lockless_pages = ld(c.lockless);
  s->kv_budget_hits = ld(c.budget_hits);
  s->kv_budget_bytes = config().max_pending_bytes;
  s->kv_monitor_passes = ld(c.passes);
  s->kv_cursors_stolen = ld(c.cursors_stolen);
  s->kv_retirer_passes = ld(c.drives);
  s->kv_helps_dry = ld(c.helps_dry);
  s->kv_throttles = ld(c.throttles);
  s->kv_pending_unsized = ld(c.pending_objs);
  s->kv_budget_objects = config().max_pending_objects;
}

}  // namespace bulkrcu::detail::kvfree
