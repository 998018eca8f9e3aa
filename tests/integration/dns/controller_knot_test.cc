// The controller's DNS wiring against a real knotd on loopback, built from a controller.yaml
// `dns:` block as the daemon builds it: records appear on deploy, move with a heal under
// ip_policy new and disappear on scale-down; a wrong TSIG secret is refused, reported as
// dns_update_failed and never stops healing; with knotd stopped the heals queue up and a
// restarted knotd catches up in one update (dns_update_recovered). A restarted controller
// (ControllerServer in this process, as regen-controller runs it) deletes the records of what
// went away meanwhile and keeps the operator's. knotd missing is a failure.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <mutex>

#include "common/clock.h"
#include "controller/dns_wiring.h"
#include "controller/server.h"
#include "dns/ldns_updater.h"
#include "tests/fakes/controller_harness.h"
#include "tests/fakes/test_util.h"
#include "tests/integration/dns/knot_server.h"

namespace regen {
namespace {

using regen::testing::ControllerHarness;
using regen::testing::KnotServer;
using regen::testing::MessageSink;
using regen::testing::WaitFor;
using regen::testing::WebSpecYaml;
using std::chrono::milliseconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

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
      if (EventKindName(e.kind) == kind) return true;
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
  EXPECT_EQ(h_.Inst("web-0").state, InstanceState::kCreating);
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

// "api": `instances` instances in subnet 10.20.0.0/24.
std::string ApiSpecYaml(int instances) {
  std::string yaml = WebSpecYaml(instances, "new");
  yaml.replace(yaml.find("name: web"), 9, "name: api");
  yaml.replace(yaml.find("10.10.0.0/24"), 12, "10.20.0.0/24");
  return yaml;
}

// regen-controller in this process: a ControllerServer over the SQLite file of `dir`, with
// controller.yaml's dns: block for knotd. Agents are stood in for by Hellos on its loop.
class ControllerProcess {
 public:
  ControllerProcess(const std::string& db, const DnsConfig& dns) {
    auto store = OpenSqliteStore(db);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    ControllerConfig cc;
    cc.listen_address = "127.0.0.1:0";
    cc.insecure = true;
    cc.heartbeat_interval = milliseconds(500);
    cc.fencing_lease = milliseconds(30000);
    cc.host_down_after = milliseconds(60000);  // hosts without agents stay up during the test
    cc.dns = dns;
    server_ = std::make_unique<ControllerServer>(cc, *store_, clock_);
    started_ = server_->Start();
  }
  ~ControllerProcess() { server_->Shutdown(); }

  const Status& started() const { return started_; }
  ControllerServer& server() { return *server_; }
  Status Hello(const std::string& host) {
    return server_->Call<Status>(
        [&] { return server_->controller().OnHello(testing::TestHello(host), &sinks_[host]); });
  }
  Status Apply(const std::string& yaml) {
    return server_->Call<Status>([&] {
      v1::ApplyServiceRequest req;
      req.set_spec_yaml(yaml);
      req.set_file_name("service.yaml");
      return server_->controller().ApplyService(req).status();
    });
  }
  std::string Ip(const std::string& instance) {
    return server_->Call<std::string>([&] {
      const auto& all = server_->controller().instances();
      auto it = all.find(instance);
      return it == all.end() ? std::string() : it->second.allocation.ip;
    });
  }

 private:
  RealClock clock_;
  std::unique_ptr<Store> store_;
  std::map<std::string, MessageSink> sinks_;  // used on the server's loop only
  std::unique_ptr<ControllerServer> server_;
  Status started_;
};

// Issue 5: web is scaled down while knotd is down and the controller stops before DNS caught up;
// the whole service api is removed while the controller is down (there is no remove-service
// RPC: its rows are deleted from the database, as an operator would). After the controller
// restarts, web-2 and every api name disappear from knotd, web's records stay, and the
// operator's records (ns, ops, and web-9, a name that only looks like Regen's) are untouched.
// The restart itself happens while knotd is down again: the controller starts at once and the
// deletions go out, with the usual retries, when knotd is back.
TEST_F(ControllerKnotTest, RestartedControllerDeletesWhatWentAwayAndKeepsTheOperatorsRecords) {
  ASSERT_NE(knot_, nullptr);
  auto ring = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(1000);
  spdlog::default_logger()->sinks().push_back(ring);
  struct RemoveSink {
    ~RemoveSink() { spdlog::default_logger()->sinks().pop_back(); }
  } remove_sink;
  testing::TempDir dir("regen-controller-knot-restart");
  const std::string db = dir.File("controller.db");
  const DnsConfig dns = ConfigFor(*knot_, knot_->key_file());

  // The operator's own records, written with the same key before Regen runs.
  dns::LdnsUpdaterOptions uo;
  uo.server_address = knot_->address();
  uo.port = knot_->port();
  uo.tsig = knot_->key();
  auto operator_updater = dns::NewLdnsUpdater(uo);
  ASSERT_TRUE(operator_updater.ok()) << operator_updater.status().ToString();
  dns::ZoneUpdate ops;
  ops.zone = "lab.example.";
  ops.ttl = 300;
  ops.replaces = {{"ops.lab.example.", {"192.0.2.53"}}, {"web-9.lab.example.", {"192.0.2.99"}}};
  Status written = (*operator_updater)->Apply(ops);
  ASSERT_TRUE(written.ok()) << written.ToString();

  std::string web0, web1, web2, api0, api1;
  {
    ControllerProcess controller(db, dns);
    ASSERT_TRUE(controller.started().ok()) << controller.started().ToString();
    for (const char* host : {"host-1", "host-2", "host-3"}) {
      ASSERT_TRUE(controller.Hello(host).ok());
    }
    ASSERT_TRUE(controller.Apply(WebSpecYaml(3, "new")).ok());
    ASSERT_TRUE(controller.Apply(ApiSpecYaml(2)).ok());
    web0 = controller.Ip("web-0"), web1 = controller.Ip("web-1"), web2 = controller.Ip("web-2");
    api0 = controller.Ip("api-0"), api1 = controller.Ip("api-1");
    ASSERT_TRUE(WaitDig("web.lab.example.", {web0, web1, web2})) << knot_->Log();
    ASSERT_TRUE(WaitDig("api.lab.example.", {api0, api1}));
    EXPECT_THAT(Dig("web-2.lab.example."), ElementsAre(web2));
    EXPECT_THAT(Dig("api-1.lab.example."), ElementsAre(api1));

    // Scale down while knotd is down; the controller stops before DNS catches up.
    knot_->Stop();
    DnsWiring* wiring = controller.server().dns();
    ASSERT_NE(wiring, nullptr);
    int64_t failures = wiring->Report().failures;
    ASSERT_TRUE(controller.Apply(WebSpecYaml(2, "new")).ok());
    ASSERT_TRUE(WaitFor([&] { return wiring->Report().failures > failures; }, milliseconds(15000)))
        << "the scale-down's update was tried and failed";
  }
  {
    auto store = OpenSqliteStore(db);  // the operator removes api while the controller is down
    ASSERT_TRUE(store.ok());
    Status removed = (*store)->Transaction([](StoreTxn& t) -> Status {
      RETURN_IF_ERROR(t.DeleteInstance("api-0"));
      RETURN_IF_ERROR(t.DeleteInstance("api-1"));
      return t.DeleteService("api");
    });
    ASSERT_TRUE(removed.ok()) << removed.ToString();
  }
  Status restarted = knot_->Restart();
  ASSERT_TRUE(restarted.ok()) << restarted.ToString();
  // The stale records really are in knotd before the controller comes back.
  EXPECT_THAT(Dig("web-2.lab.example."), ElementsAre(web2));
  EXPECT_THAT(Dig("api.lab.example."), ElementsAre(api0, api1));

  // The controller restarts while DNS is down again: it starts at once, the cleanup waits.
  knot_->Stop();
  auto start = std::chrono::steady_clock::now();
  ControllerProcess controller(db, dns);
  ASSERT_TRUE(controller.started().ok()) << controller.started().ToString();
  auto start_ms =
      std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start);
  EXPECT_LT(start_ms, milliseconds(1000)) << "DNS down never holds up the start";
  ASSERT_TRUE(WaitFor([&] { return controller.server().dns()->Report().failures > 0; },
                      milliseconds(10000)));
  restarted = knot_->Restart();
  ASSERT_TRUE(restarted.ok()) << restarted.ToString();
  auto back = std::chrono::steady_clock::now();
  EXPECT_TRUE(WaitDig("web-2.lab.example.", {})) << knot_->Log();
  auto gone_ms = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - back);
  std::cout << "controller start took " << start_ms.count()
            << " ms with knotd down; knotd back -> stale records gone: " << gone_ms.count()
            << " ms\n";
  EXPECT_THAT(Dig("api-0.lab.example."), IsEmpty());
  EXPECT_THAT(Dig("api-1.lab.example."), IsEmpty());
  EXPECT_THAT(Dig("api.lab.example."), IsEmpty());
  EXPECT_EQ(Dig("web.lab.example."), (std::vector<std::string>{web0, web1}));
  EXPECT_THAT(Dig("web-0.lab.example."), ElementsAre(web0));
  EXPECT_THAT(Dig("web-1.lab.example."), ElementsAre(web1));
  EXPECT_THAT(Dig("ns.lab.example."), ElementsAre("127.0.0.1")) << "the operator's records stay";
  EXPECT_THAT(Dig("ops.lab.example."), ElementsAre("192.0.2.53"));
  EXPECT_THAT(Dig("web-9.lab.example."), ElementsAre("192.0.2.99"));

  // One log line per deleted name.
  std::string log;
  for (const std::string& line : ring->last_formatted()) log += line;
  for (const char* name : {"web-2", "api-0", "api-1", "api"}) {
    EXPECT_THAT(log, HasSubstr("kind=dns_stale target=" + std::string(name) + ".lab.example."));
    EXPECT_THAT(log, HasSubstr("kind=dns_delete target=" + std::string(name) + ".lab.example."));
  }
  EXPECT_THAT(log, Not(HasSubstr("target=web-9"))) << log;
  EXPECT_THAT(log, Not(HasSubstr("target=ops"))) << log;
}

}  // namespace
}  // namespace regen
