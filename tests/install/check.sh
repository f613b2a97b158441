#!/usr/bin/env bash
# Builds consumers against an installed bulkrcu and runs them, with only the flags the package
# gives: a C-only CMake project (project(x C)), a C++ CMake project that sets no standard,
# pkg-config from C (C11) and from C++ (the compiler's default, and -std=c++17, the lowest
# supported). With a shared library installed, also checks its export list against
# tests/install/exports.txt and that calls inside it avoid the PLT.
# Usage: check.sh PREFIX
set -euo pipefail
prefix=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
for proj in consumer consumer_cxx; do
  cmake -S "$here/$proj" -B "$work/$proj" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
  cmake --build "$work/$proj" >/dev/null
  LD_LIBRARY_PATH="$prefix/lib" "$work/$proj/$proj"
done
pkg-config --exists bulkrcu
flags=$(pkg-config --cflags --libs bulkrcu)
cc -std=c11 -Wall -Wextra -Werror -o "$work/c_pc" "$here/consumer/consumer.c" $flags
LD_LIBRARY_PATH="$prefix/lib" "$work/c_pc"
c++ -Wall -Wextra -Werror -o "$work/cxx_pc" "$here/consumer_cxx/consumer.cpp" $flags
LD_LIBRARY_PATH="$prefix/lib" "$work/cxx_pc"
for cxx in c++ clang++; do
  $cxx -std=c++17 -Wall -Wextra -Werror -pedantic -o "$work/cxx17_pc" \
    "$here/consumer_cxx/consumer.cpp" $flags
  LD_LIBRARY_PATH="$prefix/lib" "$work/cxx17_pc"
done
so=$(ls "$prefix"/lib/libbulkrcu.so.* 2>/dev/null | head -n1 || true)
if [ -n "$so" ]; then
  # Every defined dynamic symbol (functions, data, TLS), sorted: must equal the expected list.
  nm -D --defined-only "$so" | awk '{print $3}' | grep -v '^$' | sort -u >"$work/exports"
  if ! diff -u "$here/exports.txt" "$work/exports"; then
    echo "install check: $so exports differ from tests/install/exports.txt" >&2
    exit 1
  fi
  if objdump -d --no-show-raw-insn "$so" | grep -E '(call|jmp).*<bulkrcu\w*@plt>'; then
    echo "install check: calls inside $so go through the PLT" >&2
    exit 1
  fi
  echo "install check: $so exports exactly tests/install/exports.txt, no internal PLT call"
fi
echo "install check: CMake (C, C++) and pkg-config (C11, C++ default, C++17) consumers built and ran"
