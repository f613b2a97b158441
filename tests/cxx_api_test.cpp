// The C++ API (<bulkrcu/rcu.hpp>): rcu_domain as a Lockable, rcu_obj_base with a stateful
// deleter, rcu_retire with a custom deleter, rcu_barrier waiting for both.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#include "bulkrcu/rcu.hpp"
#include "gp/gp.h"
#include "test_support.h"

using namespace bulkrcu_test;

namespace {

static_assert(!std::is_copy_constructible_v<bulkrcu::rcu_domain>);
static_assert(!std::is_copy_assignable_v<bulkrcu::rcu_domain>);
static_assert(!std::is_move_constructible_v<bulkrcu::rcu_domain>);
static_assert(!std::is_default_constructible_v<bulkrcu::rcu_domain>, "no public constructor");
static_assert(noexcept(bulkrcu::rcu_default_domain().lock()));
static_assert(noexcept(bulkrcu::rcu_default_domain().unlock()));
static_assert(noexcept(bulkrcu::rcu_default_domain().try_lock()));
static_assert(noexcept(bulkrcu::rcu_synchronize()));
static_assert(noexcept(bulkrcu::rcu_barrier()));

TEST(CxxApi, DefaultDomainIsOneObject) {
  EXPECT_EQ(&bulkrcu::rcu_default_domain(), &bulkrcu::rcu_default_domain());
}

TEST(CxxApi, ScopedLockAndUniqueLock) {
  auto& d = bulkrcu::rcu_default_domain();
  {
    std::scoped_lock lock(d);
    EXPECT_TRUE(bulkrcu_read_lock_held());
    {
      std::unique_lock inner(d);
      EXPECT_EQ(bulkrcu::detail::gp::reader_nesting(), 2u);
      inner.unlock();
      EXPECT_EQ(bulkrcu::detail::gp::reader_nesting(), 1u);
    }
    EXPECT_TRUE(bulkrcu_read_lock_held());
  }
  EXPECT_FALSE(bulkrcu_read_lock_held());
  EXPECT_TRUE(d.try_lock());
  EXPECT_TRUE(bulkrcu_read_lock_held());
  d.unlock();
  EXPECT_FALSE(bulkrcu_read_lock_held());
}

// A scoped_lock reader blocks rcu_synchronize.
TEST(CxxApi, ScopedLockBlocksSynchronize) {
  std::atomic<bool> in{false}, release{false}, done{false};
  bool saw_done = true;
  std::thread reader([&] {
    std::scoped_lock lock(bulkrcu::rcu_default_domain());
    in = true;
    wait_until([&] { return release.load(); });
    saw_done = done.load();
  });
  wait_until([&] { return in.load(); });
  std::thread syncer([&] {
    bulkrcu::rcu_synchronize();
    done = true;
  });
  wait_until([] { return gp_in_progress(); });
  give_window();
  release = true;
  reader.join();
  syncer.join();
  EXPECT_FALSE(saw_done);
  EXPECT_TRUE(done.load());
}

struct Ledger {
  std::atomic<int> deleted{0};
  std::atomic<int> wrong_tag{0};
};

// A stateful deleter (carries a pointer and a tag); default-constructible as rcu_obj_base needs.
struct Node;
struct CountingDeleter {
  Ledger* ledger = nullptr;
  int tag = 0;
  void operator()(Node* n) const;
};

struct Node : bulkrcu::rcu_obj_base<Node, CountingDeleter> {
  explicit Node(int t) : tag(t) {}
  int tag;
  long payload[4] = {1, 2, 3, 4};
};

void CountingDeleter::operator()(Node* n) const {
  if (n->tag != tag) ledger->wrong_tag.fetch_add(1);
  delete n;
  ledger->deleted.fetch_add(1);
}

TEST(CxxApi, ObjBaseRetireWithStatefulDeleter) {
  Ledger ledger;
  constexpr int kN = 1000;
  for (int i = 0; i < kN; ++i) {
    Node* n = new Node(i);
    n->retire(CountingDeleter{&ledger, i});
  }
  bulkrcu::rcu_barrier();
  EXPECT_EQ(ledger.deleted.load(), kN);
  EXPECT_EQ(ledger.wrong_tag.load(), 0);
}

// The deleter runs only after a reader that was active at retire() time has left.
TEST(CxxApi, ObjBaseRetireWaitsForReader) {
  Ledger ledger;
  std::atomic<bool> in{false}, release{false};
  int deleted_inside = -1;
  std::thread reader([&] {
    std::scoped_lock lock(bulkrcu::rcu_default_domain());
    in = true;
    wait_until([&] { return release.load(); });
    deleted_inside = ledger.deleted.load();
  });
  wait_until([&] { return in.load(); });
  (new Node(7))->retire(CountingDeleter{&ledger, 7});
  wait_until([] { return gp_in_progress(); });
  give_window();
  release = true;
  reader.join();
  bulkrcu::rcu_barrier();
  EXPECT_EQ(deleted_inside, 0);
  EXPECT_EQ(ledger.deleted.load(), 1);
}

struct DefaultDeleted : bulkrcu::rcu_obj_base<DefaultDeleted> {
  static inline std::atomic<int> live{0};
  DefaultDeleted() { live.fetch_add(1); }
  ~DefaultDeleted() { live.fetch_sub(1); }
};

TEST(CxxApi, ObjBaseDefaultDeleter) {
  const int before = DefaultDeleted::live.load();
  for (int i = 0; i < 100; ++i) (new DefaultDeleted)->retire();
  bulkrcu::rcu_barrier();
  EXPECT_EQ(DefaultDeleted::live.load(), before);
}

struct Plain {
  int v;
  static inline std::atomic<int> live{0};
  explicit Plain(int x) : v(x) { live.fetch_add(1); }
  ~Plain() { live.fetch_sub(1); }
};

TEST(CxxApi, RcuRetireWithCustomDeleterAndDefault) {
  const int before = Plain::live.load();
  std::atomic<long> sum{0};
  auto deleter = [&sum](Plain* p) {
    sum.fetch_add(p->v);
    delete p;
  };
  long expect = 0;
  for (int i = 1; i <= 500; ++i) {
    bulkrcu::rcu_retire(new Plain(i), deleter);
    expect += i;
  }
  for (int i = 0; i < 100; ++i) bulkrcu::rcu_retire(new Plain(0));
  bulkrcu::rcu_barrier();
  EXPECT_EQ(sum.load(), expect);
  EXPECT_EQ(Plain::live.load(), before);
}

// rcu_barrier waits for deleters scheduled through both paths and through bulkrcu_call, from
// several threads.
TEST(CxxApi, BarrierWaitsForBothPaths) {
  Ledger ledger;
  std::atomic<int> retire_deleted{0};
  bulkrcu_head raw;
  static std::atomic<int> raw_runs{0};
  raw_runs = 0;
  std::vector<std::thread> ts;
  for (int t = 0; t < 3; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < 300; ++i) {
        (new Node(t))->retire(CountingDeleter{&ledger, t});
        bulkrcu::rcu_retire(new int(i), [&retire_deleted](int* p) {
          delete p;
          retire_deleted.fetch_add(1);
        });
      }
    });
  for (auto& t : ts) t.join();
  bulkrcu_call(&raw, [](bulkrcu_head*) { raw_runs.fetch_add(1); });
  bulkrcu::rcu_barrier();
  EXPECT_EQ(ledger.deleted.load(), 900);
  EXPECT_EQ(ledger.wrong_tag.load(), 0);
  EXPECT_EQ(retire_deleted.load(), 900);
  EXPECT_EQ(raw_runs.load(), 1);
}

TEST(CxxApi, ObjBaseCopyDoesNotShareTheHead) {
  Ledger ledger;
  Node* a = new Node(1);
  Node* b = new Node(*a);  // copying the base must not copy queued-callback state
  b->tag = 2;
  a->retire(CountingDeleter{&ledger, 1});
  b->retire(CountingDeleter{&ledger, 2});
  bulkrcu::rcu_barrier();
  EXPECT_EQ(ledger.deleted.load(), 2);
  EXPECT_EQ(ledger.wrong_tag.load(), 0);
}

}  // namespace
