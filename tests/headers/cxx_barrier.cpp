// kernel.h and rcu.hpp in one C++ file: bulkrcu::rcu_barrier is reachable qualified and waits
// for rcu_retire'd objects; ::rcu_barrier waits for call_rcu callbacks.
// (tests/headers.cmake prepends every header in some order.)
#include <atomic>
#include <cstdio>
#include <mutex>

namespace {
std::atomic<int> deleted{0};
struct Obj {
  ~Obj() { deleted.fetch_add(1); }
};
struct Del {
  void operator()(Obj* o) const { delete o; }
};
int cbs = 0;
void on_cb(rcu_head*) { cbs++; }
}  // namespace

int main() {
  int failed = 0;
  for (int i = 0; i < 100; i++) bulkrcu::rcu_retire(new Obj, Del{});
  bulkrcu::rcu_barrier();
  if (deleted.load() != 100) failed++;
  static rcu_head h;
  call_rcu(&h, on_cb);
  ::rcu_barrier();
  if (cbs != 1) failed++;
  {
    std::scoped_lock lock(bulkrcu::rcu_default_domain());
    if (!rcu_read_lock_held()) failed++;
  }
  if (failed) std::fprintf(stderr, "cxx_barrier: %d checks failed (deleted %d)\n", failed, deleted.load());
  return failed;
}
