/* A C11 program using the installed headers and library. */
#include <bulkrcu/kernel.h>
#include <bulkrcu/page_pool.h>
#include <bulkrcu/rcu.h>
#include <stdio.h>
#include <stdlib.h>

static int value = 1;
static int* shared = &value;

int main(void) {
  rcu_read_lock();
  int v = *rcu_dereference(shared);
  rcu_read_unlock();
  unsigned long cookie = get_state_synchronize_rcu();
  synchronize_rcu();
  if (v != 1 || !poll_state_synchronize_rcu(cookie)) {
    fprintf(stderr, "consumer: unexpected state\n");
    return 1;
  }
  /* The pool's inline fast paths (page_pool.h) against the installed library: more pages
   * than a CPU list keeps (`high`), so the exported functions' trim and refill run too. */
  static void* pages[600];
  size_t page = bulkrcu_page_size();
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < 600; i++) {
      pages[i] = (i & 1) ? bulkrcu_alloc_page_lockless() : NULL;
      if (!pages[i]) pages[i] = bulkrcu_alloc_page();
      if (!pages[i] || (size_t)pages[i] % page != 0) {
        fprintf(stderr, "consumer: page %d: %p\n", i, pages[i]);
        return 1;
      }
      *(int*)((char*)pages[i] + 64) = i;
    }
    for (int i = 0; i < 600; i++) {
      if (*(int*)((char*)pages[i] + 64) != i) {
        fprintf(stderr, "consumer: page %d shared with another\n", i);
        return 1;
      }
      bulkrcu_free_page(pages[i]);
    }
  }
  bulkrcu_free_page(NULL);
  return 0;
}
