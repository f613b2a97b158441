// The C API test compiled as C++: proves <bulkrcu/rcu.h>, <bulkrcu/kernel.h> and
// <bulkrcu/stats.h> are C++-clean (not named *_test.cpp: it is not a GoogleTest program).
#include "c_api_test.c"
