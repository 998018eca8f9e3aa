// An in-memory Hypervisor for unit tests of the agent's logic. Thread-safe (one mutex); events
// are delivered synchronously on the calling thread of Crash()/Stop().
#pragma once

#include <map>
#include <string>
#include <vector>

#include "agent/hypervisor.h"
#include "common/thread_annotations.h"

namespace regen::testing {

class FakeHypervisor : public Hypervisor {
 public:
  Status Connect() override;
  bool Connected() const override;
  Result<std::vector<DomainInfo>> ListDomains() override;
  Status DefineAndStart(const std::string& name, const std::string& domain_xml) override;
  Status DestroyAndUndefine(const std::string& name) override;
  Result<HostCapacity> Capacity() override;
  // driver_name and domain_capabilities (the same answer for every virttype), as set below.
  Result<std::string> DriverName() override { return driver_name; }
  Result<std::string> DomainCapabilities(const std::string&) override {
    return domain_capabilities;
  }
  void SetEventCallback(EventCallback cb) override;
  void SetConnectionCallback(ConnectionCallback cb) override;

  // Test controls.
  // Marks the domain crashed (state kCrashed, reason "crashed") and emits a "stopped/failed"
  // event with unexpected_stop=true (unless events are off).
  // False when no such domain exists (a test that crashes nothing must say so).
  [[nodiscard]] bool Crash(const std::string& name, bool emit_event = true);
  // Adds a domain Regen did not create.
  void AddForeignDomain(const std::string& name);
  // Makes every call fail with UNAVAILABLE until set back (a libvirtd restart).
  void SetDown(bool down);
  void FailNextDefine(Status status);
  std::string XmlOf(const std::string& name) const;
  int defines() const;
  int destroys() const;
  HostCapacity capacity;
  std::string driver_name = "TEST";
  Result<std::string> domain_capabilities = Status(Code::kFailedPrecondition, "not supported");

 private:
  struct Domain {
    DomainInfo info;
    std::string xml;
  };
  mutable Mutex mu_;
  std::map<std::string, Domain> domains_ GUARDED_BY(mu_);
  EventCallback event_cb_ GUARDED_BY(mu_);
  ConnectionCallback conn_cb_ GUARDED_BY(mu_);
  bool down_ GUARDED_BY(mu_) = false;
  bool connected_ GUARDED_BY(mu_) = false;
  Status next_define_error_ GUARDED_BY(mu_);
  int defines_ GUARDED_BY(mu_) = 0;
  int64_t next_id_ GUARDED_BY(mu_) = 0;
  int destroys_ GUARDED_BY(mu_) = 0;
};

}  // namespace regen::testing
