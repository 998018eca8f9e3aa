#include "common/tls_reloader.h"

#include <spdlog/spdlog.h>

#include <set>

namespace regen {

namespace {
// The reloaders alive in this process (ReloadAll).
struct LiveReloaders {
  Mutex mu;
  std::set<TlsReloader*> live GUARDED_BY(mu);
};
LiveReloaders& Live() {
  static LiveReloaders* l = new LiveReloaders;  // never destroyed: no order problem at exit
  return *l;
}
}  // namespace

int TlsReloader::ReloadAll() {
  LiveReloaders& l = Live();
  MutexLock lock(l.mu);
  for (TlsReloader* r : l.live) {
    {
      MutexLock rl(r->mu_);
      r->check_now_ = true;
    }
    r->cv_.notify_all();
  }
  return static_cast<int>(l.live.size());
}

Result<std::unique_ptr<TlsReloader>> TlsReloader::Start(const TlsFiles& files,
                                                        std::chrono::milliseconds interval) {
  ASSIGN_OR_RETURN(TlsInputs inputs, ReadTlsInputs(files));
  ASSIGN_OR_RETURN(TlsMaterial material, CheckTlsMaterial(std::move(inputs), files));
  ASSIGN_OR_RETURN(std::unique_ptr<TlsSnapshotDir> dir, TlsSnapshotDir::Create());
  RETURN_IF_ERROR(dir->Publish(material, /*with_identity=*/true));
  std::unique_ptr<TlsReloader> r(new TlsReloader(files, interval, std::move(dir)));
  {
    MutexLock lock(r->mu_);
    r->seen_ = material.inputs;
    r->stats_.published = 1;
  }
  spdlog::info("tls: serving {}", material.summary);
  r->thread_ = std::thread([p = r.get()] { p->Run(); });
  LiveReloaders& l = Live();
  MutexLock lock(l.mu);
  l.live.insert(r.get());
  return r;
}

TlsReloader::TlsReloader(const TlsFiles& files, std::chrono::milliseconds interval,
                         std::unique_ptr<TlsSnapshotDir> dir)
    : files_(files), interval_(interval), current_(dir->current()), dir_(std::move(dir)) {}

TlsReloader::~TlsReloader() {
  {
    LiveReloaders& l = Live();
    MutexLock lock(l.mu);
    l.live.erase(this);
  }
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void TlsReloader::Run() {
  while (true) {
    {
      MutexLock lock(mu_);
      auto until = std::chrono::steady_clock::now() + interval_;
      while (!stop_ && !check_now_ && std::chrono::steady_clock::now() < until) {
        cv_.wait_until(lock.native(), until);
      }
      if (stop_) return;
      check_now_ = false;
    }
    (void)CheckNow();  // logs what it refuses
  }
}

Status TlsReloader::CheckNow() {
  // The files are read outside the lock; one check at a time runs (the thread, or a test).
  Result<TlsInputs> inputs = ReadTlsInputs(files_);
  MutexLock lock(mu_);
  ++stats_.checks;
  Status refused;
  if (!inputs.ok()) {
    refused = inputs.status();
    // A file that cannot be read (e.g. while it is being replaced) is logged once per message.
    if (refused.message() == stats_.last_error) return refused;
  } else {
    if (*inputs == seen_) return Status::Ok();
    seen_ = *inputs;
    Result<TlsMaterial> material = CheckTlsMaterial(std::move(*inputs), files_);
    if (material.ok()) {
      if (Status s = dir_->Publish(*material, /*with_identity=*/true); !s.ok()) {
        refused = s;
        seen_ = TlsInputs{};  // our own copy failed (e.g. a full disk): try again next time
      } else {
        ++stats_.published;
        spdlog::info("tls: re-read the certificate files; new connections get {}",
                     material->summary);
        return Status::Ok();
      }
    } else {
      refused = material.status();
    }
  }
  stats_.last_error = refused.message();
  spdlog::error("tls: keeping the certificates in use: {}", refused.message());
  return refused;
}

TlsReloader::Stats TlsReloader::stats() const {
  MutexLock lock(mu_);
  return stats_;
}

}  // namespace regen
