// The agent's /metrics: the lease-related gauges (maintenance hold left, fences not yet reported,
// the fencing backstop tripped) follow the status they are refreshed from. Served on loopback
// and read over plain HTTP.
#include "agent/agent_metrics.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sstream>
#include <string>

namespace regen {
namespace {

std::string GetMetrics(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (fd >= 0) close(fd);
    return "";
  }
  const std::string request = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  (void)!write(fd, request.data(), request.size());
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) text.append(buf, static_cast<size_t>(n));
  close(fd);
  return text;
}

// The value on the line that starts with `name ` ("" if none).
std::string Value(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + " ", 0) == 0) return line.substr(name.size() + 1);
  }
  return "";
}

TEST(AgentMetricsTest, HoldUnreportedFencesAndBackstopAreExported) {
  auto m = AgentMetrics::Start("127.0.0.1:0");
  ASSERT_TRUE(m.ok()) << m.status().message();
  nlohmann::json status = {{"fenced", true},
                           {"hold_remaining_ms", 2500},
                           {"fenced_unreported", nlohmann::json::array({{{"instance", "web-0"}},
                                                                        {{"instance", "web-1"}}})},
                           {"domains", nlohmann::json::array()}};
  AgentMetrics::Links links;
  links.controller_mode = true;
  links.backstop_tripped = true;
  (*m)->Refresh(status, links);
  std::string text = GetMetrics((*m)->port());
  EXPECT_EQ(Value(text, "regen_agent_hold_remaining_seconds"), "2.5") << text;
  EXPECT_EQ(Value(text, "regen_agent_fences_unreported"), "2") << text;
  EXPECT_EQ(Value(text, "regen_agent_fence_backstop_tripped"), "1") << text;
  EXPECT_EQ(Value(text, "regen_agent_fenced"), "1") << text;

  status["hold_remaining_ms"] = 0;
  status["fenced_unreported"] = nlohmann::json::array();
  links.backstop_tripped = false;
  (*m)->Refresh(status, links);
  text = GetMetrics((*m)->port());
  EXPECT_EQ(Value(text, "regen_agent_hold_remaining_seconds"), "0") << text;
  EXPECT_EQ(Value(text, "regen_agent_fences_unreported"), "0") << text;
  EXPECT_EQ(Value(text, "regen_agent_fence_backstop_tripped"), "0") << text;
}

}  // namespace
}  // namespace regen
