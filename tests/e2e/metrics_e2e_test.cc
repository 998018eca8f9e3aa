// End to end on a lab (test driver): the controller's Prometheus endpoint, scraped over HTTP,
// follows the cluster: hosts and instances by state, a crash healed (healings started and
// completed, the time-to-heal histogram, events by kind), a host going down; the agent's own
// endpoint counts the failure it detected. A controller whose
// metrics_address cannot be bound refuses to start and says why.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include "agent/control_socket.h"

#include "tests/e2e/lab_harness.h"

namespace regen::testing {
namespace {

using std::chrono::milliseconds;

TEST(MetricsE2eTest, ControllerMetricsFollowHealingAndHosts) {
  LabOptions o;
  o.metrics = true;
  Lab lab(o);
  lab.StartAll();
  lab.Apply(Lab::ServiceYaml("web", 3, 3));
  ASSERT_TRUE(lab.WaitAllRunning(3, milliseconds(20000))) << lab.Logs();
  std::string text;
  auto until = [&](const std::string& metric, double want) {
    return WaitFor(
        [&] {
          text = lab.ScrapeControllerMetrics();
          return MetricValue(text, metric) == want;
        },
        milliseconds(10000), milliseconds(100));
  };
  ASSERT_TRUE(until("regen_hosts{state=\"up\"}", 3)) << text;
  ASSERT_TRUE(until("regen_instances{service=\"web\",state=\"running\"}", 3)) << text;
  EXPECT_EQ(MetricValue(text, "regen_hosts{state=\"down\"}"), 0);
  EXPECT_EQ(MetricValue(text, "regen_healings_total{outcome=\"started\"}"), 0);

  // A crash, healed elsewhere.
  auto victim = *lab.Instance("web-0");
  auto r =
      ControlSocketCall(lab.dir() + "/" + victim.host() + "/agent.sock",
                        {{"command", "inject-crash"}, {"domain", "web-0"}}, milliseconds(2000));
  ASSERT_TRUE(r.ok() && r->value("ok", false)) << (r.ok() ? r->dump() : r.status().message());
  ASSERT_TRUE(until("regen_healings_total{outcome=\"completed\"}", 1)) << text;
  EXPECT_EQ(MetricValue(text, "regen_healings_total{outcome=\"started\"}"), 1);
  EXPECT_EQ(MetricValue(text, "regen_heal_seconds_count"), 1);
  EXPECT_GT(MetricValue(text, "regen_heal_seconds_sum"), 0);
  EXPECT_GE(MetricValue(text, "regen_events_total{kind=\"failure\"}"), 1);
  auto count = [&](const std::string& metric) { return std::max(0.0, MetricValue(text, metric)); };
  EXPECT_EQ(count("regen_detection_seconds_count{by=\"event\"}") +
                count("regen_detection_seconds_count{by=\"poll\"}"),
            1)
      << text;
  for (int k = 1; k <= 3; ++k) {
    EXPECT_GE(MetricValue(
                  text, "regen_topology_revision_applied{host=\"host-" + std::to_string(k) + "\"}"),
              0)
        << text;
  }

  // An RPC answered with an error is counted by method and code.
  v1::GetServiceRequest missing;
  missing.set_name("no-such-service");
  ASSERT_FALSE(lab.client().GetService(missing).ok());
  ASSERT_TRUE(until(
      "regen_rpc_errors_total{code=\"NOT_FOUND\",method=\"/regen.v1.AdminService/GetService\"}", 1))
      << text;

  // The agent that detected the crash: its own endpoint (port in its status) counts it.
  {
    const int k = std::stoi(victim.host().substr(std::string("host-").size()));
    auto status = lab.AgentStatus(k);
    ASSERT_TRUE(status.contains("metrics_port")) << status.dump();
    const int port = status["metrics_port"].get<int>();
    std::string agent_text;
    ASSERT_TRUE(WaitFor(
        [&] {
          agent_text = HttpGet(port, "/metrics");
          double detected = 0;
          for (const char* by : {"event", "poll", "process_exit"}) {
            detected +=
                std::max(0.0, MetricValue(agent_text, std::string("regen_agent_failures_detected_"
                                                                  "total{by=\"") +
                                                          by + "\"}"));
          }
          return detected == 1 && MetricValue(agent_text, "regen_agent_controller_connected") == 1;
        },
        milliseconds(10000), milliseconds(100)))
        << agent_text;
    EXPECT_EQ(MetricValue(agent_text, "regen_agent_libvirt_connected"), 1) << agent_text;
    EXPECT_EQ(MetricValue(agent_text, "regen_agent_fenced"), 0) << agent_text;
    EXPECT_GE(MetricValue(agent_text, "regen_agent_domains{state=\"running\"}"), 0) << agent_text;
    EXPECT_GT(MetricValue(agent_text, "regen_agent_reconciles_total"), 0) << agent_text;
    EXPECT_EQ(MetricValue(agent_text, "regen_agent_topology_revision_applied"), 0)
        << "no network: block, no revision applied";
  }

  // A host lost: one that holds an instance (web-1's), so its loss is a detected failure.
  const std::string lost = lab.Instance("web-1")->host();
  lab.KillAgent(std::stoi(lost.substr(std::string("host-").size())));
  ASSERT_TRUE(until("regen_hosts{state=\"down\"}", 1)) << text;
  ASSERT_TRUE(until("regen_hosts{state=\"up\"}", 2)) << text;
  ASSERT_TRUE(WaitFor(
      [&] {
        text = lab.ScrapeControllerMetrics();
        return MetricValue(text, "regen_detection_seconds_count{by=\"host_down\"}") >= 1;
      },
      milliseconds(10000), milliseconds(100)))
      << text;
  // From the last heartbeat to the decision: at least host_down_after (2.5 s; 1.5 s checked) per
  // instance.
  EXPECT_GE(MetricValue(text, "regen_detection_seconds_sum{by=\"host_down\"}"),
            1.5 * MetricValue(text, "regen_detection_seconds_count{by=\"host_down\"}"))
      << text;
}

// A listening socket on a free loopback port; its port.
int Listen(int& fd) {
  fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  EXPECT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

TEST(MetricsE2eTest, ControllerRefusesToStartWhenTheMetricsPortIsTaken) {
  int taken_fd = -1;
  int free_fd = -1;
  std::string taken = "127.0.0.1:" + std::to_string(Listen(taken_fd));
  std::string listen = "127.0.0.1:" + std::to_string(Listen(free_fd));
  close(free_fd);  // free again: the controller's own gRPC port
  TempDir dir("regen-metrics");
  WriteFileOrDie(dir.File("controller.yaml"),
                 "listen_address: \"" + listen + "\"\ndatabase: " + dir.File("c.db") +
                     "\nmetrics_address: \"" + taken + "\"\ninsecure: true\n");
  ChildProcess controller({ControllerBin(), "run", "--config", dir.File("controller.yaml")},
                          dir.File("controller.log"));
  ASSERT_TRUE(WaitFor([&] { return !controller.Running(); }, milliseconds(10000)))
      << "the controller kept running with its metrics port taken";
  int status = controller.Stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << status;
  std::string log = ReadFileOrDie(dir.File("controller.log"));
  EXPECT_NE(log.find("metrics_address " + taken), std::string::npos) << log;
  close(taken_fd);
}

}  // namespace
}  // namespace regen::testing
