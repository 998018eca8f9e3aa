// Compiled by thread_safety_check_test (never linked): reads a GUARDED_BY member WITHOUT its
// mutex. The thread-safety analysis must reject it; if this compiles, the check is off. Any thread.
#include "common/thread_annotations.h"

namespace {

class Counter {
 public:
  int Get() { return value_; }  // the error: mu_ is not held

 private:
  regen::Mutex mu_;
  int value_ GUARDED_BY(mu_) = 0;
};

}  // namespace

int ReadCounter() {
  Counter c;
  return c.Get();
}
