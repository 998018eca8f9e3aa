#include "ovs/flows.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <stdexcept>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "common/names.h"

namespace regen::ovs {
namespace {

constexpr int kPriorityStale = 200;
constexpr int kPriorityAllow = 100;
constexpr int kPriorityDefault = 0;
constexpr int64_t kMaxOfport = 0xfeff;  // OFPP_MAX

std::string Hex(uint64_t value) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(value));
  return buf;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// 52:54:00:00:01:02 -> 0x525400000102
std::string MacHex(const std::string& mac) {
  std::string digits;
  for (char c : mac)
    if (c != ':') digits += c;
  return Hex(std::stoull(digits, nullptr, 16));
}

std::string IpHex(const std::string& ip) {
  in_addr addr{};
  inet_pton(AF_INET, ip.c_str(), &addr);
  return Hex(ntohl(addr.s_addr));
}

uint32_t ServiceTag(std::string_view service) {
  uint32_t h = 2166136261u;
  for (unsigned char c : service) {
    h ^= c;
    h *= 16777619u;
  }
  return h == 0 ? 1 : h;  // reg0 = 0 means "not classified"
}

bool IsProtocol(std::string_view token) {
  return token == "ip" || token == "arp" || token == "ipv6" || token == "tcp" || token == "udp" ||
         token == "icmp" || token == "tcp6" || token == "udp6" || token == "icmp6" ||
         token == "rarp" || token == "sctp" || token == "sctp6";
}

std::vector<std::string> SplitFields(std::string_view s) {
  std::vector<std::string> out;
  std::string cur;
  int depth = 0;
  for (char c : s) {
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (depth == 0 && (c == ',' || c == ' ' || c == '\t')) {
      if (!cur.empty()) out.push_back(std::move(cur));
      cur.clear();
      continue;
    }
    cur += c;
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

// Every ")" closes an earlier "(" and none is left open (SplitFields needs that).
bool Balanced(std::string_view s) {
  int depth = 0;
  for (char c : s) {
    if (c == '(') ++depth;
    if (c == ')' && --depth < 0) return false;
  }
  return depth == 0;
}

std::string Field(std::string_view field, const TopologyInstance& instance, size_t index) {
  return "topology.instances[" + std::to_string(index) + "] (" + QuoteValue(instance.name) + ")." +
         std::string(field);
}

Status ValidateInstance(const TopologyInstance& in, size_t i) {
  RETURN_IF_ERROR(ValidateName(Field("name", in, i), in.name));
  RETURN_IF_ERROR(ValidateName(Field("service", in, i), in.service));
  RETURN_IF_ERROR(ValidateName(Field("host", in, i), in.host));
  if (!IsValidIpv4(in.ip))
    return InvalidArgument(Field("ip", in, i) + ": invalid IPv4 address " + QuoteValue(in.ip) +
                           " (expected dotted quad, e.g. 10.0.0.5)");
  if (!IsValidMac(in.mac))
    return InvalidArgument(Field("mac", in, i) + ": invalid MAC address " + QuoteValue(in.mac) +
                           " (expected unicast xx:xx:xx:xx:xx:xx, e.g. 52:54:00:12:34:56)");
  if (in.generation < 0)
    return InvalidArgument(Field("generation", in, i) + ": negative generation " +
                           std::to_string(in.generation));
  if (in.ofport < 0 || in.ofport > kMaxOfport)
    return InvalidArgument(Field("ofport", in, i) + ": ofport " + std::to_string(in.ofport) +
                           " out of range (1.." + std::to_string(kMaxOfport) + ", 0 = unknown)");
  return Status::Ok();
}

struct Located {
  TopologyInstance instance;  // ip/mac normalised
  uint32_t tag = 0;
};

class Builder {
 public:
  Builder(const Topology& t, const LocalSwitch& l) : topology_(t), local_(l) {}

  Result<std::vector<Flow>> Build() {
    RETURN_IF_ERROR(Validate());
    AddDefaults();
    for (const auto& c : current_) AddCurrent(c);
    for (const auto& s : stale_) AddStale(s);
    std::sort(flows_.begin(), flows_.end(), FlowLess);
    flows_.erase(std::unique(flows_.begin(), flows_.end()), flows_.end());
    return flows_;
  }

 private:
  Status Validate() {
    RETURN_IF_ERROR(ValidateHostsAndLocal());
    std::map<std::string, size_t> newest;
    RETURN_IF_ERROR(FindNewest(&newest));
    RETURN_IF_ERROR(SplitCurrentAndStale(newest));
    for (const auto& c : current_) {
      if (c.instance.host == local_.host) {
        local_ports_.insert(c.instance.ofport);
        local_services_.insert(c.instance.service);
      }
      current_by_name_[c.instance.name] = &c;
      current_services_.insert(c.instance.service);
    }
    return Status::Ok();
  }

  // The hosts (names, tunnel addresses), the local switch and the allowed peers.
  Status ValidateHostsAndLocal() {
    if (topology_.revision < 0)
      return InvalidArgument("topology.revision: negative revision " +
                             std::to_string(topology_.revision));
    std::map<std::string, std::string> tunnel_owner;
    for (size_t i = 0; i < topology_.hosts.size(); ++i) {
      const auto& h = topology_.hosts[i];
      const std::string f = "topology.hosts[" + std::to_string(i) + "]";
      RETURN_IF_ERROR(ValidateName(f + ".name", h.name));
      if (!IsValidIpv4(h.tunnel_ip))
        return InvalidArgument(f + " (" + h.name + ").tunnel_ip: invalid IPv4 address " +
                               QuoteValue(h.tunnel_ip));
      if (!host_ip_.emplace(h.name, h.tunnel_ip).second)
        return InvalidArgument(f + ".name: host " + QuoteValue(h.name) + " listed twice");
      if (auto [it, fresh] = tunnel_owner.emplace(h.tunnel_ip, h.name); !fresh)
        return InvalidArgument(f + " (" + h.name + ").tunnel_ip: " + QuoteValue(h.tunnel_ip) +
                               " is also the tunnel address of host " + QuoteValue(it->second));
    }
    RETURN_IF_ERROR(ValidateName("local.host", local_.host));
    if (!host_ip_.count(local_.host))
      return InvalidArgument("local.host: " + QuoteValue(local_.host) +
                             " is not among the topology's hosts");
    if (local_.tunnel_ofport < 1 || local_.tunnel_ofport > kMaxOfport)
      return InvalidArgument("local.tunnel_ofport: ofport " + std::to_string(local_.tunnel_ofport) +
                             " out of range (1.." + std::to_string(kMaxOfport) + ")");
    for (const auto& [service, peers] : topology_.allowed_peers) {
      RETURN_IF_ERROR(ValidateName("topology.allowed_peers key", service));
      for (const auto& p : peers)
        RETURN_IF_ERROR(ValidateName("topology.allowed_peers[" + service + "]", p));
    }
    return Status::Ok();
  }

  // Checks each instance; `newest` gets the index of each name's current location (the highest
  // generation).
  Status FindNewest(std::map<std::string, size_t>* newest_out) {
    std::map<std::string, size_t>& newest = *newest_out;
    std::map<std::pair<std::string, int64_t>, size_t> seen;
    for (size_t i = 0; i < topology_.instances.size(); ++i) {
      const auto& in = topology_.instances[i];
      RETURN_IF_ERROR(ValidateInstance(in, i));
      if (auto [it, fresh] = seen.emplace(std::make_pair(in.name, in.generation), i); !fresh)
        return InvalidArgument(Field("generation", in, i) + ": instance " + QuoteValue(in.name) +
                               " generation " + std::to_string(in.generation) +
                               " is listed twice (also topology.instances[" +
                               std::to_string(it->second) + "])");
      auto it = newest.find(in.name);
      if (it == newest.end() || topology_.instances[it->second].generation < in.generation)
        newest[in.name] = i;
    }
    return Status::Ok();
  }

  // Current locations into current_ (checked for clashes: MAC, IP, service tag, local ofport),
  // older generations into stale_.
  Status SplitCurrentAndStale(std::map<std::string, size_t>& newest) {
    std::map<std::string, std::string> mac_owner;
    std::map<std::string, std::string> ip_owner;
    std::map<int64_t, std::string> port_owner;
    std::map<uint32_t, std::string> tag_owner;
    for (size_t i = 0; i < topology_.instances.size(); ++i) {
      Located l{topology_.instances[i], ServiceTag(topology_.instances[i].service)};
      l.instance.mac = Lower(l.instance.mac);
      if (newest[l.instance.name] != i) {
        stale_.push_back(std::move(l));
        continue;
      }
      const auto& in = l.instance;
      if (!host_ip_.count(in.host))
        return InvalidArgument(Field("host", in, i) + ": host " + QuoteValue(in.host) +
                               " is not among the topology's hosts");
      if (auto [it, fresh] = mac_owner.emplace(in.mac, in.name); !fresh)
        return InvalidArgument(Field("mac", in, i) + ": MAC " + QuoteValue(in.mac) +
                               " is also held by instance " + QuoteValue(it->second));
      if (auto [it, fresh] = ip_owner.emplace(in.ip, in.name); !fresh)
        return InvalidArgument(Field("ip", in, i) + ": IP " + QuoteValue(in.ip) +
                               " is also held by instance " + QuoteValue(it->second));
      if (auto [it, fresh] = tag_owner.emplace(l.tag, in.service);
          !fresh && it->second != in.service)
        return InvalidArgument(Field("service", in, i) + ": service " + QuoteValue(in.service) +
                               " hashes to the same tag as service " + QuoteValue(it->second) +
                               "; rename one of them");
      if (in.host == local_.host) {
        if (in.ofport == 0)
          return InvalidArgument(Field("ofport", in, i) + ": instance " + QuoteValue(in.name) +
                                 " runs on this host (" + local_.host + ") but has no ofport");
        if (in.ofport == local_.tunnel_ofport)
          return InvalidArgument(Field("ofport", in, i) + ": ofport " + std::to_string(in.ofport) +
                                 " is the tunnel port");
        if (auto [it, fresh] = port_owner.emplace(in.ofport, in.name); !fresh)
          return InvalidArgument(Field("ofport", in, i) + ": ofport " + std::to_string(in.ofport) +
                                 " is also used by instance " + QuoteValue(it->second));
      }
      current_.push_back(std::move(l));
    }
    return Status::Ok();
  }

  bool MayTalk(const std::string& a, const std::string& b) const {
    if (a == b) return true;
    auto reaches = [&](const std::string& x, const std::string& y) {
      auto it = topology_.allowed_peers.find(x);
      return it != topology_.allowed_peers.end() && it->second.count(y) > 0;
    };
    return reaches(a, b) || reaches(b, a);
  }

  // Whether a local instance may talk to `service`.
  bool ReachableFromHere(const std::string& service) const {
    for (const auto& s : local_services_)
      if (MayTalk(s, service)) return true;
    return false;
  }

  void Add(int table, int priority, std::string match, std::string actions) {
    flows_.push_back(Flow{static_cast<uint64_t>(topology_.revision), table, priority,
                          CanonicalMatch(match), std::move(actions)});
  }

  void AddDefaults() {
    for (int table : {kTableClassify, kTableSpoof, kTableArp, kTableAcl, kTableForward})
      Add(table, kPriorityDefault, "", "drop");
  }

  void AddCurrent(const Located& c) {
    const auto& in = c.instance;
    const std::string tag = Hex(c.tag);
    const std::string tun = std::to_string(local_.tunnel_ofport);
    const bool local = in.host == local_.host;
    if (local) {
      const std::string port = std::to_string(in.ofport);
      Add(kTableClassify, kPriorityAllow, "in_port=" + port + ",dl_src=" + in.mac,
          "load:" + tag + "->NXM_NX_REG0[],resubmit(,10)");
      Add(kTableSpoof, kPriorityAllow,
          "ip,in_port=" + port + ",dl_src=" + in.mac + ",nw_src=" + in.ip, "resubmit(,30)");
      Add(kTableSpoof, kPriorityAllow,
          "arp,in_port=" + port + ",dl_src=" + in.mac + ",arp_spa=" + in.ip + ",arp_sha=" + in.mac,
          "resubmit(,20)");
      Add(kTableForward, kPriorityAllow, "dl_dst=" + in.mac, "output:" + port);
    } else if (ReachableFromHere(in.service)) {
      const std::string& host_ip = host_ip_.at(in.host);
      Add(kTableClassify, kPriorityAllow,
          "in_port=" + tun + ",tun_src=" + host_ip + ",dl_src=" + in.mac,
          "load:" + tag + "->NXM_NX_REG0[],load:0x1->NXM_NX_REG1[],resubmit(,30)");
      Add(kTableForward, kPriorityAllow, "reg1=0,dl_dst=" + in.mac,
          "load:" + IpHex(host_ip) + "->NXM_NX_TUN_IPV4_DST[],output:" + tun);
    }
    // ARP answers and ACL entries towards `in` for every service that may reach it and either
    // has a local instance (local senders) or reaches a local instance (tunnel senders, ACL only).
    for (const auto& s : current_services_) {
      if (!MayTalk(s, in.service)) continue;
      const bool sender_here = local_services_.count(s) > 0;
      if (!sender_here && !local) continue;
      const std::string stag = Hex(ServiceTag(s));
      Add(kTableAcl, kPriorityAllow, "ip,reg0=" + stag + ",dl_dst=" + in.mac + ",nw_dst=" + in.ip,
          "resubmit(,40)");
      if (sender_here)
        Add(kTableArp, kPriorityAllow, "arp,reg0=" + stag + ",arp_op=1,arp_tpa=" + in.ip,
            "move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],load:" + MacHex(in.mac) +
                "->NXM_OF_ETH_SRC[],load:0x2->NXM_OF_ARP_OP[],move:NXM_NX_ARP_SHA[]->NXM_NX_"
                "ARP_THA[],load:" +
                MacHex(in.mac) +
                "->NXM_NX_ARP_SHA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],load:" + IpHex(in.ip) +
                "->NXM_OF_ARP_SPA[],IN_PORT");
    }
  }

  void AddStale(const Located& s) {
    const auto& in = s.instance;
    const Located* cur = current_by_name_.at(in.name);
    if (in.host == local_.host) {
      // The old port may linger (a partitioned host coming back): drop what it sends.
      if (in.ofport != 0 && in.ofport != local_.tunnel_ofport && !local_ports_.count(in.ofport))
        Add(kTableClassify, kPriorityStale, "in_port=" + std::to_string(in.ofport), "drop");
      return;
    }
    auto ip = host_ip_.find(in.host);
    if (ip == host_ip_.end() || in.host == cur->instance.host) return;
    Add(kTableClassify, kPriorityStale,
        "in_port=" + std::to_string(local_.tunnel_ofport) + ",tun_src=" + ip->second +
            ",dl_src=" + in.mac,
        "drop");
  }

  const Topology& topology_;
  const LocalSwitch& local_;
  std::map<std::string, std::string> host_ip_;
  std::vector<Located> current_;
  std::vector<Located> stale_;
  std::map<std::string, const Located*> current_by_name_;
  std::set<int64_t> local_ports_;
  std::set<std::string> local_services_;
  std::set<std::string> current_services_;  // services with a current instance anywhere
  std::vector<Flow> flows_;
};

}  // namespace

std::string Flow::ToString() const {
  std::string out = "cookie=" + Hex(cookie) + "," + Key() + " actions=" + actions;
  return out;
}

std::string Flow::Key() const {
  std::string out = "table=" + std::to_string(table) + ",priority=" + std::to_string(priority);
  if (!match.empty()) out += "," + match;
  return out;
}

bool FlowLess(const Flow& a, const Flow& b) {
  return std::make_tuple(a.table, -a.priority, std::cref(a.match), std::cref(a.actions), a.cookie) <
         std::make_tuple(b.table, -b.priority, std::cref(b.match), std::cref(b.actions), b.cookie);
}

std::string CanonicalMatch(std::string_view match) {
  std::vector<std::string> protocols;
  std::vector<std::string> fields;
  for (auto& f : SplitFields(match)) (IsProtocol(f) ? protocols : fields).push_back(std::move(f));
  std::sort(fields.begin(), fields.end());
  std::string out;
  for (const auto* list : {&protocols, &fields})
    for (const auto& f : *list) out += (out.empty() ? "" : ",") + f;
  return out;
}

Result<std::vector<Flow>> BuildFlowSet(const Topology& topology, const LocalSwitch& local) {
  return Builder(topology, local).Build();
}

std::string FormatFlows(const std::vector<Flow>& flows) {
  std::string out;
  for (const auto& f : flows) out += f.ToString() + "\n";
  return out;
}

Result<std::vector<Flow>> ParseDumpFlows(std::string_view text) {
  std::vector<Flow> flows;
  size_t line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    size_t first = line.find_first_not_of(" \t\r");
    if (first == std::string_view::npos) continue;
    line = line.substr(first);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    if (line.starts_with("NXST_FLOW") || line.starts_with("OFPST_FLOW")) continue;
    const std::string where = "dump-flows line " + std::to_string(line_no) + " " + QuoteValue(line);
    size_t at = line.find("actions=");
    if (at == std::string_view::npos)
      return InvalidArgument(where +
                             ": no actions= (not a flow; expected `ovs-ofctl dump-flows` "
                             "output)");
    if (!Balanced(line.substr(0, at)))
      return InvalidArgument(where + ": unbalanced parentheses before actions=");
    Flow flow;
    flow.actions = std::string(line.substr(at + 8));
    if (flow.actions.empty()) return InvalidArgument(where + ": empty actions");
    std::vector<std::string> match;
    for (auto& token : SplitFields(line.substr(0, at))) {
      size_t eq = token.find('=');
      std::string key = token.substr(0, eq);
      std::string value = eq == std::string::npos ? "" : token.substr(eq + 1);
      try {
        size_t used = 0;
        if (key == "cookie") {
          flow.cookie = std::stoull(value, &used, 0);
        } else if (key == "table") {
          flow.table = std::stoi(value, &used);
        } else if (key == "priority") {
          flow.priority = std::stoi(value, &used);
        } else if (key == "duration" || key == "n_packets" || key == "n_bytes" ||
                   key == "idle_age" || key == "hard_age") {
          continue;
        } else {
          match.push_back(std::move(token));
          continue;
        }
        if (used != value.size()) throw std::invalid_argument(value);
      } catch (const std::exception&) {
        return InvalidArgument(where + ": bad number in " + QuoteValue(token));
      }
    }
    std::string joined;
    for (const auto& m : match) joined += (joined.empty() ? "" : ",") + m;
    flow.match = CanonicalMatch(joined);
    flows.push_back(std::move(flow));
  }
  std::sort(flows.begin(), flows.end(), FlowLess);
  return flows;
}

const char* PlanModeName(PlanMode mode) {
  switch (mode) {
    case PlanMode::kInSync:
      return "in-sync";
    case PlanMode::kIncremental:
      return "incremental";
    case PlanMode::kReplace:
      return "replace";
  }
  return "unknown";
}

FlowPlan PlanFlowChanges(const std::vector<Flow>& desired, const std::vector<Flow>& installed,
                         const PlanOptions& options) {
  FlowPlan plan;
  plan.desired = desired;
  std::sort(plan.desired.begin(), plan.desired.end(), FlowLess);
  std::unordered_map<std::string, const Flow*> have;
  bool duplicate_installed = false;
  for (const auto& f : installed)
    if (!have.emplace(f.Key(), &f).second) duplicate_installed = true;
  std::unordered_map<std::string, const Flow*> want;
  for (const auto& f : plan.desired) {
    want.emplace(f.Key(), &f);
    auto it = have.find(f.Key());
    if (it == have.end()) {
      plan.add.push_back(f);
    } else if (it->second->actions != f.actions) {
      plan.modify.push_back(f);
    } else if (it->second->cookie != f.cookie) {
      ++plan.cookie_only;
    }
  }
  for (const auto& f : installed)
    if (!want.count(f.Key())) plan.remove.push_back(f);
  std::sort(plan.remove.begin(), plan.remove.end(), FlowLess);

  const size_t changes = plan.changes();
  const size_t size = std::max(desired.size(), installed.size());
  if (changes == 0 && !duplicate_installed) {
    plan.mode = PlanMode::kInSync;
  } else if (installed.empty() || duplicate_installed) {
    plan.mode = PlanMode::kReplace;
  } else if (changes < options.max_incremental_changes ||
             static_cast<double>(changes) <
                 options.max_incremental_fraction * static_cast<double>(size)) {
    plan.mode = PlanMode::kIncremental;
  } else {
    plan.mode = PlanMode::kReplace;
  }
  return plan;
}

std::vector<OfctlCommand> RenderPlan(const FlowPlan& plan, std::string_view bridge) {
  const std::string br(bridge);
  switch (plan.mode) {
    case PlanMode::kInSync:
      return {};
    case PlanMode::kReplace:
      return {OfctlCommand{{"ovs-ofctl", "--bundle", "replace-flows", br, "-"},
                           FormatFlows(plan.desired)}};
    case PlanMode::kIncremental: {
      std::string input;
      for (const auto& f : plan.remove) input += "delete_strict " + f.Key() + "\n";
      for (const auto* list : {&plan.modify, &plan.add})
        for (const auto& f : *list) input += "add " + f.ToString() + "\n";
      return {OfctlCommand{{"ovs-ofctl", "--bundle", "add-flows", br, "-"}, std::move(input)}};
    }
  }
  return {};
}

std::vector<std::string> DumpFlowsArgv(std::string_view bridge) {
  return {"ovs-ofctl", "--no-names", "dump-flows", std::string(bridge)};
}

}  // namespace regen::ovs
