// FakeAgentService: a scripted controller for tests of the agent's ControllerLink, serving
// AgentService.Connect on loopback with a real gRPC server. It records every Hello (with its
// arrival time) and heartbeat, acks each heartbeat with the lease, interval and maintenance hold
// the test sets, answers each Hello with the desired set the test sets, and can go away and come
// back on the same port (a controller crash and restart). As a standby (HA) it answers every
// Connect with UNAVAILABLE "standby controller; the active controller is at X" and counts them.
// Header-only; link regen_proto.
// Public methods are thread-safe.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/proto/regen.grpc.pb.h"
#include "common/thread_annotations.h"

namespace regen::testing {

class FakeAgentService final : public v1::AgentService::Service {
 public:
  struct HelloSeen {
    v1::Hello hello;
    std::chrono::steady_clock::time_point at;
  };

  ~FakeAgentService() override { Stop(); }

  // Listens on 127.0.0.1:`port` (0: any free port; port() tells which). False if it cannot bind.
  bool Start(int port = 0) {
    grpc::ServerBuilder builder;
    int selected = 0;
    builder.AddListeningPort("127.0.0.1:" + std::to_string(port), grpc::InsecureServerCredentials(),
                             &selected);
    builder.RegisterService(this);
    auto server = builder.BuildAndStart();
    if (!server || selected == 0) return false;
    MutexLock lock(mu_);
    server_ = std::move(server);
    port_ = selected;
    return true;
  }
  // Goes away at once: open streams are cancelled, nothing listens on the port any more.
  void Stop() {
    std::unique_ptr<grpc::Server> server;
    {
      MutexLock lock(mu_);
      server.swap(server_);
    }
    if (!server) return;
    server->Shutdown(std::chrono::system_clock::now());
    server->Wait();
  }
  int port() {
    MutexLock lock(mu_);
    return port_;
  }

  // What each ack says from now on.
  void SetAck(int64_t fencing_lease_ms, int64_t heartbeat_interval_ms, int64_t hold_ms) {
    MutexLock lock(mu_);
    lease_ms_ = fencing_lease_ms;
    interval_ms_ = heartbeat_interval_ms;
    hold_ms_ = hold_ms;
  }
  // What each ack says as host_down_after_ms from now on (0: not said).
  void SetHostDownAfter(int64_t host_down_after_ms) {
    MutexLock lock(mu_);
    host_down_after_ms_ = host_down_after_ms;
  }
  // Sent right after each Hello (nullopt: none).
  void SetDesired(std::optional<v1::DesiredInstances> desired) {
    MutexLock lock(mu_);
    desired_ = std::move(desired);
  }

  // A standby naming `active` ("unknown" when empty); nullopt: the active controller again.
  void SetStandby(std::optional<std::string> active) {
    MutexLock lock(mu_);
    standby_ = std::move(active);
  }
  int64_t standby_refusals() {
    MutexLock lock(mu_);
    return standby_refusals_;
  }
  std::string address() { return "127.0.0.1:" + std::to_string(port()); }

  std::vector<HelloSeen> hellos() {
    MutexLock lock(mu_);
    return hellos_;
  }
  std::vector<v1::Heartbeat> heartbeats() {
    MutexLock lock(mu_);
    return heartbeats_;
  }
  std::vector<v1::DomainsReport> reports() {
    MutexLock lock(mu_);
    return reports_;
  }
  std::vector<v1::DomainEvent> events() {
    MutexLock lock(mu_);
    return events_;
  }

  grpc::Status Connect(
      grpc::ServerContext* /*context*/,
      grpc::ServerReaderWriter<v1::ControllerMessage, v1::AgentMessage>* stream) override {
    {
      MutexLock lock(mu_);
      if (standby_) {
        ++standby_refusals_;
        return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                            "standby controller; the active controller is at " +
                                (standby_->empty() ? std::string("unknown") : *standby_));
      }
    }
    v1::AgentMessage msg;
    if (!stream->Read(&msg) || !msg.has_hello()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "first message must be Hello");
    }
    std::optional<v1::DesiredInstances> desired;
    {
      MutexLock lock(mu_);
      hellos_.push_back({msg.hello(), std::chrono::steady_clock::now()});
      desired = desired_;
    }
    if (desired) {
      v1::ControllerMessage out;
      *out.mutable_action()->mutable_desired() = *desired;
      if (!stream->Write(out)) return grpc::Status::OK;
    }
    while (stream->Read(&msg)) {
      if (msg.has_domains_report() || msg.has_domain_event()) {
        MutexLock lock(mu_);
        if (msg.has_domains_report()) reports_.push_back(msg.domains_report());
        if (msg.has_domain_event()) events_.push_back(msg.domain_event());
        continue;
      }
      if (!msg.has_heartbeat()) continue;
      v1::ControllerMessage ack;
      {
        MutexLock lock(mu_);
        heartbeats_.push_back(msg.heartbeat());
        auto* a = ack.mutable_heartbeat_ack();
        a->set_sequence(msg.heartbeat().sequence());
        a->set_fencing_lease_ms(lease_ms_);
        a->set_heartbeat_interval_ms(interval_ms_);
        a->set_hold_ms(hold_ms_);
        a->set_host_down_after_ms(host_down_after_ms_);
      }
      if (!stream->Write(ack)) break;
    }
    return grpc::Status::OK;
  }

 private:
  Mutex mu_;
  std::unique_ptr<grpc::Server> server_ GUARDED_BY(mu_);
  int port_ GUARDED_BY(mu_) = 0;
  int64_t lease_ms_ GUARDED_BY(mu_) = 3000;
  int64_t interval_ms_ GUARDED_BY(mu_) = 500;
  int64_t hold_ms_ GUARDED_BY(mu_) = 0;
  int64_t host_down_after_ms_ GUARDED_BY(mu_) = 0;
  std::optional<v1::DesiredInstances> desired_ GUARDED_BY(mu_);
  std::optional<std::string> standby_ GUARDED_BY(mu_);
  int64_t standby_refusals_ GUARDED_BY(mu_) = 0;
  std::vector<HelloSeen> hellos_ GUARDED_BY(mu_);
  std::vector<v1::DomainsReport> reports_ GUARDED_BY(mu_);
  std::vector<v1::DomainEvent> events_ GUARDED_BY(mu_);
  std::vector<v1::Heartbeat> heartbeats_ GUARDED_BY(mu_);
};

}  // namespace regen::testing
