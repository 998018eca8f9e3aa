// Compiled by thread_safety_check_test (never linked): reads a GUARDED_BY member with its mutex
// held, so the check's compiler and flags must accept it. Any thread.
#include "common/thread_annotations.h"

namespace {

class Counter {
 public:
  int Get() {
    regen::MutexLock lock(mu_);
    return value_;
  }

 private:
  regen::Mutex mu_;
  int value_ GUARDED_BY(mu_) = 0;
};

}  // namespace

int ReadCounter() {
  Counter c;
  return c.Get();
}
