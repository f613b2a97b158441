#!/usr/bin/env bash
# Builds a tiny consumer against an installed bulkrcu, once through find_package(bulkrcu) and
# once through pkg-config, and runs it.
set -euo pipefail
prefix=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake -S "$here/consumer" -B "$work/cmake" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/cmake" >/dev/null
"$work/cmake/consumer"
PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --exists bulkrcu
cc -std=c11 -o "$work/consumer_pc" "$here/consumer/consumer.c" \
  $(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs --static bulkrcu) -lstdc++
"$work/consumer_pc"
echo "install check: find_package and pkg-config consumers built and ran"
