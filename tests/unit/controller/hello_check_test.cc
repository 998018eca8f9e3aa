// An agent's Hello is checked before anything of it is stored (controller/hello_check.h; issue
// 15, finding 3): a negative or absurd capacity and an address that is not an IPv4 literal are
// refused naming the field and the value; the database stays loadable and other hosts join.
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

}  // namespace
}  // namespace regen::testing
