#include "common/controller_list.h"

#include <set>

#include "common/names.h"

namespace regen {

namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

Status ValidateControllerList(const std::vector<std::string>& entries) {
  if (entries.empty()) {
    return InvalidArgument("must name at least one controller \"host:port\"");
  }
  std::set<std::string> seen;
  for (size_t i = 0; i < entries.size(); ++i) {
    std::string entry = "entry " + std::to_string(i + 1) + " of " + std::to_string(entries.size());
    const std::string& e = entries[i];
    if (e.empty()) {
      return InvalidArgument(entry +
                             " is empty (give \"host:port\" entries separated by single commas)");
    }
    if (!IsValidHostPort(e, /*ip_only=*/false)) {
      return InvalidArgument(entry + " " + QuoteValue(e) +
                             " must be \"host:port\" with a port from 1 to 65535 (e.g. "
                             "\"10.0.0.1:7400\", \"ctl.lab:7400\" or \"[::1]:7400\")");
    }
    if (!seen.insert(e).second) {
      return InvalidArgument(entry + " " + QuoteValue(e) +
                             " is listed twice (name each controller once)");
    }
  }
  return Status::Ok();
}

Result<std::vector<std::string>> ParseControllerList(std::string_view text) {
  std::vector<std::string> entries;
  while (true) {
    size_t comma = text.find(',');
    entries.emplace_back(Trim(text.substr(0, comma)));
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  if (entries.size() == 1 && entries[0].empty()) entries.clear();
  if (Status s = ValidateControllerList(entries); !s.ok()) return s;
  return entries;
}

std::string JoinControllerList(const std::vector<std::string>& addresses) {
  std::string out;
  for (const auto& a : addresses) {
    if (!out.empty()) out += ',';
    out += a;
  }
  return out;
}

std::optional<std::string> StandbyRedirect(std::string_view message) {
  if (message.substr(0, kStandbyPrefix.size()) != kStandbyPrefix) return std::nullopt;
  std::string_view rest = message.substr(kStandbyPrefix.size());
  size_t end = rest.find_first_of(" \t\r\n;,()");
  std::string_view active = rest.substr(0, end);
  if (!active.empty() && active.back() == '.') active.remove_suffix(1);  // end of a sentence
  if (active == "unknown" || !IsValidHostPort(active, /*ip_only=*/false)) return std::string();
  return std::string(active);
}

}  // namespace regen
