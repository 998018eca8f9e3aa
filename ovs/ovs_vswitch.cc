#include "ovs/ovs_vswitch.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "common/names.h"

namespace regen::ovs {
namespace {

using Json = nlohmann::json;

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

bool Contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

// An OVSDB string atom in ovs-vsctl syntax: always double-quoted, so any printable value passes.
std::string QuoteAtom(const std::string& value) {
  std::string out = "\"";
  for (char c : value) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string OvsType(PortType type) {
  return type == PortType::kSystem ? "system" : PortTypeName(type);
}

PortType TypeFromOvs(const std::string& type) {
  if (type == "internal") return PortType::kInternal;
  if (type == "vxlan") return PortType::kVxlan;
  if (type == "geneve") return PortType::kGeneve;
  return PortType::kSystem;
}

// An OVSDB map in JSON notation: ["map", [[k, v], ...]].
std::map<std::string, std::string> JsonMap(const Json& value) {
  std::map<std::string, std::string> out;
  if (!value.is_array() || value.size() != 2 || value[0] != "map") return out;
  for (const auto& pair : value[1])
    if (pair.is_array() && pair.size() == 2 && pair[0].is_string() && pair[1].is_string())
      out[pair[0].get<std::string>()] = pair[1].get<std::string>();
  return out;
}

// A scalar column that may be an empty set (["set", []]) when unset.
const Json* JsonScalar(const Json& value) {
  if (value.is_array()) {
    if (value.size() == 2 && value[0] == "set" && value[1].is_array() && value[1].size() == 1)
      return &value[1][0];
    return nullptr;
  }
  return &value;
}

}  // namespace

Result<std::vector<PortInfo>> ParseInterfaceTable(const std::string& text) {
  std::vector<PortInfo> ports;
  try {
    Json doc = Json::parse(text);
    const auto& headings = doc.at("headings");
    std::map<std::string, size_t> column;
    for (size_t i = 0; i < headings.size(); ++i) column[headings[i].get<std::string>()] = i;
    for (const char* needed : {"name", "ofport", "type", "options", "external_ids", "error"})
      if (!column.count(needed))
        return Internal(std::string("ovs-vsctl list Interface: no column ") + needed +
                        " in the JSON output");
    for (const auto& row : doc.at("data")) {
      PortInfo p;
      p.name = row.at(column["name"]).get<std::string>();
      if (const Json* ofport = JsonScalar(row.at(column["ofport"]));
          ofport != nullptr && ofport->is_number_integer())
        p.ofport = ofport->get<int64_t>();
      p.ovs_type = row.at(column["type"]).get<std::string>();
      p.type = TypeFromOvs(p.ovs_type);
      p.options = JsonMap(row.at(column["options"]));
      p.external_ids = JsonMap(row.at(column["external_ids"]));
      if (const Json* error = JsonScalar(row.at(column["error"]));
          error != nullptr && error->is_string())
        p.error = error->get<std::string>();
      ports.push_back(std::move(p));
    }
  } catch (const Json::exception& e) {
    return Internal(std::string("cannot parse ovs-vsctl JSON output: ") + e.what() + " in " +
                    QuoteValue(text));
  }
  std::sort(ports.begin(), ports.end(),
            [](const PortInfo& a, const PortInfo& b) { return a.name < b.name; });
  return ports;
}

OvsVSwitch::OvsVSwitch(CommandRunner& runner, OvsVSwitchOptions options)
    : runner_(runner), options_(std::move(options)) {}

std::string OvsVSwitch::OfctlTarget(const std::string& bridge) const {
  return "unix:" + options_.run_dir + "/" + bridge + ".mgmt";
}

std::vector<std::string> OvsVSwitch::VsctlPrefix() const {
  const auto seconds = std::max<int64_t>(1, (options_.timeout.count() + 999) / 1000);
  return {"ovs-vsctl", "--db=unix:" + options_.db_socket, "--timeout=" + std::to_string(seconds)};
}

Result<CommandOutput> OvsVSwitch::Run(const std::string& what, const std::vector<std::string>& argv,
                                      const std::string& input) {
  const bool vsctl = argv.at(0) == "ovs-vsctl";
  const std::string daemon_hint =
      vsctl ? "is ovsdb-server running with --remote=punix:" + options_.db_socket +
                  ", and ovs-vswitchd connected to it? (ovs-vsctl waits for ovs-vswitchd to apply "
                  "a change)"
            : "is ovs-vswitchd running with OVS_RUNDIR=" + options_.run_dir +
                  ", and does the bridge exist?";
  // ovs-vsctl gives up by itself after --timeout; the runner's deadline is the backstop.
  auto out = runner_.Run(argv, options_.timeout + std::chrono::seconds(vsctl ? 2 : 0), input);
  if (!out.ok()) {
    if (out.status().code() == Code::kDeadlineExceeded)
      return DeadlineExceeded(what + ": " + out.status().message() + "; " + daemon_hint);
    return Status(out.status().code(),
                  what + ": " + out.status().message() +
                      " (Open vSwitch not installed? Debian package openvswitch-switch)");
  }
  if (out->exit_code == 0) return out;
  const std::string err = Trim(out->stderr_text);
  const std::string message = what + ": " + FormatArgv(argv) + " exited with " +
                              std::to_string(out->exit_code) + (err.empty() ? "" : ": " + err);
  if (Contains(err, "no bridge named")) return NotFound(message);
  if (out->exit_code < 0 || Contains(err, "connection failed") || Contains(err, "connecting to") ||
      Contains(err, "Connection refused") || Contains(err, "No such file or directory") ||
      Contains(err, "imeout") || Contains(err, "Alarm clock"))
    return Unavailable(message + "; " + daemon_hint);
  return Internal(message);
}

Status OvsVSwitch::EnsureBridge(const std::string& bridge) {
  RETURN_IF_ERROR(ValidateSwitchName("bridge", bridge));
  auto argv = VsctlPrefix();
  argv.insert(argv.end(), {"--", "--may-exist", "add-br", bridge, "--", "set", "Bridge", bridge,
                           "datapath_type=" + options_.datapath_type, "fail_mode=secure",
                           "protocols=OpenFlow10,OpenFlow13,OpenFlow14"});
  return Run("bridge " + bridge + ": ensure bridge", argv).status();
}

Status OvsVSwitch::DeleteBridge(const std::string& bridge) {
  RETURN_IF_ERROR(ValidateSwitchName("bridge", bridge));
  auto argv = VsctlPrefix();
  argv.insert(argv.end(), {"--", "--if-exists", "del-br", bridge});
  return Run("bridge " + bridge + ": delete bridge", argv).status();
}

Result<std::vector<std::string>> OvsVSwitch::ListBridges() {
  auto argv = VsctlPrefix();
  argv.insert(argv.end(), {"--", "list-br"});
  ASSIGN_OR_RETURN(CommandOutput out, Run("list bridges", argv));
  std::vector<std::string> bridges;
  size_t start = 0;
  const std::string& text = out.stdout_text;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string::npos) nl = text.size();
    if (nl > start) bridges.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return bridges;
}

Result<std::vector<PortInfo>> OvsVSwitch::ListPorts(const std::string& bridge) {
  RETURN_IF_ERROR(ValidateSwitchName("bridge", bridge));
  // One invocation, one snapshot: the bridge's interface names, then every Interface row.
  auto argv = VsctlPrefix();
  argv.insert(argv.end(),
              {"--format=json", "--", "list-ifaces", bridge, "--",
               "--columns=name,ofport,type,options,external_ids,error", "list", "Interface"});
  ASSIGN_OR_RETURN(CommandOutput out, Run("bridge " + bridge + ": list ports", argv));
  const std::string& text = out.stdout_text;
  std::set<std::string> names;
  size_t start = 0;
  while (start < text.size() && text[start] != '{') {
    size_t nl = text.find('\n', start);
    if (nl == std::string::npos) nl = text.size();
    if (nl > start) names.insert(text.substr(start, nl - start));
    start = nl + 1;
  }
  if (start >= text.size())
    return Internal("bridge " + bridge + ": list ports: no Interface table in the output of " +
                    FormatArgv(argv) + ": " + QuoteValue(text));
  auto all = ParseInterfaceTable(text.substr(start));
  if (!all.ok()) return all.status().WithContext("bridge " + bridge + ": list ports");
  std::vector<PortInfo> ports;
  for (auto& p : *all)
    if (names.count(p.name)) ports.push_back(std::move(p));
  return ports;
}

Result<PortInfo> OvsVSwitch::EnsurePort(const std::string& bridge, const PortSpec& port) {
  RETURN_IF_ERROR(ValidateSwitchName("bridge", bridge));
  RETURN_IF_ERROR(ValidatePortSpec(port));
  const std::string what = "bridge " + bridge + " port " + port.name;
  ASSIGN_OR_RETURN(std::vector<PortInfo> before, ListPorts(bridge));
  const bool existed = std::any_of(before.begin(), before.end(),
                                   [&](const PortInfo& p) { return p.name == port.name; });

  auto argv = VsctlPrefix();
  argv.insert(argv.end(), {"--", "--may-exist", "add-port", bridge, port.name, "--", "set",
                           "Interface", port.name, "type=" + OvsType(port.type)});
  std::string options;
  if (port.type == PortType::kVxlan || port.type == PortType::kGeneve) {
    options = "remote_ip=" + port.remote_ip;
    if (!port.local_ip.empty()) options += ",local_ip=" + port.local_ip;
    if (!port.key.empty()) options += ",key=" + port.key;
    if (port.dst_port != 0) options += ",dst_port=" + std::to_string(port.dst_port);
  }
  argv.push_back("options={" + options + "}");
  if (port.ofport_request != 0)
    argv.push_back("ofport_request=" + std::to_string(port.ofport_request));
  for (const auto& [key, value] : port.external_ids)
    argv.push_back("external_ids:" + key + "=" + QuoteAtom(value));
  RETURN_IF_ERROR(Run(what + ": " + (existed ? "update" : "add") + " port", argv).status());

  auto rollback = [&](Status error) -> Status {
    if (existed) return error;
    Status removed = RemovePort(bridge, port.name);
    return Status(
        error.code(),
        error.message() + (removed.ok() ? "; the port was removed again"
                                        : "; removing it again failed too: " + removed.ToString()));
  };
  ASSIGN_OR_RETURN(std::vector<PortInfo> after, ListPorts(bridge));
  auto it = std::find_if(after.begin(), after.end(),
                         [&](const PortInfo& p) { return p.name == port.name; });
  if (it == after.end())
    return rollback(Internal(what + ": not on the bridge after ovs-vsctl add-port succeeded"));
  if (!it->error.empty() || it->ofport < 0)
    return rollback(FailedPrecondition(
        what + ": Open vSwitch cannot use the interface: " +
        (it->error.empty() ? "no ofport assigned" : it->error) +
        (port.type == PortType::kSystem ? " (a system port needs an existing device)" : "")));
  if (port.ofport_request != 0 && it->ofport != port.ofport_request) {
    std::string holder;
    for (const auto& p : after)
      if (p.ofport == port.ofport_request) holder = p.name;
    return rollback(FailedPrecondition(
        what + ": asked for ofport " + std::to_string(port.ofport_request) + " but got " +
        std::to_string(it->ofport) + (holder.empty() ? "" : " (port " + holder + " holds it)") +
        "; flows name ports by number, pick a free ofport_request"));
  }
  return *it;
}

Status OvsVSwitch::RemovePort(const std::string& bridge, const std::string& port) {
  RETURN_IF_ERROR(ValidateSwitchName("bridge", bridge));
  RETURN_IF_ERROR(ValidateSwitchName("port", port));
  auto argv = VsctlPrefix();
  argv.insert(argv.end(), {"--", "--if-exists", "del-port", bridge, port});
  return Run("bridge " + bridge + " port " + port + ": remove port", argv).status();
}

Result<std::vector<Flow>> OvsVSwitch::DumpFlows(const std::string& bridge) {
  RETURN_IF_ERROR(ValidateSwitchName("bridge", bridge));
  ASSIGN_OR_RETURN(CommandOutput out,
                   Run("bridge " + bridge + ": dump flows", DumpFlowsArgv(OfctlTarget(bridge))));
  auto flows = ParseDumpFlows(out.stdout_text);
  if (!flows.ok()) return flows.status().WithContext("bridge " + bridge + ": dump flows");
  return flows;
}

Status OvsVSwitch::ApplyPlan(const std::string& bridge, const FlowPlan& plan) {
  RETURN_IF_ERROR(ValidateSwitchName("bridge", bridge));
  const std::string what = "bridge " + bridge + ": apply " + PlanModeName(plan.mode) + " plan (" +
                           std::to_string(plan.changes()) + " changes, " +
                           std::to_string(plan.desired.size()) + " desired flows)";
  for (const auto& command : RenderPlan(plan, OfctlTarget(bridge)))
    RETURN_IF_ERROR(Run(what, command.argv, command.input).status());
  return Status::Ok();
}

}  // namespace regen::ovs
