// HangingHypervisor: the FakeHypervisor with the two ways libvirt fails a fence. Hang(): every
// listing and destroy blocks (as a hung libvirtd does) until Release(); FailDestroys(): every
// destroy fails at once. `after_define` (set before use) runs after each successful define, on the
// caller's thread. Thread-safe; header-only.
#pragma once

#include <condition_variable>
#include <functional>

#include "tests/fakes/fake_hypervisor.h"

namespace regen::testing {

class HangingHypervisor : public FakeHypervisor {
 public:
  ~HangingHypervisor() override { Release(); }

  void Hang() {
    MutexLock lock(hang_mu_);
    hung_ = true;
  }
  // Lets every blocked and later call through.
  void Release() {
    MutexLock lock(hang_mu_);
    hung_ = false;
    cv_.notify_all();
  }
  void FailDestroys(bool fail) {
    MutexLock lock(hang_mu_);
    fail_destroys_ = fail;
  }
  // Calls blocked right now; destroy calls so far (failed or not).
  int blocked() {
    MutexLock lock(hang_mu_);
    return blocked_;
  }
  int destroy_calls() {
    MutexLock lock(hang_mu_);
    return destroy_calls_;
  }

  std::function<void()> after_define;

  Status DefineAndStart(const std::string& name, const std::string& domain_xml) override {
    Status s = FakeHypervisor::DefineAndStart(name, domain_xml);
    if (s.ok() && after_define) after_define();
    return s;
  }
  Result<std::vector<DomainInfo>> ListDomains() override {
    WaitWhileHung();
    return FakeHypervisor::ListDomains();
  }
  Status DestroyAndUndefine(const std::string& name) override {
    WaitWhileHung();
    {
      MutexLock lock(hang_mu_);
      ++destroy_calls_;
      if (fail_destroys_) return Internal("destroy " + name + ": injected failure");
    }
    return FakeHypervisor::DestroyAndUndefine(name);
  }

 private:
  void WaitWhileHung() {
    MutexLock lock(hang_mu_);
    if (!hung_) return;
    ++blocked_;
    while (hung_) cv_.wait(lock.native());
    --blocked_;
  }

  Mutex hang_mu_;
  std::condition_variable cv_;
  bool hung_ GUARDED_BY(hang_mu_) = false;
  bool fail_destroys_ GUARDED_BY(hang_mu_) = false;
  int blocked_ GUARDED_BY(hang_mu_) = 0;
  int destroy_calls_ GUARDED_BY(hang_mu_) = 0;
};

}  // namespace regen::testing
