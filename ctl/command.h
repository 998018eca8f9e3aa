// regenctl's internals shared by its command groups: the flags (Args), one leaf command (Command),
// the local checks and each group's Add function. Used on regenctl's one thread only.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "common/admin_client.h"
#include "common/status.h"

namespace regen::ctl {

inline constexpr const char* kDefaultController = "127.0.0.1:7400";

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
  bool force = false;           // upgrade next-ud --force, service delete --force
  std::string duration;         // maintenance start --for
  std::string reason;           // maintenance start --reason
  std::string ca;               // --ca / REGEN_CA: TLS with this CA (else plaintext)
  std::string cert;             // --cert / REGEN_CERT: client certificate
  std::string key;              // --key / REGEN_KEY: its private key
  std::string token_file;       // --token-file / REGEN_TOKEN_FILE: bearer token
  std::string tls_server_name;  // --tls-server-name: the name in the controller's certificate
  std::string crl;              // --crl / REGEN_CRL: revoked certificates (PEM CRLs of the CA)
};

// One leaf command: local checks (nothing is sent when they fail), then the RPCs.
struct Command {
  CLI::App* app = nullptr;
  std::string path;  // "service apply"
  std::function<Status()> check;
  std::function<Status(AdminClient&)> run;
};

// Where a command group adds its commands: the CLI11 root, the flags its commands fill (and read
// when they run), the stream their results go to, and the list of leaf commands to append to.
// `a` and `out` must outlive the commands.
struct CommandSet {
  CLI::App& app;
  Args& a;
  std::ostream& out;
  std::vector<Command>& commands;
};

// The command groups, in the order `regenctl --help` lists them.
void AddServiceCommands(CommandSet& set);      // service apply, list, show, delete
void AddInstanceCommands(CommandSet& set);     // instance list (instances_cmd.cc)
void AddHostCommands(CommandSet& set);         // host list, drain, undrain, cordon, failover
void AddEventsCommand(CommandSet& set);        // events (events_cmd.cc)
void AddUpgradeCommands(CommandSet& set);      // upgrade start, status, ... (upgrade_cmd.cc)
void AddMaintenanceCommands(CommandSet& set);  // maintenance start, end, status

// -o/--output on `app` (the root and every leaf command take it).
void AddOutputOption(CLI::App* app, Args& a);

// ---- checks ----

Status CheckName(const std::string& what, const std::string& value);

// A version name as the service spec loader takes it (common/names IsValidVersionName).
Status CheckVersion(const std::string& what, const std::string& value);

bool IsUnreachable(const Status& s);

// "web" from "web-12" (instances are named SERVICE-INDEX); "" when the name has no such form.
std::string ServiceOfInstance(const std::string& instance);

}  // namespace regen::ctl
