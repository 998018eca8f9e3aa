// controller/dns_wiring: the controller's instance locations become the zone's records through a
// fake updater: records per instance and per service on deploy, one update per change (heal with
// ip_policy new moves the instance's and the service's records, the old IP freed), removal on
// scale-down; DNS failures are reported once (dns_update_failed), never stop healing, and the
// recovery (dns_update_recovered) brings the zone up to date in one update. With the published
// names kept in the store, a restarted controller deletes the records of instances and services
// that went away meanwhile, and only those. Config errors name the field.
#include "controller/dns_wiring.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "controller/cluster_state.h"
#include "tests/fakes/controller_harness.h"
#include "tests/fakes/fake_dns.h"
#include "tests/fakes/fake_store.h"

namespace regen {
namespace {

using testing::ControllerHarness;
using ::testing::ElementsAre;
using testing::FakeDnsUpdater;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using testing::WebSpecYaml;

class DnsWiringTest : public ::testing::Test {
 protected:
  DnsWiringTest() { NewWiring(); }

  // A wiring on the harness's controller (again after a restart), as the server makes it.
  void NewWiring(bool track_published = false) {
    wiring_.reset();
    dns::DnsSyncOptions o;
    o.zone = "lab.example.";
    o.ttl = 30;
    o.initial_backoff = std::chrono::milliseconds(100);
    o.max_backoff = std::chrono::milliseconds(400);
    o.resync_interval = std::chrono::milliseconds(0);
    wiring_ = std::make_unique<DnsWiring>(updater_, h_.clock(), o,
                                          [this](EventRecord e) { reported_.push_back(e); });
    if (track_published) {
      Status s = wiring_->TrackPublished(
          h_.store(), [this](std::function<void()> task) { posted_.push_back(std::move(task)); });
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
    h_.controller().AddChangeListener(
        [this](const Controller& c, const ControllerChanges& ch) { wiring_->OnChanges(c, ch); });
    wiring_->Resync(h_.controller());
  }
  // Runs what the wiring posted to the main loop (as the server's loop does).
  void RunPosted() {
    std::vector<std::function<void()>> tasks;
    tasks.swap(posted_);
    for (auto& t : tasks) t();
  }
  std::set<std::string> Stored() {
    auto names = h_.store().DnsNames("lab.example.");
    EXPECT_TRUE(names.ok()) << names.status().ToString();
    return names.ok() ? *names : std::set<std::string>{};
  }

  // Reported events go to the controller, as the server does (on its loop).
  void DeliverReports() {
    for (auto& e : reported_) ASSERT_TRUE(h_.controller().RecordEvent(e).ok());
    reported_.clear();
  }

  std::set<std::string> Zone(const std::string& name) {
    auto zone = updater_.zone();
    auto it = zone.find(name);
    return it == zone.end() ? std::set<std::string>{} : it->second;
  }

  ControllerHarness h_;
  FakeDnsUpdater updater_;
  std::vector<EventRecord> reported_;
  std::vector<std::function<void()>> posted_;
  std::unique_ptr<DnsWiring> wiring_;
};

std::set<std::string> Names(std::initializer_list<const char*> short_names) {
  std::set<std::string> out;
  for (const char* n : short_names) out.insert(std::string(n) + ".lab.example.");
  return out;
}

// The names the wiring publishes are the controller's own state: a name the store refuses to
// record is not sent (a restart could not delete it), and the process goes on (issue 15: a full
// disk must not stop the controller). A later update stores and sends it.
TEST_F(DnsWiringTest, ANameTheStoreRefusesIsNotSentUntilItIsStored) {
  testing::FaultyStore refusing(h_.store(), 1);
  dns::DnsSyncOptions o;
  o.zone = "lab.example.";
  wiring_ = std::make_unique<DnsWiring>(updater_, h_.clock(), o, [](EventRecord) {});
  ASSERT_TRUE(wiring_->TrackPublished(refusing, [](std::function<void()>) {}).ok());
  h_.Hosts(2);
  ASSERT_TRUE(h_.Apply(WebSpecYaml(2)).ok());
  ASSERT_TRUE(wiring_->Flush().ok());
  EXPECT_TRUE(updater_.zone().empty()) << "nothing was sent before the names were stored";
  EXPECT_TRUE(Stored().empty());
  ASSERT_TRUE(h_.Apply(WebSpecYaml(3)).ok());  // the next update: stored, then sent
  ASSERT_TRUE(wiring_->Flush().ok());
  EXPECT_EQ(Stored(), Names({"web-0", "web-1", "web-2", "web"}));
  EXPECT_EQ(Zone("web-2.lab.example."), std::set<std::string>{h_.Inst("web-2").allocation.ip});
  EXPECT_THAT(Zone("web.lab.example."), SizeIs(3));
}

// "api": 2 instances in subnet 10.20.0.0/24.
std::string ApiSpecYaml(int instances) {
  std::string yaml = WebSpecYaml(instances);
  yaml.replace(yaml.find("name: web"), 9, "name: api");
  yaml.replace(yaml.find("10.10.0.0/24"), 12, "10.20.0.0/24");
  return yaml;
}

// The scenario of issue 5: web scaled down while DNS does not answer, then the controller
// restarts before DNS caught up; the whole service api removed (its rows deleted) while the
// controller is down. After the restart the first update deletes web-2 and every api name, keeps
// web's, and never touches the operator's names, not even one that looks like Regen's (web-9).
TEST_F(DnsWiringTest, RestartDeletesWhatWentAwayMeanwhileAndNothingElse) {
  NewWiring(/*track_published=*/true);
  h_.Hosts(3);
  ASSERT_TRUE(h_.Apply(WebSpecYaml(3, "new")).ok());
  ASSERT_TRUE(h_.Apply(ApiSpecYaml(2)).ok());
  const std::set<std::string> all =
      Names({"web-0", "web-1", "web-2", "web", "api-0", "api-1", "api"});
  EXPECT_EQ(Stored(), all) << "stored before any update is sent";
  EXPECT_THAT(updater_.calls(), IsEmpty());
  ASSERT_TRUE(wiring_->Flush().ok());
  RunPosted();
  EXPECT_EQ(Stored(), all);
  EXPECT_EQ(wiring_->published(), all);
  updater_.SetRecords("ops.lab.example.", {"192.0.2.53"});
  updater_.SetRecords("web-9.lab.example.", {"192.0.2.99"});
  const std::string web0 = h_.Ip("web-0"), web1 = h_.Ip("web-1");

  h_.AllRunning();
  updater_.FailWith(Unavailable("DNS update of zone lab.example. at fake-dns:53: no answer"));
  ASSERT_TRUE(h_.Apply(WebSpecYaml(2, "new")).ok());
  EXPECT_FALSE(wiring_->Flush().ok());
  RunPosted();
  EXPECT_EQ(Stored(), all) << "web-2's deletion was not acknowledged";

  wiring_.reset();
  h_.Restart([](Store& store) {
    Status s = store.Transaction([](StoreTxn& t) -> Status {
      RETURN_IF_ERROR(t.DeleteInstance("api-0"));
      RETURN_IF_ERROR(t.DeleteInstance("api-1"));
      return t.DeleteService("api");
    });
    ASSERT_TRUE(s.ok()) << s.ToString();
  });
  ASSERT_EQ(h_.Ip("api-0"), "");
  updater_.FailWith(Unavailable("still down"));
  NewWiring(/*track_published=*/true);
  EXPECT_THAT(wiring_->sync().Uncertain(), SizeIs(all.size()));
  EXPECT_FALSE(wiring_->Flush().ok()) << "DNS down: the start went on, the cleanup waits";
  updater_.FailWith(Status::Ok());
  h_.clock().Advance(std::chrono::milliseconds(100));
  ASSERT_TRUE(wiring_->Flush().ok());
  EXPECT_THAT(updater_.calls().back().deletes,
              ElementsAre("api-0.lab.example.", "api-1.lab.example.", "api.lab.example.",
                          "web-2.lab.example."));
  dns::ZoneRecords expected = {{"web-0.lab.example.", {web0}},
                               {"web-1.lab.example.", {web1}},
                               {"web.lab.example.", {web0, web1}},
                               {"ops.lab.example.", {"192.0.2.53"}},
                               {"web-9.lab.example.", {"192.0.2.99"}}};
  EXPECT_EQ(updater_.zone(), expected);
  RunPosted();
  EXPECT_EQ(Stored(), Names({"web-0", "web-1", "web"}));

  // A second restart has nothing left to delete.
  wiring_.reset();
  h_.Restart();
  NewWiring(/*track_published=*/true);
  ASSERT_TRUE(wiring_->Flush().ok());
  EXPECT_THAT(updater_.calls().back().deletes, IsEmpty());
  EXPECT_EQ(updater_.zone(), expected);
}

// A name deleted by an acknowledged update but wanted again before the acknowledgement reached
// the main loop stays stored: its new record may be on its way to the server.
TEST_F(DnsWiringTest, NameWantedAgainBeforeTheAcknowledgementStaysStored) {
  NewWiring(/*track_published=*/true);
  h_.Hosts(3);
  ASSERT_TRUE(h_.Apply(WebSpecYaml(3)).ok());
  ASSERT_TRUE(wiring_->Flush().ok());
  RunPosted();
  h_.AllRunning();
  ASSERT_TRUE(h_.Apply(WebSpecYaml(2)).ok());
  ASSERT_TRUE(wiring_->Flush().ok());  // deletes web-2; its acknowledgement is posted
  EXPECT_THAT(updater_.calls().back().deletes, ElementsAre("web-2.lab.example."));
  ASSERT_TRUE(h_.Apply(WebSpecYaml(3)).ok());  // web-2 is back before the loop ran the task
  RunPosted();
  EXPECT_EQ(Stored(), Names({"web-0", "web-1", "web-2", "web"}));
  ASSERT_TRUE(wiring_->Flush().ok());
  RunPosted();
  EXPECT_EQ(Stored(), Names({"web-0", "web-1", "web-2", "web"}));
  EXPECT_THAT(Zone("web-2.lab.example."), SizeIs(1));

  // Scaled down for good: forgotten once the deletion is acknowledged.
  h_.AllRunning();
  ASSERT_TRUE(h_.Apply(WebSpecYaml(2)).ok());
  RunPosted();
  EXPECT_EQ(Stored(), Names({"web-0", "web-1", "web-2", "web"})) << "not sent yet";
  ASSERT_TRUE(wiring_->Flush().ok());
  RunPosted();
  EXPECT_EQ(Stored(), Names({"web-0", "web-1", "web"}));
}

TEST_F(DnsWiringTest, DeployHealWithNewIpAndScaleDown) {
  h_.Hosts(3);
  ASSERT_TRUE(h_.Apply(WebSpecYaml(3, "new")).ok());
  ASSERT_TRUE(wiring_->Flush().ok());
  ASSERT_THAT(updater_.calls(), SizeIs(1)) << "one update for the deploy";
  std::set<std::string> ips;
  for (int i = 0; i < 3; ++i) {
    const std::string name = "web-" + std::to_string(i);
    EXPECT_EQ(Zone(name + ".lab.example."), std::set<std::string>{h_.Inst(name).allocation.ip});
    ips.insert(h_.Inst(name).allocation.ip);
  }
  EXPECT_EQ(Zone("web.lab.example."), ips);

  // Running reports change no location: nothing to send.
  h_.AllRunning();
  ASSERT_TRUE(wiring_->Flush().ok());
  EXPECT_THAT(updater_.calls(), SizeIs(1));

  // Heal web-1 with ip_policy new: a new IP from the subnet, the old one freed.
  const std::string old_ip = h_.Inst("web-1").allocation.ip;
  const std::string old_host = h_.Inst("web-1").allocation.host;
  h_.Crash("web-1");
  ASSERT_NE(h_.Inst("web-1").allocation.host, old_host);
  const std::string new_ip = h_.Inst("web-1").allocation.ip;
  ASSERT_NE(new_ip, old_ip) << "ip_policy new";
  ASSERT_TRUE(wiring_->Flush().ok());
  auto calls = updater_.calls();
  ASSERT_THAT(calls, SizeIs(2)) << "one update for the heal";
  EXPECT_THAT(calls[1].deletes, IsEmpty());
  ASSERT_THAT(calls[1].replaces, SizeIs(2)) << calls[1].ToString();
  EXPECT_EQ(calls[1].replaces[0].name, "web-1.lab.example.");
  EXPECT_THAT(calls[1].replaces[0].addresses, ElementsAre(new_ip));
  EXPECT_EQ(calls[1].replaces[1].name, "web.lab.example.");
  ips.erase(old_ip);
  ips.insert(new_ip);
  EXPECT_EQ(Zone("web.lab.example."), ips);

  // Scale down: web-2's record goes, and its address leaves the service's set.
  h_.AllRunning();
  ASSERT_TRUE(h_.Apply(WebSpecYaml(2, "new")).ok());
  ASSERT_TRUE(wiring_->Flush().ok());
  EXPECT_THAT(Zone("web-2.lab.example."), IsEmpty());
  EXPECT_EQ(Zone("web.lab.example."),
            (std::set<std::string>{h_.Inst("web-0").allocation.ip, new_ip}));
  EXPECT_THAT(updater_.calls(), SizeIs(3));
  EXPECT_THAT(updater_.calls()[2].deletes, ElementsAre("web-2.lab.example."));
}

TEST_F(DnsWiringTest, DnsNameOfTheServiceIsUsed) {
  h_.Hosts(2);
  ASSERT_TRUE(h_.Apply(WebSpecYaml(2, "keep", "www.lab.example")).ok());
  ASSERT_TRUE(wiring_->Flush().ok());
  EXPECT_THAT(Zone("www.lab.example."), SizeIs(2));
  EXPECT_THAT(Zone("web.lab.example."), IsEmpty());
  EXPECT_THAT(Zone("web-0.lab.example."), SizeIs(1));
}

TEST_F(DnsWiringTest, FailuresAreReportedOnceHealingGoesOnAndRecoveryCatchesUp) {
  h_.Hosts(3);
  ASSERT_TRUE(h_.Apply(WebSpecYaml(3, "new")).ok());
  ASSERT_TRUE(wiring_->Flush().ok());
  h_.AllRunning();

  updater_.FailWith(Unavailable("DNS update of zone lab.example. at fake-dns:53: no answer"));
  h_.Crash("web-0");
  EXPECT_EQ(h_.Inst("web-0").state, InstanceState::kCreating) << "healing never waits for DNS";
  Status s = wiring_->Flush();
  EXPECT_FALSE(s.ok());
  ASSERT_THAT(reported_, SizeIs(1));
  EXPECT_EQ(reported_[0].kind, EventKind::kDnsUpdateFailed);
  EXPECT_THAT(reported_[0].message, HasSubstr("no answer"));
  EXPECT_THAT(reported_[0].message, HasSubstr("lab.example."));
  DeliverReports();
  EXPECT_THAT(h_.EventsOfKind("dns_update_failed"), SizeIs(1));

  // While it fails: a second heal, retries after backoff; still one failed event.
  h_.AllRunning();
  h_.Crash("web-2");
  h_.clock().Advance(std::chrono::milliseconds(100));
  EXPECT_FALSE(wiring_->Flush().ok());
  EXPECT_THAT(reported_, IsEmpty());
  EXPECT_FALSE(wiring_->Report().in_sync);

  // The server is back: one update carries both heals.
  updater_.FailWith(Status::Ok());
  size_t calls_before = updater_.calls().size();
  h_.clock().Advance(std::chrono::milliseconds(400));
  ASSERT_TRUE(wiring_->Flush().ok());
  EXPECT_EQ(updater_.calls().size(), calls_before + 1);
  EXPECT_EQ(Zone("web-0.lab.example."), std::set<std::string>{h_.Inst("web-0").allocation.ip});
  EXPECT_EQ(Zone("web-2.lab.example."), std::set<std::string>{h_.Inst("web-2").allocation.ip});
  EXPECT_TRUE(wiring_->Report().in_sync);
  ASSERT_THAT(reported_, SizeIs(1));
  EXPECT_EQ(reported_[0].kind, EventKind::kDnsUpdateRecovered);
  DeliverReports();
  EXPECT_THAT(h_.EventsOfKind("dns_update_recovered"), SizeIs(1));
}

TEST_F(DnsWiringTest, PendingInstancesHaveNoRecord) {
  h_.Hosts(1);
  // 2 instances but only 1 host with room for... every instance fits; make one pending by size.
  ASSERT_TRUE(h_.Apply("name: big\ninstances: 2\nupdate_domains: 1\nflavor:\n  vcpus: 40\n"
                       "  memory_mib: 256\nnetwork:\n  subnet: 10.20.0.0/24\nversions:\n"
                       "  v1: {}\nversion: v1\n")
                  .ok());
  ASSERT_TRUE(wiring_->Flush().ok());
  int with_record = 0;
  for (const auto& [name, inst] : h_.controller().instances()) {
    bool placed = inst.state != InstanceState::kPending;
    EXPECT_EQ(Zone(name + ".lab.example.").size(), placed ? 1u : 0u) << name;
    with_record += placed;
  }
  EXPECT_EQ(with_record, 1);
  EXPECT_THAT(Zone("big.lab.example."), SizeIs(1));
}

TEST(NewDnsWiringTest, OffWithoutServerAndErrorsNameTheField) {
  testing::FakeClock clock;
  DnsConfig off;
  auto none = NewDnsWiring(off, clock, nullptr);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_FALSE(none->has_value());

  DnsConfig bad;
  bad.server = "127.0.0.1:5353";
  bad.zone = "lab.example.";
  bad.tsig_key_name = "regen-key.";
  bad.tsig_secret_file = "/nonexistent/regen/tsig.key";
  auto err = NewDnsWiring(bad, clock, nullptr);
  ASSERT_FALSE(err.ok());
  EXPECT_THAT(err.status().message(), HasSubstr("/nonexistent/regen/tsig.key"));

  DnsConfig port;
  port.server = "127.0.0.1";
  port.zone = "lab.example.";
  auto err2 = NewDnsWiring(port, clock, nullptr);
  ASSERT_FALSE(err2.ok());
  EXPECT_THAT(err2.status().message(), HasSubstr("dns.server \"127.0.0.1\""));

  DnsConfig plain;
  plain.server = "127.0.0.1:5353";
  plain.zone = "lab.example.";
  auto ok = NewDnsWiring(plain, clock, nullptr);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  ASSERT_TRUE(ok->has_value());
  EXPECT_EQ((*ok)->wiring->zone(), "lab.example.");
}

}  // namespace
}  // namespace regen
