// regenctl's instance commands: instance list.
#include <string>

#include "ctl/command.h"
#include "ctl/output.h"

namespace regen::ctl {

namespace {

Status RunInstanceList(const Args& a, AdminClient& client, std::ostream& out) {
  v1::ListInstancesRequest request;
  request.set_service(a.service);
  ASSIGN_OR_RETURN(auto r, client.ListInstances(request));
  if (a.output == "json") {
    out << InstancesJson(r.instances()).dump(2) << "\n";
  } else {
    PrintInstanceTable(r.instances(), out);
  }
  return Status::Ok();
}

}  // namespace

void AddInstanceCommands(CommandSet& set) {
  Args& a = set.a;
  std::ostream& out = set.out;
  auto* instance = set.app.add_subcommand("instance", "instances: list");
  instance->require_subcommand(1);
  {
    auto* c = instance->add_subcommand("list", "list instances with their allocations");
    c->add_option("--service", a.service, "only this service's instances");
    set.commands.push_back(
        {c, "instance list",
         [&a]() -> Status {
           if (a.service.empty()) return Status::Ok();
           return CheckName("--service", a.service);
         },
         [&a, &out](AdminClient& client) { return RunInstanceList(a, client, out); }});
  }
}

}  // namespace regen::ctl
