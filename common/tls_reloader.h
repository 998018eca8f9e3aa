// The controller's certificate reload: a thread re-reads tls.ca, tls.cert, tls.key and tls.crl
// every reload_interval, and at once after ReloadAll() (the daemon's SIGHUP); a changed set that
// passes CheckTlsMaterial is copied into the private directory gRPC's file watcher reads (new
// connections use it within about a second), a broken one is logged (naming the file) and the set
// in use is kept. Any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "common/grpc_tls.h"
#include "common/thread_annotations.h"
#include "common/tls_material.h"

namespace regen {

class TlsReloader {
 public:
  // Reads and checks the files (errors name the field and the path: the server must not start),
  // publishes them and starts the thread.
  static Result<std::unique_ptr<TlsReloader>> Start(const TlsFiles& files,
                                                    std::chrono::milliseconds interval);
  ~TlsReloader();  // stops the thread and removes the private copies
  TlsReloader(const TlsReloader&) = delete;
  TlsReloader& operator=(const TlsReloader&) = delete;

  // What gRPC reads: DIR/current/{ca,cert,key}.pem and the hashed CRL directory DIR/current/crl.
  std::string ca_path() const { return current_ + "/ca.pem"; }
  std::string cert_path() const { return current_ + "/cert.pem"; }
  std::string key_path() const { return current_ + "/key.pem"; }
  std::string crl_dir() const { return current_ + "/crl"; }

  // One re-read now (the thread's step): OK when nothing changed or the new set was published;
  // the error (also logged) when the new set was refused.
  Status CheckNow() EXCLUDES(mu_);

  // Wakes every live reloader of the process for a re-read now (SIGHUP; does not wait for it).
  // Returns how many there are. Any thread.
  static int ReloadAll();

  struct Stats {
    uint64_t checks = 0;     // re-reads done
    uint64_t published = 0;  // sets handed to gRPC, the first one included
    std::string last_error;  // why the last refused set was refused ("" = none yet)
  };
  Stats stats() const EXCLUDES(mu_);

 private:
  TlsReloader(const TlsFiles& files, std::chrono::milliseconds interval,
              std::unique_ptr<TlsSnapshotDir> dir);
  void Run() EXCLUDES(mu_);

  const TlsFiles files_;
  const std::chrono::milliseconds interval_;
  const std::string current_;
  mutable Mutex mu_;
  std::condition_variable cv_;
  bool stop_ GUARDED_BY(mu_) = false;
  bool check_now_ GUARDED_BY(mu_) = false;  // ReloadAll: do not wait for the interval
  std::unique_ptr<TlsSnapshotDir> dir_ GUARDED_BY(mu_);
  TlsInputs seen_ GUARDED_BY(mu_);  // the last set looked at, published or refused
  Stats stats_ GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace regen
