// Reading back the <regen:instance> metadata element of a domain (ParseDomainMetadata in
// domain_xml.h); writing it is in domain_xml.cc. Pure; any thread.
#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

#include "agent/domain_xml.h"

namespace regen {

namespace {

// --- A tolerant reader for the metadata element -------------------------------------------------
//
// libvirt hands the element back re-serialized: virDomainGetMetadata drops the prefix
// (<instance><service>...), the domain XML keeps it (<regen:instance>...). The reader matches
// local names only and never fails: what it cannot read it leaves at the default.

void AppendUtf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

// XML 1.0's Char production: what a character reference may name. Anything else (NUL, other
// controls, surrogates, U+FFFE/U+FFFF) is kept as literal text, so the fields stay valid UTF-8
// (they go into protobuf string fields).
bool IsXmlChar(uint32_t cp) {
  if (cp < 0x20) return cp == 0x9 || cp == 0xa || cp == 0xd;
  if (cp >= 0xd800 && cp <= 0xdfff) return false;
  if (cp == 0xfffe || cp == 0xffff) return false;
  return cp <= 0x10ffff;
}

std::string XmlUnescape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '&') {
      out += text[i];
      continue;
    }
    size_t semi = text.find(';', i);
    if (semi == std::string_view::npos || semi - i > 12) {
      out += text[i];
      continue;
    }
    std::string_view entity = text.substr(i + 1, semi - i - 1);
    if (entity == "lt") {
      out += '<';
    } else if (entity == "gt") {
      out += '>';
    } else if (entity == "amp") {
      out += '&';
    } else if (entity == "quot") {
      out += '"';
    } else if (entity == "apos") {
      out += '\'';
    } else if (entity.size() > 1 && entity[0] == '#') {
      bool hex = entity[1] == 'x' || entity[1] == 'X';
      std::string_view digits = entity.substr(hex ? 2 : 1);
      uint32_t cp = 0;
      auto [ptr, ec] =
          std::from_chars(digits.data(), digits.data() + digits.size(), cp, hex ? 16 : 10);
      if (ec != std::errc() || ptr != digits.data() + digits.size() || !IsXmlChar(cp)) {
        out += text[i];
        continue;
      }
      AppendUtf8(cp, out);
    } else {
      out += text[i];
      continue;
    }
    i = semi;
  }
  return out;
}

std::string_view LocalName(std::string_view qname) {
  size_t colon = qname.find(':');
  return colon == std::string_view::npos ? qname : qname.substr(colon + 1);
}

class MetadataReader {
 public:
  explicit MetadataReader(std::string_view text) : text_(text) {}

  DomainMetadata Read() {
    DomainMetadata md;
    if (!FindInstanceElement()) return md;
    md.managed = true;
    if (self_closing_) return md;
    // Children: leaf elements with text, until the element's end tag or the end of the input.
    while (SkipMisc()) {
      if (text_.substr(pos_, 2) == "</") break;  // end of <instance>
      std::string_view name;
      bool empty = false;
      if (!ReadStartTag(name, empty)) break;
      std::string value = empty ? std::string() : ReadTextUntilEndTag();
      std::string_view local = LocalName(name);
      if (local == "service") {
        md.service = value;
      } else if (local == "instance") {
        md.instance = value;
      } else if (local == "update-domain") {
        ParseInt(value, md.update_domain);
      } else if (local == "version") {
        md.version = value;
      } else if (local == "generation") {
        ParseInt(value, md.generation);
      }
    }
    return md;
  }

 private:
  static void ParseInt(const std::string& text, int64_t& out) {
    size_t b = text.find_first_not_of(" \t\r\n");
    size_t e = text.find_last_not_of(" \t\r\n");
    if (b == std::string::npos) return;
    int64_t v = 0;
    auto [ptr, ec] = std::from_chars(text.data() + b, text.data() + e + 1, v);
    if (ec == std::errc() && ptr == text.data() + e + 1) out = v;
  }

  // Moves to just after the start tag of the first element whose local name is "instance".
  bool FindInstanceElement() {
    while (true) {
      size_t lt = text_.find('<', pos_);
      if (lt == std::string_view::npos) return false;
      pos_ = lt;
      if (SkipSpecial()) continue;
      if (text_.substr(pos_, 2) == "</") {
        pos_ += 2;
        continue;
      }
      std::string_view name;
      bool empty = false;
      if (!ReadStartTag(name, empty)) return false;
      if (LocalName(name) == "instance") {
        self_closing_ = empty;
        return true;
      }
    }
  }

  // Skips a comment, processing instruction or declaration at pos_; true if one was skipped.
  bool SkipSpecial() {
    std::string_view rest = text_.substr(pos_);
    auto skip_to = [&](std::string_view end) {
      size_t e = text_.find(end, pos_);
      pos_ = e == std::string_view::npos ? text_.size() : e + end.size();
      return true;
    };
    if (rest.starts_with("<!--")) return skip_to("-->");
    if (rest.starts_with("<?")) return skip_to("?>");
    if (rest.starts_with("<![CDATA[")) return skip_to("]]>");
    if (rest.starts_with("<!")) return skip_to(">");
    return false;
  }

  // Skips whitespace, text and comments between elements; false at the end of the input.
  bool SkipMisc() {
    while (pos_ < text_.size()) {
      size_t lt = text_.find('<', pos_);
      if (lt == std::string_view::npos) {
        pos_ = text_.size();
        return false;
      }
      pos_ = lt;
      if (!SkipSpecial()) return true;
    }
    return false;
  }

  // Reads "<name attr='v' ...>" or "<name .../>" at pos_.
  bool ReadStartTag(std::string_view& name, bool& empty) {
    if (pos_ >= text_.size() || text_[pos_] != '<') return false;
    size_t start = pos_ + 1;
    size_t end = start;
    while (end < text_.size() && !IsSpace(text_[end]) && text_[end] != '>' && text_[end] != '/') {
      ++end;
    }
    name = text_.substr(start, end - start);
    // Find the closing '>' outside quoted attribute values.
    char quote = 0;
    size_t i = end;
    for (; i < text_.size(); ++i) {
      char c = text_[i];
      if (quote != 0) {
        if (c == quote) quote = 0;
      } else if (c == '"' || c == '\'') {
        quote = c;
      } else if (c == '>') {
        break;
      }
    }
    if (i >= text_.size()) {
      pos_ = text_.size();
      return false;
    }
    empty = i > start && text_[i - 1] == '/';
    pos_ = i + 1;
    return !name.empty();
  }

  // Reads the text (and CDATA) of a leaf element and skips its end tag.
  std::string ReadTextUntilEndTag() {
    std::string value;
    while (pos_ < text_.size()) {
      size_t lt = text_.find('<', pos_);
      if (lt == std::string_view::npos) {
        value += XmlUnescape(text_.substr(pos_));
        pos_ = text_.size();
        break;
      }
      value += XmlUnescape(text_.substr(pos_, lt - pos_));
      pos_ = lt;
      std::string_view rest = text_.substr(pos_);
      if (rest.starts_with("<![CDATA[")) {
        size_t e = text_.find("]]>", pos_);
        size_t data_end = e == std::string_view::npos ? text_.size() : e;
        value += std::string(text_.substr(pos_ + 9, data_end - pos_ - 9));
        pos_ = e == std::string_view::npos ? text_.size() : e + 3;
        continue;
      }
      if (SkipSpecial()) continue;
      if (rest.starts_with("</")) {
        size_t gt = text_.find('>', pos_);
        pos_ = gt == std::string_view::npos ? text_.size() : gt + 1;
        break;
      }
      // A nested element: not something Regen writes; skip its start tag and keep reading.
      std::string_view name;
      bool empty = false;
      if (!ReadStartTag(name, empty)) break;
    }
    return value;
  }

  static bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

  std::string_view text_;
  size_t pos_ = 0;
  bool self_closing_ = false;
};

}  // namespace

DomainMetadata ParseDomainMetadata(const std::string& metadata_xml) {
  return MetadataReader(metadata_xml).Read();
}

}  // namespace regen
