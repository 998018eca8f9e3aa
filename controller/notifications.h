// Notifications to the instances of a service (DESIGN.md, Healing step 5): when an instance fails,
// is reallocated, or the service's topology changes, every agent hosting an instance of that
// service is sent the event at once (no order between agents, no delay), over its existing
// stream as an InstanceNotification naming the instances on that host. The JSON builders are
// pure (any thread); InstanceNotifier is a change listener of the Controller and runs on its main
// loop.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "controller/controller.h"

namespace regen {

// {"event":"failure","service","instance","host","reason","sequence","unix_ms"} from a "failure"
// event of the controller.
nlohmann::json FailureNotification(const EventRecord& failure);

// {"event":"reallocation","service","instance","old_host","new_host","resources":{vcpus,
// memory_mib,disk_gib,bandwidth_mbps},"version","generation","ip","mac","sequence","unix_ms"}
// from a "reallocation" event.
nlohmann::json ReallocationNotification(const EventRecord& reallocation);

// {"event":"topology","service","revision","unix_ms","instances":[{"name","host","ip","mac"}]}:
// the service's placed instances and their addresses, sorted by name.
nlohmann::json TopologyNotification(const Controller& controller, const std::string& service,
                                    int64_t revision, int64_t unix_ms);

// The notification for a controller event, when instances are told about that kind of event
// (failure, reallocation); nullopt otherwise.
std::optional<nlohmann::json> NotificationFor(const EventRecord& event);

// One line of newline-delimited JSON: the object dumped without newlines, plus '\n'.
std::string JsonLine(const nlohmann::json& event);

class InstanceNotifier {
 public:
  // The change listener (Controller::AddChangeListener).
  void OnChanges(const Controller& controller, const ControllerChanges& changes);

  // Sends `event` to every agent hosting an instance of `service`; returns the agents reached.
  int Deliver(const Controller& controller, const std::string& service,
              const nlohmann::json& event);

  int64_t sent() const { return sent_; }  // messages sent to agents so far

 private:
  int64_t sent_ = 0;
};

}  // namespace regen
