/* A user's -fsanitize=thread program against the installed (not instrumented) library:
 * readers use objects inside sections, a writer replaces them and frees the old one after
 * synchronize_rcu or a polled grace period. ThreadSanitizer must report nothing: the headers'
 * TSan annotations give it the reader/grace-period order the library's code does not show it.
 * (tests/install/check.sh runs it with halt_on_error=1.)
 * The readers start one after the other (each has taken its reader slot before the next is
 * created): a reader slot lies in a chunk that an uninstrumented library mapped on another
 * thread, which TSan would report as a race with the slot's first use (docs: README). */
#include <bulkrcu/kernel.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

struct obj {
  int value;
};
static struct obj* current;
static int stop;

static pthread_mutex_t started_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t started_cond = PTHREAD_COND_INITIALIZER;
static int started;

static void* reader(void* arg) {
  (void)arg;
  long sum = 0;
  rcu_read_lock(); /* takes this thread's reader slot */
  rcu_read_unlock();
  pthread_mutex_lock(&started_lock);
  started++;
  pthread_cond_signal(&started_cond);
  pthread_mutex_unlock(&started_lock);
  while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
    rcu_read_lock();
    struct obj* o = rcu_dereference(current);
    sum += o->value;
    rcu_read_unlock();
  }
  return (void*)sum;
}

int main(void) {
  struct obj* first = malloc(sizeof(*first));
  if (!first) return 1;
  first->value = 0;
  rcu_assign_pointer(current, first);
  pthread_t r[2];
  for (int i = 0; i < 2; i++) {
    pthread_create(&r[i], NULL, reader, NULL);
    pthread_mutex_lock(&started_lock);
    while (started <= i) pthread_cond_wait(&started_cond, &started_lock);
    pthread_mutex_unlock(&started_lock);
  }
  for (int i = 1; i <= 300; i++) {
    struct obj* fresh = malloc(sizeof(*fresh));
    if (!fresh) return 1;
    fresh->value = i;
    struct obj* old = current;
    rcu_assign_pointer(current, fresh);
    if (i % 2) {
      synchronize_rcu();
    } else {
      unsigned long cookie = start_poll_synchronize_rcu();
      while (!poll_state_synchronize_rcu(cookie)) {
      }
    }
    old->value = -1; /* a write the readers must never race with */
    free(old);
  }
  __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
  for (int i = 0; i < 2; i++) pthread_join(r[i], NULL);
  free(current);
  puts("tsan consumer: no report");
  return 0;
}
