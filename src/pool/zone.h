// bulkrcu/src/pool/zone.h: the zone, a buddy allocator over 2 MiB chunks (layer pool).
//
// Pages are bulkrcu_page_size() bytes. The zone maps 2 MiB-aligned chunks with mmap(2) and
// hands out power-of-two blocks of pages, orders 0..max_order() (9 with 4 KiB pages: one block
// of order 9 is a whole chunk). Everything here runs under the zone lock, a pthread mutex,
// except chunk_of() and page_size(), which are lock-free.
//
// Free block headers live in the free pages themselves (FreePage below); per-page state lives
// out of band in the chunk's descriptor (Chunk::state), so that a free block is never touched
// beyond its first page's header and a debug check can classify any pointer.
//
// Invariants (checked by Zone::check()):
//   * every free block of order k starts at a page index that is a multiple of 2^k inside its
//     chunk, its first page has state kFreeHead|k, and it is on free_[k];
//   * its buddy (index ^ 2^k) is not a free head of order k unless k == max_order (else the
//     two would have merged);
//   * sum over free blocks of 2^k == nr_free_pages(); per chunk, == Chunk::nr_free;
//   * a block of order max_order() is a wholly free chunk; at most `spare` of them stay mapped
//     when more than `floor` chunks are mapped (the rest go back to the OS at once).
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "base/base.h"

namespace bulkrcu::detail::pool {

inline constexpr std::size_t kChunkBytes = std::size_t{2} << 20;
inline constexpr unsigned kMaxPagesPerChunk = 512;  // 2 MiB / 4 KiB, the smallest page we accept

// Header of a free page: written only while the pool owns the page.
struct FreePage {
  FreePage* next;  // zone free-list or chain link; on a per-CPU list: the link word (pool.cpp)
  std::uintptr_t unused0;
  FreePage* prev;         // zone free list (doubly linked)
  std::uintptr_t unused;  // keeps the header 32 bytes
};
// Debug poison covers [kHeaderBytes, page_size) of every free page.
inline constexpr std::size_t kHeaderBytes = sizeof(FreePage);
static_assert(kHeaderBytes == 32);

// Per-page state, one byte in the chunk descriptor.
enum PageState : std::uint8_t {
  kTail = 0,         // inside a free block (not its first page), or a non-first page of a block
  kAllocated = 1,    // owned by a caller (debug mode tracks this on the per-CPU fast paths)
  kOnList = 2,       // on a per-CPU list or in transit between a list and the zone
  kFreeHead = 0x10,  // | order: first page of a free block of that order, on its chunk's free list
  // | kFreeHead|order: some of the block's pages after its first may have been given back with
  // MADV_DONTNEED (they read as zero, not as poison); kept through splits and merges (OR), so
  // | kOnList marks a page handed out of such a block: debug mode does not check its poison.
  kReleased = 0x20,
};
inline constexpr std::uint8_t kStateMask = static_cast<std::uint8_t>(~kReleased);

struct Chunk {
  char* base;   // 2 MiB aligned; nullptr while the descriptor is unused
  Chunk* next;  // zone's chunk list, or the descriptor free list
  Chunk* prev;
  // Written under the zone lock: this chunk's free blocks, one doubly linked list per order,
  // sum over them of 2^order == nr_free, bit k of order_mask == (free[k] != nullptr).
  FreePage* free[10];
  std::uint32_t nr_free;
  std::uint32_t order_mask;
  std::atomic<std::uint8_t> state[kMaxPagesPerChunk];
};

// The system page size (cached; async-signal-safe).
std::size_t page_size() noexcept;
unsigned page_shift() noexcept;
// log2(pages per chunk), at most 9.
unsigned max_order() noexcept;

// The chunk holding `p`, or nullptr when no zone has mapped it. Lock-free and
// async-signal-safe: a two-level table indexed by the address's 2 MiB frame; entries are set
// when a chunk is mapped and cleared before it is unmapped. A descriptor is reused, never freed,
// so a racing reader must compare chunk->base with the frame it looked up (chunk_of does).
Chunk* chunk_of(const void* p) noexcept;

// Debug-mode poison (the kernel's PAGE_POISON pattern idea: a byte that is neither 0 nor a
// likely pointer byte).
inline constexpr std::uint64_t kPoison = 0x6b6b6b6b6b6b6b6bull;
void poison_page(void* page) noexcept;
// Returns the offset of the first byte that is not poison, or 0 when the page is intact.
std::size_t check_poison(const void* page) noexcept;

// Fork support for the registry (lock order: every zone lock, then the registry lock).
void registry_lock_for_fork() noexcept;
void registry_unlock_after_fork(bool child) noexcept;

class Zone {
 public:
  // floor: chunks kept mapped at least; spare: wholly free chunks kept (beyond the floor) when a
  // chunk becomes wholly free, so that alternating alloc/free does not map and unmap each time.
  constexpr Zone(unsigned floor, unsigned spare) : floor_(floor), spare_(spare) {}

  // Debug: pages of new chunks are poisoned, and returned pages' states are checked.
  void set_debug(bool on) noexcept { debug_ = on; }

  // A block of 2^order pages (state kOnList for its first page). May map a chunk (outside the
  // lock) unless `may_grow` is false. nullptr only when mmap fails (or no block is free and
  // `may_grow` is false). Blocks: zone lock, mmap.
  void* alloc(unsigned order, bool may_grow = true) noexcept;
  // Takes up to n order-0 pages, links them through FreePage::next into *chain, states kOnList.
  // Returns the number taken (< n only when mmap fails, or when the free pages ran out and
  // `may_grow` is false: then no chunk is mapped).
  std::size_t alloc_bulk(std::size_t n, FreePage** chain, bool may_grow = true) noexcept;
  // Returns a block; merges with free buddies; may unmap a wholly free chunk (after unlocking).
  void free(void* block, unsigned order) noexcept;
  // Returns a chain of order-0 pages linked through FreePage::next.
  void free_chain(FreePage* chain) noexcept;
  // Unmaps every wholly free chunk above the floor, then gives the pages of every free block of
  // order >= kReleaseOrder (except each block's first page, which holds its header) back with
  // MADV_DONTNEED, under the lock. Returns the number of chunks unmapped.
  static constexpr unsigned kReleaseOrder = 4;  // 16 pages: 64 KiB with 4 KiB pages
  std::size_t shrink() noexcept;

  // Checks the invariants above; returns nullptr or a description of the first violation.
  const char* check() noexcept;

  // Gauges and counters (relaxed reads; written under the lock).
  std::uint64_t nr_free_pages() const noexcept { return nr_free_pages_.load(std::memory_order_relaxed); }
  std::uint64_t nr_chunks() const noexcept { return nr_chunks_.load(std::memory_order_relaxed); }
  std::uint64_t chunks_mapped() const noexcept { return chunks_mapped_.load(std::memory_order_relaxed); }
  std::uint64_t chunks_unmapped() const noexcept { return chunks_unmapped_.load(std::memory_order_relaxed); }
  // Bytes of the mapped chunks that are resident (mincore(2) over every chunk, under the lock).
  std::uint64_t resident_bytes() noexcept;
  // Free blocks of an order (for tests); takes the lock.
  std::uint64_t nr_free_blocks(unsigned order) noexcept;

  // Unmaps every chunk; every page must be free (test zones only; aborts otherwise).
  void destroy() noexcept;

  // Fork support: the prepare handler takes the lock, parent and child release it.
  void lock() noexcept { pthread_mutex_lock(&mu_); }
  void unlock() noexcept { pthread_mutex_unlock(&mu_); }
  void reinit_lock_in_child() noexcept { pthread_mutex_init(&mu_, nullptr); }

 private:
  // Allocation policy: the block comes from the fullest chunk (fewest free pages) that has a
  // free block of at least `order`, so partly used chunks fill up and the emptiest ones drain
  // and can go back to the OS; inside it, the smallest such order (buddy splitting).
  FreePage* take_locked(unsigned order) noexcept;
  // Returns a chunk to unmap after unlocking, or nullptr.
  Chunk* give_locked(FreePage* p, unsigned order) noexcept;
  void list_add(Chunk* c, FreePage* p, unsigned order) noexcept;
  void list_del(Chunk* c, FreePage* p, unsigned order) noexcept;
  std::size_t release_locked() noexcept;  // the MADV_DONTNEED part of shrink()
  void add_chunk_locked(Chunk* c) noexcept;
  void detach_chunk_locked(Chunk* c) noexcept;
  bool grow() noexcept;  // maps one chunk and adds it; false when mmap fails

  pthread_mutex_t mu_ = PTHREAD_MUTEX_INITIALIZER;
  unsigned floor_;
  unsigned spare_;
  bool debug_ = false;
  // Written under mu_.
  std::uint64_t nr_blocks_[10] = {};
  Chunk* chunks_ = nullptr;
  std::atomic<std::uint64_t> nr_free_pages_{0};
  std::atomic<std::uint64_t> nr_chunks_{0};
  std::atomic<std::uint64_t> chunks_mapped_{0};
  std::atomic<std::uint64_t> chunks_unmapped_{0};
};

}  // namespace bulkrcu::detail::pool
