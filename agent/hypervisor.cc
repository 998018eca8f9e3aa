#include "agent/hypervisor.h"

namespace regen {

const char* DomainStateName(DomainState state) {
  switch (state) {
    case DomainState::kUnknown:
      return "unknown";
    case DomainState::kRunning:
      return "running";
    case DomainState::kPaused:
      return "paused";
    case DomainState::kShutoff:
      return "shutoff";
    case DomainState::kCrashed:
      return "crashed";
    case DomainState::kStarting:
      return "starting";
  }
  return "unknown";
}

}  // namespace regen
