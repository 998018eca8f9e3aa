// An agent's Hello is checked before anything of it is stored (controller/hello_check.h; issue
// 15, finding 3): a negative or absurd capacity and an address that is not an IPv4 literal are
// refused naming the field and the value; the database stays loadable and other hosts join. An
// address no tunnel can use, or another host's, is refused too (unless a lab allows loopback).
#include "controller/hello_check.h"

#include <gtest/gtest.h>

#include "tests/fakes/controller_harness.h"

namespace regen::testing {
namespace {

struct BadHello {
  const char* what;
  std::function<void(v1::Hello&)> spoil;
  const char* message;
};

TEST(HelloCheckTest, BadFieldsAreRefusedNamingFieldAndValue) {
  const BadHello cases[] = {
      {"negative vcpus", [](v1::Hello& h) { h.mutable_capacity()->set_vcpus(-4); },
       "hello.capacity.vcpus: must be between 0 and 4096, got -4"},
      {"absurd memory",
       [](v1::Hello& h) { h.mutable_capacity()->set_memory_mib(int64_t{1} << 40); },
       "hello.capacity.memory_mib: must be between 0 and 67108864, got 1099511627776"},
      {"negative disk", [](v1::Hello& h) { h.mutable_capacity()->set_disk_gib(-1); },
       "hello.capacity.disk_gib: must be between 0 and 1048576, got -1"},
      {"negative bandwidth", [](v1::Hello& h) { h.mutable_capacity()->set_bandwidth_mbps(-9); },
       "hello.capacity.bandwidth_mbps: must be between 0 and 10000000, got -9"},
      {"hostname address", [](v1::Hello& h) { h.set_address("host-1.lab"); },
       "hello.address: not an IPv4 address: \"host-1.lab\""},
      {"empty address", [](v1::Hello& h) { h.set_address(""); },
       "hello.address: not an IPv4 address: \"\""},
      {"long address", [](v1::Hello& h) { h.set_address(std::string(500, '9')); },
       "...\" (agent.yaml address"},
  };
  for (const auto& c : cases) {
    v1::Hello hello = TestHello("host-1");
    c.spoil(hello);
    Status s = CheckHello(hello);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << c.what;
    EXPECT_NE(s.message().find(c.message), std::string::npos) << c.what << ": " << s.message();
  }
  EXPECT_TRUE(CheckHello(TestHello("host-1")).ok());
}

TEST(HelloCheckTest, ARefusedHelloStoresNothingAndTheControllerStillLoads) {
  ControllerHarness h;
  h.Hosts(2);
  v1::Hello bad = TestHello("host-9");
  bad.mutable_capacity()->set_vcpus(-4);
  Status s = h.controller().OnHello(bad, &h.Sink("host-9"));
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_EQ(h.controller().HostState("host-9"), "");
  // What once made the controller refuse to start from its own database.
  h.Restart();
  EXPECT_EQ(h.controller().HostState("host-1"), "up");
  EXPECT_EQ(h.controller().HostState("host-9"), "");
  EXPECT_TRUE(h.Hello("host-3").ok());
}

v1::Hello HelloAt(const std::string& host, const std::string& address, bool network = false) {
  v1::Hello hello = TestHello(host);
  hello.set_address(address);
  hello.set_network(network);
  return hello;
}

TEST(HelloCheckTest, AddressesNoTunnelCanUseAreRefused) {
  const std::pair<const char*, const char*> cases[] = {
      {"0.0.0.0", "unspecified"}, {"0.1.2.3", "unspecified"}, {"255.255.255.255", "broadcast"},
      {"224.0.0.5", "multicast"}, {"239.1.1.1", "multicast"}, {"240.0.0.1", "reserved"},
      {"127.0.0.1", "loopback"},  {"127.8.9.10", "loopback"},
  };
  for (const auto& [address, kind] : cases) {
    Status s = CheckHelloAddress(HelloAt("host-1", address), {}, /*allow_loopback_hosts=*/false);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << address;
    EXPECT_NE(s.message().find(std::string("hello.address: \"") + address + "\""),
              std::string::npos)
        << s.message();
    EXPECT_NE(s.message().find(kind), std::string::npos) << s.message();
  }
  EXPECT_TRUE(CheckHelloAddress(HelloAt("host-1", "127.0.0.1"), {}, true).ok());
  EXPECT_FALSE(CheckHelloAddress(HelloAt("host-1", "0.0.0.0"), {}, true).ok());
  EXPECT_TRUE(CheckHelloAddress(HelloAt("host-1", "10.1.2.3"), {}, false).ok());
}

TEST(HelloCheckTest, AnotherHostsAddressIsRefusedNamingBothHosts) {
  KnownAddresses known;
  known.address_of = {{"host-1", "10.0.0.1"}, {"host-2", "127.0.0.1"}};
  Status s = CheckHelloAddress(HelloAt("host-3", "10.0.0.1"), known, /*allow_loopback_hosts=*/true);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("already the address of host host-1"), std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("hosts host-1 and host-3"), std::string::npos) << s.message();
  // Its own address again (an agent restarting) is no duplicate.
  EXPECT_TRUE(CheckHelloAddress(HelloAt("host-1", "10.0.0.1"), known, false).ok());
  // A lab on one machine shares 127.0.0.1, only when allowed and without the network.
  EXPECT_TRUE(CheckHelloAddress(HelloAt("host-3", "127.0.0.1"), known, true).ok());
  EXPECT_FALSE(CheckHelloAddress(HelloAt("host-3", "127.0.0.1"), known, false).ok());
  s = CheckHelloAddress(HelloAt("host-3", "127.0.0.1", /*network=*/true), known, true);
  EXPECT_NE(s.message().find("network"), std::string::npos) << s.message();
  known.network_hosts = {"host-2"};
  s = CheckHelloAddress(HelloAt("host-3", "127.0.0.1"), known, true);
  EXPECT_NE(s.message().find("hosts host-2 and host-3"), std::string::npos) << s.message();
}

// Through the controller: the refused Hello stores nothing; the topology the agents get never
// holds one address twice.
TEST(HelloCheckTest, ControllerRefusesADuplicateAndLoopbackUnlessTheLabAllowsIt) {
  ControllerHarness h;
  ASSERT_TRUE(h.controller().OnHello(HelloAt("host-1", "10.9.0.1"), &h.Sink("host-1")).ok());
  Status s = h.controller().OnHello(HelloAt("host-2", "10.9.0.1"), &h.Sink("host-2"));
  EXPECT_EQ(s.code(), Code::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("host-1"), std::string::npos) << s.message();
  EXPECT_EQ(h.controller().HostState("host-2"), "");
  s = h.controller().OnHello(HelloAt("host-2", "127.0.0.1"), &h.Sink("host-2"));
  EXPECT_NE(s.message().find("allow_loopback_hosts"), std::string::npos) << s.message();
  EXPECT_EQ(h.controller().HostState("host-2"), "");
  // An address change onto another host's address is refused as well.
  ASSERT_TRUE(h.controller().OnHello(HelloAt("host-3", "10.9.0.3"), &h.Sink("host-3")).ok());
  h.controller().OnDisconnect("host-3", &h.Sink("host-3"));
  EXPECT_FALSE(h.controller().OnHello(HelloAt("host-3", "10.9.0.1"), &h.Sink("host-3")).ok());

  h.config().allow_loopback_hosts = true;
  h.Restart();
  ASSERT_TRUE(h.controller().OnHello(HelloAt("host-4", "127.0.0.1"), &h.Sink("host-4")).ok());
  ASSERT_TRUE(h.controller().OnHello(HelloAt("host-5", "127.0.0.1"), &h.Sink("host-5")).ok());
  s = h.controller().OnHello(HelloAt("host-6", "127.0.0.1", /*network=*/true), &h.Sink("host-6"));
  EXPECT_EQ(s.code(), Code::kInvalidArgument) << s.ToString();
  EXPECT_EQ(h.controller().HostState("host-6"), "");
}

}  // namespace
}  // namespace regen::testing
