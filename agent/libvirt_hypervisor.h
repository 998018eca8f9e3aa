// The real Hypervisor: libvirt's C API (test:///FILE, qemu:///embed?root=DIR, qemu:///system).
// Methods: one thread at a time (the agent's loop); Connected() from any thread. Callbacks run
// on the process-wide libvirt event thread; never destroy the object from inside a callback.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "agent/hypervisor.h"

namespace regen {

// How libvirt's view maps onto Regen's (see ListDomains and the event callback):
//
// State (virDomainGetState)             DomainState   reason
//   running, blocked                    kRunning      booted, unpaused, migrated, ...
//   shutdown (guest is shutting down)   kRunning      user, unknown
//   paused, pmsuspended                 kPaused       user, ioerror, starting_up, ...
//   shutoff + crashed or failed         kCrashed      crashed | failed   (qemu died: kill -9)
//   shutoff, any other reason           kShutoff      shutdown, destroyed, saved, daemon, ...
//   crashed                             kCrashed      panicked, unknown
//   nostate                             kUnknown
//
// Events: DomainEvent::event is one of defined, undefined, started, suspended, resumed, stopped,
// shutdown, pmsuspended, crashed; `detail` is libvirt's detail in lower case (stopped: shutdown,
// destroyed, crashed, migrated, saved, failed, from_snapshot; started: booted, migrated, restored,
// from_snapshot, wakeup; ...). unexpected_stop is true for stopped/{crashed,failed,shutdown} and
// for every crashed event, false otherwise (destroyed is what Regen itself does).
//
// Errors carry the URI and libvirt's own message. Codes: NOT_FOUND (no such domain),
// ALREADY_EXISTS, INVALID_ARGUMENT (XML or configuration refused), FAILED_PRECONDITION (operation
// invalid in the domain's state), UNAVAILABLE (not connected, connection lost, RPC failure),
// DEADLINE_EXCEEDED, INTERNAL (anything else).
//
// Capacity: free_memory_mib is 0 when the driver cannot tell (the test driver with a node file:
// it has no NUMA cells).
class LibvirtHypervisor : public Hypervisor {
 public:
  // `uri`: a libvirt connection URI. `enable_events`: register for lifecycle events on Connect().
  LibvirtHypervisor(std::string uri, bool enable_events);
  // Deregisters the callbacks (waiting for one in flight to return), closes the connection and
  // releases the event thread (stopped when no LibvirtHypervisor is left).
  ~LibvirtHypervisor() override;
  LibvirtHypervisor(const LibvirtHypervisor&) = delete;
  LibvirtHypervisor& operator=(const LibvirtHypervisor&) = delete;

  // Opens the connection; when one is open already and alive, does nothing. A connection that
  // died (close callback, or virConnectIsAlive false) is released first, then a new one opened.
  // On success the ConnectionCallback gets `true` (on the event thread).
  Status Connect() override;
  bool Connected() const override;
  Result<std::vector<DomainInfo>> ListDomains() override;
  Status DefineAndStart(const std::string& name, const std::string& domain_xml) override;
  Status DestroyAndUndefine(const std::string& name) override;
  Result<HostCapacity> Capacity() override;
  Result<std::string> DriverName() override;
  Result<std::string> DomainCapabilities(const std::string& virttype) override;
  void SetEventCallback(EventCallback cb) override;
  void SetConnectionCallback(ConnectionCallback cb) override;

  // Fault injection for test rigs on the test driver: stops a running domain as if it crashed
  // (state shutoff/crashed, event stopped/crashed), through virDomainCoreDump(VIR_DUMP_CRASH) to
  // /dev/null. FAILED_PRECONDITION on other drivers (on qemu a crash is `kill -9` of its process).
  Status InjectCrash(const std::string& name);
  // The domain's XML as libvirt has it (virDomainGetXMLDesc), for diagnostics and tests.
  Result<std::string> DomainXml(const std::string& name);
  // Closes the connection now (the next Connect() opens a new one); no callback is invoked.
  void Disconnect();

  const std::string& uri() const;

  // The lifecycle event (virDomainEventType, detail) as Regen sees it; exposed for tests.
  static DomainEvent MapEvent(const std::string& name, int event, int detail);
  // The state (virDomainState, reason) as Regen sees it; exposed for tests.
  static DomainState MapState(int state, int reason);
  static std::string StateReasonName(int state, int reason);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace regen
