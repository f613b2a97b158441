# cmake -DCXX=... -DINC=... -DSRC=... -P expect_error.cmake: passes only when SRC fails to
# compile with an "ambiguous" diagnostic (the call must be a compile error, never a silent pick).
execute_process(COMMAND ${CXX} -std=c++20 -fsyntax-only -I${INC} ${SRC}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(FATAL_ERROR "${SRC} compiled; the unqualified call must be ambiguous")
endif()
if(NOT err MATCHES "ambiguous")
  message(FATAL_ERROR "${SRC} failed for another reason:\n${err}")
endif()
message(STATUS "rejected as ambiguous, as it must be")
