// bulkrcu/src/base/user_code.h: the one place bulkrcu calls user code (callbacks, deleters,
// C++ destructors), in the bottom layer so that every layer above uses the same state.
//
// UserCode marks the calling thread as running user code for its lifetime (in_user_code():
// the barriers abort there, since they would wait for themselves; retires never throttle
// there) and, with Section::kReader, runs it inside a read-side critical section (deleters:
// so that a deleter that waits for a grace period aborts loudly, and so that a barrier's
// closing grace period waits for deleters in flight on any thread). Nesting is allowed.
#pragma once

#include "base/base.h"
#include "bulkrcu/rcu.h"

namespace bulkrcu::detail {

// How deep the calling thread is in user code that bulkrcu called (0: not inside).
extern __thread unsigned t_user_code BULKRCU_INITIAL_EXEC;
// True on bulkrcu's own threads (the runtime thread): they never throttle or wait for passes
// only they make.
extern __thread bool t_bulkrcu_thread BULKRCU_INITIAL_EXEC;

BULKRCU_ALWAYS_INLINE bool in_user_code() noexcept { return t_user_code != 0; }
BULKRCU_ALWAYS_INLINE bool on_bulkrcu_thread() noexcept { return t_bulkrcu_thread; }
// Whether the calling thread may wait for reclaim to catch up (kvfree's throttle, the caches'
// pacing): not in user code bulkrcu called and not on bulkrcu's own threads, which would wait
// for work only they do. Callers also check that the thread is outside a reader.
BULKRCU_ALWAYS_INLINE bool may_wait_for_reclaim() noexcept { return !in_user_code() && !on_bulkrcu_thread(); }

enum class Section { kNone, kReader };

class UserCode {
 public:
  explicit UserCode(Section s) noexcept : reader_(s == Section::kReader) {
    ++t_user_code;
    if (reader_) bulkrcu__read_lock_inline();
  }
  ~UserCode() {
    if (reader_) bulkrcu__read_unlock_inline();
    --t_user_code;
  }
  UserCode(const UserCode&) = delete;
  UserCode& operator=(const UserCode&) = delete;

 private:
  bool reader_;
};

}  // namespace bulkrcu::detail
