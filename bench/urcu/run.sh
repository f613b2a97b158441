#!/usr/bin/env bash
# Runs urcu-bench on real liburcu and on bulkrcu-urcu, interleaved (A B A B ...), ROUNDS times
# per workload, and prints the medians and the bulkrcu/liburcu ratios with `uptime`.
# Usage: bench/urcu/run.sh BUILD_DIR [ROUNDS] [LFHT_SECONDS] [FLOOD_OBJECTS]
set -euo pipefail
build=$1
rounds=${2:-5}
secs=${3:-2}
objs=${4:-2000000}
bin=$build/bench/urcu
out=$(mktemp)
trap 'rm -f "$out"' EXIT
uptime
for ((i = 0; i < rounds; i++)); do
  for impl in liburcu bulkrcu; do
    "$bin/urcu-bench-$impl" lfht "$secs" 4 >>"$out"
    "$bin/urcu-bench-$impl" call_rcu "$objs" 2 >>"$out"
    "$bin/urcu-bench-$impl" defer_rcu "$objs" 2 >>"$out"
  done
done
uptime
awk -v rounds="$rounds" '
  function med(arr, n,   i, j, t) {
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (arr[j] < arr[i]) { t = arr[i]; arr[i] = arr[j]; arr[j] = t }
    return n % 2 ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2
  }
  {
    impl = ""; wl = ""
    for (f = 1; f <= NF; f++) { split($f, kv, "="); v[kv[1]] = kv[2] }
    impl = v["impl"]; wl = v["workload"]
    if (wl == "lfht") { keys = "lookups_per_s updates_per_s" } else { keys = "cpu_ns_per_obj peak_pending" }
    nk = split(keys, ks, " ")
    for (k = 1; k <= nk; k++) { id = wl SUBSEP ks[k] SUBSEP impl; cnt[id]++; data[id, cnt[id]] = v[ks[k]] }
    seen[wl] = keys
  }
  END {
    printf "%-10s %-16s %14s %14s %8s   (medians of %d interleaved runs)\n", "workload", "metric", "liburcu", "bulkrcu", "ratio", rounds
    split("lfht call_rcu defer_rcu", order, " ")
    for (o = 1; o <= 3; o++) {
      wl = order[o]; nk = split(seen[wl], ks, " ")
      for (k = 1; k <= nk; k++) {
        for (m = 1; m <= 2; m++) {
          impl = m == 1 ? "liburcu-memb" : "bulkrcu-urcu"; id = wl SUBSEP ks[k] SUBSEP impl
          delete a; for (i = 1; i <= cnt[id]; i++) a[i] = data[id, i] + 0
          r[m] = med(a, cnt[id])
        }
        printf "%-10s %-16s %14.1f %14.1f %7.2fx\n", wl, ks[k], r[1], r[2], r[1] ? r[2] / r[1] : 0
      }
    }
  }' "$out"
