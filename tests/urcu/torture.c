/* A torture of the liburcu drop-in, written against liburcu's API only (memb flavour, plain and
 * urcu_memb_ names, the flavour struct): readers check that every object they reach is alive
 * while writers replace objects and retire the old ones through every retire entry point
 * (call_rcu, defer_rcu, synchronize_rcu, polling, the flavour's update functions), with the
 * call_rcu_data functions, barriers, registration calls and fork hooks in the mix. Built with
 * and without _LGPL_SOURCE; under ASan in CI. Exits with the number of failed checks. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include <urcu.h>

#define NSLOTS 16
#define NREADERS 3
#define NWRITERS 2
#define OPS 4000
#define LIVE 0x5eedUL
#define DEAD 0xdeadUL

struct obj {
  struct rcu_head head;
  unsigned long magic;
};

static struct obj* slots[NSLOTS];
static int writers_done;
static unsigned long retired, freed, failures;

static void fail(const char* what) {
  __atomic_fetch_add(&failures, 1, __ATOMIC_RELAXED);
  fprintf(stderr, "torture: %s\n", what);
}

static struct obj* new_obj(void) {
  struct obj* o = malloc(sizeof(*o));
  if (!o) abort();
  o->magic = LIVE;
  return o;
}
static void free_obj(struct obj* o) {
  if (o->magic != LIVE) fail("object freed twice or never live");
  o->magic = DEAD;
  free(o);
  __atomic_fetch_add(&freed, 1, __ATOMIC_RELAXED);
}
static void free_head(struct rcu_head* h) { free_obj(caa_container_of(h, struct obj, head)); }
static void free_ptr(void* p) { free_obj(p); }

/* get_call_rcu_thread from inside a callback: must answer (the callback's thread), not wait. */
static pthread_t cb_thread, cb_answer;
static struct rcu_head probe_head;
static void probe_in_callback(struct rcu_head* h) {
  (void)h;
  cb_thread = pthread_self();
  cb_answer = get_call_rcu_thread(get_default_call_rcu_data());
}

static void* reader(void* arg) {
  unsigned long i = (unsigned long)arg;
  rcu_register_thread();
  while (!__atomic_load_n(&writers_done, __ATOMIC_ACQUIRE)) {
    int how = (int)(i++ % 3);
    if (how == 0)
      rcu_read_lock();
    else if (how == 1)
      urcu_memb_read_lock();
    else
      rcu_flavor.read_lock();
    if (!rcu_read_ongoing() || !urcu_memb_read_ongoing()) fail("read_ongoing false inside a reader");
    for (int k = 0; k < NSLOTS; k++) {
      struct obj* o = rcu_dereference(slots[k]);
      if (o && o->magic != LIVE) fail("reader reached a freed object");
      if (k == 3) { /* nest once */
        rcu_read_lock();
        o = rcu_dereference(slots[(k + i) % NSLOTS]);
        if (o && o->magic != LIVE) fail("nested reader reached a freed object");
        rcu_read_unlock();
      }
    }
    if (how == 0)
      rcu_read_unlock();
    else if (how == 1)
      urcu_memb_read_unlock();
    else
      rcu_flavor.read_unlock();
    if (rcu_read_ongoing()) fail("read_ongoing true outside a reader");
    rcu_quiescent_state();
  }
  rcu_unregister_thread();
  return NULL;
}

static void* writer(void* arg) {
  unsigned long id = (unsigned long)arg;
  rcu_register_thread();
  rcu_defer_register_thread();
  struct call_rcu_data* mine = create_call_rcu_data(0, -1);
  if (!mine) fail("create_call_rcu_data returned NULL");
  set_thread_call_rcu_data(mine);
  if (get_thread_call_rcu_data() != mine || get_call_rcu_data() != mine)
    fail("thread call_rcu_data not kept");
  for (unsigned long i = 0; i < OPS; i++) {
    struct obj* o = new_obj();
    struct obj* old = rcu_xchg_pointer(&slots[(i * 7 + id) % NSLOTS], o);
    if (!old) continue;
    __atomic_fetch_add(&retired, 1, __ATOMIC_RELAXED);
    switch ((i + id) % 8) {
      case 0:
        call_rcu(&old->head, free_head);
        break;
      case 1:
        urcu_memb_call_rcu(&old->head, free_head);
        break;
      case 2:
        rcu_flavor.update_call_rcu(&old->head, free_head);
        break;
      case 3:
        defer_rcu(free_ptr, old);
        break;
      case 4:
        rcu_flavor.update_defer_rcu(free_ptr, old);
        break;
      case 5:
        if (i % 64 == 5) {
          synchronize_rcu();
          free_obj(old);
        } else {
          urcu_memb_defer_rcu(free_ptr, old);
        }
        break;
      case 6:
        if (i % 64 == 6) {
          struct urcu_gp_poll_state s = start_poll_synchronize_rcu();
          while (!poll_state_synchronize_rcu(s)) usleep(100);
          free_obj(old);
        } else {
          call_rcu(&old->head, free_head);
        }
        break;
      default:
        /* defer_rcu may be called inside a reader here (liburcu forbids it; see docs/URCU.md) */
        rcu_read_lock();
        defer_rcu(free_ptr, old);
        rcu_read_unlock();
        break;
    }
    if (i % 512 == 0) rcu_barrier();
    if (i % 1024 == 0) rcu_defer_barrier_thread();
    if (i % 2048 == 0) rcu_flavor.update_synchronize_rcu();
  }
  set_thread_call_rcu_data(NULL);
  call_rcu_data_free(mine);
  rcu_defer_barrier();
  rcu_defer_unregister_thread();
  rcu_unregister_thread();
  return NULL;
}

static int fork_check(void) {
  /* The fork hooks are optional with bulkrcu, and work when called. */
  call_rcu_before_fork();
  pid_t pid = fork();
  if (pid == 0) {
    call_rcu_after_fork_child();
    struct obj* o = new_obj();
    unsigned long before = freed;
    call_rcu(&o->head, free_head);
    rcu_barrier();
    _exit(freed == before + 1 && failures == 0 ? 0 : 1);
  }
  call_rcu_after_fork_parent();
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return 1;
  return 0;
}

int main(void) {
  rcu_init();
  for (int k = 0; k < NSLOTS; k++) slots[k] = new_obj();

  /* call_rcu_data: per-CPU handles, the default one, error codes. */
  if (create_all_cpu_call_rcu_data(0) != 0) fail("create_all_cpu_call_rcu_data failed");
  if (!get_cpu_call_rcu_data(0)) fail("no CPU 0 call_rcu_data after create_all");
  if (!get_default_call_rcu_data()) fail("no default call_rcu_data");
  struct call_rcu_data* extra = create_call_rcu_data(URCU_CALL_RCU_RT, 0);
  if (set_cpu_call_rcu_data(0, extra) != -EEXIST || errno != EEXIST)
    fail("set_cpu on a taken CPU not EEXIST");
  if (set_cpu_call_rcu_data(-1, extra) != -EINVAL) fail("set_cpu on CPU -1 not EINVAL");
  call_rcu_data_free(extra);
  pthread_t invoker = get_call_rcu_thread(get_default_call_rcu_data());
  if (pthread_equal(invoker, pthread_self())) fail("get_call_rcu_thread returned the caller");
  if (!pthread_equal(invoker, get_call_rcu_thread(get_cpu_call_rcu_data(0)))) fail("invoker differs");
  call_rcu(&probe_head, probe_in_callback);
  rcu_barrier();
  if (!pthread_equal(cb_thread, cb_answer)) fail("get_call_rcu_thread in a callback is not its thread");

  pthread_t r[NREADERS], w[NWRITERS];
  for (unsigned long i = 0; i < NREADERS; i++) pthread_create(&r[i], NULL, reader, (void*)i);
  for (unsigned long i = 0; i < NWRITERS; i++) pthread_create(&w[i], NULL, writer, (void*)i);
  for (int i = 0; i < NWRITERS; i++) pthread_join(w[i], NULL);
  __atomic_store_n(&writers_done, 1, __ATOMIC_RELEASE);
  for (int i = 0; i < NREADERS; i++) pthread_join(r[i], NULL);

  rcu_barrier();
  rcu_defer_barrier();
  if (fork_check()) fail("fork child failed");

  rcu_barrier();
  rcu_flavor.barrier();
  rcu_defer_barrier();
  if (freed != retired) {
    fprintf(stderr, "torture: retired %lu, freed %lu after the barriers\n", retired, freed);
    failures++;
  }
  free_all_cpu_call_rcu_data();
  if (get_cpu_call_rcu_data(0)) fail("CPU 0 call_rcu_data left after free_all");
  for (int k = 0; k < NSLOTS; k++) free(slots[k]);
  if (failures) fprintf(stderr, "torture: %lu failures\n", failures);
  printf("torture: %lu objects retired and freed\n", retired);
  return failures != 0;
}
