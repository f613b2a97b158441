# Tests of bulkrcu-bench: option parsing (a GoogleTest program), exit status 2 with a clear
# message for bad options, a tiny run of every workload, and --out writing CSV and PNG files.
# Tiny runs use --tiny (the quick suite's code paths at the smallest sizes).
set(BENCH_CHECK ${CMAKE_CURRENT_SOURCE_DIR}/check_run.cmake)

find_package(GTest QUIET)
if(GTest_FOUND)
  add_executable(bulkrcu_bench_options_test options_test.cpp)
  target_link_libraries(bulkrcu_bench_options_test PRIVATE bulkrcu_bench_core GTest::gtest GTest::gtest_main)
  target_compile_options(bulkrcu_bench_options_test PRIVATE -Wall -Wextra)
  add_test(NAME bulkrcu_bench.options COMMAND bulkrcu_bench_options_test)
endif()

function(bench_check name exit_code)
  cmake_parse_arguments(C "ALLOW_FAILED" "STDERR;STDOUT;OUT_DIR;ENV" "ARGS;FILES" ${ARGN})
  # Lists cross add_test's command line joined with '|' (a ';' would split the argument).
  string(REPLACE ";" "|" args "${C_ARGS}")
  string(REPLACE ";" "|" files "${C_FILES}")
  set(defs -DBENCH=$<TARGET_FILE:bulkrcu-bench> "-DARGS=${args}" -DEXPECT_EXIT=${exit_code})
  if(C_STDERR)
    list(APPEND defs "-DEXPECT_STDERR=${C_STDERR}")
  endif()
  if(C_STDOUT)
    list(APPEND defs "-DEXPECT_STDOUT=${C_STDOUT}")
  endif()
  if(C_OUT_DIR)
    list(APPEND defs -DOUT_DIR=${C_OUT_DIR} "-DEXPECT_FILES=${files}")
  endif()
  if(C_ALLOW_FAILED)
    list(APPEND defs -DALLOW_FAILED=ON)
  endif()
  add_test(NAME bulkrcu_bench.${name} COMMAND ${CMAKE_COMMAND} ${defs} -P ${BENCH_CHECK})
  set_tests_properties(bulkrcu_bench.${name} PROPERTIES TIMEOUT 300)
  if(C_ENV)
    set_tests_properties(bulkrcu_bench.${name} PROPERTIES ENVIRONMENT "${C_ENV}")
  endif()
endfunction()

bench_check(help 0 ARGS --help STDOUT "kfree-scale.*flood.*read-mostly.*latency.*urcu_call_rcu.*--alloc")
bench_check(list 0 ARGS --list STDOUT "workload kfree-scale.*impl free.*impl urcu_defer_rcu")
bench_check(bad_option 2 ARGS --bogus STDERR "^bulkrcu-bench: unknown option '--bogus' \\(see --help\\)")
bench_check(bad_workload 2 ARGS --workload nope STDERR "unknown workload 'nope' \\(known: kfree-scale,")
bench_check(bad_impl 2 ARGS --impl free,nope STDERR "unknown impl 'nope' \\(known: free,")
bench_check(bad_reps 2 ARGS --reps 0 STDERR "--reps needs a whole number from 1 to 1000")
bench_check(bad_alloc 2 ARGS --alloc tcmallocx STDERR "unknown allocator 'tcmallocx' \\(known: glibc, jemalloc")
bench_check(bad_duration 2 ARGS --duration abc STDERR "--duration needs a number of seconds")
bench_check(missing_value 2 ARGS --out STDERR "--out needs a directory")
bench_check(flag_with_value 2 ARGS --quick=yes STDERR "--quick takes no value")
bench_check(stray_argument 2 ARGS flood STDERR "unexpected argument 'flood'")
bench_check(value_is_option 2 ARGS --out --list STDERR "--out needs a value, not the option '--list'")
bench_check(quick_and_tiny 2 ARGS --quick --tiny STDERR "--quick and --tiny contradict each other")
bench_check(list_and_out 2 ARGS --list --out x STDERR "--list only lists")

set(bench_rows "call.*rcu_retire.*obj_retire.*urcu_call_rcu.*urcu_defer_rcu")
if(bench_have_kvfree)
  set(bench_rows "kvfree.*kfree_head.*defer.*${bench_rows}")
endif()
set(bench_rows "free.*${bench_rows}")
foreach(w kfree-scale flood read-mostly latency)
  bench_check(tiny_${w} 0 ARGS --tiny --workload ${w} STDOUT "== ${w}.*${bench_rows}.*runs in")
endforeach()
set(bench_scale_rows "free.*call.*urcu_call_rcu.*urcu_defer_rcu")
if(bench_have_kvfree)
  set(bench_scale_rows "free.*kvfree.*call.*urcu_call_rcu.*urcu_defer_rcu")
endif()
bench_check(tiny_scale 0 ARGS --tiny --workload scale
  STDOUT "== scale: T threads.*${bench_scale_rows}.*== scale: synchronize.*bulkrcu_synchronize.*liburcu synchronize_rcu.*runs in")
if(bench_have_pool)
  bench_check(tiny_pool 0 ARGS --tiny --workload pool
    STDOUT "== pool.*malloc.*mmap.*pool_locked.*pool_lockless.*runs in")
  set(bench_pool_png pool_cpu.png pool_ratio.png)
endif()
bench_check(tiny_alloc_jemalloc 0 ARGS --tiny --workload kfree-scale --impl free,call --alloc jemalloc
  STDOUT "malloc served by: jemalloc \\(/usr/lib/x86_64-linux-gnu/libjemalloc.so.2\\)")
# An allocator other than the one asked for (here preloaded from outside) fails the run
# with a message, and the exit status is 1.
bench_check(alloc_mismatch 1 ARGS --tiny --workload kfree-scale --impl free ALLOW_FAILED
  ENV LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
  STDERR "FAILED: asked for glibc, but malloc was served by jemalloc")
# BULKRCU_STATS=1: the library prints every statistic at exit, `bulkrcu.<field> <value>`, in
# the header's order (first and last field checked; the list's completeness is a static_assert).
bench_check(stats_at_exit 0 ARGS --list ENV BULKRCU_STATS=1
  STDERR "^bulkrcu\\.grace_periods [0-9]+\nbulkrcu\\.expedited_grace_periods [0-9]+\n.*bulkrcu\\.cache_pending_bytes [0-9]+\nbulkrcu\\.no_reader_grace_periods [0-9]+\n$")
# Progress on stderr: one line per run when stderr is not a terminal, then the elapsed time.
bench_check(progress 0 ARGS --tiny --workload kfree-scale --impl free,call
  STDERR "^\\[1/2\\] kfree-scale free rep 1/1, ETA [0-9]+s\n\\[2/2\\] kfree-scale call rep 1/1, ETA [0-9]+s\n.*done: 2 runs in [0-9]+s")
bench_check(tiny_out 0 ARGS --tiny --out ${CMAKE_CURRENT_BINARY_DIR}/test-out
  OUT_DIR ${CMAKE_CURRENT_BINARY_DIR}/test-out
  FILES report.md kfree_scale.csv flood.csv flood_series.csv read_mostly.csv latency_retire.csv latency_retire_hist.csv
        latency_sync.csv scale_retire.csv scale_sync.csv plots.gp kfree_scale_cpu.png kfree_scale_ratio.png
        flood_cpu.png flood_ratio.png flood_pending.png flood_pending_5M.png flood_rss.png read_mostly_cpu.png
        read_mostly_ratio.png latency_retire_hist.png latency_retire_ratio.png latency_sync_hist.png
        latency_sync_ratio.png scale_cpu.png scale_rss.png scale_ratio.png scale_sync.png ${bench_pool_png})
