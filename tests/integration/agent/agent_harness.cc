#include "tests/integration/agent/agent_harness.h"

#include <gtest/gtest.h>

#include "agent/control_socket.h"

namespace regen::testing {

AgentHarness::AgentHarness(AgentSetup setup) : setup_(std::move(setup)), dir_("regen-agent") {
  if (setup_.libvirt_uri.empty()) {
    WriteFileOrDie(dir_.File("host.xml"), "<node/>\n");
    setup_.libvirt_uri = "test://" + dir_.File("host.xml");
  }
  std::string yaml =
      "host_name: " + setup_.host + "\n" + "libvirt_uri: \"" + setup_.libvirt_uri + "\"\n" +
      "domain_type: " + setup_.domain_type + "\n" + "poll_interval: " + setup_.poll_interval +
      "\n" + "libvirt_events: " + (setup_.events ? "true" : "false") + "\n" + "ovs:\n  bridge: \"" +
      setup_.bridge + "\"\n" + "state_dir: " + dir_.File("state") + "\n" +
      "control_socket: " + dir_.File("agent.sock") + "\n" +
      "desired_file: " + dir_.File("desired.yaml") + "\n" + "log_level: debug\n" +
      setup_.extra_yaml;
  WriteFileOrDie(config_path(), yaml);
  if (!setup_.desired_yaml.empty()) WriteDesired(setup_.desired_yaml);
}

AgentHarness::~AgentHarness() { Stop(); }

std::string AgentHarness::log() const { return ReadFileOrDie(dir_.File("agent.log")); }

void AgentHarness::Start() {
  process_ = std::make_unique<ChildProcess>(
      std::vector<std::string>{REGEN_AGENT_BIN, "run", "--config", config_path()},
      dir_.File("agent.log"));
}

void AgentHarness::Stop() {
  if (process_) process_->Stop();
  process_.reset();
}

nlohmann::json AgentHarness::Status() { return Command({{"command", "status"}}); }

nlohmann::json AgentHarness::Command(const nlohmann::json& request) {
  auto r = ControlSocketCall(dir_.File("agent.sock"), request, std::chrono::seconds(5));
  if (!r.ok()) return nullptr;
  return *r;
}

bool AgentHarness::WaitRunning(const std::string& name, std::chrono::milliseconds timeout) {
  return WaitFor(
      [&] {
        auto s = Status();
        if (s.is_null()) return false;
        for (const auto& d : s["domains"])
          if (d["name"] == name && d["state"] == "running") return true;
        return false;
      },
      timeout, std::chrono::milliseconds(20));
}

void AgentHarness::WriteDesired(const std::string& yaml) {
  // Write then rename, so the agent never reads half a file.
  WriteFileOrDie(dir_.File("desired.yaml.tmp"), yaml);
  std::rename(dir_.File("desired.yaml.tmp").c_str(), dir_.File("desired.yaml").c_str());
}

std::string OneInstanceDesired(const std::string& name, int64_t generation) {
  return "instances:\n"
         "  - name: " +
         name +
         "\n"
         "    service: web\n"
         "    update_domain: 0\n"
         "    version: v1\n"
         "    generation: " +
         std::to_string(generation) +
         "\n"
         "    resources: {vcpus: 1, memory_mib: 64}\n"
         "    mac: \"52:54:00:00:00:20\"\n";
}

}  // namespace regen::testing
