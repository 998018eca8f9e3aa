// The yaml-cpp wrapper: positions, kinds, duplicate keys, aliases and the guards against hostile
// input (deep nesting, alias bombs, NUL bytes, invalid UTF-8).
#include "config/yaml_tree.h"

#include <gtest/gtest.h>

#include <string>

namespace regen {
namespace {

const std::string kFile = "t.yaml";

YamlNode ParseOk(const std::string& text) {
  Result<YamlNode> r = ParseYaml(text, kFile);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : YamlNode();
}

std::string ParseError(const std::string& text) {
  Result<YamlNode> r = ParseYaml(text, kFile);
  EXPECT_FALSE(r.ok()) << "accepted: " << text.substr(0, 200);
  if (r.ok()) return "";
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  return r.status().message();
}

TEST(YamlTreeTest, MapsListsAndScalarsWithOneBasedPositions) {
  YamlNode root = ParseOk("a: 1\nb:\n  - x\n  - 'y'\nc: {d: e}\n");
  ASSERT_TRUE(root.is_map());
  EXPECT_EQ(root.line, 1);
  EXPECT_EQ(root.column, 1);
  ASSERT_EQ(root.entries.size(), 3u);
  EXPECT_EQ(root.entries[0].key.value, "a");
  const YamlNode* a = root.Find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_TRUE(a->is_scalar());
  EXPECT_EQ(a->value, "1");
  EXPECT_FALSE(a->quoted);
  EXPECT_EQ(a->line, 1);
  EXPECT_EQ(a->column, 4);
  const YamlNode* b = root.Find("b");
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(b->is_sequence());
  ASSERT_EQ(b->items.size(), 2u);
  EXPECT_EQ(b->items[1].value, "y");
  EXPECT_TRUE(b->items[1].quoted);
  EXPECT_EQ(b->items[1].line, 4);
  EXPECT_EQ(b->items[1].column, 5);
  const YamlNode* c = root.Find("c");
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->is_map());
  EXPECT_EQ(c->Find("d")->value, "e");
  EXPECT_EQ(c->Find("d")->column, 8);
  EXPECT_EQ(root.Find("zzz"), nullptr);
}

TEST(YamlTreeTest, EmptyValueSitsAtItsKey) {
  YamlNode root = ParseOk("first: 1\nempty:\n\n\nlast: ~\n");
  const YamlNode* empty = root.Find("empty");
  ASSERT_NE(empty, nullptr);
  EXPECT_TRUE(empty->is_null());
  EXPECT_EQ(empty->line, 2);
  EXPECT_EQ(empty->column, 1);
  const YamlNode* last = root.Find("last");
  ASSERT_NE(last, nullptr);
  EXPECT_TRUE(last->is_null());
  EXPECT_EQ(last->line, 5);
  EXPECT_EQ(last->column, 7);
}

TEST(YamlTreeTest, EmptyDocumentsGiveANullRoot) {
  for (const char* text : {"", "\n\n", "# just a comment\n", "---\n", "---\n...\n"}) {
    Result<YamlNode> r = ParseYaml(text, kFile);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE(r->is_null()) << text;
  }
}

TEST(YamlTreeTest, DuplicateKeysAreErrorsNamingBothPlaces) {
  std::string m = ParseError("a: 1\nb:\n  c: 1\n  d: 2\n  c: 3\n");
  EXPECT_EQ(m,
            "t.yaml:5:3: b.c: duplicate key \"c\" (first set at line 3, column 3; each key "
            "may appear only once)");
  m = ParseError("list:\n  - {x: 1, x: 2}\n");
  EXPECT_EQ(
      m.rfind("t.yaml:2:12: list[0].x: duplicate key \"x\" (first set at line 2, column 6", 0), 0u)
      << m;
}

TEST(YamlTreeTest, NonScalarKeysAreErrors) {
  std::string m = ParseError("? [a, b]\n: c\n");
  EXPECT_NE(m.find("map keys must be plain text, got a list"), std::string::npos) << m;
  m = ParseError("~: 1\n");
  EXPECT_NE(m.find("map keys must be plain text, got an empty value"), std::string::npos) << m;
}

TEST(YamlTreeTest, AliasesAreExpanded) {
  YamlNode root = ParseOk("base: &b {x: 1, y: [2, 3]}\ncopy: *b\n");
  const YamlNode* copy = root.Find("copy");
  ASSERT_NE(copy, nullptr);
  ASSERT_TRUE(copy->is_map());
  EXPECT_EQ(copy->Find("x")->value, "1");
  EXPECT_EQ(copy->Find("y")->items.size(), 2u);
  EXPECT_EQ(copy->line, 2);  // the alias's position
  EXPECT_EQ(copy->column, 7);
}

TEST(YamlTreeTest, RecursiveAliasesAreRefused) {
  std::string m = ParseError("a: &x [1, *x]\n");
  EXPECT_NE(m.find("contains it"), std::string::npos) << m;
}

TEST(YamlTreeTest, AliasBombsAreRefused) {
  std::string text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 10; ++i) {
    std::string p = "*a" + std::to_string(i - 1);
    text += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [" + p + ", " + p + ", " + p +
            ", " + p + ", " + p + ", " + p + ", " + p + ", " + p + ", " + p + ", " + p + "]\n";
  }
  std::string m = ParseError(text);
  EXPECT_NE(m.find("aliases expand to more than"), std::string::npos) << m;
}

// Billion laughs by bytes (issue 15, finding 10): few nodes, each a copy of a large scalar. 64 KiB
// aliased 2^12 times is 256 MiB in 4k nodes, under the node limit; refused by bytes.
TEST(YamlTreeTest, AliasBombsOfLargeScalarsAreRefusedByBytes) {
  std::string text = "a0: &a0 \"" + std::string(64 << 10, 'x') + "\"\n";
  for (int i = 1; i <= 12; ++i) {
    std::string p = "*a" + std::to_string(i - 1);
    text += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [" + p + ", " + p + "]\n";
  }
  std::string m = ParseError(text);
  EXPECT_NE(m.find("aliases expand to more than 4194304 bytes"), std::string::npos) << m;
  // A large anchor used a few times is fine.
  ParseOk("a: &a \"" + std::string(64 << 10, 'x') + "\"\nb: [*a, *a, *a]\n");
}

TEST(YamlTreeTest, OversizedDocumentsAreRefused) {
  std::string text = "a: \"" + std::string((4 << 20) + 1, 'x') + "\"\n";
  std::string m = ParseError(text);
  EXPECT_NE(m.find("more than 4194304"), std::string::npos) << m.substr(0, 300);
  EXPECT_EQ(m.rfind("t.yaml:1:1:", 0), 0u) << m.substr(0, 300);
}

TEST(YamlTreeTest, DeepNestingIsRefusedWithoutCrashing) {
  for (const std::string& open : {std::string("["), std::string("{a: "), std::string("- ")}) {
    std::string text;
    for (int i = 0; i < 10000; ++i) text += open;
    std::string m = ParseError(text);
    EXPECT_NE(m.find("nested more than 64 levels"), std::string::npos) << m.substr(0, 300);
    EXPECT_EQ(m.rfind("t.yaml:1:", 0), 0u) << m.substr(0, 300);
  }
  // 64 levels are fine.
  std::string ok = std::string(64, '[') + std::string(64, ']');
  ParseOk(ok);
  ParseError(std::string(65, '[') + std::string(65, ']'));
}

TEST(YamlTreeTest, DeepIndentationIsRefused) {
  std::string text;
  for (int i = 0; i < 300; ++i) text += std::string(i, ' ') + "k:\n";
  std::string m = ParseError(text);
  EXPECT_NE(m.find("nested more than 64 levels"), std::string::npos) << m.substr(0, 300);
}

TEST(YamlTreeTest, SyntaxErrorsCarryThePosition) {
  std::string m = ParseError("a: 1\nb: [1, 2\n");
  EXPECT_EQ(m.rfind("t.yaml:", 0), 0u) << m;
  EXPECT_NE(m.find("YAML syntax error"), std::string::npos) << m;
  m = ParseError("a: b: c\n");
  EXPECT_EQ(m.rfind("t.yaml:1:", 0), 0u) << m;
  m = ParseError("a: 1\n b: 2\n");
  EXPECT_EQ(m.rfind("t.yaml:2:", 0), 0u) << m;
}

// yaml-cpp itself accepts these and reads the rest of the file into the value.
TEST(YamlTreeTest, UnterminatedQuotesAreErrors) {
  std::string m = ParseError("a: \"unterminated\nb: 2\n");
  EXPECT_EQ(m,
            "t.yaml:1:4: a: this quoted value has no closing \" (add it; otherwise the rest of "
            "the file would be read as part of the value)");
  m = ParseError("a: 1\nb: &x 'it''s\n");
  EXPECT_EQ(m.rfind("t.yaml:2:4: b: this quoted value has no closing '", 0), 0u) << m;
  m = ParseError("list:\n  - \"a\\\"\n");
  EXPECT_EQ(m.rfind("t.yaml:2:5: list[0]: this quoted value has no closing", 0), 0u) << m;
  YamlNode ok = ParseOk("a: \"x \\\" y\"\nb: 'it''s'\nc: !!str \"z\"\nd: \"multi\n  line\"\n");
  EXPECT_EQ(ok.Find("a")->value, "x \" y");
  EXPECT_EQ(ok.Find("b")->value, "it's");
  EXPECT_EQ(ok.Find("c")->value, "z");
  EXPECT_EQ(ok.Find("d")->value, "multi line");
  ok = ParseOk(
      "\xef\xbb\xbf"
      "a: \"x\"\nb:\n");
  EXPECT_EQ(ok.Find("a")->value, "x");
  EXPECT_EQ(ok.Find("b")->line, 2);
}

TEST(YamlTreeTest, TabsInIndentationGetAHint) {
  std::string m = ParseError("a:\n\tb: 1\n");
  EXPECT_EQ(m.rfind("t.yaml:2:", 0), 0u) << m;
  EXPECT_NE(m.find("tab"), std::string::npos) << m;
}

TEST(YamlTreeTest, SecondDocumentIsAnError) {
  std::string m = ParseError("a: 1\n---\nb: 2\n");
  EXPECT_EQ(m.rfind("t.yaml:2:1: a second YAML document", 0), 0u) << m;
}

TEST(YamlTreeTest, NulBytesAndInvalidUtf8AreRefused) {
  std::string m = ParseError(std::string("a: 1\nb: x\0y\n", 12));
  EXPECT_EQ(m.rfind("t.yaml:2:5: NUL byte", 0), 0u) << m;
  m = ParseError("a: 1\nb: \"caf\xe9\"\n");
  EXPECT_EQ(m.rfind("t.yaml:2:8: invalid UTF-8 byte \"\\xe9\"", 0), 0u) << m;
  m = ParseError("a: \xed\xa0\x80\n");  // a UTF-16 surrogate encoded in UTF-8
  EXPECT_NE(m.find("invalid UTF-8"), std::string::npos) << m;
  m = ParseError("a: \xc0\xaf\n");  // overlong
  EXPECT_NE(m.find("invalid UTF-8"), std::string::npos) << m;
  YamlNode ok = ParseOk("a: \"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"\n");
  EXPECT_EQ(ok.Find("a")->value, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
}

TEST(YamlTreeTest, Utf8ByteOrderMarkAndCrlfAreAccepted) {
  YamlNode root = ParseOk(
      "\xef\xbb\xbf"
      "a: 1\r\nb: 2\r\n");
  ASSERT_TRUE(root.is_map());
  EXPECT_EQ(root.Find("b")->value, "2");
  EXPECT_EQ(root.Find("b")->line, 2);
}

TEST(YamlTreeTest, PathsQuoteOddKeys) {
  EXPECT_EQ(JoinPath("", "a"), "a");
  EXPECT_EQ(JoinPath("versions", "v1.2"), "versions.v1.2");
  EXPECT_EQ(JoinPath("m", "a b"), "m.\"a b\"");
  EXPECT_EQ(JoinPath("m", ""), "m.\"\"");
  EXPECT_EQ(IndexPath("instances", 3), "instances[3]");
}

}  // namespace
}  // namespace regen
