#include "agent/disk_preparer.h"

#include <filesystem>
#include <system_error>

namespace regen {

namespace fs = std::filesystem;

std::string DiskPreparer::OverlayPath(const InstanceSpec& spec) const {
  if (spec.image.empty()) return "";
  return GenerationFile(state_dir_ + "/disks", spec, ".qcow2");
}

std::string GenerationFile(const std::string& dir, const InstanceSpec& spec,
                           const std::string& suffix) {
  return dir + "/" + spec.name + "-g" + std::to_string(spec.generation) + suffix;
}

Result<std::string> DiskPreparer::Prepare(const InstanceSpec& spec, const std::string& backing) {
  std::string overlay = OverlayPath(spec);
  if (overlay.empty()) return overlay;
  std::error_code ec;
  if (fs::exists(overlay, ec)) return overlay;
  const std::string& base = backing.empty() ? spec.image : backing;
  if (!fs::exists(base, ec)) {
    return NotFound("instance " + spec.name + ": image " + base + " of version " + spec.version +
                    " does not exist on this host");
  }
  fs::create_directories(fs::path(overlay).parent_path(), ec);
  if (ec)
    return Internal("cannot create " + fs::path(overlay).parent_path().string() + ": " +
                    ec.message());
  std::string backing_format = base.ends_with(".qcow2") ? "qcow2" : "raw";
  std::string tmp = overlay + ".tmp";
  auto out = CheckedRun(
      runner_, {"qemu-img", "create", "-q", "-f", "qcow2", "-F", backing_format, "-b", base, tmp},
      std::chrono::seconds(30));
  if (!out.ok()) {
    fs::remove(tmp, ec);
    return out.status().WithContext("instance " + spec.name + ": overlay on " + base);
  }
  fs::rename(tmp, overlay, ec);  // atomic: a half-made overlay is never used
  if (ec) return Internal("rename " + tmp + ": " + ec.message());
  return overlay;
}

void DiskPreparer::Remove(const std::string& instance) {
  RemoveGenerationFiles(state_dir_ + "/disks", instance, ".qcow2");
}

void RemoveGenerationFiles(const std::string& dir, const std::string& instance,
                           const std::string& suffix) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return;
  std::string prefix = instance + "-g";
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::string file = entry.path().filename().string();
    if (file.rfind(prefix, 0) != 0 || !file.ends_with(suffix)) continue;
    std::string gen = file.substr(prefix.size(), file.size() - prefix.size() - suffix.size());
    bool digits = !gen.empty() && gen.find_first_not_of("0123456789") == std::string::npos;
    if (digits) fs::remove(entry.path(), ec);
  }
}

}  // namespace regen
