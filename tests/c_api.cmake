# tests/c_api_test.c compiled as strict C11 and again as C++ (through tests/c_api_cxx.cpp);
# both are plain programs that exit with the number of failed checks.
add_executable(c_api_test ${CMAKE_CURRENT_SOURCE_DIR}/c_api_test.c)
set_target_properties(c_api_test PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF)
target_compile_options(c_api_test PRIVATE -Wall -Wextra -Werror -pedantic)
target_link_libraries(c_api_test PRIVATE bulkrcu_shrunk)
add_test(NAME c_api_c11 COMMAND c_api_test)

add_executable(c_api_cxx ${CMAKE_CURRENT_SOURCE_DIR}/c_api_cxx.cpp)
target_include_directories(c_api_cxx PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
target_compile_options(c_api_cxx PRIVATE -Wall -Wextra -Werror -pedantic)
target_link_libraries(c_api_cxx PRIVATE bulkrcu_shrunk)
add_test(NAME c_api_cxx COMMAND c_api_cxx)
set_tests_properties(c_api_c11 c_api_cxx PROPERTIES TIMEOUT 300)

# GCC warns (-Wtsan) that ThreadSanitizer cannot model the fence the no-membarrier reader path
# keeps in rcu.h; that path is not the one TSan builds check.
if(BULKRCU_SANITIZE STREQUAL "thread" AND CMAKE_C_COMPILER_ID STREQUAL "GNU")
  target_compile_options(c_api_test PRIVATE -Wno-tsan)
endif()
if(BULKRCU_SANITIZE STREQUAL "thread" AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  target_compile_options(c_api_cxx PRIVATE -Wno-tsan)
endif()
