// bulkrcu-bench: the `pool` workload (pool.cpp): page allocation with bulkrcu's page pool,
// lockless and locked, against malloc(page)/free and mmap/munmap.
#pragma once

#include <string>
#include <vector>

#include "workloads.h"

namespace bench {

// True when this build has the page pool (BENCH_HAVE_POOL).
bool pool_available();
// The allocators the workload compares (its own rows; --impl does not filter them).
const std::vector<std::string>& pool_impl_names();
// Child side of one case (params: impl, threads, batch, pairs).
void pool_child(const Params&, ResultWriter&);

}  // namespace bench
