// bulkrcu/src/base/trace.h: USDT tracepoints (docs/TRACING.md).
//
// BULKRCU_TRACE(name, args...) places a statically defined probe `bulkrcu:name` (systemtap's
// <sys/sdt.h>, Debian systemtap-sdt-dev): one `nop` instruction and an ELF note naming the
// probe and where its arguments live. No semaphore: nothing is tested at run time, the
// arguments are only values the code already holds, and no probe sits on an inline fast path
// (retire, read lock/unlock), so a process that nobody traces runs the same instructions as
// without probes. bpftrace, perf probe or systemtap patch the nop into a breakpoint when they
// attach. Builds without <sys/sdt.h> (BULKRCU_HAVE_SDT unset) compile the probes away.
//
// Every probe takes at least one argument (a value, or 0): STAP_PROBEV needs one.
#pragma once

#if defined(BULKRCU_HAVE_SDT) && BULKRCU_HAVE_SDT
#ifndef SDT_USE_VARIADIC
#define SDT_USE_VARIADIC 1  // STAP_PROBEV
#endif
#include <sys/sdt.h>
#define BULKRCU_TRACE(name, ...) STAP_PROBEV(bulkrcu, name, __VA_ARGS__)
#else
#define BULKRCU_TRACE(name, ...) \
  do {                           \
  } while (0)
#endif
