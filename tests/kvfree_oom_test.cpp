// kvfree under memory exhaustion: operator new fails (throws std::bad_alloc) on the retiring
// thread, first with the page pool working (blocks close, and the retiring thread makes the
// monitor's lite passes: before, `new Batch` there reached std::terminate from noexcept code,
// retire_slow -> kick_monitor -> drive), then with the pool returning no page at all (every
// retire takes its documented fallback). Nothing is lost. (The runtime thread is left out of
// the injection: the callback layer's `new Segment` is another change.)
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <new>

#include "bulkrcu/rcu.h"
#include "bulkrcu/rcu.hpp"
#include "bulkrcu/stats.h"
#include "pool/pool.h"

namespace {
thread_local bool g_fail_new = false;
std::atomic<long> g_new_failures{0};
}  // namespace

// Failure injection for every replaceable allocation function the library could reach.
void* operator new(std::size_t n) {
  if (g_fail_new) {
    g_new_failures.fetch_add(1, std::memory_order_relaxed);
    throw std::bad_alloc();
  }
  if (void* p = malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  if (g_fail_new) return nullptr;
  return malloc(n ? n : 1);
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void operator delete(void* p) noexcept { free(p); }
void operator delete[](void* p) noexcept { free(p); }
void operator delete(void* p, std::size_t) noexcept { free(p); }
void operator delete[](void* p, std::size_t) noexcept { free(p); }

namespace {

std::atomic<long> g_deleted{0};
void count_free(void* p) {
  free(p);
  g_deleted.fetch_add(1);
}
struct Node : bulkrcu::rcu_obj_base<Node> {
  ~Node() { g_deleted.fetch_add(1); }
};
struct Plain {
  ~Plain() { g_deleted.fetch_add(1); }
};

bulkrcu_stats snap() {
  bulkrcu_stats s;
  bulkrcu_get_stats(&s, sizeof s);
  return s;
}

TEST(KvfreeOom, EveryFormTakesItsFallbackAndNothingIsLost) {
  bulkrcu_kvfree_barrier();
  const bulkrcu_stats s0 = snap();
  constexpr int kN = 2000;
  // Objects made before the failures start (operator new is failing meanwhile).
  static Node* nodes[kN];
  static Plain* plains[kN];
  for (int i = 0; i < kN; ++i) {
    nodes[i] = new Node;
    plains[i] = new Plain;
  }
  g_fail_new = true;
  for (int i = 0; i < kN; ++i) {  // pages, but no operator new
    bulkrcu_defer(count_free, malloc(24));
    bulkrcu_kvfree(malloc(24));
  }
  bulkrcu_kvfree_barrier();
  bulkrcu::detail::pool::set_fail_injection(2);  // and no page from the pool at all
  for (int i = 0; i < kN; ++i) {
    bulkrcu_defer(count_free, malloc(24));  // last resort: the runtime thread runs it
    bulkrcu_kvfree(malloc(24));             // last resort: freed inline
    void* h = malloc(64);
    bulkrcu_kfree_head(h, static_cast<bulkrcu_head*>(h));  // linked through its head
    nodes[i]->retire();                                    // through its embedded head
    bulkrcu::rcu_retire(plains[i]);                        // stateless deleter: no node
    if (i % 500 == 0) bulkrcu_kvfree_barrier();            // the runtime thread's passes too
  }
  bulkrcu_kvfree_barrier();
  g_fail_new = false;
  bulkrcu::detail::pool::set_fail_injection(0);
  bulkrcu_kvfree_barrier();
  const bulkrcu_stats s1 = snap();
  EXPECT_EQ(g_deleted.load(), 4L * kN);
  EXPECT_EQ(s1.kv_freed - s0.kv_freed, s1.kv_retired - s0.kv_retired);
  EXPECT_GT(s1.kv_fallback_synchronize, s0.kv_fallback_synchronize);
  EXPECT_GT(s1.kv_fallback_head, s0.kv_fallback_head);
}

}  // namespace
