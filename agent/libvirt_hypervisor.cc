// The libvirt seam: connection and domain operations. libvirt is included only here and in
// libvirt_events.{h,cc} (its event loop and callbacks), the two halves of this module.
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
#include "agent/libvirt_events.h"
#include "common/text.h"

namespace regen {

using libvirt_internal::AcquireEventLoop;
using libvirt_internal::CallbackRef;
using libvirt_internal::CallbackState;
using libvirt_internal::ConnectionToken;
using libvirt_internal::DeleteCallbackRef;
using libvirt_internal::OnConnectedTimer;
using libvirt_internal::OnConnectionClosed;
using libvirt_internal::OnLifecycleEvent;
using libvirt_internal::ReleaseEventLoop;

namespace {

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

// Holds a reference on a connection (virConnectRef) and drops it on scope exit: a create or
// destroy runs on it without the hypervisor's mutex, so several run at once (libvirt's
// connections are thread-safe) and a reconnect meanwhile only fails them.
class ConnectionRef {
 public:
  explicit ConnectionRef(virConnectPtr conn) : conn_(conn) {}
  ~ConnectionRef() {
    if (conn_ != nullptr) virConnectClose(conn_);
  }
  ConnectionRef(ConnectionRef&& other) noexcept : conn_(other.conn_) { other.conn_ = nullptr; }
  ConnectionRef(const ConnectionRef&) = delete;
  ConnectionRef& operator=(const ConnectionRef&) = delete;
  ConnectionRef& operator=(ConnectionRef&&) = delete;
  virConnectPtr get() const { return conn_; }

 private:
  virConnectPtr conn_;
};

int LastErrorCode() {
  virErrorPtr err = virGetLastError();
  return err != nullptr ? err->code : VIR_ERR_OK;
}

std::string LastErrorMessage() {
  // Text from outside: valid UTF-8 and bounded before it goes into a Status, a report or a log.
  const char* message = virGetLastErrorMessage();
  return message != nullptr ? SanitizeText(message) : "unknown libvirt error";
}

}  // namespace

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
      MutexLock lock(callbacks_->mu);  // waits for a callback in flight
      callbacks_->enabled = false;
    }
    {
      MutexLock lock(mu_);
      CloseLocked();
    }
    if (loop_status_.ok()) ReleaseEventLoop();
  }

  Status Connect() {
    MutexLock lock(mu_);
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
    libvirt_internal::HandOff(token_.get());
    if (virConnectRegisterCloseCallback(conn_, OnConnectionClosed, token_.get(), nullptr) < 0) {
      Status s = ErrorLocked("register the close callback");
      CloseLocked();
      return s;
    }
    if (enable_events_) {
      auto* ref = new CallbackRef(callbacks_);
      libvirt_internal::HandOff(ref);
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
    libvirt_internal::HandOff(ref);
    if (virEventAddTimeout(0, OnConnectedTimer, ref, DeleteCallbackRef) < 0) delete ref;
    return Status::Ok();
  }

  bool Connected() const { return connected_.load(); }

  void Disconnect() {
    MutexLock lock(mu_);
    CloseLocked();
  }

  Result<std::vector<DomainInfo>> ListDomains() {
    MutexLock lock(mu_);
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
    ASSIGN_OR_RETURN(ConnectionRef ref, Acquire());
    virConnectPtr conn = ref.get();
    {
      DomainRef existing(virDomainLookupByName(conn, name.c_str()));
      if (existing) {
        return AlreadyExists("domain " + name + " already exists on " + uri_ +
                             " (destroy and undefine it first)");
      }
      if (LastErrorCode() != VIR_ERR_NO_DOMAIN) return ErrorOn(conn, "look up domain " + name);
    }
    // Defining XML that names another, existing domain would replace that domain's definition.
    if (domain_xml.find("<name>" + XmlEscape(name) + "</name>") == std::string::npos) {
      return InvalidArgument("define domain " + name + " on " + uri_ + ": the XML has no <name>" +
                             name + "</name>");
    }
    DomainRef dom(virDomainDefineXML(conn, domain_xml.c_str()));
    if (!dom) return ErrorOn(conn, "define domain " + name);
    const char* defined_name = virDomainGetName(dom.get());
    if (defined_name == nullptr || name != defined_name) {
      return Internal("define domain " + name + " on " + uri_ + ": libvirt defined " +
                      (defined_name != nullptr ? std::string(defined_name) : "a nameless domain") +
                      " instead; left as it is, check the XML");
    }
    if (virDomainCreate(dom.get()) < 0) {
      Status s = ErrorOn(conn, "start domain " + name);
      if (Status undo = Undefine(conn, dom.get()); !undo.ok()) {
        return Status(s.code(),
                      s.message() + "; undefining it again failed too: " + undo.message());
      }
      return s;
    }
    return Status::Ok();
  }

  Status DestroyAndUndefine(const std::string& name) {
    ASSIGN_OR_RETURN(ConnectionRef ref, Acquire());
    virConnectPtr conn = ref.get();
    DomainRef dom(virDomainLookupByName(conn, name.c_str()));
    if (!dom) {
      if (LastErrorCode() == VIR_ERR_NO_DOMAIN) {
        return NotFound("no domain " + name + " on " + uri_);
      }
      return ErrorOn(conn, "look up domain " + name);
    }
    int active = virDomainIsActive(dom.get());
    if (active < 0) {
      if (LastErrorCode() == VIR_ERR_NO_DOMAIN) return Status::Ok();  // vanished meanwhile
      return ErrorOn(conn, "query domain " + name);
    }
    if (active == 1 && virDomainDestroy(dom.get()) < 0) {
      int code = LastErrorCode();
      if (code == VIR_ERR_NO_DOMAIN) return Status::Ok();  // a transient domain, gone
      if (code != VIR_ERR_OPERATION_INVALID) return ErrorOn(conn, "destroy domain " + name);
      virResetLastError();  // "domain is not running": it stopped by itself meanwhile
    }
    int persistent = virDomainIsPersistent(dom.get());
    if (persistent == 0) return Status::Ok();  // transient: destroying removed it
    if (persistent < 0) {
      if (LastErrorCode() == VIR_ERR_NO_DOMAIN) return Status::Ok();
      return ErrorOn(conn, "query domain " + name);
    }
    return Undefine(conn, dom.get());
  }

  Result<HostCapacity> Capacity() {
    MutexLock lock(mu_);
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

  Result<std::string> DriverName() {
    MutexLock lock(mu_);
    RETURN_IF_ERROR(RequireConnectionLocked());
    const char* type = virConnectGetType(conn_);
    if (type == nullptr) return ErrorLocked("get the driver type");
    return std::string(type);
  }

  Result<std::string> DomainCapabilities(const std::string& virttype) {
    MutexLock lock(mu_);
    RETURN_IF_ERROR(RequireConnectionLocked());
    char* xml =
        virConnectGetDomainCapabilities(conn_, nullptr, nullptr, nullptr, virttype.c_str(), 0);
    if (xml == nullptr) return ErrorLocked("get the domain capabilities for type " + virttype);
    std::string out = xml;
    free(xml);  // NOLINT: allocated by libvirt with malloc
    return out;
  }

  void SetEventCallback(EventCallback cb) {
    MutexLock lock(callbacks_->mu);
    callbacks_->event_cb = std::move(cb);
  }

  void SetConnectionCallback(ConnectionCallback cb) {
    MutexLock lock(callbacks_->mu);
    callbacks_->connection_cb = std::move(cb);
  }

  Status InjectCrash(const std::string& name) {
    MutexLock lock(mu_);
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
    MutexLock lock(mu_);
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
  Status RequireConnectionLocked() REQUIRES(mu_) {
    if (conn_ == nullptr || !connected_.load()) {
      return Unavailable("not connected to libvirt at " + uri_ + " (Connect() first)");
    }
    return Status::Ok();
  }

  // A reference on the open connection, for a call made without mu_.
  Result<ConnectionRef> Acquire() {
    MutexLock lock(mu_);
    RETURN_IF_ERROR(RequireConnectionLocked());
    if (virConnectRef(conn_) < 0) return ErrorLocked("take a reference on the connection");
    return ConnectionRef(conn_);
  }

  Status ErrorLocked(const std::string& what) REQUIRES(mu_) { return ErrorOn(conn_, what); }

  // Turns this thread's last libvirt error into a Status naming `what` and the URI. Marks the
  // connection lost when libvirt says `conn` is.
  Status ErrorOn(virConnectPtr conn, const std::string& what) {
    int code = LastErrorCode();
    std::string message = what + " on " + uri_ + ": " + LastErrorMessage();
    virResetLastError();
    if (conn != nullptr && virConnectIsAlive(conn) == 0) {
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
  Status DescribeLocked(virDomainPtr dom, DomainInfo& info, bool& vanished) REQUIRES(mu_) {
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
  Status Undefine(virConnectPtr conn, virDomainPtr dom) {
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
      if (!flags_refused || flags == 0) return ErrorOn(conn, what);
      virResetLastError();
    }
    return ErrorOn(conn, what);
  }

  // Deregisters the callbacks and closes the connection, if any.
  void CloseLocked() REQUIRES(mu_) {
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
  Mutex mu_;  // libvirt calls run under it
  virConnectPtr conn_ GUARDED_BY(mu_) = nullptr;
  int event_id_ GUARDED_BY(mu_) = -1;
  std::unique_ptr<ConnectionToken> token_ GUARDED_BY(mu_);
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
Result<std::string> LibvirtHypervisor::DriverName() { return impl_->DriverName(); }
Result<std::string> LibvirtHypervisor::DomainCapabilities(const std::string& virttype) {
  return impl_->DomainCapabilities(virttype);
}
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
