/* Every public header in one file (tests/headers.cmake prepends them in some order), built as
 * C11 and as C++: the kernel spellings are functions whose addresses can be taken, and they
 * call the right bulkrcu_ function. Exits with the number of failed checks. */
#include <stdio.h>

static int invoked;
static void on_cb(struct rcu_head* h) {
  (void)h;
  invoked++;
}

typedef void (*call_fn)(struct rcu_head*, void (*)(struct rcu_head*));

int main(void) {
  int failed = 0;
  call_fn call = call_rcu; /* liburcu's and the kernel's queues take this address */
  void (*lock)(void) = rcu_read_lock;
  void (*unlock)(void) = rcu_read_unlock;
  void (*barrier)(void) = rcu_barrier;
  static struct rcu_head heads[8];
  lock();
  if (!rcu_read_lock_held()) failed++;
  for (int i = 0; i < 8; i++) call(&heads[i], on_cb);
  unlock();
  if (rcu_read_lock_held()) failed++;
  barrier();
  if (invoked != 8) failed++;
  unsigned long cookie = start_poll_synchronize_rcu();
  synchronize_rcu();
  if (!poll_state_synchronize_rcu(cookie)) failed++;
  kvfree_rcu_barrier();
  /* page_pool.h's inline fast paths compile in this language and reach the library. */
  void* page = bulkrcu_alloc_page();
  if (page == NULL) failed++;
  bulkrcu_free_page(page);
  bulkrcu_free_page(bulkrcu_alloc_page_lockless());
  if (failed) fprintf(stderr, "kernel_addr: %d checks failed\n", failed);
  return failed;
}
