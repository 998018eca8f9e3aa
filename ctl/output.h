// regenctl's output formatting, shared by all command groups: aligned text tables, timestamps and
// the JSON objects of `-o json`. Pure functions; called on regenctl's one thread.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "common/proto/regen.pb.h"

namespace regen::ctl {

using Json = nlohmann::ordered_json;

// Columns padded to their widest cell, two spaces apart; the last column is not padded.
class Table {
 public:
  explicit Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void Print(std::ostream& out) const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

std::string OrDash(const std::string& s);

std::string Plural(int64_t n, const std::string& what);

// "2024-05-01T12:00:00.250Z"; "-" for 0 (never).
std::string FormatUnixMillis(int64_t unix_ms);
// A maintenance's status (ctl/maintenance_cmd.cc): JSON, and one line of text.
Json MaintenanceJson(const v1::MaintenanceStatus& m);
std::string DescribeMaintenance(const v1::MaintenanceStatus& m);

Json ResourcesJson(const v1::Resources& r);
Json InstanceJson(const v1::InstanceInfo& i);
Json InstancesJson(const google::protobuf::RepeatedPtrField<v1::InstanceInfo>& instances);
void PrintInstanceTable(const google::protobuf::RepeatedPtrField<v1::InstanceInfo>& instances,
                        std::ostream& out);
Json ServiceJson(const v1::ServiceSummary& s);
Json HostJson(const v1::HostInfo& h);
Json EventJson(const v1::Event& e);
std::string EventLine(const v1::Event& e);

// The upgrade's status: the fields of `regenctl upgrade status -o json` (issue 6), and "message"
// when the controller sent one. `service` stands in when the reply does not name the service.
Json UpgradeStatusJson(const v1::UpgradeStatus& u, const std::string& service);
void PrintUpgradeStatus(const v1::UpgradeStatus& u, const std::string& service, std::ostream& out);

}  // namespace regen::ctl
