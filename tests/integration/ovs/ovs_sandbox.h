// OvsSandbox: a private Open vSwitch for tests and benchmarks (LAB-NOTES.md): ovsdb-server and
// ovs-vswitchd (userspace datapath) with their db, sockets, pidfiles and logs in a TempDir, the
// vswitchd in a network namespace of its own so its internal ports cannot clash with anything
// else on the machine. Children are started with setpriv --pdeathsig KILL and stopped by their own
// PIDs (RAII, also when a test fails); the namespaces and temp dir it created are deleted, and so
// are those an earlier sandbox process left when it was killed (names carry the owner's PID).
// Use from the test's main thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/subprocess.h"
#include "ovs/ovs_vswitch.h"
#include "tests/fakes/test_util.h"

namespace regen::testing {

class OvsSandbox {
 public:
  OvsSandbox();
  ~OvsSandbox();
  OvsSandbox(const OvsSandbox&) = delete;
  OvsSandbox& operator=(const OvsSandbox&) = delete;

  // Creates the namespace and database and starts both daemons; returns once ovs-vswitchd has
  // applied a database change. An error (naming the missing program or the daemon and its log)
  // when Open vSwitch cannot run: tests ASSERT on it, they never skip.
  Status Start();
  // Stops both daemons (SIGTERM, then SIGKILL) and deletes every namespace this sandbox created.
  // Idempotent; the destructor calls it.
  void Stop();

  // Only ovs-vswitchd: the "OVS restart" case (its OpenFlow tables are lost, OVSDB is kept).
  void StopVswitchd();
  Status StartVswitchd();
  bool VswitchdRunning();

  const std::string& dir() const { return dir_.path(); }
  const std::string& netns() const { return netns_; }
  std::string db_socket() const { return dir_.File("db.sock"); }
  // Options for an OvsVSwitch that drives this sandbox.
  ovs::OvsVSwitchOptions VSwitchOptions() const;

  // Runs argv (argv[0] looked up like the daemons) inside the sandbox's namespace, or inside the
  // instance namespace `ns` for the second form. Errors carry the command and its stderr.
  Result<CommandOutput> Exec(const std::vector<std::string>& argv);
  Result<CommandOutput> ExecIn(const std::string& ns, const std::vector<std::string>& argv);

  // An "instance": a namespace of its own (returned name) with eth0 = `mac`, `ip_cidr`
  // (e.g. 10.0.0.10/24), whose veth peer `port` lives in the sandbox namespace, up, ready to be
  // added to a bridge as a system port.
  Result<std::string> AddInstanceNamespace(const std::string& short_name, const std::string& port,
                                           const std::string& mac, const std::string& ip_cidr);

  // The last lines of both daemons' logs, for failure messages.
  std::string LogTail(size_t lines = 20) const;

  // Absolute path of `program` (PATH, then /usr/sbin, /sbin), or "" when not installed.
  static std::string FindProgram(const std::string& program);

 private:
  Status StartOvsdb();
  Result<CommandOutput> RunChecked(const std::vector<std::string>& argv);
  static void DeleteNamespacesOfDeadSandboxes();

  TempDir dir_;
  std::string netns_;
  std::vector<std::string> instance_namespaces_;
  bool netns_created_ = false;
  std::unique_ptr<ChildProcess> ovsdb_;
  std::unique_ptr<ChildProcess> vswitchd_;
  RealCommandRunner runner_;
};

}  // namespace regen::testing
