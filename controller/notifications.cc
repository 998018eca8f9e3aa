#include "controller/notifications.h"

#include "common/log.h"

namespace regen {

using nlohmann::json;

json FailureNotification(const EventRecord& e) {
  return json{{"event", "failure"},  {"service", e.service}, {"instance", e.instance},
              {"host", e.host},      {"reason", e.message},  {"sequence", e.sequence},
              {"unix_ms", e.unix_ms}};
}

json ReallocationNotification(const EventRecord& e) {
  json detail = json::parse(e.json, nullptr, /*allow_exceptions=*/false);
  if (!detail.is_object()) detail = json::object();
  json resources = detail.value("resources", json::object());
  return json{{"event", "reallocation"},
              {"service", e.service},
              {"instance", e.instance},
              {"old_host", detail.value("old_host", std::string())},
              {"new_host", detail.value("new_host", e.host)},
              {"resources", resources},
              {"version", detail.value("version", std::string())},
              {"generation", detail.value("generation", int64_t{0})},
              {"ip", detail.value("ip", std::string())},
              {"mac", detail.value("mac", std::string())},
              {"reason", e.message},
              {"sequence", e.sequence},
              {"unix_ms", e.unix_ms}};
}

json TopologyNotification(const Controller& controller, const std::string& service,
                          int64_t revision, int64_t unix_ms) {
  json instances = json::array();
  for (const auto& [name, loc] : controller.Locations()) {
    if (loc.service != service || loc.host.empty()) continue;
    instances.push_back({{"name", name}, {"host", loc.host}, {"ip", loc.ip}, {"mac", loc.mac}});
  }
  json out{{"event", "topology"},
           {"service", service},
           {"revision", revision},
           {"unix_ms", unix_ms},
           {"instances", std::move(instances)}};
  std::string dns_name = controller.DnsNameOf(service);
  if (!dns_name.empty()) out["dns_name"] = dns_name;
  return out;
}

std::optional<json> NotificationFor(const EventRecord& event) {
  if (event.service.empty() || event.instance.empty()) return std::nullopt;
  if (event.kind == EventKind::kFailure) return FailureNotification(event);
  if (event.kind == EventKind::kReallocation) return ReallocationNotification(event);
  return std::nullopt;
}

std::string JsonLine(const json& event) { return event.dump() + "\n"; }

int InstanceNotifier::Deliver(const Controller& controller, const std::string& service,
                              const json& event) {
  v1::ControllerMessage msg;
  auto* n = msg.mutable_notification();
  n->set_service(service);
  n->set_json(event.dump());
  int reached = 0;
  for (const auto& [host, instances] : controller.HostsOf(service)) {
    n->clear_instances();
    for (const auto& name : instances) n->add_instances(name);
    if (controller.SendToHost(host, msg)) {
      ++reached;
      ++sent_;
    }
  }
  return reached;
}

void InstanceNotifier::OnChanges(const Controller& controller, const ControllerChanges& changes) {
  // All of the step's notifications go out now, one after the other without waiting: the
  // sessions' writers send them in parallel.
  for (const auto& e : changes.events) {
    auto event = NotificationFor(e);
    if (!event) continue;
    int reached = Deliver(controller, e.service, *event);
    spdlog::debug("notified {} agents of {} {} ({})", reached, EventKindName(e.kind), e.instance,
                  e.service);
  }
  int64_t now_ms = controller.WallMillis();
  for (const auto& service : changes.topology_changed) {
    json topology = TopologyNotification(controller, service, changes.topology_revision, now_ms);
    int reached = Deliver(controller, service, topology);
    spdlog::debug("topology revision {} of {} sent to {} agents", changes.topology_revision,
                  service, reached);
  }
}

}  // namespace regen
