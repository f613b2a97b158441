/* A C11 program using the installed headers and library. */
#include <bulkrcu/kernel.h>
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
  return 0;
}
