// Fleet benchmark: a real regen-controller process (embedded mode, SQLite, the default timings)
// and N simulated agents (fleet_agents.h: real gRPC streams, no hypervisor) in this process. For
// each N it deploys services of --service-size instances up to --instances, then measures:
//   steady     controller CPU % and RSS, heartbeats acked per second, over 10 s (--steady-seconds)
//   heal       one instance crashes (its agent's DomainEvent): event -> a host told to re-create it
//              (decision), event -> each agent whose slice changed acked the new revision (per
//              agent p50/p99), event -> the last ack (converged), topology bytes sent
//   rack       the hosts holding --rack instances vanish: -> declared down, -> all re-created,
//              -> all agents converged
//   restart    kill -9 of the controller, started again at once: -> listening, -> every agent's
//              lease renewed again; fences and heals afterwards (both must be 0)
// Figures are printed, never asserted; the exit status is non-zero when a phase did not finish
// (or a restart fenced or healed anything).
//
//   fleet_bench --controller PATH [--hosts N[,N...]] [--instances I] [--service-size S]
//               [--heals R] [--rack R] [--steady-seconds S] [--no-restart]
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/bench/fleet_agents.h"
#include "tests/fakes/test_util.h"

namespace regen::fleet {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

using testing::Millis;
using testing::Percentile;

struct Options {
  std::string controller;
  std::vector<int> hosts = {1000};
  int instances = 0;  // 0: 20 per host
  int service_size = 20;
  int heals = 20;
  int rack = 2000;
  int steady_seconds = 10;
  bool restart = true;
};

// The controller, a child process of this one, stopped by its PID.
class ControllerProcess {
 public:
  ControllerProcess(std::string binary, const testing::TempDir& dir)
      : binary_(std::move(binary)), dir_(dir) {}
  ~ControllerProcess() { Stop(); }

  bool Start() {
    if (port_ == 0) port_ = testing::FreePort();
    std::ofstream(dir_.File("controller.yaml"))
        << "listen_address: 127.0.0.1:" << port_ << "\n"
        << "database: " << dir_.File("controller.db") << "\n"
        << "insecure: true\n"
        << "log_level: info\n";
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // it never outlives the benchmark
      int fd = open(dir_.File("controller.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      execl(binary_.c_str(), binary_.c_str(), "run", "--config",
            dir_.File("controller.yaml").c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    return WaitListening(seconds(120));
  }
  void Kill9() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  void Stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    for (int i = 0; i < 200; ++i) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
    Kill9();
  }
  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }
  // user+system CPU seconds so far.
  double CpuSeconds() const {
    std::ifstream in("/proc/" + std::to_string(pid_) + "/stat");
    std::string line;
    std::getline(in, line);
    std::istringstream rest(line.substr(line.rfind(')') + 2));
    std::vector<std::string> f{std::istream_iterator<std::string>(rest), {}};
    if (f.size() < 13) return 0;
    return static_cast<double>(std::stoll(f[11]) + std::stoll(f[12])) /
           static_cast<double>(sysconf(_SC_CLK_TCK));
  }
  // A field of /proc/PID/status (kB for the memory ones), 0 if missing.
  long Status(const std::string& key) const {
    std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind(key + ":", 0) == 0) return std::atol(line.c_str() + key.size() + 1);
    }
    return 0;
  }

 private:
  bool WaitListening(milliseconds limit) {
    return testing::WaitFor(
               [&] {
                 if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
                   pid_ = -1;
                   return true;
                 }
                 return testing::PortOpen(port_);
               },
               limit, milliseconds(2)) &&
           pid_ > 0;
  }

  std::string binary_;
  const testing::TempDir& dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

class Admin {
 public:
  explicit Admin(const std::string& target) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(1 << 30);
    stub_ = v1::AdminService::NewStub(
        grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args));
  }
  std::optional<v1::ListHostsResponse> Hosts() {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + seconds(30));
    v1::ListHostsResponse r;
    if (!stub_->ListHosts(&ctx, {}, &r).ok()) return std::nullopt;
    return r;
  }
  std::optional<v1::ListInstancesResponse> Instances() {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + seconds(60));
    v1::ListInstancesResponse r;
    if (!stub_->ListInstances(&ctx, {}, &r).ok()) return std::nullopt;
    return r;
  }
  grpc::Status Apply(const std::string& yaml) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + seconds(60));
    v1::ApplyServiceRequest req;
    req.set_spec_yaml(yaml);
    req.set_file_name("fleet-bench");
    v1::ApplyServiceResponse r;
    return stub_->ApplyService(&ctx, req, &r);
  }

 private:
  std::unique_ptr<v1::AdminService::Stub> stub_;
};

// Service k: a /27 of its own in 10.0.0.0/8 (30 addresses).
std::string ServiceSpec(int k, int instances) {
  uint32_t base = (10u << 24) + static_cast<uint32_t>(k) * 32u;
  char subnet[32];
  std::snprintf(subnet, sizeof subnet, "%u.%u.%u.%u/27", base >> 24, (base >> 16) & 255,
                (base >> 8) & 255, base & 255);
  char name[32];
  std::snprintf(name, sizeof name, "svc-%05d", k);
  return std::string("name: ") + name + "\ninstances: " + std::to_string(instances) +
         "\nupdate_domains: 5\n"
         "flavor: {vcpus: 1, memory_mib: 1024, disk_gib: 0, bandwidth_mbps: 1}\n"
         "network: {subnet: " +
         subnet +
         ", ip_policy: keep}\n"
         "versions:\n  v1: {}\nversion: v1\nplacement: spread\n";
}

// Waits until no agent acked a topology revision for `quiet` (and at least `quiet` passed).
void WaitQuiet(Fleet& fleet, milliseconds quiet, milliseconds limit) {
  auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    std::this_thread::sleep_for(quiet / 4);
    Clock::time_point last{Clock::duration(fleet.counters().last_ack_ns.load())};
    if (Clock::now() - last >= quiet) return;
  }
}

int HostIndex(const std::string& host) { return std::atoi(host.c_str() + 5); }  // host-NNNNN

struct Phase {
  bool ok = true;
  std::string error;
};

class Run {
 public:
  Run(const Options& o, int hosts) : o_(o), n_(hosts), controller_(o.controller, dir_) {}

  int Go() {
    if (!controller_.Start()) return Fail("the controller did not start (see its log)");
    std::fprintf(stderr, "[ fleet ] N=%d: the controller's log: %s\n", n_,
                 dir_.File("controller.log").c_str());
    FleetOptions fo;
    fo.target = controller_.target();
    fo.hosts = n_;
    fleet_ = std::make_unique<Fleet>(fo);
    admin_ = std::make_unique<Admin>(controller_.target());
    auto t0 = Clock::now();
    fleet_->Start();
    if (!WaitHostsUp(n_, seconds(600))) return Fail("not every host came up");
    std::printf("[ fleet ] N=%d hosts: all up in %.0f ms\n", n_, Millis(Clock::now() - t0));
    std::fflush(stdout);
    if (int rc = Deploy(); rc) return rc;
    Steady();
    if (int rc = Heals(); rc) return rc;
    if (o_.rack > 0)
      if (int rc = Rack(); rc) return rc;
    if (o_.restart)
      if (int rc = Restart(); rc) return rc;
    fleet_->Stop();
    controller_.Stop();
    return 0;
  }

 private:
  int Fail(const std::string& why) {
    std::fprintf(stderr, "[ fleet ] N=%d: %s; the controller log's end:\n", n_, why.c_str());
    // Kept past the temp dir, then its last 30 lines printed from the copy.
    std::string kept = "/tmp/regen-fleet-bench-failed-" + std::to_string(getpid()) + ".log";
    std::ofstream(kept, std::ios::binary)
        << std::ifstream(dir_.File("controller.log"), std::ios::binary).rdbuf();
    std::ifstream in(kept);
    std::deque<std::string> tail;
    for (std::string line; std::getline(in, line);) {
      tail.push_back(line);
      if (tail.size() > 30) tail.pop_front();
    }
    for (const auto& line : tail) std::fprintf(stderr, "  %s\n", line.c_str());
    std::fprintf(stderr, "[ fleet ] the whole controller log: %s\n", kept.c_str());
    return 1;
  }

  bool WaitHostsUp(int want, milliseconds limit) {
    auto report = Clock::now() + seconds(10);
    return testing::WaitFor(
        [&] {
          auto h = admin_->Hosts();
          if (!h) return false;
          int up = 0;
          for (const auto& x : h->hosts()) up += x.state() == "up" ? 1 : 0;
          if (Clock::now() >= report) {  // progress, for a size that takes long
            report = Clock::now() + seconds(10);
            std::fprintf(stderr, "[ fleet ] N=%d: %d hosts up, %d streams open, %llu started\n", n_,
                         up, fleet_->Connected(),
                         static_cast<unsigned long long>(fleet_->counters().sessions_started));
          }
          return up >= want;
        },
        limit, milliseconds(200));
  }

  int Deploy() {
    int total = o_.instances > 0 ? o_.instances : n_ * 20;
    int services = (total + o_.service_size - 1) / o_.service_size;
    auto t0 = Clock::now();
    std::vector<double> apply_ms;
    for (int k = 0; k < services; ++k) {
      int size = std::min(o_.service_size, total - k * o_.service_size);
      auto a0 = Clock::now();
      grpc::Status s = admin_->Apply(ServiceSpec(k, size));
      apply_ms.push_back(Millis(Clock::now() - a0));
      if (!s.ok()) return Fail("apply of service " + std::to_string(k) + ": " + s.error_message());
    }
    double applied = Millis(Clock::now() - t0);
    bool running = testing::WaitFor(
        [&] {
          auto list = admin_->Instances();
          if (!list) return false;
          int n = 0;
          for (const auto& i : list->instances()) n += i.state() == "running" ? 1 : 0;
          return n == total;
        },
        seconds(900), milliseconds(1000));
    if (!running) return Fail("not every instance runs");
    WaitQuiet(*fleet_, milliseconds(1000), seconds(300));
    std::printf(
        "[ fleet ]   deploy: %d services x %d = %d instances: applied in %.1f s (apply p50 %.1f "
        "ms, "
        "p99 %.1f ms), all running in %.1f s; %.1f MB of topology sent\n",
        services, o_.service_size, total, applied / 1000, Percentile(apply_ms, 0.5),
        Percentile(apply_ms, 0.99), Millis(Clock::now() - t0) / 1000,
        static_cast<double>(fleet_->counters().topology_bytes.load()) / 1e6);
    std::fflush(stdout);
    return 0;
  }

  void Steady() {
    const double cpu0 = controller_.CpuSeconds();
    const uint64_t acks0 = fleet_->counters().heartbeat_acks;
    auto t0 = Clock::now();
    std::this_thread::sleep_for(seconds(o_.steady_seconds));
    const double wall = Millis(Clock::now() - t0) / 1000;
    std::printf(
        "[ fleet ]   steady: controller CPU %.1f %% of one core, RSS %.0f MiB (peak %.0f MiB), "
        "%ld threads; %.0f heartbeats acked/s; so far %llu refusals, %llu deltas on a revision "
        "the agent lacked\n",
        100 * (controller_.CpuSeconds() - cpu0) / wall,
        static_cast<double>(controller_.Status("VmRSS")) / 1024,
        static_cast<double>(controller_.Status("VmHWM")) / 1024, controller_.Status("Threads"),
        static_cast<double>(fleet_->counters().heartbeat_acks - acks0) / wall,
        static_cast<unsigned long long>(fleet_->counters().refusals.load()),
        static_cast<unsigned long long>(fleet_->counters().delta_mismatches.load()));
    std::fflush(stdout);
  }

  // A running instance chosen at random, with its host and generation.
  bool PickVictim(std::mt19937& rng, std::string* name, int* host, int64_t* generation) {
    for (int tries = 0; tries < 100; ++tries) {
      SimHost& h = fleet_->host(std::uniform_int_distribution<int>(0, n_ - 1)(rng));
      if (h.dead()) continue;
      auto domains = h.Domains();
      if (domains.empty()) continue;
      auto it = domains.begin();
      std::advance(it, std::uniform_int_distribution<size_t>(0, domains.size() - 1)(rng));
      *name = it->first;
      *host = HostIndex(h.name());
      *generation = it->second;
      return true;
    }
    return false;
  }

  int Heals() {
    std::mt19937 rng(20261207);
    std::vector<double> decision, per_agent, converged, bytes, heard;
    for (int r = 0; r < o_.heals; ++r) {
      std::string victim;
      int host = 0;
      int64_t generation = 0;
      if (!PickVictim(rng, &victim, &host, &generation)) return Fail("no instance to crash");
      auto& c = fleet_->counters();
      const uint64_t bytes0 = c.topology_bytes;
      fleet_->acks().Watch({{victim, generation}});
      auto t0 = Clock::now();
      fleet_->acks().Open(t0);
      if (!fleet_->host(host).Crash(victim)) return Fail("could not crash " + victim);
      if (!testing::WaitFor([&] { return fleet_->acks().Recreated() == 1; }, seconds(60),
                            milliseconds(1))) {
        return Fail(victim + " was not re-created within 60 s");
      }
      decision.push_back(Millis(fleet_->acks().LastRecreatedAt() - t0));
      WaitQuiet(*fleet_, milliseconds(300), seconds(60));
      fleet_->acks().Close();
      auto lat = fleet_->acks().Latencies();
      per_agent.insert(per_agent.end(), lat.begin(), lat.end());
      converged.push_back(lat.empty() ? 0 : *std::max_element(lat.begin(), lat.end()));
      heard.push_back(static_cast<double>(lat.size()));
      bytes.push_back(static_cast<double>(c.topology_bytes - bytes0));
    }
    std::printf(
        "[ fleet ]   heal x%d: decision p50 %.1f ms p99 %.1f ms; per agent ack p50 %.1f ms p99 "
        "%.1f ms; converged p50 %.1f ms p99 %.1f ms max %.1f ms; %.0f agents heard of it, "
        "%.1f kB of topology (p50)\n",
        o_.heals, Percentile(decision, 0.5), Percentile(decision, 0.99), Percentile(per_agent, 0.5),
        Percentile(per_agent, 0.99), Percentile(converged, 0.5), Percentile(converged, 0.99),
        Percentile(converged, 1.0), Percentile(heard, 0.5), Percentile(bytes, 0.5) / 1000);
    std::fflush(stdout);
    return 0;
  }

  int Rack() {
    // Consecutive hosts from the middle of the fleet until they hold --rack instances.
    std::map<std::string, int64_t> lost;
    std::vector<int> rack;
    for (int i = n_ / 2; i < n_ && static_cast<int>(lost.size()) < o_.rack; ++i) {
      if (fleet_->host(i).dead()) continue;
      auto d = fleet_->host(i).Domains();
      lost.insert(d.begin(), d.end());
      rack.push_back(i);
    }
    const uint64_t fences0 = fleet_->counters().fences;
    const uint64_t bytes0 = fleet_->counters().topology_bytes;
    fleet_->acks().Watch(lost);
    auto t0 = Clock::now();
    fleet_->acks().Open(t0);
    for (int i : rack) fleet_->host(i).Kill();
    std::set<std::string> names;
    for (int i : rack) names.insert(fleet_->host(i).name());
    std::optional<double> down_ms;
    bool done = testing::WaitFor(
        [&] {
          if (!down_ms) {
            auto h = admin_->Hosts();
            int down = 0;
            if (h)
              for (const auto& x : h->hosts())
                down += names.count(x.name()) && x.state() == "down" ? 1 : 0;
            if (down == static_cast<int>(names.size())) down_ms = Millis(Clock::now() - t0);
          }
          return fleet_->acks().Recreated() == lost.size();
        },
        seconds(300), milliseconds(20));
    if (!done) {
      return Fail("rack: " + std::to_string(fleet_->acks().Recreated()) + " of " +
                  std::to_string(lost.size()) + " instances re-created within 300 s");
    }
    const double placed = Millis(fleet_->acks().LastRecreatedAt() - t0);
    WaitQuiet(*fleet_, milliseconds(1000), seconds(120));
    fleet_->acks().Close();
    auto lat = fleet_->acks().Latencies();
    const double converged = lat.empty() ? 0 : *std::max_element(lat.begin(), lat.end());
    std::printf(
        "[ fleet ]   rack: %zu hosts with %zu instances lost: declared down after %.0f ms; all "
        "re-created after %.0f ms (%.0f ms after down); agents converged after %.0f ms; %.1f MB "
        "of topology; %llu fences elsewhere\n",
        rack.size(), lost.size(), down_ms.value_or(-1), placed, placed - down_ms.value_or(0),
        converged, static_cast<double>(fleet_->counters().topology_bytes - bytes0) / 1e6,
        static_cast<unsigned long long>(fleet_->counters().fences - fences0));
    std::fflush(stdout);
    return 0;
  }

  int Restart() {
    auto before = admin_->Instances();
    if (!before) return Fail("restart: no instance list");
    const uint64_t fences0 = fleet_->counters().fences;
    int live = 0;
    for (int i = 0; i < n_; ++i) live += fleet_->host(i).dead() ? 0 : 1;
    auto t0 = Clock::now();
    controller_.Kill9();
    if (!controller_.Start()) return Fail("restart: the controller did not start again");
    const double listening = Millis(Clock::now() - t0);
    if (!testing::WaitFor([&] { return fleet_->RenewedSince(t0) == live; }, seconds(120),
                          milliseconds(10))) {
      return Fail("restart: " + std::to_string(fleet_->RenewedSince(t0)) + " of " +
                  std::to_string(live) + " hosts renewed within 120 s");
    }
    const double renewed = Millis(Clock::now() - t0);
    std::this_thread::sleep_for(seconds(6));  // past host_down_after (4.5 s by default)
    auto after = admin_->Instances();
    if (!after) return Fail("restart: no instance list afterwards");
    std::map<std::string, int64_t> gens;
    for (const auto& i : before->instances()) gens[i.name()] = i.generation();
    int healed = 0;
    for (const auto& i : after->instances()) healed += gens[i.name()] != i.generation() ? 1 : 0;
    const uint64_t fences = fleet_->counters().fences - fences0;
    std::printf(
        "[ fleet ]   restart (kill -9): listening after %.0f ms, all %d hosts renewed after %.0f "
        "ms; %llu fences, %d instances healed\n",
        listening, live, renewed, static_cast<unsigned long long>(fences), healed);
    std::fflush(stdout);
    if (fences != 0 || healed != 0) return Fail("restart fenced or healed");
    return 0;
  }

  const Options& o_;
  const int n_;
  testing::TempDir dir_{"regen-fleet-bench"};
  ControllerProcess controller_;
  std::unique_ptr<Fleet> fleet_;
  std::unique_ptr<Admin> admin_;
};

}  // namespace
}  // namespace regen::fleet

int main(int argc, char** argv) {
  regen::fleet::Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "fleet_bench: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    auto number = [&](int min) {
      std::string v = next();
      char* end = nullptr;
      long n = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || n < min || n > 10'000'000) {
        std::fprintf(stderr, "fleet_bench: %s: '%s' is not a number >= %d\n", a.c_str(), v.c_str(),
                     min);
        std::exit(2);
      }
      return static_cast<int>(n);
    };
    if (a == "--controller") {
      o.controller = next();
    } else if (a == "--hosts") {
      o.hosts.clear();
      std::stringstream ss(next());
      std::string part;
      while (std::getline(ss, part, ',')) o.hosts.push_back(std::atoi(part.c_str()));
    } else if (a == "--instances") {
      o.instances = number(1);
    } else if (a == "--service-size") {
      o.service_size = number(1);
    } else if (a == "--heals") {
      o.heals = number(1);
    } else if (a == "--rack") {
      o.rack = number(0);
    } else if (a == "--steady-seconds") {
      o.steady_seconds = number(1);
    } else if (a == "--no-restart") {
      o.restart = false;
    } else {
      std::fprintf(
          stderr,
          "usage: fleet_bench --controller PATH [--hosts N[,N...]] [--instances I] "
          "[--service-size S] [--heals R] [--rack R] [--steady-seconds S] [--no-restart]\n");
      return 2;
    }
  }
  if (o.controller.empty() || access(o.controller.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "fleet_bench: --controller '%s' is not an executable\n",
                 o.controller.c_str());
    return 2;
  }
  if (o.service_size > 29) {
    std::fprintf(stderr, "fleet_bench: --service-size %d: at most 29 (a /27 each)\n",
                 o.service_size);
    return 2;
  }
  for (int n : o.hosts) {
    if (n < 2) {
      std::fprintf(stderr, "fleet_bench: --hosts %d: at least 2\n", n);
      return 2;
    }
    if (int rc = regen::fleet::Run(o, n).Go(); rc != 0) return rc;
  }
  return 0;
}
