#include "dns/tsig_key.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <vector>

#include "common/names.h"

namespace regen::dns {
namespace {

struct DeclaredKey {
  std::string name;
  std::string algorithm;
  std::string secret;
  int line = 0;
};

std::string Trim(std::string_view s) {
  size_t begin = s.find_first_not_of(" \t\r\n");
  if (begin == std::string_view::npos) return "";
  size_t end = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(begin, end - begin + 1));
}

std::string Unquote(std::string s) {
  if (s.size() >= 2 && (s.front() == '"' || s.front() == '\'') && s.back() == s.front()) {
    return s.substr(1, s.size() - 2);
  }
  return s;
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

bool IsBase64(const std::string& s) {
  if (s.empty() || s.size() % 4 != 0) return false;
  size_t padding = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '=') {
      ++padding;
      continue;
    }
    if (padding > 0) return false;  // '=' only at the end
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '/') return false;
  }
  return padding <= 2;
}

const std::vector<std::string>& Algorithms() {
  static const std::vector<std::string> kAlgorithms = {"hmac-sha256", "hmac-sha512", "hmac-sha1"};
  return kAlgorithms;
}

// knot: "- id: x", "algorithm: y", "secret: z" lines; a new "id" starts a new key.
std::vector<DeclaredKey> ParseKnot(const std::vector<std::string>& lines) {
  std::vector<DeclaredKey> keys;
  bool in_key_section = true;  // a file with only "- id: ..." entries counts as a key section
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].empty()) continue;
    if (!std::isspace(static_cast<unsigned char>(lines[i][0])) && !lines[i].starts_with("- ")) {
      in_key_section = Trim(lines[i]) == "key:";  // a new top-level section (key:, acl:, zone:)
      continue;
    }
    if (!in_key_section) continue;
    std::string line = Trim(lines[i]);
    if (line.starts_with("- ")) line = Trim(line.substr(2));
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string field = Trim(line.substr(0, colon));
    std::string value = Unquote(Trim(line.substr(colon + 1)));
    if (field == "id") {
      keys.push_back({value, "", "", static_cast<int>(i + 1)});
    } else if (field == "algorithm" && !keys.empty()) {
      keys.back().algorithm = value;
    } else if (field == "secret" && !keys.empty()) {
      keys.back().secret = value;
    }
  }
  return keys;
}

// BIND: key "name" { algorithm x; secret "y"; }; possibly over several lines.
std::vector<DeclaredKey> ParseBind(const std::vector<std::string>& lines) {
  std::string text;
  std::vector<int> line_of;  // line number of each character of `text`
  for (size_t i = 0; i < lines.size(); ++i) {
    text += lines[i] + "\n";
    line_of.resize(text.size(), static_cast<int>(i + 1));
  }
  std::vector<DeclaredKey> keys;
  size_t pos = 0;
  while ((pos = text.find("key", pos)) != std::string::npos) {
    bool word_start =
        pos == 0 || std::isspace(static_cast<unsigned char>(text[pos - 1])) || text[pos - 1] == ';';
    size_t open = text.find('{', pos);
    size_t close = text.find('}', pos);
    if (!word_start || open == std::string::npos || close == std::string::npos || close < open) {
      pos += 3;
      continue;
    }
    DeclaredKey key;
    key.line = line_of[pos];
    key.name = Unquote(Trim(text.substr(pos + 3, open - pos - 3)));
    std::stringstream body(text.substr(open + 1, close - open - 1));
    std::string statement;
    while (std::getline(body, statement, ';')) {
      statement = Trim(statement);
      size_t space = statement.find_first_of(" \t\n");
      if (space == std::string::npos) continue;
      std::string field = statement.substr(0, space);
      std::string value = Unquote(Trim(statement.substr(space + 1)));
      if (field == "algorithm") key.algorithm = value;
      if (field == "secret") key.secret = value;
    }
    keys.push_back(std::move(key));
    pos = close + 1;
  }
  return keys;
}

}  // namespace

std::string AbsoluteKeyName(const std::string& name) {
  std::string out = Lower(name);
  if (out.empty() || out.back() != '.') out += '.';
  return out;
}

Result<TsigKey> ParseTsigKeyFile(const std::string& text, const std::string& file_name,
                                 const std::string& key_name, const std::string& algorithm) {
  std::string want_name = AbsoluteKeyName(key_name);
  std::string want_algorithm = Lower(algorithm);
  if (std::find(Algorithms().begin(), Algorithms().end(), want_algorithm) == Algorithms().end()) {
    return InvalidArgument("TSIG algorithm " + QuoteValue(algorithm) +
                           " is not supported: use hmac-sha256, hmac-sha512 or hmac-sha1");
  }
  std::vector<std::string> lines;
  {
    std::stringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
      std::string trimmed = Trim(line);
      if (trimmed.empty() || trimmed.starts_with('#') || trimmed.starts_with("//")) {
        lines.emplace_back();  // keep line numbers
        continue;
      }
      lines.push_back(line);
    }
  }
  std::vector<std::string> content;
  for (const std::string& line : lines) {
    if (!line.empty()) content.push_back(Trim(line));
  }
  if (content.empty()) {
    return InvalidArgument(
        "TSIG secret file " + file_name + " is empty: put the base64 secret of key " + want_name +
        " in it (e.g. the output of `keymgr -t " + want_name + " " + want_algorithm + "`)");
  }
  TsigKey key{want_name, want_algorithm, ""};
  if (content.size() == 1 && content[0].find_first_of(":{ \t") == std::string::npos) {
    key.secret = content[0];
    if (!IsBase64(key.secret)) {
      return InvalidArgument("TSIG secret file " + file_name +
                             " holds neither a base64 secret nor a knot or BIND key "
                             "definition: got " +
                             QuoteValue(key.secret));
    }
    return key;
  }

  bool bind = text.find('{') != std::string::npos;
  std::vector<DeclaredKey> declared = bind ? ParseBind(lines) : ParseKnot(lines);
  if (declared.empty()) {
    return InvalidArgument("TSIG secret file " + file_name +
                           " defines no key: expected a knot `key:` section with id, algorithm "
                           "and secret, a BIND `key \"NAME\" { ... };` clause, or the bare "
                           "base64 secret");
  }
  const DeclaredKey* found = nullptr;
  std::string names;
  for (const DeclaredKey& d : declared) {
    if (AbsoluteKeyName(d.name) == want_name) found = &d;
    names += (names.empty() ? "" : ", ") + AbsoluteKeyName(d.name);
  }
  if (found == nullptr) {
    return InvalidArgument("TSIG secret file " + file_name + " has no key named " + want_name +
                           " (it defines " + names +
                           "): set dns.tsig.key_name to the key's name as the DNS server knows it");
  }
  std::string where = file_name + ":" + std::to_string(found->line);
  if (!found->algorithm.empty() && Lower(found->algorithm) != want_algorithm) {
    return InvalidArgument("TSIG key " + want_name + " in " + where + " uses algorithm " +
                           QuoteValue(found->algorithm) + " but dns.tsig.algorithm is " +
                           want_algorithm + ": make them equal, or the server refuses updates");
  }
  if (!IsBase64(found->secret)) {
    return InvalidArgument("TSIG key " + want_name + " in " + where +
                           " has no valid base64 secret (got " + QuoteValue(found->secret) + ")");
  }
  key.secret = found->secret;
  return key;
}

Result<TsigKey> LoadTsigKey(const std::string& path, const std::string& key_name,
                            const std::string& algorithm) {
  std::ifstream in(path);
  if (!in) {
    int err = errno;
    std::string message = "cannot read TSIG secret file " + path + ": " + std::strerror(err) +
                          " (dns.tsig.secret_file; it must be readable by the controller)";
    return err == ENOENT ? NotFound(message) : FailedPrecondition(message);
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  return ParseTsigKeyFile(buffer.str(), path, key_name, algorithm);
}

}  // namespace regen::dns
