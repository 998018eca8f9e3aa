#include "agent/control_commands.h"

#include <chrono>
#include <thread>

#include "agent/agent.h"
#include "agent/dns_watch.h"
#include "agent/event_delivery.h"
#include "common/log.h"
#include "common/names.h"

namespace regen {

namespace {

nlohmann::json Error(const std::string& message) {
  return nlohmann::json{{"ok", false}, {"error", message}};
}

nlohmann::json StatusReply(const ControlTargets& t) {
  nlohmann::json status = t.agent->StatusJson();
  if (t.metrics_port != 0) status["metrics_port"] = t.metrics_port;
  if (t.link_status) status.update(t.link_status());
  // What the DNS watch sees (name -> addresses; a name appears once it has been answered).
  if (t.dns_watch != nullptr) status["dns_watch"] = t.dns_watch->Known();
  EventDeliveryStats events = t.delivery->stats();
  status["events"] = {{"lines_written", events.lines_written},
                      {"channel_lines", events.socket_writes},
                      {"errors", events.errors}};
  status["ok"] = true;
  return status;
}

nlohmann::json InjectHang(const ControlTargets& t, bool hang) {
  if (!t.set_hung) return Error("inject hang: this agent runs standalone (no controller)");
  spdlog::warn("fault injection: {}",
               hang ? "hang: heartbeats and reports stop" : "resume: heartbeats start again");
  t.set_hung(hang);
  return nlohmann::json{{"ok", true}};
}

nlohmann::json InjectCrash(const ControlTargets& t, const nlohmann::json& request) {
  const std::string name = request.value("domain", "");
  if (!IsValidName(name)) {
    return Error("inject crash: DOMAIN \"" + name + "\" is not a valid name");
  }
  spdlog::warn("fault injection: crashing domain {}", name);
  Status s = t.inject_crash ? t.inject_crash(name)
                            : FailedPrecondition(
                                  "inject crash: this hypervisor cannot crash "
                                  "a domain on request");
  if (!s.ok()) return Error(s.message());
  return nlohmann::json{{"ok", true}};
}

nlohmann::json InjectStall(const ControlTargets& t, const nlohmann::json& request) {
  // Blocks the main loop itself (not a worker): its systemd watchdog pings stop meanwhile.
  const nlohmann::json seconds = request.value("seconds", nlohmann::json());
  if (!seconds.is_number() || seconds.get<double>() <= 0 || seconds.get<double>() > 3600) {
    return Error(
        "inject stall: \"seconds\" must be a number of seconds above 0 and at most 3600, got " +
        seconds.dump());
  }
  auto stall = std::chrono::duration<double>(seconds.get<double>());
  spdlog::warn("fault injection: stalling the main loop for {} s", stall.count());
  t.agent->Post([stall] {
    std::this_thread::sleep_for(stall);
    spdlog::warn("fault injection: main loop stall of {} s over", stall.count());
  });
  return nlohmann::json{{"ok", true}};
}

}  // namespace

nlohmann::json HandleControlCommand(const ControlTargets& targets, const nlohmann::json& request) {
  const std::string command = request.value("command", "");
  if (command == "status") return StatusReply(targets);
  if (command == "libvirt-domains") {
    nlohmann::json listed = targets.agent->LibvirtDomainsJson();
    if (listed.is_object()) return Error("libvirt-domains: " + listed.value("error", ""));
    return nlohmann::json{{"ok", true}, {"domains", listed}};
  }
  if (command.rfind("inject-", 0) == 0 && !targets.fault_injection) {
    return Error(
        "fault injection is off on this agent (set fault_injection: true in agent.yaml; labs and "
        "tests only)");
  }
  if (command == "inject-hang" || command == "inject-resume") {
    return InjectHang(targets, command == "inject-hang");
  }
  if (command == "inject-crash") return InjectCrash(targets, request);
  if (command == "inject-stall") return InjectStall(targets, request);
  return Error("unknown command \"" + command +
               "\" (known: status, libvirt-domains, inject-crash, inject-hang, inject-resume, "
               "inject-stall, ping)");
}

}  // namespace regen
