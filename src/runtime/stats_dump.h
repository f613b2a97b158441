// bulkrcu/src/runtime/stats_dump.h: BULKRCU_STATS=1 (any value but empty or "0") prints the
// statistics to stderr at exit (stats_dump.cpp).
#pragma once

namespace bulkrcu::detail::runtime {

// Registers the exit-time dump when BULKRCU_STATS asks for it. Called once, at load.
void stats_dump_install() noexcept;

}  // namespace bulkrcu::detail::runtime
