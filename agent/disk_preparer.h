// Per-instance disks: a qcow2 overlay on the version's base image, made with qemu-img (argv, no
// shell) under <state_dir>/disks. Called from the agent's main thread (or any one thread).
#pragma once

#include <string>

#include "common/model.h"
#include "common/status.h"
#include "common/subprocess.h"

namespace regen {

class DiskPreparer {
 public:
  DiskPreparer(std::string state_dir, CommandRunner& runner)
      : state_dir_(std::move(state_dir)), runner_(runner) {}

  // The overlay path for this instance and generation ("" when the spec has no image).
  std::string OverlayPath(const InstanceSpec& spec) const;
  // Creates the overlay if missing, on `backing` (a staged copy of spec.image) or, when that is
  // empty, on spec.image. Errors name the image and carry qemu-img's stderr.
  Result<std::string> Prepare(const InstanceSpec& spec, const std::string& backing = "");
  // Removes every overlay of the instance (all generations). Missing files are fine.
  void Remove(const std::string& instance);

 private:
  std::string state_dir_;
  CommandRunner& runner_;
};

// <dir>/<spec.name>-g<spec.generation><suffix>: a file of one generation (overlays, seeds).
std::string GenerationFile(const std::string& dir, const InstanceSpec& spec,
                           const std::string& suffix);
// Removes <dir>/<instance>-g<N><suffix> for every generation N (not the files of an instance
// whose name merely starts so, e.g. "web-1-g2-g1.qcow2" of instance web-1-g2). Missing is fine.
void RemoveGenerationFiles(const std::string& dir, const std::string& instance,
                           const std::string& suffix);

}  // namespace regen
