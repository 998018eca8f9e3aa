// Notification and DNS benchmark on a lab (test driver, real controller and agents, a real knotd
// when it can be started): an N-instance service with ip_policy new; R times one instance is
// crashed and healed. Prints, per heal, from the controller's reallocation event (the heal
// decision: where the instance goes, with its new IP):
//   notify first/last  -> the first / the last instance of the service having the failure,
//                         reallocation and topology lines written in its events file (the file's
//                         mtime once all three are there; the agents' DNS watch is off so nothing
//                         else writes them)
//   dns visible        -> knotd answering the healed instance's new IP (c-ares polled every ms)
// Figures are printed, never asserted; the test asserts only that every instance was told.
//
//   notify_bench [--instances N] [--hosts H] [--rounds R]   (100, 4, 3)
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "agent/event_delivery.h"
#include "common/subprocess.h"
#include "dns/cares_resolver.h"
#include "tests/e2e/lab_harness.h"
#include "tests/integration/dns/knot_server.h"

namespace regen::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;

int g_instances = 100;
int g_hosts = 4;
int g_rounds = 3;

int64_t NowMs() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Spec() {
  return "name: web\ninstances: " + std::to_string(g_instances) +
         "\nupdate_domains: 5\nflavor: {vcpus: 1, memory_mib: 64, disk_gib: 0, bandwidth_mbps: 1}\n"
         "network: {subnet: 10.20.0.0/22, dns_name: web.lab.example, ip_policy: new}\n"
         "versions:\n  v1: {metadata: {release: \"1\"}}\nversion: v1\n"
         "health_check: {type: none}\nplacement: spread\n";
}

struct Stats {
  std::vector<double> values;
  std::string Describe() const {
    if (values.empty()) return "n/a";
    auto v = values;
    std::sort(v.begin(), v.end());
    char buf[160];
    std::snprintf(buf, sizeof buf, "median %.1f ms (min %.1f, max %.1f, n=%zu)", v[v.size() / 2],
                  v.front(), v.back(), v.size());
    return buf;
  }
};

// Whether the file holds the three events of the heal whose reallocation has `sequence`.
bool HasHeal(const std::string& path, const std::string& instance, int64_t sequence,
             const std::string& new_host) {
  std::ifstream in(path);
  bool failure = false, reallocation = false, topology = false;
  for (std::string line; std::getline(in, line);) {
    json e = json::parse(line, nullptr, false);
    if (e.is_discarded()) continue;
    std::string kind = e.value("event", "");
    if (kind == "failure" && e.value("instance", "") == instance &&
        e.value("sequence", int64_t{0}) < sequence) {
      failure = true;
    }
    if (kind == "reallocation" && e.value("sequence", int64_t{0}) == sequence) reallocation = true;
    if (kind == "topology" && reallocation) {
      for (const auto& i : e.value("instances", json::array())) {
        if (i.value("name", "") == instance && i.value("host", "") == new_host) topology = true;
      }
    }
  }
  return failure && reallocation && topology;
}

double MtimeMs(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return 0;
  return double(st.st_mtim.tv_sec) * 1000.0 + double(st.st_mtim.tv_nsec) / 1e6;
}

TEST(NotifyBench, HealNotificationsAndDns) {
  // knotd is installed by scripts/install-deps.sh: without it the DNS figure cannot be measured,
  // and the benchmark (and its ctest smoke run) fails rather than skip it.
  auto knot = KnotServer::Start();
  ASSERT_TRUE(knot.ok()) << "knotd cannot be started: " << knot.status().ToString();
  LabOptions o;
  o.hosts = g_hosts;
  o.vcpus = (g_instances + g_hosts - 1) / g_hosts * 2;
  o.memory_mib = o.vcpus * 128;
  o.controller_extra =
      "dns:\n  server: \"" + (*knot)->server() +
      "\"\n  zone: lab.example.\n  ttl: 5\n  tsig:\n    key_name: " + (*knot)->key().name +
      "\n    algorithm: " + (*knot)->key().algorithm + "\n    secret_file: " + (*knot)->key_file() +
      "\n";
  Lab lab(o);
  lab.StartAll();
  lab.Apply(Spec());
  ASSERT_TRUE(lab.WaitAllRunning(g_instances, milliseconds(180000))) << lab.Logs();

  auto r = dns::NewCaresResolver({"127.0.0.1", (*knot)->port(), milliseconds(200), 1});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  std::unique_ptr<dns::Resolver> resolver = std::move(r).value();

  Stats first_notified, last_notified, dns_visible;
  for (int round = 0; round < g_rounds; ++round) {
    const std::string victim = "web-" + std::to_string((round * 37 + 1) % g_instances);
    auto before = lab.Instance(victim);
    ASSERT_TRUE(before.has_value());
    const std::string name = victim + ".lab.example.";
    // DNS: a thread polls the instance's name until its address changes.
    std::atomic<int64_t> dns_changed_ms{0};
    std::atomic<bool> stop{false};
    std::thread dns_poller;
    if (resolver) {
      dns_poller = std::thread([&] {
        while (!stop) {
          auto res = resolver->ResolveAll({name});
          const auto& r = res[name];
          if (r.status.ok() && !r.addresses.empty() && r.addresses[0] != before->ip()) {
            dns_changed_ms = NowMs();
            return;
          }
          std::this_thread::sleep_for(milliseconds(1));
        }
      });
    }
    RealCommandRunner runner;
    auto out = runner.Run({AgentBin(), "inject", "crash", victim, "--config",
                           lab.AgentConfigPath(Lab::HostNumber(before->host()))},
                          std::chrono::seconds(10));
    ASSERT_TRUE(out.ok() && out->exit_code == 0);
    ASSERT_TRUE(WaitFor(
        [&] {
          auto i = lab.Instance(victim);
          return i && i->generation() == before->generation() + 1 && i->state() == "running";
        },
        milliseconds(30000)))
        << lab.Logs();
    auto after = lab.Instance(victim);
    // The heal decision: the controller's reallocation event.
    int64_t decided_ms = 0;
    int64_t sequence = 0;
    for (const auto& e : lab.Events()) {
      if (e.kind() == "reallocation" && e.instance() == victim && e.host() == after->host()) {
        decided_ms = e.unix_ms();
        sequence = e.sequence();
      }
    }
    ASSERT_GT(sequence, 0);
    std::vector<double> written;
    for (const auto& inst : lab.Instances()) {
      std::string path = EventsFilePath(lab.StateDir(Lab::HostNumber(inst.host())), inst.name());
      ASSERT_TRUE(WaitFor([&] { return HasHeal(path, victim, sequence, after->host()); },
                          milliseconds(10000)))
          << inst.name() << " was not told of heal " << round;
      written.push_back(MtimeMs(path) - double(decided_ms));
    }
    std::sort(written.begin(), written.end());
    first_notified.values.push_back(written.front());
    last_notified.values.push_back(written.back());
    if (resolver) {
      WaitFor([&] { return dns_changed_ms.load() != 0; }, milliseconds(10000));
      stop = true;
      dns_poller.join();
      if (dns_changed_ms != 0) dns_visible.values.push_back(double(dns_changed_ms - decided_ms));
    }
    ASSERT_TRUE(lab.WaitAllRunning(g_instances, milliseconds(30000))) << lab.Logs();
  }
  std::printf("heal notifications: %d instances on %d hosts (test driver), %d heals\n", g_instances,
              g_hosts, g_rounds);
  std::printf("  decision->first notified  %s\n", first_notified.Describe().c_str());
  std::printf("  decision->last notified   %s\n", last_notified.Describe().c_str());
  std::printf("  decision->dns visible     %s\n", dns_visible.Describe().c_str());
  std::printf("  (event timestamps are whole ms: sub-ms figures may come out slightly negative)\n");
}

}  // namespace
}  // namespace regen::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i + 1 < argc; i += 2) {
    int value = std::atoi(argv[i + 1]);
    std::string flag = argv[i];
    if (value <= 0) {
      std::fprintf(stderr, "notify_bench: %s needs a positive number, got \"%s\"\n", argv[i],
                   argv[i + 1]);
      return 2;
    }
    if (flag == "--instances") {
      regen::testing::g_instances = value;
    } else if (flag == "--hosts") {
      regen::testing::g_hosts = value;
    } else if (flag == "--rounds") {
      regen::testing::g_rounds = value;
    } else {
      std::fprintf(stderr, "notify_bench: unknown flag %s (--instances, --hosts, --rounds)\n",
                   argv[i]);
      return 2;
    }
  }
  return RUN_ALL_TESTS();
}
