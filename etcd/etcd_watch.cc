#include "etcd/etcd_watch.h"

#include <algorithm>

#include "etcd/etcd_channels.h"

namespace regen::etcd {

using std::chrono::milliseconds;

EtcdWatch::EtcdWatch(std::shared_ptr<EtcdClient> client, std::string prefix, int64_t start_revision,
                     EventCallback on_event, BrokenCallback on_broken)
    : client_(std::move(client)),
      prefix_(std::move(prefix)),
      on_event_(std::move(on_event)),
      on_broken_(std::move(on_broken)),
      next_revision_(start_revision) {}

Result<std::unique_ptr<EtcdWatch>> EtcdWatch::Start(std::shared_ptr<EtcdClient> client,
                                                    std::string prefix, int64_t start_revision,
                                                    EventCallback on_event,
                                                    BrokenCallback on_broken,
                                                    milliseconds timeout) {
  std::unique_ptr<EtcdWatch> watch(new EtcdWatch(std::move(client), std::move(prefix),
                                                 start_revision, std::move(on_event),
                                                 std::move(on_broken)));
  watch->thread_ = std::thread([w = watch.get()] { w->Run(); });
  auto deadline = std::chrono::steady_clock::now() + timeout;
  {
    MutexLock lock(watch->mu_);
    while (!watch->created_ && !watch->stop_ && std::chrono::steady_clock::now() < deadline) {
      watch->cv_.wait_until(lock.native(), deadline);
    }
    if (watch->created_) return watch;
  }
  watch->Stop();
  return Unavailable("etcd watch of " + watch->prefix_ + ": no member confirmed it within " +
                     std::to_string(timeout.count()) + " ms (endpoints: " +
                     std::to_string(watch->client_->options().endpoints.size()) + ")");
}

EtcdWatch::~EtcdWatch() { Stop(); }

void EtcdWatch::Stop() {
  {
    MutexLock lock(mu_);
    stop_ = true;
    if (stream_ctx_ != nullptr) stream_ctx_->TryCancel();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool EtcdWatch::Stopped() {
  MutexLock lock(mu_);
  return stop_;
}

void EtcdWatch::Run() {
  for (int attempt = 0;; ++attempt) {
    if (!RunStream(attempt)) return;
    // 100, 200, 400, 800, 1000 ms between attempts that got nothing.
    auto pause = milliseconds(std::min(1000, 100 << std::min(attempt, 4)));
    MutexLock lock(mu_);
    auto until = std::chrono::steady_clock::now() + pause;
    while (!stop_ && std::chrono::steady_clock::now() < until) cv_.wait_until(lock.native(), until);
    if (stop_) return;
  }
}

bool EtcdWatch::RunStream(int attempt) {
  EtcdChannels& channels = client_->channels();
  size_t index = channels.Current();
  grpc::ClientContext ctx;
  channels.Prepare(&ctx, EtcdChannels::Clock::time_point::max(), /*require_leader=*/true);
  {
    MutexLock lock(mu_);
    if (stop_) return false;
    stream_ctx_ = &ctx;
  }
  if (attempt > 0) ++reconnects_;
  auto stream = channels.Stubs(index).watch->Watch(&ctx);
  etcdserverpb::WatchRequest request;
  auto* create = request.mutable_create_request();
  create->set_key(prefix_);
  create->set_range_end(PrefixEnd(prefix_));
  create->set_start_revision(next_revision_);
  bool keep_going = true;
  bool reauthenticate = false;
  etcdserverpb::WatchResponse response;
  if (stream->Write(request)) {
    while (stream->Read(&response)) {
      if (response.compact_revision() > 0) {
        on_broken_(FailedPrecondition(
            "etcd watch of " + prefix_ + ": history compacted up to revision " +
            std::to_string(response.compact_revision()) + ", past revision " +
            std::to_string(next_revision_) + " to resume from: read again and watch anew"));
        keep_going = false;
        break;
      }
      if (response.canceled()) {
        // etcd refused the watch (it says created and canceled at once): with an expired token
        // or one from before a user or role changed, authenticate again before the next attempt.
        const std::string& why = response.cancel_reason();
        reauthenticate = why.find("invalid auth token") != std::string::npos ||
                         why.find("revision of auth store is old") != std::string::npos;
        break;
      }
      if (response.created()) {
        if (next_revision_ == 0) next_revision_ = response.header().revision() + 1;
        MutexLock lock(mu_);
        created_ = true;
        cv_.notify_all();
      }
      for (const auto& e : response.events()) {
        const auto& kv = e.kv();
        WatchEvent event;
        event.type =
            e.type() == mvccpb::Event::DELETE ? WatchEvent::Type::kDelete : WatchEvent::Type::kPut;
        event.kv = {kv.key(),          kv.value(),   kv.create_revision(),
                    kv.mod_revision(), kv.version(), kv.lease()};
        next_revision_ = std::max(next_revision_, kv.mod_revision() + 1);
        on_event_(event);
      }
    }
  }
  ctx.TryCancel();
  stream->Finish();
  {
    MutexLock lock(mu_);
    stream_ctx_ = nullptr;
    if (stop_) return false;
  }
  if (reauthenticate) {
    (void)channels.Authenticate(EtcdChannels::Clock::now() + client_->options().attempt_timeout);
  }
  channels.Advance(index);
  return keep_going;
}

}  // namespace regen::etcd
