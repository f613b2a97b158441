#!/usr/bin/env bash
# The main job (README): builds bulkrcu in Release and runs the headline benchmark side by
# side with the baselines (liburcu, plain free). Extra arguments go to bulkrcu-bench.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DBULKRCU_BUILD_TESTS=OFF >/dev/null
cmake --build build-release -j "$(nproc)"
if [ -x build-release/bench/bulkrcu-bench/bulkrcu-bench ]; then
  out=${BULKRCU_BENCH_OUT:-out/bench}
  build-release/bench/bulkrcu-bench/bulkrcu-bench --out "$out" "$@"
  echo "CSV files and plots: $out/" >&2
else
  build-release/bench/micro/gp_bench --benchmark_counters_tabular=true "$@"
fi
