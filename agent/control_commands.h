// The commands of the agent's control socket (status, libvirt-domains, inject-crash, inject-hang,
// inject-resume, inject-stall): one JSON request in, one JSON reply out. Called on the control
// socket's thread (ControlSocketServer's handler); the targets are thread-safe.
#pragma once

#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace regen {

class Agent;
class DnsWatch;
class EventDelivery;

// What the commands act on. The agent and the event delivery must outlive every call.
struct ControlTargets {
  Agent* agent = nullptr;             // status, inject-stall
  EventDelivery* delivery = nullptr;  // status: the event counters
  DnsWatch* dns_watch = nullptr;      // status: what the DNS watch sees (null: no watch)
  // status: which controller the link is connected to and what each address said (null:
  // standalone).
  std::function<nlohmann::json()> link_status;
  // inject-hang / inject-resume: hangs or resumes the controller link (null: standalone).
  std::function<void(bool hung)> set_hung;
  // inject-crash: crashes one domain (the hypervisor's fault injection).
  std::function<Status(const std::string& domain)> inject_crash;
  bool fault_injection = false;  // fault_injection: of agent.yaml; off refuses every inject-*
  int metrics_port = 0;          // 0: no metrics endpoint
};

// Answers one request: {"ok": true, ...} or {"ok": false, "error": "..."}.
nlohmann::json HandleControlCommand(const ControlTargets& targets, const nlohmann::json& request);

}  // namespace regen
