#include "common/text.h"

#include <algorithm>
#include <cstdint>

namespace regen {

namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
constexpr std::string_view kCut = "...";

// The length of the valid UTF-8 sequence at text[i], or 0 when none starts there.
size_t ValidSequenceAt(std::string_view text, size_t i) {
  const auto b0 = static_cast<uint8_t>(text[i]);
  if (b0 < 0x80) return 1;
  size_t len = 0;
  uint32_t cp = 0;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
    cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    cp = b0 & 0x0F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    cp = b0 & 0x07;
  } else {
    return 0;  // a continuation byte, C0/C1 (overlong two-byte forms), F5..FF
  }
  if (i + len > text.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    const auto b = static_cast<uint8_t>(text[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return 0;  // overlong, surrogate
  if (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) return 0;
  return len;
}

// One character's safe form: control characters escaped, C1 controls (U+0080..U+009F) too.
std::string SafeForm(std::string_view seq) {
  const auto b0 = static_cast<uint8_t>(seq[0]);
  uint32_t c1 = 0;
  if (seq.size() == 2 && b0 == 0xC2) c1 = static_cast<uint8_t>(seq[1]);
  if (seq.size() == 1 && (b0 < 0x20 || b0 == 0x7F)) {
    if (b0 == '\t') return "\\t";
    if (b0 == '\n') return "\\n";
    if (b0 == '\r') return "\\r";
  } else if (!(c1 >= 0x80 && c1 <= 0x9F)) {
    return std::string(seq);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  const uint32_t code = seq.size() == 1 ? b0 : c1;
  return std::string{'\\', 'x', kHex[code >> 4], kHex[code & 0xF]};
}

}  // namespace

bool IsValidUtf8(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    size_t len = ValidSequenceAt(text, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

std::string SanitizeText(std::string_view text, size_t max_bytes) {
  const size_t room = max_bytes >= kCut.size() ? max_bytes - kCut.size() : max_bytes;
  std::string out;
  out.reserve(std::min(text.size(), max_bytes) + 8);
  size_t cut_at = 0;  // the longest prefix of `out`, on a character boundary, within `room`
  for (size_t i = 0; i < text.size();) {
    size_t len = ValidSequenceAt(text, i);
    if (len == 0) {
      out += kReplacement;
      ++i;
    } else {
      out += SafeForm(text.substr(i, len));
      i += len;
    }
    if (out.size() <= room) cut_at = out.size();
    if (out.size() > max_bytes) {
      out.resize(cut_at);
      if (max_bytes >= kCut.size()) out += kCut;
      return out;
    }
  }
  return out;
}

}  // namespace regen
