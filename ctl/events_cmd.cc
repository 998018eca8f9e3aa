// regenctl's events command: the controller's events, once or followed.
#include <ostream>
#include <string>

#include "ctl/command.h"
#include "ctl/output.h"

namespace regen::ctl {

namespace {

Status CheckEvents(const Args& a) {
  if (a.after < 0) {
    return InvalidArgument("--after " + std::to_string(a.after) +
                           " is negative (use 0 for all events)");
  }
  return Status::Ok();
}

Status RunEvents(const Args& a, AdminClient& client, std::ostream& out) {
  bool json = a.output == "json";
  return client.Events(a.after, a.follow, [&](const v1::Event& e) {
    out << (json ? EventJson(e).dump() : EventLine(e)) << std::endl;
    return static_cast<bool>(out);  // stop when nobody reads
  });
}

}  // namespace

void AddEventsCommand(CommandSet& set) {
  Args& a = set.a;
  std::ostream& out = set.out;
  auto* c = set.app.add_subcommand("events", "show the controller's events (failures, moves, ...)");
  c->add_option("--after", a.after, "only events with a sequence above this");
  c->add_flag("--follow,-f", a.follow, "keep printing new events until interrupted");
  set.commands.push_back({c, "events", [&a] { return CheckEvents(a); },
                          [&a, &out](AdminClient& client) { return RunEvents(a, client, out); }});
}

}  // namespace regen::ctl
