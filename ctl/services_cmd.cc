// regenctl's service commands: service apply, service list, service show, service delete.
#include <memory>
#include <string>

#include "config/fields.h"
#include "config/service_spec.h"
#include "ctl/command.h"
#include "ctl/output.h"

namespace regen::ctl {

namespace {

// The service file of `service apply`, as checked and as sent, and the name its spec gives.
struct ApplyFile {
  std::string text;
  std::string name;
};

Status CheckServiceApply(const Args& a, ApplyFile& apply) {
  ASSIGN_OR_RETURN(apply.text, ReadConfigFile(a.file));
  ASSIGN_OR_RETURN(ServiceSpec spec, ParseServiceSpec(apply.text, a.file));
  apply.name = spec.name;
  return Status::Ok();
}

Status RunServiceApply(const Args& a, const ApplyFile& apply, AdminClient& client,
                       std::ostream& out) {
  v1::ApplyServiceRequest request;
  request.set_operation_id(NewOperationId());
  request.set_spec_yaml(apply.text);
  request.set_file_name(a.file);
  ASSIGN_OR_RETURN(auto r, client.ApplyService(request));
  std::string name = r.service().empty() ? apply.name : r.service();
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
}

Status RunServiceList(const Args& a, AdminClient& client, std::ostream& out) {
  ASSIGN_OR_RETURN(auto r, client.ListServices());
  if (a.output == "json") {
    Json array = Json::array();
    for (const auto& s : r.services()) array.push_back(ServiceJson(s));
    out << array.dump(2) << "\n";
    return Status::Ok();
  }
  Table table({"NAME", "INSTANCES", "RUNNING", "UDS", "VERSION", "VCPUS", "MEMORY_MIB", "DISK_GIB",
               "SUBNET", "DNS"});
  for (const auto& s : r.services()) {
    table.Add({s.name(), std::to_string(s.instances()), std::to_string(s.running()),
               std::to_string(s.update_domains()), OrDash(s.version()),
               std::to_string(s.flavor().vcpus()), std::to_string(s.flavor().memory_mib()),
               std::to_string(s.flavor().disk_gib()), OrDash(s.subnet()), OrDash(s.dns_name())});
  }
  table.Print(out);
  return Status::Ok();
}

Status RunServiceShow(const Args& a, AdminClient& client, std::ostream& out) {
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
      << "instances:       " << s.instances() << " (" << s.running() << " running)\n"
      << "update domains:  " << s.update_domains() << "\n"
      << "flavor:          " << Plural(s.flavor().vcpus(), "vCPU") << ", "
      << s.flavor().memory_mib() << " MiB memory, " << s.flavor().disk_gib() << " GiB disk, "
      << s.flavor().bandwidth_mbps() << " Mbps\n"
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
}

// No confirmation prompt: the command is the confirmation. The request's operation id makes a
// retried call (the client retries on an unreachable controller) change nothing the second time.
Status RunServiceDelete(const Args& a, AdminClient& client, std::ostream& out) {
  v1::DeleteServiceRequest request;
  request.set_operation_id(NewOperationId());
  request.set_service(a.name);
  request.set_force(a.force);
  ASSIGN_OR_RETURN(auto r, client.DeleteService(request));
  if (a.output == "json") {
    Json j{{"service", a.name}, {"removed", Json::array()}};
    for (const auto& i : r.removed()) j["removed"].push_back(i);
    out << j.dump(2) << "\n";
    return Status::Ok();
  }
  out << "service " << a.name << " deleted: " << Plural(r.removed_size(), "instance")
      << " stopped and removed\n";
  return Status::Ok();
}

}  // namespace

void AddServiceCommands(CommandSet& set) {
  Args& a = set.a;
  std::ostream& out = set.out;
  auto* service = set.app.add_subcommand("service", "services: apply, list, show, delete");
  service->require_subcommand(1);
  {
    auto* c = service->add_subcommand("apply", "create or update a service from its spec (YAML)");
    c->add_option("-f,--file,FILE", a.file, "the service spec, e.g. service.yaml")->required();
    auto apply = std::make_shared<ApplyFile>();
    set.commands.push_back({c, "service apply",
                            [&a, apply] { return CheckServiceApply(a, *apply); },
                            [&a, &out, apply](AdminClient& client) {
                              return RunServiceApply(a, *apply, client, out);
                            }});
  }
  {
    auto* c = service->add_subcommand("list", "list services");
    set.commands.push_back(
        {c, "service list", [] { return Status::Ok(); },
         [&a, &out](AdminClient& client) { return RunServiceList(a, client, out); }});
  }
  {
    auto* c = service->add_subcommand("show", "show a service: summary, instances and spec");
    c->add_option("NAME", a.name, "the service")->required();
    set.commands.push_back(
        {c, "service show", [&a] { return CheckName("NAME", a.name); },
         [&a, &out](AdminClient& client) { return RunServiceShow(a, client, out); }});
  }
  {
    auto* c = service->add_subcommand(
        "delete", "stop and remove every instance of a service, then the service (no prompt)");
    c->add_option("NAME", a.name, "the service")->required();
    c->add_flag("--force", a.force, "delete even while an upgrade of the service is active");
    set.commands.push_back(
        {c, "service delete", [&a] { return CheckName("NAME", a.name); },
         [&a, &out](AdminClient& client) { return RunServiceDelete(a, client, out); }});
  }
}

}  // namespace regen::ctl
