#include <gtest/gtest.h>

#include "common/proto/regen.pb.h"

namespace regen {
namespace {

TEST(ProtoTest, AgentMessageRoundTrip) {
  v1::AgentMessage msg;
  auto* hello = msg.mutable_hello();
  hello->set_host("host-1");
  hello->mutable_capacity()->set_vcpus(8);
  auto* d = hello->add_domains();
  d->set_name("web-0");
  d->set_state(v1::DOMAIN_STATE_CRASHED);
  std::string wire;
  ASSERT_TRUE(msg.SerializeToString(&wire));
  v1::AgentMessage back;
  ASSERT_TRUE(back.ParseFromString(wire));
  ASSERT_EQ(back.body_case(), v1::AgentMessage::kHello);
  EXPECT_EQ(back.hello().host(), "host-1");
  EXPECT_EQ(back.hello().capacity().vcpus(), 8);
  EXPECT_EQ(back.hello().domains(0).state(), v1::DOMAIN_STATE_CRASHED);
}

TEST(ProtoTest, ActionCarriesOperationId) {
  v1::ControllerMessage msg;
  msg.mutable_action()->set_operation_id("op-1");
  msg.mutable_action()->mutable_create()->mutable_spec()->set_name("web-1");
  v1::ControllerMessage back;
  ASSERT_TRUE(back.ParseFromString(msg.SerializeAsString()));
  EXPECT_EQ(back.action().operation_id(), "op-1");
  EXPECT_EQ(back.action().create().spec().name(), "web-1");
}

}  // namespace
}  // namespace regen
