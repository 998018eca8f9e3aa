// regen-controller run --config FILE
#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <thread>

#include "common/clock.h"
#include "common/log.h"
#include "common/notify.h"
#include "common/thread_annotations.h"
#include "config/controller_config.h"
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

// The store and the server, started; or the exit status.
int Run(const std::string& config_path) {
  auto config = LoadControllerConfig(config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "regen-controller: %s\n", config.status().message().c_str());
    return 2;
  }
  InitLogging("regen-controller", config->log_level);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(config->database).parent_path(), ec);
  auto store = OpenSqliteStore(config->database);
  if (!store.ok()) {
    spdlog::error("{}", store.status().message());
    return 1;
  }
  RealClock clock;
  ControllerServer server(*config, **store, clock);
  if (Status s = server.Start(); !s.ok()) {
    spdlog::error("{}", s.message());
    return 1;
  }
  spdlog::info(
      "regen-controller started: database={} heartbeat_interval={}ms host_down_after={}ms "
      "fencing_lease={}ms",
      config->database, config->heartbeat_interval.count(), config->host_down_after.count(),
      config->fencing_lease.count());
  // systemd (Type=notify): READY=1 now, WATCHDOG=1 from the main loop, STATUS= now and then.
  SystemdNotifier notifier;
  LoopWatchdog watchdog(
      notifier, [&server](std::function<void()> fn) { server.Post(std::move(fn)); },
      [&server] {
        return server.Call<std::string>([&server] { return StatusLine(server.controller()); });
      });
  watchdog.Start();
  std::unique_ptr<ControllerMetrics> metrics;
  std::unique_ptr<MetricsRefresher> refresher;
  if (!config->metrics_address.empty()) {
    auto m = ControllerMetrics::Start(config->metrics_address, clock.WallMillis());
    if (!m.ok()) {
      spdlog::error("{}", m.status().message());
      watchdog.Stop();
      server.Shutdown();
      return 1;
    }
    metrics = std::move(*m);
    spdlog::info("metrics at http://{}/metrics (port {})", config->metrics_address,
                 metrics->port());
    refresher = std::make_unique<MetricsRefresher>(server, *metrics);
  }
  int sig = 0;
  sigwait(&set, &sig);
  spdlog::info("regen-controller stopping on signal {}", strsignal(sig));
  if (refresher) refresher->Stop();
  watchdog.Stop();
  server.Shutdown();
  return 0;
}

int ControllerMain(int argc, char** argv) {
  CLI::App app{"regen-controller: the Regen cluster controller"};
  app.require_subcommand(1);
  std::string config_path = "/etc/regen/controller.yaml";
  auto* run = app.add_subcommand("run", "run the controller daemon");
  run->add_option("--config,-c", config_path, "controller.yaml")->capture_default_str();
  if (argc > 1 && argv[1][0] != '-' && std::string(argv[1]) != "run") {
    std::fprintf(stderr, "regen-controller: unknown command '%s' (commands: run; see --help)\n",
                 argv[1]);
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return Run(config_path);
}

}  // namespace
}  // namespace regen

int main(int argc, char** argv) { return regen::ControllerMain(argc, argv); }
