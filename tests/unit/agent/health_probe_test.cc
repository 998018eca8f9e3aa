// The socket probes (agent/health_probe.h) against tiny servers on 127.0.0.1: TCP accepted or
// refused, HTTP 2xx / non-2xx / not HTTP / silent (bounded by the timeout), bad input, and the
// SocketProber running probes on its workers.
#include "agent/health_probe.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <string>
#include <thread>

#include "common/proto/regen.pb.h"
#include "common/text.h"
#include "tests/fakes/tiny_server.h"

namespace regen {
namespace {

using testing::Answer;
using testing::TinyServer;

using std::chrono::milliseconds;

// A timeout long enough for a server thread to be scheduled on a loaded machine (ASan, 2 cores).
HealthCheck Check(const std::string& type, int port, milliseconds timeout = milliseconds(3000)) {
  HealthCheck c;
  c.type = type;
  c.port = port;
  c.path = "/healthz";
  c.interval = milliseconds(1000);
  c.timeout = timeout;
  c.max_failed = 3;
  return c;
}

TEST(HealthProbeTest, TcpPassesWhileSomethingListensAndFailsWhenNothingDoes) {
  TinyServer server([](int) {});
  int port = server.port();
  Status s = ProbeOnce("127.0.0.1", Check("tcp", port));
  EXPECT_TRUE(s.ok()) << s.ToString();
  server.Close();
  s = ProbeOnce("127.0.0.1", Check("tcp", port));
  EXPECT_EQ(s.code(), Code::kUnavailable) << s.ToString();
  EXPECT_NE(s.message().find("tcp connect 127.0.0.1:" + std::to_string(port)), std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("refused"), std::string::npos) << s.message();
}

TEST(HealthProbeTest, HttpPassesOn2xxOnly) {
  TinyServer ok(Answer("HTTP/1.1 204 No Content\r\n\r\n"));
  Status s = ProbeOnce("127.0.0.1", Check("http", ok.port()));
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(ok.accepted(), 1);

  TinyServer down(Answer("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"));
  s = ProbeOnce("127.0.0.1", Check("http", down.port()));
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_NE(s.message().find("HTTP status 503"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("/healthz"), std::string::npos) << s.message();

  TinyServer garbage(Answer("SSH-2.0-OpenSSH\r\n"));
  s = ProbeOnce("127.0.0.1", Check("http", garbage.port()));
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_NE(s.message().find("not an HTTP answer"), std::string::npos) << s.message();
}

// Issue 15 finding 1: a guest answering bytes that are not UTF-8 once made the error text (and
// so DomainStatus.health_detail) invalid UTF-8; the controller could not parse the report.
TEST(HealthProbeTest, AnAnswerThatIsNotUtf8GivesAValidBoundedError) {
  TinyServer guest(Answer("\xff\xfe\xc3\x28 garbage\r\n\r\n"));
  Status s = ProbeOnce("127.0.0.1", Check("http", guest.port()));
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_NE(s.message().find("not an HTTP answer"), std::string::npos) << s.message();
  EXPECT_TRUE(IsValidUtf8(s.message())) << s.message();
  EXPECT_NE(s.message().find("garbage"), std::string::npos) << s.message();
  v1::DomainStatus d;
  d.set_name("web-0");
  d.set_health_detail(s.message());
  std::string wire;
  ASSERT_TRUE(d.SerializeToString(&wire));
  v1::DomainStatus parsed;
  EXPECT_TRUE(parsed.ParseFromString(wire)) << "the controller could not parse this report";

  // A long status line of control characters stays bounded.
  TinyServer noisy(Answer(std::string(3000, '\x01') + "\r\n\r\n"));
  s = ProbeOnce("127.0.0.1", Check("http", noisy.port()));
  EXPECT_TRUE(IsValidUtf8(s.message()));
  EXPECT_LT(s.message().size(), 400u) << s.message();
  EXPECT_EQ(s.message().find('\x01'), std::string::npos);
}

TEST(HealthProbeTest, ASilentServerFailsWithinTheTimeout) {
  std::atomic<bool> release{false};
  TinyServer silent([&](int) {
    while (!release) std::this_thread::sleep_for(milliseconds(5));
  });
  auto start = std::chrono::steady_clock::now();
  Status s = ProbeOnce("127.0.0.1", Check("http", silent.port(), milliseconds(150)));
  auto took = std::chrono::steady_clock::now() - start;
  release = true;
  EXPECT_EQ(s.code(), Code::kDeadlineExceeded) << s.ToString();
  EXPECT_GE(took, milliseconds(140));
  EXPECT_LT(took, milliseconds(5000)) << "not bounded by the timeout";
}

TEST(HealthProbeTest, BadInputIsRefused) {
  EXPECT_EQ(ProbeOnce("not-an-ip", Check("tcp", 80)).code(), Code::kInvalidArgument);
  EXPECT_EQ(ProbeOnce("127.0.0.1", Check("tcp", 0)).code(), Code::kInvalidArgument);
  EXPECT_EQ(ProbeOnce("127.0.0.1", Check("none", 80)).code(), Code::kInvalidArgument);
}

TEST(SocketProberTest, RunsProbesOnWorkersAndCallsBack) {
  TinyServer server([](int) {});
  SocketProber prober(2);
  std::promise<std::pair<Status, std::thread::id>> a;
  std::promise<std::pair<Status, std::thread::id>> b;
  prober.Probe("127.0.0.1", Check("tcp", server.port()), [&](Status s) {
    a.set_value({s, std::this_thread::get_id()});
  });
  prober.Probe("127.0.0.1", Check("tcp", 1),  // nothing listens on port 1 here
               [&](Status s) {
                 b.set_value({s, std::this_thread::get_id()});
               });
  auto fa = a.get_future();
  auto fb = b.get_future();
  ASSERT_EQ(fa.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  ASSERT_EQ(fb.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  auto ra = fa.get();
  auto rb = fb.get();
  EXPECT_TRUE(ra.first.ok()) << ra.first.ToString();
  EXPECT_FALSE(rb.first.ok());
  EXPECT_NE(ra.second, std::this_thread::get_id());
  EXPECT_NE(rb.second, std::this_thread::get_id());
}

}  // namespace
}  // namespace regen
