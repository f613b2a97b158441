#!/usr/bin/env bash
# Builds consumers against an installed bulkrcu and runs them, with only the flags the package
# gives: a C-only CMake project (project(x C)), a C++ CMake project that sets no standard
# (gcc and clang), pkg-config from C (C11) and from C++ (gcc's default, and -std=c++17, the
# lowest supported, with gcc and clang), a -fsanitize=thread consumer, the liburcu drop-in. With a shared library installed, also checks its export list against
# tests/install/exports.txt and that calls inside it avoid the PLT.
# Usage: check.sh PREFIX
set -euo pipefail
prefix=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
# gcc 12 defaults to C++17, clang 14 to C++14: the target's compile features (C11, C++17)
# must raise the standard when the project sets none.
for compilers in gcc:g++ clang-14:clang++-14; do
  for proj in consumer consumer_cxx; do
    dir="$work/$proj-${compilers%%:*}"
    CC=${compilers%%:*} CXX=${compilers##*:} cmake -S "$here/$proj" -B "$dir" -G Ninja \
      -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
    cmake --build "$dir" >/dev/null
    LD_LIBRARY_PATH="$prefix/lib" "$dir/$proj"
  done
done
pkg-config --exists bulkrcu
flags=$(pkg-config --cflags --libs bulkrcu)
cc -std=c11 -Wall -Wextra -Werror -o "$work/c_pc" "$here/consumer/consumer.c" $flags
LD_LIBRARY_PATH="$prefix/lib" "$work/c_pc"
c++ -Wall -Wextra -Werror -o "$work/cxx_pc" "$here/consumer_cxx/consumer.cpp" $flags
LD_LIBRARY_PATH="$prefix/lib" "$work/cxx_pc"
for cxx in c++ clang++-14; do
  $cxx -std=c++17 -Wall -Wextra -Werror -pedantic -o "$work/cxx17_pc" \
    "$here/consumer_cxx/consumer.cpp" $flags
  LD_LIBRARY_PATH="$prefix/lib" "$work/cxx17_pc"
done
# libbulkrcu.a references no C++ runtime symbol (operator new/delete, static-local guards,
# exception or RTTI support, std:: throw helpers): C programs link it with cc and -pthread.
if [ -f "$prefix/lib/libbulkrcu.a" ]; then
  if nm -u "$prefix/lib/libbulkrcu.a" | awk '{print $2}' |
    grep -E '^(_Zn|_Zd|__cxa|__gxx|_ZSt|_ZNSt|_ZTV|_ZTI|__dynamic_cast)' | sort -u | grep .; then
    echo "install check: libbulkrcu.a references C++ runtime symbols (above)" >&2
    exit 1
  fi
fi

# A user's ThreadSanitizer build against the installed library: no -Wtsan warning from the
# headers, and no report (the headers' annotations carry the reader/grace-period order).
for tcc in gcc clang-14; do
  $tcc -std=c11 -O1 -g -fsanitize=thread -Wall -Wextra -Werror -o "$work/tsan_$tcc" \
    "$here/tsan_consumer.c" $flags
  LD_LIBRARY_PATH="$prefix/lib" TSAN_OPTIONS=halt_on_error=1:exitcode=66 "$work/tsan_$tcc" >/dev/null
done

# Every defined dynamic symbol (functions, data, TLS), sorted: must equal the expected list.
# The PLT check looks for calls to the library's own symbols (pattern after the second colon).
for lib in 'bulkrcu:exports.txt:bulkrcu' 'bulkrcu-urcu:exports-urcu.txt:urcu_memb|rcu_\w+_sym'; do
  own=${lib##*:}
  lib=${lib%:*}
  so=$(ls "$prefix"/lib/lib${lib%%:*}.so.* 2>/dev/null | head -n1 || true)
  [ -n "$so" ] || continue
  nm -D --defined-only "$so" | awk '{print $3}' | grep -v '^$' | sort -u >"$work/exports"
  if ! diff -u "$here/${lib#*:}" "$work/exports"; then
    echo "install check: $so exports differ from tests/install/${lib#*:}" >&2
    exit 1
  fi
  if objdump -d --no-show-raw-insn "$so" | grep -E "(call|jmp).*<($own)\\w*@plt>"; then
    echo "install check: calls inside $so go through the PLT" >&2
    exit 1
  fi
  echo "install check: $so exports exactly tests/install/${lib#*:}, no internal PLT call"
done
echo "install check: CMake (C, C++) and pkg-config (C11, C++ default, C++17) consumers built and ran"

# The liburcu drop-in: one liburcu program (cds_lfht + call_rcu), unchanged, built on real
# liburcu and on bulkrcu-urcu (pkg-config and CMake); both must run. A liburcu function the
# drop-in does not provide must fail at link time, naming it.
if [ -f "$prefix/lib/pkgconfig/bulkrcu-urcu.pc" ]; then
  lfht="$here/../urcu/lfht.c"
  cc -std=c11 -Wall -Wextra -Werror -o "$work/lfht_liburcu" "$lfht" $(pkg-config --cflags --libs liburcu liburcu-cds) -pthread
  "$work/lfht_liburcu" >/dev/null
  urcu_flags=$(pkg-config --cflags --libs bulkrcu-urcu)
  cc -std=c11 -Wall -Wextra -Werror -o "$work/lfht_bulkrcu" "$lfht" $urcu_flags
  LD_LIBRARY_PATH="$prefix/lib" "$work/lfht_bulkrcu" >/dev/null
  if ldd "$work/lfht_bulkrcu" | grep -q 'liburcu-memb\|liburcu\.so'; then
    echo "install check: the bulkrcu-urcu build links real liburcu" >&2
    exit 1
  fi
  cmake -S "$here/consumer_urcu" -B "$work/consumer_urcu" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
  cmake --build "$work/consumer_urcu" >/dev/null
  LD_LIBRARY_PATH="$prefix/lib" "$work/consumer_urcu/consumer_urcu" >/dev/null
  if cc -std=c11 -o "$work/missing" "$here/urcu_missing.c" $urcu_flags 2>"$work/missing.err"; then
    echo "install check: a program using an unprovided liburcu function linked" >&2
    exit 1
  fi
  grep -q "undefined reference to .urcu_qsbr_synchronize_rcu" "$work/missing.err" || {
    cat "$work/missing.err" >&2
    exit 1
  }
  echo "install check: cds_lfht program built on liburcu and on bulkrcu-urcu (pkg-config, CMake) and ran; unprovided function fails at link time"
fi
