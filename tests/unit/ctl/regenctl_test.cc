// regenctl's command line (bad arguments, ctl/regenctl.cc), reaching the controller
// (ctl/connection.cc) and AdminClient on its own, against the fake AdminService.
#include "tests/unit/ctl/regenctl_test_fixture.h"

namespace regen::ctl_test {
namespace {

// ---- bad arguments: refused with exit 2, nothing sent ----

TEST_F(RegenctlTest, BadNamesAreRefusedWithoutAnyRpc) {
  struct Case {
    std::vector<std::string> args;
    std::string err;
  };
  const std::vector<Case> cases = {
      {{"failover", "Web_1"},
       "regenctl: failover: INSTANCE \"Web_1\" is not a valid name ([a-z][a-z0-9-]{0,62})\n"},
      {{"failover", "web-1", "--to", "host.b"},
       "regenctl: failover: --to \"host.b\" is not a valid name ([a-z][a-z0-9-]{0,62})\n"},
      {{"host", "drain", std::string(64, 'h')},
       "regenctl: host drain: HOST \"" + std::string(64, 'h') +
           "\" is not a valid name ([a-z][a-z0-9-]{0,62})\n"},
      {{"host", "drain", "Host-A"},
       "regenctl: host drain: HOST \"Host-A\" is not a valid name ([a-z][a-z0-9-]{0,62})\n"},
      {{"service", "show", "9web"},
       "regenctl: service show: NAME \"9web\" is not a valid name ([a-z][a-z0-9-]{0,62})\n"},
      {{"instance", "list", "--service", "WEB"},
       "regenctl: instance list: --service \"WEB\" is not a valid name ([a-z][a-z0-9-]{0,62})\n"},
      {{"events", "--after", "x"}, ""},
  };
  for (const Case& c : cases) {
    CtlResult r = Run(c.args);
    std::string what = ::testing::PrintToString(c.args);
    EXPECT_EQ(r.code, 2) << what << ": " << r.err;
    EXPECT_EQ(r.out, "") << what;
    if (!c.err.empty()) {
      EXPECT_EQ(r.err, c.err) << what;
    } else {
      EXPECT_THAT(r.err, HasSubstr("regenctl: ")) << what;
    }
  }
  EXPECT_TRUE(fake_.Calls().empty()) << ::testing::PrintToString(fake_.Calls());
}

TEST_F(RegenctlTest, UnknownCommandsAreNamed) {
  CtlResult r = Run({"frobnicate"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err,
            "regenctl: unknown command \"frobnicate\" (commands: service, instance, host, "
            "failover, events, upgrade, maintenance; see regenctl --help)\n");
  r = Run({"host", "reboot", "host-a"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err,
            "regenctl: host: unknown command \"reboot\" (commands: list, drain, undrain, cordon, "
            "uncordon; see regenctl host --help)\n");
  r = Run({"service"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("regenctl: service: which command? (commands: apply, list, show"));
  r = Run({"failover"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("regenctl: failover: INSTANCE is required"));
  EXPECT_TRUE(fake_.Calls().empty());
}

TEST_F(RegenctlTest, UnknownOutputFormatIsNamed) {
  CtlResult r = Run({"host", "list", "-o", "yaml"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, "regenctl: -o/--output \"yaml\" is not an output format (use text or json)\n");
  r = Run({"--output", "xml", "service", "list"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("\"xml\""));
  EXPECT_TRUE(fake_.Calls().empty());
}

TEST_F(RegenctlTest, HelpExitsZeroAndSendsNothing) {
  CtlResult r = Run({"--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("failover"));
  r = Run({"failover", "--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("--to"));
  EXPECT_TRUE(fake_.Calls().empty());
}

// ---- reaching the controller ----

TEST_F(RegenctlTest, ControllerAddressComesFromTheEnvironmentAndTheFlagWins) {
  ::setenv("REGEN_CONTROLLER", address_.c_str(), 1);
  CtlResult r = RunRaw({"host", "list"}, std::nullopt);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(fake_.CallNames(), std::vector<std::string>{"ListHosts"});

  int port = ClosedPort();
  ASSERT_GT(port, 0);
  r = RunRaw({"--controller", "127.0.0.1:" + std::to_string(port), "host", "list"}, std::nullopt);
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(fake_.CallNames(), std::vector<std::string>{"ListHosts"});
}

TEST_F(RegenctlTest, UnreachableControllerGivesAClearMessage) {
  int port = ClosedPort();
  ASSERT_GT(port, 0);
  std::string closed = "127.0.0.1:" + std::to_string(port);
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"service", "list"}, std::vector<std::string>{"events"},
        std::vector<std::string>{"failover", "web-1"}}) {
    CtlResult r = RunRaw(args, closed);
    EXPECT_EQ(r.code, 1) << r.err;
    EXPECT_EQ(r.out, "");
    EXPECT_THAT(r.err, HasSubstr("regenctl: cannot reach the controller at " + closed + ": "));
    EXPECT_THAT(r.err, HasSubstr(" (is regen-controller running? set --controller or "
                                 "REGEN_CONTROLLER; a controller with tls: in controller.yaml "
                                 "needs --ca (and --cert/--key or --token-file))\n"));
  }
}

TEST_F(RegenctlTest, ASlowControllerHitsTheDeadline) {
  fake_.HangListServices();
  auto start = std::chrono::steady_clock::now();
  CtlResult r = Run({"service", "list", "--timeout", "0.2"});
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("regenctl: cannot reach the controller at " + address_ + ": "));
  EXPECT_LT(took, std::chrono::seconds(5));
}

// ---- AdminClient on its own ----

TEST(NewOperationIdTest, Is128RandomBitsInHex) {
  std::set<std::string> ids;
  for (int i = 0; i < 100; ++i) {
    std::string id = NewOperationId();
    EXPECT_TRUE(IsHex32(id)) << id;
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 100u);
}

TEST_F(RegenctlTest, AdminClientKeepsAGivenOperationIdAndMapsCodes) {
  AdminClient client(address_);
  v1::FailoverRequest request;
  request.set_operation_id("op-42");
  request.set_instance("web-1");
  auto r = client.Failover(request);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->instance().host(), "host-c");
  EXPECT_EQ(fake_.Last<v1::FailoverRequest>().operation_id(), "op-42");

  request.set_instance("web-9");
  r = client.Failover(request);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_EQ(r.status().message(), "instance \"web-9\" not found");

  fake_.FailNext(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "host-a is draining"));
  v1::DrainRequest drain;
  drain.set_host("host-a");
  auto d = client.Drain(drain);
  EXPECT_EQ(d.status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(d.status().message(), "host-a is draining");
  EXPECT_TRUE(IsHex32(fake_.Last<v1::DrainRequest>().operation_id()));

  fake_.FailNext(grpc::Status(grpc::StatusCode::UNAVAILABLE, "store is read-only"));
  auto hosts = client.ListHosts();
  EXPECT_EQ(hosts.status().code(), Code::kUnavailable);
  EXPECT_EQ(hosts.status().message(), "cannot reach the controller at " + address_ +
                                          ": store is read-only (is regen-controller running?)");
}

TEST_F(RegenctlTest, AdminClientEventsStopsWhenTheCallbackSaysSo) {
  fake_.FollowForever();
  AdminClient client(address_);
  std::vector<int64_t> seen;
  Status s = client.Events(0, true, [&](const v1::Event& e) {
    seen.push_back(e.sequence());
    return seen.size() < 5;
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(seen, (std::vector<int64_t>{1, 2, 3, 4, 5}));
}

}  // namespace
}  // namespace regen::ctl_test
