#include "pool/zone.h"

#include <errno.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define BULKRCU_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BULKRCU_LSAN 1
#endif
#endif
#ifdef BULKRCU_LSAN
#include <sanitizer/lsan_interface.h>
#endif

namespace bulkrcu::detail::pool {
namespace {

// ---- page size ------------------------------------------------------------------------------
std::atomic<std::size_t> g_page_size{0};
std::atomic<unsigned> g_page_shift{0};

void init_page_size() noexcept {
  std::size_t ps = static_cast<std::size_t>(getauxval(AT_PAGESZ));
  if (ps == 0) ps = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  if (ps < 4096 || ps > kChunkBytes / 2 || (ps & (ps - 1)) != 0)
    fatal("page pool: unsupported page size (need a power of two in [4 KiB, 1 MiB])");
  g_page_shift.store(static_cast<unsigned>(__builtin_ctzl(ps)), std::memory_order_relaxed);
  g_page_size.store(ps, std::memory_order_relaxed);
}

// ---- chunk registry: a two-level table over 2 MiB frames of the 47-bit address space ----------
constexpr unsigned kFrameShift = 21;
constexpr unsigned kL2Bits = 13;
constexpr unsigned kL1Bits = 47 - kFrameShift - kL2Bits;
using L2 = std::atomic<Chunk*>[std::size_t{1} << kL2Bits];
std::atomic<L2*> g_l1[std::size_t{1} << kL1Bits];

// Guards L2 creation and the descriptor free list. Lock order: zone lock -> registry lock.
pthread_mutex_t g_registry_mu = PTHREAD_MUTEX_INITIALIZER;
Chunk* g_free_descs = nullptr;  // written under g_registry_mu

std::atomic<Chunk*>* registry_cell(std::uintptr_t addr, bool create) noexcept {
  std::uintptr_t frame = addr >> kFrameShift;
  if (frame >> (kL1Bits + kL2Bits)) return nullptr;
  std::atomic<L2*>& l1 = g_l1[frame >> kL2Bits];
  L2* l2 = l1.load(std::memory_order_acquire);  // pairs with the release store below
  if (!l2) {
    if (!create) return nullptr;
    void* m = mmap(nullptr, sizeof(L2), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) fatal("page pool: cannot map the chunk registry");
    l2 = static_cast<L2*>(m);
    l1.store(l2, std::memory_order_release);  // called under g_registry_mu: no racing creator
  }
  return &(*l2)[frame & ((std::size_t{1} << kL2Bits) - 1)];
}

Chunk* new_desc() noexcept {  // under g_registry_mu
  if (!g_free_descs) {
    constexpr std::size_t kSlab = 64 * 1024;
    void* m = mmap(nullptr, kSlab, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return nullptr;
    Chunk* arr = static_cast<Chunk*>(m);
    for (std::size_t i = 0; i < kSlab / sizeof(Chunk); ++i) {
      arr[i].next = g_free_descs;
      g_free_descs = &arr[i];
    }
  }
  Chunk* c = g_free_descs;
  g_free_descs = c->next;
  return c;
}

// Maps a 2 MiB-aligned chunk: over-map by one chunk and trim both ends.
char* map_chunk() noexcept {
  void* m = mmap(nullptr, 2 * kChunkBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return nullptr;
  std::uintptr_t a = reinterpret_cast<std::uintptr_t>(m);
  std::uintptr_t aligned = (a + kChunkBytes - 1) & ~(kChunkBytes - 1);
  if (aligned > a) munmap(m, aligned - a);
  std::uintptr_t end = a + 2 * kChunkBytes;
  if (end > aligned + kChunkBytes)
    munmap(reinterpret_cast<void*>(aligned + kChunkBytes), end - (aligned + kChunkBytes));
#ifdef BULKRCU_LSAN
  // Pages hold kvfree blocks: arrays of pointers to objects waiting for a grace period. For
  // LeakSanitizer those objects are reachable (a process that exits with retires pending has
  // not leaked them).
  __lsan_register_root_region(reinterpret_cast<void*>(aligned), kChunkBytes);
#endif
  return reinterpret_cast<char*>(aligned);
}

// Returns a chunk to the OS.
void unmap_chunk(void* base) noexcept {
#ifdef BULKRCU_LSAN
  __lsan_unregister_root_region(base, kChunkBytes);
#endif
  munmap(base, kChunkBytes);
}

// Registers a freshly mapped chunk and returns its descriptor (nullptr when out of memory).
Chunk* register_chunk(char* base) noexcept {
  pthread_mutex_lock(&g_registry_mu);
  Chunk* c = new_desc();
  if (c) {
    c->base = base;
    c->next = c->prev = nullptr;
    for (auto& f : c->free) f = nullptr;
    c->nr_free = 0;
    c->order_mask = 0;
    for (auto& s : c->state) s.store(kTail, std::memory_order_relaxed);
    // Release: a lock-free chunk_of() that finds c sees base and state initialized.
    registry_cell(reinterpret_cast<std::uintptr_t>(base), true)->store(c, std::memory_order_release);
  }
  pthread_mutex_unlock(&g_registry_mu);
  return c;
}

void unregister_chunk(Chunk* c) noexcept {
  pthread_mutex_lock(&g_registry_mu);
  registry_cell(reinterpret_cast<std::uintptr_t>(c->base), false)->store(nullptr, std::memory_order_release);
  pthread_mutex_unlock(&g_registry_mu);
}

void release_desc(Chunk* c) noexcept {
  pthread_mutex_lock(&g_registry_mu);
  c->base = nullptr;
  c->next = g_free_descs;
  g_free_descs = c;
  pthread_mutex_unlock(&g_registry_mu);
}

// Returns a list of detached chunks to the OS and their descriptors to the free list. Called
// after the zone lock is dropped: munmap never runs under it.
void unmap_dead(Chunk* dead) noexcept {
  while (dead) {
    Chunk* next = dead->next;
    unmap_chunk(dead->base);
    release_desc(dead);
    dead = next;
  }
}

inline std::size_t index_in(const Chunk* c, const void* p) noexcept {
  return static_cast<std::size_t>(static_cast<const char*>(p) - c->base) >> page_shift();
}
inline FreePage* page_at(const Chunk* c, std::size_t idx) noexcept {
  return reinterpret_cast<FreePage*>(c->base + (idx << page_shift()));
}

}  // namespace

std::size_t page_size() noexcept {
  std::size_t ps = g_page_size.load(std::memory_order_relaxed);
  if (BULKRCU_UNLIKELY(ps == 0)) {
    init_page_size();
    ps = g_page_size.load(std::memory_order_relaxed);
  }
  return ps;
}

unsigned page_shift() noexcept {
  if (BULKRCU_UNLIKELY(g_page_size.load(std::memory_order_relaxed) == 0)) init_page_size();
  return g_page_shift.load(std::memory_order_relaxed);
}

unsigned max_order() noexcept {
  unsigned o = 21 - page_shift();
  return o > 9 ? 9 : o;
}

Chunk* chunk_of(const void* p) noexcept {
  std::uintptr_t a = reinterpret_cast<std::uintptr_t>(p);
  std::atomic<Chunk*>* cell = registry_cell(a, false);
  if (!cell) return nullptr;
  Chunk* c = cell->load(std::memory_order_acquire);  // pairs with register_chunk's release
  if (!c || reinterpret_cast<std::uintptr_t>(c->base) != (a & ~(kChunkBytes - 1))) return nullptr;
  return c;
}

void poison_page(void* page) noexcept {
  memset(static_cast<char*>(page) + kHeaderBytes, 0x6b, page_size() - kHeaderBytes);
}

std::size_t check_poison(const void* page) noexcept {
  const std::uint64_t* w =
      reinterpret_cast<const std::uint64_t*>(static_cast<const char*>(page) + kHeaderBytes);
  const std::size_t n = (page_size() - kHeaderBytes) / sizeof(std::uint64_t);
  std::uint64_t acc = 0;
  for (std::size_t i = 0; i < n; ++i) acc |= w[i] ^ kPoison;  // vectorizes; exit only at the end
  if (BULKRCU_LIKELY(acc == 0)) return 0;
  const unsigned char* b = static_cast<const unsigned char*>(page);
  for (std::size_t off = kHeaderBytes; off < page_size(); ++off)
    if (b[off] != 0x6b) return off;
  return 0;
}

// ---- Zone ----------------------------------------------------------------------------------

void Zone::list_add(Chunk* c, FreePage* p, unsigned order) noexcept {
  p->prev = nullptr;
  p->next = c->free[order];
  if (p->next) p->next->prev = p;
  c->free[order] = p;
  c->order_mask |= 1u << order;
  c->nr_free += 1u << order;
  ++nr_blocks_[order];
}

void Zone::list_del(Chunk* c, FreePage* p, unsigned order) noexcept {
  if (p->prev)
    p->prev->next = p->next;
  else
    c->free[order] = p->next;
  if (p->next) p->next->prev = p->prev;
  if (!c->free[order]) c->order_mask &= ~(1u << order);
  c->nr_free -= 1u << order;
  --nr_blocks_[order];
}

void Zone::add_chunk_locked(Chunk* c) noexcept {
  c->prev = nullptr;
  c->next = chunks_;
  if (chunks_) chunks_->prev = c;
  chunks_ = c;
  const unsigned mo = max_order();
  c->state[0].store(static_cast<std::uint8_t>(kFreeHead | mo), std::memory_order_relaxed);
  list_add(c, reinterpret_cast<FreePage*>(c->base), mo);
  nr_free_pages_.store(nr_free_pages_.load(std::memory_order_relaxed) + (1u << mo),
                       std::memory_order_relaxed);
  nr_chunks_.store(nr_chunks_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  chunks_mapped_.store(chunks_mapped_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

// Removes a wholly free chunk from the zone (its one block is on free_[max_order]).
void Zone::detach_chunk_locked(Chunk* c) noexcept {
  const unsigned mo = max_order();
  list_del(c, reinterpret_cast<FreePage*>(c->base), mo);
  c->state[0].store(kTail, std::memory_order_relaxed);
  if (c->prev)
    c->prev->next = c->next;
  else
    chunks_ = c->next;
  if (c->next) c->next->prev = c->prev;
  nr_free_pages_.store(nr_free_pages_.load(std::memory_order_relaxed) - (1u << mo),
                       std::memory_order_relaxed);
  nr_chunks_.store(nr_chunks_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  chunks_unmapped_.store(chunks_unmapped_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  unregister_chunk(c);
}

bool Zone::grow() noexcept {
  char* base = map_chunk();
  if (!base) return false;
  if (debug_) {
    const std::size_t ps = page_size();
    for (std::size_t off = 0; off < kChunkBytes; off += ps) poison_page(base + off);
  }
  Chunk* c = register_chunk(base);
  if (!c) {
    unmap_chunk(base);
    return false;
  }
  lock();
  add_chunk_locked(c);
  unlock();
  return true;
}

FreePage* Zone::take_locked(unsigned order) noexcept {
  const std::uint32_t want = ~((1u << order) - 1);
  Chunk* c = nullptr;
  for (Chunk* i = chunks_; i; i = i->next)  // the fullest chunk that can serve `order`
    if ((i->order_mask & want) && (!c || i->nr_free < c->nr_free)) c = i;
  if (!c) return nullptr;
  unsigned k = static_cast<unsigned>(__builtin_ctz(c->order_mask & want));
  FreePage* p = c->free[k];
  list_del(c, p, k);
  const std::size_t idx = index_in(c, p);
  const std::uint8_t rel = c->state[idx].load(std::memory_order_relaxed) & kReleased;
  while (k > order) {  // split: keep the lower half, free the upper half
    --k;
    const std::size_t b = idx + (std::size_t{1} << k);
    c->state[b].store(static_cast<std::uint8_t>(kFreeHead | k | rel), std::memory_order_relaxed);
    list_add(c, page_at(c, b), k);
  }
  c->state[idx].store(static_cast<std::uint8_t>(kOnList | rel), std::memory_order_relaxed);
  nr_free_pages_.store(nr_free_pages_.load(std::memory_order_relaxed) - (1u << order),
                       std::memory_order_relaxed);
  return p;
}

Chunk* Zone::give_locked(FreePage* p, unsigned order) noexcept {
  Chunk* c = chunk_of(p);
  if (BULKRCU_UNLIKELY(!c)) fatal("page pool: the zone was handed a page outside every chunk");
  const unsigned mo = max_order();
  std::size_t idx = index_in(c, p);
  std::uint8_t rel = c->state[idx].load(std::memory_order_relaxed) & kReleased;
  if (debug_) {
    std::uint8_t s = c->state[idx].load(std::memory_order_relaxed) & kStateMask;
    if (s != kOnList && s != kAllocated) fatal("page pool: a free page was returned to the zone twice");
  }
  nr_free_pages_.store(nr_free_pages_.load(std::memory_order_relaxed) + (1u << order),
                       std::memory_order_relaxed);
  while (order < mo) {
    const std::size_t b = idx ^ (std::size_t{1} << order);
    const std::uint8_t sb = c->state[b].load(std::memory_order_relaxed);
    if ((sb & kStateMask) != (kFreeHead | order)) break;
    rel |= sb & kReleased;
    list_del(c, page_at(c, b), order);
    c->state[b].store(kTail, std::memory_order_relaxed);
    c->state[idx].store(kTail, std::memory_order_relaxed);
    idx &= ~(std::size_t{1} << order);
    ++order;
  }
  c->state[idx].store(static_cast<std::uint8_t>(kFreeHead | order | rel), std::memory_order_relaxed);
  list_add(c, page_at(c, idx), order);
  if (order == mo && nr_chunks_.load(std::memory_order_relaxed) > floor_ && nr_blocks_[mo] > spare_) {
    detach_chunk_locked(c);
    return c;
  }
  return nullptr;
}

void* Zone::alloc(unsigned order, bool may_grow) noexcept {
  if (order > max_order()) {
    errno = EINVAL;
    return nullptr;
  }
  for (;;) {
    lock();
    FreePage* p = take_locked(order);
    unlock();
    if (p) return p;
    if (!may_grow || !grow()) {
      errno = ENOMEM;
      return nullptr;
    }
  }
}

std::size_t Zone::alloc_bulk(std::size_t n, FreePage** chain, bool may_grow) noexcept {
  std::size_t got = 0;
  FreePage* head = nullptr;
  while (got < n) {
    lock();
    while (got < n) {
      FreePage* p = take_locked(0);
      if (!p) break;
      p->next = head;
      head = p;
      ++got;
    }
    unlock();
    if (got < n && (!may_grow || !grow())) break;
  }
  *chain = head;
  return got;
}

void Zone::free(void* block, unsigned order) noexcept {
  lock();
  Chunk* dead = give_locked(static_cast<FreePage*>(block), order);
  unlock();
  if (dead) {
    unmap_chunk(dead->base);
    release_desc(dead);
  }
}

void Zone::free_chain(FreePage* chain) noexcept {
  Chunk* dead = nullptr;  // linked through Chunk::next once detached
  lock();
  while (chain) {
    FreePage* next = chain->next;
    if (Chunk* c = give_locked(chain, 0)) {
      c->next = dead;
      dead = c;
    }
    chain = next;
  }
  unlock();
  unmap_dead(dead);
}

std::size_t Zone::release_locked() noexcept {
  const std::size_t ps = page_size();
  std::size_t pages = 0;
  for (Chunk* c = chunks_; c; c = c->next)
    for (unsigned k = kReleaseOrder; k <= max_order(); ++k)
      for (FreePage* p = c->free[k]; p; p = p->next) {
        // Every page but the first (the block's header): they read as zero from now on, which
        // kReleased tells debug mode. Madvised again on every shrink: a merge with a block
        // that was in use leaves part of the block resident, and the kernel skips pages that
        // are not.
        if (madvise(reinterpret_cast<char*>(p) + ps, (ps << k) - ps, MADV_DONTNEED) != 0) continue;
        std::atomic<std::uint8_t>& st = c->state[index_in(c, p)];
        st.store(st.load(std::memory_order_relaxed) | kReleased, std::memory_order_relaxed);
        pages += (std::size_t{1} << k) - 1;
      }
  return pages;
}

std::size_t Zone::shrink() noexcept {
  const unsigned mo = max_order();
  Chunk* dead = nullptr;
  std::size_t n = 0;
  lock();
  for (Chunk* c = chunks_; c && nr_chunks_.load(std::memory_order_relaxed) > floor_;) {
    Chunk* next = c->next;
    if (c->nr_free == (1u << mo)) {
      detach_chunk_locked(c);
      c->next = dead;
      dead = c;
      ++n;
    }
    c = next;
  }
  release_locked();
  unlock();
  unmap_dead(dead);
  return n;
}

std::uint64_t Zone::resident_bytes() noexcept {
  const std::size_t ps = page_size();
  unsigned char vec[kMaxPagesPerChunk];
  std::uint64_t pages = 0;
  lock();
  for (Chunk* c = chunks_; c; c = c->next) {
    if (mincore(c->base, kChunkBytes, vec) != 0) {
      pages += kChunkBytes / ps;
      continue;
    }
    for (std::size_t i = 0; i < kChunkBytes / ps; ++i) pages += vec[i] & 1;
  }
  unlock();
  return pages * ps;
}

std::uint64_t Zone::nr_free_blocks(unsigned order) noexcept {
  lock();
  std::uint64_t n = order < 10 ? nr_blocks_[order] : 0;
  unlock();
  return n;
}

const char* Zone::check() noexcept {
  const unsigned mo = max_order();
  const char* bad = nullptr;
  std::uint64_t pages = 0;
  std::uint64_t blocks[10] = {};
  std::uint64_t chunks = 0;
  lock();
  for (Chunk* c = chunks_; c && !bad; c = c->next, ++chunks) {
    if (chunk_of(c->base) != c) bad = "chunk not registered";
    std::uint64_t chunk_pages = 0;
    std::uint64_t heads = 0;
    for (unsigned k = 0; k <= mo && !bad; ++k) {
      if (((c->order_mask >> k) & 1) != (c->free[k] != nullptr)) bad = "chunk order mask mismatch";
      for (FreePage* p = c->free[k]; p && !bad; p = p->next, ++blocks[k], ++heads) {
        if (chunk_of(p) != c) {
          bad = "free block on another chunk's list";
          break;
        }
        const std::size_t idx = index_in(c, p);
        const std::uint8_t st = c->state[idx].load(std::memory_order_relaxed) & kStateMask;
        if (idx & ((std::size_t{1} << k) - 1)) bad = "free block misaligned for its order";
        if (st != (kFreeHead | k)) bad = "free block state mismatch";
        if (k < mo && (c->state[idx ^ (std::size_t{1} << k)].load(std::memory_order_relaxed) & kStateMask) ==
                          (kFreeHead | k))
          bad = "two free buddies were not merged";
        if (p->next && p->next->prev != p) bad = "free list links broken";
        chunk_pages += std::uint64_t{1} << k;
      }
    }
    if (!bad && chunk_pages != c->nr_free) bad = "chunk free page count mismatch";
    std::uint64_t marked = 0;
    for (unsigned i = 0; i < (1u << mo); ++i)
      if (c->state[i].load(std::memory_order_relaxed) & kFreeHead) ++marked;
    if (!bad && marked != heads) bad = "a page is marked free but is on no free list";
    pages += chunk_pages;
  }
  for (unsigned k = 0; k <= mo && !bad; ++k)
    if (blocks[k] != nr_blocks_[k]) bad = "free block count mismatch";
  if (!bad && pages != nr_free_pages_.load(std::memory_order_relaxed)) bad = "free page count mismatch";
  if (!bad && chunks != nr_chunks_.load(std::memory_order_relaxed)) bad = "chunk count mismatch";
  unlock();
  return bad;
}

void Zone::destroy() noexcept {
  lock();
  const unsigned mo = max_order();
  Chunk* dead = nullptr;
  while (chunks_) {
    Chunk* c = chunks_;
    if ((c->state[0].load(std::memory_order_relaxed) & kStateMask) != (kFreeHead | mo))
      fatal("page pool: Zone::destroy() with pages still allocated");
    detach_chunk_locked(c);
    c->next = dead;
    dead = c;
  }
  unlock();
  unmap_dead(dead);
}

// Fork: the registry mutex is taken after every zone lock (lock order zone -> registry).
void registry_lock_for_fork() noexcept { pthread_mutex_lock(&g_registry_mu); }
void registry_unlock_after_fork(bool child) noexcept {
  if (child)
    pthread_mutex_init(&g_registry_mu, nullptr);
  else
    pthread_mutex_unlock(&g_registry_mu);
}

}  // namespace bulkrcu::detail::pool
