// Internal to the libvirt module (libvirt_hypervisor.cc and libvirt_events.cc, the only files
// that include libvirt): the process-wide libvirt event loop and the callback state libvirt holds
// for a LibvirtHypervisor. Any thread; the callbacks run on the event loop's thread.
#pragma once

#include <libvirt/libvirt.h>

#include <atomic>
#include <memory>

#include "agent/hypervisor.h"
#include "common/status.h"
#include "common/thread_annotations.h"

namespace regen::libvirt_internal {

// Registers libvirt's default event loop (once per process) and runs its thread while any user
// holds it. Every successful Acquire is paired with one Release.
Status AcquireEventLoop();
void ReleaseEventLoop();

// The user's callbacks. libvirt holds references (through heap-allocated shared_ptr copies that
// its free callbacks delete), so the state outlives any callback libvirt may still run.
struct CallbackState {
  Mutex mu;  // held while a user callback runs, so disabling waits for one in flight
  bool enabled GUARDED_BY(mu) = true;
  Hypervisor::EventCallback event_cb GUARDED_BY(mu);
  Hypervisor::ConnectionCallback connection_cb GUARDED_BY(mu);
};
using CallbackRef = std::shared_ptr<CallbackState>;

// Per connection: what the close callback needs. Owned by Impl; the close callback is
// unregistered (libvirt runs it under a lock the unregistration takes) before this is freed.
struct ConnectionToken {
  CallbackRef callbacks;
  std::atomic<bool>* connected;
};

// libvirt's free callback for a heap-allocated CallbackRef.
void DeleteCallbackRef(void* opaque);

// An `opaque` given to libvirt reaches its event loop thread through libvirt's own locks, which
// ThreadSanitizer cannot see (libvirt is not built with it): HandOff before giving it to libvirt,
// TakeOver first thing in each callback (and free callback) that receives it. No-ops outside the
// TSan build (scripts/tsan.sh).
void HandOff(const void* opaque);
void TakeOver(const void* opaque);

// Lifecycle events (opaque: CallbackRef*), connection closed (opaque: ConnectionToken*), and the
// one-shot "connected" timer (opaque: CallbackRef*).
void OnLifecycleEvent(virConnectPtr conn, virDomainPtr dom, int event, int detail, void* opaque);
void OnConnectionClosed(virConnectPtr conn, int reason, void* opaque);
void OnConnectedTimer(int timer, void* opaque);

}  // namespace regen::libvirt_internal
