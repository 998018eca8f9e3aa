// Runs a real regen-agent process for integration tests: writes agent.yaml and the desired file
// into a temp dir, starts the binary, talks to it over its control socket, stops it by PID.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "tests/fakes/test_util.h"

namespace regen::testing {

struct AgentSetup {
  std::string host = "host-a";
  std::string libvirt_uri = {};  // filled in by the harness when empty (test driver)
  std::string domain_type = "test";
  std::string bridge = "br-int";
  std::string poll_interval = "100ms";
  bool events = true;
  std::string desired_yaml = {};  // content of the desired file
  std::string extra_yaml = {};    // appended to agent.yaml (e.g. controller_address)
};

class AgentHarness {
 public:
  explicit AgentHarness(AgentSetup setup);
  ~AgentHarness();
  const TempDir& dir() const { return dir_; }
  std::string config_path() const { return dir_.File("agent.yaml"); }
  std::string log() const;
  void Start();
  void Stop();
  // The agent's status (via the control socket); null json on failure.
  nlohmann::json Status();
  // Any control socket command ({"command": ...}); null json on failure.
  nlohmann::json Command(const nlohmann::json& request);
  // Waits until the named domain is running per the agent's status.
  bool WaitRunning(const std::string& name, std::chrono::milliseconds timeout);
  void WriteDesired(const std::string& yaml);

 private:
  AgentSetup setup_;
  TempDir dir_;
  std::unique_ptr<ChildProcess> process_;
};

// Whatever happens to the test, on scope exit: the agent stops first (so it re-creates nothing),
// then no process under `root` (its qemus) survives.
struct StopAgentThenKillRoot {
  AgentHarness& agent;
  std::string root;
  ~StopAgentThenKillRoot() {
    agent.Stop();
    KillProcesses(root);
  }
};

// A single-instance desired file: 64 MiB, 1 vCPU, no disk.
std::string OneInstanceDesired(const std::string& name, int64_t generation = 1);

}  // namespace regen::testing
