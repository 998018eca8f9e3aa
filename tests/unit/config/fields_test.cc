// The shared field readers of config/fields.h: durations, DNS names, host:port, and the error
// format of FieldMap (unknown keys, missing fields, wrong kinds).
#include "config/fields.h"

#include <gtest/gtest.h>

namespace regen {
namespace {

using std::chrono::milliseconds;

TEST(FieldsTest, ParseDuration) {
  EXPECT_EQ(ParseDuration("500ms"), milliseconds(500));
  EXPECT_EQ(ParseDuration("2s"), milliseconds(2000));
  EXPECT_EQ(ParseDuration("1m"), milliseconds(60000));
  EXPECT_EQ(ParseDuration("1h"), milliseconds(3600000));
  EXPECT_EQ(ParseDuration("0ms"), milliseconds(0));
  for (const char* bad : {"", "5", "s", "1.5s", "-1s", "1 s", "1sec", "1S", "1d", "1000000000000s",
                          "ms", " 1s", "1s "}) {
    EXPECT_FALSE(ParseDuration(bad).has_value()) << bad;
  }
}

TEST(FieldsTest, FormatDuration) {
  EXPECT_EQ(FormatDuration(milliseconds(0)), "0ms");
  EXPECT_EQ(FormatDuration(milliseconds(2500)), "2500ms");
  EXPECT_EQ(FormatDuration(milliseconds(2000)), "2s");
  EXPECT_EQ(FormatDuration(milliseconds(90000)), "90s");
  EXPECT_EQ(FormatDuration(milliseconds(120000)), "2m");
  EXPECT_EQ(FormatDuration(milliseconds(3600000)), "1h");
}

TEST(FieldsTest, AbsolutePaths) {
  EXPECT_TRUE(IsAbsolutePath("/"));
  EXPECT_TRUE(IsAbsolutePath("/var/lib/regen"));
  EXPECT_FALSE(IsAbsolutePath(""));
  EXPECT_FALSE(IsAbsolutePath("var"));
  EXPECT_FALSE(IsAbsolutePath("/a\nb"));
}

Result<FieldMap> Open(const std::string& file, const YamlNode& root) {
  return FieldMap::Root(file, root, "test file", {"alpha", "beta", "gamma"});
}

TEST(FieldsTest, MissingColonGetsAHint) {
  const std::string file = "f.yaml";
  Result<YamlNode> root = ParseYaml("alpha: 1\nbeta 2\n", file);
  ASSERT_TRUE(root.ok()) << root.status().ToString();
  Result<FieldMap> map = Open(file, *root);
  ASSERT_FALSE(map.ok());
  EXPECT_EQ(map.status().message(),
            "f.yaml:2:1: \"beta 2\": unknown key \"beta 2\" (did you mean \"beta: 2\"? A key "
            "ends with ':' and a space; allowed keys at the top level: alpha, beta, gamma)");
}

TEST(FieldsTest, KindErrorsAndMissingFields) {
  const std::string file = "f.yaml";
  Result<YamlNode> root = ParseYaml("alpha: [1]\nbeta: {x: 1}\n", file);
  ASSERT_TRUE(root.ok()) << root.status().ToString();
  Result<FieldMap> map = Open(file, *root);
  ASSERT_TRUE(map.ok()) << map.status().ToString();
  std::string s;
  EXPECT_EQ(map->GetString("alpha", &s).message(), "f.yaml:1:8: alpha: must be text, got a list");
  int64_t n = 0;
  EXPECT_EQ(map->GetInt("beta", 1, 5, &n).message(),
            "f.yaml:2:7: beta: must be an integer between 1 and 5, got a map");
  EXPECT_EQ(map->GetInt("gamma", 1, 5, &n, Need::kRequired).message(),
            "f.yaml:1:1: gamma: required field is missing (add \"gamma: ...\" at the top level "
            "of the file)");
  std::optional<FieldMap> beta;
  EXPECT_EQ(map->GetMap("beta", {"y"}, &beta).message(),
            "f.yaml:2:8: beta.x: unknown key \"x\" (allowed keys in beta: y)");
  EXPECT_TRUE(map->GetString("gamma", &s).ok());  // absent and optional
  EXPECT_EQ(s, "");
}

}  // namespace
}  // namespace regen
