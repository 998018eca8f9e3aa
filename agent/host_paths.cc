#include "agent/host_paths.h"

#include <filesystem>
#include <system_error>

#include "common/names.h"

namespace regen {

namespace fs = std::filesystem;

Status ValidateInstanceNames(const InstanceSpec& spec) {
  RETURN_IF_ERROR(ValidateName("name", spec.name));
  const std::string context = "instance " + spec.name;
  RETURN_IF_ERROR(ValidateName("service", spec.service).WithContext(context));
  if (!IsValidVersionName(spec.version)) {
    return InvalidArgument(context + ": version: " + QuoteValue(spec.version) + " " +
                           kVersionNameRule);
  }
  return Status::Ok();
}

Status ValidateServiceVersion(std::string_view service, std::string_view version) {
  RETURN_IF_ERROR(ValidateName("service", service));
  if (!IsValidVersionName(version)) {
    return InvalidArgument("service " + std::string(service) + ": version: " +
                           QuoteValue(version) + " " + kVersionNameRule);
  }
  return Status::Ok();
}

bool ImageDirs::Under(const std::string& path, const std::string& dir) {
  if (dir == "/") return true;
  return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
         path[dir.size()] == '/';
}

std::string ImageDirs::DirsText() const {
  if (dirs_.empty()) return "(none)";
  std::string out;
  for (const auto& d : dirs_) out += (out.empty() ? "" : ", ") + d;
  return out;
}

Status ImageDirs::CheckLexically(std::string_view field, const std::string& path) const {
  auto refuse = [&](const std::string& why) {
    return InvalidArgument(std::string(field) + ": " + QuoteValue(path) + " " + why);
  };
  if (path.empty() || path.front() != '/') return refuse("is not an absolute path");
  if (path.size() > 4095) return refuse("is longer than 4095 bytes");
  if (path.find('\0') != std::string::npos) return refuse("contains a NUL byte");
  for (const auto& part : fs::path(path)) {
    if (part == "..") return refuse("contains \"..\"");
  }
  const std::string lexical = fs::path(path).lexically_normal().string();
  for (const auto& dir : dirs_) {
    if (Under(lexical, fs::path(dir).lexically_normal().string())) return Status::Ok();
  }
  return refuse("is not under a directory the controller may name (agent.yaml image_dirs: " +
                DirsText() + ")");
}

Result<std::string> ImageDirs::Confine(std::string_view field, const std::string& path) const {
  RETURN_IF_ERROR(CheckLexically(field, path));
  std::error_code ec;
  fs::file_status st = fs::status(path, ec);  // follows symlinks
  if (!fs::exists(st)) {
    return NotFound(std::string(field) + ": " + path + " does not exist on this host");
  }
  auto refuse = [&](const std::string& why) {
    return InvalidArgument(std::string(field) + ": " + QuoteValue(path) + " " + why);
  };
  fs::path canonical = fs::canonical(path, ec);
  if (ec) return refuse("cannot be resolved: " + ec.message());
  for (const auto& dir : dirs_) {
    std::error_code dir_ec;
    fs::path real_dir = fs::canonical(dir, dir_ec);
    if (dir_ec || !Under(canonical.string(), real_dir.string())) continue;
    if (!fs::is_regular_file(st)) return refuse("is not a regular file");
    return canonical.string();
  }
  return refuse("resolves to " + QuoteValue(canonical.string()) +
                " (a symbolic link), which is not under a directory the controller may name "
                "(agent.yaml image_dirs: " +
                DirsText() + ")");
}

}  // namespace regen
