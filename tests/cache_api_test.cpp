// The object caches' kernel spellings (kernel.h) and C++ API (rcu.hpp): kmem_cache_*,
// kvfree_rcu / kfree_rcu of cache objects back to their cache, rcu_cache<T>, rcu_obj_base and
// rcu_retire of cache objects.
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <vector>

// rcu.hpp first: kernel.h defines rcu_barrier() as a macro.
#include "bulkrcu/rcu.hpp"
// (clang-format keeps this order)
#include "bulkrcu/kernel.h"
#include "cache/cache.h"
#include "pool/pool.h"

namespace {

using bulkrcu::detail::cache::info;

struct KObj {
  long key;
  struct rcu_head rh;
  long pad;
};

int g_ctor = 0;
void kctor(void* p) {
  ++g_ctor;
  static_cast<KObj*>(p)->key = -1;
}

TEST(CacheKernel, KmemCacheSpellings) {
  struct kmem_cache* c = kmem_cache_create("kobj", sizeof(KObj), 0, SLAB_HWCACHE_ALIGN, kctor);
  ASSERT_NE(c, nullptr);
  KObj* a = static_cast<KObj*>(kmem_cache_alloc(c, GFP_KERNEL));
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a) % 64, 0u);
  EXPECT_EQ(a->key, -1);  // constructed
  EXPECT_GT(g_ctor, 0);
  KObj* z = static_cast<KObj*>(kmem_cache_zalloc(c, GFP_NOWAIT));  // lockless: may be NULL
  if (z) {
    EXPECT_EQ(z->key, 0);
    kmem_cache_free(c, z);
  }
  kmem_cache_free(c, a);
  EXPECT_EQ(kmem_cache_shrink(c), 0);
  kmem_cache_destroy(c);
  struct kmem_cache* t = kmem_cache_create("kts", 40, 8, SLAB_TYPESAFE_BY_RCU, nullptr);
  ASSERT_NE(t, nullptr);
  kmem_cache_free(t, kmem_cache_alloc(t, GFP_ATOMIC | GFP_KERNEL));
  kmem_cache_destroy(t);
}

// kvfree_rcu(p) and kfree_rcu(p, rh) of cache objects go back to the cache, not to free():
// destroy would abort if any were lost, and glibc would abort on a free() of a slab pointer.
TEST(CacheKernel, KvfreeRcuOfCacheObjectsGoesToTheCache) {
  struct kmem_cache* c = kmem_cache_create("kvfree-routed", sizeof(KObj), 0, 0, nullptr);
  for (int round = 0; round < 3; ++round) {
    std::vector<KObj*> v;
    for (int i = 0; i < 300; ++i) v.push_back(static_cast<KObj*>(kmem_cache_alloc(c, GFP_KERNEL)));
    if (round == 2) bulkrcu::detail::pool::set_fail_injection(1);  // kfree_rcu's head fallback
    for (int i = 0; i < 300; ++i) {
      if (i % 2)
        kvfree_rcu(v[i]);
      else
        kfree_rcu(v[i], rh);
    }
    bulkrcu::detail::pool::set_fail_injection(0);
    kvfree_rcu_barrier_on_cache(c);
    kmem_cache_shrink(c);
    EXPECT_EQ(info(c).objects_out, 0u);
  }
  // malloc'ed pointers still go to free() (ASan would report a leak or a bad free otherwise).
  for (int i = 0; i < 100; ++i) kvfree_rcu(malloc(24));
  kvfree_rcu_barrier();
  kmem_cache_destroy(c);
}

// ---- C++ ---------------------------------------------------------------------------------------
std::atomic<int> g_live{0};
struct Node : bulkrcu::rcu_obj_base<Node> {
  std::string name;
  explicit Node(std::string n) : name(std::move(n)) { ++g_live; }
  ~Node() { --g_live; }
};
struct Plain {
  int a, b;
};

TEST(CacheCxx, MakeRetireDisposeBarrier) {
  bulkrcu::rcu_cache<Node> nodes("nodes");
  ASSERT_NE(nodes.get(), nullptr);
  std::vector<Node*> v;
  for (int i = 0; i < 200; ++i) v.push_back(nodes.make("node-" + std::to_string(i)));
  EXPECT_EQ(g_live.load(), 200);
  EXPECT_EQ(v[7]->name, "node-7");
  for (int i = 0; i < 50; ++i) nodes.dispose(v[i]);
  EXPECT_EQ(g_live.load(), 150);
  for (int i = 50; i < 100; ++i) nodes.retire(v[i]);
  for (int i = 100; i < 150; ++i) v[i]->retire();  // rcu_obj_base: back to the cache
  for (int i = 150; i < 200; ++i) bulkrcu::rcu_retire(v[i]);
  nodes.barrier();
  EXPECT_EQ(g_live.load(), 0);
  bulkrcu_cache_shrink(nodes.get());
  EXPECT_EQ(info(nodes.get()).objects_out, 0u);
}

TEST(CacheCxx, TriviallyDestructibleNeedsNoDeleter) {
  bulkrcu::rcu_cache<Plain> plain("plain", BULKRCU_CACHE_TYPESAFE_BY_RCU);
  const auto sealed0 = info(plain.get()).sealed;
  for (int i = 0; i < 100; ++i) plain.retire(plain.make(Plain{i, i}));
  EXPECT_GT(info(plain.get()).sealed, sealed0);  // went through the cache's retired arrays
  plain.barrier();
}

}  // namespace
