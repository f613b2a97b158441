#!/usr/bin/env bash
# Runs pass_bench (bench/micro/pass_bench.cpp) for several possible-CPU counts and prints one
# table of medians (real time per operation). Usage:
#   bash bench/micro/pass_scaling.sh [build-dir] [cpu counts...]
# e.g. bash bench/micro/pass_scaling.sh build-release 2 16 64 256 1024
set -euo pipefail
build=${1:-build-release}
shift || true
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(2 16 64 256 1024)
bin="$build/bench/micro/pass_bench"
[ -x "$bin" ] || cmake --build "$build" --target pass_bench
printf '%-22s' benchmark
for n in "${counts[@]}"; do printf '%14s' "C=$n"; done
printf '\n'
declare -A cell
for n in "${counts[@]}"; do
  while read -r name value unit; do
    cell["$name,$n"]="$value $unit"
  done < <(BULKRCU_TEST_POSSIBLE_CPUS=$n "$bin" --benchmark_repetitions=5 --benchmark_min_time=0.1 \
             --benchmark_report_aggregates_only=true 2>/dev/null |
           awk '$1 ~ /_median$/ { n = $1; sub(/\/real_time/, "", n); sub(/_median$/, "", n); print n, $2, $3 }')
done
for b in BM_KvfreeMonitorPass BM_PoolDrain BM_CallBarrier BM_Stats BM_FenceAll BM_FencePerCpu; do
  printf '%-22s' "$b"
  for n in "${counts[@]}"; do printf '%14s' "${cell[$b,$n]:-?}"; done
  printf '\n'
done
