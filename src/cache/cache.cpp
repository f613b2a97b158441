// bulkrcu/src/cache/cache.cpp: RCU object caches (layer cache). See cache.h for the structure
// and the invariants, docs/CACHE.md for the design.
//
// Lock order: a slot lock (held for a few instructions, never across another lock) ; the
// registry mutex -> a cache's mutex. A cache's mutex is a leaf: under it no other lock is
// taken, no page is allocated or freed and no grace period is waited for, so fork's prepare
// handler may take it after every lock of the layers below.
#include "cache/cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>

#include "base/base.h"
#include "base/user_code.h"
#include "bulkrcu/rcu.h"
#include "cache/cache_rseq.h"
#include "callback/callback.h"
#include "gp/gp.h"
#include "percpu/percpu.h"
#include "pool/pool.h"

struct bulkrcu_cache;

// The address map's first level (declared in the public header, which reads it inline).
alignas(bulkrcu::detail::kCacheLine) unsigned int* bulkrcu__cache_map[BULKRCU__CACHE_MAP_CELLS];

namespace bulkrcu::detail::cache {
namespace {

// ---- sizing --------------------------------------------------------------------------------
#ifdef BULKRCU_TESTING
constexpr std::size_t kMinObjsPerSlab = 8;
constexpr std::size_t kSheafCapMax = 4;  // every array fills within a few calls
constexpr std::size_t kMaxReady = 2;     // ready arrays kept in the depot
constexpr std::uint64_t kGpPaceNs = 0;   // grace periods as often as the depot asks
constexpr std::size_t kDriveWaiting = 2;
constexpr std::uint64_t kDrivePaceNs = 0;
constexpr std::uint64_t kDriveSealed = 2;
constexpr std::size_t kMaxEmptySheaves = 1;
constexpr std::size_t kKeepEmptySlabs = 0;
constexpr std::size_t kLocalWaitMax = 2;  // a CPU's own retired arrays (LocalDepot)
constexpr std::size_t kLocalWaitBytes = 1;
constexpr std::size_t kLocalDrive = 1;
#else
constexpr std::size_t kMinObjsPerSlab = 32;  // "a few dozen objects" per slab
constexpr std::size_t kSheafCapMax = 504;    // (4096 - 64) / 8: a sheaf is one page
constexpr std::size_t kSheafBytes = 32768;   // cap = clamp(32 KiB / stride, 8, kSheafCapMax)
// Ready arrays kept in the depot: as many as hold 2 MiB of objects, at least 32 (128 arrays of
// 504 24-byte objects). Beyond it ready arrays go back to the slabs, which touches every
// object, and the next allocations refill from the slabs, touching them again: with 32 for
// every size, 8-16% of the arrays took that trip in cache_bench (a grace period of a loaded
// machine holds more than 32 arrays of small objects); with 128, under 0.1%.
constexpr std::size_t kMaxReadyBytes = std::size_t{2} << 20;
constexpr std::size_t kMaxReady = 32;
// The depot asks for a grace period at most this often (one covers every array sealed before
// it: at 25M retires a second, 250 us is about 12 arrays).
constexpr std::uint64_t kGpPaceNs = 250000;
// An allocation that finds no ready array while at least kDriveWaiting retired arrays wait tries
// to run their grace period itself (gp::try_grace_period_now: never blocks, gives up when a
// reader is inside a section), at most once per kDrivePaceNs per cache: the runtime thread may
// be waiting for a CPU, and meanwhile every refill would come from the slabs (cold objects,
// more memory).
constexpr std::size_t kDriveWaiting = 4;
constexpr std::uint64_t kDrivePaceNs = 200000;
// ... or sooner, once kDriveSealed more arrays have been sealed since the last attempt, so that
// the pace follows the retire rate: where a thread retires 100-200 M objects a second, 200 us
// is 40-80 arrays a thread, most of the way to the allocator's pacing bound (g_throttle_bytes).
constexpr std::uint64_t kDriveSealed = 32;
constexpr std::size_t kMaxEmptySheaves = 4;
constexpr std::size_t kKeepEmptySlabs = 8;  // slabs kept empty: fewer trips to the zone
// A CPU keeps up to kLocalWaitMax of its own retired arrays (at most kLocalWaitBytes of
// objects) in its LocalDepot, and tries to run their grace period itself once kLocalDrive of
// them wait with the oldest not yet elapsed.
constexpr std::size_t kLocalWaitMax = 16;
constexpr std::size_t kLocalWaitBytes = std::size_t{512} << 10;
constexpr std::size_t kLocalDrive = 8;  // 2, 4, 8: 3.8-4.0, 3.8-3.9, 3.6-3.8 ns in kfree-scale's loop
#endif
// Pacing the allocator to the grace period. When a refill finds no ready array while retired
// arrays holding at least g_throttle_bytes of objects wait, the allocation waits a little for
// the oldest one's grace period (at most kThrottleWaitNs, in naps of kThrottleNapNs) before it
// takes new objects from the slabs. Why: with both CPUs busy (a writer flat out, a reader
// spinning) a grace period stalls for milliseconds whenever a reader is preempted inside its
// section, and every refill meanwhile mapped fresh slabs: the flood's RSS jumped from 6 to
// 11-17 MiB in a few such stalls (5 of 6 runs). A nap gives the CPU to the preempted reader
// or the runtime thread, which usually ends the stall. The wait is bounded, so an allocation
// never depends on a reader (a reader inside a section may be waiting for a lock the
// allocating thread holds); inside a reader it is skipped (the grace period would wait for
// the caller itself), as it is where kvfree's throttle is (may_wait_for_reclaim: in user code
// and on bulkrcu's own threads).
constexpr std::uint64_t kThrottleWaitNs = 1000000;
constexpr std::uint64_t kThrottleNapNs = 20000;
std::atomic<std::size_t> g_throttle_bytes{std::size_t{2} << 20};
constexpr std::size_t kSheafHeader = 64;

// ---- arrays ("sheaves") --------------------------------------------------------------------
// One pool page. nr at 0 and cap at 8, objs from 64: cache_rseq.h relies on it.
struct Sheaf {
  std::size_t nr;        // owner: see cache.h
  std::size_t cap;       //
  unsigned long cookie;  // pending: the grace period its objects wait for
  Sheaf* next;           // inbox / depot list link
  std::uintptr_t pending;
  std::uint64_t charged;       // pending: bytes it holds in the budget (g_pending_bytes)
  std::uint64_t charged_objs;  // pending: its objects in g_pending_objects
  std::uint32_t cpu;           // the CPU that sealed it (its objects were last written there)
  std::uint32_t pad;
  void** objs() noexcept { return reinterpret_cast<void**>(reinterpret_cast<char*>(this) + kSheafHeader); }
};
static_assert(sizeof(Sheaf) == kSheafHeader);
static_assert(offsetof(Sheaf, nr) == 0 && offsetof(Sheaf, cap) == 8);

// A CPU's own retired arrays, so that the cycle "the retired array fills, waits one grace
// period, becomes the allocation array; the emptied allocation array collects the next retires"
// stays on one CPU: no cache mutex, no shared list, no shared counter per array. Why: with two
// threads on two CPUs sharing one cache, every array passed through the depot (mutex, inbox,
// empty stack, counters: about 20 atomic operations on lines the other CPU had written) and
// kfree-scale cost 6.2-7.7 ns an object against 3.5 ns with both threads on one CPU, and 3.3-3.6
// ns with one cache per thread.
//
// Protocol: only slow paths touch it (never a restartable sequence), under `lock`, try-locked
// by the owner side (whatever CPU its thread has moved to since: the depot is only a place to
// keep arrays; a busy lock, as in a signal handler that interrupted a holder, sends the caller
// to the shared depot) and locked by the remote side (barrier, shrink, destroy, memory
// pressure, info), which moves its arrays to the depot. An array the owner side has taken out
// of a slot is in the LocalDepot it holds before it unlocks, or in the shared inbox: a remote
// that detached every slot and then locks every LocalDepot sees it (see seal_all_cpus).
// Invariants: wait_head..wait_tail are sealed arrays (pending, cookie order: each seal takes a
// newer cookie), nwait of them, nwait <= the cache's local_max; spare is nullptr or an array
// with nr == 0.
struct LocalDepot {
  SlotLock lock;
  std::uint16_t nwait;
  std::uint16_t since_drive;  // arrays sealed here since the last full attempt (saturating)
  Sheaf* wait_head;
  Sheaf* wait_tail;
  Sheaf* spare;
  std::uint64_t drive_ns;  // the last full attempt at a grace period (membarrier) from here
  std::uint64_t sealed;    // cumulative: arrays sealed into this depot (Info::sealed)
  std::uint64_t reused;    // cumulative: ... that became allocation arrays here (Info::reused)
  std::uint64_t driven;    // cumulative: grace periods run here (Info::driven)
};
static_assert(sizeof(LocalDepot) <= kCacheLine);

// A slot word: (array address | nr), 0 for none (cache_rseq.h). Owner: this CPU's sequences;
// remote: under lock + fence_remote. Two cache lines: the sequences' words on the first, the
// LocalDepot on the second (and neighbouring CPUs' slots 128 bytes apart: Intel's adjacent-line
// prefetcher pairs lines, and 64-byte slots measured 5-10% slower in kfree-scale).
struct alignas(2 * kCacheLine) CpuSlot {
  SlotLock lock;        // 0: percpu.h's protocol
  std::uintptr_t main;  // 8: the array to allocate from and free into
  std::uintptr_t rcu;   // 16: the array collecting free_rcu
  char pad[kCacheLine - 24];
  LocalDepot local;  // 64
  char pad2[kCacheLine - sizeof(LocalDepot)];
};
constexpr std::size_t kMainOff = offsetof(CpuSlot, main);
constexpr std::size_t kRcuOff = offsetof(CpuSlot, rcu);
static_assert(kMainOff == BULKRCU__CACHE_MAIN_OFF && kRcuOff == BULKRCU__CACHE_RCU_OFF &&
              sizeof(CpuSlot) == 2 * kCacheLine);
#if BULKRCU_HAVE_RSEQ_ASM
static_assert(sizeof(CpuSlot) == subtle::kCacheSlotBytes);  // cache_rseq.h finds slots by a shift
#endif
static_assert(kSheafCapMax <= subtle::kSheafNrMask);

// An array into a slot word (its nr moves into the word) and back (the word's nr is written
// back into the array, which the caller then owns).
BULKRCU_ALWAYS_INLINE std::uintptr_t pack(Sheaf* s) noexcept {
  return s ? reinterpret_cast<std::uintptr_t>(s) | s->nr : 0;
}
BULKRCU_ALWAYS_INLINE Sheaf* unpack(std::uintptr_t w) noexcept {
  if (!w) return nullptr;
  Sheaf* s = reinterpret_cast<Sheaf*>(w & ~subtle::kSheafNrMask);
  s->nr = w & subtle::kSheafNrMask;
  return s;
}

// ---- slabs -----------------------------------------------------------------------------------
enum SlabList : std::uint32_t { kNone = 0, kPartial, kFull, kEmpty, kDying };
constexpr std::uint64_t kSlabMagic = 0x62726375536c6162ull;  // "brcuSlab"

struct Cache;
struct Slab {
  std::uint64_t magic;
  Cache* cache;
  Slab* next;  // under the cache's mutex
  Slab* prev;
  char* objs;
  void* freelist;        // linked through the word at Cache::link_off
  unsigned long cookie;  // kDying: back to the pool once elapsed
  std::uint32_t inuse;   // objects off the free list (in arrays or with users)
  std::uint32_t bump;    // objects [bump, nobj) never handed out
  std::uint32_t list;
  std::uint32_t nobj;
  std::uint32_t order;                 // the slab is 2^order pages
  std::atomic<std::uint64_t> bits[1];  // debug: 1 = a user holds the object (nobj bits)
};
constexpr std::size_t kSlabHeaderFixed = offsetof(Slab, bits);

// Retired objects that found no array (free_rcu's fallback), linked through their
// out-of-object word; the drainer gives each taken chain one cookie.
struct PendingChain {
  void* head = nullptr;
  unsigned long cookie = 0;
  std::size_t n = 0;
};
constexpr std::size_t kPendingChains = 8;

struct SlabListHead {
  Slab* head = nullptr;
  std::size_t n = 0;
};

struct Cache {
  // First: the public header's inline fast paths read it through the handle. `slots` there is
  // set once, last in bulkrcu_cache_create_ctor, and only when those paths are exact (see
  // set_fast); the library's own fast paths use the fields below.
  bulkrcu__cache_fast fast{};
  char name[64];
  std::size_t size, stride, align, link_off, objs_off, slab_bytes, sheaf_cap;
  unsigned order, flags;
  std::size_t max_ready;  // ready arrays the depot keeps (kMaxReady, kMaxReadyBytes)
  std::size_t local_max;  // retired arrays a LocalDepot keeps (kLocalWaitMax, kLocalWaitBytes)
  std::uint32_t nobj;
  std::uint32_t tag;  // address-map entry of its slabs' pages: (id << 8) | (order + 1)
  bool poison;        // debug mode, neither typesafe nor constructed
  bool rseq;          // mode() == kRseq (chosen once per process), read by every fast path
  void (*ctor)(void*);
  CpuSlot* slots;

  pthread_mutex_t mu;
  // Written under mu:
  SlabListHead lists[5];                // indexed by SlabList (kNone unused)
  Sheaf* waiting = nullptr;             // cookies not yet elapsed, oldest first
  Sheaf* waiting_tail = nullptr;        // its newest (the append point)
  Sheaf* ready = nullptr;               // allocate as they are
  PendingChain chains[kPendingChains];  // overflow chains waiting for their cookie
  std::size_t nr_ready = 0, nr_waiting = 0;
  std::uint64_t slab_allocs = 0, slab_frees = 0, reused = 0;
  std::uint64_t trimmed = 0, filled = 0;  // ready arrays back to the slabs; arrays filled from them
  std::uint64_t gp_asked_ns = 0;          // when the depot last asked for a grace period
  std::uint64_t gp_driven_ns = 0;         // when an allocation last tried to run one itself
  std::uint64_t sealed_at_drive = 0;      // `sealed` then
  std::uint64_t driven = 0;               // cumulative: such attempts that succeeded
  std::uint64_t throttled = 0;            // cumulative: refills that waited for a grace period
  std::uint64_t throttle_timeouts = 0;    // ... and gave up at kThrottleWaitNs

  // Lock-free, any context:
  std::atomic<Sheaf*> inbox{nullptr};        // sealed arrays (pending or free objects)
  std::atomic<Sheaf*> inbox_empty{nullptr};  // empty arrays (the depot keeps them here)
  std::atomic<std::size_t> nr_empty{0};      // about |inbox_empty|
  std::atomic<void*> overflow{nullptr};      // retired objects without an array
  std::atomic<std::uint64_t> overflowed{0};  // cumulative
  std::atomic<std::uint64_t> sealing{0};     // free_rcu slow paths holding a detached array
  std::atomic<std::uint64_t> sealed{0};

  Cache* reg_next = nullptr;  // registry, under g_reg_mu
  Cache* reg_prev = nullptr;
};
static_assert(offsetof(Cache, fast) == 0);  // the handle points at the header's fast line

pthread_mutex_t g_reg_mu = PTHREAD_MUTEX_INITIALIZER;
Cache* g_caches = nullptr;  // under g_reg_mu

// Cache ids (the address map's tags), 1..kMaxCaches - 1, under g_reg_mu; 0 is never used.
constexpr std::uint32_t kMaxCaches = std::uint32_t{1} << 24;
std::uint64_t* g_ids = nullptr;  // bitmap, kMaxCaches bits, mapped on first use
std::uint32_t g_id_hint = 1;     // search start: the lowest id that may be free

// ---- messages (async-signal-safe: no printf) ---------------------------------------------------
struct Msg {
  char buf[320];
  std::size_t n = 0;
  Msg& s(const char* t) noexcept {
    while (t && *t && n + 1 < sizeof buf) buf[n++] = *t++;
    buf[n] = 0;
    return *this;
  }
  Msg& hex(std::uintptr_t v) noexcept {
    char t[19] = "0x";
    int i = 17;
    char d[16];
    int k = 0;
    do {
      d[k++] = "0123456789abcdef"[v & 15];
      v >>= 4;
    } while (v);
    i = 2;
    while (k) t[i++] = d[--k];
    t[i] = 0;
    return s(t);
  }
  Msg& dec(std::uint64_t v) noexcept {
    char d[24];
    int k = 0;
    do {
      d[k++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v);
    char t[24];
    int i = 0;
    while (k) t[i++] = d[--k];
    t[i] = 0;
    return s(t);
  }
};

[[noreturn]] BULKRCU_NOINLINE void die(const char* call, const Cache* c, const void* p,
                                       const char* what) noexcept {
  Msg m;
  m.s(call).s("(\"").s(c ? c->name : "?").s("\"");
  if (p) m.s(", ").hex(reinterpret_cast<std::uintptr_t>(p));
  m.s("): ").s(what);
  fatal(m.buf);
}

// ---- the address map: which pages are slabs, and of what order ---------------------------------
// 47-bit addresses, 2 MiB frames: g_map[frame >> 13] points to a lazily mapped 16 MiB table
// (MAP_NORESERVE: only the touched pages cost memory) of 8192 frames x 512 pages, one 32-bit
// entry per page: 0 = no slab, else the slab's tag, (cache id << 8) | (order + 1) (Cache::tag).
// Entries are set when a slab is made (before any of its objects is handed out) and cleared
// before it goes back to the pool; the tables are never unmapped, so a racing lookup is
// memory-safe. The cache id makes the free checks one table load: an entry equal to the
// cache's tag proves the object lies in a slab of that cache, without reading the slab header.
constexpr unsigned kFrameShift = 21;
constexpr std::size_t kL2Frames = 8192;
constexpr std::size_t kPagesPerFrameMax = 512;
// Read on every fast path; set at load time (cache_init) and never changed.
unsigned g_page_shift = 12;
bool g_debug = false;

// The first level is the exported bulkrcu__cache_map (the public header's inline free paths
// read it); reached here through atomic_ref.
BULKRCU_ALWAYS_INLINE std::atomic_ref<std::uint32_t*> map_cell(std::size_t i) noexcept {
  return std::atomic_ref<std::uint32_t*>(bulkrcu__cache_map[i]);
}
constexpr std::size_t kL2Bytes = kL2Frames * kPagesPerFrameMax * sizeof(std::uint32_t);

BULKRCU_NOINLINE std::uint32_t* map_create_l2(std::atomic_ref<std::uint32_t*> cell) noexcept;

// The entry of a's page; nullptr when its table does not exist (and `create` is false or the
// table cannot be mapped). The lookup is inline: free checks run it on every call.
// A table covers kL2Frames frames (16 GiB, 2^kL2Shift bytes); the entry of a page inside it is
// its page index there, (a >> page shift) & g_l2_mask (dense for any page size: 16 KiB pages
// use the first quarter of the table).
constexpr unsigned kL2Shift = kFrameShift + 13;
static_assert(std::size_t{1} << (kL2Shift - kFrameShift) == kL2Frames);
constexpr std::size_t kL2Cells = std::size_t{1} << (47 - kL2Shift);
static_assert(kL2Cells == BULKRCU__CACHE_MAP_CELLS && kL2Shift == 34);  // the header's a >> 34
std::uintptr_t g_l2_mask = (std::uintptr_t{1} << (kL2Shift - 12)) - 1;  // set with g_page_shift

BULKRCU_ALWAYS_INLINE std::atomic<std::uint32_t>* map_entry(std::uintptr_t a, bool create) noexcept {
  const std::uintptr_t cell_i = a >> kL2Shift;
  if (BULKRCU_UNLIKELY(cell_i >= kL2Cells)) return nullptr;  // beyond 47 bits
  std::atomic_ref<std::uint32_t*> cell = map_cell(cell_i);
  std::uint32_t* l2 = cell.load(std::memory_order_acquire);
  if (BULKRCU_UNLIKELY(!l2)) {
    if (!create) return nullptr;
    l2 = map_create_l2(cell);
    if (!l2) return nullptr;
  }
  return reinterpret_cast<std::atomic<std::uint32_t>*>(l2 + ((a >> g_page_shift) & g_l2_mask));
}

// Maps a table for `cell` (or takes the one a racing caller installed).
std::uint32_t* map_create_l2(std::atomic_ref<std::uint32_t*> cell) noexcept {
  void* m =
      mmap(nullptr, kL2Bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) return nullptr;
  std::uint32_t* expected = nullptr;
  if (cell.compare_exchange_strong(expected, static_cast<std::uint32_t*>(m), std::memory_order_acq_rel,
                                   std::memory_order_acquire))
    return static_cast<std::uint32_t*>(m);
  munmap(m, kL2Bytes);
  return expected;
}

// The map entry of p: 0 when p lies in no slab.
BULKRCU_ALWAYS_INLINE std::uint32_t map_tag(const void* p) noexcept {
  std::atomic<std::uint32_t>* e = map_entry(reinterpret_cast<std::uintptr_t>(p), false);
  return e ? e->load(std::memory_order_relaxed) : 0;
}

BULKRCU_ALWAYS_INLINE Slab* slab_of(const void* p) noexcept {
  const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(p);
  std::atomic<std::uint32_t>* e = map_entry(a, false);
  if (!e) return nullptr;
  const unsigned b = e->load(std::memory_order_relaxed) & 0xff;
  if (!b) return nullptr;
  Slab* s = reinterpret_cast<Slab*>(a & ~((std::uintptr_t{1} << (g_page_shift + b - 1)) - 1));
  return s->magic == kSlabMagic ? s : nullptr;
}

bool set_map(Slab* s, unsigned order, std::uint32_t v) noexcept {
  const std::size_t pages = std::size_t{1} << order;
  for (std::size_t i = 0; i < pages; ++i) {
    std::atomic<std::uint32_t>* e =
        map_entry(reinterpret_cast<std::uintptr_t>(s) + i * pool::page_size(), true);
    if (!e) return false;
    e->store(v, std::memory_order_relaxed);
  }
  return true;
}

// ---- grace periods ---------------------------------------------------------------------------
BULKRCU_ALWAYS_INLINE bool elapsed(unsigned long cookie) noexcept {
#ifdef BULKRCU_CACHE_BUSTED
  (void)cookie;
  return true;  // test-only broken build: the cache torture must catch this
#else
  return gp::poll_state(cookie);
#endif
}

// ---- the budget ---------------------------------------------------------------------------------
// Bytes of objects retired with free_rcu that wait for their grace period (sealed arrays, with
// their page, and the overflow stack's objects), over every cache: kvfree's budget
// (BULKRCU_MAX_PENDING) counts them (pending_bytes()). Charged when an array is sealed (once
// every few hundred objects) or an object overflows, credited when it becomes ready or goes back
// to the slabs. g_newest_cookie is the latest cookie a sealed array took: once it has elapsed,
// every charged array is reusable (promoted or not yet), so pending_bytes() reads 0 even if no
// slow path of the cache has run since (a cache nobody uses must not hold kvfree's budget).
std::atomic<std::uint64_t> g_pending_bytes{0};
std::atomic<std::uint64_t> g_pending_objects{0};  // the objects of those bytes (statistics)
std::atomic<unsigned long> g_newest_cookie{0};
std::atomic<std::uint64_t> g_budget_hits{0};
// BULKRCU_MAX_PENDING, read at the first bulkrcu_cache_create (regular context): free_rcu
// runs in signal handlers and must not parse the environment.
std::uint64_t g_budget = ~std::uint64_t{0};

// Lock-free, async-signal-safe. Over the budget: the grace period is asked for at once (the
// depot's pacing is skipped too, see get_full_sheaf).
void charge(std::uint64_t bytes, std::uint64_t objects, unsigned long cookie) noexcept {
  g_pending_objects.fetch_add(objects, std::memory_order_relaxed);
  if (cookie) {
    unsigned long cur = g_newest_cookie.load(std::memory_order_relaxed);
    while (static_cast<long>(cookie - cur) > 0 &&
           !g_newest_cookie.compare_exchange_weak(cur, cookie, std::memory_order_relaxed)) {
    }
  }
  const std::uint64_t now = g_pending_bytes.fetch_add(bytes, std::memory_order_relaxed) + bytes;
  if (BULKRCU_UNLIKELY(now > g_budget)) {
    g_budget_hits.fetch_add(1, std::memory_order_relaxed);
    gp::request(cookie ? cookie : gp::get_state());
  }
}
void credit(std::uint64_t bytes, std::uint64_t objects) noexcept {
  g_pending_bytes.fetch_sub(bytes, std::memory_order_relaxed);
  g_pending_objects.fetch_sub(objects, std::memory_order_relaxed);
}
bool over_budget() noexcept { return pending_bytes() > g_budget; }

// ---- slab operations (under c->mu) ------------------------------------------------------------
void list_del(Cache* c, Slab* s) noexcept {
  if (s->list == kNone) return;
  SlabListHead& h = c->lists[s->list];
  if (s->prev)
    s->prev->next = s->next;
  else
    h.head = s->next;
  if (s->next) s->next->prev = s->prev;
  s->next = s->prev = nullptr;
  --h.n;
  s->list = kNone;
}
void list_add(Cache* c, Slab* s, SlabList l) noexcept {
  SlabListHead& h = c->lists[l];
  s->prev = nullptr;
  s->next = h.head;
  if (h.head) h.head->prev = s;
  h.head = s;
  ++h.n;
  s->list = l;
}
// Puts s on the list its state calls for (cache.h's slab invariant).
void relist(Cache* c, Slab* s) noexcept {
  SlabList want = s->inuse == 0 ? kEmpty : (s->freelist || s->bump < s->nobj) ? kPartial : kFull;
  if (s->list == want) return;
  list_del(c, s);
  list_add(c, s, want);
}

BULKRCU_ALWAYS_INLINE void*& link_of(const Cache* c, void* o) noexcept {
  return *reinterpret_cast<void**>(static_cast<char*>(o) + c->link_off);
}

void* slab_take(Cache* c, Slab* s) noexcept {
  void* o;
  if (s->freelist) {
    o = s->freelist;
    s->freelist = link_of(c, o);
  } else {
    o = s->objs + std::size_t{s->bump} * c->stride;
    ++s->bump;
  }
  ++s->inuse;
  relist(c, s);
  return o;
}

void slab_put(Cache* c, void* o) noexcept {
  Slab* s = reinterpret_cast<Slab*>(reinterpret_cast<std::uintptr_t>(o) & ~(c->slab_bytes - 1));
  link_of(c, o) = s->freelist;
  s->freelist = o;
  --s->inuse;
  relist(c, s);
}

// Moves empty slabs beyond `keep` off the lists: onto *out (to free after unlocking) or, for a
// typesafe cache, onto the dying list with a cookie.
void trim_empty_locked(Cache* c, std::size_t keep, Slab** out) noexcept {
  while (c->lists[kEmpty].n > keep) {
    Slab* s = c->lists[kEmpty].head;
    list_del(c, s);
    if (c->flags & BULKRCU_CACHE_TYPESAFE_BY_RCU) {
      s->cookie = bulkrcu_start_poll();
      list_add(c, s, kDying);
    } else {
      s->next = *out;
      *out = s;
    }
  }
}
// Dying slabs whose grace period has elapsed, onto *out.
void collect_dying_locked(Cache* c, bool all, Slab** out) noexcept {
  Slab* s = c->lists[kDying].head;
  while (s) {
    Slab* n = s->next;
    if (all || elapsed(s->cookie)) {
      list_del(c, s);
      s->next = *out;
      *out = s;
    }
    s = n;
  }
}

void free_sheaf_objects_locked(Cache* c, Sheaf* s) noexcept {
  void** o = s->objs();
  for (std::size_t i = 0; i < s->nr; ++i) slab_put(c, o[i]);
  s->nr = 0;
}

// ---- debug ------------------------------------------------------------------------------------
void poison_obj(const Cache* c, void* o) noexcept { memset(o, 0x6b, c->size); }

BULKRCU_NOINLINE void check_poison(const Cache* c, void* o) noexcept {
  const unsigned char* b = static_cast<const unsigned char*>(o);
  for (std::size_t i = 0; i < c->size; ++i) {
    if (b[i] != 0x6b) die("bulkrcu_cache_alloc", c, o, "object was written after it was freed");
  }
}

std::size_t obj_index(const Cache* c, const Slab* s, const void* p, const char* call) noexcept {
  const std::uintptr_t off = reinterpret_cast<std::uintptr_t>(p) - reinterpret_cast<std::uintptr_t>(s->objs);
  if (reinterpret_cast<const char*>(p) < s->objs || off % c->stride != 0 || off / c->stride >= s->nobj)
    die(call, c, p, "not the start of an object of this cache");
  return off / c->stride;
}

BULKRCU_NOINLINE void debug_on_alloc(Cache* c, void* p) noexcept {
  Slab* s = slab_of(p);
  if (!s || s->cache != c)
    die("bulkrcu_cache_alloc", c, p, "internal error: object of another cache in an array");
  const std::size_t i = obj_index(c, s, p, "bulkrcu_cache_alloc");
  const std::uint64_t bit = std::uint64_t{1} << (i % 64);
  if (s->bits[i / 64].fetch_or(bit, std::memory_order_relaxed) & bit)
    die("bulkrcu_cache_alloc", c, p, "internal error: object handed out twice");
  if (c->poison) check_poison(c, p);
}

[[noreturn]] BULKRCU_NOINLINE void die_bad_free(const Cache* c, const Slab* s, const void* p,
                                                const char* call) noexcept {
  if (!s) die(call, c, p, "not an object of any cache (foreign pointer)");
  Msg m;
  m.s("object of cache \"").s(s->cache->name).s("\" freed to the wrong cache");
  die(call, c, p, m.buf);
}

// Debug mode: p must be the start of an object that a user holds; clears its bit (double free)
// and poisons.
BULKRCU_NOINLINE void check_free_debug(Cache* c, void* p, const char* call, bool poison_now) noexcept {
  Slab* s = slab_of(p);
  if (!s || s->cache != c) die_bad_free(c, s, p, call);
  {
    const std::size_t i = obj_index(c, s, p, call);
    const std::uint64_t bit = std::uint64_t{1} << (i % 64);
    if (!(s->bits[i / 64].fetch_and(~bit, std::memory_order_relaxed) & bit))
      die(call, c, p, "double free (the object is not allocated)");
    if (poison_now && c->poison) poison_obj(c, p);
  }
}

// Every free checks that p is an object of c, in every mode (a wrong cache would corrupt both):
// one load of the address map (hot: four bytes per page), whose entry must be c's tag; no slab
// header is read. A mismatch aborts with a message naming the cache p belongs to, if any.
[[noreturn]] void die_not_of(Cache* c, void* p, const char* call) noexcept;
BULKRCU_ALWAYS_INLINE void check_free(Cache* c, void* p, const char* call, bool poison_now) noexcept {
  if (BULKRCU_UNLIKELY(g_debug)) return check_free_debug(c, p, call, poison_now);
  if (BULKRCU_UNLIKELY(map_tag(p) != c->tag)) die_not_of(c, p, call);
}

// An array that was retired and whose grace period elapsed becomes ready; debug mode poisons
// its objects now (a reader that still used one would see 0x6b: "use after a deferred free").
void unpend(Sheaf* s) noexcept {
  if (s->pending) credit(s->charged, s->charged_objs);
  s->pending = 0;
  s->charged = 0;
  s->charged_objs = 0;
}
void make_ready(Cache* c, Sheaf* s) noexcept {
  if (s->pending && c->poison) {
    void** o = s->objs();
    for (std::size_t i = 0; i < s->nr; ++i) poison_obj(c, o[i]);
  }
  unpend(s);
}

// ---- lock-free stacks --------------------------------------------------------------------------
void stack_push_chain(std::atomic<Sheaf*>& head, Sheaf* first, Sheaf* last) noexcept {
  Sheaf* h = head.load(std::memory_order_relaxed);
  do {
    last->next = h;
  } while (!head.compare_exchange_weak(h, first, std::memory_order_release, std::memory_order_relaxed));
}
void stack_push(std::atomic<Sheaf*>& head, Sheaf* s) noexcept { stack_push_chain(head, s, s); }

// Takes the first array `pick` accepts: the whole stack is taken with one exchange (no ABA),
// the rest pushed back. Lock-free and async-signal-safe.
template <class Pick>
Sheaf* stack_take_one(std::atomic<Sheaf*>& head, Pick pick) noexcept {
  if (!head.load(std::memory_order_relaxed)) return nullptr;
  Sheaf* all = head.exchange(nullptr, std::memory_order_acquire);
  Sheaf* got = nullptr;
  Sheaf** pp = &all;
  for (Sheaf* s = all; s; pp = &s->next, s = s->next) {
    if (pick(s)) {
      *pp = s->next;
      got = s;
      break;
    }
  }
  if (all) {
    Sheaf* last = all;
    while (last->next) last = last->next;
    stack_push_chain(head, all, last);
  }
  return got;
}

Sheaf* init_sheaf(Cache* c, void* page) noexcept {
  if (reinterpret_cast<std::uintptr_t>(page) & subtle::kSheafNrMask)
    die("bulkrcu_cache", c, page, "internal error: a pool page that is not page-aligned");
  Sheaf* s = static_cast<Sheaf*>(page);
  s->nr = 0;
  s->cap = c->sheaf_cap;
  s->cookie = 0;
  s->next = nullptr;
  s->pending = 0;
  s->charged = 0;
  s->charged_objs = 0;
  s->cpu = 0;
  return s;
}

// ---- per-CPU operations, owner side ----------------------------------------------------------
// kRseq mode (not under TSan): one restartable sequence. Otherwise the slot of
// current_cpu(), try-locked; a busy lock reads as "locked" (a signal handler that interrupted
// its holder, or a remote): the caller takes its slow path.
#if BULKRCU_HAVE_RSEQ_ASM && !BULKRCU_TSAN
#define BULKRCU_CACHE_RSEQ 1
#else
#define BULKRCU_CACHE_RSEQ 0
#endif

template <std::size_t kOff>
BULKRCU_ALWAYS_INLINE std::uintptr_t& field(CpuSlot* s) noexcept {
  if constexpr (kOff == kMainOff)
    return s->main;
  else
    return s->rcu;
}

// nullptr: no array, empty, or the slot is locked (the slow path tells them apart).
template <std::size_t kOff>
BULKRCU_ALWAYS_INLINE void* pop_local(Cache* c) noexcept {
#if BULKRCU_CACHE_RSEQ
  if (BULKRCU_LIKELY(c->rseq)) {
    void* o;
    return subtle::rseq_sheaf_pop<kOff>(c->slots, &o) ? o : nullptr;
  }
#endif
  CpuSlot* s = &c->slots[current_cpu()];
  if (!s->lock.try_lock()) return nullptr;
  void* o = nullptr;
  const std::uintptr_t w = field<kOff>(s);
  if (const std::uintptr_t nr = w & subtle::kSheafNrMask) {
    o = reinterpret_cast<Sheaf*>(w - nr)->objs()[nr - 1];
    field<kOff>(s) = w - 1;
  }
  s->lock.unlock();
  return o;
}

// > 0: stored; 0: no array or full; -1: locked.
template <std::size_t kOff>
BULKRCU_ALWAYS_INLINE long push_local(Cache* c, void* p) noexcept {
#if BULKRCU_CACHE_RSEQ
  if (BULKRCU_LIKELY(c->rseq)) return subtle::rseq_sheaf_push<kOff>(c->slots, c->sheaf_cap, p);
#endif
  CpuSlot* s = &c->slots[current_cpu()];
  if (!s->lock.try_lock()) return -1;
  long r = 0;
  const std::uintptr_t w = field<kOff>(s);
  const std::uintptr_t nr = w & subtle::kSheafNrMask;
  if (w && nr < c->sheaf_cap) {
    reinterpret_cast<Sheaf*>(w - nr)->objs()[nr] = p;
    field<kOff>(s) = w + 1;
    r = static_cast<long>(nr + 1);
  }
  s->lock.unlock();
  return r;
}

// Installs `fresh` in this CPU's slot at kOff and returns the array it replaces in *old
// (nullptr if none); the old array is then owned by the caller. False when the slot is locked
// or keeps changing (nothing installed).
template <std::size_t kOff>
bool exchange_local(Cache* c, Sheaf* fresh, Sheaf** old) noexcept {
#if BULKRCU_CACHE_RSEQ
  if (c->rseq) {
    for (int i = 0; i < 8; ++i) {
      CpuSlot* s = &c->slots[subtle::cache_rseq_cpu()];
      const std::uintptr_t expected = __atomic_load_n(&field<kOff>(s), __ATOMIC_RELAXED);
      // The commit checks the word of the CPU the sequence runs on: a migration (or a signal
      // handler's push or pop) since the load above makes it differ, and we retry.
      int rc = subtle::rseq_cmpxchg_slot(c->slots, sizeof(CpuSlot), kOff, expected, pack(fresh));
      if (rc < 0) return false;
      if (rc == 1) {
        *old = unpack(expected);
        return true;
      }
    }
    return false;
  }
#endif
  CpuSlot* s = &c->slots[current_cpu()];
  if (!s->lock.try_lock()) return false;
  *old = unpack(field<kOff>(s));
  field<kOff>(s) = pack(fresh);
  s->lock.unlock();
  return true;
}

// Remote side: detaches cpu's arrays (percpu.h's protocol: lock, fence, touch, unlock).
// Remote side: a slot's or a LocalDepot's lock (spins briefly, then yields to its holder).
void lock_remote(SlotLock& l) noexcept {
  for (unsigned i = 0; !l.try_lock(); ++i) {
    if (i < 64)
      cpu_relax();
    else
      sched_yield();
  }
}

void detach_cpu(Cache* c, int cpu, Sheaf** main, Sheaf** rcu) noexcept {
  CpuSlot* s = &c->slots[cpu];
  lock_remote(s->lock);
  subtle::fence_remote(cpu);  // R2: no owner sequence that saw the lock free can still commit
  if (main) {
    *main = unpack(s->main);
    s->main = 0;
  }
  if (rcu) {
    *rcu = unpack(s->rcu);
    s->rcu = 0;
  }
  s->lock.unlock();
}

// The cache mutex spins a little before it sleeps (glibc's adaptive mutex): its holders keep it
// for microseconds (a refill from the slabs, a trim), usually while running on another CPU.
// A plain mutex put the waiter to sleep at once: with two threads allocating on two CPUs, of
// the 178 times a kfree-scale run's threads slept on a mutex, 119 were on this one.
void init_cache_mutex(pthread_mutex_t* mu) noexcept {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);
  pthread_mutex_init(mu, &a);
  pthread_mutexattr_destroy(&a);
}

// ---- depot (under c->mu) ----------------------------------------------------------------------
// The waiting list is kept in cookie order, oldest first, so that a drain stops at the first
// array whose grace period has not elapsed (cookies elapse in order: poll_state(c) is seq >= c)
// instead of reading every waiting array's header. Arrays arrive almost always in order (each
// seal takes the newest cookie); one that does not is placed by a walk from the head.
BULKRCU_ALWAYS_INLINE bool cookie_before(unsigned long a, unsigned long b) noexcept {
  return static_cast<long>(a - b) < 0;  // wrap-safe, as poll_state
}
void add_waiting_locked(Cache* c, Sheaf* s) noexcept {
  ++c->nr_waiting;
  Sheaf* t = c->waiting_tail;
  if (!t || !cookie_before(s->cookie, t->cookie)) {
    s->next = nullptr;
    if (t)
      t->next = s;
    else
      c->waiting = s;
    c->waiting_tail = s;
    return;
  }
  Sheaf** pp = &c->waiting;  // s is older than the newest: before the first newer array
  while (!cookie_before(s->cookie, (*pp)->cookie)) pp = &(*pp)->next;
  s->next = *pp;
  *pp = s;
}

void add_to_depot_locked(Cache* c, Sheaf* s) noexcept {
  if (s->nr == 0) {
    unpend(s);
    c->nr_empty.fetch_add(1, std::memory_order_relaxed);
    stack_push(c->inbox_empty, s);
  } else if (s->pending && !elapsed(s->cookie)) {
    add_waiting_locked(c, s);
  } else {
    if (s->pending) ++c->reused;
    make_ready(c, s);
    s->next = c->ready;
    c->ready = s;
    ++c->nr_ready;
  }
}

// Takes the overflow stack as one chain with a fresh cookie (every object on it was retired
// before the exchange), and frees chains whose cookie has elapsed to the slabs.
void drain_overflow_locked(Cache* c) noexcept {
  for (PendingChain& ch : c->chains) {
    if (!ch.head || !elapsed(ch.cookie)) continue;
    std::uint64_t n_objs = 0;
    for (void* o = ch.head; o; ++n_objs) {
      void* n = link_of(c, o);
      if (c->poison) poison_obj(c, o);
      slab_put(c, o);
      o = n;
    }
    credit(n_objs * c->stride, n_objs);
    ch = PendingChain{};
  }
  if (!c->overflow.load(std::memory_order_relaxed)) return;
  void* chain = c->overflow.exchange(nullptr, std::memory_order_acquire);
  if (!chain) return;
  const unsigned long cookie = bulkrcu_start_poll();
  PendingChain* slot = nullptr;
  for (PendingChain& ch : c->chains)
    if (!ch.head) slot = &ch;
  if (!slot) {  // all in use: join the newest, whose cookie then covers both (later is safe)
    slot = &c->chains[0];
    void* tail = chain;
    while (link_of(c, tail)) tail = link_of(c, tail);
    link_of(c, tail) = slot->head;
  }
  slot->head = chain;
  slot->cookie = cookie;
}

// Takes the inbox into the depot and promotes waiting arrays whose grace period has elapsed.
void drain_inbox_locked(Cache* c) noexcept {
  Sheaf* s = c->inbox.exchange(nullptr, std::memory_order_acquire);
  while (s) {
    Sheaf* n = s->next;
    add_to_depot_locked(c, s);
    s = n;
  }
  // inbox_empty is where the depot keeps its empty arrays (each counted in nr_empty when it was
  // pushed): nothing to drain there.
  while (Sheaf* w = c->waiting) {  // oldest first: the first one not elapsed ends the walk
    if (!elapsed(w->cookie)) break;
    c->waiting = w->next;
    if (!c->waiting) c->waiting_tail = nullptr;
    --c->nr_waiting;
    add_to_depot_locked(c, w);
  }
  drain_overflow_locked(c);
}

// A ready array for this CPU: among the newest kReadyScan, the first one sealed on this CPU
// (its objects were last written here and may still be in this CPU's caches), else the newest.
// Why: the depot is shared, and with two threads retiring on two CPUs a refill took whichever
// array was newest, often the other CPU's, whose objects and pointers then had to come from the
// other core. The scan is short (each header is on its own page): 12% of the refills still took
// the other CPU's array in kfree-scale (per-CPU ready lists, which brought that to about 0, were
// measured and changed nothing there).
constexpr int kReadyScan = 8;
Sheaf* take_ready_locked(Cache* c) noexcept {
  const auto me = static_cast<std::uint32_t>(current_cpu());
  Sheaf** pp = &c->ready;
  for (int i = 0; i < kReadyScan && *pp; ++i, pp = &(*pp)->next)
    if ((*pp)->cpu == me) break;
  if (!*pp || (*pp)->cpu != me) pp = &c->ready;
  Sheaf* s = *pp;
  *pp = s->next;
  --c->nr_ready;
  return s;
}

// Keeps the depot within its bounds: extra ready arrays go back to the slabs (this touches
// their objects: the imbalance case), extra empty arrays and empty slabs onto the out lists.
void trim_depot_locked(Cache* c, std::size_t max_ready, std::size_t max_empty, Sheaf** pages, Slab** slabs,
                       std::size_t keep_slabs) noexcept {
  while (c->nr_ready > max_ready) {
    Sheaf* s = c->ready;
    c->ready = s->next;
    --c->nr_ready;
    ++c->trimmed;
    free_sheaf_objects_locked(c, s);
    add_to_depot_locked(c, s);
  }
  while (c->nr_empty.load(std::memory_order_relaxed) > max_empty) {
    Sheaf* s = stack_take_one(c->inbox_empty, [](Sheaf*) { return true; });
    if (!s) break;
    c->nr_empty.fetch_sub(1, std::memory_order_relaxed);
    s->next = *pages;
    *pages = s;
  }
  trim_empty_locked(c, keep_slabs, slabs);
}

// Needs no Cache: memory pressure frees slabs after dropping the registry mutex.
void release_slab(Slab* s) noexcept {
  const unsigned order = s->order;
  set_map(s, order, 0);
  s->magic = 0;
  pool::free_pages(s, order);
}
void release_raw(Sheaf* pages, Slab* slabs) noexcept {
  while (pages) {
    Sheaf* n = pages->next;
    bulkrcu_free_page(pages);
    pages = n;
  }
  while (slabs) {
    Slab* next = slabs->next;
    release_slab(slabs);
    slabs = next;
  }
}

// Frees what a locked section collected (outside the mutex: the zone lock is not a leaf).
void release_outside(Cache* c, Sheaf* pages, Slab* slabs) noexcept {
  while (pages) {
    Sheaf* n = pages->next;
    bulkrcu_free_page(pages);
    pages = n;
  }
  std::uint64_t n = 0;
  while (slabs) {
    Slab* next = slabs->next;
    release_slab(slabs);
    ++n;
    slabs = next;
  }
  if (n) {
    pthread_mutex_lock(&c->mu);
    c->slab_frees += n;
    pthread_mutex_unlock(&c->mu);
  }
}

Slab* new_slab(Cache* c) noexcept {
  void* mem = pool::alloc_pages(c->order);
  if (!mem) return nullptr;
  Slab* s = static_cast<Slab*>(mem);
  memset(static_cast<void*>(s), 0, c->objs_off);
  s->cache = c;
  s->objs = static_cast<char*>(mem) + c->objs_off;
  s->nobj = c->nobj;
  s->order = c->order;
  if (c->poison) memset(s->objs, 0x6b, std::size_t{c->nobj} * c->stride);
  if (c->ctor)
    for (std::uint32_t i = 0; i < c->nobj; ++i) c->ctor(s->objs + std::size_t{i} * c->stride);
  if (!set_map(s, c->order, c->tag)) {
    set_map(s, c->order, 0);
    pool::free_pages(mem, c->order);
    errno = ENOMEM;
    return nullptr;
  }
  // The magic last: slab_of() accepts the slab only once its header is complete.
  __atomic_store_n(&s->magic, kSlabMagic, __ATOMIC_RELEASE);
  return s;
}

// Waits (no lock held) until `cookie` has elapsed or kThrottleWaitNs have passed, driving the
// grace period: tries to run it here between naps, and asks the runtime thread for it once the
// first try has failed. Returns whether it elapsed.
bool wait_briefly_for(unsigned long cookie) noexcept {
  if (gp::poll_state(cookie)) return true;
  gp::NoCancel no_cancel;  // sleep_ns (nanosleep) is a cancellation point
  const std::uint64_t deadline = now_ns() + kThrottleWaitNs;
  for (bool asked = false;;) {
    if (gp::try_grace_period_now() && gp::poll_state(cookie)) return true;
    if (!asked) {
      asked = true;
      bulkrcu_start_poll();
    }
    sleep_ns(kThrottleNapNs);
    if (gp::poll_state(cookie)) return true;
    if (now_ns() >= deadline) return false;
  }
}

// Under c->mu, no ready array: if retired arrays holding g_throttle_bytes wait, waits briefly
// for the oldest one's grace period (mutex dropped meanwhile) and drains. See kThrottleWaitNs.
void throttle_locked(Cache* c) noexcept {
  const std::size_t waiting_bytes = c->nr_waiting * c->sheaf_cap * c->stride;
  if (!c->waiting || waiting_bytes < g_throttle_bytes.load(std::memory_order_relaxed) ||
      gp::reader_nesting() != 0 || !may_wait_for_reclaim())
    return;
  const unsigned long cookie = c->waiting->cookie;
  ++c->throttled;
  pthread_mutex_unlock(&c->mu);
  const bool elapsed_in_time = wait_briefly_for(cookie);
  pthread_mutex_lock(&c->mu);
  if (!elapsed_in_time) ++c->throttle_timeouts;
  drain_inbox_locked(c);
}

// Under c->mu, after a drain, no array ready: runs the waiting arrays' grace period on this
// thread (outside the mutex: a leaf lock is held across no system call) when it is due, if this
// thread is not inside a reader (the attempt would see itself). Due: kDrivePaceNs since the last
// attempt, or kDriveSealed arrays sealed since it. Only if no attempt ran it here is the runtime
// thread asked, paced (one grace period covers them all): asking first woke the runtime thread
// for a grace period the allocation then ran itself, two context switches and its fences for
// nothing. Meanwhile this refill comes from the slabs.
void drive_locked(Cache* c) noexcept {
  if (c->ready || c->nr_waiting == 0) return;
  const std::uint64_t now = now_ns();
  const std::uint64_t sealed = c->sealed.load(std::memory_order_relaxed);
  const bool may_drive = c->nr_waiting >= kDriveWaiting && gp::reader_nesting() == 0;
  bool ask = !may_drive;
  if (may_drive && (now - c->gp_driven_ns >= kDrivePaceNs || sealed - c->sealed_at_drive >= kDriveSealed)) {
    c->gp_driven_ns = now;
    c->sealed_at_drive = sealed;
    pthread_mutex_unlock(&c->mu);
    const bool ran = gp::try_grace_period_now();
    pthread_mutex_lock(&c->mu);
    if (ran) {
      ++c->driven;
      drain_inbox_locked(c);
    }
    ask = !ran && !c->ready;
  }
  if (ask && (now - c->gp_asked_ns >= kGpPaceNs || over_budget())) {
    c->gp_asked_ns = now;
    bulkrcu_start_poll();
  }
}

// An array with objects for this CPU: a ready one from the depot, else one filled from the
// slabs (new slabs mapped outside the mutex). nullptr with errno = ENOMEM.
Sheaf* get_full_sheaf(Cache* c) noexcept {
  Sheaf* pages = nullptr;
  Slab* slabs = nullptr;
  Sheaf* s = nullptr;
  pthread_mutex_lock(&c->mu);
  drain_inbox_locked(c);
  drive_locked(c);
  if (!c->ready) throttle_locked(c);
  if (c->ready) {
    s = take_ready_locked(c);
  } else {
    s = stack_take_one(c->inbox_empty, [](Sheaf*) { return true; });
    if (s) {
      c->nr_empty.fetch_sub(1, std::memory_order_relaxed);
    } else {
      pthread_mutex_unlock(&c->mu);
      void* page = bulkrcu_alloc_page();
      if (!page) return nullptr;
      s = init_sheaf(c, page);
      pthread_mutex_lock(&c->mu);
    }
    s->nr = 0;
    s->pending = 0;
    ++c->filled;
    while (s->nr < s->cap) {
      Slab* slab = c->lists[kPartial].head ? c->lists[kPartial].head : c->lists[kEmpty].head;
      if (!slab) {
        if (s->nr > 0) break;  // enough for now; the next refill maps a slab
        pthread_mutex_unlock(&c->mu);
        Slab* fresh = new_slab(c);
        pthread_mutex_lock(&c->mu);
        if (!fresh) {
          add_to_depot_locked(c, s);
          pthread_mutex_unlock(&c->mu);
          errno = ENOMEM;
          return nullptr;
        }
        ++c->slab_allocs;
        list_add(c, fresh, kEmpty);
        continue;
      }
      s->objs()[s->nr++] = slab_take(c, slab);
    }
  }
  trim_depot_locked(c, c->max_ready, kMaxEmptySheaves, &pages, &slabs, kKeepEmptySlabs);
  collect_dying_locked(c, false, &slabs);
  pthread_mutex_unlock(&c->mu);
  release_outside(c, pages, slabs);
  return s;
}

// Hands an array the caller owns back to the depot (lock-free: the inbox).
void give_back(Cache* c, Sheaf* s) noexcept {
  if (s->nr == 0) {
    c->nr_empty.fetch_add(1, std::memory_order_relaxed);
    stack_push(c->inbox_empty, s);
  } else {
    stack_push(c->inbox, s);
  }
}

// An empty array without locking: the depot's inbox of empty arrays, else a lockless page.
Sheaf* empty_sheaf_lockless(Cache* c) noexcept {
  Sheaf* s = stack_take_one(c->inbox_empty, [](Sheaf*) { return true; });
  if (s) {
    c->nr_empty.fetch_sub(1, std::memory_order_relaxed);
    return s;
  }
  void* page = bulkrcu_alloc_page_lockless();
  return page ? init_sheaf(c, page) : nullptr;
}

// ---- LocalDepot: a CPU's own retired arrays (see LocalDepot) ---------------------------------
BULKRCU_ALWAYS_INLINE LocalDepot* local_of(Cache* c) noexcept { return &c->slots[current_cpu()].local; }

// An emptied allocation array: this CPU's spare if it has none (the next free_rcu slow path
// takes it), else the depot.
void stash_empty(Cache* c, Sheaf* s) noexcept {
  LocalDepot* d = local_of(c);
  if (d->lock.try_lock()) {
    if (!d->spare) {
      unpend(s);
      d->spare = s;
      s = nullptr;
    }
    d->lock.unlock();
  }
  if (s) give_back(c, s);
}

void seal(Cache* c, Sheaf* s) noexcept;
void seal_header(Cache* c, Sheaf* s) noexcept;

// d locked: takes all of d's retired arrays, as a chain (head..tail, tail->next == nullptr).
struct Chain {
  Sheaf* head = nullptr;
  Sheaf* tail = nullptr;
};
Chain take_waiting_locked(LocalDepot* d) noexcept {
  Chain ch{d->wait_head, d->wait_tail};
  d->wait_head = d->wait_tail = nullptr;
  d->nwait = 0;
  return ch;
}
void push_chain(Cache* c, Chain ch) noexcept {
  if (ch.head) stack_push_chain(c->inbox, ch.head, ch.tail);
}

// d locked: keeps the sealed array s here, or (full) sends it to the depot.
void seal_local(Cache* c, LocalDepot* d, Sheaf* s) noexcept {
  if (d->nwait >= c->local_max) return seal(c, s);
  seal_header(c, s);
  s->next = nullptr;
  if (d->wait_tail)
    d->wait_tail->next = s;
  else
    d->wait_head = s;
  d->wait_tail = s;
  ++d->nwait;
  ++d->sealed;
  if (d->since_drive != UINT16_MAX) ++d->since_drive;
}

// d locked: the oldest retired array of d if its grace period has elapsed (ready: credited,
// poisoned in debug mode), else nullptr. With `drive` (non-null), outside a reader, and
// kLocalDrive arrays waiting, first tries to run the grace period on this thread (never
// blocks), as the depot's drive_locked does: the no-reader grace period every time (a fence and
// one load of the count of owned reader slots, no system call), the full attempt (membarrier) paced as
// drive_locked paces it. When that fails too (a reader holds the grace period), the runtime
// thread is asked for it and d's retired arrays are detached into *drive for the caller to
// send to the depot: a grace period that stalls is the depot's to pace (throttle_locked), and
// its bound on waiting memory must see them.
Sheaf* take_local_locked(Cache* c, LocalDepot* d, Chain* drive) noexcept {
  Sheaf* h = d->wait_head;
  if (!h) return nullptr;
  if (!elapsed(h->cookie)) {
    const std::size_t enough = kLocalDrive < c->local_max ? kLocalDrive : c->local_max;
    if (!drive || d->nwait < enough || gp::reader_nesting() != 0) return nullptr;
    bool ran = gp::try_no_reader_grace_period();
    if (!ran) {
      const std::uint64_t now = now_ns();
      if (d->since_drive < kDriveSealed && now - d->drive_ns < kDrivePaceNs) return nullptr;
      d->drive_ns = now;
      d->since_drive = 0;
      ran = gp::try_grace_period_now();
      if (!ran) {
        bulkrcu_start_poll();
        *drive = take_waiting_locked(d);
        return nullptr;
      }
    }
    ++d->driven;
    if (!elapsed(h->cookie)) return nullptr;
  }
  d->wait_head = h->next;
  if (!d->wait_head) d->wait_tail = nullptr;
  --d->nwait;
  ++d->reused;
  make_ready(c, h);
  return h;
}

// Remote side: moves cpu's LocalDepot arrays to the depot's inboxes (lock, move, unlock).
void flush_local(Cache* c, int cpu) noexcept {
  LocalDepot* d = &c->slots[cpu].local;
  lock_remote(d->lock);
  const Chain ch = take_waiting_locked(d);
  Sheaf* e = d->spare;
  d->spare = nullptr;
  d->lock.unlock();
  push_chain(c, ch);
  if (e) give_back(c, e);
}

// Owner side: installs the allocation array s (objects left) in this CPU's slot; the array it
// replaces goes to stash_empty or the depot. o was popped from s already.
void install_main(Cache* c, Sheaf* s) noexcept {
  if (s->nr == 0) return stash_empty(c, s);
  Sheaf* old = nullptr;
  if (!exchange_local<kMainOff>(c, s, &old)) return give_back(c, s);
  if (old) {
    if (old->nr == 0)
      stash_empty(c, old);
    else
      give_back(c, old);
  }
}

// ---- slow paths ----------------------------------------------------------------------------------
BULKRCU_NOINLINE void* alloc_slow(Cache* c) noexcept {
  // This CPU's own retired arrays first: no mutex, nothing another CPU wrote.
  LocalDepot* d = local_of(c);
  if (d->lock.try_lock()) {
    Chain stalled;
    Sheaf* s = take_local_locked(c, d, &stalled);
    d->lock.unlock();
    if (s) {
      void* o = s->objs()[--s->nr];
      install_main(c, s);
      return o;
    }
    push_chain(c, stalled);
  }
  Sheaf* s = get_full_sheaf(c);
  if (!s) return nullptr;
  void* o = s->objs()[--s->nr];
  install_main(c, s);
  return o;
}

// Frees p to the slabs directly (the slot is locked or no array is at hand).
void free_to_slab(Cache* c, void* p) noexcept {
  pthread_mutex_lock(&c->mu);
  slab_put(c, p);
  Sheaf* pages = nullptr;
  Slab* slabs = nullptr;
  trim_empty_locked(c, kKeepEmptySlabs, &slabs);
  pthread_mutex_unlock(&c->mu);
  release_outside(c, pages, slabs);
}

// p is free (checks done): this CPU's main array is full, missing or locked.
BULKRCU_NOINLINE void free_slow(Cache* c, void* p) noexcept {
  Sheaf* fresh = empty_sheaf_lockless(c);
  if (!fresh) {
    void* page = bulkrcu_alloc_page();
    if (page) fresh = init_sheaf(c, page);
  }
  if (!fresh) return free_to_slab(c, p);
  fresh->objs()[0] = p;
  fresh->nr = 1;
  fresh->pending = 0;
  Sheaf* old = nullptr;
  if (!exchange_local<kMainOff>(c, fresh, &old)) {
    give_back(c, fresh);
    return;
  }
  if (old) give_back(c, old);
  // Keep the depot bounded when this CPU only frees.
  if (pthread_mutex_trylock(&c->mu) == 0) {
    Sheaf* pages = nullptr;
    Slab* slabs = nullptr;
    drain_inbox_locked(c);
    trim_depot_locked(c, c->max_ready, kMaxEmptySheaves, &pages, &slabs, kKeepEmptySlabs);
    pthread_mutex_unlock(&c->mu);
    release_outside(c, pages, slabs);
  }
}

BULKRCU_ALWAYS_INLINE void free_now(Cache* c, void* p) noexcept {
  if (BULKRCU_LIKELY(push_local<kMainOff>(c, p) > 0)) return;
  free_slow(c, p);
}

// The public calls' debug-mode bodies, out of line: the fast paths then hold no value across a
// call, need no callee-saved register and end in tail calls.
BULKRCU_NOINLINE void free_debug(Cache* c, void* p) noexcept {
  check_free_debug(c, p, "bulkrcu_cache_free", true);
  free_now(c, p);
}
[[noreturn]] BULKRCU_NOINLINE void die_not_of(Cache* c, void* p, const char* call) noexcept {
  Slab* s = slab_of(p);
  die_bad_free(c, s && s->cache != c ? s : nullptr, p, call);
}

// The last resort of free_rcu (no array at hand without locking): the overflow stack, linked
// through the object's out-of-object word. Lock-free, async-signal-safe, needs no memory.
BULKRCU_NOINLINE void free_rcu_fallback(Cache* c, void* p) noexcept {
  c->overflowed.fetch_add(1, std::memory_order_relaxed);
  charge(c->stride, 1, 0);  // its cookie is taken when the overflow stack is drained
  void* h = c->overflow.load(std::memory_order_relaxed);
  do {
    link_of(c, p) = h;
  } while (!c->overflow.compare_exchange_weak(h, p, std::memory_order_release, std::memory_order_relaxed));
}

// Seals a retired array: one cookie for all its objects, charged to the budget.
void seal_header(Cache* c, Sheaf* s) noexcept {
  s->pending = 1;
  s->cookie = gp::get_state();  // no grace period started here: the depot paces them
  s->charged = (std::uint64_t{1} << g_page_shift) + s->nr * c->stride;
  s->charged_objs = s->nr;
  s->cpu = static_cast<std::uint32_t>(current_cpu());
  charge(s->charged, s->charged_objs, s->cookie);  // over the budget: asks for the grace period now
}
// ... and sends it to the depot's inbox.
void seal(Cache* c, Sheaf* s) noexcept {
  seal_header(c, s);
  c->sealed.fetch_add(1, std::memory_order_relaxed);
  stack_push(c->inbox, s);
}

// This CPU's retired array is full, missing or locked. No lock, no blocking.
BULKRCU_NOINLINE void free_rcu_slow(Cache* c, void* p, long r) noexcept {
  if (r < 0) return free_rcu_fallback(c, p);
  // This CPU's LocalDepot (try-locked: never waits): its spare array collects the next retires
  // and the full one waits there. Held until the sealed array is in it or in the inbox, so a
  // barrier that locks every LocalDepot after detaching every slot finds it (seal_all_cpus).
  LocalDepot* d = local_of(c);
  if (d->lock.try_lock()) {
    Sheaf* fresh = d->spare;
    d->spare = nullptr;
    if (!fresh) fresh = empty_sheaf_lockless(c);
    if (fresh) {
      fresh->objs()[0] = p;
      fresh->nr = 1;
      Sheaf* old = nullptr;
      if (!exchange_local<kRcuOff>(c, fresh, &old)) old = fresh;
      if (old) seal_local(c, d, old);
      d->lock.unlock();
      return;
    }
    d->lock.unlock();
    return free_rcu_fallback(c, p);
  }
  Sheaf* fresh = empty_sheaf_lockless(c);
  if (!fresh) return free_rcu_fallback(c, p);
  fresh->objs()[0] = p;
  fresh->nr = 1;
  // sealing: a barrier waits for arrays that are between the slot and the inbox.
  c->sealing.fetch_add(1, std::memory_order_acq_rel);
  Sheaf* old = nullptr;
  if (!exchange_local<kRcuOff>(c, fresh, &old)) {
    seal(c, fresh);
  } else if (old) {
    seal(c, old);
  }
  c->sealing.fetch_sub(1, std::memory_order_release);
}

BULKRCU_NOINLINE void* alloc_lockless_slow(Cache* c) noexcept {
  Sheaf* s = nullptr;
  LocalDepot* d = local_of(c);
  if (d->lock.try_lock()) {  // never waits; no grace period run here (lockless)
    s = take_local_locked(c, d, nullptr);
    d->lock.unlock();
  }
  if (!s) {
    s = stack_take_one(c->inbox, [](Sheaf* x) { return x->nr > 0 && (!x->pending || elapsed(x->cookie)); });
    if (!s) return nullptr;
    make_ready(c, s);  // debug poisoning is a memset: async-signal-safe
  }
  void* o = s->objs()[--s->nr];
  install_main(c, s);  // lock-free: an rseq exchange, try-locks, lock-free pushes
  return o;
}

// Without rseq (the fallback mode, ThreadSanitizer): the try-locked slot, out of line so that
// the rseq fast paths stay frameless.
BULKRCU_NOINLINE void* alloc_nonrseq(Cache* c, bool lockless) noexcept {
  if (void* o = pop_local<kMainOff>(c)) return o;
  return lockless ? alloc_lockless_slow(c) : alloc_slow(c);
}
BULKRCU_NOINLINE void free_nonrseq(Cache* c, void* p) noexcept { free_now(c, p); }
BULKRCU_NOINLINE void free_rcu_nonrseq(Cache* c, void* p) noexcept {
  const long r = push_local<kRcuOff>(c, p);
  if (r <= 0) free_rcu_slow(c, p, r);
}

BULKRCU_NOINLINE void* alloc_debug(Cache* c, bool lockless) noexcept {
  void* o = pop_local<kMainOff>(c);
  if (!o) o = lockless ? alloc_lockless_slow(c) : alloc_slow(c);
  if (o) debug_on_alloc(c, o);
  return o;
}
BULKRCU_NOINLINE void free_rcu_debug(Cache* c, void* p) noexcept {
  check_free_debug(c, p, "bulkrcu_cache_free_rcu", false);
  const long r = push_local<kRcuOff>(c, p);
  if (r <= 0) free_rcu_slow(c, p, r);
}

// Flushes every CPU's arrays (main: free objects; rcu: sealed) and the depot to the slabs as
// far as grace periods allow. Caller: shrink, destroy, memory pressure.
void flush_all(Cache* c, bool take_rcu, Sheaf** pages, Slab** slabs, std::size_t keep_slabs) noexcept {
  for (int cpu = 0; cpu < nr_slots(); ++cpu) {
    Sheaf* m = nullptr;
    Sheaf* r = nullptr;
    detach_cpu(c, cpu, &m, take_rcu ? &r : nullptr);
    if (m) give_back(c, m);
    if (r) {
      if (r->nr)
        seal(c, r);
      else
        give_back(c, r);
    }
  }
  for (int cpu = 0; cpu < nr_slots(); ++cpu) flush_local(c, cpu);
  pthread_mutex_lock(&c->mu);
  drain_inbox_locked(c);
  trim_depot_locked(c, 0, 0, pages, slabs, keep_slabs);
  collect_dying_locked(c, false, slabs);
  pthread_mutex_unlock(&c->mu);
}

void wait_sealing(Cache* c) noexcept {
  for (unsigned i = 0; c->sealing.load(std::memory_order_acquire) != 0; ++i) {
    if (i < 64)
      cpu_relax();
    else
      sched_yield();
  }
}

// Takes every CPU's retired array out of its slot and seals it (its cookie is taken now), then
// moves every LocalDepot's arrays to the depot. Every slot first, then every LocalDepot: an
// owner that took an array out of some slot before this detached that slot held a LocalDepot's
// lock since before it did, so the second loop waits for it and finds the array there (or in
// the inbox). One loop doing both per CPU could flush CPU 0's depot before an owner holding it
// took its array out of CPU 1's slot, and miss it.
void seal_all_cpus(Cache* c) noexcept {
  for (int cpu = 0; cpu < nr_slots(); ++cpu) {
    Sheaf* r = nullptr;
    detach_cpu(c, cpu, nullptr, &r);
    if (r) {
      if (r->nr)
        seal(c, r);
      else
        give_back(c, r);
    }
  }
  for (int cpu = 0; cpu < nr_slots(); ++cpu) flush_local(c, cpu);
}

void barrier(Cache* c) noexcept {
  seal_all_cpus(c);
  wait_sealing(c);
  // The overflow stack gets its cookie now; every array sealed before this point took its
  // cookie earlier: one grace period from now covers them all.
  pthread_mutex_lock(&c->mu);
  drain_inbox_locked(c);
  pthread_mutex_unlock(&c->mu);
  gp::wait_for_cookie(gp::get_state(), false);
  pthread_mutex_lock(&c->mu);
  drain_inbox_locked(c);
  pthread_mutex_unlock(&c->mu);
}

std::uint64_t objects_out_locked(Cache* c) noexcept {
  std::uint64_t n = 0;
  for (unsigned l = kPartial; l <= kDying; ++l)
    for (Slab* s = c->lists[l].head; s; s = s->next) n += s->inuse;
  return n;
}

// ---- registry and fork -------------------------------------------------------------------------
// A free cache id, 0 when none is left (or the bitmap cannot be mapped). Under g_reg_mu.
std::uint32_t id_alloc_locked() noexcept {
  if (!g_ids) {
    void* m = mmap(nullptr, kMaxCaches / 8, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return 0;
    g_ids = static_cast<std::uint64_t*>(m);
  }
  for (std::uint32_t id = g_id_hint; id < kMaxCaches; ++id) {
    std::uint64_t& w = g_ids[id / 64];
    if (w == ~std::uint64_t{0}) {
      id |= 63;
      continue;
    }
    if (!(w & (std::uint64_t{1} << (id % 64)))) {
      w |= std::uint64_t{1} << (id % 64);
      g_id_hint = id + 1;
      return id;
    }
  }
  return 0;
}
void id_free_locked(std::uint32_t id) noexcept {
  g_ids[id / 64] &= ~(std::uint64_t{1} << (id % 64));
  if (id < g_id_hint) g_id_hint = id;
}

// Registers c with a fresh id and sets its tag; false when no id is left.
bool reg_add(Cache* c) noexcept {
  pthread_mutex_lock(&g_reg_mu);
  const std::uint32_t id = id_alloc_locked();
  if (!id) {
    pthread_mutex_unlock(&g_reg_mu);
    return false;
  }
  c->tag = (id << 8) | (c->order + 1);
  c->reg_next = g_caches;
  if (g_caches) g_caches->reg_prev = c;
  g_caches = c;
  pthread_mutex_unlock(&g_reg_mu);
  return true;
}
void reg_del(Cache* c) noexcept {
  pthread_mutex_lock(&g_reg_mu);
  if (c->reg_prev)
    c->reg_prev->reg_next = c->reg_next;
  else
    g_caches = c->reg_next;
  if (c->reg_next) c->reg_next->reg_prev = c->reg_prev;
  id_free_locked(c->tag >> 8);
  pthread_mutex_unlock(&g_reg_mu);
}

void prepare_fork() {
  pthread_mutex_lock(&g_reg_mu);
  for (Cache* c = g_caches; c; c = c->reg_next) pthread_mutex_lock(&c->mu);
}
void parent_fork() {
  for (Cache* c = g_caches; c; c = c->reg_next) pthread_mutex_unlock(&c->mu);
  pthread_mutex_unlock(&g_reg_mu);
}
void child_fork() {
  for (Cache* c = g_caches; c; c = c->reg_next) {
    init_cache_mutex(&c->mu);
    // A fallback-mode owner or a remote may have held a slot lock; its thread is gone.
    for (int i = 0; i < nr_slots(); ++i) {
      c->slots[i].lock.word.store(0, std::memory_order_relaxed);
      c->slots[i].local.lock.word.store(0, std::memory_order_relaxed);
    }
    // Arrays other threads held between a slot and the inbox are lost (leaked), not waited for.
    c->sealing.store(0, std::memory_order_relaxed);
  }
  pthread_mutex_init(&g_reg_mu, nullptr);
}
// Registered before the runtime layer's handlers (constructor 103): prepare handlers run in
// reverse order of registration, so ours runs after the runtime's (driver mutex, kvfree and
// pool locks). The runtime thread may free to a cache (kvfree's reclaim) while it holds the
// driver mutex; a holder of a cache mutex waits for nothing, so this order cannot deadlock.
void free_any(void* p) noexcept;
__attribute__((constructor(102))) void cache_init() {
  g_page_shift = pool::page_shift();
  g_l2_mask = (std::uintptr_t{1} << (kL2Shift - g_page_shift)) - 1;
  g_debug = pool::debug();
  pthread_atfork(prepare_fork, parent_fork, child_fork);
  cb::g_free_object = &free_any;  // kfree_rcu's embedded-head fallback reaches caches too
}

BULKRCU_ALWAYS_INLINE Cache* C(bulkrcu_cache* c) noexcept { return reinterpret_cast<Cache*>(c); }

}  // namespace

bool owns(const void* p) noexcept { return slab_of(p) != nullptr; }

std::uint64_t pending_bytes() noexcept {
  const std::uint64_t b = g_pending_bytes.load(std::memory_order_relaxed);
  if (b == 0) return 0;
  const unsigned long newest = g_newest_cookie.load(std::memory_order_relaxed);
  // Every sealed array's cookie is at most `newest`; the overflow stack's objects are counted
  // until their chain is freed (they take a cookie only then).
  return newest != 0 && elapsed(newest) ? 0 : b;
}

std::uint64_t pending_objects() noexcept {
  if (pending_bytes() == 0) return 0;
  return g_pending_objects.load(std::memory_order_relaxed);
}

std::uint64_t budget_hits() noexcept { return g_budget_hits.load(std::memory_order_relaxed); }

void free_retired(void* p) noexcept {
  Slab* s = slab_of(p);
  Cache* c = s->cache;
  check_free(c, p, "kvfree_rcu (reclaim)", true);
  free_now(c, p);
}

namespace {
void free_any(void* p) noexcept {
  if (owns(p))
    free_retired(p);
  else
    free(p);
}
}  // namespace

void on_memory_pressure() noexcept {
  // Retired objects hold memory too. Every CPU's retired array is sealed (it takes its cookie
  // now instead of when it fills), then the grace period is expedited: one attempt on this
  // thread when it is outside a reader (never blocks: it gives up if a reader is inside a
  // section or another thread runs a grace period), and a request to the runtime thread. The
  // arrays whose grace period has elapsed by the flush below go back to the slabs with the rest.
  pthread_mutex_lock(&g_reg_mu);
  for (Cache* c = g_caches; c; c = c->reg_next) seal_all_cpus(c);
  pthread_mutex_unlock(&g_reg_mu);
  if (g_pending_bytes.load(std::memory_order_relaxed) != 0) {
    const unsigned long cookie = gp::get_state();
    if (!gp::poll_state(cookie)) {
      gp::request(cookie);
      if (gp::reader_nesting() == 0) gp::try_grace_period_now();
    }
  }
  // Pages and slabs are freed after the registry mutex is dropped: fork's prepare takes the
  // zone lock before the registry (registry -> zone here would invert it).
  Sheaf* pages = nullptr;
  Slab* slabs = nullptr;
  pthread_mutex_lock(&g_reg_mu);
  for (Cache* c = g_caches; c; c = c->reg_next) {
    Slab* mine = nullptr;
    flush_all(c, false, &pages, &mine, 0);
    std::uint64_t n = 0;
    while (mine) {
      Slab* next = mine->next;
      mine->next = slabs;
      slabs = mine;
      mine = next;
      ++n;
    }
    pthread_mutex_lock(&c->mu);
    c->slab_frees += n;
    pthread_mutex_unlock(&c->mu);
  }
  pthread_mutex_unlock(&g_reg_mu);
  release_raw(pages, slabs);
}

std::size_t set_throttle_bytes(std::size_t bytes) noexcept {
  return g_throttle_bytes.exchange(bytes, std::memory_order_relaxed);
}

Info info(bulkrcu_cache* cc) noexcept {
  Cache* c = C(cc);
  Info i{};
  pthread_mutex_lock(&c->mu);
  drain_inbox_locked(c);
  i.stride = c->stride;
  i.slab_bytes = c->slab_bytes;
  i.objs_per_slab = c->nobj;
  i.sheaf_cap = c->sheaf_cap;
  for (unsigned l = kPartial; l <= kDying; ++l) i.slabs += c->lists[l].n;
  i.objects_out = objects_out_locked(c);
  i.ready = c->nr_ready;
  i.waiting = c->nr_waiting;
  std::uint64_t local_sealed = 0, local_reused = 0, local_driven = 0;
  for (int cpu = 0; cpu < nr_slots(); ++cpu) {  // LocalDepots: mutex -> LocalDepot lock, as nowhere else
    LocalDepot* d = &c->slots[cpu].local;
    lock_remote(d->lock);
    i.waiting += d->nwait;
    i.empty_sheaves += d->spare != nullptr;
    local_sealed += d->sealed;
    local_reused += d->reused;
    local_driven += d->driven;
    d->lock.unlock();
  }
  i.empty_sheaves += c->nr_empty.load(std::memory_order_relaxed);
  i.overflowed = c->overflowed.load(std::memory_order_relaxed);
  for (PendingChain& ch : c->chains) i.overflow_chains += ch.head != nullptr;
  i.sealed = c->sealed.load(std::memory_order_relaxed) + local_sealed;
  i.reused = c->reused + local_reused;
  i.slab_allocs = c->slab_allocs;
  i.slab_frees = c->slab_frees;
  i.trimmed = c->trimmed;
  i.filled = c->filled;
  i.driven = c->driven + local_driven;
  i.throttled = c->throttled;
  i.throttle_timeouts = c->throttle_timeouts;
  pthread_mutex_unlock(&c->mu);
  return i;
}

}  // namespace bulkrcu::detail::cache

using namespace bulkrcu::detail;
using bulkrcu::detail::cache::Cache;

extern "C" {

struct bulkrcu_cache* bulkrcu_cache_create_ctor(const char* name, size_t size, size_t align, unsigned flags,
                                                void (*ctor)(void*)) {
  const char* nm = name ? name : "(unnamed)";
  auto bad = [&](const char* what) -> struct bulkrcu_cache* {
    log_warning("bulkrcu_cache_create(\"%s\", size %zu, align %zu, flags %#x): %s\n", nm, size, align, flags,
                what);
    errno = EINVAL;
    return nullptr;
  };
  const std::size_t page = pool::page_size();
  if (size == 0) return bad("size 0");
  if (align == 0) align = 8;
  if (align & (align - 1)) return bad("alignment is not a power of two");
  if (align > page) return bad("alignment over the page size");
  if (flags & ~BULKRCU_CACHE_TYPESAFE_BY_RCU) return bad("unknown flags");
  if (align < 8) align = 8;
  // The link word lies after the object in every cache: free lists never write a typesafe or
  // constructed object, and free_rcu's overflow may link an object readers still use.
  const bool outside_link = (flags & BULKRCU_CACHE_TYPESAFE_BY_RCU) || ctor;
  const std::size_t base = (size + 7) & ~std::size_t{7};
  const std::size_t link_off = base;
  std::size_t stride = base + sizeof(void*);
  stride = (stride + align - 1) & ~(align - 1);
  if (size > (page << pool::max_order())) return bad("size over the largest slab");
  // The smallest order whose slab holds kMinObjsPerSlab objects (else the largest that fits one).
  unsigned order = 0;
  std::uint32_t nobj = 0;
  std::size_t objs_off = 0;
  for (unsigned o = 0; o <= pool::max_order(); ++o) {
    const std::size_t bytes = page << o;
    std::size_t n = bytes / stride;
    std::size_t off = 0;
    while (n > 0) {
      off = (cache::kSlabHeaderFixed + ((n + 63) / 64) * 8 + align - 1) & ~(align - 1);
      if (off + n * stride <= bytes) break;
      --n;
    }
    if (n > 0) {
      order = o;
      nobj = static_cast<std::uint32_t>(n);
      objs_off = off;
      if (n >= cache::kMinObjsPerSlab) break;
    }
  }
  if (nobj == 0) return bad("size over the largest slab");

  void* mem = mmap(nullptr, sizeof(Cache), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    errno = ENOMEM;
    return nullptr;
  }
  Cache* c = new (mem) Cache();
  strncpy(c->name, nm, sizeof c->name - 1);
  c->size = size;
  c->stride = stride;
  c->align = align;
  c->link_off = link_off;
  c->objs_off = objs_off;
  c->order = order;
  c->slab_bytes = page << order;
  c->nobj = nobj;
  c->flags = flags;
  c->ctor = ctor;
  c->poison = pool::debug() && !outside_link;
  c->rseq = mode() == PercpuMode::kRseq;
#ifdef BULKRCU_TESTING
  c->sheaf_cap = cache::kSheafCapMax;
#else
  std::size_t cap = cache::kSheafBytes / stride;
  c->sheaf_cap = cap < 8 ? 8 : cap > cache::kSheafCapMax ? cache::kSheafCapMax : cap;
#endif
  if (c->sheaf_cap > (page - cache::kSheafHeader) / sizeof(void*))
    c->sheaf_cap = (page - cache::kSheafHeader) / sizeof(void*);
#ifdef BULKRCU_TESTING
  c->max_ready = cache::kMaxReady;
#else
  {
    const std::size_t by_bytes = cache::kMaxReadyBytes / (c->sheaf_cap * stride);
    c->max_ready = by_bytes > cache::kMaxReady ? by_bytes : cache::kMaxReady;
  }
#endif
  {
    const std::size_t by_bytes = cache::kLocalWaitBytes / (c->sheaf_cap * stride + page);
    c->local_max = by_bytes < 2 ? 2 : by_bytes > cache::kLocalWaitMax ? cache::kLocalWaitMax : by_bytes;
  }
  cache::init_cache_mutex(&c->mu);
  cache::g_budget = config().max_pending_bytes;  // before any seal of this cache can run
  c->slots = static_cast<cache::CpuSlot*>(alloc_slots(sizeof(cache::CpuSlot)));
  if (!cache::reg_add(c)) {
    log_warning("bulkrcu_cache_create(\"%s\"): no cache id left (%u caches exist)\n", nm,
                cache::kMaxCaches - 1);
    free_slots(c->slots, sizeof(cache::CpuSlot));
    pthread_mutex_destroy(&c->mu);
    c->~Cache();
    munmap(c, sizeof(Cache));
    errno = ENOMEM;
    return nullptr;
  }
  // The public header's inline paths: exact only in rseq mode without debug checks, with the
  // 4 KiB pages its address-map lookup assumes; otherwise they call the exported functions.
  c->fast.cap = c->sheaf_cap;
  c->fast.tag = c->tag;
  if (BULKRCU_CACHE_RSEQ && c->rseq && !cache::g_debug && cache::g_page_shift == 12) c->fast.slots = c->slots;
  return reinterpret_cast<struct bulkrcu_cache*>(c);
}

struct bulkrcu_cache* bulkrcu_cache_create(const char* name, size_t size, size_t align, unsigned flags) {
  return bulkrcu_cache_create_ctor(name, size, align, flags, nullptr);
}

// The fast paths: one restartable sequence each (cache_rseq.h), no value kept across a call
// (debug mode and every slow path are tail calls), so no stack frame.
void* bulkrcu_cache_alloc(struct bulkrcu_cache* cc) {
  Cache* c = cache::C(cc);
  if (BULKRCU_UNLIKELY(cache::g_debug)) return cache::alloc_debug(c, false);
#if BULKRCU_CACHE_RSEQ
  if (BULKRCU_LIKELY(c->rseq)) {
    void* o;
    if (BULKRCU_LIKELY(subtle::rseq_sheaf_pop<cache::kMainOff>(c->slots, &o))) return o;
    return cache::alloc_slow(c);
  }
#endif
  return cache::alloc_nonrseq(c, false);
}

void* bulkrcu_cache_alloc_lockless(struct bulkrcu_cache* cc) {
  Cache* c = cache::C(cc);
  if (BULKRCU_UNLIKELY(cache::g_debug)) return cache::alloc_debug(c, true);
#if BULKRCU_CACHE_RSEQ
  if (BULKRCU_LIKELY(c->rseq)) {
    void* o;
    if (BULKRCU_LIKELY(subtle::rseq_sheaf_pop<cache::kMainOff>(c->slots, &o))) return o;
    return cache::alloc_lockless_slow(c);
  }
#endif
  return cache::alloc_nonrseq(c, true);
}

void bulkrcu_cache_free(struct bulkrcu_cache* cc, void* p) {
  if (!p) return;
  Cache* c = cache::C(cc);
  if (BULKRCU_UNLIKELY(cache::g_debug)) return cache::free_debug(c, p);
  if (BULKRCU_UNLIKELY(cache::map_tag(p) != c->tag)) cache::die_not_of(c, p, "bulkrcu_cache_free");
#if BULKRCU_CACHE_RSEQ
  if (BULKRCU_LIKELY(c->rseq)) {
    if (BULKRCU_LIKELY(subtle::rseq_sheaf_push<cache::kMainOff>(c->slots, c->sheaf_cap, p) > 0)) return;
    return cache::free_slow(c, p);
  }
#endif
  cache::free_nonrseq(c, p);
}

void bulkrcu_cache_free_rcu(struct bulkrcu_cache* cc, void* p) {
  if (!p) return;
  Cache* c = cache::C(cc);
  if (BULKRCU_UNLIKELY(cache::g_debug)) return cache::free_rcu_debug(c, p);
  if (BULKRCU_UNLIKELY(cache::map_tag(p) != c->tag)) cache::die_not_of(c, p, "bulkrcu_cache_free_rcu");
#if BULKRCU_CACHE_RSEQ
  if (BULKRCU_LIKELY(c->rseq)) {
    const long r = subtle::rseq_sheaf_push<cache::kRcuOff>(c->slots, c->sheaf_cap, p);
    if (BULKRCU_LIKELY(r > 0)) return;
    return cache::free_rcu_slow(c, p, r);
  }
#endif
  cache::free_rcu_nonrseq(c, p);
}

void bulkrcu_cache_barrier(struct bulkrcu_cache* cc) {
  gp::assert_not_in_reader("bulkrcu_cache_barrier()");
  cache::barrier(cache::C(cc));
}

void bulkrcu_cache_shrink(struct bulkrcu_cache* cc) {
  Cache* c = cache::C(cc);
  const bool typesafe = c->flags & BULKRCU_CACHE_TYPESAFE_BY_RCU;
  if (typesafe) gp::assert_not_in_reader("bulkrcu_cache_shrink() of a typesafe-by-rcu cache");
  cache::Sheaf* pages = nullptr;
  cache::Slab* slabs = nullptr;
  cache::flush_all(c, false, &pages, &slabs, 0);
  cache::release_outside(c, pages, slabs);
  if (typesafe) {
    slabs = nullptr;
    gp::wait_for_cookie(gp::get_state(), false);
    pthread_mutex_lock(&c->mu);
    cache::collect_dying_locked(c, false, &slabs);
    pthread_mutex_unlock(&c->mu);
    cache::release_outside(c, nullptr, slabs);
  }
}

void bulkrcu_cache_destroy(struct bulkrcu_cache* cc) {
  if (!cc) return;
  Cache* c = cache::C(cc);
  gp::assert_not_in_reader("bulkrcu_cache_destroy()");
  cache::barrier(c);
  cache::Sheaf* pages = nullptr;
  cache::Slab* slabs = nullptr;
  cache::flush_all(c, true, &pages, &slabs, 0);
  cache::release_outside(c, pages, slabs);
  pages = nullptr;
  slabs = nullptr;
  pthread_mutex_lock(&c->mu);
  std::uint64_t out = cache::objects_out_locked(c);
  pthread_mutex_unlock(&c->mu);
  if (out != 0) {
    // Objects retired with kvfree_rcu reach the cache only through kvfree's reclaim, and
    // free_rcu's own grace periods may not all have elapsed yet: wait for both, once.
    bulkrcu_kvfree_barrier();
    cache::barrier(c);
    cache::flush_all(c, true, &pages, &slabs, 0);
    cache::release_outside(c, pages, slabs);
    pages = nullptr;
    slabs = nullptr;
    pthread_mutex_lock(&c->mu);
    out = cache::objects_out_locked(c);
    pthread_mutex_unlock(&c->mu);
  }
  if (out != 0) {
    cache::Msg m;
    m.dec(out).s(" objects still allocated");
    cache::die("bulkrcu_cache_destroy", c, nullptr, m.buf);
  }
  if (c->flags & BULKRCU_CACHE_TYPESAFE_BY_RCU) gp::wait_for_cookie(gp::get_state(), false);
  cache::reg_del(c);
  pthread_mutex_lock(&c->mu);
  cache::collect_dying_locked(c, true, &slabs);
  while (cache::Slab* s = c->lists[cache::kEmpty].head) {
    cache::list_del(c, s);
    s->next = slabs;
    slabs = s;
  }
  pthread_mutex_unlock(&c->mu);
  cache::release_outside(c, pages, slabs);
  free_slots(c->slots, sizeof(cache::CpuSlot));
  c->~Cache();
  munmap(c, sizeof(Cache));
}

struct bulkrcu_cache* bulkrcu_cache_of(const void* p) {
  cache::Slab* s = cache::slab_of(p);
  return s ? reinterpret_cast<struct bulkrcu_cache*>(s->cache) : nullptr;
}

size_t bulkrcu_cache_object_size(const struct bulkrcu_cache* c) {
  return reinterpret_cast<const Cache*>(c)->size;
}

}  // extern "C"
