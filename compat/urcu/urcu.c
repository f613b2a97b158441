/* libbulkrcu-urcu: liburcu's memb flavour on bulkrcu (docs/URCU.md).
 *
 * Every function is a thin mapping onto the bulkrcu C API; the call_rcu_data objects are
 * handles (see below). Built as its own library beside libbulkrcu, with hidden visibility:
 * it exports the urcu_memb_* names, urcu_memb_flavor and liburcu's rcu_*_pointer_sym. */
#define _GNU_SOURCE
#define URCU_API_MAP /* DEFINE_RCU_FLAVOR below uses the plain names */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <urcu/urcu-memb.h>

/* struct rcu_head (liburcu) and struct bulkrcu_head have one layout: a next pointer, then the
 * function. call_rcu hands the head to bulkrcu_call as is. */
_Static_assert(sizeof(struct rcu_head) == sizeof(struct bulkrcu_head), "rcu_head layout");
_Static_assert(offsetof(struct rcu_head, next) == offsetof(struct bulkrcu_head, next), "next");
_Static_assert(offsetof(struct rcu_head, func) == offsetof(struct bulkrcu_head, func), "func");

/* ---- readers, grace periods, registration ---------------------------------------------- */
#undef urcu_memb_read_lock
#undef urcu_memb_read_unlock
#undef urcu_memb_read_ongoing
BULKRCU_API void urcu_memb_read_lock(void) { bulkrcu__read_lock_inline(); }
BULKRCU_API void urcu_memb_read_unlock(void) { bulkrcu__read_unlock_inline(); }
BULKRCU_API int urcu_memb_read_ongoing(void) { return bulkrcu__read_lock_held_inline(); }
BULKRCU_API void urcu_memb_synchronize_rcu(void) { (bulkrcu_synchronize)(); }
BULKRCU_API void urcu_memb_register_thread(void) {}
BULKRCU_API void urcu_memb_unregister_thread(void) {}
BULKRCU_API void urcu_memb_init(void) {}

BULKRCU_API struct urcu_gp_poll_state urcu_memb_start_poll_synchronize_rcu(void) {
  struct urcu_gp_poll_state s;
  s.grace_period_id = (bulkrcu_start_poll)();
  return s;
}
BULKRCU_API bool urcu_memb_poll_state_synchronize_rcu(struct urcu_gp_poll_state state) {
  return (bulkrcu_poll_state)(state.grace_period_id);
}

/* ---- call_rcu -------------------------------------------------------------------------- */
typedef void (*bulkrcu_urcu_cb)(struct bulkrcu_head*);

BULKRCU_API void urcu_memb_call_rcu(struct rcu_head* head, void (*func)(struct rcu_head* head)) {
  /* The function is called with the same head pointer it was given (identical layout). */
  (bulkrcu_call)((struct bulkrcu_head*)(void*)head, (bulkrcu_urcu_cb)(void (*)(void))func);
}

BULKRCU_API void urcu_memb_barrier(void) { (bulkrcu_barrier)(); }

/* ---- call_rcu_data: handles onto bulkrcu's invocation threads ----------------------------
 * liburcu runs one worker thread per call_rcu_data and queues each call_rcu on the calling
 * thread's, else its CPU's, else the default one. bulkrcu already queues per CPU and invokes
 * on its own threads, so a call_rcu_data here is a handle: it records the flags and CPU it was
 * created with, can be attached to threads and CPUs and looked up exactly as in liburcu, and
 * get_call_rcu_thread returns the thread that invokes callbacks. Callbacks queued while any
 * handle is attached go to bulkrcu_call all the same. */
struct call_rcu_data {
  unsigned long flags;
  int cpu_affinity;
};

static pthread_mutex_t crd_lock = PTHREAD_MUTEX_INITIALIZER;
static struct call_rcu_data default_crd = {0, -1};
static struct call_rcu_data** per_cpu_crd; /* [nr_cpus], allocated on first use */
static long nr_cpus;
static __thread struct call_rcu_data* thread_crd;
static pthread_t invoker; /* a thread that invokes bulkrcu callbacks */
static int invoker_known; /* atomic; reset in a fork child */

/* crd_lock is never held across a wait; fork takes it so the child inherits it unlocked and
 * the tables consistent. The child's bulkrcu threads are new: the invoker is probed again. */
static void crd_prepare(void) { pthread_mutex_lock(&crd_lock); }
static void crd_parent(void) { pthread_mutex_unlock(&crd_lock); }
static void crd_child(void) {
  __atomic_store_n(&invoker_known, 0, __ATOMIC_RELAXED);
  pthread_mutex_unlock(&crd_lock);
}
__attribute__((constructor)) static void crd_init(void) {
  pthread_atfork(crd_prepare, crd_parent, crd_child);
}

static long cpus_conf(void) {
  if (nr_cpus == 0) {
    long n = sysconf(_SC_NPROCESSORS_CONF);
    nr_cpus = n > 0 ? n : 1;
  }
  return nr_cpus;
}

/* Called with crd_lock held. 0, or -ENOMEM. */
static int alloc_per_cpu(void) {
  if (per_cpu_crd) return 0;
  struct call_rcu_data** a = calloc((size_t)cpus_conf(), sizeof(*a));
  if (!a) return -ENOMEM;
  __atomic_store_n(&per_cpu_crd, a, __ATOMIC_RELEASE);
  return 0;
}

struct invoker_probe {
  struct bulkrcu_head head;
  pthread_t self;
};
static void probe_cb(struct bulkrcu_head* h) { ((struct invoker_probe*)(void*)h)->self = pthread_self(); }

BULKRCU_API struct call_rcu_data* urcu_memb_create_call_rcu_data(unsigned long flags, int cpu_affinity) {
  struct call_rcu_data* crdp = malloc(sizeof(*crdp));
  if (!crdp) return NULL;
  crdp->flags = flags;
  crdp->cpu_affinity = cpu_affinity;
  return crdp;
}

BULKRCU_API void urcu_memb_call_rcu_data_free(struct call_rcu_data* crdp) {
  /* liburcu moves the handle's pending callbacks to the default worker; here none are held
   * by the handle. The default handle is never freed (as in liburcu). */
  if (crdp == NULL || crdp == &default_crd) return;
  free(crdp);
}

BULKRCU_API struct call_rcu_data* urcu_memb_get_default_call_rcu_data(void) { return &default_crd; }

BULKRCU_API struct call_rcu_data* urcu_memb_get_cpu_call_rcu_data(int cpu) {
  struct call_rcu_data** a = __atomic_load_n(&per_cpu_crd, __ATOMIC_ACQUIRE);
  if (a == NULL || cpu < 0 || cpu >= cpus_conf()) return NULL;
  return __atomic_load_n(&a[cpu], __ATOMIC_ACQUIRE);
}

BULKRCU_API struct call_rcu_data* urcu_memb_get_thread_call_rcu_data(void) { return thread_crd; }

BULKRCU_API void urcu_memb_set_thread_call_rcu_data(struct call_rcu_data* crdp) { thread_crd = crdp; }

BULKRCU_API struct call_rcu_data* urcu_memb_get_call_rcu_data(void) {
  if (thread_crd) return thread_crd;
  int cpu = sched_getcpu();
  struct call_rcu_data* crdp = cpu >= 0 ? urcu_memb_get_cpu_call_rcu_data(cpu) : NULL;
  return crdp ? crdp : &default_crd;
}

BULKRCU_API int urcu_memb_set_cpu_call_rcu_data(int cpu, struct call_rcu_data* crdp) {
  int ret = 0;
  pthread_mutex_lock(&crd_lock);
  if (cpu < 0 || cpu >= cpus_conf()) {
    ret = -EINVAL;
  } else if (alloc_per_cpu() != 0) {
    ret = -ENOMEM;
  } else if (crdp != NULL && per_cpu_crd[cpu] != NULL) {
    ret = -EEXIST;
  } else {
    __atomic_store_n(&per_cpu_crd[cpu], crdp, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&crd_lock);
  if (ret) errno = -ret;
  return ret;
}

BULKRCU_API int urcu_memb_create_all_cpu_call_rcu_data(unsigned long flags) {
  long n = cpus_conf();
  for (long cpu = 0; cpu < n; cpu++) {
    if (urcu_memb_get_cpu_call_rcu_data((int)cpu)) continue;
    struct call_rcu_data* crdp = urcu_memb_create_call_rcu_data(flags, (int)cpu);
    if (!crdp) {
      errno = ENOMEM;
      return -ENOMEM;
    }
    int ret = urcu_memb_set_cpu_call_rcu_data((int)cpu, crdp);
    if (ret == -EEXIST) { /* another thread attached one first: keep it */
      urcu_memb_call_rcu_data_free(crdp);
    } else if (ret) {
      urcu_memb_call_rcu_data_free(crdp);
      return ret;
    }
  }
  return 0;
}

BULKRCU_API void urcu_memb_free_all_cpu_call_rcu_data(void) {
  long n = cpus_conf();
  struct call_rcu_data** a = __atomic_load_n(&per_cpu_crd, __ATOMIC_ACQUIRE);
  if (!a) return;
  struct call_rcu_data** old = calloc((size_t)n, sizeof(*old));
  if (!old) return; /* as liburcu: nothing freed when the scratch array cannot be allocated */
  pthread_mutex_lock(&crd_lock);
  for (long cpu = 0; cpu < n; cpu++) old[cpu] = __atomic_exchange_n(&a[cpu], NULL, __ATOMIC_ACQ_REL);
  pthread_mutex_unlock(&crd_lock);
  /* A reader that looked a handle up may still use it: free after a grace period. */
  (bulkrcu_synchronize)();
  for (long cpu = 0; cpu < n; cpu++) urcu_memb_call_rcu_data_free(old[cpu]);
  free(old);
}

BULKRCU_API pthread_t urcu_memb_get_call_rcu_thread(struct call_rcu_data* crdp) {
  (void)crdp; /* every handle is served by bulkrcu's invocation threads */
  /* On one of bulkrcu's threads (inside a callback): that thread; a probe would wait for
   * itself. bulkrcu names its threads "bulkrcu-...". */
  char name[16];
  if (pthread_getname_np(pthread_self(), name, sizeof name) == 0 && strncmp(name, "bulkrcu", 7) == 0)
    return pthread_self();
  if (!__atomic_load_n(&invoker_known, __ATOMIC_ACQUIRE)) {
    /* Ask bulkrcu: a callback records the thread that runs it. Concurrent first callers
     * each probe; any answer is right. No lock is held across the wait. */
    struct invoker_probe probe;
    probe.self = pthread_self();
    (bulkrcu_call)(&probe.head, probe_cb);
    (bulkrcu_barrier)();
    pthread_mutex_lock(&crd_lock);
    invoker = probe.self;
    __atomic_store_n(&invoker_known, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&crd_lock);
  }
  pthread_mutex_lock(&crd_lock);
  pthread_t t = invoker;
  pthread_mutex_unlock(&crd_lock);
  return t;
}

/* ---- fork hooks ------------------------------------------------------------------------
 * bulkrcu needs none (its own pthread_atfork handlers keep it working in the child); the
 * hooks run the fork handlers liburcu-cds registers for its hash tables (cds_lfht), as
 * liburcu's do. */
static struct urcu_atfork* lfht_atfork;
static int lfht_atfork_refs;

BULKRCU_API void urcu_memb_register_rculfhash_atfork(struct urcu_atfork* atfork) {
  pthread_mutex_lock(&crd_lock);
  if (lfht_atfork == NULL || lfht_atfork == atfork) {
    lfht_atfork = atfork;
    lfht_atfork_refs++;
  }
  pthread_mutex_unlock(&crd_lock);
}

BULKRCU_API void urcu_memb_unregister_rculfhash_atfork(struct urcu_atfork* atfork) {
  pthread_mutex_lock(&crd_lock);
  if (lfht_atfork == atfork && --lfht_atfork_refs == 0) lfht_atfork = NULL;
  pthread_mutex_unlock(&crd_lock);
}

static struct urcu_atfork* registered_atfork(void) {
  pthread_mutex_lock(&crd_lock);
  struct urcu_atfork* a = lfht_atfork;
  pthread_mutex_unlock(&crd_lock);
  return a;
}
BULKRCU_API void urcu_memb_call_rcu_before_fork(void) {
  struct urcu_atfork* a = registered_atfork();
  if (a) a->before_fork(a->priv);
}
BULKRCU_API void urcu_memb_call_rcu_after_fork_parent(void) {
  struct urcu_atfork* a = registered_atfork();
  if (a) a->after_fork_parent(a->priv);
}
BULKRCU_API void urcu_memb_call_rcu_after_fork_child(void) {
  struct urcu_atfork* a = registered_atfork();
  if (a) a->after_fork_child(a->priv);
}

/* ---- defer_rcu ------------------------------------------------------------------------- */
BULKRCU_API void urcu_memb_defer_rcu(void (*fct)(void* p), void* p) { bulkrcu_defer(fct, p); }
BULKRCU_API int urcu_memb_defer_register_thread(void) { return 0; }
BULKRCU_API void urcu_memb_defer_unregister_thread(void) {}
/* Both wait for every pointer retired before the call, by any thread (liburcu's
 * rcu_defer_barrier_thread waits for this thread's only). */
BULKRCU_API void urcu_memb_defer_barrier(void) { (bulkrcu_kvfree_barrier)(); }
BULKRCU_API void urcu_memb_defer_barrier_thread(void) { (bulkrcu_kvfree_barrier)(); }
BULKRCU_API void urcu_memb_defer_exit(void) {}

/* ---- the flavour: liburcu-cds (cds_lfht, queues, stacks) calls through it ---------------- */
BULKRCU_API DEFINE_RCU_FLAVOR(rcu_flavor);

/* ---- liburcu's out-of-line pointer helpers (programs built without _LGPL_SOURCE) --------- */
/* The load happened in the caller (the argument); as liburcu, only order what follows. */
BULKRCU_API void* rcu_dereference_sym(void* p) {
  __atomic_signal_fence(__ATOMIC_ACQUIRE);
  return p;
}
BULKRCU_API void* rcu_set_pointer_sym(void** p, void* v) {
  __atomic_store_n(p, v, __ATOMIC_RELEASE);
  return v;
}
BULKRCU_API void* rcu_xchg_pointer_sym(void** p, void* v) {
  return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
}
BULKRCU_API void* rcu_cmpxchg_pointer_sym(void** p, void* old, void* _new) {
  __atomic_compare_exchange_n(p, &old, _new, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return old;
}
