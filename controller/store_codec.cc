#include "controller/store_codec.h"

#include <cstdint>
#include <string>

namespace regen {

using nlohmann::json;

namespace {

// Reads the fields of one row, each with a default when absent. A field of the wrong type (a
// damaged row) gives "store: WHERE: field FIELD must be KIND, not VALUE"; the first such error is
// kept in `status` and the row is refused. Never throws (json::value would).
class RowReader {
 public:
  RowReader(const json& j, std::string where) : j_(j), where_(std::move(where)) {}

  int64_t Int(const char* key, int64_t fallback) {
    const json* v = Find(key);
    if (v == nullptr) return fallback;
    if (v->is_number_integer() && !(v->is_number_unsigned() &&
                                     v->get<uint64_t>() > uint64_t{INT64_MAX})) {
      return v->get<int64_t>();
    }
    Bad(key, "an integer", *v);
    return fallback;
  }
  std::string Str(const char* key, const char* fallback) {
    const json* v = Find(key);
    if (v == nullptr) return fallback;
    if (v->is_string()) return v->get<std::string>();
    Bad(key, "a string", *v);
    return fallback;
  }
  const json& Obj(const char* key) {
    static const json kEmpty = json::object();
    const json* v = Find(key);
    if (v == nullptr) return kEmpty;
    if (v->is_object()) return *v;
    Bad(key, "an object", *v);
    return kEmpty;
  }
  Resources Res(const char* key) {
    RowReader r(Obj(key), where_ + ": " + key);
    Resources out{r.Int("vcpus", 0), r.Int("memory_mib", 0), r.Int("disk_gib", 0),
                  r.Int("bandwidth_mbps", 0)};
    if (status_.ok()) status_ = r.status();
    return out;
  }
  const Status& status() const { return status_; }

 private:
  const json* Find(const char* key) const {
    if (!j_.is_object()) return nullptr;
    auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  void Bad(const char* key, const char* kind, const json& v) {
    if (!status_.ok()) return;
    std::string text = v.dump(-1, ' ', /*ensure_ascii=*/true, json::error_handler_t::replace);
    if (text.size() > 64) text = text.substr(0, 61) + "...";
    status_ = Internal("store: " + where_ + ": field " + key + " must be " + kind + ", not " + text);
  }

  const json& j_;
  std::string where_;
  Status status_;
};

}  // namespace

json ResourcesToJson(const Resources& r) {
  return {{"vcpus", r.vcpus},
          {"memory_mib", r.memory_mib},
          {"disk_gib", r.disk_gib},
          {"bandwidth_mbps", r.bandwidth_mbps}};
}
Result<Resources> ResourcesFromJson(const json& j) {
  RowReader r(json{{"resources", j}}, "resources");
  Resources out = r.Res("resources");
  if (!r.status().ok()) return r.status();
  return out;
}

json HostToJson(const HostRecord& h) {
  return {{"address", h.address},
          {"capacity", ResourcesToJson(h.capacity)},
          {"state", HostStateName(h.state)},
          {"last_heartbeat_unix_ms", h.last_heartbeat_unix_ms},
          {"applied_topology_revision", h.applied_topology_revision}};
}
Result<HostRecord> HostFromJson(const std::string& name, const json& j) {
  RowReader r(j, "host " + name);
  HostRecord h;
  h.name = name;
  h.address = r.Str("address", "");
  h.capacity = r.Res("capacity");
  std::string state = r.Str("state", "up");
  h.last_heartbeat_unix_ms = r.Int("last_heartbeat_unix_ms", 0);
  h.applied_topology_revision = r.Int("applied_topology_revision", 0);
  if (!r.status().ok()) return r.status();
  ASSIGN_OR_RETURN(h.state, ParseHostState(state));
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
Result<InstanceRecord> InstanceFromJson(const std::string& name, const json& j) {
  RowReader r(j, "instance " + name);
  InstanceRecord i;
  i.name = name;
  i.service = r.Str("service", "");
  i.index = r.Int("index", 0);
  i.update_domain = r.Int("update_domain", 0);
  i.version = r.Str("version", "");
  i.generation = r.Int("generation", 0);
  RowReader a(r.Obj("allocation"), "instance " + name + ": allocation");
  i.allocation.host = a.Str("host", "");
  i.allocation.resources = a.Res("resources");
  i.allocation.ip = a.Str("ip", "");
  i.allocation.mac = a.Str("mac", "");
  std::string state = r.Str("state", "pending");
  i.reason = r.Str("reason", "");
  i.moving_from = r.Str("moving_from", "");
  if (!r.status().ok()) return r.status();
  if (!a.status().ok()) return a.status();
  ASSIGN_OR_RETURN(i.state, ParseInstanceState(state));
  return i;
}

json ServiceToJson(const ServiceRecord& s) {
  return {{"spec_yaml", s.spec_yaml}, {"version", s.version}, {"generation", s.generation}};
}
Result<ServiceRecord> ServiceFromJson(const std::string& name, const json& j) {
  RowReader r(j, "service " + name);
  ServiceRecord s{name, r.Str("spec_yaml", ""), r.Str("version", ""), r.Int("generation", 0)};
  if (!r.status().ok()) return r.status();
  return s;
}

json OperationToJson(const OperationRecord& o) {
  return {{"kind", o.kind},
          {"subject", o.subject},
          {"payload_json", o.payload_json},
          {"state", o.state},
          {"created_unix_ms", o.created_unix_ms},
          {"updated_unix_ms", o.updated_unix_ms}};
}
Result<OperationRecord> OperationFromJson(const std::string& id, const json& j) {
  RowReader r(j, "operation " + id);
  OperationRecord o{id,
                    r.Str("kind", ""),
                    r.Str("subject", ""),
                    r.Str("payload_json", ""),
                    r.Str("state", "running"),
                    r.Int("created_unix_ms", 0),
                    r.Int("updated_unix_ms", 0)};
  if (!r.status().ok()) return r.status();
  return o;
}

json EventToJson(const EventRecord& e) {
  return {{"unix_ms", e.unix_ms}, {"kind", EventKindName(e.kind)},
          {"service", e.service}, {"instance", e.instance},
          {"host", e.host},       {"message", e.message},
          {"json", e.json}};
}
Result<EventRecord> EventFromJson(int64_t sequence, const json& j) {
  RowReader r(j, "event " + std::to_string(sequence));
  EventRecord e;
  e.sequence = sequence;
  e.unix_ms = r.Int("unix_ms", 0);
  std::string kind = r.Str("kind", "");
  e.service = r.Str("service", "");
  e.instance = r.Str("instance", "");
  e.host = r.Str("host", "");
  e.message = r.Str("message", "");
  e.json = r.Str("json", "");
  if (!r.status().ok()) return r.status();
  ASSIGN_OR_RETURN(e.kind, ParseEventKind(kind));
  return e;
}

Result<json> ParseRecord(const std::string& text, const std::string& what) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Internal("store: " + what + " is corrupt");
  return j;
}

}  // namespace regen
