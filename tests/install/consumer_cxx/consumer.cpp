// A C++ program using every installed header (rcu.hpp and kernel.h together).
#include <bulkrcu/kernel.h>
#include <bulkrcu/page_pool.h>
#include <bulkrcu/rcu.h>
#include <bulkrcu/stats.h>

#include <atomic>
#include <bulkrcu/rcu.hpp>
#include <cstdio>
#include <mutex>

namespace {
std::atomic<int> deleted{0};
struct Node : bulkrcu::rcu_obj_base<Node> {
  int value = 7;
  ~Node() { deleted.fetch_add(1); }
};
std::atomic<Node*> current{nullptr};
}  // namespace

int main() {
  current.store(new Node);
  int seen = 0;
  {
    std::scoped_lock lock(bulkrcu::rcu_default_domain());
    seen = current.load(std::memory_order_acquire)->value;
  }
  Node* old = current.exchange(new Node, std::memory_order_acq_rel);
  old->retire();
  bulkrcu::rcu_barrier();
  synchronize_rcu();
  current.load()->retire();
  bulkrcu::rcu_barrier();
  if (seen != 7 || deleted.load() != 2) {
    std::fprintf(stderr, "consumer_cxx: seen %d deleted %d\n", seen, deleted.load());
    return 1;
  }
  return 0;
}
