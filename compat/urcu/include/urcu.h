/* bulkrcu-urcu's <urcu.h>: liburcu's default flavour (memb, plain names) on bulkrcu.
 *
 * The `bulkrcu-urcu` pkg-config module and the `bulkrcu::urcu` CMake target put this folder
 * first on the include path, ahead of liburcu-dev's headers; liburcu's header-only parts
 * (urcu/compiler.h, uatomic.h, pointer.h, list.h, rculist.h, wfcqueue.h, rculfhash.h, ...) come
 * from the installed liburcu-dev. docs/URCU.md lists every name and each difference. */
#ifndef _URCU_H
#define _URCU_H

#if defined(RCU_SIGNAL) || defined(RCU_MB) || defined(RCU_QSBR) || defined(RCU_BP)
#error \
    "bulkrcu-urcu provides liburcu's memb flavour only (the default): undefine RCU_SIGNAL/RCU_MB/RCU_QSBR/RCU_BP, or link real liburcu"
#endif
#ifndef RCU_MEMBARRIER
#define RCU_MEMBARRIER
#endif

#define URCU_API_MAP /* plain names (rcu_read_lock, call_rcu, ...) map to urcu_memb_* */
#include <urcu/urcu-memb.h>

#endif /* _URCU_H */
