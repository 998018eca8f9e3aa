// Image staging for upgrades: before the controller re-creates an instance with a new version, the
// version's base image is copied onto this host, into <state_dir>/images/<service>/<version>/.
// Copies run on one worker thread (never on the agent's main loop); a copy is written to a
// temporary name and renamed, with a sidecar file naming its source, so a half-copied image is
// never used and a restarted agent finds what it had staged. A request is checked before anything
// on disk changes: service and version are names (common/names.h), the source a file under
// image_dirs (agent/host_paths.h); a bad one is refused with an error naming the field and the
// value, reported like a failed copy. Thread-safe.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "agent/host_paths.h"
#include "common/thread_annotations.h"

namespace regen {

struct StageRequest {
  std::string service;
  std::string version;
  std::string source;  // the version's image path (readable from this host)
  bool operator==(const StageRequest&) const = default;
};

struct StagedImage {
  std::string service;
  std::string version;
  std::string source;
  std::string path;   // the staged copy ("" unless ready)
  std::string error;  // why it could not be staged ("" when ready or still copying)
  bool ready = false;
  bool operator==(const StagedImage&) const = default;
};

class ImageStager {
 public:
  using Key = std::pair<std::string, std::string>;  // service, version

  // Finds the images staged by an earlier run under <state_dir>/images; sources must be under
  // `image_dirs`.
  ImageStager(std::string state_dir, ImageDirs image_dirs);
  ~ImageStager();
  ImageStager(const ImageStager&) = delete;
  ImageStager& operator=(const ImageStager&) = delete;

  // Called (from the worker thread) whenever a copy finished or failed.
  void SetOnChange(std::function<void()> on_change);

  // What the controller wants staged here now. Missing images are queued for copying; staged
  // images neither wanted nor `in_use` (the (service, version) of an instance on this host, whose
  // disk may be an overlay on it) are removed. A failed copy is retried when asked again.
  void SetWanted(const std::vector<StageRequest>& wanted, const std::set<Key>& in_use);

  // The staged copy of `source` for (service, version), or "" if it is not (yet) staged.
  std::string StagedPath(const std::string& service, const std::string& version,
                         const std::string& source) const;

  // Ready and failed images (not the ones still copying), sorted by service and version.
  std::vector<StagedImage> Report() const;

  // Waits until the queue is empty and no copy runs (tests).
  void WaitIdle();

  std::string DirOf(const std::string& service, const std::string& version) const;

 private:
  void Rescan() REQUIRES(mu_);
  // Whether `key` is being copied or waits in the queue.
  bool PendingLocked(const Key& key) const REQUIRES(mu_);
  void Worker();
  // Copies one image (its source already checked: canonical); returns "" or the error.
  std::string Copy(const StageRequest& request, const std::string& source);
  // The request's names and the source's path as text (no file system: the caller's thread), or
  // an error naming the bad field.
  Status Check(const StageRequest& request) const;
  // The source's canonical path, once it is known to be a file under image_dirs (worker).
  Result<std::string> ConfineSource(const StageRequest& request) const;
  // Refuses a request that fails Check: its error is reported, nothing is queued.
  void RefuseLocked(const StageRequest& request, const std::string& error) REQUIRES(mu_);

  const std::string root_;
  const ImageDirs image_dirs_;
  mutable Mutex mu_;
  std::condition_variable cv_;  // with mu_
  std::map<Key, StagedImage> images_ GUARDED_BY(mu_);
  std::deque<StageRequest> queue_ GUARDED_BY(mu_);
  bool busy_ GUARDED_BY(mu_) = false;
  Key busy_key_ GUARDED_BY(mu_);  // the copy under way
  bool stop_ GUARDED_BY(mu_) = false;
  std::function<void()> on_change_ GUARDED_BY(mu_);
  std::thread worker_;  // started by the constructor, joined by the destructor
};

}  // namespace regen
