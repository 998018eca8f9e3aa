// Clang thread-safety annotations (-Wthread-safety) and an annotated mutex. Every member that a
// mutex protects is declared GUARDED_BY(mu_); functions that expect the lock held are REQUIRES(mu_).
// With gcc the macros expand to nothing; the clang build (scripts/build.sh --asan) checks them.
// Any thread.
//
// Use regen::Mutex and regen::MutexLock instead of std::mutex and std::lock_guard: libstdc++'s
// mutex carries no annotations, so clang could not see what a std::lock_guard holds. A condition
// variable waits on MutexLock::native() in a loop whose condition is read in the function itself
// (a predicate lambda is not known to hold the lock):
//   MutexLock lock(mu_);
//   while (!ready_) cv_.wait(lock.native());
#pragma once

#include <mutex>

#if defined(__clang__)
#define REGEN_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define REGEN_THREAD_ANNOTATION(x)
#endif

// gRPC's headers bring abseil's internal/thread_annotations.h, which defines the same names (the
// same attributes under clang): ours replace them, so the order of includes does not matter.
#undef CAPABILITY
#undef SCOPED_CAPABILITY
#undef GUARDED_BY
#undef PT_GUARDED_BY
#undef ACQUIRED_BEFORE
#undef ACQUIRED_AFTER
#undef REQUIRES
#undef ACQUIRE
#undef RELEASE
#undef TRY_ACQUIRE
#undef EXCLUDES
#undef ASSERT_CAPABILITY
#undef RETURN_CAPABILITY
#undef NO_THREAD_SAFETY_ANALYSIS
#define CAPABILITY(x) REGEN_THREAD_ANNOTATION(capability(x))
#define SCOPED_CAPABILITY REGEN_THREAD_ANNOTATION(scoped_lockable)
#define GUARDED_BY(x) REGEN_THREAD_ANNOTATION(guarded_by(x))
#define PT_GUARDED_BY(x) REGEN_THREAD_ANNOTATION(pt_guarded_by(x))
#define ACQUIRED_BEFORE(...) REGEN_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) REGEN_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
#define REQUIRES(...) REGEN_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define ACQUIRE(...) REGEN_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define RELEASE(...) REGEN_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) REGEN_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define EXCLUDES(...) REGEN_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) REGEN_THREAD_ANNOTATION(assert_capability(x))
#define RETURN_CAPABILITY(x) REGEN_THREAD_ANNOTATION(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS REGEN_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace regen {

// A std::mutex that clang's analysis can follow.
class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }
  bool TryLock() TRY_ACQUIRE(true) { return mu_.try_lock(); }
  // For the analysis only: states that the caller holds this mutex (e.g. in a callback the
  // owner runs under its lock).
  void AssertHeld() const ASSERT_CAPABILITY(this) {}

  std::mutex& native() { return mu_; }

 private:
  std::mutex mu_;
};

// Holds a Mutex for its scope. native() is the std::unique_lock a condition variable waits on.
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ACQUIRE(mu) : lock_(mu.native()) {}
  ~MutexLock() RELEASE() {}
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  std::unique_lock<std::mutex>& native() { return lock_; }

 private:
  std::unique_lock<std::mutex> lock_;
};

}  // namespace regen
