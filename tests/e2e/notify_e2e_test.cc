// End to end on a lab (real controller and agents on the libvirt test driver): after a heal every
// instance of the service, the healed one on its new host included, has the failure, reallocation
// and topology events in its <state>/events/<instance>.jsonl, and `events --follow` streams the
// heal as it happens. With a real knotd and ip_policy new, the zone follows the heal and the
// agents' DNS watch adds a dns_change event for the instances of the service.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <thread>

#include "agent/event_delivery.h"
#include "common/subprocess.h"
#include "tests/e2e/lab_harness.h"
#include "tests/integration/dns/knot_server.h"

namespace regen::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;

std::vector<json> EventLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<json> out;
  for (std::string line; std::getline(in, line);) {
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(j.is_discarded()) << path << ": not JSON: " << line;
    if (!j.is_discarded()) out.push_back(std::move(j));
  }
  return out;
}

// The events in the instance's file on the host it runs on now.
std::vector<json> EventsOf(Lab& lab, const v1::InstanceInfo& inst) {
  return EventLines(EventsFilePath(lab.StateDir(Lab::HostNumber(inst.host())), inst.name()));
}

bool Has(const std::vector<json>& events, const std::string& kind, const std::string& key,
         const std::string& value) {
  for (const auto& e : events) {
    if (e.value("event", "") == kind && e.value(key, "") == value) return true;
  }
  return false;
}

// The topology event with the healed instance at its new host.
bool HasTopologyWith(const std::vector<json>& events, const std::string& instance,
                     const std::string& host) {
  for (const auto& e : events) {
    if (e.value("event", "") != "topology") continue;
    for (const auto& i : e.value("instances", json::array())) {
      if (i.value("name", "") == instance && i.value("host", "") == host) return true;
    }
  }
  return false;
}

void InjectCrash(Lab& lab, const v1::InstanceInfo& victim) {
  RealCommandRunner runner;
  auto out = runner.Run({AgentBin(), "inject", "crash", victim.name(), "--config",
                         lab.AgentConfigPath(Lab::HostNumber(victim.host()))},
                        std::chrono::seconds(10));
  ASSERT_TRUE(out.ok());
  ASSERT_EQ(out->exit_code, 0) << out->stderr_text;
}

TEST(NotifyE2eTest, EveryInstanceHearsOfAHealAndFollowStreamsIt) {
  Lab lab({});
  lab.StartAll();
  lab.Apply(Lab::ServiceYaml("web", 6, 3));
  ASSERT_TRUE(lab.WaitAllRunning(6, milliseconds(20000))) << lab.Logs();
  auto before = lab.Instance("web-1");
  ASSERT_TRUE(before.has_value());
  int64_t after_sequence = 0;
  for (const auto& e : lab.Events()) after_sequence = e.sequence();

  // `regenctl events --follow` (the same stream): it must show the heal as it happens.
  std::vector<v1::Event> followed;
  std::thread follower([&] {
    AdminClient client(lab.controller_address());
    (void)client.Events(after_sequence, /*follow=*/true, [&](const v1::Event& e) {
      followed.push_back(e);
      return !(e.kind() == "reallocation" && e.instance() == "web-1");
    });
  });
  // Should an assertion below return early, end the stream (kill the controller) and join.
  struct JoinFollower {
    Lab& lab;
    std::thread& thread;
    ~JoinFollower() {
      if (!thread.joinable()) return;
      lab.KillController();
      thread.join();
    }
  } join_follower{lab, follower};

  // And the operator's `regenctl events --follow -o json`, until interrupted.
  const std::string ctl_out = lab.dir() + "/regenctl-follow.out";
  ChildProcess ctl({REGEN_REGENCTL_BIN, "--controller", lab.controller_address(), "events",
                    "--follow", "--after", std::to_string(after_sequence), "-o", "json"},
                   ctl_out);

  InjectCrash(lab, *before);
  ASSERT_TRUE(lab.WaitRunningGeneration("web-1", before->generation() + 1, milliseconds(15000)))
      << lab.Logs();
  follower.join();
  // regenctl printed the heal as JSON lines as it happened, and still follows.
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const auto& e : EventLines(ctl_out)) {
          if (e.value("kind", "") == "reallocation" && e.value("instance", "") == "web-1") {
            return true;
          }
        }
        return false;
      },
      milliseconds(5000)))
      << ReadFileOrDie(ctl_out);
  EXPECT_TRUE(ctl.Running()) << "--follow keeps running until interrupted";
  ctl.Stop();
  ASSERT_FALSE(followed.empty());
  EXPECT_EQ(followed.back().kind(), "reallocation");
  bool failure_followed = false;
  for (const auto& e : followed) failure_followed |= e.kind() == "failure";
  EXPECT_TRUE(failure_followed);

  const std::string new_host = lab.Instance("web-1")->host();
  ASSERT_NE(new_host, before->host());
  for (const auto& inst : lab.Instances()) {
    bool complete = WaitFor(
        [&] {
          auto events = EventsOf(lab, inst);
          return Has(events, "failure", "instance", "web-1") &&
                 Has(events, "reallocation", "new_host", new_host) &&
                 HasTopologyWith(events, "web-1", new_host);
        },
        milliseconds(5000));
    EXPECT_TRUE(complete) << inst.name() << " on " << inst.host() << " misses events; it has:\n"
                          <<
        [&] {
          std::string s;
          for (const auto& e : EventsOf(lab, inst)) s += e.dump() + "\n";
          return s;
        }() << lab.Logs();
  }
  // The failure names where it happened and why; the reallocation what moved.
  auto events = EventsOf(lab, *lab.Instance("web-0"));
  for (const auto& e : events) {
    if (e.value("event", "") == "failure" && e.value("instance", "") == "web-1") {
      EXPECT_EQ(e.value("host", ""), before->host());
      EXPECT_FALSE(e.value("reason", "").empty());
    }
    if (e.value("event", "") == "reallocation" && e.value("instance", "") == "web-1") {
      EXPECT_EQ(e.value("old_host", ""), before->host());
      EXPECT_EQ(e["resources"].value("vcpus", 0), 1);
      EXPECT_EQ(e.value("version", ""), "v1");
    }
  }
}

TEST(NotifyE2eTest, KnotFollowsAHealWithANewIpAndInstancesHearTheDnsChange) {
  auto knot = KnotServer::Start();
  ASSERT_TRUE(knot.ok()) << knot.status().ToString();
  LabOptions options;
  options.controller_extra =
      "dns:\n  server: \"" + (*knot)->server() +
      "\"\n  zone: lab.example.\n  ttl: 5\n  tsig:\n    key_name: " + (*knot)->key().name +
      "\n    algorithm: " + (*knot)->key().algorithm + "\n    secret_file: " + (*knot)->key_file() +
      "\n";
  options.agent_extra = "dns:\n  server: \"" + (*knot)->server() +
                        "\"\n  zone: lab.example.\n  poll_interval: 100ms\n";
  Lab lab(options);
  lab.StartAll();
  std::string spec = Lab::ServiceYaml("web", 4, 2);
  spec.replace(spec.find("ip_policy: keep"), 15, "ip_policy: new");
  lab.Apply(spec);
  ASSERT_TRUE(lab.WaitAllRunning(4, milliseconds(20000))) << lab.Logs();
  auto before = lab.Instance("web-1");
  ASSERT_TRUE(WaitFor(
      [&] {
        auto ips = (*knot)->Dig("web-1.lab.example.");
        return ips.ok() && *ips == std::vector<std::string>{before->ip()};
      },
      milliseconds(10000)))
      << lab.Logs();
  // Let every agent's watch take its baseline of web.lab.example.
  ASSERT_TRUE(WaitFor(
      [&] {
        auto ips = (*knot)->Dig("web.lab.example.");
        return ips.ok() && ips->size() == 4;
      },
      milliseconds(10000)));
  // Every agent's watch has answered the deployed set (its baseline: a change against it is an
  // event) before the crash; else a watch's first answer could already be the healed set.
  for (int k = 1; k <= 3; ++k) {
    ASSERT_TRUE(WaitFor(
        [&] {
          auto status = lab.AgentStatus(k);
          if (!status.is_object() || !status.contains("dns_watch")) return false;
          auto known = status["dns_watch"].value("web.lab.example.", std::vector<std::string>{});
          return known.size() == 4 &&
                 std::find(known.begin(), known.end(), before->ip()) != known.end();
        },
        milliseconds(10000)))
        << "host-" << k << "'s DNS watch never saw web.lab.example.: " << lab.AgentStatus(k) << "\n"
        << lab.Logs();
  }

  InjectCrash(lab, *before);
  ASSERT_TRUE(lab.WaitRunningGeneration("web-1", before->generation() + 1, milliseconds(15000)))
      << lab.Logs();
  auto after = lab.Instance("web-1");
  EXPECT_NE(after->ip(), before->ip()) << "ip_policy new";
  ASSERT_TRUE(WaitFor(
      [&] {
        auto ips = (*knot)->Dig("web-1.lab.example.");
        return ips.ok() && *ips == std::vector<std::string>{after->ip()};
      },
      milliseconds(10000)))
      << lab.Logs();
  for (const auto& inst : lab.Instances()) {
    bool heard = WaitFor(
        [&] {
          for (const auto& e : EventsOf(lab, inst)) {
            if (e.value("event", "") != "dns_change") continue;
            auto added = e.value("new_addresses", std::vector<std::string>{});
            if (std::find(added.begin(), added.end(), after->ip()) != added.end()) return true;
          }
          return false;
        },
        milliseconds(5000));
    // The healed instance's watch on its new host may take the new set as its baseline.
    if (inst.name() == "web-1") continue;
    EXPECT_TRUE(heard) << inst.name() << " on " << inst.host() << " got no dns_change\n"
                       << lab.Logs();
  }
  bool failed_event = false;
  for (const auto& e : lab.Events()) failed_event |= e.kind() == "dns_update_failed";
  EXPECT_FALSE(failed_event);
}

}  // namespace
}  // namespace regen::testing
