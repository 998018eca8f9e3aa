// regenctl and AdminClient with several controller addresses (HA, issue 14): a standby's
// UNAVAILABLE "standby controller; the active controller is at X" sends the call to X, the one
// that answered is remembered, a call none answers fails naming every address and what it said,
// a bad list is refused with exit 2 before anything is sent, and a call that reached a
// controller is never sent again to another.
#include "tests/unit/ctl/regenctl_test_fixture.h"

#include <cstdio>

namespace regen::ctl_test {
namespace {

std::string Closed() {
  int port = ClosedPort();
  EXPECT_GT(port, 0);
  return "127.0.0.1:" + std::to_string(port);
}

// fake_ (the fixture's) is the active controller; `standby` names it.
TEST_F(RegenctlTest, AStandbySendsTheCallToTheActiveController) {
  ExtraController standby, other;
  ASSERT_TRUE(standby.Start());
  ASSERT_TRUE(other.Start());
  standby.fake.SetStandby(address_);
  other.fake.SetStandby("");
  // Dead first, then the standby naming the active one, then another standby that does not know:
  // the call goes dead -> standby -> active, never to the other standby.
  std::string list = Closed() + "," + standby.address() + "," + other.address() + "," + address_;
  CtlResult r = RunRaw({"host", "drain", "host-a"}, list);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("host-a"));
  EXPECT_EQ(fake_.CallNames(), std::vector<std::string>{"Drain"});
  EXPECT_EQ(standby.fake.StandbyCalls(), std::vector<std::string>{"Drain"});
  EXPECT_TRUE(other.fake.StandbyCalls().empty());
  EXPECT_TRUE(standby.fake.Calls().empty());

  // REGEN_CONTROLLER takes the same list.
  ::setenv("REGEN_CONTROLLER", (standby.address() + ", " + address_).c_str(), 1);
  r = RunRaw({"service", "list"}, std::nullopt);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(fake_.CallNames(), (std::vector<std::string>{"Drain", "ListServices"}));
}

TEST_F(RegenctlTest, AdminClientRemembersTheControllerThatAnswered) {
  ExtraController standby;
  ASSERT_TRUE(standby.Start());
  standby.fake.SetStandby(address_);
  AdminClient client(std::vector<std::string>{standby.address(), address_});
  EXPECT_EQ(client.address(), standby.address());
  ASSERT_TRUE(client.ListHosts().ok());
  EXPECT_EQ(client.address(), address_);
  ASSERT_TRUE(client.ListServices().ok());
  std::vector<int64_t> seen;
  ASSERT_TRUE(client.Events(0, false, [&](const v1::Event& e) {
                      seen.push_back(e.sequence());
                      return true;
                    }).ok());
  EXPECT_EQ(seen.size(), 3u);
  EXPECT_EQ(standby.fake.StandbyCalls(), std::vector<std::string>{"ListHosts"});
  EXPECT_EQ(fake_.CallNames(), (std::vector<std::string>{"ListHosts", "ListServices", "Events"}));

  // The standby takes over and the old active one becomes a standby naming it: followed.
  fake_.SetStandby(standby.address());
  standby.fake.SetStandby(std::nullopt);
  ASSERT_TRUE(client.ListHosts().ok());
  EXPECT_EQ(client.address(), standby.address());
  EXPECT_EQ(standby.fake.CallNames(), std::vector<std::string>{"ListHosts"});
}

TEST_F(RegenctlTest, NoActiveControllerGivesOneErrorNamingEveryAddress) {
  ExtraController standby;
  ASSERT_TRUE(standby.Start());
  standby.fake.SetStandby("");
  fake_.SetStandby("");
  std::string dead = Closed();
  CtlResult r = RunRaw({"host", "drain", "host-a"}, dead + "," + standby.address() + "," + address_);
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, HasSubstr("regenctl: cannot reach an active controller: " + dead +
                               ": could not connect (nothing listens there, or the TLS "
                               "handshake failed); " +
                               standby.address() +
                               ": standby controller; the active controller is at unknown; " +
                               address_ +
                               ": standby controller; the active controller is at unknown (is "
                               "regen-controller running?"));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(standby.fake.StandbyCalls(), std::vector<std::string>{"Drain"});
  EXPECT_EQ(fake_.StandbyCalls(), std::vector<std::string>{"Drain"});
}

TEST_F(RegenctlTest, ABadControllerListIsRefusedBeforeAnything) {
  struct Case {
    std::string list;
    std::string err;
  };
  const std::vector<Case> cases = {
      {address_ + ",ctl.lab",
       "regenctl: --controller (or REGEN_CONTROLLER) \"" + address_ +
           ",ctl.lab\": entry 2 of 2 \"ctl.lab\" must be \"host:port\" with a port from 1 to "
           "65535 (e.g. \"10.0.0.1:7400\", \"ctl.lab:7400\" or \"[::1]:7400\")\n"},
      {address_ + "," + address_, "entry 2 of 2 \"" + address_ + "\" is listed twice"},
      {address_ + ",,b:1", "entry 2 of 3 is empty"},
      {"a:99999", "entry 1 of 1 \"a:99999\" must be \"host:port\""},
  };
  for (const Case& c : cases) {
    CtlResult r = RunRaw({"service", "list"}, c.list);
    EXPECT_EQ(r.code, 2) << c.list << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.err)) << c.list;
  }
  ::setenv("REGEN_CONTROLLER", "a:1,b", 1);
  CtlResult r = RunRaw({"service", "list"}, std::nullopt);
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("REGEN_CONTROLLER) \"a:1,b\": entry 2 of 2 \"b\""));
  EXPECT_TRUE(fake_.Calls().empty());
}

// A hung controller (TCP accepted by the kernel, nothing answers) costs one connect timeout
// (at most --timeout), then the next address answers.
TEST_F(RegenctlTest, AHungControllerIsPassedAfterTheConnectTimeout) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 16), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  std::string hung = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  auto start = std::chrono::steady_clock::now();
  CtlResult r = RunRaw({"service", "list", "--timeout", "0.5"}, hung + "," + address_);
  auto took = std::chrono::steady_clock::now() - start;
  ::close(fd);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(fake_.CallNames(), std::vector<std::string>{"ListServices"});
  EXPECT_LT(took, std::chrono::seconds(3));
  std::printf("past a hung controller in %lld ms (--timeout 0.5)\n",
              static_cast<long long>(
                  std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
}

// A controller that got the call and failed it, or did not answer in time, may have applied it:
// the error is final, the next address never sees the call.
TEST_F(RegenctlTest, ACallThatReachedAControllerIsNotSentToAnother) {
  ExtraController second;
  ASSERT_TRUE(second.Start());
  fake_.FailNext(grpc::Status(grpc::StatusCode::UNAVAILABLE, "store is read-only"));
  CtlResult r = RunRaw({"host", "drain", "host-a"}, address_ + "," + second.address());
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("cannot reach the controller at " + address_ +
                               ": store is read-only"));
  fake_.HangListServices();
  r = RunRaw({"service", "list", "--timeout", "0.2"}, address_ + "," + second.address());
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("cannot reach the controller at " + address_ + ": "));
  EXPECT_TRUE(second.fake.Calls().empty()) << ::testing::PrintToString(second.fake.Calls());
  EXPECT_EQ(fake_.CallNames(), (std::vector<std::string>{"Drain", "ListServices"}));
}

}  // namespace
}  // namespace regen::ctl_test
