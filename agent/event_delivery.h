// Delivers events to the instances on this host (DESIGN.md, Healing step 5): each event is one
// JSON line appended to <state>/events/<instance>.jsonl (the record: never lost, the only sink on
// the test driver) and streamed to the instance's virtio-serial channel, the unix socket
// <state>/channels/<instance>.events.sock that qemu listens on (org.regen.events.0 in the guest).
//
// The channel gets every line of the file once and in order, also the lines written before its
// domain started (a healed instance learns of its own failure and reallocation): per instance a
// cursor (<state>/channels/<instance>.cursor, bytes of the file already accepted by a channel)
// survives agent restarts, and the agent keeps one connection per running channel open (qemu
// drops what it has not read yet when its client hangs up, e.g. while the guest still boots).
// Lines the channel cannot take now (no socket yet, connect refused, guest not reading: socket
// buffer full) wait in the file and go out on the next Deliver or flush tick (Start()). A new
// domain (a new socket) gets what was appended since the last line an earlier channel took.
// An event file that outgrows max_file_bytes is rotated to <instance>.jsonl.1 (one old file kept)
// once its channel has taken all of it, or when there is no channel; a channel that lags (its
// guest does not read) delays the rotation until the file is 4x the limit, then the rotation goes
// ahead and says how much that channel missed (those lines stay in the .1 file).
// Socket writes never block; errors are logged and counted, never returned to the callers' loops.
// Thread-safe; called from the controller link's reader, the DNS watch's thread and the flusher.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "common/thread_annotations.h"

namespace regen {

// <state_dir>/events/<instance>.jsonl
std::string EventsFilePath(const std::string& state_dir, const std::string& instance);
// <state_dir>/channels/<instance>.events.sock (the domain's org.regen.events.0 channel)
std::string EventsSocketPath(const std::string& state_dir, const std::string& instance);
// <state_dir>/channels/<instance>.cursor (bytes of the event file a channel has taken)
std::string EventsCursorPath(const std::string& state_dir, const std::string& instance);

struct EventDeliveryStats {
  int64_t lines_written = 0;  // lines appended to event files
  int64_t socket_writes = 0;  // lines written whole to a channel socket
  int64_t errors = 0;         // file or socket errors (logged)
  int64_t rotations = 0;      // event files rotated to <instance>.jsonl.1
};

class EventDelivery {
 public:
  static constexpr int64_t kDefaultMaxFileBytes = 16 << 20;  // per instance, before rotation

  explicit EventDelivery(std::string state_dir, int64_t max_file_bytes = kDefaultMaxFileBytes);
  ~EventDelivery();  // stops the flusher, closes the channel connections
  EventDelivery(const EventDelivery&) = delete;
  EventDelivery& operator=(const EventDelivery&) = delete;

  // Writes `json` (one JSON object; newlines inside are not allowed, a final one is added) to
  // every instance in `instances`. Returns the first file error (the caller may ignore it: it is
  // logged); socket errors are only logged and counted. Invalid instance names are refused
  // (INVALID_ARGUMENT) and nothing is written for them.
  Status Deliver(const std::vector<std::string>& instances, const std::string& json);

  // Creates <state>/events and <state>/channels (also done by the first Deliver).
  Status EnsureDirectories();

  // Sends every channel socket found under <state>/channels what its event file holds beyond its
  // cursor. Called by the flusher; tests call it directly.
  void FlushChannels();

  // A thread that calls FlushChannels() every `interval` (a domain just started gets its waiting
  // lines within one interval). Stop() is idempotent.
  void Start(std::chrono::milliseconds interval = std::chrono::milliseconds(200));
  void Stop();

  EventDeliveryStats stats() const;
  const std::string& state_dir() const { return state_dir_; }

 private:
  // A connection to one instance's channel socket.
  struct Channel {
    int fd = -1;
    ino_t inode = 0;           // of the socket file connected to (a new domain makes a new one)
    int64_t cursor = -1;       // bytes of the event file taken by channels; -1: not loaded yet
    bool warned_full = false;  // "does not read its channel" logged for this connection
    std::string last_error;    // the last connect error logged (said once, not every flush)
  };

  Status DeliverOne(const std::string& instance, const std::string& line);
  void FlushLocked(const std::string& instance) REQUIRES(mu_);
  // The instance's channel state, its cursor loaded from its file on first use.
  Channel& ChannelLocked(const std::string& instance) REQUIRES(mu_);
  bool ConnectLocked(const std::string& instance, Channel& ch, const struct stat& st)
      REQUIRES(mu_);
  void CloseLocked(Channel& ch) REQUIRES(mu_);
  void SaveCursorLocked(const std::string& instance, int64_t cursor) REQUIRES(mu_);
  // Rotates the event file when appending `adding` bytes would pass the limit (see above).
  void MaybeRotateLocked(const std::string& instance, size_t adding) REQUIRES(mu_);
  void CountErrorLocked(const std::string& instance, const std::string& what) REQUIRES(mu_);

  const std::string state_dir_;
  const int64_t max_file_bytes_;
  mutable Mutex mu_;
  bool directories_ready_ GUARDED_BY(mu_) = false;
  EventDeliveryStats stats_ GUARDED_BY(mu_);
  std::map<std::string, Channel> channels_ GUARDED_BY(mu_);

  Mutex flusher_mu_;
  std::condition_variable flusher_cv_;  // with flusher_mu_
  bool flusher_stop_ GUARDED_BY(flusher_mu_) = false;
  std::thread flusher_ GUARDED_BY(flusher_mu_);
};

}  // namespace regen
