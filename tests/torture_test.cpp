// Torture, in the shape of the kernel's rcutorture: readers that sometimes hold their section
// for milliseconds (spinning, sleeping, yielding; there are more threads than CPUs, so some
// are preempted inside it) check every object they reach, while writers replace objects and
// retire the old ones through every retire form the library has. Readers also run in signal
// handlers and in short-lived threads, and signal handlers retire with bulkrcu_defer_nowait.
// The run is bounded in time: BULKRCU_TORTURE_SECONDS (default 3) for soak runs,
// BULKRCU_TORTURE_FORMS=kvfree,call,... to torture only some forms (names in kFormNames).
//
// How an early free is seen (no marker in the freed memory: glibc rewrites it on reuse):
//  - Every object has a unique id. A deleter (the test's own code, run by the library after
//    the grace period, or the writer after synchronize/poll) sets the id's bit in a dead-table
//    BEFORE it frees the object. A reader that reaches an object and finds its id dead while
//    still inside the same section has seen a grace period end too early. This is sound: the
//    section began before the object was unpublished, so a correct grace period (and with it
//    the deleter's store) comes after the section's end, and a load cannot see a store that
//    happens after it.
//  - bulkrcu_kvfree and bulkrcu_kfree_head have no deleter of ours: the library calls free()
//    itself, and wrapping free() would be a malloc hook. Their objects are observed through
//    their own memory instead: the id and its complement sit in the first 16 bytes, which
//    glibc's free() overwrites with its free-list link (tcache: next and key; fastbins and
//    the unsorted bin: fd and bk), and which malloc's reuse of the chunk for the writers' next
//    object (same size class) overwrites with a different id. A reader records the id when it
//    reaches the object and compares it again at the end of its hold; a live object's id never
//    changes, so a difference is an early free (sound; how often it is seen depends on glibc,
//    which the busted check below measures). Under AddressSanitizer the same read is reported
//    as a heap-use-after-free whatever the allocator.
//  - Any id that is not a valid one (zero, beyond the ids handed out, complement wrong) when
//    the object is reached is counted too: only freed memory can hold it.
//  - Each deleter also polls a cookie taken just before the retire (bulkrcu_get_state): it
//    must have elapsed. That sees a kvfree or callback layer handing objects over too early
//    even when no reader is there at that moment (but not a broken engine, which agrees with
//    itself: the readers see that).
// On detection the run stops, prints "bulkrcu-torture: EARLY FREE DETECTED" with the form,
// the kind of evidence and the time it took, and fails. scripts/test.sh's `busted` step builds
// the library with BULKRCU_BUSTED (grace periods that end at once, src/gp/gp.cpp) and requires
// exactly that failure: a torture that passes on a broken build is not a test.
#include <errno.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bulkrcu/rcu.h"
#include "bulkrcu/rcu.hpp"
#include "bulkrcu/stats.h"
#include "test_support.h"

using namespace bulkrcu_test;

namespace {

// ---- retire forms -----------------------------------------------------------------------------
enum Form : int {
  kSync,              // bulkrcu_synchronize, then free
  kSyncExpedited,     // bulkrcu_synchronize_expedited, then free
  kCond,              // bulkrcu_get_state, some reading, bulkrcu_cond_synchronize, then free
  kPoll,              // bulkrcu_get_state, later bulkrcu_poll_state (cond_synchronize when many wait)
  kStartPoll,         // bulkrcu_start_poll, later bulkrcu_poll_state
  kCall,              // bulkrcu_call
  kKvfree,            // bulkrcu_kvfree (headless: seen through the object's memory)
  kKfreeHead,         // bulkrcu_kfree_head (headless: seen through the object's memory)
  kDefer,             // bulkrcu_defer
  kDeferNowait,       // bulkrcu_defer_nowait on a writer thread (refused: synchronize, then free)
  kDeferNowaitSig,    // bulkrcu_defer_nowait in a signal handler
  kObjRetire,         // C++ rcu_obj_base::retire
  kRcuRetire,         // C++ rcu_retire, stateless deleter (the pointer goes into a block)
  kRcuRetireNode,     // C++ rcu_retire, stateful deleter (a node allocated with new)
  kRcuRetireDefault,  // C++ rcu_retire, std::default_delete (the allocator channel: headless)
  kNumForms
};
constexpr const char* kFormNames[kNumForms] = {"sync",         "sync_expedited",      "cond",
                                               "poll",         "start_poll",          "call",
                                               "kvfree",       "kfree_head",          "defer",
                                               "defer_nowait", "defer_nowait_signal", "obj_retire",
                                               "rcu_retire",   "rcu_retire_node",     "rcu_retire_default"};
// Forms whose deleter is the test's own: the dead-table sees them.
constexpr bool has_test_deleter(int f) { return f != kKvfree && f != kKfreeHead && f != kRcuRetireDefault; }

enum Kind : int { kDeadTable, kRewritten, kCorrupt, kCookie, kNumKinds };
constexpr const char* kKindNames[kNumKinds] = {
    "dead-table (freed by its deleter while held)", "id rewritten while held (freed memory)",
    "invalid id when reached (freed memory)", "deleted before its retire's cookie elapsed"};

constexpr int kSlotsPerForm = 4;
constexpr int kSlots = kNumForms * kSlotsPerForm;

// ---- objects ------------------------------------------------------------------------------
// All C-form objects come from malloc and have one size (one glibc size class: a chunk freed
// early is the next one a writer's malloc gets back).
struct Obj {
  std::uint64_t id;     // offset 0: glibc's free() writes its free-list link here
  std::uint64_t check;  // ~id; offset 8: glibc's free() writes its tcache key here
  bulkrcu_head head;    // bulkrcu_call, bulkrcu_kfree_head (writer-owned once retired)
  int form;
  void* owner;               // the CxxObj around it (form obj_retire)
  std::uint64_t retired_ns;  // when it was retired (written after it was unpublished)
  unsigned long cookie;      // bulkrcu_get_state() just before the retire (written after unpublish)
};
static_assert(offsetof(Obj, id) == 0 && offsetof(Obj, check) == 8);

struct CxxObj;
struct CxxDeleter {
  void operator()(CxxObj* c) const;
};
// rcu_obj_base puts its node first; the checked part is the embedded Obj.
struct CxxObj : bulkrcu::rcu_obj_base<CxxObj, CxxDeleter> {
  Obj o;
};

std::atomic<bool> g_stop{false};
std::uint64_t g_t0_ns = 0;
std::atomic<std::uint64_t> g_next_id{1};
std::uint64_t g_max_ids = 0;      // the dead-table's capacity (writers stop when it is used up)
std::uint64_t* g_dead = nullptr;  // one bit per id, mmap'ed (pages appear as ids are used)
std::atomic<bool> g_ids_exhausted{false};

std::atomic<long> g_retired[kNumForms];
std::atomic<long> g_killed[kNumForms];
std::atomic<std::uint64_t> g_lat_sum[kNumForms], g_lat_max[kNumForms];
std::atomic<long> g_detect[kNumForms][kNumKinds];
std::atomic<long> g_detections{0};
struct FirstDetection {
  std::atomic<int> taken{0};
  int form = 0, kind = 0;
  std::uint64_t id = 0, seen = 0, at_ns = 0;
} g_first;

std::atomic<long> g_sections{0}, g_slow_holds{0}, g_long_holds{0}, g_sleep_holds{0}, g_handler_reads{0},
    g_handler_retires{0}, g_nowait_refused{0};

std::atomic<Obj*> g_slot[kSlots];
bool g_enabled[kNumForms];

std::uint64_t mono_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

// Relaxed atomic loads of plain fields: each one really reads memory (no caching across a hold).
BULKRCU_ALWAYS_INLINE std::uint64_t ld(const std::uint64_t* p) {
  return __atomic_load_n(p, __ATOMIC_RELAXED);
}

bool is_dead(std::uint64_t id) {
  return (__atomic_load_n(&g_dead[id / 64], __ATOMIC_RELAXED) >> (id % 64)) & 1;
}

// ---- the dead-table's writers -------------------------------------------------------------
void report(int form, int kind, std::uint64_t id, std::uint64_t seen);

// Also checks, with the library's own cookie, that a grace period has elapsed since the retire:
// every path to a deleter takes its cookie (block close, callback sweep, synchronize) after the
// retire began, so a correct library has polled a later cookie than this one before the call
// (cookies are monotonic: gp.cpp never moves the sequence backwards, Gp.SequenceNeverMoves...).
// That sees a kvfree or callback layer that hands objects over without waiting, whatever the
// readers do at that moment (not a broken grace-period engine: its own poll agrees with it).
void mark_dead(Obj* o) {
  const std::uint64_t id = o->id;
  if (id == 0 || id >= g_max_ids) {
    fprintf(stderr, "bulkrcu-torture: a deleter got an object with invalid id %llu (double free?)\n",
            static_cast<unsigned long long>(id));
    abort();
  }
  const std::uint64_t bit = 1ull << (id % 64);
  if (__atomic_fetch_or(&g_dead[id / 64], bit, __ATOMIC_RELAXED) & bit) {
    fprintf(stderr, "bulkrcu-torture: object %llu deleted twice\n", static_cast<unsigned long long>(id));
    abort();
  }
  g_killed[o->form].fetch_add(1, std::memory_order_relaxed);
  if (o->cookie && !bulkrcu_poll_state(o->cookie)) report(o->form, kCookie, id, o->cookie);
  if (o->retired_ns) {  // the retire-to-delete latency, for the summary
    const std::uint64_t lat = mono_ns() - o->retired_ns;
    g_lat_sum[o->form].fetch_add(lat, std::memory_order_relaxed);
    std::uint64_t m = g_lat_max[o->form].load(std::memory_order_relaxed);
    while (lat > m && !g_lat_max[o->form].compare_exchange_weak(m, lat, std::memory_order_relaxed)) {
    }
  }
}

void kill(Obj* o) {  // marks dead, then frees: every C form's deleter
  mark_dead(o);
  free(o);
}
void kill_cb(void* p) { kill(static_cast<Obj*>(p)); }
void call_cb(bulkrcu_head* h) {
  kill(reinterpret_cast<Obj*>(reinterpret_cast<char*>(h) - offsetof(Obj, head)));
}
void CxxDeleter::operator()(CxxObj* c) const {
  mark_dead(&c->o);
  delete c;
}
struct FreeDeleter {  // stateless: rcu_retire stores the pointer itself
  void operator()(Obj* o) const { kill(o); }
};
struct CountingDeleter {  // stateful: rcu_retire allocates a node for it
  std::atomic<long>* runs;
  void operator()(Obj* o) const {
    runs->fetch_add(1, std::memory_order_relaxed);
    kill(o);
  }
};
std::atomic<long> g_node_deleter_runs{0};

// ---- construction -------------------------------------------------------------------------
bool new_id(std::uint64_t* id) {
  const std::uint64_t v = g_next_id.fetch_add(1, std::memory_order_relaxed);
  if (v >= g_max_ids) {
    g_ids_exhausted.store(true, std::memory_order_relaxed);
    return false;
  }
  *id = v;
  return true;
}

void init_obj(Obj* o, std::uint64_t id, int form) {
  o->id = id;
  o->check = ~id;
  o->head = bulkrcu_head{nullptr, nullptr};
  o->form = form;
  o->owner = nullptr;
  o->retired_ns = 0;
  o->cookie = 0;
}

// A fresh object for `form` (nullptr when the ids are used up).
Obj* make(int form) {
  std::uint64_t id;
  if (!new_id(&id)) return nullptr;
  if (form == kObjRetire) {
    auto* c = new CxxObj;
    init_obj(&c->o, id, form);
    c->o.owner = c;
    return &c->o;
  }
  // rcu_retire with std::default_delete frees with ::operator delete: the object comes from
  // new (Obj is trivially destructible, so the library's allocator channel takes it).
  Obj* o = form == kRcuRetireDefault ? new Obj : static_cast<Obj*>(malloc(sizeof(Obj)));
  if (!o) abort();
  init_obj(o, id, form);
  return o;
}
static_assert(bulkrcu::detail::kAllocatorDelete<Obj, std::default_delete<Obj>>);

CxxObj* cxx_of(Obj* o) { return static_cast<CxxObj*>(o->owner); }

// Frees an object no reader can reach any more (end of the test).
void destroy_unreachable(Obj* o) {
  if (o->form == kObjRetire) {
    CxxDeleter{}(cxx_of(o));
  } else if (o->form == kRcuRetireDefault) {
    mark_dead(o);
    delete o;
  } else {
    kill(o);
  }
}

// ---- detection ----------------------------------------------------------------------------
void report(int form, int kind, std::uint64_t id, std::uint64_t seen) {
  g_detect[form][kind].fetch_add(1, std::memory_order_relaxed);
  if (g_detections.fetch_add(1, std::memory_order_relaxed) == 0) {
    g_first.form = form;
    g_first.kind = kind;
    g_first.id = id;
    g_first.seen = seen;
    g_first.at_ns = mono_ns() - g_t0_ns;
    g_first.taken.store(1, std::memory_order_release);
  }
  g_stop.store(true, std::memory_order_relaxed);
}

struct Held {
  const Obj* o;
  std::uint64_t id;  // 0: nothing held (the reach check already reported it)
  int form;
};

// Checks an object just reached inside the section.
BULKRCU_ALWAYS_INLINE Held reach(int slot) {
  const int form = slot / kSlotsPerForm;
  const Obj* o = g_slot[slot].load(std::memory_order_acquire);
  const std::uint64_t id = ld(&o->id), check = ld(&o->check);
  if (id == 0 || id >= std::min(g_next_id.load(std::memory_order_relaxed), g_max_ids) || check != ~id) {
    report(form, kCorrupt, id, check);
    return Held{o, 0, form};
  }
  if (is_dead(id)) {
    report(form, kDeadTable, id, id);
    return Held{o, 0, form};
  }
  return Held{o, id, form};
}

// Checks again, later in the same section, an object reached earlier.
BULKRCU_ALWAYS_INLINE bool still_alive(Held& h) {
  if (h.id == 0) return true;
  const std::uint64_t now = ld(&h.o->id), check = ld(&h.o->check);
  if (is_dead(h.id)) {  // first: the evidence that does not depend on the allocator
    report(h.form, kDeadTable, h.id, now);
    h.id = 0;
    return false;
  }
  if (now != h.id || check != ~h.id) {
    report(h.form, kRewritten, h.id, now);
    h.id = 0;
    return false;
  }
  return true;
}

struct Rng {
  std::uint64_t s;
  std::uint32_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return static_cast<std::uint32_t>(s >> 11);
  }
};

constexpr int kHeld = 4;

// The slots of the enabled forms (readers look where writers retire).
int g_read_slots[kSlots];
int g_nr_read_slots = 0;

// How long a held section lasts: 1-3 ms, one time in eight 5-20 ms (a reader preempted for a
// while; a grace period that ends late is caught only if the reader is still there).
std::uint64_t hold_ns(Rng& rng) {
  if (rng.next() % 8 == 0) return 5000000 + rng.next() % 15000000;
  return 1000000 + rng.next() % 2000000;
}

// One read-side section over kHeld random slots. `may_hold`: a thread reader, which sometimes
// holds its section for milliseconds.
void read_section(Rng& rng, bool may_hold) {
  bulkrcu_read_lock();
  Held held[kHeld];
  for (auto& h : held) h = reach(g_read_slots[rng.next() % g_nr_read_slots]);
  const std::uint32_t r = rng.next() % 64;
  if (may_hold && r < 4) {
    const std::uint64_t hold = hold_ns(rng), until = mono_ns() + hold;
    if (r == 0) {  // off the CPU inside the section
      g_sleep_holds.fetch_add(1, std::memory_order_relaxed);
      nap_us(static_cast<long>(hold / 1000));
    } else {
      g_long_holds.fetch_add(1, std::memory_order_relaxed);
      for (unsigned i = 0; mono_ns() < until; ++i) {
        for (int k = 0; k < 64; ++k) bulkrcu::detail::cpu_relax();
        for (auto& h : held) still_alive(h);
        if (r == 1 && i % 64 == 0) sched_yield();  // let a writer (or a grace period) run
        if (g_stop.load(std::memory_order_relaxed)) break;
      }
    }
  } else if (r < 12) {  // a nested section inside the outer one
    bulkrcu_read_lock();
    still_alive(held[0]);
    bulkrcu_read_unlock();
  } else {
    for (int k = 0; k < 16; ++k) bulkrcu::detail::cpu_relax();
  }
  for (auto& h : held) still_alive(h);
  bulkrcu_read_unlock();
  g_sections.fetch_add(1, std::memory_order_relaxed);
}

// ---- signal handlers ----------------------------------------------------------------------
std::atomic<std::uint64_t> g_handler_seed{0x9E3779B97F4A7C15ull};
void read_handler(int) {
  const int saved = errno;
  Rng rng{g_handler_seed.fetch_add(0x9E3779B97F4A7C15ull, std::memory_order_relaxed) | 1};
  read_section(rng, false);
  g_handler_reads.fetch_add(1, std::memory_order_relaxed);
  errno = saved;
}

// Spare objects for the retiring handler (it cannot malloc), refilled by the signaller; the
// objects bulkrcu_defer_nowait refused go onto a lock-free stack (linked through head.next)
// that the signaller frees after a grace period.
constexpr int kSpares = 16;
std::atomic<Obj*> g_spares[kSpares];
std::atomic<bulkrcu_head*> g_refused{nullptr};

void retire_handler(int) {
  const int saved = errno;
  const std::uint64_t seed = g_handler_seed.fetch_add(0x9E3779B97F4A7C15ull, std::memory_order_relaxed);
  Obj* fresh = nullptr;
  for (int i = 0; i < kSpares && !fresh; ++i) fresh = g_spares[(seed + i) % kSpares].exchange(nullptr);
  if (fresh) {
    Obj* old = g_slot[kDeferNowaitSig * kSlotsPerForm + seed % kSlotsPerForm].exchange(
        fresh, std::memory_order_acq_rel);
    g_retired[kDeferNowaitSig].fetch_add(1, std::memory_order_relaxed);
    old->retired_ns = mono_ns();
    old->cookie = bulkrcu_get_state();
    if (!bulkrcu_defer_nowait(kill_cb, old)) {
      bulkrcu_head* top = g_refused.load(std::memory_order_relaxed);
      do {
        old->head.next = top;
      } while (!g_refused.compare_exchange_weak(top, &old->head, std::memory_order_release,
                                                std::memory_order_relaxed));
      g_nowait_refused.fetch_add(1, std::memory_order_relaxed);
    }
    g_handler_retires.fetch_add(1, std::memory_order_relaxed);
  }
  errno = saved;
}

void free_refused() {
  bulkrcu_head* h = g_refused.exchange(nullptr, std::memory_order_acquire);
  if (!h) return;
  bulkrcu_synchronize();
  while (h) {
    bulkrcu_head* next = h->next;
    call_cb(h);
    h = next;
  }
}

// ---- writers ------------------------------------------------------------------------------
constexpr long kMaxInFlight = 1024;  // per form, for the forms with a deleter of ours
struct Writer {
  Rng rng;
  std::deque<std::pair<unsigned long, Obj*>> polled, started;

  void reap(std::deque<std::pair<unsigned long, Obj*>>& q, bool all) {
    while (!q.empty()) {
      auto [cookie, o] = q.front();
      if (!bulkrcu_poll_state(cookie)) {
        if (!all && q.size() < 256) return;
        bulkrcu_cond_synchronize(cookie);
      }
      q.pop_front();
      kill(o);
    }
  }

  // Replaces a random object of `form` and retires the old one that way.
  bool step(int form) {
    Obj* fresh = make(form);
    if (!fresh) return false;
    Obj* old =
        g_slot[form * kSlotsPerForm + rng.next() % kSlotsPerForm].exchange(fresh, std::memory_order_acq_rel);
    g_retired[form].fetch_add(1, std::memory_order_relaxed);
    old->retired_ns = mono_ns();
    old->cookie = bulkrcu_get_state();
    // Retires that may be made inside a reader are, half of the time.
    const bool in_reader = (rng.next() & 1) != 0;
    switch (form) {
      case kSync:
        bulkrcu_synchronize();
        kill(old);
        return true;
      case kSyncExpedited:
        bulkrcu_synchronize_expedited();
        kill(old);
        return true;
      case kCond: {
        const unsigned long cookie = bulkrcu_get_state();
        read_section(rng, false);
        bulkrcu_cond_synchronize(cookie);
        kill(old);
        return true;
      }
      case kPoll:
        polled.emplace_back(bulkrcu_get_state(), old);
        reap(polled, false);
        return true;
      case kStartPoll:
        started.emplace_back(bulkrcu_start_poll(), old);
        reap(started, false);
        return true;
      case kDeferNowait:
        if (!bulkrcu_defer_nowait(kill_cb, old)) {
          g_nowait_refused.fetch_add(1, std::memory_order_relaxed);
          bulkrcu_synchronize();
          kill(old);
        }
        return true;
      default:
        break;
    }
    if (in_reader) bulkrcu_read_lock();
    switch (form) {
      case kCall:
        bulkrcu_call(&old->head, call_cb);
        break;
      case kKvfree:
        bulkrcu_kvfree(old);
        break;
      case kKfreeHead:
        bulkrcu_kfree_head(old, &old->head);
        break;
      case kDefer:
        bulkrcu_defer(kill_cb, old);
        break;
      case kObjRetire:
        cxx_of(old)->retire();
        break;
      case kRcuRetire:
        bulkrcu::rcu_retire(old, FreeDeleter{});
        break;
      case kRcuRetireNode:
        bulkrcu::rcu_retire(old, CountingDeleter{&g_node_deleter_runs});
        break;
      case kRcuRetireDefault:
        bulkrcu::rcu_retire(old);
        break;
      default:
        ADD_FAILURE() << "form " << form << " has no writer";
    }
    if (in_reader) bulkrcu_read_unlock();
    return true;
  }

  // A form with kMaxInFlight objects retired and not yet deleted is skipped for a while (the
  // kernel's rcutorture keeps a short pipeline too): a backlog would make every deleter run
  // long after its retire, after the readers that could see it early have left.
  // The headless forms, whose deletes the test cannot count, are paced by the library's own
  // count of objects waiting (looked at every 64 steps).
  void run(const std::vector<int>& forms) {
    unsigned skipped = 0;
    bool headless_backlog = false;
    for (unsigned it = 0; !g_stop.load(std::memory_order_relaxed); ++it) {
      if (it % 64 == 0) {
        const bulkrcu_stats st = stats();
        headless_backlog = st.kv_pending_objects + st.callbacks_pending >= 8 * kMaxInFlight;
      }
      const int f = forms[it % forms.size()];
      const long in_flight =
          g_retired[f].load(std::memory_order_relaxed) - g_killed[f].load(std::memory_order_relaxed);
      if (has_test_deleter(f) ? in_flight >= kMaxInFlight : headless_backlog) {
        if (++skipped >= forms.size()) {
          nap_us(100);
          skipped = 0;
        }
        continue;
      }
      skipped = 0;
      if (!step(f)) break;
      if (it % 16 == 0) read_section(rng, false);
    }
    reap(polled, true);
    reap(started, true);
  }
};

// ---- set-up -------------------------------------------------------------------------------
double env_seconds() {
  const char* v = getenv("BULKRCU_TORTURE_SECONDS");
  if (!v || !*v) return 3.0;
  char* end = nullptr;
  const double s = strtod(v, &end);
  if (*end != '\0' || !(s > 0) || s > 86400) {
    ADD_FAILURE() << "BULKRCU_TORTURE_SECONDS=" << v << ": expected seconds in (0, 86400]";
    return 3.0;
  }
  return s;
}

std::vector<int> env_forms() {
  std::vector<int> forms;
  const char* v = getenv("BULKRCU_TORTURE_FORMS");
  if (!v || !*v) {
    for (int f = 0; f < kNumForms; ++f) forms.push_back(f);
    return forms;
  }
  std::string list(v);
  for (size_t pos = 0; pos <= list.size();) {
    size_t comma = list.find(',', pos);
    if (comma == std::string::npos) comma = list.size();
    const std::string name = list.substr(pos, comma - pos);
    pos = comma + 1;
    if (name.empty()) continue;
    int found = -1;
    for (int f = 0; f < kNumForms; ++f)
      if (name == kFormNames[f]) found = f;
    if (found < 0) {
      ADD_FAILURE() << "BULKRCU_TORTURE_FORMS: unknown form '" << name << "'";
      continue;
    }
    if (std::find(forms.begin(), forms.end(), found) == forms.end()) forms.push_back(found);
  }
  return forms;
}

bool map_dead_table() {
  for (std::uint64_t ids = 1ull << 32; ids >= (1ull << 24); ids /= 2) {
    void* m =
        mmap(nullptr, ids / 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) continue;
    g_dead = static_cast<std::uint64_t*>(m);
    g_max_ids = ids;
    return true;
  }
  return false;
}

TEST(Torture, ReadersNeverReachFreedObjects) {
  ASSERT_TRUE(map_dead_table());
  const double seconds = env_seconds();
  const std::vector<int> forms = env_forms();
  ASSERT_FALSE(forms.empty());
  for (int f : forms) {
    g_enabled[f] = true;
    for (int i = 0; i < kSlotsPerForm; ++i) g_read_slots[g_nr_read_slots++] = f * kSlotsPerForm + i;
  }

  // The per-CPU mode this run tortures (ctest runs it in each: tests/torture.cmake).
  bulkrcu_read_lock();
  bulkrcu_read_unlock();
  const bulkrcu_stats s0 = stats();
  const bool expect_no_rseq = env_set("BULKRCU_EXPECT_NO_RSEQ") || env_set("BULKRCU_NO_RSEQ");
  const bool expect_fences = env_set("BULKRCU_EXPECT_NO_MEMBARRIER") || env_set("BULKRCU_NO_MEMBARRIER");
  EXPECT_EQ(s0.percpu_rseq, expect_no_rseq ? 0u : 1u);
  EXPECT_EQ(s0.reader_fences, expect_fences ? 1u : 0u);
  const char* mode = s0.percpu_rseq ? (s0.reader_fences ? "rseq, fenced readers" : "rseq")
                                    : (s0.reader_fences ? "try-lock, fenced readers" : "try-lock");

  for (int i = 0; i < kSlots; ++i) {
    Obj* o = make(i / kSlotsPerForm);
    ASSERT_NE(o, nullptr);
    g_slot[i].store(o, std::memory_order_release);
  }
  for (auto& s : g_spares) s = make(kDeferNowaitSig);
  install_handler(SIGUSR1, read_handler);
  install_handler(SIGUSR2, retire_handler);

  g_t0_ns = mono_ns();
  const std::uint64_t deadline = g_t0_ns + static_cast<std::uint64_t>(seconds * 1e9);
  const unsigned ncpu = std::max(1u, std::thread::hardware_concurrency());
  const int nreaders = static_cast<int>(std::max(4u, 2 * ncpu));  // more threads than CPUs
  std::vector<std::thread> readers;
  for (int r = 0; r < nreaders; ++r)
    readers.emplace_back([r] {
      Rng rng{0x1234567ull * static_cast<std::uint64_t>(r + 1) | 1};
      while (!g_stop.load(std::memory_order_relaxed)) read_section(rng, true);
    });
  // One slow reader: a section of 200-400 ms (asleep, rechecking every 5 ms), then 1.5 s
  // outside. It sees a grace period end early even where a retire takes a drain period to
  // reach its grace period (blocks that close slowly, idle CPUs), and keeps the grace periods
  // waiting part of the time.
  readers.emplace_back([] {
    Rng rng{0x5EED5EEDull};
    while (!g_stop.load(std::memory_order_relaxed)) {
      bulkrcu_read_lock();
      Held held[kHeld];
      for (auto& h : held) h = reach(g_read_slots[rng.next() % g_nr_read_slots]);
      const std::uint64_t until = mono_ns() + 200000000 + rng.next() % 200000000;
      while (mono_ns() < until && !g_stop.load(std::memory_order_relaxed)) {
        nap_us(5000);
        for (auto& h : held) still_alive(h);
      }
      bulkrcu_read_unlock();
      g_slow_holds.fetch_add(1, std::memory_order_relaxed);
      for (int i = 0; i < 300 && !g_stop.load(std::memory_order_relaxed); ++i) nap_us(5000);
    }
  });
  std::atomic<long> short_lived{0};
  std::thread spawner([&] {  // short-lived reader threads, one after another
    for (unsigned n = 0; !g_stop.load(std::memory_order_relaxed); ++n) {
      std::thread t([n] {
        Rng rng{(n + 1) * 0xABCDEFull | 1};
        for (int i = 0; i < 50; ++i) read_section(rng, true);
      });
      t.join();
      short_lived.fetch_add(1, std::memory_order_relaxed);
    }
  });
  // Writers: the forms that wait for a grace period on the writer (one per grace period) get a
  // writer of their own, so that they do not slow the others down to their pace.
  std::vector<std::vector<int>> writer_forms(2);
  for (int f : forms) {
    if (f == kDeferNowaitSig) continue;  // retired by the signal handler
    const bool waits = f == kSync || f == kSyncExpedited || f == kCond;
    writer_forms[waits ? 0 : 1].push_back(f);
  }
  if (writer_forms[0].empty()) writer_forms[0] = writer_forms[1];
  if (writer_forms[1].empty()) writer_forms[1] = writer_forms[0];
  std::vector<std::thread> writers;
  std::vector<Writer> wstate(3);
  if (!writer_forms[0].empty())
    for (int w = 0; w < 3; ++w) {
      wstate[w].rng.s = 0xC0FFEEull * static_cast<std::uint64_t>(w + 1) | 1;
      writers.emplace_back([&, w] { wstate[w].run(writer_forms[w == 0 ? 0 : 1]); });
    }
  std::vector<pthread_t> targets;
  for (auto& t : readers) targets.push_back(t.native_handle());
  for (auto& t : writers) targets.push_back(t.native_handle());
  const bool sig_retire = g_enabled[kDeferNowaitSig];
  std::thread signaller([&] {  // readers and retires in handlers, on readers and writers
    for (unsigned i = 0; !g_stop.load(std::memory_order_relaxed); ++i) {
      pthread_kill(targets[i % targets.size()], (sig_retire && i % 2) ? SIGUSR2 : SIGUSR1);
      if (sig_retire)
        for (auto& s : g_spares)
          if (!s.load(std::memory_order_relaxed)) {
            Obj* o = make(kDeferNowaitSig);
            if (o && (o = s.exchange(o))) destroy_unreachable(o);  // never: only we refill
          }
      if (i % 64 == 0) free_refused();
      nap_us(50);
    }
  });

  // The run lasts its time and until everything it checks has happened a few times: on a
  // loaded machine (or under a sanitizer, where signals wait for an intercepted call) the time
  // alone may not be enough, and the checks below must not depend on scheduling. A run that
  // never gets there is caught by ctest's timeout.
  auto covered = [&] {
    for (int f : forms)
      if (g_retired[f].load(std::memory_order_relaxed) < 16) return false;
    return g_long_holds.load() > 0 && g_sleep_holds.load() > 0 && g_slow_holds.load() > 0 &&
           g_handler_reads.load() > 0 && short_lived.load() > 0 &&
           (!sig_retire || g_handler_retires.load() > 0);
  };
  bool told = false;
  while (!g_stop.load(std::memory_order_relaxed) && !g_ids_exhausted.load()) {
    const std::uint64_t now = mono_ns();
    if (now >= deadline && covered()) break;
    if (now >= deadline + 30000000000ull && !told) {
      told = true;
      fprintf(stderr,
              "bulkrcu-torture: 30 s past the deadline and not every form and kind of reader has run yet\n");
    }
    nap_us(2000);
  }
  g_stop = true;
  const double ran_s = static_cast<double>(mono_ns() - g_t0_ns) / 1e9;
  signaller.join();
  for (auto& t : writers) t.join();
  spawner.join();
  for (auto& t : readers) t.join();
  install_handler(SIGUSR1, SIG_IGN);
  install_handler(SIGUSR2, SIG_IGN);
  free_refused();
  bulkrcu::rcu_barrier();  // every deleter of a retire above has run

  const long detections = g_detections.load();
  if (detections > 0) {
    while (!g_first.taken.load(std::memory_order_acquire)) sched_yield();
    fprintf(stderr,
            "bulkrcu-torture: EARLY FREE DETECTED (%s mode): %ld checks found freed objects; the first "
            "after %.3f s: form %s, %s, object %llu (read %llu)\n",
            mode, detections, static_cast<double>(g_first.at_ns) / 1e9, kFormNames[g_first.form],
            kKindNames[g_first.kind], static_cast<unsigned long long>(g_first.id),
            static_cast<unsigned long long>(g_first.seen));
    for (int f = 0; f < kNumForms; ++f)
      for (int k = 0; k < kNumKinds; ++k)
        if (long n = g_detect[f][k].load())
          fprintf(stderr, "bulkrcu-torture:   form %-20s %-46s %ld\n", kFormNames[f], kKindNames[k], n);
  }
  EXPECT_EQ(detections, 0) << "readers reached freed objects (see bulkrcu-torture lines above)";

  // Every object a form retired was deleted exactly once (the dead-table aborts on a second
  // time); the headless forms' frees are not visible to the test (LeakSanitizer sees a lost one).
  for (int f = 0; f < kNumForms; ++f) {
    if (!g_enabled[f]) {
      EXPECT_EQ(g_retired[f].load(), 0);
      continue;
    }
    EXPECT_GT(g_retired[f].load(), 0) << "form " << kFormNames[f] << " never ran";
    if (has_test_deleter(f)) {
      EXPECT_EQ(g_killed[f].load(), g_retired[f].load())
          << "form " << kFormNames[f] << ": deleted != retired";
    }
  }
  if (g_enabled[kRcuRetireNode]) {
    EXPECT_EQ(g_node_deleter_runs.load(), g_retired[kRcuRetireNode].load());
  }
  EXPECT_GT(g_long_holds.load(), 0);
  EXPECT_GT(g_slow_holds.load(), 0);
  EXPECT_GT(g_sleep_holds.load(), 0);
  EXPECT_GT(g_handler_reads.load(), 0);
  EXPECT_GT(short_lived.load(), 0);
  if (sig_retire) {
    EXPECT_GT(g_handler_retires.load(), 0);
  }
  EXPECT_FALSE(g_ids_exhausted.load() && ran_s < seconds * 0.5) << "the dead-table's ids ran out early";

  const bulkrcu_stats s1 = stats();
  std::string per_form;
  for (int f : forms) {
    char buf[128];
    const long n = g_killed[f].load();
    if (has_test_deleter(f) && n > 0)
      snprintf(buf, sizeof buf, " %s=%ld (%.2f/%.1f ms)", kFormNames[f], g_retired[f].load(),
               static_cast<double>(g_lat_sum[f].load()) / 1e6 / static_cast<double>(n),
               static_cast<double>(g_lat_max[f].load()) / 1e6);
    else
      snprintf(buf, sizeof buf, " %s=%ld", kFormNames[f], g_retired[f].load());
    per_form += buf;
  }
  printf(
      "torture (%s mode, %.1f s): %llu objects, %ld sections (%ld held 1-20 ms spinning, %ld "
      "sleeping, %ld 200-400 ms; %ld in handlers), %ld short-lived threads, %ld retires in "
      "handlers, %ld nowait refused, %llu grace periods; retired (mean/max retire-to-delete):%s\n",
      mode, ran_s, static_cast<unsigned long long>(g_next_id.load() - 1), g_sections.load(),
      g_long_holds.load(), g_sleep_holds.load(), g_slow_holds.load(), g_handler_reads.load(),
      short_lived.load(), g_handler_retires.load(), g_nowait_refused.load(),
      static_cast<unsigned long long>(s1.grace_periods - s0.grace_periods), per_form.c_str());

  printf(
      "torture: library: %llu callbacks invoked, kvfree %llu retired, %llu freed (%llu by retiring "
      "threads, %llu by the runtime thread), %llu budget hits, %llu head fallbacks, %llu monitor passes\n",
      static_cast<unsigned long long>(s1.callbacks_invoked - s0.callbacks_invoked),
      static_cast<unsigned long long>(s1.kv_retired - s0.kv_retired),
      static_cast<unsigned long long>(s1.kv_freed - s0.kv_freed),
      static_cast<unsigned long long>(s1.kv_freed_by_retirers - s0.kv_freed_by_retirers),
      static_cast<unsigned long long>(s1.kv_freed_by_runtime - s0.kv_freed_by_runtime),
      static_cast<unsigned long long>(s1.kv_budget_hits - s0.kv_budget_hits),
      static_cast<unsigned long long>(s1.kv_fallback_head - s0.kv_fallback_head),
      static_cast<unsigned long long>(s1.kv_monitor_passes - s0.kv_monitor_passes));

  for (auto& s : g_slot) destroy_unreachable(s.exchange(nullptr));
  for (auto& s : g_spares)
    if (Obj* o = s.exchange(nullptr)) destroy_unreachable(o);
}

}  // namespace
