#include "agent/daemon.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <vector>

#include "agent/control_commands.h"
#include "agent/libvirt_hypervisor.h"
#include "agent/qemu_killer.h"
#include "common/log.h"
#include "dns/cares_resolver.h"
#include "dns/dns_config.h"
#include "ovs/ovs_vswitch.h"

namespace regen {

DaemonDeps ProductionDaemonDeps() {
  DaemonDeps deps;
  deps.clock = std::make_unique<RealClock>();
  deps.runner = std::make_unique<RealCommandRunner>();
  deps.notifier = std::make_unique<SystemdNotifier>();
  deps.make_hypervisor = [](const AgentConfig& config) {
    auto libvirt = std::make_unique<LibvirtHypervisor>(config.libvirt_uri, config.libvirt_events);
    DaemonHypervisor h;
    h.inject_crash = [l = libvirt.get()](const std::string& name) { return l->InjectCrash(name); };
    h.hypervisor = std::move(libvirt);
    return h;
  };
  deps.make_vswitch = [](const AgentConfig& config,
                         CommandRunner& runner) -> std::unique_ptr<ovs::VSwitch> {
    ovs::OvsVSwitchOptions ovs_options;
    ovs_options.db_socket = config.network.db_socket;
    ovs_options.run_dir = config.network.run_dir;
    return std::make_unique<ovs::OvsVSwitch>(runner, ovs_options);
  };
  deps.make_resolver = [](const AgentConfig& config) -> Result<std::unique_ptr<dns::Resolver>> {
    dns::CaresResolverOptions options;
    RETURN_IF_ERROR(dns::SplitHostPort(config.dns_server, &options.server, &options.port));
    auto r = dns::NewCaresResolver(options);
    if (!r.ok()) {
      return Unavailable("dns.server " + config.dns_server + ": " + r.status().message());
    }
    return std::move(r).value();
  };
  return deps;
}

AgentDaemon::AgentDaemon(AgentConfig config, DaemonDeps deps)
    : config_(std::move(config)), deps_(std::move(deps)) {}

AgentDaemon::~AgentDaemon() { Stop(); }

Status AgentDaemon::Start() {
  hypervisor_ = deps_.make_hypervisor(config_);
  agent_ = std::make_unique<Agent>(config_, *hypervisor_.hypervisor, *deps_.clock, *deps_.runner);
  if (deps_.reap_children) {
    reaper_ = std::make_unique<ChildReaper>();
    if (config_.libvirt_events) {
      // The subreaper's exit notice is the fastest lifecycle event there is (qemu:///embed).
      reaper_->SetExitCallback([agent = agent_.get()](const QemuIdentity& who, int wait_status) {
        agent->NoteProcessExit(who.name, who.domain_id, DescribeWaitStatus(wait_status));
      });
    }
    if (Status s = reaper_->Start(); !s.ok()) {
      spdlog::warn("{}; a dead qemu will be noticed late", s.message());
    }
  }
  if (auto pid_dir = QemuPidDir(config_.libvirt_uri)) {
    // Fencing SIGKILLs the domains' qemus first (agent/qemu_killer.h); libvirt then cleans up.
    QemuKiller::KnownPids known;
    if (reaper_)
      known = [reaper = reaper_.get()](const std::string& n) { return reaper->PidsOf(n); };
    auto killer = std::make_shared<QemuKiller>(*pid_dir, std::move(known));
    fence_kill_ = [killer](const std::vector<std::string>& names) {
      return static_cast<int>(killer->Kill(names).size());
    };
    agent_->SetFenceKill(fence_kill_);  // the backstop gets it too (MakeBackstop)
  }
  delivery_ = std::make_unique<EventDelivery>(config_.state_dir);
  if (Status s = delivery_->EnsureDirectories(); !s.ok()) spdlog::warn("{}", s.message());
  delivery_->Start();  // lines waiting for a channel (a domain still starting) follow within 200 ms
  RETURN_IF_ERROR(StartDnsWatch());
  StartLink();
  StartNetwork();
  RETURN_IF_ERROR(StartMetrics());
  RETURN_IF_ERROR(StartControlSocket());
  spdlog::info(
      "regen-agent started host={} libvirt={} mode={} poll_interval={}ms events={} "
      "control_socket={}",
      config_.host_name, config_.libvirt_uri,
      config_.controller_address.empty() ? "standalone" : "controller",
      config_.poll_interval.count(), config_.libvirt_events, config_.control_socket);
  if (network_) network_->Start();
  // etcd mode: the host's key first; the link says no Hello before it is put.
  if (etcd_lease_) etcd_lease_->Start();
  if (link_) link_->Start();  // registers the agent's reporters: before agent.Start()
  agent_->Start();
  if (dns_watch_) {
    dns_watch_->Start();
    spdlog::info("DNS watch: names of hosted services in zone {} at {} every {} ms",
                 config_.dns_zone, config_.dns_server, config_.dns_poll_interval.count());
  }
  MakeBackstop();  // before the watchdog, whose status line reads it
  StartWatchdog();
  // Last: a daemon that fails to start never leaves a watchdog device armed.
  RETURN_IF_ERROR(backstop_->Start());
  if (!config_.watchdog_device.empty())
    fence_timing_.SetWatchdogTimeout(backstop_->device_timeout());
  StartMetricsRefresher();
  return Status::Ok();
}

void AgentDaemon::MakeBackstop() {
  FenceBackstopOptions options;
  options.grace = BackstopGrace(config_.fencing_backstop_after, config_.fencing_lease);
  // Several looks per grace, at most 10 a second.
  options.interval =
      std::clamp(std::chrono::duration_cast<std::chrono::milliseconds>(options.grace / 4),
                 std::chrono::milliseconds(10), std::chrono::milliseconds(100));
  options.device = config_.watchdog_device;
  options.device_timeout = config_.watchdog_timeout;
  // Trips only from its thread, started after watchdog_ exists.
  backstop_ = std::make_unique<FenceBackstop>(
      agent_->lease(), *deps_.clock, options,
      [this](const std::string& why) { watchdog_->Trip(why); }, fence_kill_);
}

Status AgentDaemon::StartDnsWatch() {
  if (config_.dns_server.empty()) return Status::Ok();
  auto r = deps_.make_resolver(config_);
  if (!r.ok()) return r.status();
  resolver_ = std::move(r).value();
  dns_watch_ = std::make_unique<DnsWatch>(
      *resolver_, *deps_.clock, config_.dns_zone, config_.dns_poll_interval,
      [delivery = delivery_.get()](const std::vector<std::string>& instances,
                                   const std::string& json) {
        (void)delivery->Deliver(instances, json);
      });
  return Status::Ok();
}

void AgentDaemon::StartLink() {
  if (config_.controller_address.empty()) return;
  link_ = std::make_unique<ControllerLink>(config_, *agent_, *hypervisor_.hypervisor, *deps_.clock);
  if (!config_.watchdog_device.empty() && config_.watchdog_timeout.count() > 0) {
    fence_timing_.SetWatchdogTimeout(config_.watchdog_timeout);  // the device's own after Start
  }
  link_->SetFenceTimingCheck(&fence_timing_);
  if (config_.etcd) {
    etcd_lease_ = std::make_unique<EtcdLease>(config_, *agent_, *deps_.clock);
    link_->SetEtcdLease(etcd_lease_.get());
  }
  link_->SetObservers(
      [delivery = delivery_.get()](const v1::InstanceNotification& n) {
        std::vector<std::string> instances(n.instances().begin(), n.instances().end());
        (void)delivery->Deliver(instances, n.json());
      },
      [watch = dns_watch_.get()](const std::vector<InstanceSpec>& desired) {
        if (watch == nullptr) return;
        std::map<std::string, std::vector<std::string>> by_service;
        std::map<std::string, std::string> dns_names;
        for (const auto& spec : desired) {
          by_service[spec.service].push_back(spec.name);
          if (!spec.dns_name.empty()) dns_names[spec.service] = spec.dns_name;
        }
        watch->SetLocalInstances(std::move(by_service), std::move(dns_names));
      });
}

void AgentDaemon::StartNetwork() {
  if (!config_.network.enabled) return;
  vswitch_ = deps_.make_vswitch(config_, *deps_.runner);
  NetworkAgentOptions net_options;
  net_options.host = config_.host_name;
  net_options.bridge = config_.network.bridge;
  net_options.tunnel_ip = config_.network.tunnel_ip;
  net_options.resync_interval = config_.network.resync_interval;
  network_ = std::make_unique<NetworkAgent>(net_options, *vswitch_, *deps_.clock);
  if (link_) {
    link_->SetNetworkAgent(network_.get());
    network_->SetAppliedCallback([l = link_.get()](int64_t rev) { l->SendTopologyApplied(rev); });
  }
}

Status AgentDaemon::StartMetrics() {
  if (config_.metrics_address.empty()) return Status::Ok();
  auto m = AgentMetrics::Start(config_.metrics_address);
  if (!m.ok()) return Unavailable(m.status().message());
  metrics_ = std::move(*m);
  spdlog::info("metrics at http://{}/metrics (port {})", config_.metrics_address, metrics_->port());
  return Status::Ok();
}

Status AgentDaemon::StartControlSocket() {
  ControlTargets targets;
  targets.agent = agent_.get();
  targets.delivery = delivery_.get();
  targets.dns_watch = dns_watch_.get();
  if (link_) {
    targets.set_hung = [l = link_.get()](bool hung) { l->SetHung(hung); };
    targets.link_status = [l = link_.get(), fence_timing = &fence_timing_] {
      nlohmann::json controllers = nlohmann::json::array();
      for (const auto& v : l->controller_states()) {
        controllers.push_back({{"address", v.address}, {"state", v.state}});
      }
      nlohmann::json j{{"controller_connected_to", l->connected_address()},
                       {"controllers", controllers}};
      if (auto timing = fence_timing->StatusJson(); !timing.is_null()) j["fence_timing"] = timing;
      return j;
    };
  }
  if (etcd_lease_) {
    targets.link_status = [link_status = targets.link_status, lease = etcd_lease_.get()] {
      nlohmann::json j = link_status();
      j["etcd_lease"] = lease->StatusJson();
      return j;
    };
  }
  targets.inject_crash = hypervisor_.inject_crash;
  targets.fault_injection = config_.fault_injection;
  targets.metrics_port = metrics_ ? metrics_->port() : 0;
  control_ = std::make_unique<ControlSocketServer>(
      config_.control_socket,
      [targets](const nlohmann::json& request) { return HandleControlCommand(targets, request); });
  if (Status s = control_->Start(); !s.ok()) return Unavailable(s.message());
  return Status::Ok();
}

void AgentDaemon::StartWatchdog() {
  // systemd (Type=notify): READY=1 now, WATCHDOG=1 from the main loop, STATUS= now and then.
  watchdog_ = std::make_unique<LoopWatchdog>(
      *deps_.notifier,
      [agent = agent_.get()](std::function<void()> fn) { agent->Post(std::move(fn)); },
      [this, agent = agent_.get(), link = link_.get(), host = config_.host_name] {
        nlohmann::json s = agent->StatusJson();
        bool tripped = backstop_ && backstop_->tripped();
        std::string mode = tripped                    ? "FENCE NOT CONFIRMED (watchdog tripped)"
                           : link == nullptr          ? "standalone"
                           : s.value("fenced", false) ? "FENCED"
                           : link->connected()        ? "controller connected"
                                                      : "controller unreachable";
        return "host " + host + ": " + std::to_string(s["domains"].size()) + " domains, " + mode +
               (s.value("connected", false) ? "" : ", libvirt not connected");
      });
  watchdog_->Start();
}

void AgentDaemon::StartMetricsRefresher() {
  if (!metrics_) return;
  {
    MutexLock lock(metrics_mu_);
    metrics_stop_ = false;
  }
  metrics_refresher_ = std::thread([this] {
    MutexLock lock(metrics_mu_);
    while (true) {
      auto next = std::chrono::steady_clock::now() + std::chrono::seconds(1);
      while (!metrics_stop_ && std::chrono::steady_clock::now() < next) {
        metrics_cv_.wait_until(lock.native(), next);
      }
      if (metrics_stop_) break;
      lock.native().unlock();
      AgentMetrics::Links links;
      links.controller_mode = link_ != nullptr;
      links.controller_connected = link_ && link_->connected();
      links.topology_revision_applied = network_ ? network_->applied_revision() : 0;
      links.backstop_tripped = backstop_ && backstop_->tripped();
      metrics_->Refresh(agent_->StatusJson(), links);
      lock.native().lock();
    }
  });
}

void AgentDaemon::StopMetricsRefresher() {
  if (!metrics_refresher_.joinable()) return;
  {
    MutexLock lock(metrics_mu_);
    metrics_stop_ = true;
  }
  metrics_cv_.notify_all();
  metrics_refresher_.join();
}

void AgentDaemon::Stop() {
  StopMetricsRefresher();
  if (backstop_) backstop_->Stop();
  if (watchdog_) watchdog_->Stop();
  if (control_) control_->Stop();
  if (link_) link_->Stop();
  if (etcd_lease_) etcd_lease_->Stop();  // after the link, which waits on it
  if (network_) network_->Stop();
  if (dns_watch_) dns_watch_->Stop();
  if (delivery_) delivery_->Stop();
  if (reaper_) reaper_->Stop();  // before the agent: its exit callback posts to the agent
  if (agent_) agent_->Stop();
}

int RunDaemon(const std::string& config_path) {
  auto config = LoadAgentConfig(config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "regen-agent: %s\n", config.status().message().c_str());
    return 2;
  }
  InitLogging("regen-agent", config->log_level);
  if (!config->controller_address.empty() && config->insecure) {
    spdlog::warn(
        "insecure: true: talking to the controller at {} over plaintext gRPC without a "
        "certificate; anyone on the path can read and forge this host's traffic. Use tls: {{ca, "
        "cert, key}} outside labs and tests",
        config->controller_address);
  }
  // Before any thread exists: SIGCHLD goes to the reaper, SIGTERM/SIGINT/SIGHUP to sigwait below.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ChildReaper::BlockSigchld();
  signal(SIGPIPE, SIG_IGN);

  AgentDaemon daemon(*config, ProductionDaemonDeps());
  if (Status s = daemon.Start(); !s.ok()) {
    spdlog::error("{}", s.message());
    return s.code() == Code::kInvalidArgument ? 2 : 1;
  }
  int sig = 0;
  while (sigwait(&set, &sig) == 0 && sig == SIGHUP) {
    // (A SIGHUP used to end the agent: its default action.)
    spdlog::info(
        "SIGHUP: nothing to reload; the agent reads its tls: files at each connection to the "
        "controller");
  }
  spdlog::info("regen-agent stopping on signal {}; domains keep running", strsignal(sig));
  daemon.Stop();
  return 0;
}

}  // namespace regen
