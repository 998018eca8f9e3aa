// Tests of the store rows' JSON codec (controller/store_codec.h) on damaged rows: found by
// tests/fuzz/store_codec_fuzz. A field of the wrong type used to throw nlohmann::json::type_error
// out of the decoder (the controller crash-looped on one bad row); now it is an error naming the
// row, the field and the value.
#include "controller/store_codec.h"

#include <gtest/gtest.h>

namespace regen {
namespace {

using nlohmann::json;

std::string ErrorOf(const Status& s) { return s.ok() ? "ok" : s.ToString(); }

TEST(StoreCodecTest, HostFieldOfWrongTypeNamesIt) {
  auto h =
      HostFromJson("host-1", json::parse(R"({"address":"192.0.2.1","capacity":{"vcpus":"4"}})"));
  ASSERT_FALSE(h.ok());
  EXPECT_NE(
      ErrorOf(h.status())
          .find(
              "store: host host-1 is corrupt: field capacity.vcpus must be an integer, not \"4\""),
      std::string::npos)
      << ErrorOf(h.status());
  EXPECT_FALSE(HostFromJson("host-1", json::parse(R"({"address":7})")).ok());
  EXPECT_FALSE(HostFromJson("host-1", json::parse(R"({"capacity":[]})")).ok());
  auto not_object = HostFromJson("host-1", json::parse("[1, 2]"));
  ASSERT_FALSE(not_object.ok());
  EXPECT_NE(ErrorOf(not_object.status()).find("host host-1 is corrupt: not a JSON object"),
            std::string::npos)
      << ErrorOf(not_object.status());
}

TEST(StoreCodecTest, InstanceFieldsOfWrongTypeAreRefused) {
  EXPECT_FALSE(InstanceFromJson("web-0", json::parse(R"({"allocation":[1]})")).ok());
  auto ip = InstanceFromJson("web-0", json::parse(R"({"allocation":{"ip":5}})"));
  ASSERT_FALSE(ip.ok());
  EXPECT_NE(ErrorOf(ip.status()).find("field allocation.ip must be a string, not 5"),
            std::string::npos)
      << ErrorOf(ip.status());
  EXPECT_FALSE(InstanceFromJson("web-0", json::parse(R"({"generation":1.5})")).ok());
  // A float far out of int64's range was undefined behaviour in the conversion.
  auto i = InstanceFromJson("web-0", json::parse(R"({"index":1e300})"));
  ASSERT_FALSE(i.ok());
  EXPECT_NE(ErrorOf(i.status())
                .find("instance web-0 is corrupt: field index must be an integer, not 1e+300"),
            std::string::npos)
      << ErrorOf(i.status());
  EXPECT_FALSE(InstanceFromJson("web-0", json::parse(R"({"index":18446744073709551615})")).ok());
}

TEST(StoreCodecTest, EventServiceAndOperationRowsOfWrongTypeAreRefused) {
  EXPECT_FALSE(EventFromJson(3, json::parse(R"({"kind":"service","unix_ms":"x"})")).ok());
  EXPECT_FALSE(EventFromJson(3, json::parse(R"({"kind":["service"]})")).ok());
  EXPECT_FALSE(ServiceFromJson("web", json::parse(R"({"spec_yaml":{}})")).ok());
  EXPECT_FALSE(OperationFromJson("op-1", json::parse(R"({"state":true})")).ok());
}

TEST(StoreCodecTest, GoodAndSparseRowsStillDecode) {
  HostRecord h;
  h.name = "host-1";
  h.address = "192.0.2.1";
  h.capacity = {64, 65536, 100, 10000};
  auto back = HostFromJson("host-1", HostToJson(h));
  ASSERT_TRUE(back.ok()) << ErrorOf(back.status());
  EXPECT_EQ(back->capacity.memory_mib, 65536);
  // Absent and null fields take their defaults.
  auto sparse = InstanceFromJson("web-0", json::parse(R"({"service":"web","reason":null})"));
  ASSERT_TRUE(sparse.ok()) << ErrorOf(sparse.status());
  EXPECT_EQ(sparse->service, "web");
  EXPECT_EQ(sparse->state, InstanceState::kPending);
  auto op = OperationFromJson("op-1", json::object());
  ASSERT_TRUE(op.ok());
  EXPECT_EQ(op->state, "running");
}

}  // namespace
}  // namespace regen
