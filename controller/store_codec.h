// The JSON form of the store's records, shared by the Store implementations (SqliteStore keeps
// hosts and instances as JSON rows, EtcdStore every record as a JSON value). Pure functions; any
// thread.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"
#include "controller/store.h"

namespace regen {

nlohmann::json ResourcesToJson(const Resources& r);
Resources ResourcesFromJson(const nlohmann::json& j);

nlohmann::json HostToJson(const HostRecord& h);  // without the name (the key)
Result<HostRecord> HostFromJson(const std::string& name, const nlohmann::json& j);

nlohmann::json InstanceToJson(const InstanceRecord& i);  // without the name
Result<InstanceRecord> InstanceFromJson(const std::string& name, const nlohmann::json& j);

nlohmann::json ServiceToJson(const ServiceRecord& s);  // without the name
Result<ServiceRecord> ServiceFromJson(const std::string& name, const nlohmann::json& j);

nlohmann::json OperationToJson(const OperationRecord& o);  // without the id
Result<OperationRecord> OperationFromJson(const std::string& id, const nlohmann::json& j);

nlohmann::json EventToJson(const EventRecord& e);  // without the sequence
Result<EventRecord> EventFromJson(int64_t sequence, const nlohmann::json& j);

// Every *FromJson: INTERNAL "store: KIND NAME is corrupt: ..." when `j` is not an object, or a
// field has the wrong type (the decoders never throw), or a state name is unknown.

// Parses `text` as a JSON object; INTERNAL "store: WHAT is corrupt" otherwise.
Result<nlohmann::json> ParseRecord(const std::string& text, const std::string& what);

}  // namespace regen
