// regenctl's host commands and the planned moves: host list, drain, undrain, cordon, uncordon,
// failover.
#include <string>

#include "ctl/command.h"
#include "ctl/output.h"

namespace regen::ctl {

namespace {

Status RunHostList(const Args& a, AdminClient& client, std::ostream& out) {
  ASSIGN_OR_RETURN(auto r, client.ListHosts());
  if (a.output == "json") {
    Json array = Json::array();
    for (const auto& h : r.hosts()) {
      Json j = HostJson(h);
      j["maintenance"] = r.maintenance().active();
      array.push_back(std::move(j));
    }
    out << array.dump(2) << "\n";
    return Status::Ok();
  }
  if (r.maintenance().active() || r.maintenance().holds_until_unix_ms() > 0) {
    out << DescribeMaintenance(r.maintenance()) << "\n";
  }
  Table table({"NAME", "ADDRESS", "STATE", "TYPE", "VCPUS", "MEMORY_MIB", "LAST_HEARTBEAT",
               "TOPOLOGY_REV"});
  for (const auto& h : r.hosts()) {
    std::string state = OrDash(h.state());
    if (r.maintenance().active()) state += " (maintenance)";
    table.Add({h.name(), OrDash(h.address()), state, OrDash(h.domain_type()),
               std::to_string(h.allocated().vcpus()) + "/" + std::to_string(h.capacity().vcpus()),
               std::to_string(h.allocated().memory_mib()) + "/" +
                   std::to_string(h.capacity().memory_mib()),
               FormatUnixMillis(h.last_heartbeat_unix_ms()),
               std::to_string(h.applied_topology_revision())});
  }
  table.Print(out);
  return Status::Ok();
}

Status RunHostDrain(const Args& a, AdminClient& client, std::ostream& out) {
  v1::DrainRequest request;
  request.set_operation_id(NewOperationId());
  request.set_host(a.name);
  ASSIGN_OR_RETURN(auto r, client.Drain(request));
  if (a.output == "json") {
    Json j{{"host", a.name}, {"moved", InstancesJson(r.moved())}};
    out << j.dump(2) << "\n";
    return Status::Ok();
  }
  out << "host " << a.name << " drained: " << Plural(r.moved_size(), "instance") << " moved\n";
  for (const auto& i : r.moved()) {
    if (i.host().empty()) {
      out << "  " << i.name() << " not placed: " << OrDash(i.reason()) << "\n";
    } else {
      out << "  " << i.name() << " -> " << i.host() << " (generation " << i.generation() << ")\n";
    }
  }
  return Status::Ok();
}

// undrain, cordon, uncordon: one HostRequest each, answered with the host as it is now.
using HostCall = Result<v1::HostInfo> (AdminClient::*)(v1::HostRequest);

Status RunHostVerb(const Args& a, const std::string& verb, HostCall call, AdminClient& client,
                   std::ostream& out) {
  v1::HostRequest request;
  request.set_operation_id(NewOperationId());
  request.set_host(a.name);
  ASSIGN_OR_RETURN(auto h, (client.*call)(request));
  if (a.output == "json") {
    out << HostJson(h).dump(2) << "\n";
    return Status::Ok();
  }
  out << "host " << a.name << " " << verb << "ed: now " << OrDash(h.state())
      << (h.state() == "up" ? " (takes new instances)" : " (no new instances; running ones stay)")
      << "\n";
  return Status::Ok();
}

Status CheckFailover(const Args& a) {
  RETURN_IF_ERROR(CheckName("INSTANCE", a.name));
  if (!a.to_host.empty()) RETURN_IF_ERROR(CheckName("--to", a.to_host));
  return Status::Ok();
}

Status RunFailover(const Args& a, AdminClient& client, std::ostream& out) {
  // Where it runs now, for the message only: the reply holds the new state.
  std::string old_host;
  v1::ListInstancesRequest lookup;
  lookup.set_service(ServiceOfInstance(a.name));
  auto listed = client.ListInstances(lookup);
  if (!listed.ok() && IsUnreachable(listed.status())) return listed.status();
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
    out << "instance " << name << " is waiting for a host: " << OrDash(i.reason()) << gen << "\n";
  } else if (old_host.empty()) {
    out << "instance " << name << " moved to " << i.host() << gen << "\n";
  } else if (old_host == i.host()) {
    out << "instance " << name << " re-created on " << i.host() << gen << "\n";
  } else {
    out << "instance " << name << " moved from " << old_host << " to " << i.host() << gen << "\n";
  }
  return Status::Ok();
}

}  // namespace

void AddHostCommands(CommandSet& set) {
  Args& a = set.a;
  std::ostream& out = set.out;
  auto* host = set.app.add_subcommand("host", "hosts: list, drain, undrain, cordon, uncordon");
  host->require_subcommand(1);
  {
    auto* c = host->add_subcommand("list", "list hosts with their capacity and state");
    set.commands.push_back(
        {c, "host list", [] { return Status::Ok(); },
         [&a, &out](AdminClient& client) { return RunHostList(a, client, out); }});
  }
  {
    auto* c = host->add_subcommand("drain", "move every instance off a host");
    c->add_option("HOST", a.name, "the host")->required();
    set.commands.push_back(
        {c, "host drain", [&a] { return CheckName("HOST", a.name); },
         [&a, &out](AdminClient& client) { return RunHostDrain(a, client, out); }});
  }
  struct Verb {
    const char* name;
    const char* help;
    HostCall call;
  };
  const Verb verbs[] = {
      {"undrain", "let a drained host take new instances again", &AdminClient::UndrainHost},
      {"cordon", "place no new instances on a host; those running stay", &AdminClient::CordonHost},
      {"uncordon", "let a cordoned host take new instances again", &AdminClient::UncordonHost},
  };
  for (const Verb& verb : verbs) {
    auto* c = host->add_subcommand(verb.name, verb.help);
    c->add_option("HOST", a.name, "the host")->required();
    set.commands.push_back(
        {c, std::string("host ") + verb.name, [&a] { return CheckName("HOST", a.name); },
         [&a, &out, name = std::string(verb.name), call = verb.call](AdminClient& client) {
           return RunHostVerb(a, name, call, client, out);
         }});
  }

  {
    auto* c = set.app.add_subcommand("failover", "move an instance to another host now");
    c->add_option("INSTANCE", a.name, "the instance")->required();
    c->add_option("--to", a.to_host, "the target host (default: the allocator chooses)");
    set.commands.push_back(
        {c, "failover", [&a] { return CheckFailover(a); },
         [&a, &out](AdminClient& client) { return RunFailover(a, client, out); }});
  }
}

}  // namespace regen::ctl
