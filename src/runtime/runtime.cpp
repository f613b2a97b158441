#include "runtime/runtime.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/user_code.h"
#include "bulkrcu/rcu.h"
#include "bulkrcu/stats.h"
#include "cache/cache.h"
#include "callback/callback.h"
#include "gp/gp.h"
#include "kvfree/kvfree.h"
#include "kvfree/reclaim.h"
#include "percpu/percpu.h"
#include "pool/pool.h"
#include "runtime/stats_dump.h"

namespace bulkrcu::detail::runtime {
namespace {

// Held by the runtime thread while it works (not while it sleeps or waits for a grace period);
// taken by fork's prepare handler so that a child never inherits half-updated runtime state.
pthread_mutex_t g_driver_mutex = PTHREAD_MUTEX_INITIALIZER;
thread_local bool t_is_runtime = false;

// Barrier bookkeeping. sweeps_started: incremented (seq_cst) before each sweep detaches;
// invoked_through: every segment of sweeps <= it has been invoked; progress: futex word bumped
// whenever invoked_through advances; barrier_target: the highest sweep a barrier waits for.
std::atomic<std::uint64_t> g_sweeps_started{0};
std::atomic<std::uint64_t> g_invoked_through{0};
std::atomic<std::uint64_t> g_barrier_target{0};
std::atomic<std::uint32_t> g_progress{0};
std::atomic<std::uint32_t> g_barrier_waiters{0};

// ---- invocation workers (see callback.h's lanes) --------------------------------------------
// One per lane at most, started on demand by the runtime thread when that lane's ready backlog
// outgrows two batches. Worker l runs lane l only, and only it does once it has started (the
// runtime thread runs the lanes that have no worker), so a lane still runs on one thread at a
// time. Worker l runs on lane l's CPUs (the CPUs c with c % lanes == l that the runtime thread
// may use; unpinned when there is none): callbacks run where they were queued, as the kernel
// runs them. Why (issue 11's flood, 1 writer and 1 spinning reader on 2 CPUs): a worker on the
// other CPU than the writer freed each object while the writer's malloc reused the allocator's
// lists on its own CPU, and ran 6-10x slower per callback than on the writer's CPU; sharing the
// writer's CPU, the worker keeps up and the writer pays for its own callbacks. Measured with the
// worker pinned by hand: peak pending 0.26-0.27 M in 3 of 3 runs, against 1.9-5.1 M unpinned and
// 9.9 M on the reader's CPU. Workers sleep on their lane's bell when it has nothing ready.
// pthread_create failing only leaves the lane to the runtime thread (nothing here allocates
// with new).
constexpr int kMaxWorkers = cb::kMaxLanes;
std::atomic<int> g_max_workers{kMaxWorkers};  // invocation threads = 1 (the runtime thread) + workers
pthread_t g_runtime_tid;
// Lanes that may have a worker: the first min(max workers, lanes).
int worker_limit() {
  const int m = g_max_workers.load(std::memory_order_relaxed);
  return m < cb::nr_lanes() ? m : cb::nr_lanes();
}
std::atomic<int> g_nr_workers{0};
std::atomic<unsigned> g_worker_lanes{0};  // bit l: lane l's worker has started
std::atomic<int> g_workers_running{0};    // workers inside a batch
struct alignas(kCacheLine) WorkerBell {
  std::atomic<std::uint32_t> bell{0};
  std::atomic<int> sleepers{0};
  std::atomic<std::uint64_t> batches{0};  // batches this lane's worker has run
};
WorkerBell g_bells[kMaxWorkers];
pthread_t g_worker_tid[kMaxWorkers];
void publish_progress(std::uint64_t through);
bool workers_busy() { return g_workers_running.load(std::memory_order_acquire) != 0; }
// The lanes the runtime thread runs: those without a worker.
unsigned runtime_lanes() { return ~g_worker_lanes.load(std::memory_order_acquire); }

// A worker that does not take its ready lane for kWorkerStallNs (its CPUs taken by threads of
// a higher priority or a real-time class, stopped by a debugger, or never woken) gives the lane
// to the runtime thread until it runs a batch again: no callback waits on one thread's
// scheduling. The lane still runs on one thread at a time (its busy flag).
constexpr std::uint64_t kWorkerStallNs = 10 * 1000 * 1000;
std::uint64_t g_stall_since[kMaxWorkers];    // the runtime thread's: when it saw the lane wait
std::uint64_t g_stall_batches[kMaxWorkers];  // ... and the worker's batch count then
std::atomic<std::uint64_t> g_worker_takeovers{0};
#ifdef BULKRCU_TESTING
std::atomic<bool> g_workers_paused{false};
#endif

// Runtime thread: the lanes in `ready` (ready, not busy) whose worker has not run a batch for
// kWorkerStallNs while they waited.
unsigned stalled_lanes(unsigned ready) {
  const unsigned workers = g_worker_lanes.load(std::memory_order_acquire);
  unsigned out = 0;
  const std::uint64_t now = now_ns();
  for (int l = 0; l < kMaxWorkers; ++l) {
    if (!(workers >> l & 1u)) continue;
    const std::uint64_t b = g_bells[l].batches.load(std::memory_order_relaxed);
    if (!(ready >> l & 1u) || g_stall_since[l] == 0 || b != g_stall_batches[l]) {
      g_stall_since[l] = (ready >> l & 1u) ? now : 0;
      g_stall_batches[l] = b;
      continue;
    }
    if (now - g_stall_since[l] >= kWorkerStallNs) out |= 1u << l;
  }
  return out;
}

// ---- pacing the callbacks' grace periods ----------------------------------------------------
// The runtime thread sweeps the CPUs' callback lists and starts their grace period at most once
// per kCbPaceNs, so that one grace period covers every callback queued meanwhile; sooner when
// a barrier or bulkrcu_call_bounded waits (g_barrier_waiters), or when more than kCbUnpaced
// callbacks wait for a grace period (queued, not yet ready). Why: a grace period costs a
// membarrier, whose IPIs interrupt every CPU running a thread of the process (9.5 us on this
// project's 2-vCPU machine when the other CPU is busy), and unpaced, a flood of 5 M calls a
// second started 6,850 grace periods a second: 36% of the process's CPU samples were those
// IPIs (sending and receiving), and the backlog was 6.7x liburcu's. A callback now waits at
// most kCbPaceNs more before its grace period starts. Ready callbacks that wait for invocation
// do not count: a grace period cannot shorten that wait.
#ifdef BULKRCU_TESTING
constexpr std::uint64_t kCbPaceNs = 100000;  // tests: both sides of the pace within a test
#else
constexpr std::uint64_t kCbPaceNs = 1000000;
#endif
constexpr std::uint64_t kCbUnpaced = 65536;
std::uint64_t g_cb_gp_ns = 0;  // the runtime thread's: when it last started a callback grace period

bool cb_pace_due(std::uint64_t now) {
  if (g_barrier_waiters.load(std::memory_order_seq_cst) != 0) return true;
  if (now >= g_cb_gp_ns + kCbPaceNs) return true;
  const std::uint64_t backlog = cb::backlog(), ready = cb::ready_backlog();
  return backlog > ready && backlog - ready > kCbUnpaced;
}

// The callbacks' state for the runtime thread: nothing queued or waiting; work now (a pace
// that is due, or a grace period that has elapsed: promote); or callbacks that wait for the pace.
enum class CbWork { kNone, kNow, kPaced };
CbWork cb_work(std::uint64_t now) {
  unsigned long c;
  const bool pend = cb::oldest_pending(&c);
  if (!pend && !cb::has_unswept()) return CbWork::kNone;
  if ((pend && gp::poll_state(c)) || cb_pace_due(now)) return CbWork::kNow;
  return CbWork::kPaced;
}

bool work_pending() {
  if (pool::refill_wanted()) return true;
  if (cb_work(now_ns()) == CbWork::kNow) return true;
  if (!gp::poll_state(gp::requested_cookie())) return true;
  if (kvfree::has_work()) return true;
  const unsigned ready = cb::ready_lanes();
  if (ready & runtime_lanes()) return true;
  if (ready & stalled_lanes(ready)) return true;
  // A barrier whose sweep has not run yet (what is swept is covered above, or by the
  // invocation workers, which publish their own progress).
  unsigned long c;
  return g_sweeps_started.load(std::memory_order_relaxed) <
             g_barrier_target.load(std::memory_order_relaxed) ||
         (g_invoked_through.load(std::memory_order_relaxed) <
              g_barrier_target.load(std::memory_order_relaxed) &&
          !cb::oldest_pending(&c) && cb::ready_backlog() == 0 && !workers_busy());
}

// Any bulkrcu thread (the runtime thread, invocation workers): invoked_through only grows.
void publish_progress(std::uint64_t through) {
  std::uint64_t cur = g_invoked_through.load(std::memory_order_relaxed);
  do {
    if (through <= cur) return;
  } while (!g_invoked_through.compare_exchange_weak(cur, through, std::memory_order_release,
                                                    std::memory_order_relaxed));
  g_progress.fetch_add(1, std::memory_order_release);
  if (g_barrier_waiters.load(std::memory_order_seq_cst)) subtle::futex_wake(&g_progress, INT32_MAX);
}

// Waits for a grace period without holding g_driver_mutex, so that fork() (whose prepare
// handler takes it) never waits for a reader. Only this thread touches the callback segments.
void wait_for_cookie_unlocked(unsigned long cookie, bool expedited) {
  pthread_mutex_unlock(&g_driver_mutex);
  gp::wait_for_cookie(cookie, expedited);
  pthread_mutex_lock(&g_driver_mutex);
}

void* worker_main(void* arg) {
  const int lane = static_cast<int>(reinterpret_cast<std::intptr_t>(arg));
  const unsigned mine = 1u << lane;
  WorkerBell& w = g_bells[lane];
  pthread_setname_np(pthread_self(), "bulkrcu-cb");
  for (;;) {
    const std::uint32_t bell = w.bell.load(std::memory_order_acquire);
    g_workers_running.fetch_add(1, std::memory_order_seq_cst);
    std::uint64_t through;
    std::size_t ran = 0;
#ifdef BULKRCU_TESTING
    if (g_workers_paused.load(std::memory_order_relaxed)) {
      g_workers_running.fetch_sub(1, std::memory_order_seq_cst);
      subtle::futex_wait(&w.bell, bell, 1000 * 1000);  // as if never scheduled
      continue;
    }
#endif
    ran = cb::invoke_batch(cb::batch_limit(), &through, mine);
    g_workers_running.fetch_sub(1, std::memory_order_seq_cst);
    publish_progress(through);
    if (ran) {
      w.batches.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    doorbell_ring_if_idle();  // the runtime thread may wait for this lane to be released
    w.sleepers.fetch_add(1, std::memory_order_seq_cst);
    if (!(cb::ready_lanes() & mine)) subtle::futex_wait(&w.bell, bell, 0);
    w.sleepers.fetch_sub(1, std::memory_order_relaxed);
  }
  return nullptr;
}

// Starts one of bulkrcu's own threads: detached, a 1 MiB stack, and no process signals (they
// belong to the application's threads). Returns pthread_create's result.
int spawn_thread(pthread_t* tid, void* (*fn)(void*), void* arg = nullptr, const cpu_set_t* cpus = nullptr) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  if (cpus) pthread_attr_setaffinity_np(&attr, sizeof *cpus, cpus);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 1 << 20);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  const int rc = pthread_create(tid, &attr, fn, arg);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  pthread_attr_destroy(&attr);
  return rc;
}

// Lane l's CPUs that this thread may run on; false when there is none.
bool lane_cpus(int lane, cpu_set_t* set) {
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return false;
  CPU_ZERO(set);
  const int lanes = cb::nr_lanes();
  for (int c = lane; c < CPU_SETSIZE; c += lanes)
    if (CPU_ISSET(c, &allowed)) CPU_SET(c, set);
  return CPU_COUNT(set) != 0;
}

// Runtime thread, or pin_invocation_thread under the driver mutex.
bool start_worker(int lane) {
  if (g_worker_lanes.load(std::memory_order_relaxed) >> lane & 1u) return true;
  cpu_set_t cpus;
  const bool pin = lane_cpus(lane, &cpus);
  if (spawn_thread(&g_worker_tid[lane], worker_main,
                   reinterpret_cast<void*>(static_cast<std::intptr_t>(lane)), pin ? &cpus : nullptr) != 0)
    return false;  // the runtime thread still runs this lane
  g_nr_workers.fetch_add(1, std::memory_order_release);
  g_worker_lanes.fetch_or(1u << lane, std::memory_order_release);
  return true;
}

// Runtime thread: starts a lane's worker when its ready callbacks outgrow two batches, and rings
// the workers whose lanes have ready callbacks.
void wake_workers() {
  const unsigned ready = cb::ready_lanes();
  if (!ready) return;
  for (int l = 0; l < worker_limit(); ++l) {
    if (!(ready >> l & 1u)) continue;
    if (!(g_worker_lanes.load(std::memory_order_relaxed) >> l & 1u)) {
      if (cb::ready_backlog(l) <= 2 * cb::batch_limit() || !start_worker(l)) continue;
    }
    WorkerBell& w = g_bells[l];
    w.bell.fetch_add(1, std::memory_order_seq_cst);
    if (w.sleepers.load(std::memory_order_seq_cst)) subtle::futex_wake(&w.bell, INT32_MAX);
  }
}

void one_pass() {
  pool::refill_step();  // first: a CPU whose list ran dry is waiting for pages
  const bool cb_due = cb_pace_due(now_ns());
  if ((cb::has_unswept() && cb_due) ||
      g_sweeps_started.load(std::memory_order_relaxed) < g_barrier_target.load(std::memory_order_acquire)) {
    g_sweeps_started.fetch_add(1, std::memory_order_seq_cst);
    cb::sweep();
  }
  if (kvfree::has_work()) kvfree::monitor_pass();
  // User deleters (and a kvfree barrier's completion) with no lock held: a deleter may take
  // any lock, even one a thread calling fork() holds.
  if (kvfree::deleters_pending()) {
    pthread_mutex_unlock(&g_driver_mutex);
    kvfree::run_deleters();
    pthread_mutex_lock(&g_driver_mutex);
  }
  cb::promote_ready();
  wake_workers();
  // With ready callbacks no other thread runs, run a batch before waiting for the next grace
  // period; otherwise wait (expedited when the backlog is high) while the workers invoke.
  unsigned long cookie;
  const bool expedite = cb::backlog_high();
  if (!(cb::ready_lanes() & runtime_lanes()) && cb::oldest_pending(&cookie) && !gp::poll_state(cookie) &&
      cb_due) {
    g_cb_gp_ns = now_ns();
    wait_for_cookie_unlocked(cookie, expedite);
  }
  unsigned long req = gp::requested_cookie();
  if (!gp::poll_state(req)) wait_for_cookie_unlocked(req, false);
  // What became ready during the waits goes to the workers first; this thread runs a batch of
  // a lane that has no worker, or whose worker stalls. It still publishes progress, for the
  // barriers.
  cb::promote_ready();
  wake_workers();
  const unsigned ready = cb::ready_lanes();
  const unsigned stalled = stalled_lanes(ready);
  const unsigned mine = runtime_lanes() | stalled;
  if (stalled & ready) g_worker_takeovers.fetch_add(1, std::memory_order_relaxed);
  if (ready & mine)
    publish_progress(cb::invoke_ready(mine));
  else
    publish_progress(cb::invoked_through());
}

// 1 once the runtime thread has finished starting (the thread library's and a sanitizer's
// start-up code, which allocate, are behind it); 0 before and in a fork child. See prepare_fork.
alignas(kCacheLine) std::atomic<std::uint32_t> g_runtime_up{0};

void* runtime_main(void*) {
  t_is_runtime = true;
  t_bulkrcu_thread = true;  // base/user_code.h: never throttles, may run deleters inline
  pthread_setname_np(pthread_self(), "bulkrcu-rt");
  // Its passes and grace periods must not wait for a busy CPU's slice to end (base.h).
  become_latency_sensitive();
  std::atomic<std::uint32_t>* wake = doorbell_word();
  g_runtime_up.store(1, std::memory_order_release);
  subtle::futex_wake(&g_runtime_up, INT32_MAX);
  for (;;) {
    pthread_mutex_lock(&g_driver_mutex);
    one_pass();
    pthread_mutex_unlock(&g_driver_mutex);
    if (work_pending()) continue;
    // Doorbell (asymmetric Dekker): announce sleep, heavy fence, recheck, sleep. Paced: until
    // the callbacks' next grace period is due, and new callbacks do not ring.
    const bool paced = cb_work(now_ns()) == CbWork::kPaced;
    const std::uint32_t announce = paced ? kDoorbellPaced : kDoorbellIdle;
    wake->store(announce, std::memory_order_relaxed);
    heavy_fence();
    if (work_pending()) {
      wake->store(0, std::memory_order_relaxed);
      continue;
    }
    // Sleep until rung, or until the kvfree drain timer needs a pass or a parked refill request
    // is due (0: nothing pending).
    std::uint64_t timeout = kvfree::next_timeout_ns();
    const std::uint64_t parked = pool::next_timeout_ns();  // a parked refill request
    if (parked && (timeout == 0 || parked < timeout)) timeout = parked;
    std::uint64_t poll = doorbell_poll_ns();
    if (poll && (timeout == 0 || poll < timeout)) timeout = poll;
    // A worker's lane waits: look again when it would count as stalled.
    if ((cb::ready_lanes() & g_worker_lanes.load(std::memory_order_relaxed)) &&
        (timeout == 0 || kWorkerStallNs < timeout))
      timeout = kWorkerStallNs;
    if (paced) {
      const std::uint64_t now = now_ns(), due = g_cb_gp_ns + kCbPaceNs;
      const std::uint64_t left = due > now ? due - now : 1;
      if (timeout == 0 || left < timeout) timeout = left;
    }
    subtle::futex_wait(wake, announce, timeout);
    wake->store(0, std::memory_order_relaxed);
  }
  return nullptr;
}

void start_thread() {
  if (spawn_thread(&g_runtime_tid, runtime_main) != 0)
    fatal("cannot start the runtime thread (pthread_create failed)");
}

// Fork handlers. gp/ registers its own (it may be linked without this layer) from a
// constructor of higher priority, so its child handler (which resets the engine) runs before
// this one: parent and child handlers run in registration order.
// A fork while the runtime thread is still starting (the library starts it from a constructor,
// so a program that forks first thing races it) would copy whatever lock that start-up code
// holds: glibc's malloc is safe (its own fork handler), but an allocator without one (clang
// 14's AddressSanitizer: a child hung on its allocator's lock in ~1% of such forks under load)
// deadlocks the child. So the fork first waits for the start to end: it needs no lock the
// forking thread could hold, and takes microseconds; the wait gives up after 1 s (a thread
// that cannot start then is not the fork's problem).
void wait_for_runtime_start() {
  if (t_is_runtime || g_started.load(std::memory_order_acquire) == 0) return;
  for (int i = 0; i < 100 && g_runtime_up.load(std::memory_order_acquire) == 0; ++i)
    subtle::futex_wait(&g_runtime_up, 0, 10 * 1000 * 1000);
}

void prepare_fork() {
  wait_for_runtime_start();
  if (!t_is_runtime) pthread_mutex_lock(&g_driver_mutex);
  kvfree::before_fork();  // after the driver mutex: the runtime thread takes them in this order
  cb::before_fork();      // the callback queue's mutex, which invocation workers take alone
}
void parent_fork() {
  cb::after_fork_parent();
  kvfree::after_fork_parent();
  if (!t_is_runtime) pthread_mutex_unlock(&g_driver_mutex);
}
void child_fork() {
  pthread_mutex_init(&g_driver_mutex, nullptr);
  doorbell_word()->store(0, std::memory_order_relaxed);
  g_barrier_waiters.store(0, std::memory_order_relaxed);
  g_started.store(0, std::memory_order_relaxed);
  g_runtime_up.store(0, std::memory_order_relaxed);
  g_nr_workers.store(0, std::memory_order_relaxed);  // the parent's workers do not exist here
  g_worker_lanes.store(0, std::memory_order_relaxed);
  for (std::uint64_t& t : g_stall_since) t = 0;
  for (WorkerBell& w : g_bells) w.sleepers.store(0, std::memory_order_relaxed);
  g_workers_running.store(0, std::memory_order_relaxed);
  t_is_runtime = false;
  kvfree::enable_fast_path(false);  // until the runtime thread restarts here
  kvfree::after_fork_child();
}

__attribute__((constructor(103))) void runtime_init() {
  stats_dump_install();  // BULKRCU_STATS=1: statistics to stderr at exit
  pthread_atfork(prepare_fork, parent_fork, child_fork);
  ensure_started();
}

}  // namespace

alignas(kCacheLine) std::atomic<int> g_started{0};

void start_slow() noexcept {
  int expected = 0;
  if (g_started.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
    start_thread();
    g_started.store(2, std::memory_order_release);
    kvfree::enable_fast_path(true);
  }
  // A racing caller returns at once: its work is on the lists; the thread will find it.
}

bool on_runtime_thread() noexcept { return t_is_runtime; }

int invocation_threads() noexcept {
  return (g_started.load(std::memory_order_acquire) == 2 ? 1 : 0) +
         g_nr_workers.load(std::memory_order_acquire);
}

void set_max_invocation_threads(int n) noexcept {
  if (n < 1) n = 1;
  if (n > kMaxWorkers + 1) n = kMaxWorkers + 1;
  g_max_workers.store(n - 1, std::memory_order_relaxed);
}

int max_invocation_threads() noexcept { return g_max_workers.load(std::memory_order_relaxed) + 1; }

std::uint64_t worker_takeovers() noexcept { return g_worker_takeovers.load(std::memory_order_relaxed); }

#ifdef BULKRCU_TESTING
void pause_workers_for_test(bool pause) noexcept { g_workers_paused.store(pause, std::memory_order_relaxed); }
#endif

int pin_invocation_thread(int i, const cpu_set_t* set) noexcept {
  ensure_started();
  if (i < 0 || i > cb::nr_lanes()) return EINVAL;
  if (i == 0) return pthread_setaffinity_np(g_runtime_tid, sizeof *set, set);
  // Workers are started by the runtime thread only; start this one under its mutex.
  const int lane = i - 1;
  pthread_mutex_lock(&g_driver_mutex);
  if (g_max_workers.load(std::memory_order_relaxed) < i) g_max_workers.store(i, std::memory_order_relaxed);
  const int rc = start_worker(lane) ? pthread_setaffinity_np(g_worker_tid[lane], sizeof *set, set) : EAGAIN;
  pthread_mutex_unlock(&g_driver_mutex);
  return rc;
}

void callback_barrier() noexcept {
  gp::assert_not_in_reader("bulkrcu_barrier()");
  if (cb::in_callback())
    fatal("bulkrcu_barrier() called from inside an RCU callback: it would wait for itself");
  ensure_started();
  std::atomic_thread_fence(std::memory_order_seq_cst);  // our earlier pushes before the read
  const std::uint64_t target = g_sweeps_started.load(std::memory_order_seq_cst) + 1;
  std::uint64_t cur = g_barrier_target.load(std::memory_order_relaxed);
  while (cur < target && !g_barrier_target.compare_exchange_weak(cur, target, std::memory_order_release)) {
  }
  gp::NoCancel no_cancel;  // not a cancellation point (rcu.h)
  g_barrier_waiters.fetch_add(1, std::memory_order_seq_cst);
  doorbell_ring();
  for (;;) {
    std::uint32_t p = g_progress.load(std::memory_order_acquire);
    if (g_invoked_through.load(std::memory_order_acquire) >= target) break;
    subtle::futex_wait(&g_progress, p, 0);
  }
  g_barrier_waiters.fetch_sub(1, std::memory_order_relaxed);
}

// bulkrcu_call_bounded's wait: until the backlog is at most max_pending. Woken by every
// publish_progress (it counts as a barrier waiter), and polls every millisecond in case the
// invocations that shrink the backlog are made by a worker that publishes no progress.
void wait_for_backlog(std::uint64_t max_pending) noexcept {
  gp::NoCancel no_cancel;  // not a cancellation point (rcu.h)
  g_barrier_waiters.fetch_add(1, std::memory_order_seq_cst);
  for (;;) {
    std::uint32_t p = g_progress.load(std::memory_order_acquire);
    if (cb::backlog() <= max_pending) break;
    gp::request(gp::get_state());
    doorbell_ring();
    subtle::futex_wait(&g_progress, p, 1000000);
  }
  g_barrier_waiters.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace bulkrcu::detail::runtime

using namespace bulkrcu::detail;

extern "C" {

void bulkrcu_call(struct bulkrcu_head* head, void (*func)(struct bulkrcu_head*)) {
  runtime::ensure_started();
  cb::call(head, func);
}

void bulkrcu_call_bounded(struct bulkrcu_head* head, void (*func)(struct bulkrcu_head*), size_t max_pending) {
  runtime::ensure_started();
  cb::call(head, func);
  static __thread unsigned t_calls __attribute__((tls_model("initial-exec")));
  if (++t_calls % 64 != 0) return;
  if (gp::reader_nesting() != 0 || in_user_code() || on_bulkrcu_thread()) return;
  if (cb::backlog() <= max_pending) return;
  runtime::wait_for_backlog(max_pending);
}

void bulkrcu_barrier(void) { runtime::callback_barrier(); }

unsigned long bulkrcu_start_poll(void) {
  runtime::ensure_started();
  unsigned long cookie = gp::get_state();
  gp::request(cookie);
  return cookie;
}

// The fast path needs no ensure_started(): bulkrcu__kv_fast is set only once the thread runs.
// The names are parenthesized: rcu.h defines function-like macros of the same names.
void(bulkrcu_kvfree)(void* ptr) {
  if (!ptr) return;
  constexpr unsigned kFlags = kvfree::kMayBlock | kvfree::kHelp;
  if (BULKRCU_LIKELY(kvfree::retire_fast(nullptr, ptr, kFlags))) return;
  runtime::ensure_started();
  kvfree::retire_slow(nullptr, ptr, kFlags);
}

void(bulkrcu_defer)(void (*fn)(void*), void* ptr) {
  constexpr unsigned kFlags = kvfree::kMayBlock | kvfree::kHelp;
  if (BULKRCU_LIKELY(kvfree::retire_fast(fn, ptr, kFlags))) return;
  runtime::ensure_started();
  kvfree::retire_slow(fn, ptr, kFlags);
}

bool(bulkrcu_defer_nowait)(void (*fn)(void*), void* ptr) {
  // No ensure_started(): it may create a thread. The runtime thread starts when the library
  // loads, and in a fork child at the first blocking call (documented in docs/KVFREE.md).
  return kvfree::retire(fn, ptr, kvfree::kNoWait | kvfree::kNoSyscall);
}

bool(bulkrcu__defer_nonblocking)(void (*fn)(void*), void* ptr) {
  constexpr unsigned kFlags = kvfree::kNoWait | kvfree::kHelp;
  if (BULKRCU_LIKELY(kvfree::retire_fast(fn, ptr, kFlags))) return true;
  runtime::ensure_started();
  return kvfree::retire_slow(fn, ptr, kFlags);
}

void(bulkrcu_kfree_head)(void* ptr, struct bulkrcu_head* head) {
  runtime::ensure_started();
  kvfree::kfree_head(ptr, head);
}

void bulkrcu_kvfree_barrier(void) {
  if (in_user_code())  // before the reader check: deleters run inside a read-side section
    fatal(
        "bulkrcu_kvfree_barrier() called from inside an RCU callback or deleter: it would wait "
        "for itself");
  gp::assert_not_in_reader("bulkrcu_kvfree_barrier()");
  gp::NoCancel no_cancel;  // not a cancellation point (rcu.h)
  runtime::ensure_started();
  kvfree::barrier();
  runtime::callback_barrier();  // objects of the two-argument fallback, and bulkrcu_call
}

void bulkrcu_memory_pressure(void) {
  cache::on_memory_pressure();  // first: empty slabs reach the pool before it shrinks
  kvfree::memory_pressure();
}

size_t bulkrcu_kvfree_reclaim(void) {
  runtime::ensure_started();
  return kvfree::run_deleters();
}

void(bulkrcu__defer_sized)(void (*fn)(void*), void* ptr, size_t size) {
  constexpr unsigned kFlags = kvfree::kMayBlock | kvfree::kHelp;
  runtime::ensure_started();
  kvfree::retire_slow(fn, ptr, kFlags, size);
}

bool bulkrcu__retire_delete(void* ptr, size_t size, void (*op_delete)(void*, size_t), int nonblocking) {
  // Before any block of the channel exists: its frees find op_delete (every program's copy of
  // the header's global_delete calls the same ::operator delete).
  if (kvfree::g_operator_delete.load(std::memory_order_relaxed) != op_delete)
    kvfree::g_operator_delete.store(op_delete, std::memory_order_release);
  const auto fn = reinterpret_cast<void (*)(void*)>(BULKRCU__DELETE_BIT | size);
  const unsigned flags = nonblocking ? kvfree::kNoWait | kvfree::kHelp : kvfree::kMayBlock | kvfree::kHelp;
  runtime::ensure_started();
  return kvfree::retire_slow(fn, ptr, flags, size);
}

bool(bulkrcu__defer_nonblocking_sized)(void (*fn)(void*), void* ptr, size_t size) {
  constexpr unsigned kFlags = kvfree::kNoWait | kvfree::kHelp;
  runtime::ensure_started();
  return kvfree::retire_slow(fn, ptr, kFlags, size);
}

void bulkrcu_get_stats(struct bulkrcu_stats* out, size_t size) {
  struct bulkrcu_stats s;
  memset(&s, 0, sizeof s);
  gp::Stats g = gp::stats();
  s.grace_periods = g.grace_periods;
  s.expedited_grace_periods = g.expedited_grace_periods;
  s.synchronize_calls = g.synchronize_calls;
  s.stall_warnings = g.stall_warnings;
  s.reader_slots = g.reader_slots;
  s.readers_registered = g.readers_registered;
  cb::Stats c = cb::stats();
  s.callbacks_queued = c.queued;
  s.callbacks_invoked = c.invoked;
  s.callbacks_pending = c.pending;
  s.callbacks_overflow = c.overflow;
  s.callbacks_swept = c.swept;
  s.callbacks_invocation_threads = static_cast<std::uint64_t>(runtime::invocation_threads());
  s.percpu_rseq = mode() == PercpuMode::kRseq;
  s.reader_fences = __atomic_load_n(&bulkrcu__reader_fence, __ATOMIC_RELAXED) != 0;
  s.nr_cpu_slots = static_cast<std::uint64_t>(nr_slots());
  kvfree::fill_stats(&s);
  s.cache_pending_objects = cache::pending_objects();
  s.cache_pending_bytes = cache::pending_bytes();
  s.no_reader_grace_periods = g.no_reader_grace_periods;
  pool::Stats p = pool::stats();
  s.pool_allocs = p.allocs;
  s.pool_frees = p.frees;
  s.pool_lockless_hits = p.lockless_hits;
  s.pool_lockless_misses = p.lockless_misses;
  s.pool_refill_requests = p.refill_requests;
  s.pool_refills = p.refills;
  s.pool_worker_refills = p.worker_refills;
  s.pool_drains = p.drains;
  s.pool_chunks_mapped = p.chunks_mapped;
  s.pool_chunks_unmapped = p.chunks_unmapped;
  s.pool_chunks = p.chunks;
  s.pool_pages_percpu = p.pages_percpu;
  s.pool_pages_percpu_max = p.pages_percpu_max;
  s.pool_pages_zone = p.pages_zone;
  memcpy(out, &s, size < sizeof s ? size : sizeof s);
}

}  // extern "C"
