#include "controller/store_codec.h"

namespace regen {

using nlohmann::json;

namespace {

// Runs a decoder that may throw (nlohmann's value() on a field of the wrong type, a record that
// is not an object): a throw becomes INTERNAL naming the record and the field's complaint; no
// exception leaves the codec.
template <typename T, typename F>
Result<T> Decode(const std::string& what, const json& j, F&& decode) {
  if (!j.is_object()) return Internal("store: " + what + " is corrupt: not a JSON object");
  try {
    Result<T> r(decode());
    if (!r.ok()) return r.status().WithContext("store: " + what);
    return r;
  } catch (const json::exception& e) {
    return Internal("store: " + what + " is corrupt: " + e.what());
  } catch (const std::exception& e) {
    return Internal("store: " + what + " cannot be decoded: " + e.what());
  }
}

}  // namespace

json ResourcesToJson(const Resources& r) {
  return {{"vcpus", r.vcpus},
          {"memory_mib", r.memory_mib},
          {"disk_gib", r.disk_gib},
          {"bandwidth_mbps", r.bandwidth_mbps}};
}
Resources ResourcesFromJson(const json& j) {
  return {j.value("vcpus", int64_t{0}), j.value("memory_mib", int64_t{0}),
          j.value("disk_gib", int64_t{0}), j.value("bandwidth_mbps", int64_t{0})};
}

json HostToJson(const HostRecord& h) {
  return {{"address", h.address},
          {"capacity", ResourcesToJson(h.capacity)},
          {"state", HostStateName(h.state)},
          {"last_heartbeat_unix_ms", h.last_heartbeat_unix_ms},
          {"applied_topology_revision", h.applied_topology_revision}};
}
static Result<HostRecord> HostFromJsonUnchecked(const std::string& name, const json& j) {
  HostRecord h;
  h.name = name;
  h.address = j.value("address", "");
  h.capacity = ResourcesFromJson(j.value("capacity", json::object()));
  ASSIGN_OR_RETURN(h.state, ParseHostState(j.value("state", "up")));
  h.last_heartbeat_unix_ms = j.value("last_heartbeat_unix_ms", int64_t{0});
  h.applied_topology_revision = j.value("applied_topology_revision", int64_t{0});
  return h;
}

json InstanceToJson(const InstanceRecord& i) {
  return {{"service", i.service},
          {"index", i.index},
          {"update_domain", i.update_domain},
          {"version", i.version},
          {"generation", i.generation},
          {"allocation",
           {{"host", i.allocation.host},
            {"resources", ResourcesToJson(i.allocation.resources)},
            {"ip", i.allocation.ip},
            {"mac", i.allocation.mac}}},
          {"state", InstanceStateName(i.state)},
          {"reason", i.reason},
          {"moving_from", i.moving_from}};
}
static Result<InstanceRecord> InstanceFromJsonUnchecked(const std::string& name, const json& j) {
  InstanceRecord i;
  i.name = name;
  i.service = j.value("service", "");
  i.index = j.value("index", int64_t{0});
  i.update_domain = j.value("update_domain", int64_t{0});
  i.version = j.value("version", "");
  i.generation = j.value("generation", int64_t{0});
  json a = j.value("allocation", json::object());
  i.allocation.host = a.value("host", "");
  i.allocation.resources = ResourcesFromJson(a.value("resources", json::object()));
  i.allocation.ip = a.value("ip", "");
  i.allocation.mac = a.value("mac", "");
  ASSIGN_OR_RETURN(i.state, ParseInstanceState(j.value("state", "pending")));
  i.reason = j.value("reason", "");
  i.moving_from = j.value("moving_from", "");
  return i;
}

json ServiceToJson(const ServiceRecord& s) {
  return {{"spec_yaml", s.spec_yaml}, {"version", s.version}, {"generation", s.generation}};
}
static ServiceRecord ServiceFromJsonUnchecked(const std::string& name, const json& j) {
  return {name, j.value("spec_yaml", ""), j.value("version", ""),
          j.value("generation", int64_t{0})};
}

json OperationToJson(const OperationRecord& o) {
  return {{"kind", o.kind},
          {"subject", o.subject},
          {"payload_json", o.payload_json},
          {"state", o.state},
          {"created_unix_ms", o.created_unix_ms},
          {"updated_unix_ms", o.updated_unix_ms}};
}
static OperationRecord OperationFromJsonUnchecked(const std::string& id, const json& j) {
  return {id,
          j.value("kind", ""),
          j.value("subject", ""),
          j.value("payload_json", ""),
          j.value("state", "running"),
          j.value("created_unix_ms", int64_t{0}),
          j.value("updated_unix_ms", int64_t{0})};
}

json EventToJson(const EventRecord& e) {
  return {{"unix_ms", e.unix_ms}, {"kind", EventKindName(e.kind)},
          {"service", e.service}, {"instance", e.instance},
          {"host", e.host},       {"message", e.message},
          {"json", e.json}};
}
static Result<EventRecord> EventFromJsonUnchecked(int64_t sequence, const json& j) {
  EventRecord e;
  e.sequence = sequence;
  e.unix_ms = j.value("unix_ms", int64_t{0});
  ASSIGN_OR_RETURN(e.kind, ParseEventKind(j.value("kind", "")));
  e.service = j.value("service", "");
  e.instance = j.value("instance", "");
  e.host = j.value("host", "");
  e.message = j.value("message", "");
  e.json = j.value("json", "");
  return e;
}

Result<HostRecord> HostFromJson(const std::string& name, const json& j) {
  return Decode<HostRecord>("host " + name, j, [&] { return HostFromJsonUnchecked(name, j); });
}
Result<InstanceRecord> InstanceFromJson(const std::string& name, const json& j) {
  return Decode<InstanceRecord>("instance " + name, j,
                                [&] { return InstanceFromJsonUnchecked(name, j); });
}
Result<ServiceRecord> ServiceFromJson(const std::string& name, const json& j) {
  return Decode<ServiceRecord>("service " + name, j,
                               [&] { return ServiceFromJsonUnchecked(name, j); });
}
Result<OperationRecord> OperationFromJson(const std::string& id, const json& j) {
  return Decode<OperationRecord>("operation " + id, j,
                                 [&] { return OperationFromJsonUnchecked(id, j); });
}
Result<EventRecord> EventFromJson(int64_t sequence, const json& j) {
  return Decode<EventRecord>("event " + std::to_string(sequence), j,
                             [&] { return EventFromJsonUnchecked(sequence, j); });
}

Result<json> ParseRecord(const std::string& text, const std::string& what) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Internal("store: " + what + " is corrupt");
  return j;
}

}  // namespace regen
