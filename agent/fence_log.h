// The instances this agent destroyed for safety (its lease ran out) that the controller has not
// yet been told of: kept in a small JSON file in state_dir (written to a temporary file and
// renamed, so it survives a crash or restart of the agent; no fsync: a host that crashed runs
// none of its domains any more, and its controller heals them anyway) and sent in the next Hello
// (Hello.fenced). Thread-safe (one mutex): the main loop adds, the controller link reads and
// clears what the controller accepted.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/thread_annotations.h"

namespace regen {

struct FencedRecord {
  std::string instance;
  int64_t generation = 0;      // the generation destroyed (from the domain's metadata)
  int64_t fenced_unix_ms = 0;  // when it was destroyed
  std::string reason;          // "no lease renewal for 3012 ms"
  bool operator==(const FencedRecord&) const = default;
};

class FenceLog {
 public:
  // `path`: the file (state_dir/fenced.json).
  explicit FenceLog(std::string path) : path_(std::move(path)) {}

  // Reads the file left by an earlier run (none: nothing to report). A file that cannot be
  // parsed is an error naming it (the agent keeps going with an empty log).
  Status Load();
  // Records one destroyed instance and writes the file at once. A failed write is logged and the
  // record kept in memory (it still goes out in the next Hello of this run).
  void Add(FencedRecord record);
  // A fence began (the lease ran out), with or without anything to destroy.
  void NoteFence();

  // What a Hello carries, and the sequence number of the log's last change it reflects.
  struct Snapshot {
    std::vector<FencedRecord> records;
    uint64_t seq = 0;
  };
  Snapshot Take() const;
  // The controller accepted a Hello that carried `sent`: forget those records (newer ones stay)
  // and write the file.
  void Accept(const Snapshot& sent);
  // Grows with every fence and every record: a Hello sent with an older value did not tell the
  // controller everything.
  uint64_t seq() const;
  const std::string& path() const { return path_; }

 private:
  Status WriteLocked() REQUIRES(mu_);

  const std::string path_;
  mutable Mutex mu_;
  std::vector<FencedRecord> records_ GUARDED_BY(mu_);
  uint64_t seq_ GUARDED_BY(mu_) = 0;
};

}  // namespace regen
