// The agent's network worker (issue 4): keeps this host's br-int flows equal to the flow set the
// latest topology revision gives (ovs/flows.h BuildFlowSet, applied with SyncFlows in one bundle).
// Revisions are applied in order: an older or equal one is dropped, a newer one replaces what is
// waiting. Each instance's OpenFlow port is found on the bridge by external_ids:iface-id (the
// topology's port) or external_ids:attached-mac (what libvirt sets). A periodic resync re-installs
// whatever is missing: after an OVS restart (bridge gone, flows gone, or flows carrying a cookie
// newer than the applied revision: another writer) everything is re-installed in one replace.
//
// Threads: Submit/Poke/applied_revision from any thread; the worker thread (Start/Stop from one
// thread) is the only user of the VSwitch. Tests that do not Start call SyncNow themselves.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/proto/regen.pb.h"
#include "common/status.h"
#include "common/thread_annotations.h"
#include "ovs/flows.h"
#include "ovs/vswitch.h"

namespace regen {

struct NetworkAgentOptions {
  std::string host;  // this host's name in the topology
  std::string bridge = "br-int";
  std::string tunnel_ip;  // this host's VXLAN endpoint (the tunnel port's local_ip; "" = any)
  std::string tunnel_port = "regen-vxlan";
  // The tunnel's OpenFlow port number (asked for, so flows stay valid across OVS restarts).
  int64_t tunnel_ofport = 4000;
  std::chrono::milliseconds resync_interval{5000};
  // First retry after a failed sync; doubles up to resync_interval.
  std::chrono::milliseconds retry_initial{200};
};

// The wire topology as ovs::Topology (ofports unknown: 0). Pure.
ovs::Topology TopologyFromProto(const v1::TopologyRevision& topology);

// What one SyncNow did.
struct NetworkSyncReport {
  int64_t revision = 0;            // the revision now applied (0: none known yet)
  bool new_revision = false;       // a revision newer than the last applied one went in
  bool reinstalled = false;        // the bridge or its flows were lost or foreign: full replace
  ovs::SyncResult flows;           // what SyncFlows changed
  std::vector<std::string> local;  // local instances whose port was found
  std::vector<std::string> local_missing;  // local instances without a port yet (no flows)
};

class NetworkAgent {
 public:
  // Called on the worker thread after a revision was applied for the first time (the agent acks
  // it to the controller).
  using AppliedCallback = std::function<void(int64_t revision)>;

  // `vswitch` and `clock` must outlive this object.
  NetworkAgent(NetworkAgentOptions options, ovs::VSwitch& vswitch, Clock& clock);
  ~NetworkAgent();
  NetworkAgent(const NetworkAgent&) = delete;
  NetworkAgent& operator=(const NetworkAgent&) = delete;

  void SetAppliedCallback(AppliedCallback callback);
  // Starts the worker: it syncs at once when a revision is waiting, after each Submit/Poke, and
  // every resync_interval; a failed sync is retried with backoff.
  void Start();
  void Stop();

  // Keeps `topology` when it is newer than every revision seen so far and wakes the worker; an
  // older or equal revision is dropped (false), except a whole slice at the newest revision, which
  // replaces its content (a new session's first message). A delta (base_revision set) is applied
  // on top of the newest revision kept when that is its base; else it is dropped (false) and
  // snapshot_needed() is true until a whole slice (base_revision 0) is kept.
  bool Submit(const v1::TopologyRevision& topology);
  bool snapshot_needed() const;
  // Something changed on the host (a domain came or went): sync soon.
  void Poke();

  int64_t applied_revision() const;
  // The newest revision submitted (applied or not).
  int64_t latest_revision() const;

  // One dump-plan-apply-verify pass for the newest revision (nothing when none was submitted).
  // The worker's body; callable directly when the worker is not started.
  Result<NetworkSyncReport> SyncNow();

 private:
  void Run();
  // The bridge and the tunnel port, created again when missing or changed. Fills `ports` with the
  // bridge's ports (empty when the bridge was lost and created again: then `bridge_lost`) and
  // returns the tunnel's ofport.
  Result<int64_t> EnsureBridgeAndTunnel(std::vector<ovs::PortInfo>* ports, bool* bridge_lost);
  // `wire` as this host's switch sees it: local instances get their ofport (found in `ports`);
  // those without a port yet, and instances without a network, are left out. Records the local
  // instances found and missing in `report`.
  ovs::Topology LocalTopology(const v1::TopologyRevision& wire,
                              const std::vector<ovs::PortInfo>& ports,
                              NetworkSyncReport* report) const;
  void LogApplied(const NetworkSyncReport& report, int64_t ms) const;

  const NetworkAgentOptions options_;
  ovs::VSwitch& vswitch_;
  Clock& clock_;

  mutable Mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<const v1::TopologyRevision> latest_ GUARDED_BY(mu_);
  int64_t applied_revision_ GUARDED_BY(mu_) = 0;
  bool snapshot_needed_ GUARDED_BY(mu_) = false;
  bool poked_ GUARDED_BY(mu_) = false;
  bool stop_ GUARDED_BY(mu_) = false;
  AppliedCallback on_applied_ GUARDED_BY(mu_);
  std::thread worker_;
};

}  // namespace regen
