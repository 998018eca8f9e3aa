#include "dns/tsig_key.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/fakes/test_util.h"

namespace regen::dns {
namespace {

using ::testing::HasSubstr;

const std::string kSecret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==";

TEST(TsigKeyTest, ReadsKeymgrOutput) {
  std::string text = "# hmac-sha256:regen-key.:" + kSecret +
                     "\n"
                     "key:\n"
                     "  - id: regen-key.\n"
                     "    algorithm: hmac-sha256\n"
                     "    secret: " +
                     kSecret + "\n";
  auto key = ParseTsigKeyFile(text, "/etc/regen/tsig.key", "regen-key.", "hmac-sha256");
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(*key, (TsigKey{"regen-key.", "hmac-sha256", kSecret}));
}

TEST(TsigKeyTest, PicksTheNamedKeyOutOfAKnotConfig) {
  std::string text =
      "server:\n"
      "  listen: 127.0.0.1@53\n"
      "acl:\n"
      "  - id: regen-key.\n"  // an ACL with the key's name is not a key
      "    key: regen-key.\n"
      "key:\n"
      "  - id: other\n"
      "    algorithm: hmac-sha512\n"
      "    secret: b3RoZXI=\n"
      "  - id: \"Regen-Key\"\n"
      "    algorithm: hmac-sha256\n"
      "    secret: \"" +
      kSecret + "\"\n";
  auto key = ParseTsigKeyFile(text, "knot.conf", "regen-key", "hmac-sha256");
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(key->name, "regen-key.");
  EXPECT_EQ(key->secret, kSecret);
}

TEST(TsigKeyTest, ReadsBindTsigKeygenOutput) {
  std::string text =
      "key \"regen-key\" {\n\talgorithm hmac-sha512;\n\tsecret \"" + kSecret + "\";\n};\n";
  auto key = ParseTsigKeyFile(text, "tsig.key", "regen-key.", "hmac-sha512");
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(*key, (TsigKey{"regen-key.", "hmac-sha512", kSecret}));
}

TEST(TsigKeyTest, ReadsABareSecret) {
  auto key = ParseTsigKeyFile("\n" + kSecret + "\n", "tsig.secret", "regen-key", "hmac-sha1");
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(*key, (TsigKey{"regen-key.", "hmac-sha1", kSecret}));
}

TEST(TsigKeyTest, ErrorsNameTheFileAndTheProblem) {
  auto empty = ParseTsigKeyFile("# nothing\n", "/etc/regen/tsig.secret", "k.", "hmac-sha256");
  ASSERT_FALSE(empty.ok());
  EXPECT_THAT(empty.status().message(), HasSubstr("/etc/regen/tsig.secret is empty"));

  auto not_base64 = ParseTsigKeyFile("not*base64\n", "s.key", "k.", "hmac-sha256");
  ASSERT_FALSE(not_base64.ok());
  EXPECT_THAT(not_base64.status().message(), HasSubstr("s.key"));

  std::string knot = "key:\n  - id: other.\n    algorithm: hmac-sha256\n    secret: " + kSecret;
  auto wrong_name = ParseTsigKeyFile(knot, "s.key", "regen-key.", "hmac-sha256");
  ASSERT_FALSE(wrong_name.ok());
  EXPECT_THAT(wrong_name.status().message(), HasSubstr("no key named regen-key."));
  EXPECT_THAT(wrong_name.status().message(), HasSubstr("other."));

  auto wrong_algorithm = ParseTsigKeyFile(knot, "s.key", "other.", "hmac-sha512");
  ASSERT_FALSE(wrong_algorithm.ok());
  EXPECT_THAT(wrong_algorithm.status().message(), HasSubstr("s.key:2"));
  EXPECT_THAT(wrong_algorithm.status().message(), HasSubstr("hmac-sha512"));

  auto unsupported = ParseTsigKeyFile(kSecret, "s.key", "k.", "hmac-md5");
  EXPECT_EQ(unsupported.status().code(), Code::kInvalidArgument);
}

TEST(TsigKeyTest, LoadReadsTheFileAndReportsAMissingOne) {
  regen::testing::TempDir dir;
  regen::testing::WriteFileOrDie(dir.File("tsig.secret"), kSecret + "\n");
  auto key = LoadTsigKey(dir.File("tsig.secret"), "regen-key", "hmac-sha256");
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(key->secret, kSecret);

  auto missing = LoadTsigKey(dir.File("absent"), "regen-key", "hmac-sha256");
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr(dir.File("absent")));
}

}  // namespace
}  // namespace regen::dns
