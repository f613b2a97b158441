// bulkrcu/src/base/user_code.cpp: the per-thread state of user_code.h.
#include "base/user_code.h"

namespace bulkrcu::detail {

__thread unsigned t_user_code BULKRCU_INITIAL_EXEC = 0;
__thread bool t_bulkrcu_thread BULKRCU_INITIAL_EXEC = false;

}  // namespace bulkrcu::detail
