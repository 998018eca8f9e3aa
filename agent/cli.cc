#include "agent/cli.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <thread>

#include "agent/agent.h"
#include "agent/agent_metrics.h"
#include "agent/control_socket.h"
#include "agent/controller_link.h"
#include "agent/dns_watch.h"
#include "agent/event_delivery.h"
#include "agent/libvirt_hypervisor.h"
#include "agent/network_agent.h"
#include "agent/reaper.h"
#include "common/admin_client.h"
#include "common/log.h"
#include "common/names.h"
#include "common/notify.h"
#include "config/agent_config.h"
#include "config/fields.h"
#include "dns/cares_resolver.h"
#include "dns/dns_config.h"
#include "ovs/ovs_vswitch.h"

namespace regen {

namespace {

constexpr const char* kDefaultConfig = "/etc/regen/agent.yaml";

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
  // Before any thread exists: SIGCHLD goes to the reaper, SIGTERM/SIGINT to sigwait below.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ChildReaper::BlockSigchld();
  signal(SIGPIPE, SIG_IGN);

  RealClock clock;
  RealCommandRunner runner;
  LibvirtHypervisor hypervisor(config->libvirt_uri, config->libvirt_events);
  Agent agent(*config, hypervisor, clock, runner);
  ChildReaper reaper;
  if (config->libvirt_events) {
    // The subreaper's exit notice is the fastest lifecycle event there is (qemu:///embed).
    reaper.SetExitCallback([&agent](const QemuIdentity& who, int wait_status) {
      std::string detail = WIFSIGNALED(wait_status)
                               ? "killed by signal " + std::to_string(WTERMSIG(wait_status))
                               : "exit status " + std::to_string(WEXITSTATUS(wait_status));
      agent.NoteProcessExit(who.name, who.domain_id, detail);
    });
  }
  if (Status s = reaper.Start(); !s.ok()) {
    spdlog::warn("{}; a dead qemu will be noticed late", s.message());
  }
  std::unique_ptr<ControllerLink> link;
  // Events for instances (from the controller, and the DNS watch): JSONL files and channels.
  EventDelivery delivery(config->state_dir);
  if (Status s = delivery.EnsureDirectories(); !s.ok()) spdlog::warn("{}", s.message());
  delivery.Start();  // lines waiting for a channel (a domain still starting) follow within 200 ms
  std::unique_ptr<dns::Resolver> resolver;
  std::unique_ptr<DnsWatch> dns_watch;
  if (!config->dns_server.empty()) {
    dns::CaresResolverOptions options;
    if (Status s = dns::SplitHostPort(config->dns_server, &options.server, &options.port);
        !s.ok()) {
      spdlog::error("{}", s.message());
      return 2;
    }
    auto r = dns::NewCaresResolver(options);
    if (!r.ok()) {
      spdlog::error("dns.server {}: {}", config->dns_server, r.status().message());
      return 1;
    }
    resolver = std::move(r).value();
    dns_watch = std::make_unique<DnsWatch>(
        *resolver, clock, config->dns_zone, config->dns_poll_interval,
        [&delivery](const std::vector<std::string>& instances, const std::string& json) {
          (void)delivery.Deliver(instances, json);
        });
  }
  if (!config->controller_address.empty()) {
    link = std::make_unique<ControllerLink>(*config, agent, hypervisor, clock);
    link->SetObservers(
        [&delivery](const v1::InstanceNotification& n) {
          std::vector<std::string> instances(n.instances().begin(), n.instances().end());
          (void)delivery.Deliver(instances, n.json());
        },
        [watch = dns_watch.get()](const std::vector<InstanceSpec>& desired) {
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
  // OVS flow programming (network: in agent.yaml), fed with topology revisions by the link.
  std::unique_ptr<ovs::OvsVSwitch> vswitch;
  std::unique_ptr<NetworkAgent> network;
  if (config->network.enabled) {
    ovs::OvsVSwitchOptions ovs_options;
    ovs_options.db_socket = config->network.db_socket;
    ovs_options.run_dir = config->network.run_dir;
    vswitch = std::make_unique<ovs::OvsVSwitch>(runner, ovs_options);
    NetworkAgentOptions net_options;
    net_options.host = config->host_name;
    net_options.bridge = config->network.bridge;
    net_options.tunnel_ip = config->network.tunnel_ip;
    net_options.resync_interval = config->network.resync_interval;
    network = std::make_unique<NetworkAgent>(net_options, *vswitch, clock);
    if (link) {
      link->SetNetworkAgent(network.get());
      network->SetAppliedCallback([l = link.get()](int64_t rev) { l->SendTopologyApplied(rev); });
    }
  }
  // Prometheus metrics (metrics_address: in agent.yaml), refreshed from the status once a second.
  std::unique_ptr<AgentMetrics> metrics;
  if (!config->metrics_address.empty()) {
    auto m = AgentMetrics::Start(config->metrics_address);
    if (!m.ok()) {
      spdlog::error("{}", m.status().message());
      return 1;
    }
    metrics = std::move(*m);
    spdlog::info("metrics at http://{}/metrics (port {})", config->metrics_address,
                 metrics->port());
  }
  const int metrics_port = metrics ? metrics->port() : 0;
  const bool fault_injection = config->fault_injection;
  ControlSocketServer control(config->control_socket, [&agent, &hypervisor, &link, &delivery,
                                                       &dns_watch, fault_injection, metrics_port](
                                                          const nlohmann::json& request) {
    const std::string command = request.value("command", "");
    if (command == "status") {
      nlohmann::json status = agent.StatusJson();
      if (metrics_port != 0) status["metrics_port"] = metrics_port;
      // What the DNS watch sees (name -> addresses; a name appears once it has been answered).
      if (dns_watch) status["dns_watch"] = dns_watch->Known();
      EventDeliveryStats events = delivery.stats();
      status["events"] = {{"lines_written", events.lines_written},
                          {"channel_lines", events.socket_writes},
                          {"errors", events.errors}};
      status["ok"] = true;
      return status;
    }
    if (command.rfind("inject-", 0) == 0 && !fault_injection) {
      return nlohmann::json{{"ok", false},
                            {"error",
                             "fault injection is off on this agent (set "
                             "fault_injection: true in agent.yaml; labs and tests only)"}};
    }
    if (command == "inject-hang" || command == "inject-resume") {
      if (!link) {
        return nlohmann::json{{"ok", false},
                              {"error", "inject hang: this agent runs standalone (no controller)"}};
      }
      bool hang = command == "inject-hang";
      spdlog::warn("fault injection: {}",
                   hang ? "hang: heartbeats and reports stop" : "resume: heartbeats start again");
      link->SetHung(hang);
      return nlohmann::json{{"ok", true}};
    }
    if (command == "inject-crash") {
      const std::string name = request.value("domain", "");
      if (!IsValidName(name)) {
        return nlohmann::json{
            {"ok", false}, {"error", "inject crash: DOMAIN \"" + name + "\" is not a valid name"}};
      }
      spdlog::warn("fault injection: crashing domain {}", name);
      Status s = hypervisor.InjectCrash(name);
      if (!s.ok()) return nlohmann::json{{"ok", false}, {"error", s.message()}};
      return nlohmann::json{{"ok", true}};
    }
    if (command == "inject-stall") {
      // Blocks the main loop itself (not a worker): its systemd watchdog pings stop meanwhile.
      const nlohmann::json seconds = request.value("seconds", nlohmann::json());
      if (!seconds.is_number() || seconds.get<double>() <= 0 || seconds.get<double>() > 3600) {
        return nlohmann::json{{"ok", false},
                              {"error",
                               "inject stall: \"seconds\" must be a number of seconds above 0 and "
                               "at most 3600, got " +
                                   seconds.dump()}};
      }
      auto stall = std::chrono::duration<double>(seconds.get<double>());
      spdlog::warn("fault injection: stalling the main loop for {} s", stall.count());
      agent.Post([stall] {
        std::this_thread::sleep_for(stall);
        spdlog::warn("fault injection: main loop stall of {} s over", stall.count());
      });
      return nlohmann::json{{"ok", true}};
    }
    return nlohmann::json{
        {"ok", false},
        {"error", "unknown command \"" + command +
                      "\" (known: status, inject-crash, inject-hang, inject-resume, inject-stall, "
                      "ping)"}};
  });
  if (Status s = control.Start(); !s.ok()) {
    spdlog::error("{}", s.message());
    return 1;
  }
  spdlog::info(
      "regen-agent started host={} libvirt={} mode={} poll_interval={}ms events={} "
      "control_socket={}",
      config->host_name, config->libvirt_uri,
      config->controller_address.empty() ? "standalone" : "controller",
      config->poll_interval.count(), config->libvirt_events, config->control_socket);
  if (network) network->Start();
  if (link) link->Start();  // registers the agent's reporters: before agent.Start()
  agent.Start();
  if (dns_watch) {
    dns_watch->Start();
    spdlog::info("DNS watch: names of hosted services in zone {} at {} every {} ms",
                 config->dns_zone, config->dns_server, config->dns_poll_interval.count());
  }
  // systemd (Type=notify): READY=1 now, WATCHDOG=1 from the main loop, STATUS= now and then.
  SystemdNotifier notifier;
  LoopWatchdog watchdog(
      notifier, [&agent](std::function<void()> fn) { agent.Post(std::move(fn)); },
      [&agent, &link, host = config->host_name] {
        nlohmann::json s = agent.StatusJson();
        std::string mode = !link                      ? "standalone"
                           : s.value("fenced", false) ? "FENCED"
                           : link->connected()        ? "controller connected"
                                                      : "controller unreachable";
        return "host " + host + ": " + std::to_string(s["domains"].size()) + " domains, " + mode +
               (s.value("connected", false) ? "" : ", libvirt not connected");
      });
  watchdog.Start();
  std::mutex metrics_mu;
  std::condition_variable metrics_cv;
  bool metrics_stop = false;
  std::thread metrics_refresher;
  if (metrics) {
    metrics_refresher = std::thread([&] {
      std::unique_lock lock(metrics_mu);
      while (!metrics_cv.wait_for(lock, std::chrono::seconds(1), [&] { return metrics_stop; })) {
        lock.unlock();
        AgentMetrics::Links links;
        links.controller_mode = link != nullptr;
        links.controller_connected = link && link->connected();
        links.topology_revision_applied = network ? network->applied_revision() : 0;
        metrics->Refresh(agent.StatusJson(), links);
        lock.lock();
      }
    });
  }

  int sig = 0;
  sigwait(&set, &sig);
  if (metrics_refresher.joinable()) {
    {
      std::lock_guard lock(metrics_mu);
      metrics_stop = true;
    }
    metrics_cv.notify_all();
    metrics_refresher.join();
  }
  spdlog::info("regen-agent stopping on signal {}; domains keep running", strsignal(sig));
  watchdog.Stop();
  control.Stop();
  if (link) link->Stop();
  if (network) network->Stop();
  if (dns_watch) dns_watch->Stop();
  delivery.Stop();
  reaper.Stop();  // before the agent: its exit callback posts to the agent
  agent.Stop();
  return 0;
}

std::string SocketPath(const std::string& config_path, const std::string& socket) {
  if (!socket.empty()) return socket;
  // Parsed only: the status command needs no certificate (its key may be unreadable to the
  // operator running it).
  auto text = ReadConfigFile(config_path);
  auto config =
      text.ok() ? ParseAgentConfig(*text, config_path) : Result<AgentConfig>(text.status());
  if (!config.ok()) {
    std::fprintf(stderr, "regen-agent: %s (or pass --socket)\n", config.status().message().c_str());
    return "";
  }
  return config->control_socket;
}

void PrintStatusText(const nlohmann::json& s) {
  std::printf("host %s  libvirt %s  %s  mode %s  desired %s\n", s.value("host", "").c_str(),
              s.value("libvirt_uri", "").c_str(),
              s.value("connected", false) ? "connected" : "DISCONNECTED",
              s.value("mode", "").c_str(),
              s.value("desired_known", false) ? std::to_string(s.value("desired_count", 0)).c_str()
                                              : "unknown");
  if (s.contains("controller")) {
    std::printf(
        "controller %s  %s  lease %lld ms left\n", s.value("controller", "").c_str(),
        s.value("fenced", false) ? "FENCED (managed domains destroyed)" : "in contact",
        static_cast<long long>(std::max<int64_t>(0, s.value("lease_remaining_ms", int64_t{0}))));
  }
  if (s.contains("connect_error"))
    std::printf("libvirt error: %s\n", s["connect_error"].get<std::string>().c_str());
  if (s.contains("desired_error"))
    std::printf("desired set error: %s\n", s["desired_error"].get<std::string>().c_str());
  std::printf("%-24s %-9s %-12s %-16s %3s %-10s %4s\n", "DOMAIN", "STATE", "REASON", "SERVICE",
              "UD", "VERSION", "GEN");
  for (const auto& d : s["domains"]) {
    bool managed = d.value("managed", false);
    std::printf("%-24s %-9s %-12s %-16s %3s %-10s %4s\n", d.value("name", "").c_str(),
                d.value("state", "").c_str(),
                d.value("reason", "").empty() ? "-" : d.value("reason", "").c_str(),
                managed ? d.value("service", "").c_str() : "(not regen)",
                managed ? std::to_string(d.value("update_domain", 0)).c_str() : "-",
                managed ? d.value("version", "").c_str() : "-",
                managed ? std::to_string(d.value("generation", 0)).c_str() : "-");
  }
  if (!s["failures"].empty()) {
    // REASON last: it may contain spaces ("qemu exited: killed by signal 9").
    std::printf("\n%-24s %-4s %-9s %-6s %-16s %-15s %s\n", "FAILED INSTANCE", "GEN", "STATE", "BY",
                "DETECTED_MS", "RECREATED_AFTER", "REASON");
    for (const auto& f : s["failures"]) {
      int64_t detected = f.value("detected_unix_ms", int64_t{0});
      int64_t recreated = f.value("recreated_unix_ms", int64_t{0});
      std::string after = recreated ? std::to_string(recreated - detected) : "-";
      std::printf("%-24s %-4lld %-9s %-6s %-16lld %-15s %s\n", f.value("instance", "").c_str(),
                  static_cast<long long>(f.value("generation", int64_t{0})),
                  f.value("state", "").c_str(), f.value("detected_by", "").c_str(),
                  static_cast<long long>(detected), after.c_str(),
                  f.value("reason", "").empty() ? "-" : f.value("reason", "").c_str());
    }
  }
}

int StatusCommand(const std::string& config_path, const std::string& socket,
                  const std::string& output) {
  std::string path = SocketPath(config_path, socket);
  if (path.empty()) return 2;
  auto r = ControlSocketCall(path, {{"command", "status"}}, std::chrono::seconds(10));
  if (!r.ok()) {
    std::fprintf(stderr, "regen-agent status: %s\n", r.status().message().c_str());
    return 1;
  }
  if (!r->value("ok", false)) {
    std::fprintf(stderr, "regen-agent status: %s\n", r->value("error", "unknown error").c_str());
    return 1;
  }
  r->erase("ok");
  if (output == "json") {
    std::printf("%s\n", r->dump(2).c_str());
  } else {
    PrintStatusText(*r);
  }
  return 0;
}

// The controller address and host name from agent.yaml, or an error printed for `what`.
std::optional<AgentConfig> ControllerConfigFor(const char* what, const std::string& config_path) {
  auto config = LoadAgentConfig(config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "regen-agent %s: %s\n", what, config.status().message().c_str());
    return std::nullopt;
  }
  if (config->controller_address.empty()) {
    std::fprintf(stderr,
                 "regen-agent %s: %s has no controller_address: %s goes through the controller "
                 "(this agent runs standalone)\n",
                 what, config_path.c_str(), what);
    return std::nullopt;
  }
  return *config;
}

// The agent's own credentials (tls: of agent.yaml). Over TLS the controller accepts them for
// failover and drain only when auth.certs lists this host's certificate name as admin.
AdminClientOptions AgentClientOptions(const AgentConfig& config) {
  AdminClientOptions o;
  o.deadline = std::chrono::seconds(30);
  o.unreachable_hint = "is regen-controller running? check controller_address in agent.yaml";
  if (config.tls.enabled()) {
    o.tls = {config.tls.ca, config.tls.cert, config.tls.key, config.tls.server_name};
    o.unreachable_hint += " and its tls: block";
  }
  return o;
}

int FailoverCommand(const std::string& config_path, const std::string& instance,
                    const std::string& to) {
  if (!IsValidName(instance)) {
    std::fprintf(stderr, "regen-agent failover: INSTANCE \"%s\" is not a valid name\n",
                 instance.c_str());
    return 2;
  }
  if (!to.empty() && !IsValidName(to)) {
    std::fprintf(stderr, "regen-agent failover: --to \"%s\" is not a valid host name\n",
                 to.c_str());
    return 2;
  }
  auto config = ControllerConfigFor("failover", config_path);
  if (!config) return 2;
  AdminClient client(config->controller_address, AgentClientOptions(*config));
  v1::FailoverRequest req;
  req.set_instance(instance);
  req.set_to_host(to);
  auto r = client.Failover(req);
  if (!r.ok()) {
    std::fprintf(stderr, "regen-agent failover: %s\n", r.status().message().c_str());
    return 1;
  }
  std::printf("instance %s moving to %s (generation %lld)\n", instance.c_str(),
              r->instance().host().c_str(), static_cast<long long>(r->instance().generation()));
  return 0;
}

int DrainCommand(const std::string& config_path) {
  auto config = ControllerConfigFor("drain", config_path);
  if (!config) return 2;
  AdminClient client(config->controller_address, AgentClientOptions(*config));
  v1::DrainRequest req;
  req.set_host(config->host_name);
  auto r = client.Drain(req);
  if (!r.ok()) {
    std::fprintf(stderr, "regen-agent drain: %s\n", r.status().message().c_str());
    return 1;
  }
  std::printf("host %s draining: %d instances moving\n", config->host_name.c_str(),
              r->moved_size());
  for (const auto& i : r->moved()) {
    std::printf("  %s -> %s (generation %lld)\n", i.name().c_str(),
                i.host().empty() ? "-" : i.host().c_str(), static_cast<long long>(i.generation()));
  }
  return 0;
}

}  // namespace

int AgentMain(int argc, char** argv) {
  CLI::App app{"regen-agent: keeps this host's Regen instances running (see regen-agent run)"};
  app.require_subcommand(1);
  std::string config_path = kDefaultConfig;
  std::string socket;
  std::string output = "text";

  auto* run = app.add_subcommand("run", "run the agent daemon");
  run->add_option("--config,-c", config_path, "agent.yaml")->capture_default_str();

  auto* status = app.add_subcommand("status", "show this host's domains, as the agent sees them");
  status->add_option("--config,-c", config_path, "agent.yaml (for control_socket)")
      ->capture_default_str();
  status->add_option("--socket", socket, "control socket path (overrides the config)");
  status->add_option("--output,-o", output, "text or json")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();

  auto* failover = app.add_subcommand(
      "failover", "move one instance to another host, through the controller (destroy first)");
  std::string failover_instance;
  std::string failover_to;
  failover->add_option("INSTANCE", failover_instance, "instance to move")->required();
  failover->add_option("--to", failover_to, "target host (default: the controller chooses)");
  failover->add_option("--config,-c", config_path, "agent.yaml (for controller_address)")
      ->capture_default_str();
  auto* drain = app.add_subcommand(
      "drain", "move every instance off this host, through the controller (one re-creation each)");
  drain->add_option("--config,-c", config_path, "agent.yaml (for host_name, controller_address)")
      ->capture_default_str();

  auto* inject = app.add_subcommand("inject", "fault injection for labs and tests");
  auto* inject_crash =
      inject->add_subcommand("crash", "crash a domain (test driver; agent needs fault_injection)");
  std::string crash_domain;
  inject_crash->add_option("DOMAIN", crash_domain, "domain to crash")->required();
  inject_crash->add_option("--config,-c", config_path, "agent.yaml (for control_socket)")
      ->capture_default_str();
  inject_crash->add_option("--socket", socket, "control socket path (overrides the config)");
  auto* inject_hang = inject->add_subcommand(
      "hang",
      "stop heartbeats and reports without exiting (a partition, as the controller sees it)");
  auto* inject_resume = inject->add_subcommand("resume", "end an injected hang");
  for (auto* sc : {inject_hang, inject_resume}) {
    sc->add_option("--config,-c", config_path, "agent.yaml (for control_socket)")
        ->capture_default_str();
    sc->add_option("--socket", socket, "control socket path (overrides the config)");
  }
  inject->require_subcommand(1);

  if (argc > 1 && argv[1][0] != '-') {
    std::string names;
    bool known = false;
    for (const CLI::App* sc : app.get_subcommands([](const CLI::App*) { return true; })) {
      known = known || sc->get_name() == argv[1];
      names += (names.empty() ? "" : ", ") + sc->get_name();
    }
    if (!known) {
      std::fprintf(stderr, "regen-agent: unknown command '%s' (commands: %s; see --help)\n",
                   argv[1], names.c_str());
      return 2;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (run->parsed()) return RunDaemon(config_path);
  if (status->parsed()) return StatusCommand(config_path, socket, output);
  if (failover->parsed()) return FailoverCommand(config_path, failover_instance, failover_to);
  if (drain->parsed()) return DrainCommand(config_path);
  if (inject_hang->parsed() || inject_resume->parsed()) {
    std::string path = SocketPath(config_path, socket);
    if (path.empty()) return 2;
    const char* what = inject_hang->parsed() ? "hang" : "resume";
    auto r = ControlSocketCall(path, {{"command", std::string("inject-") + what}},
                               std::chrono::seconds(10));
    if (!r.ok() || !r->value("ok", false)) {
      std::fprintf(
          stderr, "regen-agent inject %s: %s\n", what,
          r.ok() ? r->value("error", "unknown error").c_str() : r.status().message().c_str());
      return 1;
    }
    std::printf("%s\n",
                inject_hang->parsed() ? "hung: no heartbeats until `inject resume`" : "resumed");
    return 0;
  }
  if (inject_crash->parsed()) {
    std::string path = SocketPath(config_path, socket);
    if (path.empty()) return 2;
    auto r = ControlSocketCall(path, {{"command", "inject-crash"}, {"domain", crash_domain}},
                               std::chrono::seconds(10));
    if (!r.ok() || !r->value("ok", false)) {
      std::fprintf(
          stderr, "regen-agent inject crash: %s\n",
          r.ok() ? r->value("error", "unknown error").c_str() : r.status().message().c_str());
      return 1;
    }
    std::printf("crashed %s\n", crash_domain.c_str());
    return 0;
  }
  return 2;
}

}  // namespace regen
