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
#include "config/controller_config.h"
#include "controller/metrics.h"
#include "controller/server.h"
#include "controller/store.h"

namespace regen {
namespace {

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
        return server.Call<std::string>([&server] {
          int up = 0;
          const v1::ListHostsResponse hosts = server.controller().ListHosts();
          for (const auto& h : hosts.hosts()) up += h.state() == "up";
          int running = 0;
          for (const auto& [name, inst] : server.controller().instances())
            running += inst.state == "running";
          return std::to_string(up) + " hosts up, " + std::to_string(running) +
                 " instances running";
        });
      });
  watchdog.Start();
  // Prometheus metrics: refreshed on the main loop every second, served by their own thread.
  std::unique_ptr<ControllerMetrics> metrics;
  std::thread metrics_refresher;
  std::mutex metrics_mu;
  std::condition_variable metrics_cv;
  bool stopping = false;
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
    metrics_refresher = std::thread([&] {
      std::unique_lock lock(metrics_mu);
      while (!metrics_cv.wait_for(lock, std::chrono::seconds(1), [&] { return stopping; })) {
        lock.unlock();
        server.Call<bool>([&] {
          metrics->Refresh(server.controller());
          return true;
        });
        lock.lock();
      }
    });
  }
  int sig = 0;
  sigwait(&set, &sig);
  spdlog::info("regen-controller stopping on signal {}", strsignal(sig));
  if (metrics_refresher.joinable()) {
    {
      std::lock_guard lock(metrics_mu);
      stopping = true;
    }
    metrics_cv.notify_all();
    metrics_refresher.join();
  }
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
