// The libvirt module's event half: the process-wide event loop, the callbacks libvirt runs on it,
// and the mapping of libvirt's event and state numbers to the Hypervisor model.
#include "agent/libvirt_events.h"

#include <libvirt/virterror.h>

#include <chrono>
#include <initializer_list>
#include <mutex>
#include <string>
#include <thread>

#include "agent/libvirt_hypervisor.h"
#include "common/text.h"

namespace regen {
namespace libvirt_internal {

namespace {

// --- The process-wide libvirt event loop ------------------------------------------------------
//
// libvirt has one default event loop per process. It is registered once, before the first
// connection, and run by one thread while any LibvirtHypervisor exists. Lifecycle events, the
// close callback and keepalives are all dispatched from that thread.

void IgnoreLibvirtError(void* /*user_data*/, virErrorPtr /*error*/) {}

struct EventLoopState {
  std::once_flag init_once;
  Status init_status;
  Mutex mu;
  int users GUARDED_BY(mu) = 0;
  std::thread thread GUARDED_BY(mu);
  std::atomic<bool> stop{false};
  std::atomic<int> stop_ticks{0};
};

// Never destroyed: the loop thread may outlive static destructors at exit.
EventLoopState& Loop() {
  static EventLoopState* state = new EventLoopState;
  return *state;
}

void RunEventLoop() {
  EventLoopState& loop = Loop();
  while (!loop.stop.load()) {
    if (virEventRunDefaultImpl() < 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// Wakes the loop a few times, 1 ms apart, so that idle work libvirt queued while connections were
// closing (freeing callbacks) runs before the thread stops; then stops it.
void StopTick(int timer, void* opaque) {
  auto* loop = static_cast<EventLoopState*>(opaque);
  if (++loop->stop_ticks < 3) return;
  virEventRemoveTimeout(timer);
  loop->stop.store(true);
}

}  // namespace

Status AcquireEventLoop() {
  EventLoopState& loop = Loop();
  std::call_once(loop.init_once, [&loop] {
    // libvirt prints every error to stderr unless a handler is set; errors are returned instead.
    virSetErrorFunc(nullptr, IgnoreLibvirtError);
    if (virEventRegisterDefaultImpl() < 0) {
      const char* message = virGetLastErrorMessage();
      loop.init_status = Internal(std::string("cannot register libvirt's event loop: ") +
                                  (message != nullptr ? SanitizeText(message) : "unknown error"));
    }
  });
  if (!loop.init_status.ok()) return loop.init_status;
  MutexLock lock(loop.mu);
  if (loop.users++ == 0) {
    loop.stop.store(false);
    loop.thread = std::thread(RunEventLoop);
  }
  return Status::Ok();
}

void ReleaseEventLoop() {
  EventLoopState& loop = Loop();
  MutexLock lock(loop.mu);
  if (--loop.users > 0) return;
  loop.stop_ticks.store(0);
  if (virEventAddTimeout(1, StopTick, &loop, nullptr) < 0) {
    // Cannot wake the loop: leave the thread to the process rather than hang.
    loop.stop.store(true);
    loop.thread.detach();
    return;
  }
  loop.thread.join();
}

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define REGEN_TSAN_BUILD 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define REGEN_TSAN_BUILD 1
#endif
#ifdef REGEN_TSAN_BUILD
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
void HandOff(const void* opaque) { __tsan_release(const_cast<void*>(opaque)); }
void TakeOver(const void* opaque) { __tsan_acquire(const_cast<void*>(opaque)); }
#else
void HandOff(const void*) {}
void TakeOver(const void*) {}
#endif

void DeleteCallbackRef(void* opaque) {
  TakeOver(opaque);
  delete static_cast<CallbackRef*>(opaque);
}

void OnLifecycleEvent(virConnectPtr /*conn*/, virDomainPtr dom, int event, int detail,
                      void* opaque) {
  TakeOver(opaque);
  const CallbackRef& state = *static_cast<CallbackRef*>(opaque);
  const char* name = virDomainGetName(dom);
  DomainEvent mapped = LibvirtHypervisor::MapEvent(name != nullptr ? name : "", event, detail);
  MutexLock lock(state->mu);
  if (state->enabled && state->event_cb) state->event_cb(mapped);
}

void OnConnectionClosed(virConnectPtr /*conn*/, int /*reason*/, void* opaque) {
  TakeOver(opaque);
  auto* token = static_cast<ConnectionToken*>(opaque);
  token->connected->store(false);
  MutexLock lock(token->callbacks->mu);
  if (token->callbacks->enabled && token->callbacks->connection_cb) {
    token->callbacks->connection_cb(false);
  }
}

void OnConnectedTimer(int timer, void* opaque) {
  TakeOver(opaque);
  virEventRemoveTimeout(timer);  // one shot
  const CallbackRef& state = *static_cast<CallbackRef*>(opaque);
  MutexLock lock(state->mu);
  if (state->enabled && state->connection_cb) state->connection_cb(true);
}

}  // namespace libvirt_internal

namespace {

// --- Names ------------------------------------------------------------------------------------

const char* Pick(int index, std::initializer_list<const char*> names) {
  if (index < 0 || index >= static_cast<int>(names.size())) return "unknown";
  return names.begin()[index];
}

}  // namespace

// --- Mapping ----------------------------------------------------------------------------------

DomainEvent LibvirtHypervisor::MapEvent(const std::string& name, int event, int detail) {
  DomainEvent out;
  out.name = name;
  switch (event) {
    case VIR_DOMAIN_EVENT_DEFINED:
      out.event = "defined";
      out.detail = Pick(detail, {"added", "updated", "renamed", "from_snapshot"});
      break;
    case VIR_DOMAIN_EVENT_UNDEFINED:
      out.event = "undefined";
      out.detail = Pick(detail, {"removed", "renamed"});
      break;
    case VIR_DOMAIN_EVENT_STARTED:
      out.event = "started";
      out.detail = Pick(detail, {"booted", "migrated", "restored", "from_snapshot", "wakeup"});
      break;
    case VIR_DOMAIN_EVENT_SUSPENDED:
      out.event = "suspended";
      out.detail = Pick(detail, {"paused", "migrated", "ioerror", "watchdog", "restored",
                                 "from_snapshot", "api_error", "postcopy", "postcopy_failed"});
      break;
    case VIR_DOMAIN_EVENT_RESUMED:
      out.event = "resumed";
      out.detail =
          Pick(detail, {"unpaused", "migrated", "from_snapshot", "postcopy", "postcopy_failed"});
      break;
    case VIR_DOMAIN_EVENT_STOPPED:
      out.event = "stopped";
      out.detail = Pick(detail, {"shutdown", "destroyed", "crashed", "migrated", "saved", "failed",
                                 "from_snapshot"});
      out.unexpected_stop = detail == VIR_DOMAIN_EVENT_STOPPED_CRASHED ||
                            detail == VIR_DOMAIN_EVENT_STOPPED_FAILED ||
                            detail == VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN;
      break;
    case VIR_DOMAIN_EVENT_SHUTDOWN:
      out.event = "shutdown";
      out.detail = Pick(detail, {"finished", "guest", "host"});
      break;
    case VIR_DOMAIN_EVENT_PMSUSPENDED:
      out.event = "pmsuspended";
      out.detail = Pick(detail, {"memory", "disk"});
      break;
    case VIR_DOMAIN_EVENT_CRASHED:
      out.event = "crashed";
      out.detail = Pick(detail, {"panicked", "crashloaded"});
      out.unexpected_stop = true;
      break;
    default:
      out.event = "unknown";
      out.detail = "unknown";
  }
  return out;
}

DomainState LibvirtHypervisor::MapState(int state, int reason) {
  switch (state) {
    case VIR_DOMAIN_RUNNING:
    case VIR_DOMAIN_BLOCKED:
    case VIR_DOMAIN_SHUTDOWN:  // still running while the guest shuts down
      return DomainState::kRunning;
    case VIR_DOMAIN_PAUSED:
    case VIR_DOMAIN_PMSUSPENDED:
      return DomainState::kPaused;
    case VIR_DOMAIN_SHUTOFF:
      return reason == VIR_DOMAIN_SHUTOFF_CRASHED || reason == VIR_DOMAIN_SHUTOFF_FAILED
                 ? DomainState::kCrashed
                 : DomainState::kShutoff;
    case VIR_DOMAIN_CRASHED:
      return DomainState::kCrashed;
    default:
      return DomainState::kUnknown;
  }
}

std::string LibvirtHypervisor::StateReasonName(int state, int reason) {
  switch (state) {
    case VIR_DOMAIN_RUNNING:
      return Pick(reason, {"unknown", "booted", "migrated", "restored", "from_snapshot", "unpaused",
                           "migration_canceled", "save_canceled", "wakeup", "crashed", "postcopy",
                           "postcopy_failed"});
    case VIR_DOMAIN_PAUSED:
      return Pick(reason, {"unknown", "user", "migration", "save", "dump", "ioerror", "watchdog",
                           "from_snapshot", "shutting_down", "snapshot", "crashed", "starting_up",
                           "postcopy", "postcopy_failed", "api_error"});
    case VIR_DOMAIN_SHUTDOWN:
      return Pick(reason, {"unknown", "user"});
    case VIR_DOMAIN_SHUTOFF:
      return Pick(reason, {"unknown", "shutdown", "destroyed", "crashed", "migrated", "saved",
                           "failed", "from_snapshot", "daemon"});
    case VIR_DOMAIN_CRASHED:
      return Pick(reason, {"unknown", "panicked"});
    default:
      return "unknown";
  }
}

}  // namespace regen
