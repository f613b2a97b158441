/* liburcu-cds's RCU lock-free queue (cds_lfq, which takes call_rcu's address to free its dummy
 * nodes) and lock-free stack (cds_lfs, popped under the RCU read lock), and liburcu's wait-free queue
 * (cds_wfcq), with concurrent producers and consumers, written against liburcu's API only. Built on real
 * liburcu and on the drop-in from this one source (tests/urcu.cmake). Every value pushed is
 * popped exactly once; popped nodes are freed with call_rcu. Exits 0 on success. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <urcu.h>
#include <urcu/lfstack.h>
#include <urcu/rculfqueue.h>
#include <urcu/wfcqueue.h>

#define PRODUCERS 2
#define CONSUMERS 2
#define PER_PRODUCER 20000

struct qnode {
  struct cds_lfq_node_rcu lfq;
  struct cds_lfs_node lfs;
  struct cds_wfcq_node wfcq;
  struct rcu_head head;
  unsigned long value;
};

static struct cds_lfq_queue_rcu lfq;
static struct __cds_lfs_stack lfs;
static struct cds_wfcq_head wfcq_head;
static struct cds_wfcq_tail wfcq_tail;
static unsigned long popped_sum[3], popped_count[3];
static int producers_done;

static void free_qnode(struct rcu_head* h) { free(caa_container_of(h, struct qnode, head)); }

static void* producer(void* arg) {
  unsigned long id = (unsigned long)arg;
  rcu_register_thread();
  for (unsigned long i = 0; i < PER_PRODUCER; i++) {
    unsigned long v = id * PER_PRODUCER + i + 1;
    struct qnode* n = malloc(sizeof(*n));
    if (!n) abort();
    n->value = v;
    switch (i % 3) {
      case 0:
        cds_lfq_node_init_rcu(&n->lfq);
        rcu_read_lock();
        cds_lfq_enqueue_rcu(&lfq, &n->lfq);
        rcu_read_unlock();
        break;
      case 1:
        cds_lfs_node_init(&n->lfs);
        cds_lfs_push(&lfs, &n->lfs);
        break;
      default:
        cds_wfcq_node_init(&n->wfcq);
        cds_wfcq_enqueue(&wfcq_head, &wfcq_tail, &n->wfcq);
        break;
    }
  }
  rcu_unregister_thread();
  return NULL;
}

static void account(int which, struct qnode* n) {
  __atomic_fetch_add(&popped_sum[which], n->value, __ATOMIC_RELAXED);
  __atomic_fetch_add(&popped_count[which], 1, __ATOMIC_RELAXED);
  call_rcu(&n->head, free_qnode);
}

/* One pass over the three structures; returns how many nodes it took. */
static int drain_once(void) {
  int got = 0;
  rcu_read_lock();
  struct cds_lfq_node_rcu* q = cds_lfq_dequeue_rcu(&lfq);
  rcu_read_unlock();
  if (q) {
    account(0, caa_container_of(q, struct qnode, lfq));
    got++;
  }
  rcu_read_lock();
  struct cds_lfs_node* s = __cds_lfs_pop(&lfs); /* under the read lock: RCU protects the node */
  rcu_read_unlock();
  if (s) {
    account(1, caa_container_of(s, struct qnode, lfs));
    got++;
  }
  struct cds_wfcq_node* w = cds_wfcq_dequeue_blocking(&wfcq_head, &wfcq_tail);
  if (w) {
    account(2, caa_container_of(w, struct qnode, wfcq));
    got++;
  }
  return got;
}

static void* consumer(void* arg) {
  (void)arg;
  rcu_register_thread();
  for (;;) {
    int done = __atomic_load_n(&producers_done, __ATOMIC_ACQUIRE);
    if (drain_once() == 0 && done) break;
  }
  rcu_unregister_thread();
  return NULL;
}

int main(void) {
  rcu_register_thread();
  cds_lfq_init_rcu(&lfq, call_rcu); /* the queue frees its dummy nodes through this address */
  __cds_lfs_init(&lfs);
  cds_wfcq_init(&wfcq_head, &wfcq_tail);
  pthread_t p[PRODUCERS], c[CONSUMERS];
  for (unsigned long i = 0; i < CONSUMERS; i++) pthread_create(&c[i], NULL, consumer, NULL);
  for (unsigned long i = 0; i < PRODUCERS; i++) pthread_create(&p[i], NULL, producer, (void*)i);
  for (int i = 0; i < PRODUCERS; i++) pthread_join(p[i], NULL);
  __atomic_store_n(&producers_done, 1, __ATOMIC_RELEASE);
  for (int i = 0; i < CONSUMERS; i++) pthread_join(c[i], NULL);
  while (drain_once()) {
  }
  rcu_barrier();
  unsigned long n = PRODUCERS * PER_PRODUCER;
  unsigned long count = popped_count[0] + popped_count[1] + popped_count[2];
  unsigned long sum = popped_sum[0] + popped_sum[1] + popped_sum[2];
  int failed = count != n || sum != n * (n + 1) / 2 || popped_count[0] == 0 || popped_count[1] == 0 ||
               popped_count[2] == 0;
  if (cds_lfq_destroy_rcu(&lfq) != 0) failed = 1;
  cds_wfcq_destroy(&wfcq_head, &wfcq_tail);
  rcu_barrier();
  printf("queues: %lu popped (lfq %lu, lfs %lu, wfcq %lu)%s\n", count, popped_count[0], popped_count[1],
         popped_count[2], failed ? " FAILED" : "");
  rcu_unregister_thread();
  return failed;
}
