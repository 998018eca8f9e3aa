#include "common/text.h"

#include <gtest/gtest.h>

#include <string>

namespace regen {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

TEST(TextTest, ValidTextIsKept) {
  for (std::string s : {std::string(""), std::string("plain ascii"), std::string("h\xC3\xA9llo"),
                        std::string("\xE2\x82\xAC 10"), std::string("\xF0\x9F\x98\x80"),
                        std::string("\xF4\x8F\xBF\xBF")}) {
    EXPECT_EQ(SanitizeText(s), s);
    EXPECT_TRUE(IsValidUtf8(s));
  }
}

TEST(TextTest, InvalidSequencesBecomeReplacementCharacters) {
  // The guest answer: \xff\xfe are never UTF-8, \xc3 is not followed by a continuation.
  EXPECT_EQ(SanitizeText("\xff\xfe\xc3\x28 garbage"), kFffd + kFffd + kFffd + "( garbage");
  EXPECT_EQ(SanitizeText("a\x80" "b"), "a" + kFffd + "b");        // stray continuation byte
  EXPECT_EQ(SanitizeText("a\xE2\x82"), "a" + kFffd + kFffd);       // truncated sequence
  EXPECT_EQ(SanitizeText("\xF5\x80\x80\x80"), kFffd + kFffd + kFffd + kFffd);  // past U+10FFFF
  EXPECT_EQ(SanitizeText("\xF4\x90\x80\x80"), kFffd + kFffd + kFffd + kFffd);  // U+110000
  for (std::string s : {"\xff", "\xc3\x28", "\xE2\x82", "\xF5\x80\x80\x80"}) {
    EXPECT_FALSE(IsValidUtf8(s));
    EXPECT_TRUE(IsValidUtf8(SanitizeText(s)));
  }
}

TEST(TextTest, OverlongEncodingsAndSurrogatesAreRefused) {
  // "/" as two, three and four bytes; NUL as two bytes.
  for (std::string s : {"\xC0\xAF", "\xE0\x80\xAF", "\xF0\x80\x80\xAF", "\xC0\x80", "\xC1\xBF"}) {
    EXPECT_FALSE(IsValidUtf8(s)) << s;
    std::string out = SanitizeText(s);
    EXPECT_EQ(out.find('/'), std::string::npos);
    EXPECT_TRUE(IsValidUtf8(out));
    EXPECT_EQ(out, [&] {
      std::string r;
      for (size_t i = 0; i < s.size(); ++i) r += kFffd;
      return r;
    }());
  }
  // U+D800 and U+DFFF (UTF-16 surrogates, CESU-8 style).
  for (std::string s : {"\xED\xA0\x80", "\xED\xBF\xBF"}) {
    EXPECT_FALSE(IsValidUtf8(s));
    EXPECT_EQ(SanitizeText(s), kFffd + kFffd + kFffd);
  }
  EXPECT_TRUE(IsValidUtf8("\xED\x9F\xBF"));  // U+D7FF, just below
}

TEST(TextTest, ControlCharactersAreEscaped) {
  EXPECT_EQ(SanitizeText("a\r\nb\tc"), "a\\r\\nb\\tc");
  EXPECT_EQ(SanitizeText(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(SanitizeText("\x1b[31mred\x7f"), "\\x1b[31mred\\x7f");
  EXPECT_EQ(SanitizeText("c1 \xC2\x85 x"), "c1 \\x85 x");  // NEL, a C1 control
  EXPECT_EQ(SanitizeText("\xC2\xA0"), "\xC2\xA0");         // no-break space is kept
}

TEST(TextTest, TruncatesOnACharacterBoundaryWithAMarker) {
  EXPECT_EQ(SanitizeText("0123456789", 10), "0123456789");  // fits: untouched
  EXPECT_EQ(SanitizeText("0123456789a", 10), "0123456...");
  // "é" is two bytes: a cut in its middle drops it whole.
  std::string accents = "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9";  // 8 bytes
  std::string out = SanitizeText(accents, 6);
  EXPECT_EQ(out, "\xC3\xA9...");
  EXPECT_TRUE(IsValidUtf8(out));
  out = SanitizeText(accents, 7);
  EXPECT_EQ(out, "\xC3\xA9\xC3\xA9...");
  // A four-byte character cut at every length.
  std::string emoji = "ab\xF0\x9F\x98\x80\xF0\x9F\x98\x80";
  for (size_t max = 0; max <= emoji.size() + 1; ++max) {
    std::string s = SanitizeText(emoji, max);
    EXPECT_LE(s.size(), max) << max;
    EXPECT_TRUE(IsValidUtf8(s)) << max;
  }
  // An escape is never cut in half either.
  EXPECT_EQ(SanitizeText("ab\n\n\n\n", 8), "ab\\n...");
}

TEST(TextTest, HugeInputIsBoundedCheaply) {
  std::string huge(50 << 20, '\xff');
  std::string out = SanitizeText(huge, 100);
  EXPECT_LE(out.size(), 100u);
  EXPECT_TRUE(IsValidUtf8(out));
  EXPECT_EQ(out.substr(out.size() - 3), "...");
}

}  // namespace
}  // namespace regen
