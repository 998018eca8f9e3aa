// The controller daemon: one main loop thread owns the Controller (controller.h); gRPC threads
// serve AgentService (one bidirectional stream per agent, with a writer thread per session) and
// AdminService (regenctl), and post their work to the loop. Start/Shutdown from one thread.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>

#include "common/clock.h"
#include "common/event_loop.h"
#include "common/grpc_tls.h"
#include "config/controller_config.h"
#include "controller/auth.h"
#include "controller/controller.h"
#include "controller/dns_wiring.h"
#include "controller/notifications.h"
#include "controller/store.h"
#include "controller/stream_guards.h"

namespace grpc {
class Server;
class ServerContextBase;
class ServerCredentials;
class Service;
class Status;
}  // namespace grpc

namespace regen {

// What the controller listens with: mutual TLS with config.tls (a client certificate required
// unless auth has tokens), or plaintext with config.insecure. The standby (controller/ha_standby.h)
// listens with the same. The files are re-read every tls.reload_interval while the returned
// reloader is kept.
Result<ServerTls> ControllerServerCredentials(const ControllerConfig& config);

// How the controller's RPCs take a call apart, shared with the standby's reads (controller/
// ha_standby.h): what the call presented (the verified client certificate's names, the
// authorization metadata), and a Status as the gRPC status the client gets.
Caller CallerOf(const grpc::ServerContextBase* context);
grpc::Status ToGrpc(const Status& s);

class ControllerServer {
 public:
  ControllerServer(const ControllerConfig& config, Store& store, Clock& clock);
  ~ControllerServer();

  // Loads the state, starts the loop and listens on config.listen_address: mutual TLS with
  // config.tls (agents must present a certificate naming their host, regenctl a certificate or
  // token of config.auth), or plaintext with config.insecure (warned about). Fails (and starts
  // nothing) when the state cannot be loaded, the certificates or tokens cannot be read or the
  // address cannot be bound.
  Status Start();
  // The HA mode: heartbeats are acknowledged only while `leading()` (this controller's election
  // lease still runs; called on gRPC threads, must be cheap). Set before Start.
  void SetLeadershipCheck(std::function<bool()> leading) { leading_ = std::move(leading); }
  bool Leading() const { return !leading_ || leading_(); }  // any thread
  void Shutdown();
  // Bounds on agent streams and event followers (controller/stream_guards.h). Before Start.
  void SetStreamLimits(const StreamLimits& limits) { limits_ = limits; }
  const StreamLimits& limits() const { return limits_; }
  HelloTimer& hello_timer() { return *hello_timer_; }           // set by Start; any thread
  StreamSlots& pending_hellos() { return *pending_hellos_; }    // likewise
  StreamSlots& event_followers() { return *event_followers_; }  // likewise
  // The port actually bound (useful with "127.0.0.1:0").
  int port() const { return port_; }

  // Runs `fn` on the main loop. An exception it throws (a bug) is caught there and logged, and
  // the controller re-reads its store before its next write (Controller::OnStepException): the
  // process, and so every agent's lease, goes on.
  void Post(std::function<void()> fn) {
    loop_.Post([this, fn = std::move(fn)] {
      try {
        fn();
      } catch (...) {
        (void)OnStepException(std::current_exception());
      }
    });
  }
  // Runs `fn` on the main loop and returns its result (never from the main loop itself). An
  // exception is handled as Post's; a Status or Result caller gets INTERNAL, any other gets the
  // exception rethrown on its gRPC thread (gRPC answers UNKNOWN).
  template <typename T>
  T Call(std::function<T()> fn) {
    return loop_.Call<T>([this, fn = std::move(fn)]() -> T {
      try {
        return fn();
      } catch (...) {
        Status failed = OnStepException(std::current_exception());
        if constexpr (std::is_constructible_v<T, Status>) {
          return T(failed);
        } else {
          throw;
        }
      }
    });
  }
  // Waits (up to `timeout`) for an event after `after`; true if one may be there.
  bool WaitForEvent(int64_t after, std::chrono::milliseconds timeout);

  Controller& controller() { return controller_; }               // main loop thread only
  LeaseKeeper& leases() { return controller_.leases(); }         // any thread
  const Authorizer& authorizer() const { return *authorizer_; }  // set by Start; any thread
  bool tls() const { return config_.tls.enabled(); }
  const ControllerConfig& config() const { return config_; }
  // The DNS wiring (null when controller.yaml has no dns.server).
  DnsWiring* dns() { return dns_.wiring.get(); }

 private:
  // Starts the main loop: posted tasks, and the controller's timers every tick.
  void StartLoop();
  // Main loop: logs an exception a task threw and has the controller re-read its store; the
  // INTERNAL status that tells the caller.
  Status OnStepException(std::exception_ptr error);

  const ControllerConfig config_;
  std::function<bool()> leading_;  // set before Start; null = always (embedded)
  Clock& clock_;
  Store& store_;  // main loop thread only (the controller's and the DNS wiring's)
  Controller controller_;
  std::unique_ptr<Authorizer> authorizer_;
  std::shared_ptr<TlsReloader> tls_reloader_;  // re-reads the tls files (set by Start)
  StreamLimits limits_;
  std::unique_ptr<HelloTimer> hello_timer_;
  std::unique_ptr<StreamSlots> pending_hellos_;
  std::unique_ptr<StreamSlots> event_followers_;
  std::unique_ptr<grpc::Service> agent_service_;
  std::unique_ptr<grpc::Service> admin_service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;

  EventLoop loop_;  // the main loop

  std::mutex events_mu_;
  std::condition_variable events_cv_;
  int64_t last_event_ = 0;  // guarded by events_mu_

  InstanceNotifier notifier_;  // after controller_: its listener goes before the controller does
  DnsWiringParts dns_;         // likewise
};

}  // namespace regen
