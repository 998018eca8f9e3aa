#include "tests/e2e/lab_harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "agent/control_socket.h"
#include "agent/fence_timing.h"
#include "common/subprocess.h"
#include "config/fields.h"

namespace regen::testing {

std::string Tail(const std::string& path, size_t lines) {
  std::ifstream in(path);
  std::vector<std::string> all;
  std::string line;
  while (std::getline(in, line)) all.push_back(line);
  std::string out;
  for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i) {
    out += all[i] + "\n";
  }
  return out;
}

// $REGEN_AGENT_BIN / $REGEN_CONTROLLER_BIN first: a long chaos run keeps its own copies while the
// build directory is rebuilt.
std::string AgentBin() {
  const char* env = std::getenv("REGEN_AGENT_BIN");
  return env != nullptr && *env != '\0' ? env : REGEN_AGENT_BIN;
}
std::string ControllerBin() {
  const char* env = std::getenv("REGEN_CONTROLLER_BIN");
  return env != nullptr && *env != '\0' ? env : REGEN_CONTROLLER_BIN;
}

void GenerateCerts(const std::string& out, const std::string& controller,
                   const std::vector<std::string>& hosts) {
  std::vector<std::string> argv = {SourceDir() + "/scripts/gen-certs.sh", out, controller};
  argv.insert(argv.end(), hosts.begin(), hosts.end());
  RealCommandRunner runner;
  auto r = runner.Run(argv, std::chrono::seconds(120));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->exit_code, 0) << "gen-certs.sh failed:\n" << r->stdout_text << r->stderr_text;
}

TlsFiles Lab::ClientTls(const std::string& name) const {
  TlsFiles t;
  t.ca = CertsDir() + "/ca.crt";
  if (!name.empty()) {
    t.cert = CertsDir() + "/" + name + ".crt";
    t.key = CertsDir() + "/" + name + ".key";
  }
  return t;
}

std::string FitHostDownAfter(LabOptions& options) {
  if (options.watchdog_timeout_ms <= 0) return "";
  auto lease = ParseDuration(options.fencing_lease);
  auto down = ParseDuration(options.host_down_after);
  if (!lease || !down) return "";  // the controller refuses it, naming the field
  const std::chrono::milliseconds watchdog(options.watchdog_timeout_ms);
  std::string problem = FenceTimingProblem(*lease, *down, watchdog);
  if (problem.empty()) return "";
  if (options.host_down_after != LabOptions().host_down_after) {
    return "LabOptions (watchdog_timeout_ms " + std::to_string(options.watchdog_timeout_ms) +
           "): " + problem;
  }
  options.host_down_after =
      FormatDuration(*lease + watchdog + kFenceTimingMargin + std::chrono::milliseconds(250));
  return "";
}

namespace {
LabOptions Fitted(LabOptions options) {
  if (std::string problem = FitHostDownAfter(options); !problem.empty()) ADD_FAILURE() << problem;
  return options;
}

// The stand-in (a FIFO) has no timeout to read: the agent takes agent.yaml's (whole seconds,
// rounded up) for its host_down_after check.
std::string WatchdogYaml(const LabOptions& options, const std::string& host_dir) {
  if (options.watchdog_timeout_ms <= 0) return "";
  return "watchdog_device: " + host_dir + "/watchdog\nwatchdog_timeout: " +
         std::to_string((options.watchdog_timeout_ms + 999) / 1000) + "s\n";
}
}  // namespace

Lab::Lab(LabOptions options) : options_(Fitted(std::move(options))), dir_("regen-lab") {
  chmod(dir_.path().c_str(), 0755);  // qemu runs as libvirt-qemu and must reach its files
  controller_port_ = FreePort();
  controller_address_ = "127.0.0.1:" + std::to_string(controller_port_);
  if (options_.metrics) {
    metrics_port_ = FreePort();
    options_.controller_extra +=
        "metrics_address: \"127.0.0.1:" + std::to_string(metrics_port_) + "\"\n";
  }
  std::string security = "insecure: true\n";
  if (options_.tls) {
    std::vector<std::string> hosts;
    for (int k = 1; k <= options_.hosts; ++k) hosts.push_back(HostName(k));
    GenerateCerts(CertsDir(), "regen-controller", hosts);
    const std::string c = CertsDir() + "/";
    security = "tls:\n  ca: " + c + "ca.crt\n  cert: " + c + "controller.crt\n  key: " + c +
               "controller.key\nauth:\n  certs:\n  - {name: admin@regenctl, role: admin}\n"
               "  - {name: readonly@regenctl, role: read-only}\n";
    if (options_.tokens) {
      security += "  tokens:\n  - {file: " + c + "admin.token, role: admin}\n  - {file: " + c +
                  "readonly.token, role: read-only}\n";
    }
  }
  if (options_.ha_controllers > 0) WriteHaControllerConfigs(security);
  WriteFileOrDie(dir_.File("controller.yaml"),
                 "listen_address: \"" + controller_address_ + "\"\n" + "database: " +
                     DatabasePath() + "\n" + "heartbeat_interval: " + options_.heartbeat_interval +
                     "\n" + "host_down_after: " + options_.host_down_after + "\n" +
                     "fencing_lease: " + options_.fencing_lease +
                     "\nrestart_allowance: " + options_.restart_allowance + "\nlog_level: debug\n" +
                     kLabLoopback + security + options_.controller_extra);
  for (int k = 1; k <= options_.hosts; ++k) {
    std::string h = dir_.File(HostName(k));
    std::filesystem::create_directories(h + "/state");
    chmod(h.c_str(), 0755);
    std::string uri;
    std::string type;
    if (options_.driver == "qemu") {
      std::filesystem::create_directories(h + "/root/etc");
      chmod((h + "/root").c_str(), 0755);
      WriteFileOrDie(h + "/root/etc/qemu.conf", testing::kEmbedQemuConf);
      uri = "qemu:///embed?root=" + h + "/root";
      type = "qemu";
    } else {
      WriteFileOrDie(h + "/node.xml", "<node/>\n");
      uri = "test://" + h + "/node.xml";
      type = "test";
    }
    std::string address = controller_address_;
    if (options_.proxied_hosts.count(k)) {
      proxies_[k] = std::make_unique<TcpProxy>(controller_port_);
      address = "127.0.0.1:" + std::to_string(proxies_[k]->port());
    }
    WriteFileOrDie(
        AgentConfigPath(k),
        "host_name: " + HostName(k) + "\naddress: 127.0.0.1\ncontroller_address: \"" + address +
            "\"\nlibvirt_uri: \"" + uri + "\"\ndomain_type: " + type +
            "\nfault_injection: true\npoll_interval: " + options_.poll_interval +
            "\nfencing_lease: " + options_.fencing_lease + "\novs:\n  bridge: \"\"\nstate_dir: " +
            h + "/state\nimage_dirs: [\"" + dir() + "\"]\ncontrol_socket: " + h +
            "/agent.sock\ncapacity: {vcpus: " + std::to_string(options_.vcpus) +
            ", memory_mib: " + std::to_string(options_.memory_mib) +
            ", disk_gib: 100, bandwidth_mbps: 1000}\nlog_level: debug\n" +
            (options_.metrics
                 ? "metrics_address: \"127.0.0.1:" + std::to_string(FreePort()) + "\"\n"
                 : std::string()) +
            (options_.tls
                 ? "tls:\n  ca: " + CertsDir() + "/ca.crt\n  cert: " + CertsDir() + "/" +
                       HostName(k) + ".crt\n  key: " + CertsDir() + "/" + HostName(k) + ".key\n"
                 : std::string("insecure: true\n")) +
            (options_.ha_controllers > 0 ? AgentEtcdBlock(k) : std::string()) +
            WatchdogYaml(options_, h) + options_.agent_extra);
  }
  if (options_.watchdog_timeout_ms > 0) {
    watchdog_ = std::make_unique<LabWatchdog>(
        dir_.path(), options_.hosts, std::chrono::milliseconds(options_.watchdog_timeout_ms));
  }
  if (options_.ha_controllers > 0 && options_.etcd_auth) SetUpEtcdAuth();
}

Lab::~Lab() {
  watchdog_.reset();  // no reset while the lab is taken down
  for (auto& [k, a] : agents_) {
    if (a) a->Stop();
  }
  if (controller_) controller_->Stop();
  for (auto& c : ha_) {
    if (c) c->Stop();
  }
  KillProcesses(dir_.path() + "/");  // any qemu of this lab
  for (const auto& report : SanitizerReports()) {
    ADD_FAILURE() << "sanitizer report in a daemon's log " << report;
  }
}

std::vector<std::filesystem::path> Lab::LogFiles() const {
  namespace fs = std::filesystem;
  std::vector<fs::path> logs;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir_.path(), ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->path().extension() == ".log") logs.push_back(it->path());
  }
  return logs;
}

std::vector<std::string> Lab::SanitizerReports() const {
  std::vector<std::string> reports;
  for (const auto& log : LogFiles()) {
    std::ifstream in(log);
    std::string line;
    std::string report;
    int lines = 0;  // of the report kept so far (the first 40)
    while (std::getline(in, line) && lines < 40) {
      if (lines == 0 && line.find("ERROR: AddressSanitizer") == std::string::npos &&
          line.find("runtime error:") == std::string::npos &&
          line.find("WARNING: ThreadSanitizer") == std::string::npos) {
        continue;
      }
      report += line.substr(0, 300) + "\n";
      ++lines;
    }
    if (lines > 0) reports.push_back(log.lexically_relative(dir_.path()).string() + ":\n" + report);
  }
  return reports;
}

std::string Lab::AgentConfigPath(int host) const {
  return dir_.File(HostName(host) + "/agent.yaml");
}

void Lab::StartController() {
  if (options_.ha_controllers > 0) {
    StartHaControllers();
    return;
  }
  controller_ = std::make_unique<ChildProcess>(
      std::vector<std::string>{ControllerBin(), "run", "--config", dir_.File("controller.yaml")},
      dir_.File("controller.log"));
  // Wait for the port itself: a gRPC channel that failed once backs off for seconds.
  bool listening = WaitFor([&] { return PortOpen(controller_port_); },
                           std::chrono::milliseconds(10000), std::chrono::milliseconds(10));
  // A client even when it did not start: callers go on with errors, not a null client (the
  // chaos runner segfaulted on one).
  NewClient();
  ASSERT_TRUE(listening) << "controller did not start\n" << Logs();
  ASSERT_TRUE(client_->ListHosts().ok()) << Logs();
}

void Lab::NewClient() {
  AdminClientOptions o;
  o.deadline = std::chrono::seconds(10);
  if (options_.tls) o.tls = ClientTls("admin");
  client_ = std::make_unique<AdminClient>(controller_address_, o);
}

bool Lab::RestartControllerQuietly(std::chrono::milliseconds wait) {
  controller_ = std::make_unique<ChildProcess>(
      std::vector<std::string>{ControllerBin(), "run", "--config", dir_.File("controller.yaml")},
      dir_.File("controller.log"));
  bool listening = WaitFor([&] { return PortOpen(controller_port_) || !controller_->Running(); },
                           wait, std::chrono::milliseconds(10)) &&
                   controller_->Running();
  if (!listening) return false;
  NewClient();
  return true;
}

void Lab::KillController() {
  if (controller_) controller_->Kill();
  controller_.reset();
  for (auto& c : ha_) {
    if (c) c->Kill();
    c.reset();
  }
}

void Lab::StartAgent(int host) {
  agents_[host] = std::make_unique<ChildProcess>(
      std::vector<std::string>{AgentBin(), "run", "--config", AgentConfigPath(host)},
      dir_.File(HostName(host) + "/agent.log"));
}

void Lab::KillAgent(int host) {
  auto it = agents_.find(host);
  if (it != agents_.end() && it->second) it->second->Kill();
  agents_.erase(host);
}

void Lab::StartAll() {
  StartController();
  for (int k = 1; k <= options_.hosts; ++k) StartAgent(k);
  bool all_up = WaitFor(
      [&] {
        auto r = client_->ListHosts();
        if (!r.ok() || r->hosts_size() != options_.hosts) return false;
        for (const auto& h : r->hosts()) {
          if (h.state() != "up") return false;
        }
        return true;
      },
      std::chrono::milliseconds(20000), std::chrono::milliseconds(20));
  ASSERT_TRUE(all_up) << "not every host came up\n" << Logs();
}

nlohmann::json Lab::AgentStatus(int host) {
  auto r = ControlSocketCall(dir_.File(HostName(host) + "/agent.sock"), {{"command", "status"}},
                             std::chrono::milliseconds(2000));
  if (!r.ok()) return nullptr;
  return *r;
}

std::map<std::string, std::vector<std::string>> Lab::RunningDomains() {
  std::map<std::string, std::vector<std::string>> out;
  for (int k = 1; k <= options_.hosts; ++k) {
    auto s = AgentStatus(k);
    if (s.is_null()) continue;
    for (const auto& d : s["domains"]) {
      if (d.value("state", "") == "running") out[d.value("name", "")].push_back(HostName(k));
    }
  }
  return out;
}

std::vector<v1::InstanceInfo> Lab::Instances() {
  auto r = client_->ListInstances();
  if (!r.ok()) return {};
  return {r->instances().begin(), r->instances().end()};
}

std::optional<v1::InstanceInfo> Lab::Instance(const std::string& name) {
  for (auto& i : Instances()) {
    if (i.name() == name) return i;
  }
  return std::nullopt;
}

std::string Lab::HostState(const std::string& host) {
  auto r = client_->ListHosts();
  if (!r.ok()) return "";
  for (const auto& h : r->hosts()) {
    if (h.name() == host) return h.state();
  }
  return "";
}

void Lab::Apply(const std::string& spec_yaml) {
  v1::ApplyServiceRequest req;
  req.set_spec_yaml(spec_yaml);
  req.set_file_name("test.yaml");
  auto r = client_->ApplyService(req);
  ASSERT_TRUE(r.ok()) << r.status().message();
}

bool Lab::WaitRunningGeneration(const std::string& name, int64_t generation,
                                std::chrono::milliseconds timeout) {
  return WaitFor(
      [&] {
        auto i = Instance(name);
        return i && i->generation() == generation && i->state() == "running";
      },
      timeout);
}

int Lab::QemuPid(const std::string& host, const std::string& instance) {
  auto named = FindProcesses("guest=" + instance + ",");
  auto in_root = FindProcesses(dir() + "/" + host + "/root");
  for (int p : named) {
    if (std::find(in_root.begin(), in_root.end(), p) != in_root.end()) return p;
  }
  return -1;
}

int64_t Lab::KillQemu(const std::string& instance) {
  auto i = Instance(instance);
  if (!i) return -1;
  int pid = QemuPid(i->host(), instance);
  if (pid <= 0) return -1;
  int64_t at = WallMillis();
  return kill(pid, SIGKILL) == 0 ? at : -1;
}

bool Lab::WaitAllRunning(size_t count, std::chrono::milliseconds timeout) {
  return WaitFor(
      [&] {
        auto all = Instances();
        size_t running = 0;
        for (const auto& i : all) running += i.state() == "running" ? 1 : 0;
        if (running != count) return false;
        auto domains = RunningDomains();
        for (const auto& i : all) {
          auto d = domains.find(i.name());
          if (d == domains.end() || d->second.size() != 1 || d->second[0] != i.host()) return false;
        }
        return true;
      },
      timeout, std::chrono::milliseconds(20));
}

std::vector<v1::Event> Lab::Events() {
  std::vector<v1::Event> out;
  (void)client_->Events(0, false, [&](const v1::Event& e) {
    out.push_back(e);
    return true;
  });
  return out;
}

std::string Lab::Logs() {
  std::string out = "--- controller.log\n" + Tail(dir_.File("controller.log"), 30);
  for (size_t i = 0; i < ha_.size(); ++i) {
    out += "--- controller-" + std::to_string(i) + ".log\n" + Tail(ControllerLog(i), 20);
  }
  for (int k = 1; k <= options_.hosts; ++k) {
    out += "--- " + HostName(k) + "/agent.log\n" + Tail(dir_.File(HostName(k) + "/agent.log"), 15);
  }
  // What the serving controller holds (a failure's cause is often one instance's record).
  out += "--- instances (as the serving controller has them)\n";
  for (const auto& i : Instances()) {
    out += i.name() + " " + i.host() + " " + i.state() + " generation " +
           std::to_string(i.generation()) + " version " + i.version() +
           (i.reason().empty() ? "" : " (" + i.reason() + ")") + "\n";
  }
  return out;
}

std::string Lab::ServiceYaml(const std::string& name, int instances, int uds, int memory_mib) {
  std::ostringstream y;
  y << "name: " << name << "\ninstances: " << instances << "\nupdate_domains: " << uds
    << "\nflavor: {vcpus: 1, memory_mib: " << memory_mib
    << ", disk_gib: 0, bandwidth_mbps: 10}\nnetwork:\n  subnet: 10.20.0.0/24\n  dns_name: " << name
    << ".lab.example\n  ip_policy: keep\nversions:\n  v1:\n    metadata: {release: \"1\"}\n"
    << "version: v1\nhealth_check:\n  type: none\nplacement: spread\n";
  return y.str();
}

std::string Lab::ScrapeControllerMetrics() { return HttpGet(metrics_port_, "/metrics"); }

std::string HttpGet(int port, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size())) {
      char buf[4096];
      for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  size_t body = out.find("\r\n\r\n");
  if (out.rfind("HTTP/1.", 0) != 0 || out.find(" 200 ") > 12 || body == std::string::npos) {
    return "";
  }
  return out.substr(body + 4);
}

double MetricValue(const std::string& text, const std::string& name_and_labels) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name_and_labels + " ", 0) == 0) {
      return std::stod(line.substr(name_and_labels.size() + 1));
    }
  }
  return -1;
}

int64_t DuplicateWatcher::RunningId(int host, const std::string& instance) {
  auto s = lab_.AgentStatus(host);
  if (s.is_null()) return -1;
  for (const auto& d : s["domains"]) {
    if (d.value("name", "") == instance && d.value("state", "") == "running") {
      return d.value("id", int64_t{-1});
    }
  }
  return -1;
}

void DuplicateWatcher::Loop() {
  while (!stop_) {
    // Host by host, in order: the id each listing showed.
    std::map<std::string, std::vector<std::pair<int, int64_t>>> seen;
    for (int k = 1; k <= lab_.hosts(); ++k) {
      auto s = lab_.AgentStatus(k);
      if (s.is_null()) continue;
      for (const auto& d : s["domains"]) {
        if (d.value("state", "") != "running") continue;
        seen[d.value("name", "")].push_back({k, d.value("id", int64_t{-1})});
      }
    }
    for (const auto& [name, where] : seen) {
      if (where.size() < 2) continue;
      // The first host again, after the others were seen running it: the same domain still
      // running there means both ran at once.
      if (RunningId(where[0].first, name) == where[0].second && where[0].second >= 0) {
        std::lock_guard lock(mu_);
        duplicates_.push_back(name + " on " + lab_.HostName(where[0].first) + " and " +
                              lab_.HostName(where[1].first));
      } else {
        ++cleared_;
      }
    }
    ++samples_;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace regen::testing
