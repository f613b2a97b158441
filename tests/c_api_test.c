/* The C API (<bulkrcu/rcu.h>, <bulkrcu/kernel.h>, <bulkrcu/stats.h>) used from C11; the same
 * file is compiled again as C++ (tests/c_api_cxx.cpp) to prove the headers are C++-clean.
 * Exits with the number of failed checks. */
#include <bulkrcu/kernel.h>
#include <bulkrcu/rcu.h>
#include <bulkrcu/stats.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

static int failures = 0;
#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                              \
    }                                                                          \
  } while (0)

struct config {
  int value;
  struct rcu_head rh;
};

static struct config* current_config = NULL;
static int freed = 0;

static void free_config(struct rcu_head* rh) {
  struct config* c = (struct config*)((char*)rh - offsetof(struct config, rh));
  c->value = -1;
  free(c);
  __atomic_fetch_add(&freed, 1, __ATOMIC_RELAXED);
}

static int read_value(void) {
  int v;
  rcu_read_lock();
  v = rcu_dereference(current_config)->value;
  rcu_read_unlock();
  return v;
}

static void update(int value, int use_call) {
  struct config* fresh = (struct config*)malloc(sizeof *fresh);
  struct config* old = current_config;
  fresh->value = value;
  rcu_assign_pointer(current_config, fresh);
  if (!old) return;
  if (use_call) {
    call_rcu(&old->rh, free_config);
  } else {
    synchronize_rcu();
    free_config(&old->rh);
  }
}

static void* reader_thread(void* arg) {
  int i, bad = 0;
  (void)arg;
  for (i = 0; i < 100000; ++i) {
    int v = read_value();
    if (v < 0) ++bad;
  }
  return (void*)(size_t)bad;
}

static int async_ran = 0;
static void async_cb(struct bulkrcu_head* h) {
  (void)h;
  __atomic_store_n(&async_ran, 1, __ATOMIC_RELAXED);
}

int main(void) {
  struct bulkrcu_stats st;
  struct bulkrcu_head head;
  unsigned long cookie;
  pthread_t tid;
  void* bad = NULL;
  int i;

  /* readers nest */
  CHECK(!bulkrcu_read_lock_held());
  bulkrcu_read_lock();
  bulkrcu_read_lock();
  CHECK(bulkrcu_read_lock_held());
  bulkrcu_read_unlock();
  CHECK(bulkrcu_read_lock_held());
  bulkrcu_read_unlock();
  CHECK(!bulkrcu_read_lock_held());
  /* the out-of-line functions are exported too */
  (bulkrcu_read_lock)();
  CHECK((bulkrcu_read_lock_held)());
  (bulkrcu_read_unlock)();

  /* cookies */
  bulkrcu_read_lock();
  cookie = bulkrcu_get_state();
  CHECK(!bulkrcu_poll_state(cookie));
  bulkrcu_read_unlock();
  bulkrcu_synchronize();
  CHECK(bulkrcu_poll_state(cookie));
  cookie = bulkrcu_start_poll();
  bulkrcu_cond_synchronize(cookie);
  CHECK(bulkrcu_poll_state(cookie));
  bulkrcu_synchronize_expedited();

  /* publish / read / retire through both paths while a reader thread runs */
  update(1, 0);
  CHECK(pthread_create(&tid, NULL, reader_thread, NULL) == 0);
  for (i = 2; i < 2000; ++i) update(i, i & 1);
  CHECK(pthread_join(tid, &bad) == 0);
  CHECK(bad == NULL);
  rcu_barrier();
  CHECK(read_value() == 1999);
  CHECK(__atomic_load_n(&freed, __ATOMIC_RELAXED) == 1998);

  /* call + barrier */
  bulkrcu_call(&head, async_cb);
  bulkrcu_barrier();
  CHECK(__atomic_load_n(&async_ran, __ATOMIC_RELAXED) == 1);

  /* stats: size-versioned copy */
  bulkrcu_get_stats(&st, sizeof st);
  CHECK(st.grace_periods >= 2);
  CHECK(st.callbacks_invoked >= 1000);
  CHECK(st.readers_registered >= 1);
  CHECK(st.nr_cpu_slots >= 1);
  {
    uint64_t first_only[1] = {0};
    bulkrcu_get_stats((struct bulkrcu_stats*)(void*)first_only, sizeof first_only);
    CHECK(first_only[0] >= st.grace_periods);
  }

  free(current_config);
  if (failures) fprintf(stderr, "%d checks failed\n", failures);
  return failures;
}
