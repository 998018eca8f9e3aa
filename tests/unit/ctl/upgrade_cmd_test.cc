// regenctl's upgrade commands (ctl/upgrade_cmd.cc) against the fake AdminService.
#include "tests/unit/ctl/regenctl_test_fixture.h"

namespace regen::ctl_test {
namespace {

// ---- upgrade ----

constexpr const char* kUpgradeText =
    "service web: upgrade v1 -> v2 (auto) running at UD 1\n"
    "upgraded UDs: 0\n"
    "healing:      web-3\n"
    "started:      2024-05-01T12:00:00.250Z\n"
    "updated:      2024-05-01T12:00:05.000Z\n";

const std::set<std::string> kUpgradeJsonFields = {
    "service",    "from_version", "to_version",          "mode",       "state",
    "current_ud", "upgraded_uds", "healing_in_progress", "started_at", "updated_at"};

TEST_F(RegenctlTest, UpgradeStartSendsServiceVersionAndModeAndPrintsTheStatus) {
  CtlResult r = Run({"upgrade", "start", "web", "--to-version", "v2"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.out, kUpgradeText);
  auto request = fake_.Last<v1::UpgradeStartRequest>();
  EXPECT_TRUE(IsHex32(request.operation_id())) << request.operation_id();
  EXPECT_EQ(request.service(), "web");
  EXPECT_EQ(request.to_version(), "v2");
  EXPECT_EQ(request.mode(), "auto");  // the default
  std::string first_id = request.operation_id();

  r = Run({"upgrade", "start", "web", "--to-version", "2.0_rc-1", "--mode", "manual"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("service web: upgrade v1 -> 2.0_rc-1 (manual) running at UD 1\n"));
  request = fake_.Last<v1::UpgradeStartRequest>();
  EXPECT_EQ(request.to_version(), "2.0_rc-1");
  EXPECT_EQ(request.mode(), "manual");
  EXPECT_NE(request.operation_id(), first_id);
  EXPECT_EQ(fake_.CallNames(), (std::vector<std::string>{"UpgradeStart", "UpgradeStart"}));
}

TEST_F(RegenctlTest, UpgradeStartJsonHasExactlyTheIssuesStatusFields) {
  json j = RunJson({"upgrade", "start", "web", "--to-version", "v2"});
  EXPECT_EQ(Keys(j), kUpgradeJsonFields);
  EXPECT_EQ(j, json::parse(R"({"service":"web","from_version":"v1","to_version":"v2",
      "mode":"auto","state":"running","current_ud":1,"upgraded_uds":[0],
      "healing_in_progress":["web-3"],"started_at":1714564800250,"updated_at":1714564805000})"));
}

TEST_F(RegenctlTest, UpgradeStatusTextAndJson) {
  CtlResult r = Run({"upgrade", "status", "web"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, kUpgradeText);
  auto request = fake_.Last<v1::UpgradeServiceRequest>();
  EXPECT_EQ(request.service(), "web");
  EXPECT_FALSE(request.force());

  json j = RunJson({"upgrade", "status", "web"});
  EXPECT_EQ(Keys(j), kUpgradeJsonFields);
  EXPECT_EQ(j["upgraded_uds"], json::parse("[0]"));
  EXPECT_EQ(j["healing_in_progress"], json::parse(R"(["web-3"])"));
  EXPECT_EQ(fake_.CallNames(), (std::vector<std::string>{"UpgradeStatusGet", "UpgradeStatusGet"}));
}

TEST_F(RegenctlTest, UpgradeStatusWithNothingUpgradedOrHealingSaysNone) {
  v1::UpgradeStatus u;
  u.set_from_version("v1");
  u.set_to_version("v2");
  u.set_mode("manual");
  u.set_state("waiting_for_operator");
  u.set_current_ud(0);
  u.set_started_at_unix_ms(1714564800250);
  fake_.SetUpgrade(u);
  CtlResult r = Run({"upgrade", "status", "web"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "service web: upgrade v1 -> v2 (manual) waiting_for_operator at UD 0\n"
            "upgraded UDs: none\n"
            "healing:      none\n"
            "started:      2024-05-01T12:00:00.250Z\n"
            "updated:      -\n");

  json j = RunJson({"upgrade", "status", "web"});
  EXPECT_EQ(Keys(j), kUpgradeJsonFields);
  EXPECT_EQ(j["upgraded_uds"], json::array());
  EXPECT_EQ(j["healing_in_progress"], json::array());
  EXPECT_EQ(j["updated_at"], 0);

  u.clear_healing_in_progress();
  u.add_upgraded_uds(0);
  u.add_upgraded_uds(1);
  u.add_healing_in_progress("web-3");
  u.add_healing_in_progress("web-5");
  fake_.SetUpgrade(u);
  r = Run({"upgrade", "status", "web"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("upgraded UDs: 0, 1\nhealing:      web-3, web-5\n"));
}

TEST_F(RegenctlTest, UpgradePauseShowsTheMessageInTextAndJson) {
  CtlResult r = Run({"upgrade", "pause", "web"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "service web: upgrade v1 -> v2 (auto) paused at UD 1\n"
            "upgraded UDs: 0\n"
            "healing:      web-3\n"
            "started:      2024-05-01T12:00:00.250Z\n"
            "updated:      2024-05-01T12:00:05.000Z\n"
            "message:      paused by the operator\n");

  json j = RunJson({"upgrade", "pause", "web"});
  std::set<std::string> with_message = kUpgradeJsonFields;
  with_message.insert("message");
  EXPECT_EQ(Keys(j), with_message);
  EXPECT_EQ(j["state"], "paused");
  EXPECT_EQ(j["message"], "paused by the operator");
}

TEST_F(RegenctlTest, EachUpgradeCommandSendsItsRpcWithAFreshOperationId) {
  struct Case {
    std::string verb;
    std::string rpc;
    std::string first_line;
  };
  const std::vector<Case> cases = {
      {"status", "UpgradeStatusGet", "service db: upgrade v1 -> v2 (auto) running at UD 1"},
      {"pause", "UpgradePause", "service db: upgrade v1 -> v2 (auto) paused at UD 1"},
      {"resume", "UpgradeResume", "service db: upgrade v1 -> v2 (auto) running at UD 1"},
      {"next-ud", "UpgradeNextUd", "service db: upgrade v1 -> v2 (auto) running at UD 2"},
      {"rollback", "UpgradeRollback", "service db: upgrade v1 -> v2 (auto) rolling_back at UD 1"},
  };
  std::set<std::string> ids;
  std::vector<std::string> rpcs;
  for (const Case& c : cases) {
    CtlResult r = Run({"upgrade", c.verb, "db"});
    ASSERT_EQ(r.code, 0) << c.verb << ": " << r.err;
    std::vector<std::string> lines = Lines(r.out);
    ASSERT_FALSE(lines.empty()) << c.verb;
    EXPECT_EQ(lines[0], c.first_line) << c.verb;
    ASSERT_FALSE(fake_.CallNames().empty());
    EXPECT_EQ(fake_.CallNames().back(), c.rpc) << c.verb;
    auto request = fake_.Last<v1::UpgradeServiceRequest>();
    EXPECT_EQ(request.service(), "db") << c.verb;
    EXPECT_FALSE(request.force()) << c.verb;
    EXPECT_TRUE(IsHex32(request.operation_id())) << c.verb << ": " << request.operation_id();
    ids.insert(request.operation_id());
    rpcs.push_back(c.rpc);

    json j = RunJson({"upgrade", c.verb, "db"});
    EXPECT_EQ(j["service"], "db") << c.verb;
    EXPECT_EQ(fake_.CallNames().back(), c.rpc) << c.verb;
    rpcs.push_back(c.rpc);
  }
  EXPECT_EQ(ids.size(), cases.size());
  EXPECT_EQ(fake_.CallNames(), rpcs);
}

TEST_F(RegenctlTest, UpgradeNextUdPassesForceThrough) {
  CtlResult r = Run({"upgrade", "next-ud", "web", "--force"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto request = fake_.Last<v1::UpgradeServiceRequest>();
  EXPECT_TRUE(request.force());
  EXPECT_EQ(request.service(), "web");

  json j = RunJson({"upgrade", "next-ud", "--force", "web"});
  EXPECT_TRUE(fake_.Last<v1::UpgradeServiceRequest>().force());
  EXPECT_EQ(j["current_ud"], 2);

  r = Run({"upgrade", "next-ud", "web"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_FALSE(fake_.Last<v1::UpgradeServiceRequest>().force());
  EXPECT_EQ(fake_.CallNames(),
            (std::vector<std::string>{"UpgradeNextUd", "UpgradeNextUd", "UpgradeNextUd"}));
}

TEST_F(RegenctlTest, UpgradeErrorsFromTheControllerArePrintedAsTheyAre) {
  const std::string healing =
      "cannot upgrade the next UD of web: instances being healed: web-3, web-5 (use --force)";
  fake_.FailNext(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, healing));
  CtlResult r = Run({"upgrade", "next-ud", "web"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "regenctl: " + healing + "\n");

  fake_.FailNext(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, healing));
  r = Run({"upgrade", "next-ud", "web", "-o", "json"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "regenctl: " + healing + "\n");

  // Today's controller does not implement the Upgrade RPCs.
  fake_.FailNext(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "upgrades are not implemented"));
  r = Run({"upgrade", "start", "web", "--to-version", "v2"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "regenctl: upgrades are not implemented\n");

  fake_.FailNext(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, ""));
  r = Run({"upgrade", "rollback", "web"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "regenctl: UpgradeRollback failed (gRPC code 12)\n");

  fake_.FailNext(grpc::Status(grpc::StatusCode::NOT_FOUND, "service \"shop\" has no upgrade"));
  r = Run({"upgrade", "status", "shop"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "regenctl: service \"shop\" has no upgrade\n");
}

TEST_F(RegenctlTest, BadUpgradeArgumentsAreRefusedWithoutAnyRpc) {
  struct Case {
    std::vector<std::string> args;
    std::string err;  // exact, or "" for any "regenctl: " message naming `has`
    std::string has = "";
  };
  const std::string bad_name = " is not a valid name ([a-z][a-z0-9-]{0,62})\n";
  const std::string bad_version = " is not a valid version name ([a-z0-9][a-z0-9._-]{0,62})\n";
  const std::vector<Case> cases = {
      {{"upgrade", "start", "Web", "--to-version", "v2"},
       "regenctl: upgrade start: SERVICE \"Web\"" + bad_name},
      {{"upgrade", "start", "web", "--to-version", "V2"},
       "regenctl: upgrade start: --to-version \"V2\"" + bad_version},
      {{"upgrade", "start", "web", "--to-version", ".v2"},
       "regenctl: upgrade start: --to-version \".v2\"" + bad_version},
      {{"upgrade", "start", "web", "--to-version", "v 2"},
       "regenctl: upgrade start: --to-version \"v 2\"" + bad_version},
      {{"upgrade", "start", "web", "--to-version", std::string(64, 'v')},
       "regenctl: upgrade start: --to-version \"" + std::string(64, 'v') + "\"" + bad_version},
      {{"upgrade", "start", "web", "--to-version", ""},
       "regenctl: upgrade start: --to-version \"\"" + bad_version},
      {{"upgrade", "start", "web", "--to-version", "v2", "--mode", "fast"},
       "regenctl: upgrade start: --mode \"fast\" is not an upgrade mode (use auto or manual)\n"},
      {{"upgrade", "start", "web", "--to-version", "v2", "--mode", "Auto"},
       "regenctl: upgrade start: --mode \"Auto\" is not an upgrade mode (use auto or manual)\n"},
      {{"upgrade", "start", "web"}, "", "--to-version"},
      {{"upgrade", "start", "--to-version", "v2"}, "", "SERVICE"},
      {{"upgrade", "status", "web_1"}, "regenctl: upgrade status: SERVICE \"web_1\"" + bad_name},
      {{"upgrade", "pause", "9web"}, "regenctl: upgrade pause: SERVICE \"9web\"" + bad_name},
      {{"upgrade", "resume", "WEB"}, "regenctl: upgrade resume: SERVICE \"WEB\"" + bad_name},
      {{"upgrade", "next-ud", "web.x", "--force"},
       "regenctl: upgrade next-ud: SERVICE \"web.x\"" + bad_name},
      {{"upgrade", "rollback", std::string(64, 'w')},
       "regenctl: upgrade rollback: SERVICE \"" + std::string(64, 'w') + "\"" + bad_name},
      {{"upgrade", "rollback"}, "", "SERVICE"},
      {{"upgrade", "pause", "web", "--force"}, "", "--force"},  // only next-ud has it
      {{"upgrade", "status", "web", "-o", "yaml"}, "", "\"yaml\""},
      {{"upgrade", "frobnicate", "web"},
       "regenctl: upgrade: unknown command \"frobnicate\" (commands: start, status, pause, "
       "resume, next-ud, rollback; see regenctl upgrade --help)\n"},
      {{"upgrade"}, "", "regenctl: upgrade: which command?"},
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
      EXPECT_THAT(r.err, HasSubstr(c.has)) << what << ": " << r.err;
    }
  }
  EXPECT_TRUE(fake_.Calls().empty()) << ::testing::PrintToString(fake_.Calls());
}

TEST_F(RegenctlTest, UpgradeHelpNamesItsOptions) {
  CtlResult r = Run({"upgrade", "start", "--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("--to-version"));
  EXPECT_THAT(r.out, HasSubstr("--mode"));
  r = Run({"upgrade", "next-ud", "--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("--force"));
  EXPECT_TRUE(fake_.Calls().empty());
}

}  // namespace
}  // namespace regen::ctl_test
