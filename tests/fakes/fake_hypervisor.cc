#include "tests/fakes/fake_hypervisor.h"

#include "agent/domain_xml.h"

namespace regen::testing {

Status FakeHypervisor::Connect() {
  MutexLock lock(mu_);
  if (down_) return Unavailable("fake hypervisor is down");
  connected_ = true;
  return Status::Ok();
}

bool FakeHypervisor::Connected() const {
  MutexLock lock(mu_);
  return connected_ && !down_;
}

Result<std::vector<DomainInfo>> FakeHypervisor::ListDomains() {
  MutexLock lock(mu_);
  if (down_) return Unavailable("fake hypervisor is down");
  std::vector<DomainInfo> out;
  for (const auto& [name, d] : domains_) out.push_back(d.info);
  return out;
}

Status FakeHypervisor::DefineAndStart(const std::string& name, const std::string& domain_xml) {
  EventCallback cb;
  {
    MutexLock lock(mu_);
    if (down_) return Unavailable("fake hypervisor is down");
    if (!next_define_error_.ok()) {
      Status s = next_define_error_;
      next_define_error_ = Status::Ok();
      return s;
    }
    if (domains_.count(name)) return AlreadyExists("domain " + name + " already exists");
    Domain d;
    d.info.name = name;
    d.info.state = DomainState::kRunning;
    d.info.reason = "booted";
    d.info.id = ++next_id_;
    // The parser finds the first element named <instance> (any prefix) wherever it is.
    d.info.metadata = ParseDomainMetadata(domain_xml);
    d.xml = domain_xml;
    domains_[name] = d;
    ++defines_;
    cb = event_cb_;
  }
  if (cb) cb(DomainEvent{name, "started", "booted", false});
  return Status::Ok();
}

Status FakeHypervisor::DestroyAndUndefine(const std::string& name) {
  EventCallback cb;
  bool was_running = false;
  {
    MutexLock lock(mu_);
    if (down_) return Unavailable("fake hypervisor is down");
    auto it = domains_.find(name);
    if (it == domains_.end()) return NotFound("no domain " + name);
    was_running = it->second.info.state == DomainState::kRunning;
    domains_.erase(it);
    ++destroys_;
    cb = event_cb_;
  }
  if (cb && was_running) cb(DomainEvent{name, "stopped", "destroyed", false});
  if (cb) cb(DomainEvent{name, "undefined", "removed", false});
  return Status::Ok();
}

Result<HostCapacity> FakeHypervisor::Capacity() {
  MutexLock lock(mu_);
  if (down_) return Unavailable("fake hypervisor is down");
  return capacity;
}

void FakeHypervisor::SetEventCallback(EventCallback cb) {
  MutexLock lock(mu_);
  event_cb_ = std::move(cb);
}

void FakeHypervisor::SetConnectionCallback(ConnectionCallback cb) {
  MutexLock lock(mu_);
  conn_cb_ = std::move(cb);
}

bool FakeHypervisor::Crash(const std::string& name, bool emit_event) {
  EventCallback cb;
  {
    MutexLock lock(mu_);
    auto it = domains_.find(name);
    if (it == domains_.end()) return false;
    it->second.info.state = DomainState::kCrashed;
    it->second.info.reason = "crashed";
    it->second.info.id = -1;
    if (emit_event) cb = event_cb_;
  }
  if (cb) cb(DomainEvent{name, "stopped", "failed", true});
  return true;
}

void FakeHypervisor::AddForeignDomain(const std::string& name) {
  MutexLock lock(mu_);
  Domain d;
  d.info.name = name;
  d.info.state = DomainState::kRunning;
  d.info.reason = "booted";
  domains_[name] = d;
}

void FakeHypervisor::SetDown(bool down) {
  ConnectionCallback cb;
  {
    MutexLock lock(mu_);
    down_ = down;
    if (down) connected_ = false;
    cb = conn_cb_;
  }
  if (cb && down) cb(false);
}

void FakeHypervisor::FailNextDefine(Status status) {
  MutexLock lock(mu_);
  next_define_error_ = std::move(status);
}

std::string FakeHypervisor::XmlOf(const std::string& name) const {
  MutexLock lock(mu_);
  auto it = domains_.find(name);
  return it == domains_.end() ? "" : it->second.xml;
}

int FakeHypervisor::defines() const {
  MutexLock lock(mu_);
  return defines_;
}

int FakeHypervisor::destroys() const {
  MutexLock lock(mu_);
  return destroys_;
}

}  // namespace regen::testing
