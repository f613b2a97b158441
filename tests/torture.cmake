# The torture in each per-CPU mode (torture_test itself, discovered with the other GoogleTest
# programs, runs in the default one: rseq with membarrier).
add_test(NAME torture_no_rseq COMMAND torture_test)
set_tests_properties(torture_no_rseq PROPERTIES ENVIRONMENT "BULKRCU_NO_RSEQ=1" TIMEOUT 300)
add_test(NAME torture_no_membarrier COMMAND torture_test)
set_tests_properties(torture_no_membarrier PROPERTIES ENVIRONMENT "BULKRCU_NO_MEMBARRIER=1" TIMEOUT 300)

# The torture tests itself (the kernel's rcutorture "busted" flavour): the same program against
# the shrunk sources with BULKRCU_BUSTED, whose grace periods end at once. Not a ctest test: it
# must fail, with the torture's own diagnosis (scripts/test.sh busted checks that).
if(BULKRCU_BUSTED)
  add_library(bulkrcu_busted STATIC EXCLUDE_FROM_ALL ${BULKRCU_SOURCES})
  target_include_directories(bulkrcu_busted
    PUBLIC ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src)
  target_compile_definitions(bulkrcu_busted PUBLIC BULKRCU_TESTING=1 BULKRCU_BUSTED=1)
  # As for bulkrcu_shrunk: the library's own sources do not take the headers' inline paths.
  target_compile_definitions(bulkrcu_busted PRIVATE BULKRCU__BUILDING_LIBRARY=1)
  target_compile_options(bulkrcu_busted PRIVATE ${BULKRCU_WARNINGS})
  target_link_libraries(bulkrcu_busted PUBLIC Threads::Threads)
  add_executable(torture_busted EXCLUDE_FROM_ALL ${CMAKE_CURRENT_SOURCE_DIR}/torture_test.cpp)
  target_link_libraries(torture_busted PRIVATE bulkrcu_busted GTest::gtest GTest::gtest_main)
  target_compile_options(torture_busted PRIVATE -Wall -Wextra)
endif()
