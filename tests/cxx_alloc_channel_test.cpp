// The C++ API's allocator channels: rcu_retire and rcu_obj_base::retire of a trivially
// destructible T with std::default_delete and no class-specific operator delete free through
// ::operator delete (this program replaces it, to watch), a few at a time on the retiring
// threads, as bulkrcu_kvfree's pointers are freed with free(); any other deleter still runs
// only on bulkrcu's threads, never inside a retire call.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <new>
#include <thread>

#include "bulkrcu/rcu.h"
#include "bulkrcu/rcu.hpp"

namespace {

// Sizes no other allocation of this program is likely to have.
struct Pod {
  std::uint64_t v[13];  // 104 bytes
};
constexpr std::size_t kPodSize = sizeof(Pod);
struct PodNode : bulkrcu::rcu_obj_base<PodNode> {
  std::uint64_t v[15];
};
static_assert(sizeof(PodNode) != kPodSize);
struct WithClassDelete {
  std::uint64_t v[4];
  static void operator delete(void* p) noexcept;
};
struct WithSizedClassDelete {
  std::uint64_t v[4];
  static void operator delete(void* p, std::size_t) noexcept { ::operator delete(p); }
};
struct NonTrivial {
  std::uint64_t v[4];
  ~NonTrivial();
};
struct alignas(64) OverAligned {
  std::uint64_t v[8];
};

using bulkrcu::detail::kAllocatorDelete;
template <class T>
using DD = std::default_delete<T>;
static_assert(kAllocatorDelete<Pod, DD<Pod>>);
static_assert(kAllocatorDelete<PodNode, DD<PodNode>>);
static_assert(!kAllocatorDelete<WithClassDelete, DD<WithClassDelete>>);
static_assert(!kAllocatorDelete<WithSizedClassDelete, DD<WithSizedClassDelete>>);
static_assert(!kAllocatorDelete<NonTrivial, DD<NonTrivial>>);
static_assert(!kAllocatorDelete<OverAligned, DD<OverAligned>>);
struct OtherDelete {
  void operator()(Pod* p) const { delete p; }
};
static_assert(!kAllocatorDelete<Pod, OtherDelete>);

std::atomic<std::thread::id> g_retiring_thread{};
std::atomic<long> g_pod_deletes{0}, g_pod_deletes_here{0};
std::atomic<long> g_node_deletes{0}, g_node_deletes_here{0};
std::atomic<long> g_class_deletes{0}, g_class_deletes_here{0};
std::atomic<long> g_dtors{0}, g_dtors_here{0};

void count(std::atomic<long>& all, std::atomic<long>& here) {
  all.fetch_add(1, std::memory_order_relaxed);
  if (std::this_thread::get_id() == g_retiring_thread.load(std::memory_order_relaxed))
    here.fetch_add(1, std::memory_order_relaxed);
}

void WithClassDelete::operator delete(void* p) noexcept {
  count(g_class_deletes, g_class_deletes_here);
  ::operator delete(p);
}
NonTrivial::~NonTrivial() { count(g_dtors, g_dtors_here); }

// Retires from this thread until `here` has moved (the helps free on retiring threads), at
// most 10 s; returns how many it retired.
template <class F>
long retire_until_freed_here(std::atomic<long>& here, F retire_one) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  const long here0 = here.load();
  long n = 0;
  while (here.load() == here0 && std::chrono::steady_clock::now() < deadline) {
    for (int i = 0; i < 1024; ++i, ++n) retire_one();
  }
  return n;
}

}  // namespace

// The replacement the test watches: the sized form counts deletes of kPodSize bytes (what
// `delete` of a Pod, and the library's allocator channel, call).
void* operator new(std::size_t n) {
  if (void* p = malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { free(p); }
void operator delete(void* p, std::size_t n) noexcept {
  if (n == kPodSize) count(g_pod_deletes, g_pod_deletes_here);
  if (n == sizeof(PodNode)) count(g_node_deletes, g_node_deletes_here);
  free(p);
}

TEST(AllocatorChannel, DefaultDeleteOfATrivialTypeFreesThroughOperatorDeleteOnRetiringThreads) {
  bulkrcu::rcu_barrier();
  g_retiring_thread = std::this_thread::get_id();
  const long d0 = g_pod_deletes.load();
  const long n = retire_until_freed_here(g_pod_deletes_here, [] { bulkrcu::rcu_retire(new Pod); });
  bulkrcu::rcu_barrier();
  g_retiring_thread = std::thread::id{};
  // Every object went through the replaced ::operator delete with its size (free() would not
  // have counted), and some of them on the retiring thread.
  EXPECT_GE(g_pod_deletes.load() - d0, n);
  EXPECT_GT(g_pod_deletes_here.load(), 0);
}

TEST(AllocatorChannel, ObjRetireOfATrivialTypeTakesTheAllocatorChannelToo) {
  bulkrcu::rcu_barrier();
  g_retiring_thread = std::this_thread::get_id();
  const long d0 = g_node_deletes.load();
  const long n = retire_until_freed_here(g_node_deletes_here, [] { (new PodNode)->retire(); });
  bulkrcu::rcu_barrier();
  g_retiring_thread = std::thread::id{};
  // Through ::operator delete with its size (some through the embedded head's callback when no
  // page was at hand without waiting, on bulkrcu's threads), and some on the retiring thread.
  EXPECT_GE(g_node_deletes.load() - d0, n);
  EXPECT_GT(g_node_deletes_here.load(), 0);
}

// User code (a class-specific operator delete, a destructor) never runs on the retiring
// thread, however many retires it makes.
TEST(AllocatorChannel, ClassDeletesAndDestructorsStayOnBulkrcuThreads) {
  bulkrcu::rcu_barrier();
  g_retiring_thread = std::this_thread::get_id();
  const long c0 = g_class_deletes.load(), t0 = g_dtors.load();
  constexpr int kN = 50000;
  for (int i = 0; i < kN; ++i) {
    bulkrcu::rcu_retire(new WithClassDelete);
    bulkrcu::rcu_retire(new NonTrivial);
  }
  g_retiring_thread = std::thread::id{};
  bulkrcu::rcu_barrier();
  EXPECT_EQ(g_class_deletes.load() - c0, kN);
  EXPECT_EQ(g_dtors.load() - t0, kN);
  EXPECT_EQ(g_class_deletes_here.load(), 0);
  EXPECT_EQ(g_dtors_here.load(), 0);
}
