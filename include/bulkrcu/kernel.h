/* bulkrcu/kernel.h: the Linux kernel's RCU spellings over <bulkrcu/rcu.h> (C11 and C++).
 *
 * Code written against the kernel's API compiles with these macros; each maps one to one to a
 * bulkrcu_ function and keeps its contract (see rcu.h for blocking, allocation,
 * async-signal-safety and use inside a reader).
 *
 * Memory ordering: rcu_assign_pointer(p, v) is a release store of v into p: everything written
 * to *v before it is visible to a reader that loads v with rcu_dereference(p), an acquire load
 * (the kernel uses a dependency-ordered load; compilers implement consume as acquire, and on
 * x86-64 both are plain loads). The grace-period orderings are those of rcu.h.
 */
#ifndef BULKRCU_KERNEL_H
#define BULKRCU_KERNEL_H

#include "bulkrcu/rcu.h"

#define rcu_head bulkrcu_head

#define rcu_read_lock() bulkrcu_read_lock()
#define rcu_read_unlock() bulkrcu_read_unlock()
#define rcu_read_lock_held() bulkrcu_read_lock_held()
#define synchronize_rcu() bulkrcu_synchronize()
#define synchronize_rcu_expedited() bulkrcu_synchronize_expedited()
#define get_state_synchronize_rcu() bulkrcu_get_state()
#define start_poll_synchronize_rcu() bulkrcu_start_poll()
#define poll_state_synchronize_rcu(cookie) bulkrcu_poll_state(cookie)
#define cond_synchronize_rcu(cookie) bulkrcu_cond_synchronize(cookie)
#define call_rcu(head, func) bulkrcu_call((head), (func))
#define rcu_barrier() bulkrcu_barrier()

/* kvfree_rcu(ptr) frees a malloc'ed object after a grace period (bulkrcu_kvfree);
 * kvfree_rcu(ptr, rhf) names the struct rcu_head field of *ptr used when no block page is
 * available without waiting (bulkrcu_kfree_head: never blocks). kfree_rcu(ptr, rhf) is the
 * two-argument form; the _mightsleep forms are the one-argument form. */
#define BULKRCU__KVFREE_1(ptr) bulkrcu_kvfree(ptr)
#define BULKRCU__KVFREE_2(ptr, rhf)                                   \
  do {                                                                \
    __typeof__(ptr) bulkrcu__p = (ptr);                               \
    if (bulkrcu__p) bulkrcu_kfree_head(bulkrcu__p, &bulkrcu__p->rhf); \
  } while (0)
#define BULKRCU__KVFREE_PICK(_1, _2, name, ...) name
#define kvfree_rcu(...) \
  BULKRCU__KVFREE_PICK(__VA_ARGS__, BULKRCU__KVFREE_2, BULKRCU__KVFREE_1, unused)(__VA_ARGS__)
#define kfree_rcu(ptr, rhf) BULKRCU__KVFREE_2(ptr, rhf)
#define kvfree_rcu_mightsleep(ptr) bulkrcu_kvfree(ptr)
#define kfree_rcu_mightsleep(ptr) bulkrcu_kvfree(ptr)
#define kvfree_rcu_barrier() bulkrcu_kvfree_barrier()

/* Acquire load of an RCU-protected pointer. Blocks: no. Allocates: no. Async-signal-safe: yes.
 * Inside a reader: that is where it belongs. */
#define rcu_dereference(p) __atomic_load_n(&(p), __ATOMIC_ACQUIRE)
/* Release store publishing v in p. Blocks: no. Allocates: no. Async-signal-safe: yes.
 * Inside a reader: yes. */
#define rcu_assign_pointer(p, v) __atomic_store_n(&(p), (v), __ATOMIC_RELEASE)

#endif /* BULKRCU_KERNEL_H */
