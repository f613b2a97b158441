#include <gtest/gtest.h>

#include "bulkrcu/rcu.h"

TEST(Gp, Smoke) {
  bulkrcu_read_lock();
  EXPECT_TRUE(bulkrcu_read_lock_held());
  bulkrcu_read_unlock();
  EXPECT_FALSE(bulkrcu_read_lock_held());
  unsigned long c = bulkrcu_get_state();
  EXPECT_FALSE(bulkrcu_poll_state(c));
  bulkrcu_synchronize();
  EXPECT_TRUE(bulkrcu_poll_state(c));
}
