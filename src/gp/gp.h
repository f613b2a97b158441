// bulkrcu/src/gp/gp.h: the grace-period engine (layer gp; includes base/ and percpu/).
//
// Readers: registration-free per-thread counters (the inline fast path is in
// include/bulkrcu/rcu.h). A thread's first read_lock claims a ReaderSlot from a process-wide,
// never-freed pool with one compare-and-swap; thread exit releases it through a pthread key.
//
// Grace periods: a sequence number `seq` (even: idle, odd: a grace period is running) with the
// kernel's cookie rules: get_state() = (seq + 3) & ~1, the value seq reaches once a full grace
// period has elapsed after the call; poll_state(c) = seq >= c (wrap-safe).
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "base/base.h"
#include "bulkrcu/rcu.h"
#include "percpu/percpu.h"

namespace bulkrcu::detail::gp {

// --- cookies -------------------------------------------------------------------------------
unsigned long get_state() noexcept;
bool poll_state(unsigned long cookie) noexcept;
// The current sequence value (for statistics and tests).
unsigned long current_seq() noexcept;
// True while a thread runs a full grace period (waiting for readers, for tests). An odd
// current_seq() alone does not say so: an abandoned attempt leaves it odd.
bool driving() noexcept;

// Runs grace periods on the calling thread until `cookie` has elapsed. Callers that overlap
// share grace periods. `expedited`: the runtime thread's waits spin as long as an application
// thread's (gp.cpp's wait_for_readers). Not a cancellation
// point (cancellation is disabled while it waits).
void wait_for_cookie(unsigned long cookie, bool expedited) noexcept;

// bulkrcu_synchronize: returns at once when no thread owns a reader slot (no thread can be
// inside a section: gp.cpp's "no-reader shortcut"), else waits for a fresh cookie.
void synchronize(bool expedited) noexcept;
// True when no reader slot is owned (every thread that ever read has exited, or none did).
bool no_reader_slot_owned() noexcept;

// Disables thread cancellation for its lifetime (bulkrcu's waits are not cancellation points:
// a cancelled waiter would unwind through noexcept frames or leave a lock held).
struct NoCancel {
  int old = 0;
  NoCancel() noexcept { pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old); }
  ~NoCancel() { pthread_setcancelstate(old, nullptr); }
  NoCancel(const NoCancel&) = delete;
  NoCancel& operator=(const NoCancel&) = delete;
};

// Runs one grace period on the calling thread if that needs no waiting: gp_mutex is free and,
// within a few microseconds of spinning after the first fence, no reader is inside a critical
// section. Otherwise abandons the attempt (the sequence stays odd and the next grace period
// takes it over, see "seq never moves backwards" in gp.cpp) and returns false. Never blocks;
// no system call when no thread owns a reader slot (the no-reader shortcut), else one
// membarrier call (two off x86-64). Not inside a reader (it would see itself and fail).
bool try_grace_period_now() noexcept;
// Only the no-reader shortcut: true when it completed a grace period (no thread owns a reader
// slot and gp_mutex was free); false at once otherwise, with nothing changed when a slot is
// owned. Never blocks, no system call: a full fence and one load of the count of owned slots.
bool try_no_reader_grace_period() noexcept;

// Asks the runtime thread for a grace period that satisfies `cookie` (lock-free; at most one
// futex wake through the base layer's doorbell). The runtime thread reads requested_cookie().
void request(unsigned long cookie) noexcept;
unsigned long requested_cookie() noexcept;

// --- readers -------------------------------------------------------------------------------
// Nesting depth of the calling thread's read-side critical section (0 outside).
unsigned long reader_nesting() noexcept;
// Aborts with "<what> called inside a read-side critical section..." when nesting > 0.
void assert_not_in_reader(const char* what) noexcept;

// Per-thread words in the calling thread's reader slot, for an upper layer (kvfree keeps its
// reclaim cursor in `word` and its help sequence in `seq`; `mark` belongs to whoever holds
// kvfree's monitor mutex). `r` is bulkrcu__tls_reader, non-null. The words outlive the thread:
// a thread that claims the slot later sees what was left in them, and for_each_thread_words
// (any thread) visits every slot's words.
struct ThreadWords {
  std::atomic<void*> word{nullptr};
  std::atomic<std::uint64_t> seq{0};
  std::uint64_t mark = 0;
};
inline constexpr std::size_t kThreadWordOffset = sizeof(bulkrcu__reader);
BULKRCU_ALWAYS_INLINE ThreadWords* thread_words(bulkrcu__reader* r) noexcept {
  return reinterpret_cast<ThreadWords*>(reinterpret_cast<char*>(r) + kThreadWordOffset);
}
BULKRCU_ALWAYS_INLINE std::atomic<void*>* thread_word(bulkrcu__reader* r) noexcept {
  return &thread_words(r)->word;
}
void for_each_thread_words(void (*f)(ThreadWords& words, void* arg), void* arg) noexcept;

// Registers the calling thread's reader slot (the slow path of the first read_lock).
bulkrcu__reader* register_reader() noexcept;
void count_synchronize() noexcept;
// The outermost unlock's slow path (bulkrcu__reader_wake): clears r->wake, wakes the waiter.
void reader_wake(bulkrcu__reader* r) noexcept;

// Waits that slept until a reader's unlock (or the bounded timeout) woke them, and wakes made
// by readers' unlocks (for tests and the statistics).
struct WaitStats {
  std::uint64_t sleeps;
  std::uint64_t reader_wakes;
  std::uint64_t timeouts;  // sleeps that ended by the timeout
};
WaitStats wait_stats() noexcept;

// --- fork ----------------------------------------------------------------------------------
void before_fork() noexcept;
void after_fork_parent() noexcept;
void after_fork_child() noexcept;

// --- statistics ----------------------------------------------------------------------------
struct Stats {
  std::uint64_t grace_periods;
  std::uint64_t expedited_grace_periods;
  std::uint64_t synchronize_calls;
  std::uint64_t readers_registered;  // reader slots in use now
  std::uint64_t reader_slots;        // reader slots mapped
  std::uint64_t stall_warnings;
  std::uint64_t no_reader_grace_periods;  // of grace_periods: the no-reader shortcut
};
Stats stats() noexcept;

}  // namespace bulkrcu::detail::gp
