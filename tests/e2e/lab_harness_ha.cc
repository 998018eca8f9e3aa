// The HA part of the lab harness (lab_harness.h): N regen-controllers with store: etcd, one
// active, the others standbys; agents and the harness's AdminClient take every address. Also the
// checks of what really runs that the controller-failure tests share (domain ids, fences).
#include <gtest/gtest.h>

#include <filesystem>

#include "common/subprocess.h"
#include "tests/e2e/lab_harness.h"

namespace regen::testing {

void Lab::WriteHaControllerConfigs(const std::string& security) {
  std::string endpoints;
  for (const std::string& e : options_.etcd_endpoints) {
    endpoints += (endpoints.empty() ? "\"" : ", \"") + e + "\"";
  }
  std::string all;
  for (int i = 0; i < options_.ha_controllers; ++i) {
    ha_ports_.push_back(i == 0 ? controller_port_ : FreePort());
    ha_.emplace_back();
    all += (all.empty() ? "" : ",") + ControllerAddress(i);
  }
  for (int i = 0; i < options_.ha_controllers; ++i) {
    WriteFileOrDie(
        dir_.File("controller-" + std::to_string(i) + ".yaml"),
        "listen_address: \"" + ControllerAddress(i) + "\"\nstore: etcd\netcd:\n" +
            "  endpoints: [" + endpoints + "]\n  election_ttl: " + options_.election_ttl + "\n" +
            EtcdUser("regen-controller") + "heartbeat_interval: " + options_.heartbeat_interval +
            "\nhost_down_after: " + options_.host_down_after + "\nfencing_lease: " +
            options_.fencing_lease + "\nrestart_allowance: " + options_.restart_allowance +
            "\nlog_level: debug\n" + kLabLoopback + security + options_.controller_extra);
  }
  controller_address_ = all;  // agents and the client follow the active one
}

std::string Lab::AgentEtcdBlock(int k) {
  std::string endpoints;
  for (const std::string& e : options_.etcd_endpoints) {
    std::string endpoint = e;
    if (options_.etcd_proxied_hosts.count(k)) {
      auto& p = etcd_proxies_[k].emplace_back(
          std::make_unique<TcpProxy>(std::stoi(e.substr(e.rfind(':') + 1))));
      endpoint = "127.0.0.1:" + std::to_string(p->port());
    }
    endpoints += (endpoints.empty() ? "\"" : ", \"") + endpoint + "\"";
  }
  return "etcd:\n  endpoints: [" + endpoints +
         "]\n  prefix: /regen/\n  lease_ttl: " + options_.etcd_lease_ttl + "\n" +
         EtcdUser(HostName(k));
}

std::string Lab::EtcdUser(const std::string& user) {
  if (!options_.etcd_auth) return "";
  const std::string file = dir_.File("etcd-" + user + ".pw");
  WriteFileOrDie(file, user + "-pw\n");
  return "  user: " + user + "\n  password_file: " + file + "\n";
}

void Lab::SetUpEtcdAuth() {
  const std::string root = dir_.File("etcd-root.pw");
  WriteFileOrDie(root, std::string(kEtcdRootPassword) + "\n");
  const std::string config = dir_.File("controller-0.yaml");
  std::vector<std::vector<std::string>> steps = {
      {ControllerBin(), "--config", config, "etcd", "init", "--root-password-file", root}};
  for (int k = 1; k <= options_.hosts; ++k) {
    steps.push_back({ControllerBin(), "--config", config, "etcd", "add-host", HostName(k),
                     "--root-password-file", root, "--password-file",
                     dir_.File("etcd-" + HostName(k) + ".pw")});
  }
  RealCommandRunner runner;
  for (const auto& argv : steps) {
    auto r = runner.Run(argv, std::chrono::seconds(60));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(r->exit_code, 0) << argv[3] << " " << argv[4] << " failed:\n"
                               << r->stdout_text << r->stderr_text;
  }
}

void Lab::CutEtcd(int host) {
  for (auto& p : etcd_proxies_.at(host)) p->Cut();
}

void Lab::HealEtcd(int host) {
  for (auto& p : etcd_proxies_.at(host)) p->Heal();
}

std::string Lab::ControllerLog(int i) const {
  return dir_.File("controller-" + std::to_string(i) + ".log");
}

void Lab::StartHaControllers() {
  for (int i = 0; i < options_.ha_controllers; ++i) {
    if (ha_[i]) continue;
    ha_[i] = std::make_unique<ChildProcess>(
        std::vector<std::string>{ControllerBin(), "run", "--config",
                                 dir_.File("controller-" + std::to_string(i) + ".yaml")},
        ControllerLog(i));
  }
  AdminClientOptions o;
  o.deadline = std::chrono::seconds(10);
  if (options_.tls) o.tls = ClientTls("admin");
  client_ = std::make_unique<AdminClient>(controller_address_, o);
  bool active = WaitFor([&] { return ActiveController() >= 0; }, std::chrono::milliseconds(20000),
                        std::chrono::milliseconds(20));
  ASSERT_TRUE(active) << "no controller became active\n" << Logs();
}

int Lab::ActiveController() {
  for (int i = 0; i < static_cast<int>(ha_.size()); ++i) {
    if (!ha_[i]) continue;
    AdminClientOptions o;
    o.deadline = std::chrono::seconds(1);
    if (options_.tls) o.tls = ClientTls("admin");
    AdminClient one(ControllerAddress(i), o);
    auto hosts = one.ListHosts();  // standbys answer reads too, saying so in served_by
    if (hosts.ok() && hosts->served_by().empty()) return i;
  }
  return -1;
}

int Lab::KillActiveController() {
  int i = ActiveController();
  if (i < 0) return -1;
  ha_[i]->Kill();
  ha_[i].reset();
  return i;
}

std::map<std::string, std::string> Lab::RunningDomainIds() {
  std::map<std::string, std::string> out;
  for (int k = 1; k <= options_.hosts; ++k) {
    auto s = AgentStatus(k);
    if (s.is_null()) continue;
    for (const auto& d : s["domains"]) {
      if (d.value("state", "") != "running") continue;
      out[d.value("name", "")] = HostName(k) + "/" + std::to_string(d.value("id", -1));
    }
  }
  return out;
}

int Lab::AgentFences() {
  int fences = 0;
  for (int k = 1; k <= options_.hosts; ++k) {
    auto s = AgentStatus(k);
    if (s.is_null()) continue;
    fences += s.value("fenced", false) ? 1 : 0;
    for (const auto& c : s["changes"]) fences += c.value("what", "") == "fenced" ? 1 : 0;
  }
  return fences;
}

bool Lab::LeasesRenewed(int64_t lease_ms, int64_t slack_ms) {
  for (int k = 1; k <= options_.hosts; ++k) {
    auto s = AgentStatus(k);
    if (s.is_null() || s.value("lease_remaining_ms", int64_t{0}) < lease_ms - slack_ms) {
      return false;
    }
  }
  return true;
}

std::optional<v1::UpgradeStatus> Lab::Upgrade(const std::string& service) {
  v1::UpgradeServiceRequest r;
  r.set_service(service);
  auto s = client_->UpgradeStatusGet(r);
  if (!s.ok()) return std::nullopt;
  return *s;
}

std::string Lab::UpgradeState(const std::string& service) {
  auto u = Upgrade(service);
  return u ? u->state() : "none";
}

}  // namespace regen::testing
