// regen-agent's daemon: wires agent.yaml to the agent's parts (hypervisor, controller link,
// event delivery, DNS watch, OVS flows, metrics, control socket, systemd notifications). The real
// world comes in through DaemonDeps (ProductionDaemonDeps() builds the real ones; tests pass
// fakes). Start/Stop from one thread (the process's main thread, or a test's).
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "agent/agent.h"
#include "agent/agent_metrics.h"
#include "agent/control_socket.h"
#include "agent/controller_link.h"
#include "agent/dns_watch.h"
#include "agent/etcd_lease.h"
#include "agent/event_delivery.h"
#include "agent/fence_backstop.h"
#include "agent/fence_timing.h"
#include "agent/hypervisor.h"
#include "agent/network_agent.h"
#include "agent/reaper.h"
#include "common/clock.h"
#include "common/notify.h"
#include "common/status.h"
#include "common/subprocess.h"
#include "common/thread_annotations.h"
#include "config/agent_config.h"
#include "dns/dns_poller.h"
#include "ovs/vswitch.h"

namespace regen {

// The daemon's hypervisor and its fault injection (inject-crash on the control socket).
struct DaemonHypervisor {
  std::unique_ptr<Hypervisor> hypervisor;
  std::function<Status(const std::string& domain)> inject_crash;
};

// The real-world seams of the daemon. Every member must be set.
struct DaemonDeps {
  std::unique_ptr<Clock> clock;
  std::unique_ptr<CommandRunner> runner;
  std::unique_ptr<Notifier> notifier;  // systemd (Type=notify)
  std::function<DaemonHypervisor(const AgentConfig&)> make_hypervisor;
  // Called only with network.enabled; the runner is the one above.
  std::function<std::unique_ptr<ovs::VSwitch>(const AgentConfig&, CommandRunner&)> make_vswitch;
  // Called only with a dns.server.
  std::function<Result<std::unique_ptr<dns::Resolver>>(const AgentConfig&)> make_resolver;
  // Reap the hypervisor's processes (ChildReaper: this process becomes a subreaper).
  bool reap_children = true;
};

// libvirt, OVS (ovs-vsctl/ovs-ofctl), c-ares, sd_notify, the real clock and subprocesses.
DaemonDeps ProductionDaemonDeps();

class AgentDaemon {
 public:
  AgentDaemon(AgentConfig config, DaemonDeps deps);
  ~AgentDaemon();  // Stop()
  AgentDaemon(const AgentDaemon&) = delete;
  AgentDaemon& operator=(const AgentDaemon&) = delete;

  // Builds and starts every part. Errors: kInvalidArgument for a bad setting of agent.yaml, other
  // codes for what could not be started (metrics address, control socket, resolver). After an
  // error Stop() (or the destructor) stops what had started.
  Status Start();
  // Stops every part (the domains keep running). Idempotent.
  void Stop();

 private:
  Status StartDnsWatch();
  void StartLink();
  void StartNetwork();
  Status StartMetrics();
  Status StartControlSocket();
  void StartWatchdog();
  void MakeBackstop();
  void StartMetricsRefresher();
  void StopMetricsRefresher();

  const AgentConfig config_;
  DaemonDeps deps_;
  DaemonHypervisor hypervisor_;
  std::unique_ptr<Agent> agent_;
  std::unique_ptr<ChildReaper> reaper_;
  // host_down_after against fencing_lease + the watchdog's timeout (fed by the link).
  FenceTimingCheck fence_timing_;
  std::unique_ptr<ControllerLink> link_;
  // etcd mode (agent.yaml `etcd:`): this host's own lease key in etcd; renews the fencing lease.
  std::unique_ptr<EtcdLease> etcd_lease_;
  // Events for instances (from the controller, and the DNS watch): JSONL files and channels.
  std::unique_ptr<EventDelivery> delivery_;
  std::unique_ptr<dns::Resolver> resolver_;
  std::unique_ptr<DnsWatch> dns_watch_;
  // OVS flow programming (network: in agent.yaml), fed with topology revisions by the link.
  std::unique_ptr<ovs::VSwitch> vswitch_;
  std::unique_ptr<NetworkAgent> network_;
  // Prometheus metrics (metrics_address: in agent.yaml), refreshed from the status once a second.
  std::unique_ptr<AgentMetrics> metrics_;
  std::unique_ptr<ControlSocketServer> control_;
  std::unique_ptr<LoopWatchdog> watchdog_;
  // SIGKILLs managed domains' qemus (QEMU drivers; empty on the test driver): the main loop's
  // fence and the backstop's.
  Agent::FenceKillFn fence_kill_;
  // Watches the lease off the main loop: kills with fence_kill_, trips watchdog_ and stops
  // petting watchdog_device when a fence cannot be confirmed.
  std::unique_ptr<FenceBackstop> backstop_;

  Mutex metrics_mu_;
  std::condition_variable metrics_cv_;
  bool metrics_stop_ GUARDED_BY(metrics_mu_) = false;
  std::thread metrics_refresher_;
};

// `regen-agent run`: loads agent.yaml, blocks SIGTERM/SIGINT, runs the daemon with the production
// deps until one arrives. Returns the process's exit code. Called from main()'s thread only.
int RunDaemon(const std::string& config_path);

}  // namespace regen
