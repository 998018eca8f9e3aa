// The controller's bounds on streams (controller/stream_guards.h) on a real ControllerServer over
// SQLite and real gRPC: an agent stream that never says hello is closed after hello_timeout;
// streams waiting for their hello and `events --follow` streams are limited in number (the next
// gets RESOURCE_EXHAUSTED, a slot given back is usable again); a real hello still connects. An
// exception thrown by a step on the main loop (a bug) is caught at that boundary: the caller gets
// INTERNAL and the server goes on serving.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <memory>
#include <stdexcept>
#include <vector>

#include "common/proto/regen.grpc.pb.h"
#include "controller/server.h"
#include "controller/store.h"
#include "tests/fakes/controller_harness.h"
#include "tests/fakes/test_util.h"

namespace regen::testing {
namespace {

using std::chrono::milliseconds;

class ServerLimitsTest : public ::testing::Test {
 protected:
  void Start(const StreamLimits& limits) {
    auto store = OpenSqliteStore(dir_.File("controller.db"));
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    ControllerConfig cc;
    cc.listen_address = "127.0.0.1:0";
    cc.insecure = true;
    cc.heartbeat_interval = milliseconds(500);
    cc.fencing_lease = milliseconds(30000);
    cc.host_down_after = milliseconds(60000);
    server_ = std::make_unique<ControllerServer>(cc, *store_, clock_);
    server_->SetStreamLimits(limits);
    ASSERT_TRUE(server_->Start().ok());
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                                   grpc::InsecureChannelCredentials());
    agents_ = v1::AgentService::NewStub(channel_);
    admin_ = v1::AdminService::NewStub(channel_);
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  // An open agent stream that has sent nothing.
  struct Stream {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::ControllerMessage>> rw;
  };
  std::unique_ptr<Stream> OpenAgentStream(milliseconds deadline = milliseconds(20000)) {
    auto s = std::make_unique<Stream>();
    s->context.set_deadline(std::chrono::system_clock::now() + deadline);
    s->rw = agents_->Connect(&s->context);
    return s;
  }
  struct Follower {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReader<v1::Event>> reader;
  };
  std::unique_ptr<Follower> Follow(milliseconds deadline = milliseconds(20000)) {
    auto f = std::make_unique<Follower>();
    f->context.set_deadline(std::chrono::system_clock::now() + deadline);
    v1::EventsRequest req;
    req.set_follow(true);
    f->reader = admin_->Events(&f->context, req);
    return f;
  }

  TempDir dir_;
  RealClock clock_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<ControllerServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::AgentService::Stub> agents_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
};

TEST_F(ServerLimitsTest, AStreamWithoutHelloIsClosedAfterTheTimeout) {
  StreamLimits limits;
  limits.hello_timeout = milliseconds(300);
  Start(limits);
  auto s = OpenAgentStream();
  v1::ControllerMessage msg;
  EXPECT_FALSE(s->rw->Read(&msg));  // the server ends it long before the client's 20 s deadline
  grpc::Status st = s->rw->Finish();
  // The handler waits in Read: the server can only cancel the call (its log says why).
  EXPECT_EQ(st.error_code(), grpc::StatusCode::CANCELLED) << st.error_message();
  EXPECT_NE(st.error_message().find("server side"), std::string::npos) << st.error_message();

  // A real agent's hello is answered (the timer does not touch a stream that spoke in time).
  auto ok = OpenAgentStream();
  v1::AgentMessage hello;
  *hello.mutable_hello() = TestHello("host-1");
  ASSERT_TRUE(ok->rw->Write(hello));
  ASSERT_TRUE(ok->rw->Read(&msg));
  EXPECT_FALSE(msg.has_refusal()) << msg.refusal().reason();
  ok->context.TryCancel();
}

TEST_F(ServerLimitsTest, StreamsWaitingForTheirHelloAreBounded) {
  StreamLimits limits;
  limits.hello_timeout = milliseconds(30000);
  limits.max_pending_hellos = 2;
  Start(limits);
  std::vector<std::unique_ptr<Stream>> held;
  held.push_back(OpenAgentStream());
  held.push_back(OpenAgentStream());
  grpc::Status third;
  // The held streams reach the server in their own time: probe (each probe an accepted stream
  // until they have, ended by its own 1 s deadline) until one is refused.
  bool exhausted = WaitFor(
      [&] {
        auto s = OpenAgentStream(milliseconds(1000));
        v1::ControllerMessage msg;
        if (s->rw->Read(&msg)) return false;
        third = s->rw->Finish();
        return third.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED;
      },
      milliseconds(10000), milliseconds(50));
  ASSERT_TRUE(exhausted) << third.error_code() << " " << third.error_message();
  EXPECT_NE(third.error_message().find("without a hello"), std::string::npos);
}

TEST_F(ServerLimitsTest, EventFollowersAreBoundedAndSlotsComeBack) {
  StreamLimits limits;
  limits.max_event_followers = 2;
  Start(limits);
  auto a = Follow();
  auto b = Follow();
  grpc::Status st;
  bool exhausted = WaitFor(
      [&] {
        auto c = Follow(milliseconds(1000));
        v1::Event e;
        while (c->reader->Read(&e)) {
        }
        st = c->reader->Finish();
        return st.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED;
      },
      milliseconds(10000), milliseconds(50));
  ASSERT_TRUE(exhausted) << st.error_code() << " " << st.error_message();
  EXPECT_NE(st.error_message().find("too many event streams"), std::string::npos);

  // One follower leaves: a new one is let in (it blocks, following: cancelled by its deadline).
  a->context.TryCancel();
  (void)a->reader->Finish();
  bool let_in = WaitFor(
      [&] {
        auto c = Follow(milliseconds(1500));
        v1::Event e;
        while (c->reader->Read(&e)) {
        }
        return c->reader->Finish().error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
      },
      milliseconds(10000), milliseconds(50));
  EXPECT_TRUE(let_in);
  b->context.TryCancel();
}

TEST_F(ServerLimitsTest, AnExceptionInAStepIsCaughtAndTheServerGoesOn) {
  Start(StreamLimits{});
  server_->Post([] { throw std::runtime_error("boom in a posted step"); });
  Status failed =
      server_->Call<Status>([]() -> Status { throw std::out_of_range("boom in a call"); });
  EXPECT_EQ(failed.code(), Code::kInternal);
  EXPECT_NE(failed.message().find("boom in a call"), std::string::npos) << failed.ToString();
  EXPECT_THROW(server_->Call<int>([]() -> int { throw std::runtime_error("boom"); }),
               std::runtime_error);
  // The main loop and the RPCs go on.
  EXPECT_EQ(server_->Call<int>([] { return 7; }), 7);
  grpc::ClientContext context;
  v1::ListServicesRequest req;
  v1::ListServicesResponse resp;
  grpc::Status st = admin_->ListServices(&context, req, &resp);
  EXPECT_TRUE(st.ok()) << st.error_message();
}

}  // namespace
}  // namespace regen::testing
