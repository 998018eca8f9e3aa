#include "tests/integration/ovs/ovs_sandbox.h"

#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace regen::testing {
namespace {

using namespace std::chrono_literals;

constexpr char kNetnsPrefix[] = "regen-ovs-";
constexpr char kSchema[] = "/usr/share/openvswitch/vswitch.ovsschema";
constexpr auto kCommandTimeout = 15s;

std::atomic<int> next_sandbox{0};

std::string Tail(const std::string& path, size_t lines) {
  std::ifstream in(path);
  std::vector<std::string> all;
  for (std::string line; std::getline(in, line);) all.push_back(line);
  std::string out;
  for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i)
    out += "  " + all[i] + "\n";
  return out;
}

}  // namespace

std::string OvsSandbox::FindProgram(const std::string& program) {
  if (program.find('/') != std::string::npos) return program;
  const char* path = std::getenv("PATH");
  std::stringstream dirs(std::string(path ? path : "/usr/bin:/bin") + ":/usr/sbin:/sbin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const std::string candidate = dir + "/" + program;
    if (!dir.empty() && access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

OvsSandbox::OvsSandbox()
    : dir_(kNetnsPrefix + std::to_string(getpid())),
      netns_(kNetnsPrefix + std::to_string(getpid()) + "-" + std::to_string(next_sandbox++)) {}

OvsSandbox::~OvsSandbox() { Stop(); }

void OvsSandbox::DeleteNamespacesOfDeadSandboxes() {
  DIR* dir = opendir("/var/run/netns");
  if (dir == nullptr) return;
  std::vector<std::string> stale;
  while (dirent* e = readdir(dir)) {
    std::string name = e->d_name;
    if (!name.starts_with(kNetnsPrefix)) continue;
    const int pid = std::atoi(name.c_str() + sizeof(kNetnsPrefix) - 1);
    if (pid > 0 && kill(pid, 0) != 0 && errno == ESRCH) stale.push_back(name);
  }
  closedir(dir);
  RealCommandRunner runner;
  for (const auto& name : stale)
    (void)runner.Run({FindProgram("ip"), "netns", "del", name}, kCommandTimeout);
  // Their temp dirs too: $TMPDIR/regen-ovs-<pid>-XXXXXX (see TempDir).
  const char* tmp = std::getenv("TMPDIR");
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(tmp ? tmp : "/tmp", ec)) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with(kNetnsPrefix)) continue;
    const int pid = std::atoi(name.c_str() + sizeof(kNetnsPrefix) - 1);
    if (pid > 0 && kill(pid, 0) != 0 && errno == ESRCH) std::filesystem::remove_all(entry, ec);
  }
}

Result<CommandOutput> OvsSandbox::RunChecked(const std::vector<std::string>& argv) {
  return CheckedRun(runner_, argv, kCommandTimeout);
}

Status OvsSandbox::Start() {
  for (const char* program : {"ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl",
                              "ovs-ofctl", "ip", "setpriv", "env"}) {
    if (FindProgram(program).empty())
      return Unavailable(std::string(program) +
                         " not found in PATH, /usr/sbin or /sbin: Open vSwitch integration tests "
                         "need openvswitch-switch, iproute2 and util-linux "
                         "(scripts/install-deps.sh)");
  }
  if (!std::filesystem::exists(kSchema))
    return Unavailable(std::string(kSchema) + " missing: install openvswitch-common");
  DeleteNamespacesOfDeadSandboxes();
  auto created = RunChecked({FindProgram("ip"), "netns", "add", netns_});
  if (!created.ok()) return created.status().WithContext("create network namespace " + netns_);
  netns_created_ = true;
  RETURN_IF_ERROR(Exec({"ip", "link", "set", "lo", "up"}).status());
  auto db = RunChecked({FindProgram("ovsdb-tool"), "create", dir_.File("conf.db"), kSchema});
  if (!db.ok()) return db.status().WithContext("create the OVS database");
  RETURN_IF_ERROR(StartOvsdb());
  return StartVswitchd();
}

Status OvsSandbox::StartOvsdb() {
  ovsdb_ = std::make_unique<ChildProcess>(
      std::vector<std::string>{FindProgram("setpriv"), "--pdeathsig", "KILL",
                               FindProgram("ovsdb-server"), dir_.File("conf.db"),
                               "--remote=punix:" + db_socket(),
                               "--pidfile=" + dir_.File("ovsdb-server.pid"),
                               "--unixctl=" + dir_.File("ovsdb-server.ctl"),
                               "--log-file=" + dir_.File("ovsdb-server.log")},
      dir_.File("ovsdb-server.out"));
  const std::vector<std::string> init = {FindProgram("ovs-vsctl"), "--db=unix:" + db_socket(),
                                         "--timeout=2", "--no-wait", "init"};
  bool ready = WaitFor(
      [&] {
        if (!std::filesystem::exists(db_socket())) return false;
        auto out = runner_.Run(init, 3s);
        return out.ok() && out->exit_code == 0;
      },
      10s, 10ms);
  if (!ready)
    return Unavailable("ovsdb-server in " + dir() + " did not answer on " + db_socket() +
                       " within 10 s (running: " + (ovsdb_->Running() ? "yes" : "no") +
                       "); log:\n" + LogTail());
  return Status::Ok();
}

Status OvsSandbox::StartVswitchd() {
  if (vswitchd_ != nullptr && vswitchd_->Running())
    return FailedPrecondition("ovs-vswitchd already runs");
  vswitchd_ = std::make_unique<ChildProcess>(
      std::vector<std::string>{FindProgram("setpriv"), "--pdeathsig", "KILL", FindProgram("env"),
                               "OVS_RUNDIR=" + dir(), FindProgram("ip"), "netns", "exec", netns_,
                               FindProgram("ovs-vswitchd"), "unix:" + db_socket(),
                               "--pidfile=" + dir_.File("ovs-vswitchd.pid"),
                               "--unixctl=" + dir_.File("ovs-vswitchd.ctl"),
                               "--log-file=" + dir_.File("ovs-vswitchd.log")},
      dir_.File("ovs-vswitchd.out"));
  // ovs-vsctl waits until ovs-vswitchd has applied the change: the daemon is connected and working.
  static std::atomic<int> generation{0};
  auto out = runner_.Run(
      {FindProgram("ovs-vsctl"), "--db=unix:" + db_socket(), "--timeout=10", "--", "set",
       "Open_vSwitch", ".", "external_ids:regen-sandbox-start=" + std::to_string(++generation)},
      12s);
  if (!out.ok() || out->exit_code != 0)
    return Unavailable("ovs-vswitchd in " + dir() + " (namespace " + netns_ +
                       ") did not apply a database change within 10 s (running: " +
                       (vswitchd_->Running() ? "yes" : "no") +
                       "): " + (out.ok() ? out->stderr_text : out.status().ToString()) +
                       "\nlog:\n" + LogTail());
  return Status::Ok();
}

bool OvsSandbox::VswitchdRunning() { return vswitchd_ != nullptr && vswitchd_->Running(); }

void OvsSandbox::StopVswitchd() {
  if (vswitchd_ != nullptr) vswitchd_->Stop();
  vswitchd_.reset();
}

void OvsSandbox::Stop() {
  StopVswitchd();
  if (ovsdb_ != nullptr) ovsdb_->Stop();
  ovsdb_.reset();
  const std::string ip = FindProgram("ip");
  for (const auto& ns : instance_namespaces_)
    (void)runner_.Run({ip, "netns", "del", ns}, kCommandTimeout);
  instance_namespaces_.clear();
  if (netns_created_) (void)runner_.Run({ip, "netns", "del", netns_}, kCommandTimeout);
  netns_created_ = false;
}

ovs::OvsVSwitchOptions OvsSandbox::VSwitchOptions() const {
  ovs::OvsVSwitchOptions options;
  options.db_socket = db_socket();
  options.run_dir = dir();
  options.datapath_type = "netdev";
  options.timeout = 10s;
  return options;
}

Result<CommandOutput> OvsSandbox::Exec(const std::vector<std::string>& argv) {
  return ExecIn(netns_, argv);
}

Result<CommandOutput> OvsSandbox::ExecIn(const std::string& ns,
                                         const std::vector<std::string>& argv) {
  std::vector<std::string> full = {FindProgram("ip"), "netns", "exec", ns};
  full.push_back(FindProgram(argv.at(0)).empty() ? argv[0] : FindProgram(argv[0]));
  full.insert(full.end(), argv.begin() + 1, argv.end());
  return RunChecked(full);
}

Result<std::string> OvsSandbox::AddInstanceNamespace(const std::string& short_name,
                                                     const std::string& port,
                                                     const std::string& mac,
                                                     const std::string& ip_cidr) {
  const std::string ns = netns_ + "-" + short_name;
  RETURN_IF_ERROR(RunChecked({FindProgram("ip"), "netns", "add", ns}).status());
  instance_namespaces_.push_back(ns);
  RETURN_IF_ERROR(
      Exec({"ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns})
          .status());
  RETURN_IF_ERROR(Exec({"ip", "link", "set", port, "up"}).status());
  RETURN_IF_ERROR(ExecIn(ns, {"ip", "link", "set", "lo", "up"}).status());
  RETURN_IF_ERROR(ExecIn(ns, {"ip", "link", "set", "eth0", "address", mac}).status());
  RETURN_IF_ERROR(ExecIn(ns, {"ip", "addr", "add", ip_cidr, "dev", "eth0"}).status());
  RETURN_IF_ERROR(ExecIn(ns, {"ip", "link", "set", "eth0", "up"}).status());
  return ns;
}

std::string OvsSandbox::LogTail(size_t lines) const {
  std::string out;
  for (const char* log :
       {"ovsdb-server.log", "ovsdb-server.out", "ovs-vswitchd.log", "ovs-vswitchd.out"}) {
    if (!std::filesystem::exists(dir_.File(log))) continue;
    out += std::string(log) + ":\n" + Tail(dir_.File(log), lines);
  }
  return out;
}

}  // namespace regen::testing
