// regenctl's maintenance commands: maintenance start --for DURATION, end, status. While a
// maintenance runs, agents hold their domains without the controller and nothing is healed, so
// the controller's machine can be rebooted or upgraded.
#include <string>

#include "config/fields.h"
#include "ctl/command.h"
#include "ctl/output.h"

namespace regen::ctl {

Json MaintenanceJson(const v1::MaintenanceStatus& m) {
  return Json{{"active", m.active()},
              {"started_unix_ms", m.started_unix_ms()},
              {"until_unix_ms", m.until_unix_ms()},
              {"reason", m.reason()},
              {"holds_until_unix_ms", m.holds_until_unix_ms()}};
}

std::string DescribeMaintenance(const v1::MaintenanceStatus& m) {
  if (m.active()) {
    return "maintenance until " + FormatUnixMillis(m.until_unix_ms()) +
           (m.reason().empty() ? "" : " (" + m.reason() + ")") +
           ": agents hold their domains, nothing is healed";
  }
  std::string text = "no maintenance";
  if (m.holds_until_unix_ms() > 0) {
    text += "; holds granted until " + FormatUnixMillis(m.holds_until_unix_ms()) +
            " delay host-down decisions";
  }
  return text;
}

namespace {

Status CheckStart(const Args& a) {
  auto d = ParseDuration(a.duration);
  if (!d || *d < std::chrono::seconds(1)) {
    return InvalidArgument("--for " + QuoteValue(a.duration) +
                           " is not a duration of at least 1s (e.g. 10m, 1h, 90s)");
  }
  return Status::Ok();
}

Status Print(const Args& a, const v1::MaintenanceStatus& m, std::ostream& out) {
  if (a.output == "json") {
    out << MaintenanceJson(m).dump(2) << "\n";
  } else {
    out << DescribeMaintenance(m) << "\n";
  }
  return Status::Ok();
}

Status RunStart(const Args& a, AdminClient& client, std::ostream& out) {
  v1::MaintenanceStartRequest request;
  request.set_operation_id(NewOperationId());
  request.set_duration_ms(ParseDuration(a.duration)->count());
  request.set_reason(a.reason);
  ASSIGN_OR_RETURN(auto r, client.MaintenanceStart(request));
  return Print(a, r, out);
}

Status RunEnd(const Args& a, AdminClient& client, std::ostream& out) {
  v1::MaintenanceEndRequest request;
  request.set_operation_id(NewOperationId());
  ASSIGN_OR_RETURN(auto r, client.MaintenanceEnd(request));
  return Print(a, r, out);
}

Status RunStatus(const Args& a, AdminClient& client, std::ostream& out) {
  ASSIGN_OR_RETURN(auto r, client.MaintenanceStatusGet());
  return Print(a, r, out);
}

}  // namespace

void AddMaintenanceCommands(CommandSet& set) {
  Args& a = set.a;
  std::ostream& out = set.out;
  auto* m = set.app.add_subcommand(
      "maintenance",
      "maintenance of the controller's machine: agents hold their domains, nothing is healed");
  m->require_subcommand(1);
  {
    auto* c = m->add_subcommand("start", "start (or move the end of) a maintenance");
    c->add_option("--for", a.duration, "how long, e.g. 10m (at most maintenance_max)")->required();
    c->add_option("--reason", a.reason, "shown in status and events");
    set.commands.push_back({c, "maintenance start", [&a] { return CheckStart(a); },
                            [&a, &out](AdminClient& client) { return RunStart(a, client, out); }});
  }
  {
    auto* c = m->add_subcommand("end", "end the maintenance now: healing resumes");
    set.commands.push_back({c, "maintenance end", [] { return Status::Ok(); },
                            [&a, &out](AdminClient& client) { return RunEnd(a, client, out); }});
  }
  {
    auto* c = m->add_subcommand("status", "show whether a maintenance runs, and until when");
    set.commands.push_back({c, "maintenance status", [] { return Status::Ok(); },
                            [&a, &out](AdminClient& client) { return RunStatus(a, client, out); }});
  }
}

}  // namespace regen::ctl
