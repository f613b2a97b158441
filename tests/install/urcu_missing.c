/* Bad use of the drop-in: a liburcu function it does not provide (the QSBR flavour). Linking
 * against bulkrcu-urcu must fail, naming the function (tests/install/check.sh). */
#include <urcu/urcu-qsbr.h>

int main(void) {
  urcu_qsbr_synchronize_rcu();
  return 0;
}
