// A Regen cluster on one machine for end-to-end tests: a real regen-controller and N real
// regen-agent processes on loopback (test driver, or qemu:///embed with TCG), each agent
// optionally behind a TcpProxy so a test can partition it. Everything lives in one TempDir;
// processes are stopped by their own PIDs and qemus of the dir are killed on destruction, even
// when the test failed. One test thread.
#pragma once

#include <thread>

#include <mutex>

#include <atomic>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/admin_client.h"
#include "common/proto/regen.pb.h"
#include "tests/e2e/lab_watchdog.h"
#include "tests/fakes/tcp_proxy.h"
#include "tests/fakes/test_util.h"

namespace regen::testing {

// The last `lines` lines of a text file ("" when it cannot be read).
std::string Tail(const std::string& path, size_t lines);

struct LabOptions {
  int hosts = 3;
  std::string driver = "test";  // test | qemu
  std::string heartbeat_interval = "200ms";
  std::string host_down_after = "2500ms";  // as scripts/lab.sh
  std::string fencing_lease = "2s";
  std::string restart_allowance = "800ms";
  std::string poll_interval = "200ms";
  std::set<int> proxied_hosts;  // 1-based host numbers that reach the controller via a TcpProxy
  int vcpus = 8;
  int memory_mib = 8192;
  bool metrics = false;  // the controller and every agent serve Prometheus metrics on free ports
  std::string controller_extra;  // appended to controller.yaml (e.g. "upgrade: {...}\n")
  // Mutual TLS: certificates from scripts/gen-certs.sh in DIR/certs (controller
  // "regen-controller", hosts host-1..host-N, admin and readonly clients, two tokens); the
  // controller gets tls: and auth: {certs: admin@regenctl admin, readonly@regenctl read-only},
  // the agents their host's certificate, the harness's client the admin certificate. Without it
  // every config says insecure: true.
  bool tls = false;
  bool tokens = false;  // with tls: auth.tokens lists certs/admin.token and certs/readonly.token
  std::string agent_extra;  // appended to every agent.yaml (e.g. "dns: {...}\n")
  // HA (lab_harness_ha.cc): this many regen-controllers with store: etcd on `etcd_endpoints`
  // (the test starts etcd); agents and the harness's client take all their addresses. 0: one
  // embedded controller (SQLite).
  int ha_controllers = 0;
  std::vector<std::string> etcd_endpoints;
  std::string election_ttl = "1s";
  // HA: every agent keeps its lease in etcd (agent.yaml etcd:) with this TTL; the hosts listed
  // reach etcd through TcpProxies (one per member) that CutEtcd/HealEtcd partition.
  std::string etcd_lease_ttl = "4s";
  std::set<int> etcd_proxied_hosts;
  // HA: etcd's auth on, as an operator sets it up: `regen-controller etcd init` (root's password
  // kEtcdRootPassword), then `etcd add-host` for every host; the controllers connect as
  // regen-controller, each agent as its host's own user (a password each).
  bool etcd_auth = false;
  // The controller's SQLite database ("" = DIR/controller.db); the chaos runner puts it on a
  // small tmpfs to fill that disk.
  std::string database;
  // > 0: every host gets a stand-in hardware watchdog (tests/e2e/lab_watchdog.h, agent.yaml
  // watchdog_device) that resets the host (kills its qemus and agent) after this many ms without
  // a pet; must stay below host_down_after so a dead agent's VMs are gone before any heal.
  int watchdog_timeout_ms = 0;
};

// With stand-in watchdogs (watchdog_timeout_ms > 0) host_down_after must exceed fencing_lease +
// the watchdog's timeout + kFenceTimingMargin (agent/fence_timing.h; the agents check the same
// rule): the default host_down_after grows to fit; a value the test set that does not fit is
// returned as an error naming the three values (the Lab then fails the test).
std::string FitHostDownAfter(LabOptions& options);

inline constexpr char kEtcdRootPassword[] = "lab-root-pw";
// Every lab agent announces 127.0.0.1 (one machine): the controller is told to accept that
// (controller.yaml allow_loopback_hosts; issue 15, finding 3).
inline constexpr char kLabLoopback[] = "allow_loopback_hosts: true\n";

class Lab {
 public:
  explicit Lab(LabOptions options);
  ~Lab();

  void StartController();  // HA: starts every controller not running, waits for the active one
  void KillController();   // SIGKILL, no cleanup: a crash (HA: every controller)
  // Embedded: starts the controller as a supervisor would (systemd Restart=), without failing
  // the test: true once it listens, false when it exited or did not listen within `wait`.
  bool RestartControllerQuietly(std::chrono::milliseconds wait);
  // HA: the index of the controller that serves (-1: none), and kill -9 of it (its index).
  int ActiveController();
  int KillActiveController();
  std::string ControllerLog(int i) const;
  void StartAgent(int host);
  void KillAgent(int host);  // SIGKILL (test driver: its VMs die with it)
  // The (embedded) controller's process / host's agent process is running now (reaped if not).
  bool ControllerRunning() { return controller_ && controller_->Running(); }
  bool AgentRunning(int host) {
    auto it = agents_.find(host);
    return it != agents_.end() && it->second && it->second->Running();
  }
  // host's agent's waitpid status once AgentRunning() said false (ChildProcess::wait_status).
  std::optional<int> AgentWaitStatus(int host) const {
    auto it = agents_.find(host);
    return it != agents_.end() && it->second ? it->second->wait_status() : std::nullopt;
  }
  // The (embedded) controller's / host's agent's pid; -1 when it was not started.
  int ControllerPid() const { return controller_ ? controller_->pid() : -1; }
  int AgentPid(int host) const {
    auto it = agents_.find(host);
    return it != agents_.end() && it->second ? it->second->pid() : -1;
  }
  // options.watchdog_timeout_ms: the stand-in watchdogs (null without).
  LabWatchdog* watchdog() { return watchdog_.get(); }
  std::string DatabasePath() const {
    return options_.database.empty() ? dir_.File("controller.db") : options_.database;
  }
  void StartAll();
  std::string HostName(int host) const { return "host-" + std::to_string(host); }
  int hosts() const { return options_.hosts; }
  std::string AgentConfigPath(int host) const;
  // The agent's state_dir (events/<instance>.jsonl, channels/ ...).
  std::string StateDir(int host) const { return dir_.File(HostName(host) + "/state"); }
  // Host number of "host-K".
  static int HostNumber(const std::string& host) { return std::stoi(host.substr(5)); }
  std::string dir() const { return dir_.path(); }
  TcpProxy& proxy(int host) { return *proxies_.at(host); }
  // HA: partitions host `host` (an etcd_proxied_hosts one) from every etcd member, or heals it.
  void CutEtcd(int host);
  void HealEtcd(int host);
  AdminClient& client() { return *client_; }
  const std::string& controller_address() const { return controller_address_; }
  // options.tls: where gen-certs.sh wrote the certificates (DIR/certs).
  std::string CertsDir() const { return dir_.File("certs"); }
  // options.tls: client TLS files with certs/NAME.crt and certs/NAME.key ("" = no certificate).
  TlsFiles ClientTls(const std::string& name) const;
  // The controller's /metrics text (options.metrics), or "" when it does not answer.
  std::string ScrapeControllerMetrics();

  // The agent's status (control socket), or null when it does not answer.
  nlohmann::json AgentStatus(int host);
  // instance -> hosts where the agent lists it running (as seen now, host by host).
  std::map<std::string, std::vector<std::string>> RunningDomains();
  // instance -> "host/libvirt id" of its running domain, from the agents' own listings (an id is
  // new at every start: the same id later means the domain was never restarted).
  std::map<std::string, std::string> RunningDomainIds();
  // Fences the agents report: fenced now, plus every "fenced" in their change logs.
  int AgentFences();
  // Every agent's lease runs for at least `lease_ms` - `slack_ms` more: it was renewed just now.
  bool LeasesRenewed(int64_t lease_ms, int64_t slack_ms = 600);
  // The upgrade state of `service` ("none" when it has none or the call fails).
  std::string UpgradeState(const std::string& service);
  // The service's whole upgrade status from the serving controller (nullopt: no answer).
  std::optional<v1::UpgradeStatus> Upgrade(const std::string& service);

  std::vector<v1::InstanceInfo> Instances();
  std::optional<v1::InstanceInfo> Instance(const std::string& name);
  std::string HostState(const std::string& host);
  // Applies scripts/lab/web.yaml-like spec text; fails the test on error.
  void Apply(const std::string& spec_yaml);
  // Waits until `count` instances are running (controller view) and every agent agrees.
  bool WaitAllRunning(size_t count, std::chrono::milliseconds timeout);
  // Waits until `name` runs with `generation` (e.g. healed: the old generation + 1).
  bool WaitRunningGeneration(const std::string& name, int64_t generation,
                             std::chrono::milliseconds timeout);
  // The PID of the qemu running `instance` under `host`'s embed root (driver qemu), or -1.
  int QemuPid(const std::string& host, const std::string& instance);
  // kill -9 of the qemu running `instance` where the controller has it (driver qemu): the wall
  // time of the kill (WallMillis), or -1 when there is no such qemu or the kill failed.
  int64_t KillQemu(const std::string& instance);
  std::vector<v1::Event> Events();
  // Log tails for failure messages.
  std::string Logs();
  // Every *.log under the lab's directory (the daemons' and qemu's).
  std::vector<std::filesystem::path> LogFiles() const;
  // Daemons built with sanitizers (build-asan's, build-tsan's) write their reports to their logs:
  // one entry per log holding an ASan, UBSan or TSan report ("FILE: the report's first lines").
  // Leak reports at exit are not counted (libvirt and gRPC keep caches). The destructor fails the
  // test for each, after stopping the daemons.
  std::vector<std::string> SanitizerReports() const;

  // A service spec (no disk image) with `instances` in `uds` update domains.
  static std::string ServiceYaml(const std::string& name, int instances, int uds,
                                 int memory_mib = 64);

 private:
  LabOptions options_;
  TempDir dir_;
  int controller_port_ = 0;
  int metrics_port_ = 0;
  std::string controller_address_;
  std::unique_ptr<ChildProcess> controller_;
  // HA: one per controller (null: not running), their ports.
  std::vector<std::unique_ptr<ChildProcess>> ha_;
  std::vector<int> ha_ports_;
  void WriteHaControllerConfigs(const std::string& security);
  // HA: the etcd: block of host k's agent.yaml (proxies made for etcd_proxied_hosts).
  std::string AgentEtcdBlock(int k);
  // options.etcd_auth: etcd init and add-host for every host, with the binary (test thread).
  void SetUpEtcdAuth();
  // options.etcd_auth: the user/password_file lines of an etcd block for `user` (its password
  // file written), "" without auth.
  std::string EtcdUser(const std::string& user);
  std::map<int, std::vector<std::unique_ptr<TcpProxy>>> etcd_proxies_;
  void StartHaControllers();
  std::string ControllerAddress(int i) const { return "127.0.0.1:" + std::to_string(ha_ports_[i]); }
  std::map<int, std::unique_ptr<ChildProcess>> agents_;
  std::map<int, std::unique_ptr<TcpProxy>> proxies_;
  std::unique_ptr<AdminClient> client_;
  // A new client_ for the (embedded) controller's address, as admin under options.tls.
  void NewClient();
  std::unique_ptr<LabWatchdog> watchdog_;
};

// Samples every agent's domains in the background (every 20 ms, through their control sockets);
// records any instance running on two hosts at once. Hosts are listed one after another, so a
// move between two listings can look like two copies: a suspect is confirmed only when the host
// listed first still runs the very same libvirt domain (same id) after the second host was seen
// running it, i.e. both ran at that moment. Stop() (or the destructor) ends it.
class DuplicateWatcher {
 public:
  explicit DuplicateWatcher(Lab& lab) : lab_(lab), thread_([this] { Loop(); }) {}
  ~DuplicateWatcher() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::vector<std::string> duplicates() {
    std::lock_guard lock(mu_);
    return duplicates_;
  }
  int samples() const { return samples_; }
  // Suspects a second look cleared (a move between two listings).
  int cleared() const { return cleared_; }

 private:
  void Loop();
  // The libvirt id of `instance` running on host `host` now, or -1.
  int64_t RunningId(int host, const std::string& instance);
  Lab& lab_;
  std::atomic<bool> stop_{false};
  std::atomic<int> samples_{0};
  std::atomic<int> cleared_{0};
  std::mutex mu_;
  std::vector<std::string> duplicates_;
  std::thread thread_;
};

// GET http://127.0.0.1:port/path; the body, or "" on any failure.
std::string HttpGet(int port, const std::string& path);
// The value of the sample `name_and_labels` (e.g. `regen_hosts{state="up"}`) in Prometheus text,
// or -1 when it is absent.
double MetricValue(const std::string& text, const std::string& name_and_labels);

// The regen binaries (from CMake; $REGEN_AGENT_BIN / $REGEN_CONTROLLER_BIN override them).
std::string AgentBin();
std::string ControllerBin();

// Runs scripts/gen-certs.sh OUT CONTROLLER HOSTS...; fails the test (fatally) when it fails.
void GenerateCerts(const std::string& out, const std::string& controller,
                   const std::vector<std::string>& hosts);

}  // namespace regen::testing
