// What the agent lets the controller name on this host: an instance's names (they become file
// names under state_dir) and the files of a version (image, domain_template, an image to stage),
// which must resolve, symlinks followed, to a file under one of agent.yaml's image_dirs. Checked
// before anything on disk changes. Reads the file system, never writes it; any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/model.h"
#include "common/status.h"

namespace regen {

// The instance's name and service (common/names.h ValidateName) and version (IsValidVersionName):
// InvalidArgument naming the field and the value.
Status ValidateInstanceNames(const InstanceSpec& spec);
// A (service, version) to stage: as above.
Status ValidateServiceVersion(std::string_view service, std::string_view version);

class ImageDirs {
 public:
  // `dirs`: agent.yaml's image_dirs (absolute); empty = none allowed.
  explicit ImageDirs(std::vector<std::string> dirs) : dirs_(std::move(dirs)) {}

  // The canonical path of the existing regular file `path` names, if it is under one of the
  // directories both as written and once symlinks are resolved. Errors name `field` and the value: InvalidArgument
  // for a relative path, a ".." component, a path (or its symlink's target) outside every
  // directory, something that is not a regular file; NotFound when nothing is there (the
  // message ends "does not exist on this host").
  Result<std::string> Confine(std::string_view field, const std::string& path) const;

  // Confine's checks that need no file system: absolute, no "..", lexically under a directory.
  Status CheckLexically(std::string_view field, const std::string& path) const;

  const std::vector<std::string>& dirs() const { return dirs_; }

 private:
  // Whether `path` is under `dir` (both already normalized).
  static bool Under(const std::string& path, const std::string& dir);
  std::string DirsText() const;

  std::vector<std::string> dirs_;
};

}  // namespace regen
