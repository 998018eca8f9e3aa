#include "controller/store_codec.h"

#include <cstdint>
#include <string>

namespace regen {

using nlohmann::json;

namespace {

// Reads the fields of one row, each with a default when absent or null. A row that is not an
// object, or a field of the wrong type (a damaged row), gives "store: ROW is corrupt: field FIELD
// must be KIND, not VALUE"; the first such error is kept in status() and the row is refused. Never
// throws (json::value() would), and never converts a float to an integer (1e300 was undefined
// behaviour in nlohmann's conversion).
class RowReader {
 public:
  RowReader(const json& j, std::string row, std::string prefix = "")
      : j_(j), row_(std::move(row)), prefix_(std::move(prefix)) {
    if (!j_.is_object()) {
      status_ = Internal("store: " + row_ + " is corrupt: " +
                         (prefix_.empty() ? std::string("not a JSON object")
                                          : "field " + prefix_ + " must be an object"));
    }
  }

  int64_t Int(const char* key, int64_t fallback) {
    const json* v = Find(key);
    if (v == nullptr) return fallback;
    if (v->is_number_integer() &&
        !(v->is_number_unsigned() && v->get<uint64_t>() > uint64_t{INT64_MAX})) {
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
  // A nested object read with its own reader, whose errors end up in this one's status().
  template <typename F>
  auto Nested(const char* key, F&& read) {
    static const json kEmpty = json::object();
    const json* v = Find(key);
    RowReader inner(v == nullptr ? kEmpty : *v, row_, Path(key));
    auto out = read(inner);
    if (status_.ok()) status_ = inner.status_;
    return out;
  }
  Resources Res(const char* key) {
    return Nested(key, [](RowReader& r) {
      return Resources{r.Int("vcpus", 0), r.Int("memory_mib", 0), r.Int("disk_gib", 0),
                       r.Int("bandwidth_mbps", 0)};
    });
  }
  const Status& status() const { return status_; }

 private:
  std::string Path(const char* key) const { return prefix_.empty() ? key : prefix_ + "." + key; }
  const json* Find(const char* key) const {
    if (!j_.is_object()) return nullptr;
    auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  void Bad(const char* key, const char* kind, const json& v) {
    if (!status_.ok()) return;
    std::string text = v.dump(-1, ' ', /*ensure_ascii=*/true, json::error_handler_t::replace);
    if (text.size() > 64) text = text.substr(0, 61) + "...";
    status_ = Internal("store: " + row_ + " is corrupt: field " + Path(key) + " must be " + kind +
                       ", not " + text);
  }

  const json& j_;
  std::string row_;
  std::string prefix_;
  Status status_;
};

}  // namespace

json ResourcesToJson(const Resources& r) {
  return {{"vcpus", r.vcpus},
          {"memory_mib", r.memory_mib},
          {"disk_gib", r.disk_gib},
          {"bandwidth_mbps", r.bandwidth_mbps}};
}
// Fields of the wrong type read as 0 here; the row decoders below refuse them.
Resources ResourcesFromJson(const json& j) {
  RowReader r(j, "resources");
  return {r.Int("vcpus", 0), r.Int("memory_mib", 0), r.Int("disk_gib", 0),
          r.Int("bandwidth_mbps", 0)};
}

json HostToJson(const HostRecord& h) {
  return {{"address", h.address},
          {"capacity", ResourcesToJson(h.capacity)},
          {"state", HostStateName(h.state)},
          {"last_heartbeat_unix_ms", h.last_heartbeat_unix_ms},
          {"applied_topology_revision", h.applied_topology_revision},
          {"domain_type", h.domain_type},
          {"domain_type_reason", h.domain_type_reason},
          {"held", HostStateName(h.held)}};
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
  h.domain_type = r.Str("domain_type", "");  // absent before issue 16
  h.domain_type_reason = r.Str("domain_type_reason", "");
  std::string held = r.Str("held", "up");  // absent before issue 15: up
  if (!r.status().ok()) return r.status();
  auto parsed = ParseHostState(state);
  if (!parsed.ok()) return parsed.status().WithContext("store: host " + name);
  h.state = *parsed;
  auto parsed_held = ParseHostState(held);
  if (!parsed_held.ok()) return parsed_held.status().WithContext("store: host " + name + " held");
  h.held = *parsed_held;
  if (h.held != HostState::kUp && h.held != HostState::kCordoned &&
      h.held != HostState::kDraining) {
    return InvalidArgument("store: host " + name + ": held is \"" + held +
                           "\"; must be up, cordoned or draining");
  }
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
  i.allocation = r.Nested("allocation", [](RowReader& a) {
    Allocation out;
    out.host = a.Str("host", "");
    out.resources = a.Res("resources");
    out.ip = a.Str("ip", "");
    out.mac = a.Str("mac", "");
    return out;
  });
  std::string state = r.Str("state", "pending");
  i.reason = r.Str("reason", "");
  i.moving_from = r.Str("moving_from", "");
  if (!r.status().ok()) return r.status();
  auto parsed = ParseInstanceState(state);
  if (!parsed.ok()) return parsed.status().WithContext("store: instance " + name);
  i.state = *parsed;
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
  auto parsed = ParseEventKind(kind);
  if (!parsed.ok()) return parsed.status().WithContext("store: event " + std::to_string(sequence));
  e.kind = *parsed;
  return e;
}

Result<json> ParseRecord(const std::string& text, const std::string& what) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Internal("store: " + what + " is corrupt");
  return j;
}

}  // namespace regen
