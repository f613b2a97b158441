// Must NOT compile (tests/headers.cmake checks that the compiler rejects it as ambiguous):
// with both namespaces visible, an unqualified rcu_barrier() could mean ::rcu_barrier
// (callbacks) or bulkrcu::rcu_barrier (every deleter); it must never silently pick one.
#include <bulkrcu/kernel.h>

#include <bulkrcu/rcu.hpp>
using namespace bulkrcu;
int main() { rcu_barrier(); }
