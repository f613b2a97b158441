/* liburcu-cds's lock-free hash table (cds_lfht) with concurrent lookups, adds and deletes,
 * written against liburcu's API only. The same source is built twice (tests/urcu.cmake): on
 * real liburcu (liburcu-memb) and on bulkrcu through the drop-in; both must pass.
 * Each thread adds and deletes keys of its own range (so the final content is known) and
 * looks up keys of every range; removed nodes are freed with call_rcu. Exits 0 on success. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <urcu.h>
#include <urcu/rculfhash.h>

#define NTHREADS 4
#define KEYS_PER_THREAD 256
#define OPS 40000
#define LIVE 0x1f1fUL

struct node {
  struct cds_lfht_node lfht;
  struct rcu_head head;
  unsigned long key;
  unsigned long magic;
};

static struct cds_lfht* ht;
static unsigned long failures, added, deleted, freed;

static unsigned long hash_key(unsigned long k) { return k * 0x9E3779B97F4A7C15ul; }
static int match(struct cds_lfht_node* n, const void* key) {
  return caa_container_of(n, struct node, lfht)->key == *(const unsigned long*)key;
}
static void free_node(struct rcu_head* h) {
  struct node* n = caa_container_of(h, struct node, head);
  n->magic = 0;
  free(n);
  __atomic_fetch_add(&freed, 1, __ATOMIC_RELAXED);
}

static void* worker(void* arg) {
  unsigned long id = (unsigned long)arg;
  unsigned long seed = id * 2654435761u + 1;
  char present[KEYS_PER_THREAD] = {0};
  rcu_register_thread();
  for (int i = 0; i < OPS; i++) {
    seed = seed * 6364136223846793005ul + 1442695040888963407ul;
    unsigned long r = seed >> 33;
    if (r % 10 != 0) { /* 90%: lookup any key */
      unsigned long key = r % (NTHREADS * KEYS_PER_THREAD);
      struct cds_lfht_iter it;
      rcu_read_lock();
      cds_lfht_lookup(ht, hash_key(key), match, &key, &it);
      struct cds_lfht_node* n = cds_lfht_iter_get_node(&it);
      if (n) {
        struct node* nd = caa_container_of(n, struct node, lfht);
        if (nd->magic != LIVE || nd->key != key) __atomic_fetch_add(&failures, 1, __ATOMIC_RELAXED);
      }
      rcu_read_unlock();
      continue;
    }
    unsigned long slot = (r / 10) % KEYS_PER_THREAD;
    unsigned long key = id * KEYS_PER_THREAD + slot;
    if (!present[slot]) {
      struct node* nd = malloc(sizeof(*nd));
      cds_lfht_node_init(&nd->lfht);
      nd->key = key;
      nd->magic = LIVE;
      rcu_read_lock();
      struct cds_lfht_node* got = cds_lfht_add_unique(ht, hash_key(key), match, &key, &nd->lfht);
      rcu_read_unlock();
      if (got != &nd->lfht) { /* our own range: the key cannot be there */
        __atomic_fetch_add(&failures, 1, __ATOMIC_RELAXED);
        free(nd);
      } else {
        present[slot] = 1;
        __atomic_fetch_add(&added, 1, __ATOMIC_RELAXED);
      }
    } else {
      struct cds_lfht_iter it;
      rcu_read_lock();
      cds_lfht_lookup(ht, hash_key(key), match, &key, &it);
      struct cds_lfht_node* n = cds_lfht_iter_get_node(&it);
      if (!n || cds_lfht_del(ht, n) != 0) {
        __atomic_fetch_add(&failures, 1, __ATOMIC_RELAXED);
      } else {
        present[slot] = 0;
        call_rcu(&caa_container_of(n, struct node, lfht)->head, free_node);
        __atomic_fetch_add(&deleted, 1, __ATOMIC_RELAXED);
      }
      rcu_read_unlock();
    }
  }
  rcu_unregister_thread();
  return NULL;
}

int main(void) {
  rcu_register_thread();
  ht = cds_lfht_new(1, 1, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, NULL);
  if (!ht) return 2;
  pthread_t t[NTHREADS];
  for (unsigned long i = 0; i < NTHREADS; i++) pthread_create(&t[i], NULL, worker, (void*)i);
  for (int i = 0; i < NTHREADS; i++) pthread_join(t[i], NULL);

  long before, after;
  unsigned long count;
  rcu_read_lock();
  cds_lfht_count_nodes(ht, &before, &count, &after);
  rcu_read_unlock();
  if (count != added - deleted) {
    fprintf(stderr, "lfht: %lu nodes, expected %lu\n", count, added - deleted);
    failures++;
  }
  /* Empty the table, wait for the frees, destroy it. */
  struct cds_lfht_iter it;
  struct cds_lfht_node* n;
  rcu_read_lock();
  cds_lfht_for_each(ht, &it, n) {
    if (cds_lfht_del(ht, n) == 0) call_rcu(&caa_container_of(n, struct node, lfht)->head, free_node);
  }
  rcu_read_unlock();
  rcu_barrier();
  if (freed != added) {
    fprintf(stderr, "lfht: %lu freed of %lu added\n", freed, added);
    failures++;
  }
  if (cds_lfht_destroy(ht, NULL) != 0) failures++;
  rcu_unregister_thread();
  printf("lfht: %lu adds, %lu deletes, %lu failures\n", added, deleted, failures);
  return failures != 0;
}
