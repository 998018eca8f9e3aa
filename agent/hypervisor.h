// The agent's seam over the hypervisor (libvirt). LibvirtHypervisor is the real implementation
// (agent/libvirt_hypervisor.cc, the only file that includes libvirt); FakeHypervisor lives in
// tests/fakes. Methods may be called from any one thread at a time (the agent's main loop); the
// event callback is invoked on the hypervisor's event thread and must only post work.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/model.h"
#include "common/status.h"

namespace regen {

enum class DomainState { kUnknown, kRunning, kPaused, kShutoff, kCrashed, kStarting };
const char* DomainStateName(DomainState state);

// What Regen wrote into a domain's <metadata>. `managed` is false for domains Regen did not create:
// the agent never touches those.
struct DomainMetadata {
  bool managed = false;
  std::string service;
  std::string instance;
  int64_t update_domain = 0;
  std::string version;
  int64_t generation = 0;
};

struct DomainInfo {
  std::string name;
  DomainState state = DomainState::kUnknown;
  std::string reason;  // libvirt's state reason, e.g. "crashed", "destroyed", "booted"
  // libvirt's domain id while active (a new one at every start), -1 when inactive.
  int64_t id = -1;
  DomainMetadata metadata;
};

// A lifecycle event: the domain changed state (started, stopped, crashed, ...).
struct DomainEvent {
  std::string name;
  std::string event;   // "started", "stopped", "crashed", "undefined", ...
  std::string detail;  // "failed", "destroyed", "shutdown", "booted", ...
  // True when the event means the domain died without Regen asking (crash, failure, guest
  // shutdown); false for stops Regen itself caused ("destroyed") and for starts.
  bool unexpected_stop = false;
};

struct HostCapacity {
  int64_t cpus = 0;
  int64_t memory_mib = 0;
  int64_t free_memory_mib = 0;
};

class Hypervisor {
 public:
  using EventCallback = std::function<void(const DomainEvent&)>;
  // Called (on the event thread) when the connection to the hypervisor is lost or re-established.
  using ConnectionCallback = std::function<void(bool connected)>;
  virtual ~Hypervisor() = default;

  // Opens the connection (and, for the real one, starts the event thread). Safe to call again
  // after the connection was lost: it reconnects.
  virtual Status Connect() = 0;
  virtual bool Connected() const = 0;
  // Every domain on the host, managed or not, with state, reason and Regen's metadata.
  virtual Result<std::vector<DomainInfo>> ListDomains() = 0;
  // Defines the domain from `domain_xml` and starts it. Fails with ALREADY_EXISTS if a domain of
  // that name exists.
  virtual Status DefineAndStart(const std::string& name, const std::string& domain_xml) = 0;
  // Stops (if running) and undefines the domain. NOT_FOUND if there is none.
  virtual Status DestroyAndUndefine(const std::string& name) = 0;
  virtual Result<HostCapacity> Capacity() = 0;
  // For domain_type auto (agent/domain_type.h): the driver's name as libvirt gives it ("QEMU",
  // "TEST"), and libvirt's domain capabilities XML for `virttype` (kvm | qemu), or libvirt's
  // error when it cannot run that type here.
  virtual Result<std::string> DriverName() = 0;
  virtual Result<std::string> DomainCapabilities(const std::string& virttype) = 0;
  // The callbacks are set before Connect().
  virtual void SetEventCallback(EventCallback cb) = 0;
  virtual void SetConnectionCallback(ConnectionCallback cb) = 0;
};

}  // namespace regen
