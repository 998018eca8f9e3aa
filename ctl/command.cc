#include "ctl/command.h"

#include "common/names.h"

namespace regen::ctl {

void AddOutputOption(CLI::App* app, Args& a) {
  app->add_option("-o,--output", a.output, "output format: text or json");
}

Status CheckName(const std::string& what, const std::string& value) {
  if (IsValidName(value)) return Status::Ok();
  return InvalidArgument(what + " " + QuoteValue(value) +
                         " is not a valid name ([a-z][a-z0-9-]{0,62})");
}

Status CheckVersion(const std::string& what, const std::string& value) {
  if (IsValidVersionName(value)) return Status::Ok();
  return InvalidArgument(what + " " + QuoteValue(value) +
                         " is not a valid version name ([a-z0-9][a-z0-9._-]{0,62})");
}

bool IsUnreachable(const Status& s) {
  return s.code() == Code::kUnavailable || s.code() == Code::kDeadlineExceeded;
}

// "web" from "web-12" (instances are named SERVICE-INDEX); "" when the name has no such form.
std::string ServiceOfInstance(const std::string& instance) {
  size_t dash = instance.rfind('-');
  if (dash == std::string::npos || dash == 0 || dash + 1 == instance.size()) return "";
  for (size_t i = dash + 1; i < instance.size(); ++i) {
    if (instance[i] < '0' || instance[i] > '9') return "";
  }
  return instance.substr(0, dash);
}

}  // namespace regen::ctl
