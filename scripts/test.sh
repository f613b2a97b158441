#!/usr/bin/env bash
# The test command (README): installs what is missing, checks formatting, then builds and runs
# every test in three builds (Release, AddressSanitizer+UBSan, ThreadSanitizer), the Release
# tests again without rseq and without membarrier, an install + consumer check, and the
# tortures' self-tests against deliberately broken libraries (busted, cache-busted).
# The production step builds the kvfree and C++ API tests once more against the real `bulkrcu`
# library (production constants: 507-pointer blocks, the real budget sizing) and runs them.
# Usage: scripts/test.sh [release|asan|tsan|fallback|format|install|busted|cache-busted|production ...]  (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(format release fallback install busted cache-busted production asan tsan)
jobs=$(nproc)

configure_build() {  # dir, extra cmake args...
  local dir=$1; shift
  cmake -S . -B "$dir" -G Ninja "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
}

run_ctest() {  # dir, extra ctest args...
  local dir=$1; shift
  ctest --test-dir "$dir" -j "$jobs" --output-on-failure --timeout 600 "$@"
}

for step in "${steps[@]}"; do
  echo "==== test step: $step ====" >&2
  case "$step" in
    format)
      files=$(git ls-files '*.c' '*.cpp' '*.h' '*.hpp')
      clang-format --dry-run --Werror $files
      ;;
    release)
      configure_build build-ci-release -DCMAKE_BUILD_TYPE=Release -DBULKRCU_BUILD_BENCH=ON
      run_ctest build-ci-release
      ;;
    fallback)
      [ -d build-ci-release ] || configure_build build-ci-release -DCMAKE_BUILD_TYPE=Release
      echo "-- without rseq (GLIBC_TUNABLES=glibc.pthread.rseq=0)" >&2
      GLIBC_TUNABLES=glibc.pthread.rseq=0 BULKRCU_EXPECT_NO_RSEQ=1 run_ctest build-ci-release
      echo "-- without membarrier (BULKRCU_NO_MEMBARRIER=1)" >&2
      BULKRCU_NO_MEMBARRIER=1 BULKRCU_EXPECT_NO_MEMBARRIER=1 run_ctest build-ci-release
      ;;
    install)
      configure_build build-ci-release -DCMAKE_BUILD_TYPE=Release
      prefix=$(mktemp -d)
      cmake --install build-ci-release --prefix "$prefix" >/dev/null
      bash tests/install/check.sh "$prefix"
      rm -rf "$prefix"
      echo "-- shared library (BUILD_SHARED_LIBS=ON): consumers, export list, no internal PLT" >&2
      configure_build build-ci-shared -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
        -DBULKRCU_BUILD_TESTS=OFF -DBULKRCU_BUILD_BENCH=OFF
      prefix=$(mktemp -d)
      cmake --install build-ci-shared --prefix "$prefix" >/dev/null
      bash tests/install/check.sh "$prefix"
      rm -rf "$prefix"
      ;;
    production)
      configure_build build-ci-prod -DCMAKE_BUILD_TYPE=Release -DBULKRCU_TEST_PRODUCTION=ON
      run_ctest build-ci-prod -R '^prod\.'
      ;;
    asan)
      CC=clang-14 CXX=clang++-14 configure_build build-ci-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DBULKRCU_SANITIZE=address -DBULKRCU_BUILD_BENCH=OFF
      ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 run_ctest build-ci-asan
      ;;
    tsan)
      configure_build build-ci-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBULKRCU_SANITIZE=thread \
        -DBULKRCU_BUILD_BENCH=OFF
      TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 run_ctest build-ci-tsan
      ;;
    cache-busted)
      # The cache torture's self-check: with every cookie read as elapsed it must fail.
      cmake -S . -B build-ci-cache-busted -G Ninja -DCMAKE_BUILD_TYPE=Release -DBULKRCU_CACHE_BUSTED=ON \
        -DBULKRCU_BUILD_BENCH=OFF >/dev/null
      cmake --build build-ci-cache-busted -j "$jobs" --target cache_torture_test
      if timeout 600 build-ci-cache-busted/tests/cache_torture_test >/dev/null 2>&1; then
        echo "cache-busted: the cache torture passed against a broken cache" >&2; exit 1
      fi
      echo "-- cache-busted: the torture caught the broken cache, as it must" >&2
      ;;
    busted)
      # The torture tests itself (rcutorture's "busted" flavour): against the library built with
      # BULKRCU_BUSTED (grace periods end at once: src/gp/gp.cpp), the torture must fail with its
      # own diagnosis (exit 1 and the EARLY FREE line; a crash does not count), in every per-CPU
      # mode and for every retire form on its own. The list matches kFormNames in
      # tests/torture_test.cpp (an unknown name fails the torture without that line).
      cmake -S . -B build-ci-busted -G Ninja -DCMAKE_BUILD_TYPE=Release -DBULKRCU_BUILD_BENCH=OFF \
        -DBULKRCU_BUSTED=ON >/dev/null
      cmake --build build-ci-busted -j "$jobs" --target torture_busted
      forms="all sync sync_expedited cond poll start_poll call kvfree kfree_head defer defer_nowait
             defer_nowait_signal obj_retire rcu_retire rcu_retire_node rcu_retire_default"
      out=$(mktemp)
      for mode in "BULKRCU_NO_RSEQ=0:rseq" "BULKRCU_NO_RSEQ=1:try-lock" "BULKRCU_NO_MEMBARRIER=1:rseq, fenced readers"; do
        for form in $forms; do
          [ "$form" = all ] && sel="" || sel=$form
          rc=0
          env "${mode%%:*}" BULKRCU_TORTURE_FORMS="$sel" BULKRCU_TORTURE_SECONDS=30 \
            build-ci-busted/tests/torture_busted >"$out" 2>&1 || rc=$?
          if [ "$rc" -ne 1 ] || ! grep -qF "bulkrcu-torture: EARLY FREE DETECTED (${mode#*:} mode)" "$out"; then
            cat "$out" >&2
            echo "busted: the torture did not catch the broken library (${mode%%:*}, form $form, exit $rc)" >&2
            exit 1
          fi
          echo "-- busted ${mode#*:}, $form: $(grep -o 'the first after [0-9.]* s: form [a-z_]*, [^(]*' "$out")" >&2
        done
      done
      rm -f "$out"
      ;;
    *) echo "unknown step: $step" >&2; exit 2 ;;
  esac
done
echo "==== all test steps passed: ${steps[*]} ====" >&2
