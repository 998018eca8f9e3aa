// End to end on a lab (test driver): health checks. The service's subnet is on loopback
// (127.77.10.0/24: Linux routes all of 127/8 to lo), so the agents' TCP probes of an instance's IP
// reach a listener this test opens on that IP and port; the test decides who passes by listening
// or not, following the controller's instance list (IPs are kept across healing: ip_policy keep).
// Checked: a passing probe shows as health "passing"; when the listener closes, max_failed failed
// probes fail the instance and it is healed on another host, where it passes again; an upgrade
// waits for each upgraded instance's probe and completes when they pass; an upgrade whose
// upgraded instance never passes ends in `failed` (upgrade.max_failed verdicts), UD 1 untouched,
// and `rollback` brings it back to v1, passing. Only loopback addresses are ever bound or probed.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "tests/e2e/lab_harness.h"

namespace regen::testing {
namespace {

using std::chrono::milliseconds;

constexpr char kSubnetPrefix[] = "127.77.10.";

// Keeps a TCP listener open on IP:port of every instance for which `serve` says yes, and none on
// the others, following the controller's instance list every 20 ms; accepted connections are
// closed at once (a TCP probe only connects). Refuses any address outside kSubnetPrefix.
class HealthyWhile {
 public:
  using Predicate = std::function<bool(const v1::InstanceInfo&)>;
  HealthyWhile(Lab& lab, int port, Predicate serve)
      : client_(lab.controller_address()), port_(port), serve_(std::move(serve)) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~HealthyWhile() {
    stop_ = true;
    thread_.join();
    for (auto& [ip, fd] : listeners_) close(fd);
  }
  void Set(Predicate serve) {
    std::lock_guard lock(mu_);
    serve_ = std::move(serve);
  }
  int accepted() const { return accepted_; }
  std::string error() {
    std::lock_guard lock(mu_);
    return error_;
  }

 private:
  void Loop() {
    while (!stop_) {
      Follow();
      std::vector<pollfd> fds;
      for (auto& [ip, fd] : listeners_) fds.push_back({fd, POLLIN, 0});
      if (fds.empty()) {
        std::this_thread::sleep_for(milliseconds(20));
        continue;
      }
      if (poll(fds.data(), fds.size(), 20) <= 0) continue;
      for (const auto& p : fds) {
        if (!(p.revents & POLLIN)) continue;
        int c = accept(p.fd, nullptr, nullptr);
        if (c >= 0) {
          ++accepted_;
          close(c);
        }
      }
    }
  }

  void Follow() {
    auto list = client_.ListInstances();
    if (!list.ok()) return;
    std::map<std::string, bool> want;  // ip -> serve
    {
      std::lock_guard lock(mu_);
      for (const auto& i : list->instances()) {
        if (i.ip().empty()) continue;
        want[i.ip()] = want[i.ip()] || serve_(i);
      }
    }
    for (auto it = listeners_.begin(); it != listeners_.end();) {
      if (want[it->first]) {
        ++it;
      } else {
        close(it->second);
        it = listeners_.erase(it);
      }
    }
    for (const auto& [ip, serve] : want) {
      if (!serve || listeners_.count(ip)) continue;
      if (ip.rfind(kSubnetPrefix, 0) != 0) {
        std::lock_guard lock(mu_);
        error_ = "instance address " + ip + " is not on loopback " + kSubnetPrefix + "0/24";
        continue;
      }
      int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      int one = 1;
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(static_cast<uint16_t>(port_));
      inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
      if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 64) != 0) {
        std::lock_guard lock(mu_);
        error_ = "cannot listen on " + ip + ":" + std::to_string(port_) + ": " + strerror(errno);
        close(fd);
        continue;
      }
      listeners_[ip] = fd;
    }
  }

  AdminClient client_;
  const int port_;
  std::mutex mu_;
  Predicate serve_;                       // guarded by mu_
  std::string error_;                     // guarded by mu_
  std::map<std::string, int> listeners_;  // ip -> listening fd (loop thread only)
  std::atomic<int> accepted_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

std::string Spec(int instances, int uds, int port) {
  return "name: web\ninstances: " + std::to_string(instances) +
         "\nupdate_domains: " + std::to_string(uds) +
         "\nflavor: {vcpus: 1, memory_mib: 64, disk_gib: 0, bandwidth_mbps: 10}\n"
         "network: {subnet: " +
         std::string(kSubnetPrefix) +
         "0/24, dns_name: web.lab.example, ip_policy: keep}\n"
         "versions:\n  v1: {metadata: {release: \"1\"}}\n  v2: {metadata: {release: \"2\"}}\n"
         "version: v1\n"
         "health_check: {type: tcp, port: " +
         std::to_string(port) +
         ", interval: 200ms, timeout: 100ms, max_failed: 2}\n"
         "placement: spread\n";
}

bool AllPassing(Lab& lab, size_t count) {
  auto all = lab.Instances();
  if (all.size() != count) return false;
  for (const auto& i : all) {
    if (i.state() != "running" || i.health() != "passing") return false;
  }
  return true;
}

v1::UpgradeStatus Status(Lab& lab) {
  v1::UpgradeServiceRequest r;
  r.set_service("web");
  auto s = lab.client().UpgradeStatusGet(r);
  return s.ok() ? *s : v1::UpgradeStatus();
}

Result<v1::UpgradeStatus> StartUpgrade(Lab& lab) {
  v1::UpgradeStartRequest start;
  start.set_service("web");
  start.set_to_version("v2");
  start.set_mode("auto");
  return lab.client().UpgradeStart(start);
}

// Failure events of `instance` detected by a health check.
int HealthCheckFailures(Lab& lab, const std::string& instance) {
  int n = 0;
  for (const auto& e : lab.Events()) {
    if (e.kind() == "failure" && e.instance() == instance &&
        e.message().find("detected by health check") != std::string::npos)
      ++n;
  }
  return n;
}

TEST(HealthE2eTest, FailingProbeHealsTheInstanceOnAnotherHostWhereItPassesAgain) {
  LabOptions o;
  o.hosts = 2;
  Lab lab(o);
  lab.StartAll();
  const int port = FreePort();  // the listeners bind it on the instances' addresses
  // Generations up to `failing_up_to` do not answer (0: every generation answers). Decided by
  // generation, so the healed one answers from its first probe on, however late this thread runs.
  std::atomic<int64_t> failing_up_to{0};
  HealthyWhile listener(
      lab, port, [&](const v1::InstanceInfo& i) { return i.generation() > failing_up_to.load(); });
  lab.Apply(Spec(1, 1, port));
  ASSERT_TRUE(lab.WaitAllRunning(1, milliseconds(20000))) << lab.Logs();
  ASSERT_TRUE(WaitFor([&] { return AllPassing(lab, 1); }, milliseconds(10000)))
      << listener.error() << lab.Logs();
  EXPECT_EQ(listener.error(), "");
  EXPECT_GT(listener.accepted(), 0) << "the agent's probe reached the test's listener";
  const v1::InstanceInfo before = *lab.Instance("web-0");
  ASSERT_EQ(before.ip().rfind(kSubnetPrefix, 0), 0u) << before.ip();
  // The agent running it shows the same.
  int k = before.host() == lab.HostName(1) ? 1 : 2;
  auto status = lab.AgentStatus(k);
  ASSERT_FALSE(status.is_null());
  ASSERT_EQ(status["health"].size(), 1u) << status.dump();
  EXPECT_EQ(status["health"][0]["instance"], "web-0");
  EXPECT_EQ(status["health"][0]["state"], "passing");
  EXPECT_EQ(HealthCheckFailures(lab, "web-0"), 0);

  // The service stops answering: 2 failed probes in a row fail it; it is healed elsewhere.
  DuplicateWatcher watcher(lab);
  auto closed_at = std::chrono::steady_clock::now();
  failing_up_to = before.generation();
  ASSERT_TRUE(WaitFor(
      [&] {
        auto i = lab.Instance("web-0");
        return i && i->generation() > before.generation() && i->host() != before.host();
      },
      milliseconds(15000)))
      << lab.Logs();
  auto healed_after = std::chrono::steady_clock::now() - closed_at;
  // The new generation answers (same IP, new host).
  EXPECT_EQ(HealthCheckFailures(lab, "web-0"), 1);
  const v1::InstanceInfo after = *lab.Instance("web-0");
  EXPECT_EQ(after.ip(), before.ip()) << "ip_policy keep";
  EXPECT_EQ(after.mac(), before.mac());
  EXPECT_EQ(after.version(), "v1");

  // The new generation passes, and nothing failed again.
  ASSERT_TRUE(lab.WaitAllRunning(1, milliseconds(20000))) << lab.Logs();
  ASSERT_TRUE(WaitFor([&] { return AllPassing(lab, 1); }, milliseconds(10000))) << lab.Logs();
  EXPECT_EQ(lab.Instance("web-0")->generation(), after.generation());
  EXPECT_EQ(HealthCheckFailures(lab, "web-0"), 1);
  watcher.Stop();
  EXPECT_TRUE(watcher.duplicates().empty()) << watcher.duplicates()[0];
  std::printf(
      "[ figures ] listener closed -> re-created on another host: %lld ms\n",
      static_cast<long long>(std::chrono::duration_cast<milliseconds>(healed_after).count()));
}

TEST(HealthE2eTest, UpgradeWaitsForPassingProbesAndCompletes) {
  LabOptions o;
  o.hosts = 2;
  Lab lab(o);
  lab.StartAll();
  const int port = FreePort();  // the listeners bind it on the instances' addresses
  HealthyWhile listener(lab, port, [](const v1::InstanceInfo&) { return true; });
  lab.Apply(Spec(2, 2, port));
  ASSERT_TRUE(WaitFor([&] { return AllPassing(lab, 2); }, milliseconds(20000))) << lab.Logs();
  ASSERT_TRUE(StartUpgrade(lab).ok());
  ASSERT_TRUE(WaitFor([&] { return Status(lab).state() == "completed"; }, milliseconds(30000)))
      << Status(lab).DebugString() << lab.Logs();
  ASSERT_TRUE(WaitFor([&] { return AllPassing(lab, 2); }, milliseconds(10000))) << lab.Logs();
  for (const auto& i : lab.Instances()) {
    EXPECT_EQ(i.version(), "v2") << i.name();
    EXPECT_EQ(i.generation(), 2) << i.name() << ": upgraded once, never healed";
  }
  // UD 1 was re-created only after UD 0's instance ran v2 and its probe passed: at least one
  // probe interval (200 ms) after UD 0 began.
  int64_t ud0_at = 0;
  int64_t ud1_at = 0;
  for (const auto& e : lab.Events()) {
    if (e.kind() != "upgrade_instance") continue;
    if (e.instance() == "web-0") ud0_at = e.unix_ms();
    if (e.instance() == "web-1") ud1_at = e.unix_ms();
  }
  ASSERT_GT(ud0_at, 0);
  ASSERT_GT(ud1_at, 0);
  EXPECT_GE(ud1_at - ud0_at, 200) << "UD 1 did not wait for UD 0's first probe";
  EXPECT_EQ(HealthCheckFailures(lab, "web-0") + HealthCheckFailures(lab, "web-1"), 0);
}

TEST(HealthE2eTest, UpgradeWhoseProbeNeverPassesFailsAndRollbackBringsItBack) {
  LabOptions o;
  o.hosts = 2;
  o.controller_extra = "upgrade: {max_failed: 2}\n";
  Lab lab(o);
  lab.StartAll();
  const int port = FreePort();  // the listeners bind it on the instances' addresses
  // v1 answers its probes; v2 never does.
  HealthyWhile listener(lab, port, [](const v1::InstanceInfo& i) { return i.version() == "v1"; });
  lab.Apply(Spec(2, 2, port));
  ASSERT_TRUE(WaitFor([&] { return AllPassing(lab, 2); }, milliseconds(20000))) << lab.Logs();
  DuplicateWatcher watcher(lab);

  ASSERT_TRUE(StartUpgrade(lab).ok());
  ASSERT_TRUE(WaitFor([&] { return Status(lab).state() == "failed"; }, milliseconds(30000)))
      << Status(lab).DebugString() << lab.Logs();
  v1::UpgradeStatus st = Status(lab);
  EXPECT_EQ(st.current_ud(), 0);
  EXPECT_EQ(st.upgraded_uds_size(), 0) << "UD 0 never counted: its probe never passed";
  EXPECT_GE(HealthCheckFailures(lab, "web-0"), 2);
  EXPECT_EQ(HealthCheckFailures(lab, "web-1"), 0);
  auto web1 = lab.Instance("web-1");
  ASSERT_TRUE(web1.has_value());
  EXPECT_EQ(web1->version(), "v1") << "UD 1 is never upgraded";
  EXPECT_EQ(web1->generation(), 1);
  EXPECT_EQ(lab.Instance("web-0")->version(), "v2");
  bool counted = false;
  for (const auto& e : lab.Events()) {
    counted |=
        (e.kind() == "upgrade" || e.kind() == "upgrade_preempted") &&
        e.message().find("web-0 failed its health check (2 of max_failed 2)") != std::string::npos;
  }
  EXPECT_TRUE(counted) << "the upgrade counted web-0's health-check failures";

  v1::UpgradeServiceRequest rb;
  rb.set_service("web");
  auto rolled = lab.client().UpgradeRollback(rb);
  ASSERT_TRUE(rolled.ok()) << rolled.status().message();
  ASSERT_TRUE(WaitFor([&] { return Status(lab).state() == "rolled_back"; }, milliseconds(30000)))
      << Status(lab).DebugString() << lab.Logs();
  ASSERT_TRUE(WaitFor([&] { return AllPassing(lab, 2); }, milliseconds(20000))) << lab.Logs();
  for (const auto& i : lab.Instances()) EXPECT_EQ(i.version(), "v1") << i.name();
  auto services = lab.client().ListServices();
  ASSERT_TRUE(services.ok());
  EXPECT_EQ(services->services(0).version(), "v1");
  EXPECT_EQ(listener.error(), "");
  watcher.Stop();
  EXPECT_TRUE(watcher.duplicates().empty()) << watcher.duplicates()[0];
}

}  // namespace
}  // namespace regen::testing
