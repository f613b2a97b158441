/* bulkrcu-urcu's <urcu/urcu-memb.h>: liburcu's memb API, implemented by bulkrcu
 * (libbulkrcu-urcu). The urcu_memb_* names always; the plain names (rcu_read_lock, call_rcu,
 * defer_rcu, ...) when included through <urcu.h>, exactly as liburcu's header does.
 *
 * What differs from liburcu (docs/URCU.md has the full table):
 *  - No registration: rcu_register_thread, rcu_unregister_thread, rcu_init and
 *    rcu_defer_register_thread are no-ops; any thread may read at any time.
 *  - defer_rcu never waits for a grace period on the caller (it stores the pointer in a
 *    per-CPU block; bulkrcu_defer) and may be called inside a read-side critical section.
 *  - call_rcu callbacks and defer_rcu functions run on bulkrcu's threads; the call_rcu_data
 *    objects are handles that record the requested flags and CPU, all served by bulkrcu's
 *    invocation threads.
 *  - synchronize_rcu, rcu_barrier and rcu_defer_barrier inside a read-side critical section
 *    abort with a message (liburcu deadlocks or prints an error).
 *  - The fork hooks are optional: bulkrcu handles fork by itself; call_rcu_before_fork and the
 *    after-fork hooks still run the hash table's (cds_lfht) registered fork handlers.
 */
#ifndef _URCU_MEMB_H
#define _URCU_MEMB_H

#include <bulkrcu/rcu.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <urcu/pointer.h> /* liburcu-dev: rcu_dereference, rcu_assign_pointer, ... */

#define BULKRCU_URCU 1 /* this is bulkrcu's drop-in, not liburcu */

#ifdef __cplusplus
extern "C" {
#endif

#include <urcu/map/urcu-memb.h> /* liburcu-dev: plain names -> urcu_memb_* */

#ifdef _LGPL_SOURCE
/* Inlined readers, as liburcu's _LGPL_SOURCE build does: bulkrcu's inline fast paths. */
static inline void _urcu_memb_read_lock(void) { bulkrcu__read_lock_inline(); }
static inline void _urcu_memb_read_unlock(void) { bulkrcu__read_unlock_inline(); }
static inline int _urcu_memb_read_ongoing(void) { return bulkrcu__read_lock_held_inline(); }
#define urcu_memb_read_lock _urcu_memb_read_lock
#define urcu_memb_read_unlock _urcu_memb_read_unlock
#define urcu_memb_read_ongoing _urcu_memb_read_ongoing
#else
/* Blocks: no. Allocates: only on a thread's first read_lock (bulkrcu_read_lock). Async-signal-
 * safe: yes. Inside a reader: yes (nests). */
BULKRCU_API void urcu_memb_read_lock(void);
BULKRCU_API void urcu_memb_read_unlock(void);
BULKRCU_API int urcu_memb_read_ongoing(void);
#endif

/* Waits for a grace period. Blocks: yes. Allocates: no. Async-signal-safe: no. Inside a
 * reader: forbidden (aborts). */
BULKRCU_API void urcu_memb_synchronize_rcu(void);

/* No-ops: bulkrcu needs no registration. Any context. */
BULKRCU_API void urcu_memb_register_thread(void);
BULKRCU_API void urcu_memb_unregister_thread(void);
BULKRCU_API void urcu_memb_init(void);

/* No-ops in memb too (only QSBR needs them). */
static inline void urcu_memb_quiescent_state(void) {}
static inline void urcu_memb_thread_offline(void) {}
static inline void urcu_memb_thread_online(void) {}

/* The polling API of liburcu 0.14: start_poll_synchronize_rcu() returns a state that
 * poll_state_synchronize_rcu() reports true once a full grace period has elapsed after it.
 * Blocks: no. Allocates: no. Async-signal-safe: yes. Inside a reader: yes. */
#if defined(__has_include)
#if __has_include(<urcu/urcu-poll.h>)
#include <urcu/urcu-poll.h>
#define BULKRCU__URCU_HAVE_POLL_H 1
#endif
#endif
#ifndef BULKRCU__URCU_HAVE_POLL_H
struct urcu_gp_poll_state {
  unsigned long grace_period_id;
};
#endif
BULKRCU_API struct urcu_gp_poll_state urcu_memb_start_poll_synchronize_rcu(void);
BULKRCU_API bool urcu_memb_poll_state_synchronize_rcu(struct urcu_gp_poll_state state);
#ifdef URCU_API_MAP
#ifndef start_poll_synchronize_rcu
#define start_poll_synchronize_rcu urcu_memb_start_poll_synchronize_rcu
#endif
#ifndef poll_state_synchronize_rcu
#define poll_state_synchronize_rcu urcu_memb_poll_state_synchronize_rcu
#endif
#endif

#ifdef __cplusplus
}
#endif

/* liburcu-dev's declarations of call_rcu, the call_rcu_data functions, the fork hooks,
 * rcu_barrier, defer_rcu and its companions, and struct rcu_flavor_struct (mapped to
 * urcu_memb_* above); libbulkrcu-urcu defines them all (docs/URCU.md). */
#include <urcu/call-rcu.h>
#include <urcu/defer.h>
#include <urcu/flavor.h>

#ifndef URCU_API_MAP
#include <urcu/map/clear.h>
#endif

#endif /* _URCU_MEMB_H */
