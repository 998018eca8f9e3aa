// regenctl's rolling-upgrade commands: upgrade start, status, pause, resume, next-ud, rollback.
#include <string>

#include "common/names.h"
#include "ctl/command.h"
#include "ctl/output.h"

namespace regen::ctl {

namespace {

void PrintUpgrade(const Args& a, const v1::UpgradeStatus& u, std::ostream& out) {
  if (a.output == "json") {
    out << UpgradeStatusJson(u, a.name).dump(2) << "\n";
  } else {
    PrintUpgradeStatus(u, a.name, out);
  }
}

Status CheckUpgradeStart(const Args& a) {
  RETURN_IF_ERROR(CheckName("SERVICE", a.name));
  RETURN_IF_ERROR(CheckVersion("--to-version", a.to_version));
  if (a.mode != "auto" && a.mode != "manual") {
    return InvalidArgument("--mode " + QuoteValue(a.mode) +
                           " is not an upgrade mode (use auto or manual)");
  }
  return Status::Ok();
}

Status RunUpgradeStart(const Args& a, AdminClient& client, std::ostream& out) {
  v1::UpgradeStartRequest request;
  request.set_operation_id(NewOperationId());
  request.set_service(a.name);
  request.set_to_version(a.to_version);
  request.set_mode(a.mode);
  ASSIGN_OR_RETURN(auto r, client.UpgradeStart(request));
  PrintUpgrade(a, r, out);
  return Status::Ok();
}

// The commands on a running upgrade: one UpgradeServiceRequest each.
using UpgradeCall = Result<v1::UpgradeStatus> (AdminClient::*)(v1::UpgradeServiceRequest);
struct UpgradeVerb {
  const char* name;
  const char* help;
  UpgradeCall call;
};

Status RunUpgradeVerb(const Args& a, UpgradeCall call, AdminClient& client, std::ostream& out) {
  v1::UpgradeServiceRequest request;
  request.set_operation_id(NewOperationId());
  request.set_service(a.name);
  request.set_force(a.force);
  ASSIGN_OR_RETURN(auto r, (client.*call)(request));
  PrintUpgrade(a, r, out);
  return Status::Ok();
}

void AddUpgradeStart(CLI::App* upgrade, CommandSet& set) {
  Args& a = set.a;
  std::ostream& out = set.out;
  auto* c = upgrade->add_subcommand("start", "start upgrading a service, UD by UD");
  c->add_option("SERVICE", a.name, "the service")->required();
  c->add_option("--to-version", a.to_version, "the version to upgrade to (one of the spec's)")
      ->required();
  c->add_option("--mode", a.mode,
                "auto: UD after UD by itself; manual: each next UD on `upgrade next-ud`")
      ->capture_default_str();
  set.commands.push_back(
      {c, "upgrade start", [&a] { return CheckUpgradeStart(a); },
       [&a, &out](AdminClient& client) { return RunUpgradeStart(a, client, out); }});
}

}  // namespace

void AddUpgradeCommands(CommandSet& set) {
  Args& a = set.a;
  std::ostream& out = set.out;
  auto* upgrade = set.app.add_subcommand(
      "upgrade",
      "rolling upgrades by update domain: start, status, pause, resume, next-ud, "
      "rollback");
  upgrade->require_subcommand(1);
  AddUpgradeStart(upgrade, set);
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
    set.commands.push_back({c, std::string("upgrade ") + verb.name,
                            [&a] { return CheckName("SERVICE", a.name); },
                            [&a, &out, call = verb.call](AdminClient& client) {
                              return RunUpgradeVerb(a, call, client, out);
                            }});
  }
}

}  // namespace regen::ctl
