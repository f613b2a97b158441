// bulkrcu/rcu.hpp: the C++ API, shaped like C++26 std::rcu (P2545R4) in namespace bulkrcu.
//
//   struct Config : bulkrcu::rcu_obj_base<Config> { ... };
//   std::atomic<Config*> current;
//   { std::scoped_lock lock(bulkrcu::rcu_default_domain());   // reader
//     use(current.load(std::memory_order_acquire)); }
//   Config* old = current.exchange(fresh, std::memory_order_acq_rel);  // writer
//   old->retire();                                                       // deleted after a GP
//
// Memory ordering: as in <bulkrcu/rcu.h>. A deleter scheduled by retire() or rcu_retire() runs
// after every read-side critical section that began before the call has ended; the accesses
// of those sections happen-before the deleter. rcu_barrier() returns after every deleter
// scheduled before it has returned, and rcu_synchronize() after a full grace period.
#ifndef BULKRCU_RCU_HPP
#define BULKRCU_RCU_HPP

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

#include "bulkrcu/cache.h"
#include "bulkrcu/rcu.h"

// C++17 is the lowest standard this header supports (tests/install builds a consumer with
// -std=c++17). [[no_unique_address]] is used whenever the compiler has it, in every standard,
// so rcu_obj_base has one layout in C++17 and C++20 translation units alike.
#if __cplusplus < 201703L
#error "bulkrcu/rcu.hpp needs C++17 or later"
#endif
#if defined(__has_cpp_attribute)
#if __has_cpp_attribute(no_unique_address)
#define BULKRCU__NO_UNIQUE_ADDRESS [[no_unique_address]]
#endif
#endif
#ifndef BULKRCU__NO_UNIQUE_ADDRESS
#define BULKRCU__NO_UNIQUE_ADDRESS
#endif
#if defined(__cpp_constinit)
#define BULKRCU__CONSTINIT constinit
#else
#define BULKRCU__CONSTINIT /* constexpr constructor: constant-initialized in C++17 too */
#endif

namespace bulkrcu {

namespace detail {
// An object that came from an rcu_cache goes back to its cache when its deleter is the
// default one: destructor, then bulkrcu_cache_free (its grace period has elapsed). Two table
// loads decide (bulkrcu_cache_of).
template <class T, class D>
inline constexpr bool kDefaultDelete = std::is_same_v<D, std::default_delete<T>>;
template <class T>
bool destroy_if_cached(T* p) noexcept {
  bulkrcu_cache* c = bulkrcu_cache_of(p);
  if (!c) return false;
  p->~T();
  bulkrcu_cache_free(c, p);
  return true;
}
template <class T>
void cache_destroy_and_free(void* p) {
  (void)destroy_if_cached(static_cast<T*>(p));
}

// A class-specific operator delete, in any of the usual forms (found by calling it: an
// overloaded name has no address to take).
template <class T, class = void>
struct has_class_delete : std::false_type {};
template <class T>
struct has_class_delete<T, std::void_t<decltype(T::operator delete(std::declval<void*>()))>>
    : std::true_type {};
template <class T, class = void>
struct has_class_sized_delete : std::false_type {};
template <class T>
struct has_class_sized_delete<
    T, std::void_t<decltype(T::operator delete(std::declval<void*>(), std::declval<std::size_t>()))>>
    : std::true_type {};
#if defined(__cpp_lib_destroying_delete)
template <class T, class = void>
struct has_destroying_delete : std::false_type {};
template <class T>
struct has_destroying_delete<
    T, std::void_t<decltype(T::operator delete (std::declval<T*>(), std::destroying_delete_t{}))>>
    : std::true_type {};
#else
template <class T>
struct has_destroying_delete : std::false_type {};
#endif

// std::default_delete<T> whose delete-expression runs no user code: a trivially destructible T
// without a class-specific operator delete, not over-aligned, so `delete p` is the global
// ::operator delete(p, sizeof(T)), the allocator. Such a retire takes an allocator channel
// (BULKRCU__DELETE_BIT | sizeof(T), <bulkrcu/rcu.h>), freed as bulkrcu_kvfree's pointers are:
// a few at a time by retiring threads, where the objects and the allocator's thread cache are
// still warm. (A program that specializes std::default_delete for its T is not detected: give
// that T a deleter type of its own.)
template <class T, class D>
inline constexpr bool kAllocatorDelete =
    kDefaultDelete<T, D>&& std::is_trivially_destructible_v<T> && !std::is_array_v<T> &&
    !has_class_delete<T>::value && !has_class_sized_delete<T>::value && !has_destroying_delete<T>::value &&
    alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__;
template <class T>
inline void (*delete_channel() noexcept)(void*) {
  return reinterpret_cast<void (*)(void*)>(BULKRCU__DELETE_BIT | sizeof(T));
}
// What the library calls to free an allocator channel's object: the global deallocation
// function, with the size `new T` was given where the compiler has sized deallocation (clang
// before 19 does not by default; the unsized form is always valid).
inline void global_delete(void* p, std::size_t size) noexcept {
#if defined(__cpp_sized_deallocation)
  ::operator delete(p, size);
#else
  (void)size;
  ::operator delete(p);
#endif
}
}  // namespace detail

// The default (and only) RCU domain. Meets the Lockable requirements, so std::scoped_lock and
// std::unique_lock work with it.
class rcu_domain {
 public:
  rcu_domain(const rcu_domain&) = delete;
  rcu_domain& operator=(const rcu_domain&) = delete;

  // Enters a read-side critical section (nests). Blocks: no. Allocates: on a thread's first
  // use only, see bulkrcu_read_lock. Async-signal-safe: yes. Inside a reader: yes.
  void lock() noexcept { bulkrcu__read_lock_inline(); }
  // Same as lock(); always succeeds.
  bool try_lock() noexcept {
    lock();
    return true;
  }
  // Leaves a read-side critical section. Blocks: no. Allocates: no. Async-signal-safe: yes.
  void unlock() noexcept { bulkrcu__read_unlock_inline(); }

 private:
  constexpr rcu_domain() noexcept = default;
  friend rcu_domain& rcu_default_domain() noexcept;
};

// Blocks: no. Allocates: no. Async-signal-safe: yes. Inside a reader: yes.
inline rcu_domain& rcu_default_domain() noexcept {
  static BULKRCU__CONSTINIT rcu_domain domain;  // constant-initialized: no guard, no destructor
  return domain;
}

// Waits for a grace period. Blocks: yes. Allocates: no. Async-signal-safe: no.
// Inside a reader: forbidden (aborts with a message).
inline void rcu_synchronize(rcu_domain& = rcu_default_domain()) noexcept { bulkrcu_synchronize(); }

// Waits until every deleter scheduled before the call (retire, rcu_retire, bulkrcu_call and
// the bulkrcu_kvfree family) has run. Blocks: yes. Allocates: no. Async-signal-safe: no.
// Inside a reader: forbidden (aborts).
inline void rcu_barrier(rcu_domain& = rcu_default_domain()) noexcept { bulkrcu_kvfree_barrier(); }

// Base of a class T whose objects are retired through RCU. retire() stores the pointer in a
// per-CPU block of the deleter's channel (one channel per T and D), like bulkrcu_defer; the
// deleter object lives inside the object until it runs. When no block page is available
// without waiting, the object is linked through the callback head it carries instead. So
// retire() never allocates and never blocks. The deleter (the destructor) never runs inside
// retire(): on bulkrcu's runtime thread (or bulkrcu_kvfree_reclaim()), inside a read-side
// critical section, as for bulkrcu_defer. Except where no user code would run: for the
// default deleter of a trivially destructible T without a class-specific operator delete
// (detail::kAllocatorDelete), the object is freed with ::operator delete, as bulkrcu_kvfree's
// pointers are freed with free(): a few at a time, mostly by retiring threads.
template <class T, class D = std::default_delete<T>>
class rcu_obj_base {
 public:
  // Schedules d(static_cast<T*>(this)) after a grace period. Blocks: no. Allocates: no.
  // Async-signal-safe: no (it may free(), on this thread, bulkrcu_kvfree pointers whose grace
  // period has elapsed; use bulkrcu_defer_nowait in signal handlers). Inside a reader: yes.
  void retire(D d = D(), rcu_domain& = rcu_default_domain()) noexcept {
    deleter_ = std::move(d);
    T* self = static_cast<T*>(this);
    if constexpr (detail::kAllocatorDelete<T, D>) {  // no user code: the allocator channel
#ifdef BULKRCU__INLINE_RETIRE
      if (bulkrcu__kv_try(detail::delete_channel<T>(), self, BULKRCU__KV_NO_WAIT | BULKRCU__KV_HELP)) return;
#endif
      if (bulkrcu__retire_delete(self, sizeof(T), &detail::global_delete, 1)) return;
      node_.owner = this;
      bulkrcu_call(&node_.head, &rcu_obj_base::invoke);
      return;
    }
#ifdef BULKRCU__INLINE_RETIRE
    if (bulkrcu__kv_try(&rcu_obj_base::run_deleter, self, BULKRCU__KV_NO_WAIT | BULKRCU__KV_HELP)) return;
#endif
    // sizeof(T): the memory budget counts these objects in bytes.
    if ((bulkrcu__defer_nonblocking_sized)(&rcu_obj_base::run_deleter, self, sizeof(T))) return;
    node_.owner = this;
    bulkrcu_call(&node_.head, &rcu_obj_base::invoke);
  }

 protected:
  rcu_obj_base() = default;
  rcu_obj_base(const rcu_obj_base&) noexcept {}
  rcu_obj_base(rcu_obj_base&&) noexcept {}
  rcu_obj_base& operator=(const rcu_obj_base&) noexcept { return *this; }
  rcu_obj_base& operator=(rcu_obj_base&&) noexcept { return *this; }
  ~rcu_obj_base() = default;

 private:
  struct Node {
    bulkrcu_head head;  // first member: the callback gets &head and recovers the Node
    rcu_obj_base* owner;
  };
  static void destroy(rcu_obj_base* base) {
    if constexpr (detail::kDefaultDelete<T, D>)
      if (detail::destroy_if_cached(static_cast<T*>(base))) return;
    D d = std::move(base->deleter_);
    d(static_cast<T*>(base));
  }
  static void run_deleter(void* p) { destroy(static_cast<rcu_obj_base*>(static_cast<T*>(p))); }
  // The embedded-head fallback runs as a callback; like every deleter, inside a reader.
  static void invoke(bulkrcu_head* h) {
    bulkrcu__read_lock_inline();
    destroy(reinterpret_cast<Node*>(h)->owner);
    bulkrcu__read_unlock_inline();
  }
  Node node_{};
  BULKRCU__NO_UNIQUE_ADDRESS D deleter_{};
};

namespace detail {
template <class T, class D>
void run_stateless_deleter(void* p) {
  if constexpr (kDefaultDelete<T, D>)
    if (destroy_if_cached(static_cast<T*>(p))) return;
  D{}(static_cast<T*>(p));
}
template <class T, class D>
struct RetireNode {
  T* ptr;
  BULKRCU__NO_UNIQUE_ADDRESS D deleter;
  static void run(void* p) {
    RetireNode* n = static_cast<RetireNode*>(p);
    D del = std::move(n->deleter);
    T* obj = n->ptr;
    delete n;
    del(obj);
  }
};
}  // namespace detail

// Schedules d(p) after a grace period, for a T that does not derive from rcu_obj_base.
// std::default_delete of a trivially destructible T without a class-specific operator delete
// runs no user code: p goes into a block of the allocator channel for sizeof(T), freed with
// ::operator delete like bulkrcu_kvfree's pointers with free() (a few at a time, mostly by
// retiring threads). Another stateless deleter (an empty, default-constructible D) costs
// nothing beyond the pointer: p goes into a per-CPU block of the (T, D) channel, whose deleter
// runs on bulkrcu's threads. A stateful
// deleter is moved into a small node allocated with operator new (throws std::bad_alloc).
// Blocks: only as bulkrcu_defer does (memory exhausted, or above the memory budget).
// Allocates: block pages (as bulkrcu_defer); the node for a stateful D. Async-signal-safe: no.
// Inside a reader: yes.
template <class T, class D = std::default_delete<T>>
void rcu_retire(T* p, D d = D(), rcu_domain& = rcu_default_domain()) {
  if constexpr (detail::kAllocatorDelete<T, D>) {  // no user code: the allocator channel
#ifdef BULKRCU__INLINE_RETIRE
    if (bulkrcu__kv_try(detail::delete_channel<T>(), p, BULKRCU__KV_MAY_BLOCK | BULKRCU__KV_HELP)) return;
#endif
    (void)d;
    bulkrcu__retire_delete(p, sizeof(T), &detail::global_delete, 0);
  } else if constexpr (std::is_empty_v<D> && std::is_default_constructible_v<D>) {
    constexpr auto fn = &detail::run_stateless_deleter<T, D>;
#ifdef BULKRCU__INLINE_RETIRE
    if (bulkrcu__kv_try(fn, p, BULKRCU__KV_MAY_BLOCK | BULKRCU__KV_HELP)) return;
#endif
    bulkrcu__defer_sized(fn, p, sizeof(T));  // the budget counts sizeof(T) bytes an object
  } else {
    auto* n = new detail::RetireNode<T, D>{p, std::move(d)};
    bulkrcu__defer_sized(&detail::RetireNode<T, D>::run, n, sizeof(T) + sizeof(*n));
  }
}

// A typed RCU object cache (bulkrcu_cache_* of <bulkrcu/cache.h>, sized and aligned for T).
//   bulkrcu::rcu_cache<Node> nodes("nodes");
//   Node* n = nodes.make(key, value);   // constructed in a cache object
//   ... unpublish n ...; nodes.retire(n);  // destructor and reuse after a grace period
// Objects of T deriving from rcu_obj_base<T> (default deleter) may also be retired with
// n->retire(), and any T with rcu_retire(n): both give the memory back to this cache.
// Flags: BULKRCU_CACHE_TYPESAFE_BY_RCU (see cache.h; readers must revalidate).
// The cache must outlive its objects: the destructor aborts with a message when objects are
// still allocated (bulkrcu_cache_destroy).
template <class T>
class rcu_cache {
 public:
  // Blocks: yes (maps per-CPU arrays). Allocates: metadata (mmap). Not async-signal-safe.
  // Inside a reader: yes. get() is nullptr when creation failed (a message was printed).
  explicit rcu_cache(const char* name, unsigned flags = 0) noexcept
      : c_(bulkrcu_cache_create(name, sizeof(T), alignof(T) < 8 ? 8 : alignof(T), flags)) {}
  ~rcu_cache() {
    if (c_) {
      if constexpr (!std::is_trivially_destructible_v<T>) bulkrcu_kvfree_barrier();
      bulkrcu_cache_destroy(c_);
    }
  }
  rcu_cache(const rcu_cache&) = delete;
  rcu_cache& operator=(const rcu_cache&) = delete;

  bulkrcu_cache* get() const noexcept { return c_; }

  // A T constructed from args in a cache object; nullptr when memory is exhausted. If T's
  // constructor throws, the object goes back to the cache and the exception propagates.
  // Blocks, allocates: as bulkrcu_cache_alloc. Not async-signal-safe. Inside a reader: yes.
  template <class... A>
  T* make(A&&... args) noexcept(std::is_nothrow_constructible_v<T, A&&...>) {
    void* p = bulkrcu_cache_alloc(c_);
    if (!p) return nullptr;
#if defined(__cpp_exceptions)
    if constexpr (!std::is_nothrow_constructible_v<T, A&&...>) {
      try {
        return ::new (p) T(std::forward<A>(args)...);
      } catch (...) {
        bulkrcu_cache_free(c_, p);
        throw;
      }
    }
#endif
    return ::new (p) T(std::forward<A>(args)...);
  }

  // Destructor and reuse after a grace period. A trivially destructible T goes straight into
  // this CPU's retired array (no deleter at all); otherwise the destructor runs as a bulkrcu
  // deleter (bulkrcu_defer) after the grace period, and the memory then returns to the cache.
  // nullptr is a no-op. Blocks: trivially destructible T: no; else as bulkrcu_defer (last resort
  // only). Allocates: pool pages. Async-signal-safe: trivially destructible T only. Inside a
  // reader: yes.
  void retire(T* p) noexcept {
    if (!p) return;
    if constexpr (std::is_trivially_destructible_v<T>)
      bulkrcu_cache_free_rcu(c_, p);
    else
      bulkrcu_defer(&detail::cache_destroy_and_free<T>, p);
  }

  // Destructor and reuse at once: no reader may hold p. nullptr is a no-op.
  // Blocks, allocates: as bulkrcu_cache_free. Not async-signal-safe. Inside a reader: yes.
  void dispose(T* p) noexcept {
    if (!p) return;
    p->~T();
    bulkrcu_cache_free(c_, p);
  }

  // Waits until every object retired through this cache before the call is destroyed and
  // reusable (for a T with a destructor, that is kvfree's barrier as well).
  // Blocks: yes. Allocates: no. Not async-signal-safe. Inside a reader: forbidden (aborts).
  void barrier() noexcept {
    if constexpr (!std::is_trivially_destructible_v<T>) bulkrcu_kvfree_barrier();
    bulkrcu_cache_barrier(c_);
  }

 private:
  bulkrcu_cache* c_;
};

}  // namespace bulkrcu

#endif  // BULKRCU_RCU_HPP
