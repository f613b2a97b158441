#!/usr/bin/env bash
# Installs the Debian packages bulkrcu's build, tests and benchmarks need, when missing.
set -euo pipefail
pkgs=(cmake ninja-build g++ clang-14 clang-format pkg-config libgtest-dev libbenchmark-dev
      liburcu-dev gnuplot-nox libjemalloc2 libgoogle-perftools4 libmimalloc2.0 libclang-rt-14-dev
      systemtap-sdt-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq || true
  $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
