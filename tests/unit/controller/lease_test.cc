// Leases in embedded mode (controller/lease_keeper.h) and maintenance (controller/
// maintenance_ops.h): acks from the lease keeper only after the desired set, down hosts get no
// lease before a new desired set, fenced instances are events with generation + 1, and a
// maintenance holds agents and heals nothing, across a restart too.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "tests/fakes/controller_harness.h"

namespace regen::testing {
namespace {

using std::chrono::milliseconds;

class LeaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    h_.Hosts(3);
    ASSERT_TRUE(h_.Apply(WebSpecYaml(4)).ok());
    h_.AllRunning();
  }
  // A heartbeat as the server's gRPC thread hands it to the lease keeper.
  void Beat(const std::string& host, uint64_t seq, int64_t hold_remaining_ms = 0,
            uint64_t acked_through = 0) {
    v1::Heartbeat hb;
    hb.set_host(host);
    hb.set_sequence(seq);
    hb.set_hold_remaining_ms(hold_remaining_ms);
    hb.set_acked_through(acked_through);
    h_.controller().leases().OnHeartbeat(host, &h_.Sink(host), hb);
  }
  // Every host but `silent` beats, time passes, the controller ticks.
  void Step(milliseconds d, const std::string& silent = "") {
    h_.clock().Advance(d);
    for (const char* host : {"host-1", "host-2", "host-3"}) {
      if (host != silent) Beat(host, ++seq_);
    }
    h_.controller().Tick();
  }
  static const v1::HeartbeatAck* LastAck(const MessageSink& sink) {
    for (auto it = sink.messages.rbegin(); it != sink.messages.rend(); ++it) {
      if (it->has_heartbeat_ack()) return &it->heartbeat_ack();
    }
    return nullptr;
  }
  std::string HostOf(const std::string& instance) { return h_.Inst(instance).allocation.host; }
  v1::MaintenanceStartRequest Maintenance(int64_t ms) {
    v1::MaintenanceStartRequest r;
    r.set_duration_ms(ms);
    r.set_reason("controller reboot");
    return r;
  }

  ControllerHarness h_;
  uint64_t seq_ = 0;
};

TEST_F(LeaseTest, AHeartbeatIsAckedFromTheKeeperAfterTheDesiredSetAndOnlyOnItsSession) {
  // An unknown host and a session that is not the host's: no ack.
  MessageSink stranger;
  v1::Heartbeat hb;
  hb.set_host("host-9");
  hb.set_sequence(1);
  h_.controller().leases().OnHeartbeat("host-9", &stranger, hb);
  hb.set_host("host-1");
  h_.controller().leases().OnHeartbeat("host-1", &stranger, hb);
  EXPECT_TRUE(stranger.messages.empty());

  // A new host: its desired set comes before the first ack on its stream.
  ASSERT_TRUE(h_.Hello("host-4").ok());
  Beat("host-4", 7);
  const auto& msgs = h_.Sink("host-4").messages;
  ASSERT_FALSE(msgs.empty());
  EXPECT_TRUE(msgs.back().has_heartbeat_ack());
  EXPECT_EQ(msgs.back().heartbeat_ack().sequence(), 7u);
  EXPECT_EQ(msgs.back().heartbeat_ack().fencing_lease_ms(), 2000);
  EXPECT_EQ(msgs.back().heartbeat_ack().host_down_after_ms(), 3000);  // the agent checks it
  EXPECT_EQ(msgs.back().heartbeat_ack().hold_ms(), 0);
  bool desired_first = false;
  for (const auto& m : msgs) {
    if (m.has_heartbeat_ack()) break;
    desired_first = desired_first || (m.has_action() && m.action().has_desired());
  }
  EXPECT_TRUE(desired_first);
  // After the session ends nothing more is acked on it.
  size_t before = msgs.size();
  h_.controller().OnDisconnect("host-4", &h_.Sink("host-4"));
  Beat("host-4", 8);
  EXPECT_EQ(h_.Sink("host-4").messages.size(), before);
}

TEST_F(LeaseTest, ADownHostGetsNoLeaseUntilItWasSentItsNewDesiredSet) {
  const std::string lost = HostOf("web-0");
  for (int i = 0; i < 32; ++i) Step(milliseconds(100), lost);  // 3.2 s > host_down_after
  ASSERT_EQ(h_.controller().HostState(lost), "down");
  EXPECT_NE(HostOf("web-0"), lost);
  // It comes back on the same session: heartbeats are recorded but not acked until the main
  // loop sent the desired set without the healed instances.
  MessageSink& sink = h_.Sink(lost);
  size_t before = sink.messages.size();
  Beat(lost, 100);
  EXPECT_EQ(sink.messages.size(), before) << "acked a down host before its new desired set";
  h_.controller().Tick();
  EXPECT_EQ(h_.controller().HostState(lost), "up");
  ASSERT_GT(sink.messages.size(), before);
  EXPECT_TRUE(sink.messages[before].has_action());
  auto desired = sink.LastDesired();
  ASSERT_TRUE(desired.has_value());
  for (const auto& spec : *desired) EXPECT_NE(spec.name(), "web-0");
  Beat(lost, 101);
  ASSERT_TRUE(sink.messages.back().has_heartbeat_ack());
}

TEST_F(LeaseTest, FencedInstancesAreEventsAndComeBackWithTheNextGeneration) {
  const std::string host = HostOf("web-1");
  const int64_t gen = h_.Inst("web-1").generation;
  h_.controller().OnDisconnect(host, &h_.Sink(host));
  v1::Hello hello = TestHello(host);
  v1::FencedInstance* f = hello.add_fenced();
  f->set_instance("web-1");
  f->set_generation(gen);
  f->set_reason("no lease renewal for 2000 ms");
  f = hello.add_fenced();  // an old generation: only the event
  f->set_instance("web-1");
  f->set_generation(gen - 1);
  MessageSink again;
  ASSERT_TRUE(h_.controller().OnHello(hello, &again).ok());
  EXPECT_EQ(h_.Inst("web-1").generation, gen + 1);
  EXPECT_EQ(h_.Inst("web-1").allocation.host, host);
  auto fenced = h_.EventsOfKind("fenced");
  ASSERT_EQ(fenced.size(), 2u);
  EXPECT_EQ(fenced[0].instance, "web-1");
  EXPECT_NE(fenced[0].message.find("no lease renewal for 2000 ms"), std::string::npos);
  EXPECT_NE(fenced[0].message.find("generation " + std::to_string(gen + 1)), std::string::npos);
  auto desired = again.LastDesired();
  ASSERT_TRUE(desired.has_value());
  bool found = false;
  for (const auto& spec : *desired) {
    if (spec.name() == "web-1") found = spec.generation() == gen + 1;
  }
  EXPECT_TRUE(found) << "web-1 generation " << gen + 1 << " not in " << host << "'s desired set";
}

TEST_F(LeaseTest, MaintenanceHoldsAgentsAndHealsNothingUntilItEnds) {
  auto bad = h_.controller().MaintenanceStart(Maintenance(500));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("got 500 ms"), std::string::npos);
  bad = h_.controller().MaintenanceStart(Maintenance(5 * 3600 * 1000));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("4h"), std::string::npos) << bad.status().message();
  EXPECT_TRUE(h_.EventsOfKind("maintenance").empty());

  auto started = h_.controller().MaintenanceStart(Maintenance(60000));
  ASSERT_TRUE(started.ok()) << started.status().ToString();
  EXPECT_TRUE(started->active());
  EXPECT_EQ(h_.EventsOfKind("maintenance").size(), 1u);
  EXPECT_TRUE(h_.controller().ListHosts().maintenance().active());

  Beat("host-1", 1);
  const v1::HeartbeatAck* ack = LastAck(h_.Sink("host-1"));
  ASSERT_NE(ack, nullptr);
  EXPECT_EQ(ack->hold_ms(), 60000);

  // A crash is recorded, not healed; a host silent for long is not declared down.
  const std::string crashed_on = HostOf("web-2");
  const int64_t gen = h_.Inst("web-2").generation;
  h_.Crash("web-2");
  EXPECT_EQ(h_.Inst("web-2").state, InstanceState::kFailed);
  const std::string silent = HostOf("web-0") == crashed_on ? HostOf("web-3") : HostOf("web-0");
  for (int i = 0; i < 100; ++i) Step(milliseconds(100), silent);  // 10 s of silence
  EXPECT_EQ(h_.controller().HostState(silent), "suspect");
  EXPECT_EQ(h_.Inst("web-2").state, InstanceState::kFailed);
  EXPECT_EQ(h_.Inst("web-2").generation, gen);

  // A restart in the middle: still running, still granting holds, still healing nothing.
  h_.Restart();
  h_.Hosts(3);
  EXPECT_TRUE(h_.controller().MaintenanceStatusGet().active());
  Beat("host-2", 1);
  ack = LastAck(h_.Sink("host-2"));
  ASSERT_NE(ack, nullptr);
  EXPECT_GT(ack->hold_ms(), 40000);
  h_.controller().Tick();
  EXPECT_EQ(h_.Inst("web-2").state, InstanceState::kFailed);

  // The end: the crashed instance is healed at once; acks grant no hold any more.
  ASSERT_TRUE(h_.controller().MaintenanceEnd({}).ok());
  EXPECT_EQ(h_.EventsOfKind("maintenance").size(), 2u);
  EXPECT_EQ(h_.Inst("web-2").state, InstanceState::kCreating);
  EXPECT_EQ(h_.Inst("web-2").generation, gen + 1);
  Beat("host-2", 2);
  EXPECT_EQ(LastAck(h_.Sink("host-2"))->hold_ms(), 0);
  EXPECT_FALSE(h_.controller().MaintenanceEnd({}).ok());
}

TEST_F(LeaseTest, HoldsGrantedBeforeAnEarlyEndDelayHostDownUntilReleased) {
  ASSERT_TRUE(h_.controller().MaintenanceStart(Maintenance(20000)).ok());
  for (const char* host : {"host-1", "host-2", "host-3"}) Beat(host, ++seq_);
  ASSERT_TRUE(h_.controller().MaintenanceEnd({}).ok());
  // host-1 goes silent holding its 20 s hold; host-2 confirms it let go, then goes silent.
  Beat("host-2", seq_ + 1, /*hold_remaining_ms=*/0, /*acked_through=*/seq_ + 1);
  for (int i = 0; i < 50; ++i) {
    h_.clock().Advance(milliseconds(100));
    Beat("host-3", ++seq_ + 100);
    h_.controller().Tick();
  }
  // 5 s: host-2 (released) is down; host-1 may still hold its domains: only suspect.
  EXPECT_EQ(h_.controller().HostState("host-2"), "down");
  EXPECT_EQ(h_.controller().HostState("host-1"), "suspect");
  for (int i = 0; i < 185; ++i) {  // to 23.5 s: past the hold (20 s) + host_down_after (3 s)
    h_.clock().Advance(milliseconds(100));
    Beat("host-3", ++seq_ + 100);
    h_.controller().Tick();
  }
  EXPECT_EQ(h_.controller().HostState("host-1"), "down");
}

}  // namespace
}  // namespace regen::testing
