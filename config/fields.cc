#include "config/fields.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

#include "common/names.h"

namespace regen {
namespace {

constexpr size_t kMaxConfigFileBytes = 64 << 20;

std::string Join(const std::vector<std::string_view>& values, std::string_view separator) {
  std::string out;
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += separator;
    out += values[i];
  }
  return out;
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// The allowed key closest to a misspelt one, if any is close.
std::optional<std::string_view> Suggest(std::string_view key,
                                        const std::vector<std::string_view>& allowed) {
  if (key.size() > 64) return std::nullopt;
  std::optional<std::string_view> best;
  size_t best_distance = 3;
  for (std::string_view candidate : allowed) {
    size_t d = EditDistance(key, candidate);
    if (d < best_distance && d < candidate.size()) {
      best = candidate;
      best_distance = d;
    }
  }
  return best;
}

// Not inlined: inlined into its one caller, GetInt, it trips a false GCC 12 -Wmaybe-uninitialized.
[[gnu::noinline]] std::optional<int64_t> ParseInt(std::string_view text) {
  if (!text.empty() && text[0] == '+') text.remove_prefix(1);
  if (text.empty()) return std::nullopt;
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::string IntRange(int64_t min, int64_t max) {
  if (max == std::numeric_limits<int64_t>::max()) {
    return "an integer of at least " + std::to_string(min);
  }
  return "an integer between " + std::to_string(min) + " and " + std::to_string(max);
}

}  // namespace

Result<std::string> ReadConfigFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return InvalidArgument("cannot read " + path + ": " + std::strerror(errno));
  std::string content;
  char buffer[65536];
  while (true) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) continue;
      int error = errno;
      ::close(fd);
      return InvalidArgument("cannot read " + path + ": " + std::strerror(error));
    }
    if (n == 0) break;
    content.append(buffer, static_cast<size_t>(n));
    if (content.size() > kMaxConfigFileBytes) {
      ::close(fd);
      return InvalidArgument("cannot read " + path + ": larger than " +
                             std::to_string(kMaxConfigFileBytes >> 20) +
                             " MiB (is this the right file?)");
    }
  }
  ::close(fd);
  return content;
}

std::string DescribeValue(const YamlNode& node) {
  switch (node.kind) {
    case YamlNode::Kind::kScalar:
      return QuoteValue(node.value);
    case YamlNode::Kind::kNull:
      return "an empty value";
    case YamlNode::Kind::kSequence:
      return "a list";
    case YamlNode::Kind::kMap:
      return "a map";
  }
  return "?";
}

Status ErrorAt(const std::string& file, const YamlNode& at, std::string_view path,
               std::string_view what) {
  std::string message =
      file + ":" + std::to_string(at.line) + ":" + std::to_string(at.column) + ": ";
  if (!path.empty()) message += std::string(path) + ": ";
  message += what;
  return InvalidArgument(std::move(message));
}

std::optional<std::chrono::milliseconds> ParseDuration(std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits > 12) return std::nullopt;
  int64_t number = 0;
  std::from_chars(text.data(), text.data() + digits, number);
  std::string_view unit = text.substr(digits);
  int64_t scale = 0;
  if (unit == "ms") {
    scale = 1;
  } else if (unit == "s") {
    scale = 1000;
  } else if (unit == "m") {
    scale = 60 * 1000;
  } else if (unit == "h") {
    scale = 60 * 60 * 1000;
  } else {
    return std::nullopt;
  }
  return std::chrono::milliseconds(number * scale);
}

std::string FormatDuration(std::chrono::milliseconds d) {
  int64_t ms = d.count();
  if (ms != 0 && ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms != 0 && ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
  if (ms != 0 && ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

bool IsAbsolutePath(std::string_view path) {
  if (path.empty() || path[0] != '/') return false;
  for (unsigned char c : path) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

Result<FieldMap> FieldMap::Root(const std::string& file, const YamlNode& root,
                                std::string_view what, std::vector<std::string_view> allowed) {
  if (root.is_null()) {
    return regen::ErrorAt(file, root, "",
                          "the file is empty: expected the " + std::string(what) +
                              " as \"key: value\" lines (see config/examples/ for a commented "
                              "example)");
  }
  if (!root.is_map()) {
    return regen::ErrorAt(file, root, "",
                          "the file must hold the " + std::string(what) +
                              " as a map of \"key: value\" lines, got " + DescribeValue(root) +
                              " (allowed keys: " + Join(allowed, ", ") + ")");
  }
  return Open(file, root, "", std::move(allowed));
}

Result<FieldMap> FieldMap::Open(const std::string& file, const YamlNode& node, std::string path,
                                std::vector<std::string_view> allowed) {
  if (!node.is_map() && !node.is_null()) {
    return regen::ErrorAt(file, node, path,
                          "must be a map of \"key: value\" settings, got " + DescribeValue(node) +
                              " (allowed keys: " + Join(allowed, ", ") + ")");
  }
  for (const YamlMapEntry& e : node.entries) {
    if (std::find(allowed.begin(), allowed.end(), e.key.value) != allowed.end()) continue;
    std::string what = "unknown key " + QuoteValue(e.key.value) + " (";
    std::string_view key = e.key.value;
    size_t cut = key.find_first_of(" :");
    std::string_view head = key.substr(0, cut);
    if (cut != std::string_view::npos &&
        std::find(allowed.begin(), allowed.end(), head) != allowed.end()) {
      std::string_view rest = key.substr(cut);
      while (!rest.empty() && (rest[0] == ' ' || rest[0] == ':')) rest.remove_prefix(1);
      what += "did you mean " + QuoteValue(std::string(head) + ": " + std::string(rest)) +
              "? A key ends with ':' and a space; ";
    } else if (std::optional<std::string_view> close = Suggest(e.key.value, allowed)) {
      what += "did you mean \"" + std::string(*close) + "\"? ";
    }
    what += "allowed keys " + (path.empty() ? std::string("at the top level") : "in " + path) +
            ": " + Join(allowed, ", ") + ")";
    return regen::ErrorAt(file, e.key, JoinPath(path, e.key.value), what);
  }
  return FieldMap(&file, &node, std::move(path));
}

const YamlNode* FieldMap::Find(std::string_view key) const { return node_->Find(key); }

Status FieldMap::ErrorAt(std::string_view key, std::string_view what) const {
  const YamlNode* value = Find(key);
  return regen::ErrorAt(*file_, value != nullptr ? *value : *node_, PathOf(key), what);
}

Status FieldMap::Missing(std::string_view key) const {
  std::string where = path_.empty() ? std::string("at the top level of the file")
                                    : "to " + path_ + ", the map that starts here";
  return regen::ErrorAt(
      *file_, *node_, PathOf(key),
      "required field is missing (add \"" + std::string(key) + ": ...\" " + where + ")");
}

Result<std::optional<std::string>> FieldMap::Scalar(std::string_view key, Need need,
                                                    std::string_view expected) const {
  const YamlNode* value = Find(key);
  if (value == nullptr) {
    if (need == Need::kRequired) return Missing(key);
    return std::optional<std::string>();
  }
  if (value->is_null()) return std::optional<std::string>("");
  if (!value->is_scalar()) {
    return ErrorAt(key, "must be " + std::string(expected) + ", got " + DescribeValue(*value));
  }
  return std::optional<std::string>(value->value);
}

Status FieldMap::GetString(std::string_view key, std::string* out, Need need) const {
  ASSIGN_OR_RETURN(std::optional<std::string> text, Scalar(key, need, "text"));
  if (text) *out = std::move(*text);
  return Status::Ok();
}

Status FieldMap::GetZone(std::string_view key, std::string* out, Need need) const {
  RETURN_IF_ERROR(GetString(key, out, need));
  if (out->empty() || IsValidZoneName(*out)) return Status::Ok();
  return ErrorAt(key, "must be a lower-case DNS zone ending with '.', got " + QuoteValue(*out) +
                          " (e.g. \"lab.example.\")");
}

Status FieldMap::GetNonEmptyString(std::string_view key, std::string* out, Need need) const {
  ASSIGN_OR_RETURN(std::optional<std::string> text, Scalar(key, need, "non-empty text"));
  if (!text) return Status::Ok();
  if (text->empty()) {
    return ErrorAt(key, "must not be empty, got " + DescribeValue(*Find(key)) +
                            " (remove the line to use the default)");
  }
  *out = std::move(*text);
  return Status::Ok();
}

Status FieldMap::GetInt(std::string_view key, int64_t min, int64_t max, int64_t* out,
                        Need need) const {
  std::string expected = IntRange(min, max);
  ASSIGN_OR_RETURN(std::optional<std::string> text, Scalar(key, need, expected));
  if (!text) return Status::Ok();
  std::optional<int64_t> value = ParseInt(*text);
  if (!value || *value < min || *value > max) {
    return ErrorAt(key, "must be " + expected + ", got " + DescribeValue(*Find(key)));
  }
  *out = *value;
  return Status::Ok();
}

Status FieldMap::GetBool(std::string_view key, bool* out) const {
  ASSIGN_OR_RETURN(std::optional<std::string> text, Scalar(key, Need::kOptional, "true or false"));
  if (!text) return Status::Ok();
  if (*text == "true" || *text == "True" || *text == "TRUE") {
    *out = true;
  } else if (*text == "false" || *text == "False" || *text == "FALSE") {
    *out = false;
  } else {
    return ErrorAt(key, "must be true or false, got " + DescribeValue(*Find(key)));
  }
  return Status::Ok();
}

Status FieldMap::GetDuration(std::string_view key, std::chrono::milliseconds min,
                             std::chrono::milliseconds max, std::chrono::milliseconds* out) const {
  std::string expected =
      "a duration between " + FormatDuration(min) + " and " + FormatDuration(max);
  ASSIGN_OR_RETURN(std::optional<std::string> text, Scalar(key, Need::kOptional, expected));
  if (!text) return Status::Ok();
  std::optional<std::chrono::milliseconds> value = ParseDuration(*text);
  std::string got = "must be " + expected + ", got " + DescribeValue(*Find(key));
  if (!value) {
    bool plain_number =
        !text->empty() && text->size() <= 12 &&
        std::all_of(text->begin(), text->end(), [](char c) { return c >= '0' && c <= '9'; });
    if (plain_number) {
      return ErrorAt(key, got + " (a plain number has no unit: write \"" + *text + "s\" or \"" +
                              *text + "ms\"; units are ms, s, m, h)");
    }
    return ErrorAt(key, got +
                            " (write a whole number and a unit: \"500ms\", \"2s\", \"1m\", "
                            "\"1h\")");
  }
  if (*value < min || *value > max) return ErrorAt(key, got);
  *out = *value;
  return Status::Ok();
}

Status FieldMap::GetName(std::string_view key, std::string* out, Need need) const {
  ASSIGN_OR_RETURN(std::optional<std::string> text,
                   Scalar(key, need, "a name ([a-z][a-z0-9-]{0,62})"));
  if (!text) return Status::Ok();
  Status valid = ValidateName(PathOf(key), *text);
  if (!valid.ok()) return regen::ErrorAt(*file_, *Find(key), "", valid.message());
  *out = std::move(*text);
  return Status::Ok();
}

Status FieldMap::GetEnum(std::string_view key, const std::vector<std::string_view>& values,
                         std::string* out) const {
  std::string expected = "one of " + Join(values, ", ");
  ASSIGN_OR_RETURN(std::optional<std::string> text, Scalar(key, Need::kOptional, expected));
  if (!text) return Status::Ok();
  if (std::find(values.begin(), values.end(), *text) == values.end()) {
    return ErrorAt(key, "must be " + expected + ", got " + DescribeValue(*Find(key)));
  }
  *out = std::move(*text);
  return Status::Ok();
}

Status FieldMap::GetAbsolutePath(std::string_view key, std::string* out, bool allow_empty,
                                 size_t max_len, Need need) const {
  ASSIGN_OR_RETURN(std::optional<std::string> text,
                   Scalar(key, need, "an absolute path (starting with '/')"));
  if (!text) return Status::Ok();
  if (text->empty() && allow_empty) {
    out->clear();
    return Status::Ok();
  }
  if (!IsAbsolutePath(*text)) {
    return ErrorAt(key,
                   "must be an absolute path (starting with '/', no control characters), "
                   "got " +
                       DescribeValue(*Find(key)));
  }
  if (text->size() > max_len) {
    return ErrorAt(key, "must be at most " + std::to_string(max_len) + " bytes long, got " +
                            DescribeValue(*Find(key)) + " (" + std::to_string(text->size()) +
                            " bytes; choose a shorter path)");
  }
  *out = std::move(*text);
  return Status::Ok();
}

Status FieldMap::GetIpv4(std::string_view key, std::string* out, bool allow_empty) const {
  ASSIGN_OR_RETURN(std::optional<std::string> text,
                   Scalar(key, Need::kOptional, "an IPv4 address"));
  if (!text) return Status::Ok();
  if (text->empty() && allow_empty) {
    out->clear();
    return Status::Ok();
  }
  if (!IsValidIpv4(*text)) {
    return ErrorAt(key,
                   "must be an IPv4 address like \"10.0.0.5\", got " + DescribeValue(*Find(key)));
  }
  *out = std::move(*text);
  return Status::Ok();
}

Status FieldMap::GetHostPort(std::string_view key, std::string* out, bool allow_empty,
                             bool ip_only) const {
  std::string expected = ip_only ? "\"ip:port\" with an IP address and a port from 1 to 65535"
                                 : "\"host:port\" with a port from 1 to 65535";
  ASSIGN_OR_RETURN(std::optional<std::string> text, Scalar(key, Need::kOptional, expected));
  if (!text) return Status::Ok();
  if (text->empty() && allow_empty) {
    out->clear();
    return Status::Ok();
  }
  if (!IsValidHostPort(*text, ip_only)) {
    return ErrorAt(key, "must be " + expected + ", got " + DescribeValue(*Find(key)) +
                            (ip_only ? " (e.g. \"127.0.0.1:53\" or \"[::1]:53\")"
                                     : " (e.g. \"10.0.0.1:7400\", \"ctl.lab:7400\" or "
                                       "\"[::1]:7400\")"));
  }
  *out = std::move(*text);
  return Status::Ok();
}

Status FieldMap::GetMap(std::string_view key, std::vector<std::string_view> allowed,
                        std::optional<FieldMap>* out, Need need) const {
  const YamlNode* value = Find(key);
  if (value == nullptr) {
    if (need == Need::kRequired) return Missing(key);
    return Status::Ok();
  }
  ASSIGN_OR_RETURN(FieldMap map, Open(*file_, *value, PathOf(key), std::move(allowed)));
  out->emplace(std::move(map));
  return Status::Ok();
}

Status FieldMap::GetDict(std::string_view key, const YamlNode** out, Need need) const {
  *out = nullptr;
  const YamlNode* value = Find(key);
  if (value == nullptr) {
    if (need == Need::kRequired) return Missing(key);
    return Status::Ok();
  }
  if (value->is_null()) return Status::Ok();
  if (!value->is_map()) {
    return ErrorAt(key, "must be a map of \"key: value\" entries, got " + DescribeValue(*value));
  }
  *out = value;
  return Status::Ok();
}

Status FieldMap::GetList(std::string_view key, const YamlNode** out, Need need) const {
  *out = nullptr;
  const YamlNode* value = Find(key);
  if (value == nullptr) {
    if (need == Need::kRequired) return Missing(key);
    return Status::Ok();
  }
  if (value->is_null()) return Status::Ok();
  if (!value->is_sequence()) {
    return ErrorAt(
        key, "must be a list (\"- item\" lines, or [] for none), got " + DescribeValue(*value));
  }
  *out = value;
  return Status::Ok();
}

Status FieldMap::GetStringMap(std::string_view key, std::map<std::string, std::string>* out) const {
  const YamlNode* dict = nullptr;
  RETURN_IF_ERROR(GetDict(key, &dict));
  out->clear();
  if (dict == nullptr) return Status::Ok();
  for (const YamlMapEntry& e : dict->entries) {
    std::string path = JoinPath(PathOf(key), e.key.value);
    if (e.key.value.empty()) {
      return regen::ErrorAt(*file_, e.key, path, "keys must not be empty, got \"\"");
    }
    if (e.value.is_map() || e.value.is_sequence()) {
      return regen::ErrorAt(*file_, e.value, path,
                            "must be text, got " + DescribeValue(e.value) +
                                " (quote the value if it is meant as text)");
    }
    (*out)[e.key.value] = e.value.value;
  }
  return Status::Ok();
}

Status FieldMap::GetResources(std::string_view key, const ResourceRules& rules, Resources* out,
                              Need need) const {
  std::optional<FieldMap> map;
  RETURN_IF_ERROR(GetMap(key, {"vcpus", "memory_mib", "disk_gib", "bandwidth_mbps"}, &map, need));
  if (!map) return Status::Ok();
  Resources r;
  RETURN_IF_ERROR(
      map->GetInt("vcpus", rules.vcpus.min, rules.vcpus.max, &r.vcpus, rules.vcpus.need));
  RETURN_IF_ERROR(map->GetInt("memory_mib", rules.memory_mib.min, rules.memory_mib.max,
                              &r.memory_mib, rules.memory_mib.need));
  RETURN_IF_ERROR(map->GetInt("disk_gib", rules.disk_gib.min, rules.disk_gib.max, &r.disk_gib,
                              rules.disk_gib.need));
  RETURN_IF_ERROR(map->GetInt("bandwidth_mbps", rules.bandwidth_mbps.min, rules.bandwidth_mbps.max,
                              &r.bandwidth_mbps, rules.bandwidth_mbps.need));
  *out = r;
  return Status::Ok();
}

}  // namespace regen
