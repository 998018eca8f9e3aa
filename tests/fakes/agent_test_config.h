// The agent configuration the unit tests of the agent's controller mode share: host-a on the
// fake hypervisor, a controller address never dialled (no ControllerLink runs; the test plays
// its part), polls every 50 ms, files under `dir`. Header-only; any thread.
#pragma once

#include <chrono>
#include <string>

#include "config/agent_config.h"
#include "tests/fakes/test_util.h"

namespace regen::testing {

inline AgentConfig ControllerModeConfig(const TempDir& dir, std::chrono::milliseconds lease) {
  AgentConfig c;
  c.host_name = "host-a";
  c.controller_address = "127.0.0.1:1";  // never dialled: no ControllerLink runs here
  c.libvirt_uri = "fake:///";
  c.poll_interval = std::chrono::milliseconds(50);
  c.fencing_lease = lease;
  c.domain_type = "test";
  c.state_dir = dir.path();
  c.control_socket = dir.File("agent.sock");
  return c;
}

// Standalone (no controller): host-a on the fake hypervisor, no NIC bridge, polls every 50 ms,
// files (and the default image_dirs, <dir>/images) under `dir`.
inline AgentConfig StandaloneConfig(const TempDir& dir) {
  AgentConfig c;
  c.host_name = "host-a";
  c.libvirt_uri = "fake:///";
  c.poll_interval = std::chrono::milliseconds(50);
  c.domain_type = "test";
  c.ovs_bridge = "";
  c.state_dir = dir.path();
  c.control_socket = dir.File("agent.sock");
  return c;
}

}  // namespace regen::testing
