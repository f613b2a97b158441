// bulkrcu/src/kvfree/reclaim.cpp: reclaim cursors and helps on retiring threads, reclaim on
// the runtime thread, and run_deleters (protocol in reclaim.h).
#include "kvfree/reclaim.h"

#include <stdlib.h>

#include "base/trace.h"
#include "base/user_code.h"
#include "bulkrcu/page_pool.h"
#include "gp/gp.h"
#include "kvfree/budget.h"
#include "kvfree/kvfree.h"
#include "kvfree/monitor.h"
#include "kvfree/pages.h"
#include "kvfree/stats.h"

namespace bulkrcu::detail::kvfree {

namespace {

// Pointers a helping thread frees at a time: glibc's tcache holds 7 chunks per size class, so
// 7 frees per 7 retires cycle through it without touching the arena (more at a time spills
// into fastbins; docs/PERFORMANCE.md, "kvfree: measurements behind the constants").
#ifdef BULKRCU_TESTING
constexpr long kHelpBatch = 3;  // less than a test block (4): cursors are left partly freed
#else
constexpr long kHelpBatch = 7;
#endif

constexpr std::size_t kReadyOff = offsetof(Krc, ready);
constexpr std::size_t kNextOff = offsetof(Block, next);

__thread bool t_in_help __attribute__((tls_model("initial-exec"))) = false;

#ifdef BULKRCU_TESTING
std::atomic<void (*)(long) noexcept> g_help_hook{nullptr};
#endif
// Tests stop a help here (set_help_hook); a no-op in every other build.
BULKRCU_ALWAYS_INLINE void help_hook(long v) noexcept {
#ifdef BULKRCU_TESTING
  if (void (*hook)(long) noexcept = g_help_hook.load(std::memory_order_acquire)) hook(v);
#else
  (void)v;
#endif
}

// H1's store: ThreadSanitizer does not see membarrier(2), so under it the Dekker pair is two
// sequentially consistent accesses (as the readers' lock store, BULKRCU__MO_LOCK in rcu.h).
#ifdef BULKRCU__TSAN
constexpr std::memory_order kHelpBeginOrder = std::memory_order_seq_cst;
#else
constexpr std::memory_order kHelpBeginOrder = std::memory_order_relaxed;
#endif

// Elapsed blocks of user deleters, for run_deleters (lock-free push; taken whole).
std::atomic<Block*> g_deleter_ready{nullptr};
std::atomic<std::uint32_t> g_deleter_runners{0};  // threads inside run_deleters (quiesce waits)
// The highest barrier request whose blocks are all freed or queued on g_deleter_ready: the
// next run_deleters publishes it as done.
std::atomic<std::uint64_t> g_barrier_pending{0};
std::atomic<std::uint64_t> g_barrier_done{0};  // completed through this request number
std::atomic<bool> g_quiesced{false};           // exit(): no user deleter starts any more

// The last resort of a user deleter that found no page: a node on the retiring thread's stack
// carries it to run_deleters, which runs it after the grace period that thread waited for;
// that thread waits until it has run (its stack frame holds the node).
struct SyncNode {
  Deleter fn;
  void* ptr;
  SyncNode* next;
  std::atomic<std::uint32_t> done;
};
std::atomic<SyncNode*> g_sync_nodes{nullptr};

}  // namespace

std::atomic<OperatorDelete> g_operator_delete{nullptr};

namespace {

void store_max(std::atomic<std::uint64_t>& a, std::uint64_t v) noexcept {
  std::uint64_t cur = a.load(std::memory_order_relaxed);
  while (cur < v && !a.compare_exchange_weak(cur, v, std::memory_order_acq_rel, std::memory_order_relaxed)) {
  }
}

// Pointers freed by retiring threads, counted once per block when it leaves the ready state
// (not per claim: an atomic add per claim is a cost per retired object).
// Also ends the block's share of its home CPU's backlog count.
void count_helped(Block* b) noexcept {
  g_counters.helped.fetch_add(b->nr - b->done, std::memory_order_relaxed);
  if (b->state == BlockState::kReady) {
    b->state = BlockState::kReclaim;
    g_krcs.load(std::memory_order_relaxed)[b->home].ready_objs.fetch_sub(b->nr, std::memory_order_relaxed);
  }
}

// Runs an allocator channel's deleter (free() or ::operator delete) over n pointers,
// prefetching ahead (the objects are cold by now).
void free_ptrs(Deleter fn, void* const* ptrs, std::size_t n) noexcept {
  BULKRCU_TRACE(reclaim, n, fn);
  constexpr std::size_t kAhead = 16;
  for (std::size_t i = 0; i < n && i < kAhead; ++i) __builtin_prefetch(ptrs[i]);
  for (std::size_t i = 0; i < n; ++i) {
    if (i + kAhead < n) __builtin_prefetch(ptrs[i + kAhead]);
    free_in_channel(fn, ptrs[i]);
  }
}

void reclaim_block(Block* b) noexcept {
  count_helped(b);  // what retiring threads claimed from it before the monitor took it
  if (!allocator_channel(b->fn)) {
    queue_deleter_block(b);
    return;
  }
  free_ptrs(b->fn, b->ptrs, b->done);
  g_counters.monitor_freed.fetch_add(b->done, std::memory_order_relaxed);
  b->done = 0;
  if (b->est_bytes) credit(b);
  bulkrcu_free_page(b);
}

// ---- cursors ----

// Takes slot k's whole hand-over list (one exchange; lock-free and open to any thread). The
// blocks stay chained through `next`: the cursor moves along the chain (walking to the tail to
// push the rest back would touch every cold block header).
Block* take_incoming(Krc& k) noexcept {
  if (!k.incoming.load(std::memory_order_relaxed)) return nullptr;
  return k.incoming.exchange(nullptr, std::memory_order_acquire);
}

// Pushes first .. last onto this CPU's ready list; false when its slot is locked.
bool push_ready_chain(Block* first, Block* last) noexcept {
  tsan_release(&g_krcs);  // pop_ready acquires
#if BULKRCU_HAVE_RSEQ_ASM
  if (mode() == PercpuMode::kRseq)
    return bulkrcu::detail::subtle::rseq_push_chain<kReadyOff, kNextOff>(
        g_krcs.load(std::memory_order_relaxed), sizeof(Krc), first, last);
#endif
  return with_locked_slot([&](Krc& k, int) {
    last->next = k.ready;
    __atomic_store_n(&k.ready, first, __ATOMIC_RELAXED);  // others peek at it
  });
}

// A block for this thread's cursor: this CPU's ready list (the monitor's locked passes fill
// it), else this CPU's hand-over list, else another CPU's. What keeps glibc's tcache balanced
// is that a thread frees as many pointers as it retires, whichever CPU filled them: threads
// migrate, and a CPU whose thread moved away for a while has a backlog while the thread's new
// CPU has none.
Block* pop_ready(Krc* base) noexcept {
  Block* b = nullptr;
#if BULKRCU_HAVE_RSEQ_ASM
  if (mode() == PercpuMode::kRseq) {
    void* p = bulkrcu::detail::subtle::rseq_pop<kReadyOff, kNextOff>(base, sizeof(Krc));
    if (p != nullptr && p != bulkrcu::detail::subtle::kSlotLocked) {
      tsan_acquire(&g_krcs);  // released by the monitor when it filled the ready list
      b = static_cast<Block*>(p);
    }
  } else
#endif
  {
    with_locked_slot([&](Krc& kr, int) {
      b = kr.ready;
      if (b) __atomic_store_n(&kr.ready, b->next, __ATOMIC_RELAXED);  // others peek at it
    });
  }
  if (b) {
    b->next = nullptr;  // a chain of one
    return b;
  }
  const int n = nr_slots();
  const int self = current_cpu();
  for (int d = 0; d < n; ++d)
    if ((b = take_incoming(base[(self + d) % n]))) break;
  if (!b) return nullptr;
  // One block for the cursor; the rest of the chain goes onto this CPU's ready list, where this
  // CPU's other threads pop it a block at a time. A thread preempted while it holds its cursor
  // then holds one block, not a whole hand-over.
  if (Block* rest = b->next) {
    Block* last = rest;
    long blocks = 1;
    for (; last->next; ++blocks) last = last->next;
    help_hook(-blocks);
    if (push_ready_chain(rest, last)) b->next = nullptr;
  }
  return b;
}

// The thread's cursor block is empty: move the word to the next block of the chain and recycle
// this one, unless the monitor took the chain meanwhile (it then owns every block of it and
// relinks them only after a help fence that waits for this help, so reading b->next here races
// with nothing).
void finish_cursor(std::atomic<void*>* word, Block* b, unsigned flags) noexcept {
  void* expected = b;
  if (!word->compare_exchange_strong(expected, b->next, std::memory_order_acq_rel, std::memory_order_relaxed))
    return;  // stolen: the monitor hands it back after a help fence
  count_helped(b);
  recycle_page(b, flags);
}

// Frees up to kHelpBatch pointers of the cursor block (taking a new one when there is none).
// Returns how many; *home is the cursor's home CPU. Inside a help sequence (H1 .. H2).
long help_step(Krc* base, std::atomic<void*>* word, unsigned flags, std::uint64_t* home) noexcept {
  Block* b = static_cast<Block*>(word->load(std::memory_order_acquire));
  if (!b) {
    b = pop_ready(base);
    if (!b) return 0;
    word->store(b, std::memory_order_release);
  }
  *home = b->home;
  const std::uint64_t d = __atomic_load_n(&b->done, __ATOMIC_RELAXED);
  if (d == 0) {  // only a block the monitor handed back after stealing it empty
    finish_cursor(word, b, flags);
    return 0;
  }
  const std::uint64_t k = d < static_cast<std::uint64_t>(kHelpBatch) ? d : kHelpBatch;
  const std::uint64_t rest = d - k;
  void* buf[kHelpBatch];
  for (std::uint64_t i = 0; i < k; ++i) buf[i] = b->ptrs[rest + i];
  // The objects of the help after next: their chunk headers are cold by now (retired about a
  // grace period ago), and free() reads them first. (The next help's were prefetched by the
  // previous one.)
  for (std::uint64_t i = rest > 2 * kHelpBatch ? rest - 2 * kHelpBatch : 0; i + kHelpBatch < rest; ++i)
    __builtin_prefetch(b->ptrs[i]);
  // And the pointer array itself, eight helps ahead (the block was written a grace period ago).
  if (rest > 8 * kHelpBatch) __builtin_prefetch(&b->ptrs[rest - 8 * kHelpBatch]);
  // Cursors hold allocator channels' blocks only: a user deleter never runs on a retiring thread.
  __atomic_store_n(&b->done, static_cast<std::uint32_t>(rest), __ATOMIC_RELAXED);
  BULKRCU_TRACE(reclaim_help, k, b->home);
  if (BULKRCU_LIKELY(b->fn == nullptr)) {
    for (std::uint64_t i = 0; i < k; ++i) free_ptr(buf[i]);
  } else {
    const std::size_t size = delete_channel_size(b->fn);
    for (std::uint64_t i = 0; i < k; ++i) delete_ptr(buf[i], size);
  }
  if (rest == 0) finish_cursor(word, b, flags);
  return static_cast<long>(k);
}

// ---- deleters ----

// Runs the last-resort nodes (inside run_deleters' section); with `run` false (exit) only
// releases their waiting threads: the objects are left to the OS.
std::size_t run_sync_nodes(bool run) noexcept {
  std::size_t ran = 0;
  for (SyncNode* node = g_sync_nodes.exchange(nullptr, std::memory_order_acquire); node;) {
    SyncNode* next = node->next;  // read first: the node lives on its waiting thread's stack
    if (run) {
      node->fn(node->ptr);
      ++ran;
    }
    node->done.store(1, std::memory_order_release);
    bulkrcu::detail::subtle::futex_wake(&node->done, 1);
    node = next;
  }
  return ran;
}

// Runs the queued blocks' deleters (inside run_deleters' section), stopping at exit().
std::size_t run_deleter_blocks() noexcept {
  std::size_t ran = 0;
  for (Block* b = g_deleter_ready.exchange(nullptr, std::memory_order_acquire); b;) {
    Block* next = b->next;
    std::uint64_t i = 0;
    for (; i < b->done && !g_quiesced.load(std::memory_order_relaxed); ++i) {
      if (i + 16 < b->done) __builtin_prefetch(b->ptrs[i + 16]);
      b->fn(b->ptrs[i]);
    }
    ran += i;
    g_counters.monitor_freed.fetch_add(i, std::memory_order_relaxed);
    if (i < b->done) break;  // exit(): the rest is left to the OS
    b->done = 0;
    if (b->est_bytes) credit(b);
    bulkrcu_free_page(b);
    b = next;
  }
  return ran;
}

}  // namespace

void help(unsigned flags) noexcept {
  if (t_in_help) return;
  Krc* base = g_krcs.load(std::memory_order_acquire);
  if (!base) return;
  bulkrcu__reader* r = bulkrcu__tls_reader;
  if (BULKRCU_UNLIKELY(r == nullptr)) r = bulkrcu__reader_register();
  t_in_help = true;
  gp::ThreadWords* tw = gp::thread_words(r);
  // H1 (reclaim.h, "Help sequence"): odd while this help runs, then the cursor's loads.
  const std::uint64_t seq = tw->seq.load(std::memory_order_relaxed);
  tw->seq.store(seq + 1, kHelpBeginOrder);
  light_fence();
  std::uint64_t home = 0;
  // Backlog control (Krc::ready_objs): a second batch while the cursor's CPU is behind.
  const long got = help_step(base, &tw->word, flags, &home);
  if (got == kHelpBatch) {
    const Krc& k = base[home];
    if (k.ready_objs.load(std::memory_order_relaxed) > k.behind_limit.load(std::memory_order_relaxed))
      help_step(base, &tw->word, flags, &home);
  }
  help_hook(got);
  // H2: every access of the help happens before the monitor's acquire load that sees it even.
  tw->seq.store(seq + 2, std::memory_order_release);
  // Nothing was ready: if the runtime thread is late, do its hand-over here.
  if (got == 0) {
    g_counters.helps_dry.fetch_add(1, std::memory_order_relaxed);
    if (flags & kMayBlock) drive_if_late();
  }
  t_in_help = false;
}

bool thread_has_cursor() noexcept {
  bulkrcu__reader* r = bulkrcu__tls_reader;
  return r != nullptr && gp::thread_word(r)->load(std::memory_order_relaxed) != nullptr;
}

bool cursors_pending() noexcept {
  bool any = false;
  gp::for_each_thread_words(
      [](gp::ThreadWords& tw, void* arg) {
        if (tw.word.load(std::memory_order_relaxed)) *static_cast<bool*>(arg) = true;
      },
      &any);
  return any;
}

Block* steal_cursors() noexcept {
  Block* chains = nullptr;
  gp::for_each_thread_words(
      [](gp::ThreadWords& tw, void* arg) {
        if (!tw.word.load(std::memory_order_relaxed)) return;
        if (void* p = tw.word.exchange(nullptr, std::memory_order_acq_rel)) {
          Block* b = static_cast<Block*>(p);
          Block** list = static_cast<Block**>(arg);
          set_chain_link(b, *list);
          *list = b;
          g_counters.cursors_stolen.fetch_add(1, std::memory_order_relaxed);
        }
      },
      &chains);
  return chains;
}

// ---- help fences ----

void help_fence_start() noexcept {
  heavy_fence();  // M: pairs with H1 (light_fence) of every help
  gp::for_each_thread_words(
      [](gp::ThreadWords& tw, void*) {
        const std::uint64_t v = tw.seq.load(std::memory_order_acquire);
        if (v & 1) tw.mark = v;  // a help in flight: the fence waits until it has ended
      },
      nullptr);
}

bool help_fence_done() noexcept {
  bool done = true;
  gp::for_each_thread_words(
      [](gp::ThreadWords& tw, void* arg) {
        if (tw.mark == 0) return;
        if (tw.seq.load(std::memory_order_acquire) == tw.mark) {
          *static_cast<bool*>(arg) = false;
          return;
        }
        tw.mark = 0;  // that help has ended (H2 released what it did)
      },
      &done);
  return done;
}

void help_fence_wait() noexcept {
  heavy_fence();
  gp::for_each_thread_words(
      [](gp::ThreadWords& tw, void*) {
        const std::uint64_t v = tw.seq.load(std::memory_order_acquire);
        if (!(v & 1)) return;
        // A help is a few frees; a long wait means its thread was preempted (or stopped)
        // inside it: sleeps from 50 us, doubling up to 10 ms.
        std::uint64_t nap = 50000;
        for (unsigned spins = 0; tw.seq.load(std::memory_order_acquire) == v; ++spins) {
          if (spins < 64) {
            cpu_relax();
            continue;
          }
          sleep_ns(nap);
          if (nap < 10000000) nap *= 2;
        }
      },
      nullptr);
}

void reclaim_list(Block* list) noexcept {
  while (list) {
    Block* next = list->next;
    reclaim_block(list);
    list = next;
  }
}

void queue_deleter_block(Block* b) noexcept {
  Block* head = g_deleter_ready.load(std::memory_order_relaxed);
  do {
    b->next = head;
  } while (
      !g_deleter_ready.compare_exchange_weak(head, b, std::memory_order_release, std::memory_order_relaxed));
}

void run_deleter_after_grace_period(Deleter fn, void* ptr) noexcept {
  if (on_bulkrcu_thread()) {  // bulkrcu's own thread: it may run user deleters itself
    UserCode user(Section::kReader);
    fn(ptr);
    return;
  }
  if (g_quiesced.load(std::memory_order_acquire)) return;  // exit(): left to the OS
  SyncNode node{fn, ptr, nullptr, {0}};
  SyncNode* head = g_sync_nodes.load(std::memory_order_relaxed);
  do {
    node.next = head;
  } while (
      !g_sync_nodes.compare_exchange_weak(head, &node, std::memory_order_release, std::memory_order_relaxed));
  doorbell_ring();
  while (node.done.load(std::memory_order_acquire) == 0)
    bulkrcu::detail::subtle::futex_wait(&node.done, 0, 10000000);
}

void barrier_reclaimed(std::uint64_t req) noexcept { store_max(g_barrier_pending, req); }
std::uint64_t barriers_done() noexcept { return g_barrier_done.load(std::memory_order_acquire); }

bool deleters_pending() noexcept {
  return g_deleter_ready.load(std::memory_order_relaxed) != nullptr ||
         g_sync_nodes.load(std::memory_order_relaxed) != nullptr ||
         g_barrier_pending.load(std::memory_order_relaxed) > g_barrier_done.load(std::memory_order_relaxed);
}

std::size_t run_deleters() noexcept {
  // Loaded first: every block of that barrier was queued before it was stored.
  const std::uint64_t bar = g_barrier_pending.load(std::memory_order_acquire);
  std::size_t ran = 0;
  if (g_deleter_ready.load(std::memory_order_relaxed) || g_sync_nodes.load(std::memory_order_relaxed)) {
    // exit(): registered before the first user deleter runs, so it runs before the destructors
    // of every static object constructed before then (atexit runs in reverse order).
    static std::atomic<bool> s_at_exit{false};
    if (!s_at_exit.exchange(true, std::memory_order_relaxed)) atexit([] { quiesce(); });
    g_deleter_runners.fetch_add(1, std::memory_order_seq_cst);  // quiesce's Dekker pair
    if (!g_quiesced.load(std::memory_order_seq_cst)) {
      // One section from before the lists are taken until their last deleter has returned: a
      // kvfree barrier's closing grace period waits for deleters in flight on any thread.
      UserCode user(Section::kReader);
      ran += run_sync_nodes(true);
      ran += run_deleter_blocks();
    } else {
      // exit(): no deleter starts any more, but a thread that handed one over before it saw
      // the flag must not wait for it forever (the object is left to the OS).
      run_sync_nodes(false);
    }
    g_deleter_runners.fetch_sub(1, std::memory_order_release);
  }
  if (bar > g_barrier_done.load(std::memory_order_relaxed)) {
    store_max(g_barrier_done, bar);
    publish_progress();
  }
  return ran;
}

void quiesce() noexcept {
  g_quiesced.store(true, std::memory_order_seq_cst);
  if (in_user_code()) return;  // exit() from a deleter or callback: do not wait for ourselves
  // Deleters in flight end on their own; bounded, in case one waits for this thread.
  for (int i = 0; i < 10000 && g_deleter_runners.load(std::memory_order_seq_cst) != 0; ++i) sleep_ns(100000);
}

#ifdef BULKRCU_TESTING
void set_help_hook(void (*hook)(long freed) noexcept) noexcept {
  g_help_hook.store(hook, std::memory_order_release);
}
#endif

void reclaim_after_fork_child() noexcept {
  g_deleter_runners.store(0, std::memory_order_relaxed);
  // The parent's other threads do not exist here: a help one of them was running has ended
  // (its claimed pointers are lost to the child, at most two batches). The next even value,
  // not the previous one, so that a mark taken before the fork never matches a later help.
  // This thread's own help, when fork was called from a signal handler inside it, stays odd.
  bulkrcu__reader* self = bulkrcu__tls_reader;
  gp::ThreadWords* own = self && t_in_help ? gp::thread_words(self) : nullptr;
  gp::for_each_thread_words(
      [](gp::ThreadWords& tw, void* arg) {
        if (&tw == arg) return;
        const std::uint64_t v = tw.seq.load(std::memory_order_relaxed);
        if (v & 1) tw.seq.store(v + 1, std::memory_order_relaxed);
      },
      own);
}

}  // namespace bulkrcu::detail::kvfree

#if BULKRCU_HAVE_RSEQ_ASM
// The public header's inline fast path (include/bulkrcu/rcu.h) calls it every kHelpEvery-th
// store.
void bulkrcu__kv_help(unsigned flags) { bulkrcu::detail::kvfree::help(flags); }
#endif
