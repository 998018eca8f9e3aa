// The only file in Regen that includes libvirt.
#include "agent/libvirt_hypervisor.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <mutex>
#include <thread>
#include <utility>

#include "agent/domain_xml.h"

namespace regen {

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
  std::mutex mu;  // guards users and thread
  int users = 0;
  std::thread thread;
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

Status AcquireEventLoop() {
  EventLoopState& loop = Loop();
  std::call_once(loop.init_once, [&loop] {
    // libvirt prints every error to stderr unless a handler is set; errors are returned instead.
    virSetErrorFunc(nullptr, IgnoreLibvirtError);
    if (virEventRegisterDefaultImpl() < 0) {
      const char* message = virGetLastErrorMessage();
      loop.init_status = Internal(std::string("cannot register libvirt's event loop: ") +
                                  (message != nullptr ? message : "unknown error"));
    }
  });
  if (!loop.init_status.ok()) return loop.init_status;
  std::lock_guard lock(loop.mu);
  if (loop.users++ == 0) {
    loop.stop.store(false);
    loop.thread = std::thread(RunEventLoop);
  }
  return Status::Ok();
}

void ReleaseEventLoop() {
  EventLoopState& loop = Loop();
  std::lock_guard lock(loop.mu);
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

// --- Callback state shared with libvirt -------------------------------------------------------

// The user's callbacks. libvirt holds references (through heap-allocated shared_ptr copies that
// its free callbacks delete), so the state outlives any callback libvirt may still run.
struct CallbackState {
  std::mutex mu;  // held while a user callback runs, so disabling waits for one in flight
  bool enabled = true;
  Hypervisor::EventCallback event_cb;
  Hypervisor::ConnectionCallback connection_cb;
};
using CallbackRef = std::shared_ptr<CallbackState>;

void DeleteCallbackRef(void* opaque) { delete static_cast<CallbackRef*>(opaque); }

// Per connection: what the close callback needs. Owned by Impl; the close callback is
// unregistered (libvirt runs it under a lock the unregistration takes) before this is freed.
struct ConnectionToken {
  CallbackRef callbacks;
  std::atomic<bool>* connected;
};

void OnLifecycleEvent(virConnectPtr /*conn*/, virDomainPtr dom, int event, int detail,
                      void* opaque) {
  const CallbackRef& state = *static_cast<CallbackRef*>(opaque);
  const char* name = virDomainGetName(dom);
  DomainEvent mapped = LibvirtHypervisor::MapEvent(name != nullptr ? name : "", event, detail);
  std::lock_guard lock(state->mu);
  if (state->enabled && state->event_cb) state->event_cb(mapped);
}

void OnConnectionClosed(virConnectPtr /*conn*/, int /*reason*/, void* opaque) {
  auto* token = static_cast<ConnectionToken*>(opaque);
  token->connected->store(false);
  std::lock_guard lock(token->callbacks->mu);
  if (token->callbacks->enabled && token->callbacks->connection_cb) {
    token->callbacks->connection_cb(false);
  }
}

void OnConnectedTimer(int timer, void* opaque) {
  virEventRemoveTimeout(timer);  // one shot
  const CallbackRef& state = *static_cast<CallbackRef*>(opaque);
  std::lock_guard lock(state->mu);
  if (state->enabled && state->connection_cb) state->connection_cb(true);
}

// --- Names ------------------------------------------------------------------------------------

const char* Pick(int index, std::initializer_list<const char*> names) {
  if (index < 0 || index >= static_cast<int>(names.size())) return "unknown";
  return names.begin()[index];
}

// Frees a virDomainPtr on scope exit.
class DomainRef {
 public:
  explicit DomainRef(virDomainPtr dom) : dom_(dom) {}
  ~DomainRef() {
    if (dom_ != nullptr) virDomainFree(dom_);
  }
  DomainRef(const DomainRef&) = delete;
  DomainRef& operator=(const DomainRef&) = delete;
  virDomainPtr get() const { return dom_; }
  explicit operator bool() const { return dom_ != nullptr; }

 private:
  virDomainPtr dom_;
};

int LastErrorCode() {
  virErrorPtr err = virGetLastError();
  return err != nullptr ? err->code : VIR_ERR_OK;
}

std::string LastErrorMessage() {
  const char* message = virGetLastErrorMessage();
  return message != nullptr ? message : "unknown libvirt error";
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

// --- Impl -------------------------------------------------------------------------------------

class LibvirtHypervisor::Impl {
 public:
  Impl(std::string uri, bool enable_events)
      : uri_(std::move(uri)),
        enable_events_(enable_events),
        callbacks_(std::make_shared<CallbackState>()) {
    loop_status_ = AcquireEventLoop();
  }

  ~Impl() {
    {
      std::lock_guard lock(callbacks_->mu);  // waits for a callback in flight
      callbacks_->enabled = false;
    }
    {
      std::lock_guard lock(mu_);
      CloseLocked();
    }
    if (loop_status_.ok()) ReleaseEventLoop();
  }

  Status Connect() {
    std::lock_guard lock(mu_);
    if (!loop_status_.ok()) return loop_status_.WithContext("libvirt " + uri_);
    if (conn_ != nullptr && connected_.load() && virConnectIsAlive(conn_) == 1) {
      return Status::Ok();
    }
    CloseLocked();  // a connection that died is released before a new one is opened
    conn_ = virConnectOpen(uri_.c_str());
    if (conn_ == nullptr) {
      return Unavailable("cannot connect to libvirt at " + uri_ + ": " + LastErrorMessage());
    }
    // Keepalive only exists on remote connections (qemu:///system goes through libvirtd); local
    // drivers refuse it, which is fine.
    virConnectSetKeepAlive(conn_, 5, 3);
    virResetLastError();
    token_ = std::make_unique<ConnectionToken>(ConnectionToken{callbacks_, &connected_});
    if (virConnectRegisterCloseCallback(conn_, OnConnectionClosed, token_.get(), nullptr) < 0) {
      Status s = ErrorLocked("register the close callback");
      CloseLocked();
      return s;
    }
    if (enable_events_) {
      auto* ref = new CallbackRef(callbacks_);
      event_id_ = virConnectDomainEventRegisterAny(conn_, nullptr, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                                   VIR_DOMAIN_EVENT_CALLBACK(OnLifecycleEvent), ref,
                                                   DeleteCallbackRef);
      if (event_id_ < 0) {
        // libvirt does not say whether it freed `ref` on failure: leaking it is the safe side.
        Status s = ErrorLocked("register for lifecycle events");
        CloseLocked();
        return s;
      }
    }
    connected_.store(true);
    auto* ref = new CallbackRef(callbacks_);
    if (virEventAddTimeout(0, OnConnectedTimer, ref, DeleteCallbackRef) < 0) delete ref;
    return Status::Ok();
  }

  bool Connected() const { return connected_.load(); }

  void Disconnect() {
    std::lock_guard lock(mu_);
    CloseLocked();
  }

  Result<std::vector<DomainInfo>> ListDomains() {
    std::lock_guard lock(mu_);
    RETURN_IF_ERROR(RequireConnectionLocked());
    virDomainPtr* doms = nullptr;
    int n = virConnectListAllDomains(conn_, &doms, 0);
    if (n < 0) return ErrorLocked("list domains");
    std::vector<DomainInfo> out;
    Status failure;
    for (int i = 0; i < n; ++i) {
      DomainRef dom(doms[i]);
      if (!failure.ok()) continue;
      DomainInfo info;
      bool vanished = false;
      failure = DescribeLocked(dom.get(), info, vanished);
      if (failure.ok() && !vanished) out.push_back(std::move(info));
    }
    free(doms);  // NOLINT: allocated by libvirt with malloc
    if (!failure.ok()) return failure;
    return out;
  }

  Status DefineAndStart(const std::string& name, const std::string& domain_xml) {
    std::lock_guard lock(mu_);
    RETURN_IF_ERROR(RequireConnectionLocked());
    {
      DomainRef existing(virDomainLookupByName(conn_, name.c_str()));
      if (existing) {
        return AlreadyExists("domain " + name + " already exists on " + uri_ +
                             " (destroy and undefine it first)");
      }
      if (LastErrorCode() != VIR_ERR_NO_DOMAIN) return ErrorLocked("look up domain " + name);
    }
    // Defining XML that names another, existing domain would replace that domain's definition.
    if (domain_xml.find("<name>" + XmlEscape(name) + "</name>") == std::string::npos) {
      return InvalidArgument("define domain " + name + " on " + uri_ + ": the XML has no <name>" +
                             name + "</name>");
    }
    DomainRef dom(virDomainDefineXML(conn_, domain_xml.c_str()));
    if (!dom) return ErrorLocked("define domain " + name);
    const char* defined_name = virDomainGetName(dom.get());
    if (defined_name == nullptr || name != defined_name) {
      return Internal("define domain " + name + " on " + uri_ + ": libvirt defined " +
                      (defined_name != nullptr ? std::string(defined_name) : "a nameless domain") +
                      " instead; left as it is, check the XML");
    }
    if (virDomainCreate(dom.get()) < 0) {
      Status s = ErrorLocked("start domain " + name);
      if (Status undo = UndefineLocked(dom.get()); !undo.ok()) {
        return Status(s.code(),
                      s.message() + "; undefining it again failed too: " + undo.message());
      }
      return s;
    }
    return Status::Ok();
  }

  Status DestroyAndUndefine(const std::string& name) {
    std::lock_guard lock(mu_);
    RETURN_IF_ERROR(RequireConnectionLocked());
    DomainRef dom(virDomainLookupByName(conn_, name.c_str()));
    if (!dom) {
      if (LastErrorCode() == VIR_ERR_NO_DOMAIN) {
        return NotFound("no domain " + name + " on " + uri_);
      }
      return ErrorLocked("look up domain " + name);
    }
    int active = virDomainIsActive(dom.get());
    if (active < 0) {
      if (LastErrorCode() == VIR_ERR_NO_DOMAIN) return Status::Ok();  // vanished meanwhile
      return ErrorLocked("query domain " + name);
    }
    if (active == 1 && virDomainDestroy(dom.get()) < 0) {
      int code = LastErrorCode();
      if (code == VIR_ERR_NO_DOMAIN) return Status::Ok();  // a transient domain, gone
      if (code != VIR_ERR_OPERATION_INVALID) return ErrorLocked("destroy domain " + name);
      virResetLastError();  // "domain is not running": it stopped by itself meanwhile
    }
    int persistent = virDomainIsPersistent(dom.get());
    if (persistent == 0) return Status::Ok();  // transient: destroying removed it
    if (persistent < 0) {
      if (LastErrorCode() == VIR_ERR_NO_DOMAIN) return Status::Ok();
      return ErrorLocked("query domain " + name);
    }
    return UndefineLocked(dom.get());
  }

  Result<HostCapacity> Capacity() {
    std::lock_guard lock(mu_);
    RETURN_IF_ERROR(RequireConnectionLocked());
    virNodeInfo info;
    if (virNodeGetInfo(conn_, &info) < 0) return ErrorLocked("get node info");
    // 0 is both "none free" and "failed", and libvirt reports an error of unknown cause when a
    // driver says 0 (the test driver with a node file always does): only a dead connection is
    // an error here; otherwise 0 stands.
    unsigned long long free_bytes = virNodeGetFreeMemory(conn_);
    if (free_bytes == 0 && virConnectIsAlive(conn_) == 0) return ErrorLocked("get free memory");
    virResetLastError();
    HostCapacity cap;
    cap.cpus = info.cpus;
    cap.memory_mib = static_cast<int64_t>(info.memory / 1024);  // KiB
    cap.free_memory_mib = static_cast<int64_t>(free_bytes / (1024 * 1024));
    return cap;
  }

  void SetEventCallback(EventCallback cb) {
    std::lock_guard lock(callbacks_->mu);
    callbacks_->event_cb = std::move(cb);
  }

  void SetConnectionCallback(ConnectionCallback cb) {
    std::lock_guard lock(callbacks_->mu);
    callbacks_->connection_cb = std::move(cb);
  }

  Status InjectCrash(const std::string& name) {
    std::lock_guard lock(mu_);
    RETURN_IF_ERROR(RequireConnectionLocked());
    const char* type = virConnectGetType(conn_);
    if (type == nullptr) return ErrorLocked("get the driver type");
    if (std::strcmp(type, "TEST") != 0) {
      return FailedPrecondition("inject crash into " + name + " on " + uri_ + ": only the test " +
                                "driver can fake a crash (driver is " + type +
                                "; on qemu kill -9 the domain's qemu process)");
    }
    DomainRef dom(virDomainLookupByName(conn_, name.c_str()));
    if (!dom) {
      if (LastErrorCode() == VIR_ERR_NO_DOMAIN) {
        return NotFound("no domain " + name + " on " + uri_);
      }
      return ErrorLocked("look up domain " + name);
    }
    if (virDomainCoreDump(dom.get(), "/dev/null", VIR_DUMP_CRASH) < 0) {
      return ErrorLocked("inject crash into domain " + name);
    }
    return Status::Ok();
  }

  Result<std::string> DomainXml(const std::string& name) {
    std::lock_guard lock(mu_);
    RETURN_IF_ERROR(RequireConnectionLocked());
    DomainRef dom(virDomainLookupByName(conn_, name.c_str()));
    if (!dom) {
      if (LastErrorCode() == VIR_ERR_NO_DOMAIN) {
        return NotFound("no domain " + name + " on " + uri_);
      }
      return ErrorLocked("look up domain " + name);
    }
    char* xml = virDomainGetXMLDesc(dom.get(), 0);
    if (xml == nullptr) return ErrorLocked("get the XML of domain " + name);
    std::string out = xml;
    free(xml);  // NOLINT: allocated by libvirt with malloc
    return out;
  }

  const std::string& uri() const { return uri_; }

 private:
  Status RequireConnectionLocked() {
    if (conn_ == nullptr || !connected_.load()) {
      return Unavailable("not connected to libvirt at " + uri_ + " (Connect() first)");
    }
    return Status::Ok();
  }

  // Turns libvirt's last error into a Status naming `what` and the URI. Marks the connection
  // lost when libvirt says it is.
  Status ErrorLocked(const std::string& what) {
    int code = LastErrorCode();
    std::string message = what + " on " + uri_ + ": " + LastErrorMessage();
    virResetLastError();
    if (conn_ != nullptr && virConnectIsAlive(conn_) == 0) {
      connected_.store(false);
      virResetLastError();
      return Unavailable(message + " (connection lost)");
    }
    virResetLastError();
    switch (code) {
      case VIR_ERR_NO_DOMAIN:
        return NotFound(message);
      case VIR_ERR_DOM_EXIST:
        return AlreadyExists(message);
      case VIR_ERR_XML_ERROR:
      case VIR_ERR_XML_DETAIL:
      case VIR_ERR_INVALID_ARG:
      case VIR_ERR_CONFIG_UNSUPPORTED:
        return InvalidArgument(message);
      case VIR_ERR_OPERATION_INVALID:
        return FailedPrecondition(message);
      case VIR_ERR_OPERATION_TIMEOUT:
        return DeadlineExceeded(message);
      case VIR_ERR_NO_CONNECT:
      case VIR_ERR_RPC:
      case VIR_ERR_AUTH_FAILED:
      case VIR_ERR_INVALID_CONN:
        return Unavailable(message);
      default:
        return Internal(message);
    }
  }

  // Fills `info` for one domain; `vanished` when it went away between list and query.
  Status DescribeLocked(virDomainPtr dom, DomainInfo& info, bool& vanished) {
    const char* name = virDomainGetName(dom);
    info.name = name != nullptr ? name : "";
    int state = 0;
    int reason = 0;
    if (virDomainGetState(dom, &state, &reason, 0) < 0) {
      if (LastErrorCode() == VIR_ERR_NO_DOMAIN) {
        vanished = true;
        virResetLastError();
        return Status::Ok();
      }
      return ErrorLocked("get the state of domain " + info.name);
    }
    info.state = MapState(state, reason);
    info.reason = StateReasonName(state, reason);
    unsigned int id = virDomainGetID(dom);
    info.id = id == static_cast<unsigned int>(-1) ? -1 : static_cast<int64_t>(id);
    char* metadata = virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, kRegenMetadataUri,
                                          VIR_DOMAIN_AFFECT_CURRENT);
    if (metadata == nullptr) {
      int code = LastErrorCode();
      if (code == VIR_ERR_NO_DOMAIN) {
        vanished = true;
      } else if (code != VIR_ERR_NO_DOMAIN_METADATA && code != VIR_ERR_NO_SUPPORT) {
        return ErrorLocked("get the metadata of domain " + info.name);
      }
      virResetLastError();  // no Regen metadata: not managed by Regen
      return Status::Ok();
    }
    info.metadata = ParseDomainMetadata(metadata);
    free(metadata);  // NOLINT: allocated by libvirt with malloc
    return Status::Ok();
  }

  // Undefines with every cleanup flag the driver knows, falling back to fewer flags (the test
  // driver refuses NVRAM and TPM) and then to plain virDomainUndefine.
  Status UndefineLocked(virDomainPtr dom) {
    const unsigned int kAll = VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                              VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                              VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA | VIR_DOMAIN_UNDEFINE_NVRAM |
                              VIR_DOMAIN_UNDEFINE_TPM;
    const unsigned int kMetadataOnly = VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                                       VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                                       VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA;
    const char* name = virDomainGetName(dom);
    const std::string what = std::string("undefine domain ") + (name != nullptr ? name : "?");
    for (unsigned int flags : {kAll, kMetadataOnly, 0u}) {
      int rc = flags == 0 ? virDomainUndefine(dom) : virDomainUndefineFlags(dom, flags);
      if (rc == 0) return Status::Ok();
      int code = LastErrorCode();
      if (code == VIR_ERR_NO_DOMAIN) {
        virResetLastError();
        return Status::Ok();  // gone already
      }
      bool flags_refused = code == VIR_ERR_INVALID_ARG || code == VIR_ERR_NO_SUPPORT ||
                           code == VIR_ERR_OPERATION_UNSUPPORTED;
      if (!flags_refused || flags == 0) return ErrorLocked(what);
      virResetLastError();
    }
    return ErrorLocked(what);
  }

  // Deregisters the callbacks and closes the connection, if any.
  void CloseLocked() {
    connected_.store(false);
    if (conn_ == nullptr) return;
    if (event_id_ >= 0) {
      virConnectDomainEventDeregisterAny(conn_, event_id_);
      event_id_ = -1;
    }
    // Fails harmlessly when the callback already ran (libvirt drops it after calling it).
    virConnectUnregisterCloseCallback(conn_, OnConnectionClosed);
    virConnectClose(conn_);
    conn_ = nullptr;
    token_.reset();
    virResetLastError();
  }

  const std::string uri_;
  const bool enable_events_;
  const CallbackRef callbacks_;
  Status loop_status_;
  std::mutex mu_;  // guards everything below; libvirt calls run under it
  virConnectPtr conn_ = nullptr;
  int event_id_ = -1;
  std::unique_ptr<ConnectionToken> token_;
  std::atomic<bool> connected_{false};
};

// --- LibvirtHypervisor -----------------------------------------------------------------------

LibvirtHypervisor::LibvirtHypervisor(std::string uri, bool enable_events)
    : impl_(std::make_unique<Impl>(std::move(uri), enable_events)) {}

LibvirtHypervisor::~LibvirtHypervisor() = default;

Status LibvirtHypervisor::Connect() { return impl_->Connect(); }
bool LibvirtHypervisor::Connected() const { return impl_->Connected(); }
Result<std::vector<DomainInfo>> LibvirtHypervisor::ListDomains() { return impl_->ListDomains(); }
Status LibvirtHypervisor::DefineAndStart(const std::string& name, const std::string& domain_xml) {
  return impl_->DefineAndStart(name, domain_xml);
}
Status LibvirtHypervisor::DestroyAndUndefine(const std::string& name) {
  return impl_->DestroyAndUndefine(name);
}
Result<HostCapacity> LibvirtHypervisor::Capacity() { return impl_->Capacity(); }
void LibvirtHypervisor::SetEventCallback(EventCallback cb) {
  impl_->SetEventCallback(std::move(cb));
}
void LibvirtHypervisor::SetConnectionCallback(ConnectionCallback cb) {
  impl_->SetConnectionCallback(std::move(cb));
}
Status LibvirtHypervisor::InjectCrash(const std::string& name) { return impl_->InjectCrash(name); }
Result<std::string> LibvirtHypervisor::DomainXml(const std::string& name) {
  return impl_->DomainXml(name);
}
void LibvirtHypervisor::Disconnect() { impl_->Disconnect(); }
const std::string& LibvirtHypervisor::uri() const { return impl_->uri(); }

}  // namespace regen
