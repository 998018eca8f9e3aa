// Text from outside the process (a guest's HTTP answer, libvirt messages, command output, strings
// an agent sent) made safe to log, put in a proto3 string or a JSON document: valid UTF-8,
// no control characters, bounded in length. Pure functions; any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace regen {

// The default bound for one piece of outside text in a report or a message.
inline constexpr size_t kMaxOutsideText = 1024;

// `text` as valid UTF-8 of at most `max_bytes` bytes: each invalid sequence (a stray
// continuation byte, a truncated sequence, an overlong encoding, a surrogate, a code point past
// U+10FFFF) becomes U+FFFD; control characters (C0 but tab, DEL, C1) become "\xNN" (tab, CR and
// LF "\t", "\r", "\n"); text longer than max_bytes is cut on a character boundary and ends with
// "...". A result never exceeds max_bytes (for max_bytes >= 3; less gives at most max_bytes
// bytes of the text without a marker).
std::string SanitizeText(std::string_view text, size_t max_bytes = kMaxOutsideText);

// True when `text` is valid UTF-8 (no overlong forms, no surrogates, nothing past U+10FFFF).
bool IsValidUtf8(std::string_view text);

}  // namespace regen
