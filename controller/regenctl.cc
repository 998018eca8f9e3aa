#include "controller/regenctl.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/admin_client.h"
#include "common/names.h"
#include "config/fields.h"
#include "config/service_spec.h"

namespace regen {

namespace {

using Json = nlohmann::ordered_json;

constexpr const char* kDefaultController = "127.0.0.1:7400";
constexpr const char* kUnreachableHint =
    "is regen-controller running? set --controller or REGEN_CONTROLLER";

// Everything the command line sets.
struct Args {
  std::string controller = kDefaultController;
  double timeout_seconds = 10;
  std::string output = "text";
  std::string file;             // service apply
  std::string name;             // service show, host drain, failover (the instance), upgrade
  std::string service;          // instance list --service
  std::string to_host;          // failover --to
  int64_t after = 0;            // events --after
  bool follow = false;          // events --follow
  std::string to_version;       // upgrade start --to-version
  std::string mode = "auto";    // upgrade start --mode
  bool force = false;           // upgrade next-ud --force
  std::string ca;               // --ca / REGEN_CA: TLS with this CA (else plaintext)
  std::string cert;             // --cert / REGEN_CERT: client certificate
  std::string key;              // --key / REGEN_KEY: its private key
  std::string token_file;       // --token-file / REGEN_TOKEN_FILE: bearer token
  std::string tls_server_name;  // --tls-server-name: the name in the controller's certificate
};

std::string EnvOr(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

// Checks the credential flags and fills `options` (TLS files, token). Nothing is sent on error.
Status CredentialOptions(const Args& a, AdminClientOptions* options, std::ostream& err) {
  if (!a.cert.empty() && a.key.empty()) {
    return InvalidArgument("--cert " + QuoteValue(a.cert) +
                           " needs --key (or REGEN_KEY): the certificate's private key");
  }
  if (!a.key.empty() && a.cert.empty()) {
    return InvalidArgument("--key " + QuoteValue(a.key) +
                           " needs --cert (or REGEN_CERT): the client certificate it belongs to");
  }
  if (!a.cert.empty() && a.ca.empty()) {
    return InvalidArgument(
        "--cert needs --ca (or REGEN_CA): the CA that signed the "
        "controller's certificate (a client certificate only works over TLS)");
  }
  if (!a.tls_server_name.empty() && a.ca.empty()) {
    return InvalidArgument("--tls-server-name needs --ca (or REGEN_CA): it only matters over TLS");
  }
  const std::pair<const char*, std::string> files[] = {
      {"--ca", a.ca}, {"--cert", a.cert}, {"--key", a.key}};
  for (const auto& [flag, path] : files) {
    if (path.empty()) continue;
    if (Result<std::string> pem = ReadPemFile(path, flag); !pem.ok()) return pem.status();
  }
  if (!a.token_file.empty()) {
    Result<std::string> text = ReadConfigFile(a.token_file);
    if (!text.ok()) return InvalidArgument("--token-file: " + text.status().message());
    std::string token = *text;
    token.erase(0, token.find_first_not_of(" \t\r\n"));
    token.erase(token.find_last_not_of(" \t\r\n") + 1);
    if (token.empty()) {
      return InvalidArgument("--token-file " + QuoteValue(a.token_file) +
                             " is empty (it must hold the token the controller's auth.tokens "
                             "file holds)");
    }
    if (token.find_first_of(" \t\r\n") != std::string::npos) {
      return InvalidArgument("--token-file " + QuoteValue(a.token_file) +
                             " holds more than one word (it must hold only the token)");
    }
    options->token = std::move(token);
    if (a.ca.empty()) {
      err << "regenctl: warning: sending the token without TLS (no --ca): anyone on the path "
             "can read it\n";
    }
  }
  options->tls = {a.ca, a.cert, a.key, a.tls_server_name};
  return Status::Ok();
}

// One leaf command: local checks (nothing is sent when they fail), then the RPCs.
struct Command {
  CLI::App* app = nullptr;
  std::string path;  // "service apply"
  std::function<Status()> check;
  std::function<Status(AdminClient&)> run;
};

// ---- formatting ----

// Columns padded to their widest cell, two spaces apart; the last column is not padded.
class Table {
 public:
  explicit Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void Print(std::ostream& out) const {
    std::vector<size_t> widths;
    for (const auto& row : rows_) {
      if (widths.size() < row.size()) widths.resize(row.size(), 0);
      for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
    }
    for (const auto& row : rows_) {
      std::string line;
      for (size_t i = 0; i < row.size(); ++i) {
        if (i > 0) line += "  ";
        line += row[i];
        if (i + 1 < row.size()) line.append(widths[i] - row[i].size(), ' ');
      }
      line.erase(line.find_last_not_of(' ') + 1);  // an empty last cell leaves no padding
      out << line << "\n";
    }
  }

 private:
  std::vector<std::vector<std::string>> rows_;
};

std::string OrDash(const std::string& s) { return s.empty() ? "-" : s; }

std::string Plural(int64_t n, const std::string& what) {
  return std::to_string(n) + " " + what + (n == 1 ? "" : "s");
}

// "2024-05-01T12:00:00.250Z"; "-" for 0 (never).
std::string FormatUnixMillis(int64_t unix_ms) {
  if (unix_ms == 0) return "-";
  int64_t seconds = unix_ms / 1000;
  int64_t millis = unix_ms % 1000;
  if (millis < 0) {
    millis += 1000;
    seconds -= 1;
  }
  std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr) return std::to_string(unix_ms);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(millis));
  return buf;
}

Json ResourcesJson(const v1::Resources& r) {
  return Json{{"vcpus", r.vcpus()},
              {"memory_mib", r.memory_mib()},
              {"disk_gib", r.disk_gib()},
              {"bandwidth_mbps", r.bandwidth_mbps()}};
}

Json InstanceJson(const v1::InstanceInfo& i) {
  Json j{{"name", i.name()},
         {"service", i.service()},
         {"update_domain", i.update_domain()},
         {"version", i.version()},
         {"host", i.host()},
         {"state", i.state()},
         {"generation", i.generation()},
         {"vcpus", i.resources().vcpus()},
         {"memory_mib", i.resources().memory_mib()},
         {"disk_gib", i.resources().disk_gib()},
         {"bandwidth_mbps", i.resources().bandwidth_mbps()},
         {"ip", i.ip()},
         {"mac", i.mac()}};
  if (!i.reason().empty()) j["reason"] = i.reason();
  if (!i.health().empty()) j["health"] = i.health();  // none | unknown | passing | failing
  return j;
}

Json InstancesJson(const google::protobuf::RepeatedPtrField<v1::InstanceInfo>& instances) {
  Json array = Json::array();
  for (const auto& i : instances) array.push_back(InstanceJson(i));
  return array;
}

void PrintInstanceTable(const google::protobuf::RepeatedPtrField<v1::InstanceInfo>& instances,
                        std::ostream& out) {
  bool any_reason = std::any_of(instances.begin(), instances.end(),
                                [](const v1::InstanceInfo& i) { return !i.reason().empty(); });
  std::vector<std::string> header = {"NAME",      "SERVICE", "UD",    "VERSION",    "HOST",
                                     "STATE",     "GEN",     "VCPUS", "MEMORY_MIB", "DISK_GIB",
                                     "BANDWIDTH", "IP",      "MAC"};
  if (any_reason) header.push_back("REASON");  // last: it may contain spaces
  Table table(header);
  for (const auto& i : instances) {
    std::vector<std::string> row = {i.name(),
                                    i.service(),
                                    std::to_string(i.update_domain()),
                                    OrDash(i.version()),
                                    OrDash(i.host()),
                                    OrDash(i.state()),
                                    std::to_string(i.generation()),
                                    std::to_string(i.resources().vcpus()),
                                    std::to_string(i.resources().memory_mib()),
                                    std::to_string(i.resources().disk_gib()),
                                    std::to_string(i.resources().bandwidth_mbps()),
                                    OrDash(i.ip()),
                                    OrDash(i.mac())};
    if (any_reason) row.push_back(i.reason());
    table.Add(std::move(row));
  }
  table.Print(out);
}

Json ServiceJson(const v1::ServiceSummary& s) {
  return Json{{"name", s.name()},       {"instances", s.instances()},
              {"running", s.running()}, {"update_domains", s.update_domains()},
              {"version", s.version()}, {"flavor", ResourcesJson(s.flavor())},
              {"subnet", s.subnet()},   {"dns_name", s.dns_name()}};
}

Json HostJson(const v1::HostInfo& h) {
  return Json{{"name", h.name()},
              {"address", h.address()},
              {"state", h.state()},
              {"capacity", ResourcesJson(h.capacity())},
              {"allocated", ResourcesJson(h.allocated())},
              {"last_heartbeat_unix_ms", h.last_heartbeat_unix_ms()},
              {"applied_topology_revision", h.applied_topology_revision()}};
}

Json EventJson(const v1::Event& e) {
  Json j{{"sequence", e.sequence()}, {"unix_ms", e.unix_ms()},   {"kind", e.kind()},
         {"service", e.service()},   {"instance", e.instance()}, {"host", e.host()},
         {"message", e.message()}};
  if (!e.json().empty()) {
    Json detail = Json::parse(e.json(), nullptr, /*allow_exceptions=*/false);
    if (detail.is_discarded()) {
      j["json"] = e.json();  // not JSON: kept as the controller sent it
    } else {
      j["detail"] = std::move(detail);
    }
  }
  return j;
}

std::string EventLine(const v1::Event& e) {
  auto pad = [](const std::string& s, size_t width) {
    return s.size() >= width ? s : s + std::string(width - s.size(), ' ');
  };
  return pad(std::to_string(e.sequence()), 6) + " " + FormatUnixMillis(e.unix_ms()) + " " +
         pad(OrDash(e.kind()), 12) + " " + pad(OrDash(e.service()), 12) + " " +
         pad(OrDash(e.instance()), 14) + " " + pad(OrDash(e.host()), 12) + " " + e.message();
}

// The upgrade's status: the fields of `regenctl upgrade status -o json` (issue 6), and "message"
// when the controller sent one. `service` stands in when the reply does not name the service.
Json UpgradeStatusJson(const v1::UpgradeStatus& u, const std::string& service) {
  Json upgraded = Json::array();
  for (int64_t ud : u.upgraded_uds()) upgraded.push_back(ud);
  Json healing = Json::array();
  for (const auto& i : u.healing_in_progress()) healing.push_back(i);
  Json j{{"service", u.service().empty() ? service : u.service()},
         {"from_version", u.from_version()},
         {"to_version", u.to_version()},
         {"mode", u.mode()},
         {"state", u.state()},
         {"current_ud", u.current_ud()},
         {"upgraded_uds", std::move(upgraded)},
         {"healing_in_progress", std::move(healing)},
         {"started_at", u.started_at_unix_ms()},
         {"updated_at", u.updated_at_unix_ms()}};
  if (!u.message().empty()) j["message"] = u.message();
  return j;
}

// "a, b, c"; "none" when there is nothing.
template <typename Items>
std::string JoinOrNone(const Items& items) {
  std::string text;
  for (const auto& item : items) {
    if (!text.empty()) text += ", ";
    if constexpr (std::is_same_v<std::decay_t<decltype(item)>, std::string>) {
      text += item;
    } else {
      text += std::to_string(item);
    }
  }
  return text.empty() ? "none" : text;
}

void PrintUpgradeStatus(const v1::UpgradeStatus& u, const std::string& service, std::ostream& out) {
  out << "service " << (u.service().empty() ? service : u.service()) << ": upgrade "
      << OrDash(u.from_version()) << " -> " << OrDash(u.to_version()) << " (" << OrDash(u.mode())
      << ") " << OrDash(u.state()) << " at UD " << u.current_ud() << "\n"
      << "upgraded UDs: " << JoinOrNone(u.upgraded_uds()) << "\n"
      << "healing:      " << JoinOrNone(u.healing_in_progress()) << "\n"
      << "started:      " << FormatUnixMillis(u.started_at_unix_ms()) << "\n"
      << "updated:      " << FormatUnixMillis(u.updated_at_unix_ms()) << "\n";
  if (!u.message().empty()) out << "message:      " << u.message() << "\n";
}

// ---- checks ----

Status CheckName(const std::string& what, const std::string& value) {
  if (IsValidName(value)) return Status::Ok();
  return InvalidArgument(what + " " + QuoteValue(value) +
                         " is not a valid name ([a-z][a-z0-9-]{0,62})");
}

// Version names as the service spec loader takes them (config/service_spec.cc, which does not
// export its check): [a-z0-9][a-z0-9._-]{0,62}.
bool IsValidVersionName(const std::string& v) {
  if (v.empty() || v.size() > 63) return false;
  for (size_t i = 0; i < v.size(); ++i) {
    char c = v[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              (i > 0 && (c == '.' || c == '_' || c == '-'));
    if (!ok) return false;
  }
  return true;
}

Status CheckVersion(const std::string& what, const std::string& value) {
  if (IsValidVersionName(value)) return Status::Ok();
  return InvalidArgument(what + " " + QuoteValue(value) +
                         " is not a valid version name ([a-z0-9][a-z0-9._-]{0,62})");
}

bool IsUnreachable(const Status& s) {
  return s.code() == Code::kUnavailable || s.code() == Code::kDeadlineExceeded;
}

// "web" from "web-12" (instances are named SERVICE-INDEX); "" when the name has no such form.
std::string ServiceOfInstance(const std::string& instance) {
  size_t dash = instance.rfind('-');
  if (dash == std::string::npos || dash == 0 || dash + 1 == instance.size()) return "";
  for (size_t i = dash + 1; i < instance.size(); ++i) {
    if (instance[i] < '0' || instance[i] > '9') return "";
  }
  return instance.substr(0, dash);
}

// ---- the command line ----

std::vector<CLI::App*> Subcommands(CLI::App* app) {
  return app->get_subcommands([](const CLI::App*) { return true; });
}

const CLI::Option* FindOption(CLI::App* level, const std::string& name) {
  for (CLI::App* a = level; a != nullptr; a = a->get_parent()) {
    if (const CLI::Option* opt = a->get_option_no_throw(name)) return opt;
  }
  return nullptr;
}

struct CommandWalk {
  std::string path;     // the deepest command named, "service apply"
  std::string unknown;  // an error message when a word is not a command at its level
  std::string missing;  // an error message when the words stop before a leaf command
};

std::string CommandNames(CLI::App* level) {
  std::string names;
  for (const CLI::App* s : Subcommands(level)) names += (names.empty() ? "" : ", ") + s->get_name();
  return names;
}

std::string HelpHint(const std::string& path) {
  return "see regenctl " + (path.empty() ? "" : path + " ") + "--help";
}

// Walks argv as CLI11 will, to name an unknown command clearly (CLI11 would only say that an
// argument was not expected) and to know which command a parse error is about.
CommandWalk WalkCommands(CLI::App& app, int argc, char** argv) {
  CommandWalk walk;
  CLI::App* level = &app;
  for (int i = 1; i < argc; ++i) {
    std::string word = argv[i];
    if (word == "--") break;
    if (word.size() > 1 && word[0] == '-') {
      if (word.find('=') != std::string::npos) continue;
      if (word[1] != '-' && word.size() > 2) continue;  // "-ojson"
      const CLI::Option* opt = FindOption(level, word);
      if (opt != nullptr && opt->get_items_expected_max() > 0) ++i;  // skip its value
      continue;
    }
    std::vector<CLI::App*> subs = Subcommands(level);
    if (subs.empty()) break;  // a leaf: the rest are its arguments
    auto it = std::find_if(subs.begin(), subs.end(),
                           [&](const CLI::App* s) { return s->get_name() == word; });
    if (it == subs.end()) {
      walk.unknown = (walk.path.empty() ? "" : walk.path + ": ") + "unknown command " +
                     QuoteValue(word) + " (commands: " + CommandNames(level) + "; " +
                     HelpHint(walk.path) + ")";
      return walk;
    }
    level = *it;
    walk.path += (walk.path.empty() ? "" : " ") + word;
  }
  if (!Subcommands(level).empty()) {
    walk.missing = (walk.path.empty() ? "" : walk.path + ": ") +
                   "which command? (commands: " + CommandNames(level) + "; " + HelpHint(walk.path) +
                   ")";
  }
  return walk;
}

void AddOutputOption(CLI::App* app, Args& a) {
  app->add_option("-o,--output", a.output, "output format: text or json");
}

}  // namespace

int RegenctlMain(int argc, char** argv, std::ostream& out, std::ostream& err) {
  Args a;
  if (const char* env = std::getenv("REGEN_CONTROLLER"); env != nullptr && *env != '\0') {
    a.controller = env;
  }
  a.ca = EnvOr("REGEN_CA");
  a.cert = EnvOr("REGEN_CERT");
  a.key = EnvOr("REGEN_KEY");
  a.token_file = EnvOr("REGEN_TOKEN_FILE");
  CLI::App app{
      "regenctl: the Regen cluster CLI (services, instances, hosts, failover, events, upgrades)",
      "regenctl"};
  app.fallthrough();  // global options are accepted after the command too
  app.require_subcommand(1);
  app.add_option("--controller", a.controller,
                 "controller address host:port (default: $REGEN_CONTROLLER, else " +
                     std::string(kDefaultController) + ")");
  app.add_option("--timeout", a.timeout_seconds, "seconds to wait for each reply")
      ->capture_default_str();
  app.add_option("--ca", a.ca,
                 "CA certificate (PEM) that signed the controller's certificate: talk TLS "
                 "(default: $REGEN_CA; without it, plaintext)");
  app.add_option("--cert", a.cert, "client certificate (PEM), with --key (default: $REGEN_CERT)");
  app.add_option("--key", a.key, "the client certificate's private key (default: $REGEN_KEY)");
  app.add_option("--token-file", a.token_file,
                 "file holding a bearer token of the controller's auth.tokens (default: "
                 "$REGEN_TOKEN_FILE)");
  app.add_option("--tls-server-name", a.tls_server_name,
                 "the name the controller's certificate carries, when it is not the host of "
                 "--controller");
  AddOutputOption(&app, a);

  std::vector<Command> commands;
  std::string apply_text;  // the service file, as checked and as sent
  std::string apply_name;

  auto* service = app.add_subcommand("service", "services: apply, list, show");
  service->require_subcommand(1);
  {
    auto* c = service->add_subcommand("apply", "create or update a service from its spec (YAML)");
    c->add_option("-f,--file,FILE", a.file, "the service spec, e.g. service.yaml")->required();
    commands.push_back(
        {c, "service apply",
         [&]() -> Status {
           ASSIGN_OR_RETURN(apply_text, ReadConfigFile(a.file));
           ASSIGN_OR_RETURN(ServiceSpec spec, ParseServiceSpec(apply_text, a.file));
           apply_name = spec.name;
           return Status::Ok();
         },
         [&](AdminClient& client) -> Status {
           v1::ApplyServiceRequest request;
           request.set_operation_id(NewOperationId());
           request.set_spec_yaml(apply_text);
           request.set_file_name(a.file);
           ASSIGN_OR_RETURN(auto r, client.ApplyService(request));
           std::string name = r.service().empty() ? apply_name : r.service();
           if (a.output == "json") {
             Json j{{"service", name}, {"created", r.created()}, {"pending", Json::array()}};
             for (const auto& p : r.pending()) j["pending"].push_back(p);
             out << j.dump(2) << "\n";
             return Status::Ok();
           }
           out << "service " << name << " " << (r.created() ? "created" : "updated") << "\n";
           if (r.pending_size() > 0) {
             out << Plural(r.pending_size(), "instance") << " pending:\n";
             for (const auto& p : r.pending()) out << "  " << p << "\n";
           }
           return Status::Ok();
         }});
  }
  {
    auto* c = service->add_subcommand("list", "list services");
    commands.push_back(
        {c, "service list", [] { return Status::Ok(); },
         [&](AdminClient& client) -> Status {
           ASSIGN_OR_RETURN(auto r, client.ListServices());
           if (a.output == "json") {
             Json array = Json::array();
             for (const auto& s : r.services()) array.push_back(ServiceJson(s));
             out << array.dump(2) << "\n";
             return Status::Ok();
           }
           Table table({"NAME", "INSTANCES", "RUNNING", "UDS", "VERSION", "VCPUS", "MEMORY_MIB",
                        "DISK_GIB", "SUBNET", "DNS"});
           for (const auto& s : r.services()) {
             table.Add({s.name(), std::to_string(s.instances()), std::to_string(s.running()),
                        std::to_string(s.update_domains()), OrDash(s.version()),
                        std::to_string(s.flavor().vcpus()), std::to_string(s.flavor().memory_mib()),
                        std::to_string(s.flavor().disk_gib()), OrDash(s.subnet()),
                        OrDash(s.dns_name())});
           }
           table.Print(out);
           return Status::Ok();
         }});
  }
  {
    auto* c = service->add_subcommand("show", "show a service: summary, instances and spec");
    c->add_option("NAME", a.name, "the service")->required();
    commands.push_back({c, "service show", [&] { return CheckName("NAME", a.name); },
                        [&](AdminClient& client) -> Status {
                          v1::GetServiceRequest request;
                          request.set_name(a.name);
                          ASSIGN_OR_RETURN(auto r, client.GetService(request));
                          const v1::ServiceSummary& s = r.service();
                          if (a.output == "json") {
                            Json j{{"service", ServiceJson(s)},
                                   {"instances", InstancesJson(r.instances())},
                                   {"spec_yaml", r.spec_yaml()}};
                            out << j.dump(2) << "\n";
                            return Status::Ok();
                          }
                          out << "name:            " << s.name() << "\n"
                              << "version:         " << OrDash(s.version()) << "\n"
                              << "instances:       " << s.instances() << " (" << s.running()
                              << " running)\n"
                              << "update domains:  " << s.update_domains() << "\n"
                              << "flavor:          " << Plural(s.flavor().vcpus(), "vCPU") << ", "
                              << s.flavor().memory_mib() << " MiB memory, " << s.flavor().disk_gib()
                              << " GiB disk, " << s.flavor().bandwidth_mbps() << " Mbps\n"
                              << "subnet:          " << OrDash(s.subnet()) << "\n"
                              << "dns name:        " << OrDash(s.dns_name()) << "\n\n";
                          PrintInstanceTable(r.instances(), out);
                          out << "\nspec:\n";
                          std::string spec = r.spec_yaml();
                          size_t start = 0;
                          while (start < spec.size()) {
                            size_t end = spec.find('\n', start);
                            if (end == std::string::npos) end = spec.size();
                            out << "  " << spec.substr(start, end - start) << "\n";
                            start = end + 1;
                          }
                          return Status::Ok();
                        }});
  }

  auto* instance = app.add_subcommand("instance", "instances: list");
  instance->require_subcommand(1);
  {
    auto* c = instance->add_subcommand("list", "list instances with their allocations");
    c->add_option("--service", a.service, "only this service's instances");
    commands.push_back({c, "instance list",
                        [&]() -> Status {
                          if (a.service.empty()) return Status::Ok();
                          return CheckName("--service", a.service);
                        },
                        [&](AdminClient& client) -> Status {
                          v1::ListInstancesRequest request;
                          request.set_service(a.service);
                          ASSIGN_OR_RETURN(auto r, client.ListInstances(request));
                          if (a.output == "json") {
                            out << InstancesJson(r.instances()).dump(2) << "\n";
                          } else {
                            PrintInstanceTable(r.instances(), out);
                          }
                          return Status::Ok();
                        }});
  }

  auto* host = app.add_subcommand("host", "hosts: list, drain");
  host->require_subcommand(1);
  {
    auto* c = host->add_subcommand("list", "list hosts with their capacity and state");
    commands.push_back({c, "host list", [] { return Status::Ok(); },
                        [&](AdminClient& client) -> Status {
                          ASSIGN_OR_RETURN(auto r, client.ListHosts());
                          if (a.output == "json") {
                            Json array = Json::array();
                            for (const auto& h : r.hosts()) array.push_back(HostJson(h));
                            out << array.dump(2) << "\n";
                            return Status::Ok();
                          }
                          Table table({"NAME", "ADDRESS", "STATE", "VCPUS", "MEMORY_MIB",
                                       "LAST_HEARTBEAT", "TOPOLOGY_REV"});
                          for (const auto& h : r.hosts()) {
                            table.Add({h.name(), OrDash(h.address()), OrDash(h.state()),
                                       std::to_string(h.allocated().vcpus()) + "/" +
                                           std::to_string(h.capacity().vcpus()),
                                       std::to_string(h.allocated().memory_mib()) + "/" +
                                           std::to_string(h.capacity().memory_mib()),
                                       FormatUnixMillis(h.last_heartbeat_unix_ms()),
                                       std::to_string(h.applied_topology_revision())});
                          }
                          table.Print(out);
                          return Status::Ok();
                        }});
  }
  {
    auto* c = host->add_subcommand("drain", "move every instance off a host");
    c->add_option("HOST", a.name, "the host")->required();
    commands.push_back({c, "host drain", [&] { return CheckName("HOST", a.name); },
                        [&](AdminClient& client) -> Status {
                          v1::DrainRequest request;
                          request.set_operation_id(NewOperationId());
                          request.set_host(a.name);
                          ASSIGN_OR_RETURN(auto r, client.Drain(request));
                          if (a.output == "json") {
                            Json j{{"host", a.name}, {"moved", InstancesJson(r.moved())}};
                            out << j.dump(2) << "\n";
                            return Status::Ok();
                          }
                          out << "host " << a.name
                              << " drained: " << Plural(r.moved_size(), "instance") << " moved\n";
                          for (const auto& i : r.moved()) {
                            if (i.host().empty()) {
                              out << "  " << i.name() << " not placed: " << OrDash(i.reason())
                                  << "\n";
                            } else {
                              out << "  " << i.name() << " -> " << i.host() << " (generation "
                                  << i.generation() << ")\n";
                            }
                          }
                          return Status::Ok();
                        }});
  }

  {
    auto* c = app.add_subcommand("failover", "move an instance to another host now");
    c->add_option("INSTANCE", a.name, "the instance")->required();
    c->add_option("--to", a.to_host, "the target host (default: the allocator chooses)");
    commands.push_back({c, "failover",
                        [&]() -> Status {
                          RETURN_IF_ERROR(CheckName("INSTANCE", a.name));
                          if (!a.to_host.empty()) RETURN_IF_ERROR(CheckName("--to", a.to_host));
                          return Status::Ok();
                        },
                        [&](AdminClient& client) -> Status {
                          // Where it runs now, for the message only: the reply holds the new state.
                          std::string old_host;
                          v1::ListInstancesRequest lookup;
                          lookup.set_service(ServiceOfInstance(a.name));
                          auto listed = client.ListInstances(lookup);
                          if (!listed.ok() && IsUnreachable(listed.status()))
                            return listed.status();
                          if (listed.ok()) {
                            for (const auto& i : listed->instances()) {
                              if (i.name() == a.name) old_host = i.host();
                            }
                          }
                          v1::FailoverRequest request;
                          request.set_operation_id(NewOperationId());
                          request.set_instance(a.name);
                          request.set_to_host(a.to_host);
                          ASSIGN_OR_RETURN(auto r, client.Failover(request));
                          const v1::InstanceInfo& i = r.instance();
                          if (a.output == "json") {
                            out << InstanceJson(i).dump(2) << "\n";
                            return Status::Ok();
                          }
                          std::string name = i.name().empty() ? a.name : i.name();
                          std::string gen = " (generation " + std::to_string(i.generation()) + ")";
                          if (i.host().empty()) {
                            out << "instance " << name
                                << " is waiting for a host: " << OrDash(i.reason()) << gen << "\n";
                          } else if (old_host.empty()) {
                            out << "instance " << name << " moved to " << i.host() << gen << "\n";
                          } else if (old_host == i.host()) {
                            out << "instance " << name << " re-created on " << i.host() << gen
                                << "\n";
                          } else {
                            out << "instance " << name << " moved from " << old_host << " to "
                                << i.host() << gen << "\n";
                          }
                          return Status::Ok();
                        }});
  }

  {
    auto* c = app.add_subcommand("events", "show the controller's events (failures, moves, ...)");
    c->add_option("--after", a.after, "only events with a sequence above this");
    c->add_flag("--follow,-f", a.follow, "keep printing new events until interrupted");
    commands.push_back({c, "events",
                        [&]() -> Status {
                          if (a.after < 0) {
                            return InvalidArgument("--after " + std::to_string(a.after) +
                                                   " is negative (use 0 for all events)");
                          }
                          return Status::Ok();
                        },
                        [&](AdminClient& client) -> Status {
                          bool json = a.output == "json";
                          return client.Events(a.after, a.follow, [&](const v1::Event& e) {
                            out << (json ? EventJson(e).dump() : EventLine(e)) << std::endl;
                            return static_cast<bool>(out);  // stop when nobody reads
                          });
                        }});
  }

  auto* upgrade = app.add_subcommand(
      "upgrade",
      "rolling upgrades by update domain: start, status, pause, resume, next-ud, "
      "rollback");
  upgrade->require_subcommand(1);
  auto print_upgrade = [&](const v1::UpgradeStatus& u) {
    if (a.output == "json") {
      out << UpgradeStatusJson(u, a.name).dump(2) << "\n";
    } else {
      PrintUpgradeStatus(u, a.name, out);
    }
  };
  {
    auto* c = upgrade->add_subcommand("start", "start upgrading a service, UD by UD");
    c->add_option("SERVICE", a.name, "the service")->required();
    c->add_option("--to-version", a.to_version, "the version to upgrade to (one of the spec's)")
        ->required();
    c->add_option("--mode", a.mode,
                  "auto: UD after UD by itself; manual: each next UD on `upgrade next-ud`")
        ->capture_default_str();
    commands.push_back({c, "upgrade start",
                        [&]() -> Status {
                          RETURN_IF_ERROR(CheckName("SERVICE", a.name));
                          RETURN_IF_ERROR(CheckVersion("--to-version", a.to_version));
                          if (a.mode != "auto" && a.mode != "manual") {
                            return InvalidArgument("--mode " + QuoteValue(a.mode) +
                                                   " is not an upgrade mode (use auto or manual)");
                          }
                          return Status::Ok();
                        },
                        [&](AdminClient& client) -> Status {
                          v1::UpgradeStartRequest request;
                          request.set_operation_id(NewOperationId());
                          request.set_service(a.name);
                          request.set_to_version(a.to_version);
                          request.set_mode(a.mode);
                          ASSIGN_OR_RETURN(auto r, client.UpgradeStart(request));
                          print_upgrade(r);
                          return Status::Ok();
                        }});
  }
  // The commands on a running upgrade: one UpgradeServiceRequest each.
  using UpgradeCall = Result<v1::UpgradeStatus> (AdminClient::*)(v1::UpgradeServiceRequest);
  struct UpgradeVerb {
    const char* name;
    const char* help;
    UpgradeCall call;
  };
  const UpgradeVerb verbs[] = {
      {"status", "show a service's upgrade", &AdminClient::UpgradeStatusGet},
      {"pause", "pause a service's upgrade (work under way finishes)", &AdminClient::UpgradePause},
      {"resume", "resume a paused upgrade", &AdminClient::UpgradeResume},
      {"next-ud", "manual mode: upgrade the next update domain", &AdminClient::UpgradeNextUd},
      {"rollback", "bring the upgraded UDs back to the old version, in reverse",
       &AdminClient::UpgradeRollback},
  };
  for (const UpgradeVerb& verb : verbs) {
    auto* c = upgrade->add_subcommand(verb.name, verb.help);
    c->add_option("SERVICE", a.name, "the service")->required();
    if (std::string(verb.name) == "next-ud") {
      c->add_flag("--force", a.force, "go on even while instances are being healed");
    }
    commands.push_back({c, std::string("upgrade ") + verb.name,
                        [&] { return CheckName("SERVICE", a.name); },
                        [&, call = verb.call](AdminClient& client) -> Status {
                          v1::UpgradeServiceRequest request;
                          request.set_operation_id(NewOperationId());
                          request.set_service(a.name);
                          request.set_force(a.force);
                          ASSIGN_OR_RETURN(auto r, (client.*call)(request));
                          print_upgrade(r);
                          return Status::Ok();
                        }});
  }

  for (Command& c : commands) AddOutputOption(c.app, a);

  CommandWalk walk = WalkCommands(app, argc, argv);
  if (!walk.unknown.empty()) {
    err << "regenctl: " << walk.unknown << "\n";
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e, out, err);  // --help
    if (!walk.missing.empty()) {
      err << "regenctl: " << walk.missing << "\n";
    } else {
      err << "regenctl: " << (walk.path.empty() ? "" : walk.path + ": ") << e.what() << " ("
          << HelpHint(walk.path) << ")\n";
    }
    return 2;
  }
  if (a.output != "text" && a.output != "json") {
    err << "regenctl: -o/--output " << QuoteValue(a.output)
        << " is not an output format (use text or json)\n";
    return 2;
  }
  if (!(a.timeout_seconds > 0) || !std::isfinite(a.timeout_seconds)) {
    err << "regenctl: --timeout " << a.timeout_seconds << " must be a positive number of seconds\n";
    return 2;
  }
  if (a.controller.empty()) {
    err << "regenctl: --controller is empty (give host:port, e.g. " << kDefaultController << ")\n";
    return 2;
  }

  AdminClientOptions options;
  if (Status s = CredentialOptions(a, &options, err); !s.ok()) {
    err << "regenctl: " << s.message() << "\n";
    return 2;
  }
  for (Command& c : commands) {
    if (!c.app->parsed()) continue;
    if (Status s = c.check(); !s.ok()) {
      err << "regenctl: " << c.path << ": " << s.message() << "\n";
      return 2;
    }
    options.deadline = std::chrono::milliseconds(std::llround(a.timeout_seconds * 1000));
    options.unreachable_hint = kUnreachableHint;
    if (!a.ca.empty()) {
      options.unreachable_hint +=
          "; over TLS the handshake fails too when --ca is not the controller's CA, when the "
          "controller requires a client certificate (--cert/--key) or when its certificate does "
          "not name the host of --controller (--tls-server-name)";
    } else {
      options.unreachable_hint +=
          "; a controller with tls: in controller.yaml needs --ca (and --cert/--key or "
          "--token-file)";
    }
    AdminClient client(a.controller, options);
    if (Status s = c.run(client); !s.ok()) {
      out.flush();
      err << "regenctl: " << s.message() << "\n";
      return 1;
    }
    return 0;
  }
  err << "regenctl: no command given (see regenctl --help)\n";
  return 2;
}

}  // namespace regen
