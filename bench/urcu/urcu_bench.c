/* urcu-bench: one liburcu program, built twice (bench/urcu/CMakeLists.txt): on real liburcu
 * (memb) and on bulkrcu through the drop-in (bulkrcu-urcu). Written against liburcu's API only.
 *
 *   urcu-bench lfht SECONDS THREADS   cds_lfht, 90% lookups / 10% add+delete (call_rcu frees)
 *   urcu-bench call_rcu OBJECTS THREADS   retire flood through call_rcu
 *   urcu-bench defer_rcu OBJECTS THREADS  retire flood through defer_rcu
 *
 * Prints one line of key=value figures. The floods report process CPU time per object (from
 * the first retire to the end of the barrier that frees the last) and the peak number of
 * objects retired but not yet freed (sampled every 100 us by a thread of its own). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <urcu.h>
#include <urcu/rculfhash.h>

#ifdef BULKRCU_URCU
#define IMPL "bulkrcu-urcu"
#else
#define IMPL "liburcu-memb"
#endif

static double now_s(clockid_t c) {
  struct timespec ts;
  clock_gettime(c, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- lfht -------------------------------------------------------------------------------- */
#define KEYS (1u << 16)
struct node {
  struct cds_lfht_node lfht;
  struct rcu_head head;
  unsigned long key;
};
static struct cds_lfht* ht;
static int stop;
static unsigned long total_lookups, total_updates, lookup_hits;

static unsigned long hash_key(unsigned long k) { return k * 0x9E3779B97F4A7C15ul; }
static int match(struct cds_lfht_node* n, const void* key) {
  return caa_container_of(n, struct node, lfht)->key == *(const unsigned long*)key;
}
static void free_node(struct rcu_head* h) { free(caa_container_of(h, struct node, head)); }

static void add_key(unsigned long key) {
  struct node* nd = malloc(sizeof(*nd));
  cds_lfht_node_init(&nd->lfht);
  nd->key = key;
  rcu_read_lock();
  struct cds_lfht_node* got = cds_lfht_add_unique(ht, hash_key(key), match, &key, &nd->lfht);
  rcu_read_unlock();
  if (got != &nd->lfht) free(nd);
}

static void* lfht_worker(void* arg) {
  unsigned long seed = (unsigned long)arg * 2654435761u + 12345;
  unsigned long lookups = 0, updates = 0, hits = 0;
  rcu_register_thread();
  while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
    for (int b = 0; b < 64; b++) {
      seed = seed * 6364136223846793005ul + 1442695040888963407ul;
      unsigned long r = seed >> 33;
      unsigned long key = (r >> 4) % KEYS;
      if (r % 10 != 0) {
        struct cds_lfht_iter it;
        rcu_read_lock();
        cds_lfht_lookup(ht, hash_key(key), match, &key, &it);
        struct cds_lfht_node* n = cds_lfht_iter_get_node(&it);
        if (n && caa_container_of(n, struct node, lfht)->key == key) hits++;
        rcu_read_unlock();
        lookups++;
      } else {
        struct cds_lfht_iter it;
        rcu_read_lock();
        cds_lfht_lookup(ht, hash_key(key), match, &key, &it);
        struct cds_lfht_node* n = cds_lfht_iter_get_node(&it);
        if (n) {
          if (cds_lfht_del(ht, n) == 0) call_rcu(&caa_container_of(n, struct node, lfht)->head, free_node);
          rcu_read_unlock();
        } else {
          rcu_read_unlock();
          add_key(key);
        }
        updates++;
      }
    }
  }
  __atomic_fetch_add(&total_lookups, lookups, __ATOMIC_RELAXED);
  __atomic_fetch_add(&total_updates, updates, __ATOMIC_RELAXED);
  __atomic_fetch_add(&lookup_hits, hits, __ATOMIC_RELAXED);
  rcu_unregister_thread();
  return NULL;
}

static int run_lfht(double seconds, int threads) {
  ht = cds_lfht_new(KEYS, 1024, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, NULL);
  for (unsigned long k = 0; k < KEYS; k += 2) add_key(k); /* half full */
  pthread_t t[64];
  double t0 = now_s(CLOCK_MONOTONIC), c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
  for (long i = 0; i < threads; i++) pthread_create(&t[i], NULL, lfht_worker, (void*)i);
  usleep((useconds_t)(seconds * 1e6));
  __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
  for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
  double el = now_s(CLOCK_MONOTONIC) - t0, cpu = now_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
  printf(
      "impl=%s workload=lfht threads=%d seconds=%.2f lookups_per_s=%.0f updates_per_s=%.0f hit_ratio=%.3f "
      "cpu_s=%.2f\n",
      IMPL, threads, el, total_lookups / el, total_updates / el,
      total_lookups ? (double)lookup_hits / total_lookups : 0.0, cpu);
  struct cds_lfht_iter it;
  struct cds_lfht_node* n;
  rcu_read_lock();
  cds_lfht_for_each(ht, &it, n) {
    if (cds_lfht_del(ht, n) == 0) call_rcu(&caa_container_of(n, struct node, lfht)->head, free_node);
  }
  rcu_read_unlock();
  rcu_barrier();
  return cds_lfht_destroy(ht, NULL) != 0;
}

/* ---- floods ------------------------------------------------------------------------------ */
#define OBJ_SIZE 64
struct obj {
  struct rcu_head head;
  char pad[OBJ_SIZE - sizeof(struct rcu_head)];
};
static unsigned long retired, freed, peak_pending;
static int flood_done;
static int use_defer;
static unsigned long per_thread;

static void free_obj_cb(struct rcu_head* h) {
  free(h);
  __atomic_fetch_add(&freed, 1, __ATOMIC_RELAXED);
}
static void free_obj_defer(void* p) {
  free(p);
  __atomic_fetch_add(&freed, 1, __ATOMIC_RELAXED);
}

static void* sampler(void* arg) {
  (void)arg;
  while (!__atomic_load_n(&flood_done, __ATOMIC_ACQUIRE)) {
    unsigned long f = __atomic_load_n(&freed, __ATOMIC_RELAXED);
    unsigned long r = __atomic_load_n(&retired, __ATOMIC_RELAXED);
    if (r > f && r - f > peak_pending) peak_pending = r - f;
    usleep(100);
  }
  return NULL;
}

static void* flooder(void* arg) {
  (void)arg;
  rcu_register_thread();
  rcu_defer_register_thread();
  for (unsigned long i = 0; i < per_thread; i++) {
    struct obj* o = malloc(sizeof(*o));
    o->pad[0] = (char)i;
    __atomic_fetch_add(&retired, 1, __ATOMIC_RELAXED);
    if (use_defer)
      defer_rcu(free_obj_defer, o);
    else
      call_rcu(&o->head, free_obj_cb);
  }
  rcu_defer_unregister_thread(); /* liburcu: flushes this thread's queue */
  rcu_unregister_thread();
  return NULL;
}

static int run_flood(unsigned long objects, int threads) {
  per_thread = objects / (unsigned long)threads;
  pthread_t t[64], s;
  pthread_create(&s, NULL, sampler, NULL);
  double t0 = now_s(CLOCK_MONOTONIC), c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
  for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, flooder, NULL);
  for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
  if (use_defer) {
    rcu_defer_register_thread();
    rcu_defer_barrier();
    rcu_defer_unregister_thread();
  }
  rcu_barrier();
  double el = now_s(CLOCK_MONOTONIC) - t0, cpu = now_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
  __atomic_store_n(&flood_done, 1, __ATOMIC_RELEASE);
  pthread_join(s, NULL);
  unsigned long n = per_thread * (unsigned long)threads;
  printf(
      "impl=%s workload=%s threads=%d objects=%lu seconds=%.3f cpu_ns_per_obj=%.1f peak_pending=%lu "
      "freed=%lu\n",
      IMPL, use_defer ? "defer_rcu" : "call_rcu", threads, n, el, cpu * 1e9 / (double)n, peak_pending, freed);
  return freed != n;
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s lfht SECONDS THREADS | call_rcu|defer_rcu OBJECTS THREADS\n", argv[0]);
    return 2;
  }
  int threads = atoi(argv[3]);
  if (threads < 1 || threads > 64) return 2;
  rcu_register_thread();
  int rc;
  if (strcmp(argv[1], "lfht") == 0) {
    rc = run_lfht(atof(argv[2]), threads);
  } else if (strcmp(argv[1], "call_rcu") == 0 || strcmp(argv[1], "defer_rcu") == 0) {
    use_defer = strcmp(argv[1], "defer_rcu") == 0;
    rc = run_flood(strtoul(argv[2], NULL, 10), threads);
  } else {
    return 2;
  }
  rcu_unregister_thread();
  return rc;
}
