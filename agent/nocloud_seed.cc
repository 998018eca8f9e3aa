#include "agent/nocloud_seed.h"

#include <filesystem>
#include <fstream>
#include <system_error>

#include "agent/disk_preparer.h"

namespace regen {

namespace fs = std::filesystem;

NoCloudSeed BuildNoCloudSeed(const InstanceSpec& spec) {
  NoCloudSeed seed;
  seed.meta_data = "instance-id: " + spec.name + "-g" + std::to_string(spec.generation) +
                   "\nlocal-hostname: " + spec.name + "\n";
  seed.user_data = "#cloud-config\n{}\n";
  if (spec.allocation.ip.empty()) return seed;
  const int64_t prefix = spec.prefix_len > 0 ? spec.prefix_len : 32;
  std::string n = "version: 2\nethernets:\n  eth0:\n";
  if (!spec.allocation.mac.empty()) {
    n += "    match:\n      macaddress: \"" + spec.allocation.mac + "\"\n    set-name: eth0\n";
  }
  n += "    dhcp4: false\n    addresses:\n      - " + spec.allocation.ip + "/" +
       std::to_string(prefix) + "\n";
  if (!spec.gateway.empty()) {
    n += "    routes:\n      - to: 0.0.0.0/0\n        via: " + spec.gateway + "\n";
  }
  seed.network_config = n;
  return seed;
}

std::string SeedPath(const std::string& state_dir, const InstanceSpec& spec) {
  return GenerationFile(state_dir + "/seeds", spec, ".iso");
}

namespace {

Status WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return Internal("cannot write " + path);
  return Status::Ok();
}

}  // namespace

Result<std::string> WriteNoCloudSeed(CommandRunner& runner, const std::string& state_dir,
                                     const InstanceSpec& spec) {
  const std::string context = "instance " + spec.name + ": cloud-init seed";
  const std::string iso = SeedPath(state_dir, spec);
  const std::string dir = iso + ".d";
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir, ec);
  if (ec) return Internal(context + ": cannot create " + dir + ": " + ec.message());
  const NoCloudSeed seed = BuildNoCloudSeed(spec);
  std::vector<std::string> argv = {"genisoimage",      "-quiet",          "-output", iso + ".tmp",
                                   "-volid",           "cidata",          "-joliet", "-rock",
                                   dir + "/meta-data", dir + "/user-data"};
  Status written = WriteText(dir + "/meta-data", seed.meta_data);
  if (written.ok()) written = WriteText(dir + "/user-data", seed.user_data);
  if (written.ok() && !seed.network_config.empty()) {
    written = WriteText(dir + "/network-config", seed.network_config);
    argv.push_back(dir + "/network-config");
  }
  if (!written.ok()) {
    fs::remove_all(dir, ec);
    return written.WithContext(context);
  }
  auto out = CheckedRun(runner, argv, std::chrono::seconds(30));
  fs::remove_all(dir, ec);
  if (!out.ok()) {
    fs::remove(iso + ".tmp", ec);
    std::string hint = out.status().message().find("cannot start") != std::string::npos
                           ? " (install genisoimage: apt-get install genisoimage)"
                           : "";
    return out.status().WithContext(context + hint);
  }
  fs::rename(iso + ".tmp", iso, ec);
  if (ec) return Internal(context + ": rename " + iso + ".tmp: " + ec.message());
  return iso;
}

void RemoveNoCloudSeeds(const std::string& state_dir, const std::string& instance) {
  RemoveGenerationFiles(state_dir + "/seeds", instance, ".iso");
}

}  // namespace regen
