// bulkrcu/src/gp/gp.cpp: reader slots, the grace-period sequence, synchronize.
//
// Reader/writer protocol (the liburcu "memb" scheme with lazy, lock-free registration).
//
//   reader (outermost lock):  ctr = gp_ctr;  A: compiler barrier
//   reader (outermost unlock): B: compiler barrier;  ctr = phase (nesting 0)
//
//   grace period (under gp_mutex):
//     seq++ (odd; already odd if an attempt was abandoned: taken over as it is)
//     M1: membarrier(PRIVATE_EXPEDITED)    -- matches A and B on every running thread
//     if no reader shows nesting > 0: done (skip to M2)
//     W1: wait until no reader is active with a phase other than gp_ctr's
//     F1: full fence;  gp_ctr ^= PHASE;  F2: full fence
//     W2: wait until no reader is active with a phase other than gp_ctr's (the old one)
//     M2: membarrier(PRIVATE_EXPEDITED)    -- matches B: every section we waited for has ended
//         (on x86-64 a full fence on this thread only: see "M2 on x86-64" below)
//     seq++ (even)
//
// What M1 prevents: a writer unpublishes P, then a reader whose ctr store still sits in its
// store buffer loads P; without a CPU fence the scan could miss the reader and the writer free
// P. membarrier runs a full barrier on every CPU running one of our threads: either the
// reader's ctr store came before that barrier (the scan sees it) or its loads of P came after
// it (they see the unpublish). A thread that is not running has no store buffer to drain.
//
// M2 on x86-64. What M2 must give: every access of a section the grace period waited for (or
// found ended) is performed before anything that follows the grace period (the frees that
// poll_state's acquire lets run). The grace period learns that a section ended only by loading
// the reader's ctr store at its outermost unlock (or its next lock, which follows that unlock
// in program order); B keeps the compiler from moving the section's accesses after that store.
// x86-64 is TSO: a store becomes visible only after every earlier load of its thread has been
// performed (loads are not reordered with later stores) and after every earlier store (stores
// are not reordered with each other). So once the scan has read the unlock's value, every
// access of the section before it has been performed; the scan's loads precede seq's release
// store here (a full fence keeps that order for the compiler too), and seq's release store
// happens-before every free that poll_state allows. A reader whose section began after M1 is
// covered by M1 as before (it cannot see the unpublished pointer), M2 plays no part there.
// So on x86-64 M2 needs no barrier on the readers' CPUs, and is a full fence on this thread:
// one membarrier system call a grace period instead of two. That halves a grace period's
// cost where the IPI is expensive: on this project's 2-vCPU virtual machine a membarrier with
// a thread running on the other CPU takes 9.5 us (139 ns with that CPU idle), and synchronize
// with one spinning reader went from a 31 us median to 16 us. Elsewhere (weaker ordering: a
// load of the section may still be pending after its unlock store is visible) M2 stays a
// membarrier. Without membarrier M1 and M2 are full fences anyway.
//
// Why two phases (W1, W2): a reader may load gp_ctr, stall, and store it only after a scan;
// its store carries a phase from before the flip. W1 waits for such readers left over from the
// previous grace period, W2 for those of this one. A reader that loaded the new phase after the
// flip began after M1 and need not be waited for.
//
// W1 and W2 may sleep until a reader's outermost unlock wakes them (wake on unlock, see
// wait_for_readers: flag, membarrier, scan against the reader's ctr store, fence C, flag load).
// The wake only ends a sleep early; every return from it rescans, so it carries no ordering
// the protocol above relies on.
//
// Without membarrier (kernel without it, BULKRCU_NO_MEMBARRIER=1) readers run fences A and B
// as full fences (bulkrcu__reader_fence = 1) and M1/M2 are full fences.
//
// Memory ordering of the no-reader shortcut (any grace period while no reader slot is owned:
// synchronize's, the runtime thread's, try_grace_period_now's, try_no_reader_grace_period's;
// finish_if_no_reader_locked). A thread
// can be inside a section only while it owns a slot: it claims one (a seq_cst CAS of owner
// 0 -> 1, a seq_cst increment of g_owned, then F3: a full fence) before its first section's
// loads, and gives it back (owner 0, then a release decrement of g_owned) only after its last
// section has ended. synchronize runs F4 (a full fence, get_state's) after the caller's updates
// and then loads g_owned (acquire). If it reads 0:
//   - a thread that claims a slot later: F4 precedes its F3 in the fences' single total order
//     (otherwise the load after F4 would see its increment, or a later value of g_owned in
//     which that increment is still counted), so every load of its sections sees the caller's
//     updates; it cannot hold a pre-existing reference.
//   - a thread whose increment the load does see (in the modification order up to the value
//     read): 0 means its decrement is there too (each decrement follows its thread's
//     increment), so it gave its slot back; every change of g_owned is a read-modify-write,
//     so the acquire load synchronizes with that release decrement, and its sections
//     happen-before synchronize returns.
// No other thread can be inside a section that began before the call, so returning at once is
// a full grace period for the caller. To satisfy other threads' cookies too, the shortcut runs
// under gp_mutex (trylock) as a grace period without membarrier: seq odd, a full fence, the
// load of g_owned, seq even. A cookie taken before the odd store was preceded by its taker's fence,
// which therefore precedes the shortcut's fence: the same argument covers that taker's updates. No membarrier
// is needed: F3 is a real fence in the slow path of a thread's first read_lock, never in the read-side fast
// path.
//
// seq never moves backwards, so get_state() is monotonic: a cookie taken later is never
// satisfied before one taken earlier (the torture checks every deleter against that). An
// attempt that cannot finish (the shortcut or try_grace_period_now finding a reader, a fork
// child whose driver is gone) leaves seq odd, and the next grace period takes it over: its
// own M1 (or F4) comes after the abandoned attempt's fence, and that fence after the fence of
// every taker of a cookie it satisfies (the taker read seq before the odd store), so the
// argument above holds for it. (Going back to the even value made a cookie taken during the
// attempt, s + 4, outlive one taken after it, s + 2, by a grace period.)
#include "gp/gp.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <climits>

#include "base/trace.h"
#include "bulkrcu/rcu.h"

// ---- the reader fast path's shared state (declared in include/bulkrcu/rcu.h) -------------
extern "C" {
__thread bulkrcu__reader* bulkrcu__tls_reader __attribute__((tls_model("initial-exec"))) = nullptr;
unsigned long bulkrcu__gp_ctr = 1;  // phase 0, nesting 1: what an outermost lock stores
}

namespace bulkrcu::detail::gp {
namespace {

constexpr unsigned long kNestMask = BULKRCU__NEST_MASK;
constexpr unsigned long kPhase = kNestMask + 1;

// ---- reader slots ------------------------------------------------------------------------
// A slot is owned by one thread from its first read_lock until it exits (owner == 1), then
// free (owner == 0) for any thread to claim. Slots are never unmapped, so a grace period may
// read any slot at any time without synchronizing with claims and releases.
// Invariant: owner == 0  =>  (pub.ctr & kNestMask) == 0.
struct alignas(kCacheLine) ReaderSlot {
  bulkrcu__reader pub;                  // owner: this slot's thread; read by grace periods
  ThreadWords words;                    // thread_words(): an upper layer's per-thread words
  std::atomic<std::uint32_t> owner{0};  // CAS 0->1 by a claiming thread; release-store 0 at exit
  int tid = 0;                          // written by the owner before it is published in TLS
  unsigned long stall_warned_seq = 0;   // written under gp_mutex only
};
static_assert(offsetof(ReaderSlot, pub) == 0 && offsetof(ReaderSlot, words) == kThreadWordOffset);

#ifdef BULKRCU_TESTING
constexpr int kSlotsPerChunk = 2;  // tests reach chunk growth with a handful of threads
#else
constexpr int kSlotsPerChunk = 63;  // 4 KiB with the header line
#endif

struct alignas(kCacheLine) Chunk {
  Chunk* next = nullptr;  // immutable once published
  ReaderSlot slots[kSlotsPerChunk];
};

std::atomic<Chunk*> g_chunks{nullptr};  // push-only list (CAS), newest first
std::atomic<std::uint64_t> g_nr_chunks{0};
// Slots owned now: +1 after every claim's CAS (before its F3), -1 after every release's owner
// store (see the no-reader shortcut's memory ordering). One load answers "is any slot owned?"
// instead of a scan of every slot's line.
alignas(kCacheLine) std::atomic<std::uint64_t> g_owned{0};
pthread_key_t g_key;
std::atomic<int> g_key_state{0};  // 0: none, 1: being created, 2: ready

template <class F>
void for_each_slot(F&& f) {
  for (Chunk* c = g_chunks.load(std::memory_order_acquire); c; c = c->next)
    for (ReaderSlot& s : c->slots) f(s);
}

BULKRCU_ALWAYS_INLINE unsigned long load_ctr(const ReaderSlot& s) {
  // Relaxed: ordered by M1/M2 (membarrier) or, without it, by the readers' full fences and
  // F1/F2. Under TSan the reader stores are seq_cst, so acquire gives TSan the edge.
  return __atomic_load_n(&s.pub.ctr, BULKRCU_TSAN ? __ATOMIC_ACQUIRE : __ATOMIC_RELAXED);
}

void on_thread_exit(void* p);

void ensure_key() {
  if (BULKRCU_LIKELY(g_key_state.load(std::memory_order_acquire) == 2)) return;
  int expected = 0;
  if (g_key_state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
    if (pthread_key_create(&g_key, on_thread_exit) != 0) fatal("pthread_key_create failed for reader slots");
    g_key_state.store(2, std::memory_order_release);
    return;
  }
  while (g_key_state.load(std::memory_order_acquire) != 2) sched_yield();
}

ReaderSlot* claim_slot() {
  for (Chunk* c = g_chunks.load(std::memory_order_acquire); c; c = c->next) {
    for (ReaderSlot& s : c->slots) {
      std::uint32_t expected = 0;
      if (s.owner.load(std::memory_order_relaxed) == 0 &&
          s.owner.compare_exchange_strong(expected, 1, std::memory_order_seq_cst,
                                          std::memory_order_relaxed)) {
        g_owned.fetch_add(1, std::memory_order_seq_cst);
        std::atomic_thread_fence(std::memory_order_seq_cst);  // F3 (the no-reader shortcut)
        return &s;
      }
    }
  }
  // Every slot is taken: map a new chunk (mmap is async-signal-safe, malloc is not).
  void* mem = mmap(nullptr, sizeof(Chunk), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) fatal("cannot map a chunk of reader slots (mmap failed)");
  Chunk* c = new (mem) Chunk();
  c->slots[0].owner.store(1, std::memory_order_relaxed);
  g_owned.fetch_add(1, std::memory_order_seq_cst);
  Chunk* head = g_chunks.load(std::memory_order_relaxed);
  do {
    c->next = head;
  } while (!g_chunks.compare_exchange_weak(head, c, std::memory_order_seq_cst, std::memory_order_relaxed));
  std::atomic_thread_fence(std::memory_order_seq_cst);  // F3: the owner store is visible with c
  g_nr_chunks.fetch_add(1, std::memory_order_relaxed);
  return &c->slots[0];
}

void release_slot(ReaderSlot* s) {
  s->owner.store(0, std::memory_order_release);
  g_owned.fetch_sub(1, std::memory_order_release);
}

// pthread key destructor: runs at thread exit, before the thread's TLS is freed.
void on_thread_exit(void* p) {
  // A signal handler that ran a reader after the slot is released would register a new slot
  // that nothing releases any more (key destructors may have finished): the dying thread takes
  // no more signals (thread-directed ones are lost with it, process-directed ones go elsewhere).
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
  auto* s = static_cast<ReaderSlot*>(p);
  unsigned long ctr = load_ctr(*s);
  if (ctr & kNestMask) {
    log_warning(
        "bulkrcu: thread %d exited inside a read-side critical section (depth %lu); "
        "ending the section so that grace periods can complete\n",
        s->tid, ctr & kNestMask);
  }
  // Fence B's role: the thread's reads are over before the slot reads as quiescent.
  __atomic_store_n(&s->pub.ctr, 0UL, __ATOMIC_SEQ_CST);
  if (__atomic_load_n(&s->pub.wake, __ATOMIC_SEQ_CST)) reader_wake(&s->pub);  // as an unlock would
  bulkrcu__tls_reader = nullptr;
  release_slot(s);
}

}  // namespace

bool no_reader_slot_owned() noexcept { return g_owned.load(std::memory_order_acquire) == 0; }

void for_each_thread_words(void (*f)(ThreadWords& words, void* arg), void* arg) noexcept {
  for_each_slot([&](ReaderSlot& s) { f(s.words, arg); });
}

namespace {
// ---- the grace-period engine -------------------------------------------------------------
struct Engine {
  alignas(kCacheLine) std::atomic<unsigned long> seq{0};
  std::atomic<std::uint32_t> driving{0};  // run_grace_period is between its two seq stores
  alignas(kCacheLine) std::atomic<unsigned long> requested{0};
  alignas(kCacheLine) std::atomic<std::uint32_t> expedite{0};  // expedited callers waiting
  // Bumped by every reader that ends a section a grace period asked to be woken for; the
  // waiter sleeps on it (futex) after setting the blocking readers' wake flags.
  alignas(kCacheLine) std::atomic<std::uint32_t> wake_seq{0};
  std::atomic<std::uint64_t> nr_wait_sleeps{0}, nr_reader_wakes{0}, nr_wait_timeouts{0};
  pthread_mutex_t gp_mutex = PTHREAD_MUTEX_INITIALIZER;  // serializes grace periods
  std::atomic<std::uint64_t> nr_gp{0}, nr_exp_gp{0}, nr_sync{0}, nr_stall{0};
  std::atomic<std::uint64_t> nr_gp_no_reader{0};  // of nr_gp: completed by the no-reader shortcut
};
Engine g;

void fork_prepare() { before_fork(); }
void fork_parent() { after_fork_parent(); }
void fork_child() { after_fork_child(); }

__attribute__((constructor(102))) void gp_init() {
  ensure_key();
  pthread_atfork(fork_prepare, fork_parent, fork_child);
}

// M1 (and M2 where the hardware does not order loads before later stores): a full barrier on
// every CPU running a thread of this process.
void master_fence() { heavy_fence(); }

// M2: see "M2 on x86-64" at the top of this file.
void end_fence() {
#if defined(__x86_64__)
  std::atomic_thread_fence(std::memory_order_seq_cst);
#else
  master_fence();
#endif
}

bool ulong_ge(unsigned long a, unsigned long b) { return static_cast<long>(a - b) >= 0; }

void read_comm(int tid, char* buf, size_t len) {
  snprintf(buf, len, "?");
  char path[64];
  snprintf(path, sizeof path, "/proc/self/task/%d/comm", tid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t r = read(fd, buf, len - 1);
  close(fd);
  if (r <= 0) return;
  buf[r] = '\0';
  if (char* nl = strchr(buf, '\n')) *nl = '\0';
}

void report_stalls(unsigned long gpc, unsigned long seq, std::uint64_t waited_ns) {
  for_each_slot([&](ReaderSlot& s) {
    unsigned long ctr = load_ctr(s);
    if (!(ctr & kNestMask) || !((ctr ^ gpc) & kPhase) || s.stall_warned_seq == seq) return;
    s.stall_warned_seq = seq;
    char comm[32];
    read_comm(s.tid, comm, sizeof comm);
    log_warning(
        "bulkrcu: grace-period stall: thread %d (%s) has been inside one read-side critical "
        "section for at least %.1f s; the grace period keeps waiting\n",
        s.tid, comm, static_cast<double>(waited_ns) / 1e9);
    g.nr_stall.fetch_add(1, std::memory_order_relaxed);
    BULKRCU_TRACE(stall_warning, s.tid, waited_ns);
  });
}

bool any_blocking(unsigned long gpc) {
  bool found = false;
  for_each_slot([&](const ReaderSlot& s) {
    unsigned long ctr = load_ctr(s);
    if ((ctr & kNestMask) && ((ctr ^ gpc) & kPhase)) found = true;
  });
  return found;
}

bool any_active() {
  bool found = false;
  for_each_slot([&](const ReaderSlot& s) {
    if (load_ctr(s) & kNestMask) found = true;
  });
  return found;
}

// W1 / W2. Spins briefly (readers usually leave within microseconds), then asks the readers
// it waits for to wake it and sleeps until one does ("wake on unlock", liburcu's scheme with a
// per-reader flag): it sets `wake` in each blocking reader's slot, runs membarrier, scans
// again, and sleeps on wake_seq, which a flagged reader's outermost unlock bumps before a futex
// wake (bulkrcu__reader_wake). Why not yield or sleep for a while: with readers oversubscribing
// the CPUs, the reader it waits for is usually preempted inside its section and needs this CPU;
// a yield under EEVDF then waits for every other task's slice, and a timed sleep oversleeps the
// section's end by the timer's period (see docs/ARCHITECTURE.md for what was measured).
//
// Ordering: the flag store, M (membarrier), the scan; the reader's ctr store, fence C (a
// compiler barrier), its flag load. Either the reader's store precedes the barrier membarrier
// runs on its CPU (the scan sees the section ended), or its flag load follows it (it sees the
// flag and wakes us). A reader that is not running has no store buffer to drain. Without
// membarrier the pair is not ordered, so a wake may be lost: the sleep is bounded (kWakeTimeoutNs)
// and every return rescans, so a lost wake costs time, never safety.
// The clock is read only once the spinning is over (*start_ns == 0 until then): a grace period
// that finds its readers gone at once never pays for it.
// The sleep's bound. With membarrier a wake is never lost, so it only paces the stall clock:
// a waiter that woke on a timer while the reader it waits for is still preempted would take a
// CPU from the readers for nothing (4 spinning readers on 2 CPUs: with a 1 ms bound, 95% of the
// sleeps timed out). Without membarrier: 1 ms.
constexpr std::uint64_t kWakeTimeoutNs = 1000000000;  // 1 s
constexpr std::uint64_t kWakeTimeoutFencesNs = 1000000;

// Sets the wake flag of every reader blocking this phase. Returns the number of flags it set
// (readers already flagged are not counted); *blocking = whether any reader blocks.
int flag_blocking(unsigned long gpc, bool* blocking) {
  int n = 0;
  *blocking = false;
  for_each_slot([&](ReaderSlot& s) {
    unsigned long ctr = load_ctr(s);
    if ((ctr & kNestMask) && ((ctr ^ gpc) & kPhase)) {
      *blocking = true;
      if (!__atomic_load_n(&s.pub.wake, __ATOMIC_RELAXED)) {
        __atomic_store_n(&s.pub.wake, 1U, __ATOMIC_RELAXED);
        ++n;
      }
    }
  });
  return n;
}

// Clears the flags left on readers that did not need to wake us (their section is still open,
// or another reader's wake ended the wait first), so that they pay no wake at their unlock.
void clear_flags() {
  for_each_slot([&](ReaderSlot& s) {
    if (__atomic_load_n(&s.pub.wake, __ATOMIC_RELAXED)) __atomic_store_n(&s.pub.wake, 0U, __ATOMIC_RELAXED);
  });
}

void wait_for_readers(bool expedited, std::uint64_t* start_ns) {
  const unsigned long gpc = __atomic_load_n(&bulkrcu__gp_ctr, __ATOMIC_RELAXED);
  // The spin is short (a pause is ~30 ns here: 64 rounds of 2 pauses and a scan, ~5 us, about
  // liburcu's 100 scans): with the CPUs oversubscribed, the reader it waits for is preempted
  // and runs only once this thread sleeps, so every microsecond spun is added to the wait (64
  // rounds of 32 pauses, 62 us, showed as a plateau in the latency CDF with 4 readers).
  // The runtime thread, whose slice is short (base.h), spins half as long unless an expedited
  // caller waits. An expedited application caller spins no longer than a normal one: a longer
  // spin (256 rounds) only moved its p99 with 2 spinning readers from ~1.3 us to ~13 us.
  const bool fast = expedited || g.expedite.load(std::memory_order_relaxed) != 0;
  const unsigned spins = latency_sensitive() && !fast ? 32 : 64;
  bool flagged = false, flagged_since_fence = false;
  for (unsigned iter = 0;; ++iter) {
    if (!any_blocking(gpc)) break;
    if (iter < spins) {
      cpu_relax();
      cpu_relax();
      continue;
    }
    const std::uint64_t now = now_ns();
    if (*start_ns == 0) *start_ns = now;
    std::uint64_t waited = now - *start_ns;
    if (waited >= stall_timeout_ns()) report_stalls(gpc, g.seq.load(std::memory_order_relaxed), waited);
    const std::uint32_t snap = g.wake_seq.load(std::memory_order_acquire);
    bool blocking;
    if (flag_blocking(gpc, &blocking) > 0 || flagged_since_fence) {
      flagged = true;
      master_fence();  // M: pairs with fence C of the flagged readers' unlocks
      flagged_since_fence = false;
    }
    // Every reader that blocks now must have been flagged before the fence: one whose ctr store
    // landed after the scan above (it loaded the old phase before the flip) is flagged now and
    // fenced on the next round instead of being slept on.
    if (flag_blocking(gpc, &blocking) > 0) {
      flagged_since_fence = true;
      continue;
    }
    if (!blocking) break;
    g.nr_wait_sleeps.fetch_add(1, std::memory_order_relaxed);
    const std::uint64_t bound =
        __atomic_load_n(&bulkrcu__reader_fence, __ATOMIC_RELAXED) ? kWakeTimeoutFencesNs : kWakeTimeoutNs;
    if (subtle::futex_wait(&g.wake_seq, snap, bound) != 0 && errno == ETIMEDOUT)
      g.nr_wait_timeouts.fetch_add(1, std::memory_order_relaxed);
  }
  if (flagged) clear_flags();
}

// Under gp_mutex: seq odd (in progress; no one acts on odd). Returns the odd value; an odd
// seq left by an abandoned attempt is taken over as it is (see the top of this file).
unsigned long begin_seq() noexcept {
  unsigned long s = g.seq.load(std::memory_order_relaxed);
  if (!(s & 1)) g.seq.store(++s, std::memory_order_relaxed);
  return s;
}

// gp_mutex held, seq odd (begin_seq): the no-reader shortcut (see its memory ordering at the
// top of this file). A full fence (F4), then the count of owned slots: if none is owned, no
// section that began before the fence can still be running, and the grace period s + 1 is
// complete without membarrier; seq becomes s + 2. Otherwise seq stays odd and the caller runs
// the full grace period (or abandons it). Cost: one fence and one load.
bool finish_if_no_reader_locked(unsigned long s) noexcept {
  std::atomic_thread_fence(std::memory_order_seq_cst);  // F4 after the odd store
  if (!no_reader_slot_owned()) return false;
  g.seq.store(s + 2, std::memory_order_release);  // pairs with poll_state's acquire
  g.nr_gp.fetch_add(1, std::memory_order_relaxed);
  g.nr_gp_no_reader.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void run_grace_period(bool expedited) {
  std::uint64_t start = 0;                  // set by wait_for_readers once it stops spinning
  const unsigned long s = begin_seq() - 1;  // completes at s + 2
  if (finish_if_no_reader_locked(s)) {      // not counted as expedited: nothing was expedited
    BULKRCU_TRACE(gp_end, s + 2, expedited);
    return;
  }
  g.driving.store(1, std::memory_order_relaxed);
  BULKRCU_TRACE(gp_start, s + 1, expedited);
  master_fence();  // M1
  if (any_active()) {
    wait_for_readers(expedited, &start);                  // W1
    std::atomic_thread_fence(std::memory_order_seq_cst);  // F1
    __atomic_store_n(&bulkrcu__gp_ctr, __atomic_load_n(&bulkrcu__gp_ctr, __ATOMIC_RELAXED) ^ kPhase,
                     __ATOMIC_RELAXED);
    std::atomic_thread_fence(std::memory_order_seq_cst);  // F2
    wait_for_readers(expedited, &start);                  // W2
  }
  end_fence();                                    // M2
  g.seq.store(s + 2, std::memory_order_release);  // pairs with poll_state's acquire
  g.driving.store(0, std::memory_order_relaxed);
  g.nr_gp.fetch_add(1, std::memory_order_relaxed);
  if (expedited) g.nr_exp_gp.fetch_add(1, std::memory_order_relaxed);
  BULKRCU_TRACE(gp_end, s + 2, expedited);
}

}  // namespace

// ---- cookies -----------------------------------------------------------------------------
unsigned long get_state() noexcept {
  // Orders the caller's earlier updates before the sequence read (the kernel's smp_mb() in
  // get_state_synchronize_rcu); needed when M1 is a plain fence.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return (g.seq.load(std::memory_order_relaxed) + 3) & ~1UL;
}

bool poll_state(unsigned long cookie) noexcept {
#if defined(BULKRCU_BUSTED) && defined(BULKRCU_TESTING)  // the torture's self-test (tests/torture.cmake):
  return true;  // every cookie has elapsed: synchronize, callbacks, kvfree's batches wait for no reader
#elif defined(BULKRCU_BUSTED)
#error "BULKRCU_BUSTED is for the torture's self-test build (with BULKRCU_TESTING) only"
#endif
  return ulong_ge(g.seq.load(std::memory_order_acquire), cookie);
}

unsigned long current_seq() noexcept { return g.seq.load(std::memory_order_acquire); }
bool driving() noexcept { return g.driving.load(std::memory_order_acquire) != 0; }

bool try_no_reader_grace_period() noexcept {
  if (!no_reader_slot_owned() || pthread_mutex_trylock(&g.gp_mutex) != 0) return false;
  const bool ok = finish_if_no_reader_locked(begin_seq() - 1);  // else abandoned: seq stays odd
  pthread_mutex_unlock(&g.gp_mutex);
  return ok;
}

bool try_grace_period_now() noexcept {
  if (pthread_mutex_trylock(&g.gp_mutex) != 0) return false;
  const unsigned long s = begin_seq() - 1;
  if (finish_if_no_reader_locked(s)) {
    pthread_mutex_unlock(&g.gp_mutex);
    return true;
  }
  master_fence();  // M1
  // No reader inside a section at some instant after M1 means every section that began before
  // M1 has ended (the same test as run_grace_period's shortcut, taken a little later). Short
  // sections (a retiring thread's help, a spinning reader between sections) pass it within a
  // few checks.
  bool ok = false;
  for (int i = 0; i < 16 && !(ok = !any_active()); ++i)
    for (int j = 0; j < 32; ++j) cpu_relax();
  if (ok) {
    end_fence();                                    // M2
    g.seq.store(s + 2, std::memory_order_release);  // pairs with poll_state's acquire
    g.nr_gp.fetch_add(1, std::memory_order_relaxed);
  }  // else abandoned: seq stays odd for the next grace period to take over
  pthread_mutex_unlock(&g.gp_mutex);
  return ok;
}

void wait_for_cookie(unsigned long cookie, bool expedited) noexcept {
  if (poll_state(cookie)) return;
  NoCancel no_cancel;  // nanosleep is a cancellation point; gp_mutex must never stay locked
  if (expedited) g.expedite.fetch_add(1, std::memory_order_relaxed);
  pthread_mutex_lock(&g.gp_mutex);
  while (!poll_state(cookie)) run_grace_period(expedited);
  pthread_mutex_unlock(&g.gp_mutex);
  if (expedited) g.expedite.fetch_sub(1, std::memory_order_relaxed);
}

void synchronize(bool expedited) noexcept {
  const unsigned long cookie = get_state();  // F4 of the no-reader shortcut
  // The shortcut also completes the sequence (seq odd, F4 again, g_owned, even), so that cookies
  // taken before it are satisfied as after any synchronize; when gp_mutex is busy, the full path.
  if (no_reader_slot_owned() && pthread_mutex_trylock(&g.gp_mutex) == 0) {
    const bool none = finish_if_no_reader_locked(begin_seq() - 1);
    // else abandoned: seq stays odd (as in try_grace_period_now)
    pthread_mutex_unlock(&g.gp_mutex);
    if (none) return;
  }
  wait_for_cookie(cookie, expedited);
}

void request(unsigned long cookie) noexcept {
  unsigned long cur = g.requested.load(std::memory_order_relaxed);
  while (!ulong_ge(cur, cookie) &&
         !g.requested.compare_exchange_weak(cur, cookie, std::memory_order_relaxed)) {
  }
  doorbell_ring_if_idle();
}

unsigned long requested_cookie() noexcept { return g.requested.load(std::memory_order_relaxed); }

// ---- readers -----------------------------------------------------------------------------
unsigned long reader_nesting() noexcept {
  bulkrcu__reader* r = bulkrcu__tls_reader;
  return r ? (__atomic_load_n(&r->ctr, __ATOMIC_RELAXED) & kNestMask) : 0;
}

void assert_not_in_reader(const char* what) noexcept {
  if (BULKRCU_UNLIKELY(reader_nesting() != 0)) {
    char msg[256];
    snprintf(msg, sizeof msg,
             "%s called inside a read-side critical section: it would wait for the section that "
             "called it (call it after bulkrcu_read_unlock)",
             what);
    fatal(msg);
  }
}

// ---- fork --------------------------------------------------------------------------------
// fork() does not wait for gp_mutex: its holder may be waiting for a reader that itself waits
// for the fork to return. The child instead abandons a grace period that was in flight: seq
// stays odd and the child's next grace period takes it over with its own M1 (no cookie is
// satisfied before that; seq never moves backwards), and gp_ctr's phase, whichever it is, is
// one a fresh grace period handles (W1 waits for sections of the other phase).
void before_fork() noexcept {}
void after_fork_parent() noexcept {}
void after_fork_child() noexcept {
  pthread_mutex_init(&g.gp_mutex, nullptr);
  g.driving.store(0, std::memory_order_relaxed);
  // Only the forking thread exists in the child: every other slot's owner is gone, and a
  // section it held open would stall every grace period.
  bulkrcu__reader* mine = bulkrcu__tls_reader;
  for_each_slot([&](ReaderSlot& s) {
    if (&s.pub == mine) return;
    __atomic_store_n(&s.pub.ctr, 0UL, __ATOMIC_RELAXED);
    __atomic_store_n(&s.pub.wake, 0U, __ATOMIC_RELAXED);
    s.owner.store(0, std::memory_order_relaxed);
  });
  std::uint64_t owned = 0;
  for_each_slot([&](ReaderSlot& s) { owned += s.owner.load(std::memory_order_relaxed) != 0; });
  g_owned.store(owned, std::memory_order_relaxed);
  g.expedite.store(0, std::memory_order_relaxed);
}

Stats stats() noexcept {
  Stats st{};
  st.grace_periods = g.nr_gp.load(std::memory_order_relaxed);
  st.expedited_grace_periods = g.nr_exp_gp.load(std::memory_order_relaxed);
  st.synchronize_calls = g.nr_sync.load(std::memory_order_relaxed);
  st.stall_warnings = g.nr_stall.load(std::memory_order_relaxed);
  st.no_reader_grace_periods = g.nr_gp_no_reader.load(std::memory_order_relaxed);
  st.reader_slots = g_nr_chunks.load(std::memory_order_relaxed) * kSlotsPerChunk;
  for_each_slot([&](const ReaderSlot& s) {
    if (s.owner.load(std::memory_order_relaxed)) ++st.readers_registered;
  });
  return st;
}

void count_synchronize() noexcept { g.nr_sync.fetch_add(1, std::memory_order_relaxed); }

void reader_wake(bulkrcu__reader* r) noexcept {
  __atomic_store_n(&r->wake, 0U, __ATOMIC_RELAXED);
  g.nr_reader_wakes.fetch_add(1, std::memory_order_relaxed);
  g.wake_seq.fetch_add(1, std::memory_order_release);
  subtle::futex_wake(&g.wake_seq, INT_MAX);
}

WaitStats wait_stats() noexcept {
  return {g.nr_wait_sleeps.load(std::memory_order_relaxed), g.nr_reader_wakes.load(std::memory_order_relaxed),
          g.nr_wait_timeouts.load(std::memory_order_relaxed)};
}

bulkrcu__reader* register_reader() noexcept {
  ensure_key();
  ReaderSlot* s = claim_slot();
  s->tid = this_tid();
  __atomic_store_n(&s->pub.ctr, 0UL, __ATOMIC_RELAXED);
  // A signal handler may have registered this thread while we claimed: keep its slot.
  bulkrcu__reader* expected = nullptr;
  if (!__atomic_compare_exchange_n(&bulkrcu__tls_reader, &expected, &s->pub, false, __ATOMIC_RELAXED,
                                   __ATOMIC_RELAXED)) {
    release_slot(s);
    return expected;
  }
  // glibc stores keys below PTHREAD_KEY_2NDLEVEL_SIZE (32) in the thread descriptor: no
  // allocation, nothing a signal handler can interrupt badly.
  pthread_setspecific(g_key, s);
  return &s->pub;
}

}  // namespace bulkrcu::detail::gp

// ---- C entry points owned by this layer ----------------------------------------------------
using namespace bulkrcu::detail;

extern "C" {

bulkrcu__reader* bulkrcu__reader_register(void) { return gp::register_reader(); }

void bulkrcu__reader_wake(bulkrcu__reader* r) { gp::reader_wake(r); }

void bulkrcu__unlock_unbalanced(void) {
  fatal("bulkrcu_read_unlock() called without a matching bulkrcu_read_lock()");
}

void(bulkrcu_read_lock)(void) { bulkrcu__read_lock_inline(); }
void(bulkrcu_read_unlock)(void) { bulkrcu__read_unlock_inline(); }
bool(bulkrcu_read_lock_held)(void) { return bulkrcu__read_lock_held_inline(); }

void bulkrcu_synchronize(void) {
  gp::assert_not_in_reader("bulkrcu_synchronize()");
  gp::count_synchronize();
  gp::synchronize(false);
}

void bulkrcu_synchronize_expedited(void) {
  gp::assert_not_in_reader("bulkrcu_synchronize_expedited()");
  gp::count_synchronize();
  gp::synchronize(true);
}

unsigned long bulkrcu_get_state(void) { return gp::get_state(); }

bool bulkrcu_poll_state(unsigned long cookie) { return gp::poll_state(cookie); }

void bulkrcu_cond_synchronize(unsigned long cookie) {
  gp::assert_not_in_reader("bulkrcu_cond_synchronize()");
  gp::wait_for_cookie(cookie, false);
}

}  // extern "C"
