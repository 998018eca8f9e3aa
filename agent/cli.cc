#include "agent/cli.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <optional>

#include "agent/control_socket.h"
#include "agent/daemon.h"
#include "common/admin_client.h"
#include "common/names.h"
#include "config/agent_config.h"
#include "config/fields.h"

namespace regen {

namespace {

constexpr const char* kDefaultConfig = "/etc/regen/agent.yaml";

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

// The lease's source; in etcd mode this host's etcd lease and key.
void PrintEtcdLease(const nlohmann::json& s) {
  std::string source = s.value("lease_source", "controller");
  if (source != "etcd" || !s.contains("etcd_lease")) {
    std::printf("lease renewed by: %s\n", source.c_str());
    return;
  }
  const nlohmann::json& e = s["etcd_lease"];
  auto num = [&](const char* k) { return static_cast<long long>(e.value(k, int64_t{0})); };
  std::printf(
      "lease renewed by: etcd  lease %lld  key %s revision %lld  last renewal %lld ms ago  "
      "renewals %lld\n",
      num("lease_id"), e.value("key", "").c_str(), num("revision"), num("last_renewal_age_ms"),
      num("renewals"));
  if (e.contains("last_error"))
    std::printf("etcd: %s\n", e["last_error"].get<std::string>().c_str());
}

void PrintStatusText(const nlohmann::json& s) {
  std::printf("host %s  libvirt %s  %s  mode %s  desired %s\n", s.value("host", "").c_str(),
              s.value("libvirt_uri", "").c_str(),
              s.value("connected", false) ? "connected" : "DISCONNECTED",
              s.value("mode", "").c_str(),
              s.value("desired_known", false) ? std::to_string(s.value("desired_count", 0)).c_str()
                                              : "unknown");
  if (!s.value("domain_type", "").empty()) {
    std::printf("domain type %s: %s\n", s.value("domain_type", "").c_str(),
                s.value("domain_type_reason", "").c_str());
  }
  if (s.contains("controller")) {
    std::printf(
        "controller %s  %s  lease %lld ms left\n", s.value("controller", "").c_str(),
        !s.value("fenced", false)
            ? (s.value("controller_connected_to", "x").empty() ? "not connected" : "in contact")
        : s.value("fence_confirmed", false) ? "FENCED (managed domains destroyed)"
                                            : "FENCED (managed domains NOT yet confirmed gone)",
        static_cast<long long>(std::max<int64_t>(0, s.value("lease_remaining_ms", int64_t{0}))));
    PrintEtcdLease(s);
    if (s.contains("fence_timing") && s["fence_timing"].contains("problem")) {
      std::printf("FENCE TIMING UNSAFE: %s\n",
                  s["fence_timing"]["problem"].get<std::string>().c_str());
    }
    std::string active = s.value("controller_connected_to", "");
    if (!active.empty()) std::printf("connected to the controller at %s\n", active.c_str());
    if (s.contains("controllers") && (active.empty() || s["controllers"].size() > 1)) {
      for (const auto& c : s["controllers"]) {
        std::printf("  %s: %s\n", c.value("address", "").c_str(), c.value("state", "").c_str());
      }
    }
    if (s.value("hold_remaining_ms", int64_t{0}) > 0) {
      std::printf("maintenance hold: domains kept for %lld ms more even without the controller\n",
                  static_cast<long long>(s.value("hold_remaining_ms", int64_t{0})));
    }
    if (s.contains("fenced_unreported") && !s["fenced_unreported"].empty()) {
      std::printf("fenced, not yet reported to the controller:");
      for (const auto& f : s["fenced_unreported"]) {
        std::printf(" %s (generation %lld)", f.value("instance", "").c_str(),
                    static_cast<long long>(f.value("generation", int64_t{0})));
      }
      std::printf("\n");
    }
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
    o.tls = {config.tls.ca, config.tls.cert, config.tls.key, config.tls.server_name,
             config.tls.crl};
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
  AdminClient client(config->controller_addresses, AgentClientOptions(*config));
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
  AdminClient client(config->controller_addresses, AgentClientOptions(*config));
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

// What the command line sets.
struct CliArgs {
  std::string config_path = kDefaultConfig;
  std::string socket;
  std::string output = "text";
  std::string failover_instance;
  std::string failover_to;
  std::string crash_domain;
};

struct Subcommands {
  CLI::App* run = nullptr;
  CLI::App* status = nullptr;
  CLI::App* failover = nullptr;
  CLI::App* drain = nullptr;
  CLI::App* inject_crash = nullptr;
  CLI::App* inject_hang = nullptr;
  CLI::App* inject_resume = nullptr;
};

Subcommands AddSubcommands(CLI::App& app, CliArgs& a) {
  Subcommands sc;
  sc.run = app.add_subcommand("run", "run the agent daemon");
  sc.run->add_option("--config,-c", a.config_path, "agent.yaml")->capture_default_str();

  sc.status = app.add_subcommand("status", "show this host's domains, as the agent sees them");
  sc.status->add_option("--config,-c", a.config_path, "agent.yaml (for control_socket)")
      ->capture_default_str();
  sc.status->add_option("--socket", a.socket, "control socket path (overrides the config)");
  sc.status->add_option("--output,-o", a.output, "text or json")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();

  sc.failover = app.add_subcommand(
      "failover", "move one instance to another host, through the controller (destroy first)");
  sc.failover->add_option("INSTANCE", a.failover_instance, "instance to move")->required();
  sc.failover->add_option("--to", a.failover_to, "target host (default: the controller chooses)");
  sc.failover->add_option("--config,-c", a.config_path, "agent.yaml (for controller_address)")
      ->capture_default_str();
  sc.drain = app.add_subcommand(
      "drain", "move every instance off this host, through the controller (one re-creation each)");
  sc.drain
      ->add_option("--config,-c", a.config_path, "agent.yaml (for host_name, controller_address)")
      ->capture_default_str();

  auto* inject = app.add_subcommand("inject", "fault injection for labs and tests");
  sc.inject_crash =
      inject->add_subcommand("crash", "crash a domain (test driver; agent needs fault_injection)");
  sc.inject_crash->add_option("DOMAIN", a.crash_domain, "domain to crash")->required();
  sc.inject_crash->add_option("--config,-c", a.config_path, "agent.yaml (for control_socket)")
      ->capture_default_str();
  sc.inject_crash->add_option("--socket", a.socket, "control socket path (overrides the config)");
  sc.inject_hang = inject->add_subcommand(
      "hang",
      "stop heartbeats and reports without exiting (a partition, as the controller sees it)");
  sc.inject_resume = inject->add_subcommand("resume", "end an injected hang");
  for (auto* c : {sc.inject_hang, sc.inject_resume}) {
    c->add_option("--config,-c", a.config_path, "agent.yaml (for control_socket)")
        ->capture_default_str();
    c->add_option("--socket", a.socket, "control socket path (overrides the config)");
  }
  inject->require_subcommand(1);
  return sc;
}

// False (with a message) when argv[1] names no subcommand.
bool KnownCommand(CLI::App& app, int argc, char** argv) {
  if (argc <= 1 || argv[1][0] == '-') return true;
  std::string names;
  bool known = false;
  for (const CLI::App* sc : app.get_subcommands([](const CLI::App*) { return true; })) {
    known = known || sc->get_name() == argv[1];
    names += (names.empty() ? "" : ", ") + sc->get_name();
  }
  if (!known) {
    std::fprintf(stderr, "regen-agent: unknown command '%s' (commands: %s; see --help)\n", argv[1],
                 names.c_str());
  }
  return known;
}

// `inject hang` (hang) or `inject resume` (!hang).
int InjectHangCommand(const CliArgs& a, bool hang) {
  std::string path = SocketPath(a.config_path, a.socket);
  if (path.empty()) return 2;
  const char* what = hang ? "hang" : "resume";
  auto r = ControlSocketCall(path, {{"command", std::string("inject-") + what}},
                             std::chrono::seconds(10));
  if (!r.ok() || !r->value("ok", false)) {
    std::fprintf(
        stderr, "regen-agent inject %s: %s\n", what,
        r.ok() ? r->value("error", "unknown error").c_str() : r.status().message().c_str());
    return 1;
  }
  std::printf("%s\n", hang ? "hung: no heartbeats until `inject resume`" : "resumed");
  return 0;
}

int InjectCrashCommand(const CliArgs& a) {
  std::string path = SocketPath(a.config_path, a.socket);
  if (path.empty()) return 2;
  auto r = ControlSocketCall(path, {{"command", "inject-crash"}, {"domain", a.crash_domain}},
                             std::chrono::seconds(10));
  if (!r.ok() || !r->value("ok", false)) {
    std::fprintf(
        stderr, "regen-agent inject crash: %s\n",
        r.ok() ? r->value("error", "unknown error").c_str() : r.status().message().c_str());
    return 1;
  }
  std::printf("crashed %s\n", a.crash_domain.c_str());
  return 0;
}

}  // namespace

int AgentMain(int argc, char** argv) {
  CLI::App app{"regen-agent: keeps this host's Regen instances running (see regen-agent run)"};
  app.require_subcommand(1);
  CliArgs a;
  Subcommands sc = AddSubcommands(app, a);
  if (!KnownCommand(app, argc, argv)) return 2;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (sc.run->parsed()) return RunDaemon(a.config_path);
  if (sc.status->parsed()) return StatusCommand(a.config_path, a.socket, a.output);
  if (sc.failover->parsed()) {
    return FailoverCommand(a.config_path, a.failover_instance, a.failover_to);
  }
  if (sc.drain->parsed()) return DrainCommand(a.config_path);
  if (sc.inject_hang->parsed() || sc.inject_resume->parsed()) {
    return InjectHangCommand(a, sc.inject_hang->parsed());
  }
  if (sc.inject_crash->parsed()) return InjectCrashCommand(a);
  return 2;
}

}  // namespace regen
