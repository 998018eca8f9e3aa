// The controller's DNS wiring against a real knotd on loopback, built from a controller.yaml
// `dns:` block as the daemon builds it: records appear on deploy, move with a heal under
// ip_policy new and disappear on scale-down; a wrong TSIG secret is refused, reported as
// dns_update_failed and never stops healing; with knotd stopped the heals queue up and a
// restarted knotd catches up in one update (dns_update_recovered). knotd missing is a failure.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <mutex>

#include "common/clock.h"
#include "controller/dns_wiring.h"
#include "tests/fakes/controller_harness.h"
#include "tests/fakes/test_util.h"
#include "tests/integration/dns/knot_server.h"

namespace regen {
namespace {

using regen::testing::ControllerHarness;
using regen::testing::KnotServer;
using regen::testing::WaitFor;
using regen::testing::WebSpecYaml;
using std::chrono::milliseconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::unique_ptr<KnotServer> StartKnot() {
  auto knot = KnotServer::Start();
  EXPECT_TRUE(knot.ok()) << knot.status().ToString();
  return knot.ok() ? std::move(knot).value() : nullptr;
}

// controller.yaml's dns: block for this knotd.
DnsConfig ConfigFor(const KnotServer& knot, const std::string& secret_file) {
  DnsConfig c;
  c.server = knot.server();
  c.zone = "lab.example.";
  c.ttl = 30;
  c.tsig_key_name = knot.key().name;
  c.tsig_algorithm = knot.key().algorithm;
  c.tsig_secret_file = secret_file;
  return c;
}

class ControllerKnotTest : public ::testing::Test {
 protected:
  void Wire(const DnsConfig& config) {
    auto parts = NewDnsWiring(config, clock_, [this](EventRecord e) {
      std::lock_guard lock(mu_);
      reported_.push_back(std::move(e));
    });
    ASSERT_TRUE(parts.ok()) << parts.status().ToString();
    ASSERT_TRUE(parts->has_value());
    parts_ = std::move(**parts);
    DnsWiring* wiring = parts_.wiring.get();
    h_.controller().AddChangeListener(
        [wiring](const Controller& c, const ControllerChanges& ch) { wiring->OnChanges(c, ch); });
    wiring->Start();
  }
  ~ControllerKnotTest() override {
    if (parts_.wiring) parts_.wiring->Stop();
  }

  // The reported events reach the controller's log (the server posts them to its loop).
  void DeliverReports() {
    std::vector<EventRecord> events;
    {
      std::lock_guard lock(mu_);
      events.swap(reported_);
    }
    for (auto& e : events) ASSERT_TRUE(h_.controller().RecordEvent(e).ok());
  }
  bool Reported(const std::string& kind) {
    std::lock_guard lock(mu_);
    for (const auto& e : reported_)
      if (e.kind == kind) return true;
    return false;
  }

  std::vector<std::string> Dig(const std::string& name) {
    auto out = knot_->Dig(name);
    EXPECT_TRUE(out.ok()) << out.status().ToString();
    return out.ok() ? *out : std::vector<std::string>{"<kdig failed>"};
  }
  // Waits until `name` resolves to exactly `ips` (sorted).
  bool WaitDig(const std::string& name, std::vector<std::string> ips,
               milliseconds timeout = milliseconds(10000)) {
    std::sort(ips.begin(), ips.end());
    return WaitFor([&] { return Dig(name) == ips; }, timeout, milliseconds(50));
  }
  std::string Ip(const std::string& instance) { return h_.Inst(instance).allocation.ip; }

  std::unique_ptr<KnotServer> knot_ = StartKnot();
  RealClock clock_;
  ControllerHarness h_;
  DnsWiringParts parts_;
  std::mutex mu_;
  std::vector<EventRecord> reported_;
};

TEST_F(ControllerKnotTest, RecordsAppearMoveWithNewIpAndDisappear) {
  ASSERT_NE(knot_, nullptr);
  Wire(ConfigFor(*knot_, knot_->key_file()));
  h_.Hosts(3);
  ASSERT_TRUE(h_.Apply(WebSpecYaml(3, "new")).ok());
  h_.AllRunning();
  ASSERT_TRUE(WaitDig("web.lab.example.", {Ip("web-0"), Ip("web-1"), Ip("web-2")}))
      << "knotd log:\n"
      << knot_->Log();
  for (const char* name : {"web-0", "web-1", "web-2"}) {
    EXPECT_THAT(Dig(std::string(name) + ".lab.example."), ElementsAre(Ip(name)));
  }

  const std::string old_ip = Ip("web-1");
  h_.Crash("web-1");
  ASSERT_NE(Ip("web-1"), old_ip) << "ip_policy new";
  ASSERT_TRUE(WaitDig("web-1.lab.example.", {Ip("web-1")}));
  EXPECT_TRUE(WaitDig("web.lab.example.", {Ip("web-0"), Ip("web-1"), Ip("web-2")}));
  h_.AllRunning();

  auto shrunk = h_.Apply(WebSpecYaml(2, "new"));
  ASSERT_TRUE(shrunk.ok()) << shrunk.status().ToString();
  EXPECT_TRUE(WaitDig("web-2.lab.example.", {}));
  EXPECT_TRUE(WaitDig("web.lab.example.", {Ip("web-0"), Ip("web-1")}));
  EXPECT_THAT(Dig("web-1.lab.example."), ElementsAre(Ip("web-1")));
  EXPECT_THAT(Dig("ns.lab.example."), ElementsAre("127.0.0.1")) << "other records untouched";
  EXPECT_FALSE(Reported("dns_update_failed"));
}

TEST_F(ControllerKnotTest, WrongKeyIsRefusedReportedAndHealingGoesOn) {
  ASSERT_NE(knot_, nullptr);
  testing::TempDir dir("regen-controller-knot");
  testing::WriteFileOrDie(dir.File("wrong.key"), "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC13cm9uZyE=\n");
  Wire(ConfigFor(*knot_, dir.File("wrong.key")));
  h_.Hosts(2);
  ASSERT_TRUE(h_.Apply(WebSpecYaml(2, "new")).ok());
  h_.AllRunning();
  ASSERT_TRUE(WaitFor([&] { return Reported("dns_update_failed"); }, milliseconds(10000)));
  DeliverReports();
  auto failed = h_.EventsOfKind("dns_update_failed");
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_THAT(failed[0].message, HasSubstr("BADSIG"));
  EXPECT_THAT(failed[0].message, HasSubstr(knot_->server()));
  EXPECT_THAT(failed[0].message, HasSubstr("lab.example."));
  std::cout << "the operator reads: " << failed[0].message << "\n";

  // Healing never waits for DNS.
  const std::string old_host = h_.Inst("web-0").allocation.host;
  h_.Crash("web-0");
  EXPECT_EQ(h_.Inst("web-0").state, "creating");
  EXPECT_NE(h_.Inst("web-0").allocation.host, old_host);
  EXPECT_THAT(Dig("web.lab.example."), IsEmpty()) << "nothing got through";
  EXPECT_EQ(h_.EventsOfKind("dns_update_failed").size(), 1u) << "reported once, not per retry";
}

TEST_F(ControllerKnotTest, KnotStoppedAndRestartedCatchesUp) {
  ASSERT_NE(knot_, nullptr);
  Wire(ConfigFor(*knot_, knot_->key_file()));
  h_.Hosts(3);
  ASSERT_TRUE(h_.Apply(WebSpecYaml(3, "new")).ok());
  h_.AllRunning();
  ASSERT_TRUE(WaitDig("web.lab.example.", {Ip("web-0"), Ip("web-1"), Ip("web-2")}));

  knot_->Stop();
  auto start = std::chrono::steady_clock::now();
  h_.Crash("web-0");
  h_.AllRunning();
  h_.Crash("web-2");
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(500))
      << "heals never wait for DNS";
  ASSERT_TRUE(WaitFor([&] { return Reported("dns_update_failed"); }, milliseconds(15000)));

  Status restarted = knot_->Restart();
  ASSERT_TRUE(restarted.ok()) << restarted.ToString();
  ASSERT_TRUE(WaitFor([&] { return Reported("dns_update_recovered"); }, milliseconds(20000)))
      << parts_.wiring->Report().last_error.ToString();
  EXPECT_THAT(Dig("web-0.lab.example."), ElementsAre(Ip("web-0")));
  EXPECT_THAT(Dig("web-2.lab.example."), ElementsAre(Ip("web-2")));
  std::vector<std::string> all{Ip("web-0"), Ip("web-1"), Ip("web-2")};
  std::sort(all.begin(), all.end());
  EXPECT_EQ(Dig("web.lab.example."), all);
  DeliverReports();
  EXPECT_EQ(h_.EventsOfKind("dns_update_failed").size(), 1u);
  EXPECT_EQ(h_.EventsOfKind("dns_update_recovered").size(), 1u);
}

}  // namespace
}  // namespace regen
