// Delivers events to the instances on this host (DESIGN.md, Healing step 5): each event is one
// JSON line appended to <state>/events/<instance>.jsonl and, when the instance's virtio-serial
// channel socket <state>/channels/<instance>.events.sock exists, written to it too. Socket writes
// never block (non-blocking connect and send; an instance that does not read loses the line on
// its channel, never in its file); errors are logged and counted, never returned to the caller's
// loop. Thread-safe; called from the controller link's reader and the DNS watch's thread.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"

namespace regen {

// <state_dir>/events/<instance>.jsonl
std::string EventsFilePath(const std::string& state_dir, const std::string& instance);
// <state_dir>/channels/<instance>.events.sock (the domain's org.regen.events.0 channel)
std::string EventsSocketPath(const std::string& state_dir, const std::string& instance);

struct EventDeliveryStats {
  int64_t lines_written = 0;  // lines appended to event files
  int64_t socket_writes = 0;  // lines written whole to a channel socket
  int64_t errors = 0;         // file or socket errors (logged)
};

class EventDelivery {
 public:
  explicit EventDelivery(std::string state_dir);

  // Writes `json` (one JSON object; newlines inside are not allowed, a final one is added) to
  // every instance in `instances`. Returns the first file error (the caller may ignore it: it is
  // logged); socket errors are only logged and counted. Invalid instance names are refused
  // (INVALID_ARGUMENT) and nothing is written for them.
  Status Deliver(const std::vector<std::string>& instances, const std::string& json);

  // Creates <state>/events and <state>/channels (also done by the first Deliver).
  Status EnsureDirectories();

  EventDeliveryStats stats() const;
  const std::string& state_dir() const { return state_dir_; }

 private:
  Status DeliverOne(const std::string& instance, const std::string& line);
  void WriteSocket(const std::string& instance, const std::string& line);

  const std::string state_dir_;
  mutable std::mutex mu_;
  bool directories_ready_ = false;  // guarded by mu_
  EventDeliveryStats stats_;        // guarded by mu_
};

}  // namespace regen
