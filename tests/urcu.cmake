# The liburcu drop-in (compat/urcu): a torture through every entry point (with and without
# _LGPL_SOURCE), link-time failure for what it does not provide, and liburcu-cds's cds_lfht on
# bulkrcu, with the same lfht source also built on real liburcu.
# Not in the ThreadSanitizer build: liburcu's own headers read RCU pointers with volatile
# loads and update them with inline-asm atomics, and liburcu-cds is not instrumented, so TSan
# reports races inside liburcu's code on real liburcu and on this layer alike (ASan and the
# Release build run them).
if(TARGET bulkrcu_urcu_shrunk AND NOT BULKRCU_SANITIZE STREQUAL "thread")
  set(urcu_dir ${CMAKE_CURRENT_SOURCE_DIR}/urcu)
  add_executable(urcu_torture ${urcu_dir}/torture.c)
  add_executable(urcu_torture_lgpl ${urcu_dir}/torture.c)
  target_compile_definitions(urcu_torture_lgpl PRIVATE _LGPL_SOURCE)
  add_executable(urcu_lfht_bulkrcu ${urcu_dir}/lfht.c)
  add_executable(urcu_queues_bulkrcu ${urcu_dir}/queues.c)
  foreach(t urcu_torture urcu_torture_lgpl urcu_lfht_bulkrcu urcu_queues_bulkrcu)
    target_link_libraries(${t} PRIVATE bulkrcu_urcu_shrunk)
    target_compile_options(${t} PRIVATE -Wall -Wextra -Werror)
    set_target_properties(${t} PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON)
    add_test(NAME ${t} COMMAND ${t})
    set_tests_properties(${t} PROPERTIES TIMEOUT 300)
  endforeach()
  # The same lfht and queues sources on real liburcu (memb): the reference the drop-in must match.
  pkg_check_modules(BULKRCU_REAL_URCU IMPORTED_TARGET liburcu-memb liburcu-cds)
  if(BULKRCU_REAL_URCU_FOUND)
    foreach(prog lfht queues)
      add_executable(urcu_${prog}_liburcu ${urcu_dir}/${prog}.c)
      target_link_libraries(urcu_${prog}_liburcu PRIVATE PkgConfig::BULKRCU_REAL_URCU Threads::Threads)
      target_compile_options(urcu_${prog}_liburcu PRIVATE -Wall -Wextra -Werror)
      set_target_properties(urcu_${prog}_liburcu PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON)
      add_test(NAME urcu_${prog}_liburcu COMMAND urcu_${prog}_liburcu)
    endforeach()
  endif()
endif()
