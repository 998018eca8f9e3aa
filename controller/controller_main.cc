// regen-controller run --config FILE: the embedded mode (store: sqlite) or the HA mode (store:
// etcd: a standby until elected, controller/ha_controller.h). regen-controller etcd ...: etcd's
// users and roles for the HA mode (controller/etcd_setup.h).
#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>

#include "common/clock.h"
#include "common/log.h"
#include "common/notify.h"
#include "common/thread_annotations.h"
#include "common/tls_reloader.h"
#include "config/controller_config.h"
#include "controller/etcd_setup.h"
#include "controller/ha_controller.h"
#include "controller/host_leases.h"
#include "controller/metrics.h"
#include "controller/server.h"
#include "controller/store.h"

namespace regen {
namespace {

// "2 hosts up, 6 instances running" for systemd's STATUS= (main loop thread).
std::string StatusLine(const Controller& controller) {
  int up = 0;
  const v1::ListHostsResponse hosts = controller.ListHosts();
  for (const auto& h : hosts.hosts()) up += h.state() == "up";
  int running = 0;
  for (const auto& [name, inst] : controller.instances()) {
    running += inst.state == InstanceState::kRunning;
  }
  return std::to_string(up) + " hosts up, " + std::to_string(running) + " instances running";
}

// Refreshes the Prometheus metrics on the main loop every second (they are served by their own
// thread). Stop() before the server shuts down.
class MetricsRefresher {
 public:
  MetricsRefresher(ControllerServer& server, ControllerMetrics& metrics)
      : server_(server), metrics_(metrics), thread_([this] { Loop(); }) {}
  ~MetricsRefresher() { Stop(); }
  void Stop() {
    {
      MutexLock lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Loop() {
    MutexLock lock(mu_);
    while (!stopping_) {
      cv_.wait_for(lock.native(), std::chrono::seconds(1));
      if (stopping_) break;
      lock.native().unlock();
      server_.Call<bool>([this] {
        metrics_.Refresh(server_.controller());
        return true;
      });
      lock.native().lock();
    }
  }

  ControllerServer& server_;
  ControllerMetrics& metrics_;
  Mutex mu_;
  std::condition_variable cv_;
  bool stopping_ GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: started once the rest is ready
};

// Waits for SIGTERM or SIGINT on its own thread (both are blocked in every thread: Block() before
// any thread starts) and runs `on_signal` there, once. Wait() returns after it ran. SIGHUP
// (blocked too) only makes every TLS reloader re-read its files now. Construct, Wait and destroy
// from the main thread.
class SignalWaiter {
 public:
  static void Block() {
    sigset_t set = Set();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
  }
  explicit SignalWaiter(std::function<void()> on_signal)
      : on_signal_(std::move(on_signal)), thread_([this] { Loop(); }) {}
  ~SignalWaiter() {
    // No signal came (an error path): wake the thread with one of its own.
    if (!Signalled()) pthread_kill(thread_.native_handle(), SIGTERM);
    thread_.join();
  }
  // The signal's number once one came.
  int Wait() {
    MutexLock lock(mu_);
    while (signal_ == 0) cv_.wait(lock.native());
    return signal_;
  }

 private:
  static sigset_t Set() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    return set;
  }
  bool Signalled() {
    MutexLock lock(mu_);
    return signal_ != 0;
  }
  void Loop() {
    sigset_t set = Set();
    int sig = 0;
    while (sigwait(&set, &sig) == 0 && sig == SIGHUP) {
      if (int n = TlsReloader::ReloadAll(); n > 0) {
        spdlog::info("SIGHUP: re-reading the TLS files (tls: in controller.yaml) now");
      } else {
        spdlog::info("SIGHUP: nothing to re-read (no tls: in controller.yaml)");
      }
    }
    on_signal_();
    {
      MutexLock lock(mu_);
      signal_ = sig;
    }
    cv_.notify_all();
  }

  std::function<void()> on_signal_;
  Mutex mu_;
  std::condition_variable cv_;
  int signal_ GUARDED_BY(mu_) = 0;
  std::thread thread_;  // last: started once the rest is ready
};

// systemd's READY=1, STATUS= and WATCHDOG=1 over the daemon's whole life: from the main loop of
// the ControllerServer once one serves, from the watchdog's own thread before (an HA standby,
// which has no main loop: `standby_status` gives its STATUS= line). Main thread only, except
// that the ticker calls Post/StatusNow.
class DaemonWatchdog {
 public:
  explicit DaemonWatchdog(std::function<std::string()> standby_status)
      : standby_status_(std::move(standby_status)),
        watchdog_(
            notifier_, [this](std::function<void()> fn) { Post(std::move(fn)); },
            [this] { return StatusNow(); }) {}
  void Start() { watchdog_.Start(); }
  void Stop() { watchdog_.Stop(); }
  // The server whose main loop pings from now on (null: none); it must outlive Stop().
  void SetServer(ControllerServer* server) { server_ = server; }

 private:
  void Post(std::function<void()> fn) {
    if (ControllerServer* s = server_.load()) {
      s->Post(std::move(fn));
    } else {
      fn();
    }
  }
  std::string StatusNow() {
    if (ControllerServer* s = server_.load()) {
      return s->Call<std::string>([s] { return StatusLine(s->controller()); });
    }
    return standby_status_();
  }

  SystemdNotifier notifier_;
  std::function<std::string()> standby_status_;
  std::atomic<ControllerServer*> server_{nullptr};
  LoopWatchdog watchdog_;
};

// The server on `store` until a signal (and metrics if configured); then the exit status. With
// `ha`, the leadership is given up once the server stopped.
int Serve(const ControllerConfig& config, Store& store, Clock& clock, SignalWaiter& signals,
          DaemonWatchdog& watchdog, HaController* ha, const HostLeaseSource* host_leases) {
  ControllerServer server(config, store, clock);
  if (ha != nullptr) server.SetLeadershipCheck([ha] { return ha->Leading(); });
  server.controller().SetHostLeases(host_leases);
  if (Status s = server.Start(); !s.ok()) {
    spdlog::error("{}", s.message());
    watchdog.Stop();
    if (ha != nullptr) ha->Resign();
    return 1;
  }
  spdlog::info(
      "regen-controller started: store={} heartbeat_interval={}ms host_down_after={}ms "
      "fencing_lease={}ms",
      config.store == "etcd" ? "etcd " + config.etcd.prefix : "sqlite " + config.database,
      config.heartbeat_interval.count(), config.host_down_after.count(),
      config.fencing_lease.count());
  watchdog.SetServer(&server);
  watchdog.Start();  // the embedded mode's first start; a no-op after a standby's
  std::unique_ptr<ControllerMetrics> metrics;
  std::unique_ptr<MetricsRefresher> refresher;
  if (!config.metrics_address.empty()) {
    auto m = ControllerMetrics::Start(config.metrics_address, clock.WallMillis());
    if (!m.ok()) {
      spdlog::error("{}", m.status().message());
      watchdog.Stop();
      server.Shutdown();
      if (ha != nullptr) ha->Resign();
      return 1;
    }
    metrics = std::move(*m);
    spdlog::info("metrics at http://{}/metrics (port {})", config.metrics_address, metrics->port());
    refresher = std::make_unique<MetricsRefresher>(server, *metrics);
  }
  int sig = signals.Wait();
  spdlog::info("regen-controller stopping on signal {}", strsignal(sig));
  if (refresher) refresher->Stop();
  watchdog.Stop();
  server.Shutdown();
  if (ha != nullptr) ha->Resign();
  return 0;
}

// The HA mode: a standby until elected, then the server on the etcd store.
int RunHa(const ControllerConfig& config, Clock& clock) {
  HaController ha(config);
  SignalWaiter signals([&ha] { ha.Stop(); });
  DaemonWatchdog watchdog([&ha] {
    std::string active = ha.ActiveAddress();
    return "standby; the active controller is at " + (active.empty() ? "unknown" : active);
  });
  if (Status s = ha.StartStandby(); !s.ok()) {
    spdlog::error("{}", s.message());
    return 1;
  }
  watchdog.Start();
  Result<Store*> store = ha.WaitUntilActive();
  if (!store.ok()) {
    watchdog.Stop();
    ha.Resign();
    if (ha.stopped()) {
      spdlog::info("regen-controller stopping on signal {} (standby)", strsignal(signals.Wait()));
      return 0;
    }
    spdlog::error("{}", store.status().message());
    return 1;
  }
  // The hosts' leases: read once, then watched (a broken watch could miss a host's end: a
  // standby, or this controller restarted, reads them afresh).
  auto host_leases = HostLeaseWatch::Start(
      ha.client(), config.etcd.prefix, std::chrono::seconds(10), [](const Status& s) {
        Deposed("the watch of the hosts' leases in etcd broke: " + s.message());
      });
  if (!host_leases.ok()) {
    watchdog.Stop();
    ha.Resign();
    spdlog::error("{}", host_leases.status().message());
    return 1;
  }
  return Serve(config, **store, clock, signals, watchdog, &ha, host_leases->get());
}

// The store and the server, started; or the exit status.
int Run(const std::string& config_path) {
  auto config = LoadControllerConfig(config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "regen-controller: %s\n", config.status().message().c_str());
    return 2;
  }
  InitLogging("regen-controller", config->log_level);
  SignalWaiter::Block();
  signal(SIGPIPE, SIG_IGN);
  RealClock clock;
  if (config->store == "etcd") return RunHa(*config, clock);

  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(config->database).parent_path(), ec);
  auto store = OpenSqliteStore(config->database);
  if (!store.ok()) {
    spdlog::error("{}", store.status().message());
    return 1;
  }
  SignalWaiter signals([] {});
  DaemonWatchdog watchdog([] { return std::string("starting"); });
  return Serve(*config, **store, clock, signals, watchdog, nullptr, nullptr);
}

int ControllerMain(int argc, char** argv) {
  CLI::App app{"regen-controller: the Regen cluster controller"};
  app.require_subcommand(1);
  std::string config_path = "/etc/regen/controller.yaml";
  auto* run = app.add_subcommand("run", "run the controller daemon");
  run->add_option("--config,-c", config_path, "controller.yaml")->capture_default_str();
  app.add_option("--config,-c", config_path, "controller.yaml")->capture_default_str();
  EtcdSetupCommand etcd_setup(app, &config_path);
  if (argc > 1 && argv[1][0] != '-' && std::string(argv[1]) != "run" &&
      std::string(argv[1]) != "etcd") {
    std::fprintf(stderr,
                 "regen-controller: unknown command '%s' (commands: run, etcd; see --help)\n",
                 argv[1]);
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help; else a usage error
  }
  if (etcd_setup.parsed()) return etcd_setup.Run();
  return Run(config_path);
}

}  // namespace
}  // namespace regen

int main(int argc, char** argv) { return regen::ControllerMain(argc, argv); }
