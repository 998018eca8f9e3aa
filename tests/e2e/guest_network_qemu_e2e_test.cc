// Traffic across a heal, end to end, between real guests (issue 16): `scripts/lab.sh up --driver
// qemu --network ovs` (3 hosts, each in its own network namespace with its own Open vSwitch, VXLAN
// over a veth underlay), a service "web" of 3 instances spread over the 3 hosts and one instance
// of another service "db", all booting the tiny guest of scripts/guest-image.sh with their IP from
// the domain template's {{ip}}. Inside every web guest a loop fetches "NAME GENERATION" from each
// peer it knows from its topology event (busybox wget -> httpd) and prints one serial line per
// request; the db guest polls the web addresses the same way. The test reads the serial logs.
// Asserted:
//  - every web guest reaches both peers, by name, across hosts;
//  - kill -9 of one web VM's qemu (its pid from libvirt's pidfile): the instance is healed on
//    another host with the same IP, and both peers reach it again with its new generation;
//  - the old host forwards the instance's MAC into the tunnel towards the new host (no local
//    port is left for it there) and never two qemus of the instance run at once (sampled);
//  - the db guest never gets an answer from a web guest (it polls throughout).
// Printed: guest boot (running -> network up), kill -> the peers' first successful request to
// the healed instance, and the requests lost meanwhile. Needs root, qemu, Open vSwitch and the
// guest image; fails (never skips) under CI=1 when one is missing.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "common/admin_client.h"
#include "common/subprocess.h"
#include "tests/fakes/test_util.h"

namespace regen::testing {
namespace {

using std::chrono::milliseconds;

const std::string kGuestDir = REGEN_GUEST_DIR;
const std::string kBuildDir = REGEN_LAB_BUILD_DIR;

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The lines of `path` from byte `from` on, without trailing CRs.
std::vector<std::string> LinesFrom(const std::string& path, size_t from = 0) {
  std::string text = Slurp(path);
  std::vector<std::string> out;
  std::stringstream in(from < text.size() ? text.substr(from) : "");
  for (std::string line; std::getline(in, line);) {
    while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.pop_back();
    out.push_back(line);
  }
  return out;
}

size_t FileSize(const std::string& path) {
  std::error_code ec;
  auto n = std::filesystem::file_size(path, ec);
  return ec ? 0 : static_cast<size_t>(n);
}

// The lab of scripts/lab.sh in a directory of its own, taken down (--purge) on destruction.
class ScriptLab {
 public:
  ScriptLab() : dir_("regen-netlab") { chmod(dir_.path().c_str(), 0755); }
  ~ScriptLab() {
    if (up_ && ::testing::Test::HasFailure()) {
      // The logs (daemons', OVS', guests' serial) outlive the purge of a failed run.
      std::string keep = "/tmp/regen-netlab-failed-" + std::to_string(getpid());
      std::error_code ec;
      for (auto it = std::filesystem::recursive_directory_iterator(dir(), ec);
           !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
        if (it->path().extension() != ".log") continue;
        auto to = keep / it->path().lexically_relative(dir());
        std::filesystem::create_directories(to.parent_path(), ec);
        std::filesystem::copy_file(it->path(), to, ec);
      }
      std::printf("the failed lab's logs are kept in %s\n", keep.c_str());
    }
    if (up_) {
      auto r = Lab({"down", "--purge"});
      if (!r.ok() || r->exit_code != 0) ADD_FAILURE() << "lab.sh down failed: " << Output(r);
    }
  }
  void Up(int hosts) {
    up_ = true;
    auto r = Lab({"up", "--driver", "qemu", "--network", "ovs", "--hosts", std::to_string(hosts)});
    ASSERT_TRUE(r.ok() && r->exit_code == 0) << "lab.sh up failed: " << Output(r);
    std::string addr = Slurp(dir() + "/controller.addr");
    while (!addr.empty() && addr.back() == '\n') addr.pop_back();
    AdminClientOptions o;
    o.deadline = std::chrono::seconds(10);
    client_ = std::make_unique<AdminClient>(addr, o);
  }
  const std::string& dir() const { return dir_.path(); }
  AdminClient& client() { return *client_; }
  // The controller's instance list; a failed call is tried again for up to 5 s (a call now and
  // then failed right after a quiet spell of the channel), then the list is empty and
  // last_error() says why.
  std::vector<v1::InstanceInfo> Instances() {
    std::vector<v1::InstanceInfo> out;
    WaitFor(
        [&] {
          auto r = client_->ListInstances();
          if (!r.ok()) {
            last_error_ = r.status().ToString();
            std::fprintf(stderr, "ListInstances failed (trying again): %s\n", last_error_.c_str());
            return false;
          }
          out.assign(r->instances().begin(), r->instances().end());
          return true;
        },
        milliseconds(5000), milliseconds(50));
    return out;
  }
  const std::string& last_error() const { return last_error_; }
  std::optional<v1::InstanceInfo> Instance(const std::string& name) {
    for (auto& i : Instances()) {
      if (i.name() == name) return i;
    }
    return std::nullopt;
  }
  void Apply(const std::string& yaml) {
    v1::ApplyServiceRequest req;
    req.set_spec_yaml(yaml);
    req.set_file_name("test.yaml");
    auto r = client_->ApplyService(req);
    ASSERT_TRUE(r.ok()) << r.status().message();
  }
  bool WaitRunning(size_t count, milliseconds timeout) {
    return WaitFor(
        [&] {
          size_t n = 0;
          for (const auto& i : Instances()) n += i.state() == "running" ? 1 : 0;
          return n == count;
        },
        timeout);
  }
  // The running qemu of `instance` on `host`, from libvirt's pidfile in the host's embed root
  // (checked against the process's command line), or -1.
  int QemuPid(const std::string& host, const std::string& instance) {
    const std::string pidfile = dir() + "/" + host + "/root/run/qemu/" + instance + ".pid";
    int pid = std::atoi(Slurp(pidfile).c_str());
    if (pid <= 0) return -1;
    std::string cmdline = Slurp("/proc/" + std::to_string(pid) + "/cmdline");
    return cmdline.find("guest=" + instance + ",") != std::string::npos ? pid : -1;
  }
  // Qemu processes of `instance` alive now (zombies not counted), on any host of the lab.
  int LiveQemus(const std::string& instance) {
    int n = 0;
    for (int pid : FindProcesses("guest=" + instance + ",")) {
      std::string stat = Slurp("/proc/" + std::to_string(pid) + "/stat");
      size_t close = stat.rfind(") ");
      if (close == std::string::npos || stat[close + 2] == 'Z') continue;
      if (Slurp("/proc/" + std::to_string(pid) + "/cmdline").find(dir() + "/") != std::string::npos)
        ++n;
    }
    return n;
  }
  std::string Logs() {
    std::string out;
    for (const char* f :
         {"controller.log", "host-1/agent.log", "host-2/agent.log", "host-3/agent.log"}) {
      out += std::string("---- ") + f + "\n" + Tail(dir() + "/" + f, 15);
    }
    return out;
  }
  Result<CommandOutput> Lab(std::vector<std::string> args) {
    std::vector<std::string> argv = {"env", "REGEN_BUILD_DIR=" + kBuildDir,
                                     SourceDir() + "/scripts/lab.sh"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--dir");
    argv.push_back(dir());
    return runner_.Run(argv, std::chrono::seconds(120));
  }
  static std::string Tail(const std::string& path, size_t n) {
    auto lines = LinesFrom(path);
    std::string out;
    for (size_t i = lines.size() > n ? lines.size() - n : 0; i < lines.size(); ++i)
      out += lines[i] + "\n";
    return out;
  }

 private:
  static std::string Output(const Result<CommandOutput>& r) {
    if (!r.ok()) return r.status().ToString();
    return "exit " + std::to_string(r->exit_code) + "\n" + r->stdout_text + r->stderr_text;
  }
  TempDir dir_;
  bool up_ = false;
  RealCommandRunner runner_;
  std::unique_ptr<AdminClient> client_;
  std::string last_error_;
};

// The domain template: the guest kernel (uncompressed: qemu boots its PVH entry, ~2.8 s faster
// under TCG than the bzImage) and initramfs, the instance's identity and address on
// the kernel command line, a NIC on the host's br-int (checksum offload off: the userspace
// datapath passes packets as they are), the serial console appended to DIR/serial-NAME.log.
std::string GuestTemplate(const std::string& dir, const std::string& extra_cmdline) {
  std::ostringstream x;
  x << "<domain type='qemu'>\n  <name>{{name}}</name>\n  <uuid>{{uuid}}</uuid>\n"
    << "  <metadata>{{metadata}}</metadata>\n"
    << "  <memory unit='KiB'>{{memory_kib}}</memory>\n  <vcpu>{{vcpus}}</vcpu>\n"
    << "  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n"
    << "    <kernel>" << kGuestDir << "/vmlinux</kernel>\n"
    << "    <initrd>" << kGuestDir << "/initrd.img</initrd>\n"
    << "    <cmdline>console=ttyS0 quiet loglevel=1 panic=-1 regen.ip={{ip}}/{{prefix_len}} "
    << "regen.name={{name}} regen.generation={{generation}} " << extra_cmdline
    << "</cmdline>\n  </os>\n  <on_crash>destroy</on_crash>\n  <devices>\n"
    << "    <interface type='bridge'>\n      <mac address='{{mac}}'/>\n"
    << "      <source bridge='{{bridge}}'/>\n      <virtualport type='openvswitch'/>\n"
    << "      <model type='virtio'/>\n"
    << "      <driver name='qemu'>\n        <host csum='off' gso='off' tso4='off' tso6='off' "
    << "ecn='off' ufo='off'/>\n        <guest csum='off' tso4='off' tso6='off' ecn='off' "
    << "ufo='off'/>\n      </driver>\n    </interface>\n"
    << "    <serial type='file'>\n      <source path='" << dir
    << "/serial-{{name}}.log' append='on'/>\n      <target port='0'/>\n    </serial>\n"
    << "    <memballoon model='none'/>\n{{events_channel}}  </devices>\n</domain>\n";
  return x.str();
}

std::string ServiceYaml(const std::string& name, int instances, const std::string& subnet,
                        const std::string& tmpl) {
  return "name: " + name + "\ninstances: " + std::to_string(instances) +
         "\nupdate_domains: " + std::to_string(instances) +
         "\nflavor: {vcpus: 1, memory_mib: 128, disk_gib: 0, bandwidth_mbps: 10}\n"
         "network:\n  subnet: " +
         subnet +
         "\n  ip_policy: keep\nversions:\n  v1:\n"
         "    domain_template: " +
         tmpl +
         "\nversion: v1\nhealth_check:\n  type: none\n"
         "placement: spread\n";
}

// One poll result a guest printed: "regen-poll: IP ok NAME GEN" or "regen-poll: IP fail".
struct Poll {
  std::string ip;
  bool ok = false;
  std::string name;
  int64_t generation = 0;
};

std::vector<Poll> Polls(const std::string& serial, size_t from = 0) {
  std::vector<Poll> out;
  for (const auto& line : LinesFrom(serial, from)) {
    size_t at = line.find("regen-poll: ");
    if (at == std::string::npos) continue;
    std::stringstream in(line.substr(at + 12));
    Poll p;
    std::string verdict;
    in >> p.ip >> verdict;
    p.ok = verdict == "ok";
    if (p.ok) in >> p.name >> p.generation;
    out.push_back(p);
  }
  return out;
}

bool Reached(const std::vector<Poll>& polls, const std::string& name, int64_t generation) {
  for (const auto& p : polls) {
    if (p.ok && p.name == name && p.generation == generation) return true;
  }
  return false;
}

// Samples the live qemus of one instance every 10 ms until destroyed: never two at once.
class QemuSampler {
 public:
  QemuSampler(ScriptLab& lab, std::string instance)
      : lab_(lab), instance_(std::move(instance)), thread_([this] { Loop(); }) {}
  ~QemuSampler() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int max_live() const { return max_live_; }

 private:
  void Loop() {
    while (!stop_) {
      int n = lab_.LiveQemus(instance_);
      if (n > max_live_) max_live_ = n;
      std::this_thread::sleep_for(milliseconds(10));
    }
  }
  ScriptLab& lab_;
  const std::string instance_;
  std::atomic<bool> stop_{false};
  std::atomic<int> max_live_{0};
  std::thread thread_;
};

// What the test saw after killing a web VM (wall milliseconds; 0 = not seen).
struct Heal {
  v1::InstanceInfo before;
  v1::InstanceInfo healed;
  int64_t killed = 0;
  int64_t running = 0;  // the controller lists the new generation running
  int64_t net_up = 0;   // the healed guest printed "net up" (booted, eth0 configured)
  std::map<std::string, int64_t> first_ok;  // peer -> its first answer from the healed guest
  std::map<std::string, size_t> offset;     // peer -> its serial log's size at the kill
};

class GuestNetworkQemuE2eTest : public ::testing::Test {
 protected:
  std::string Serial(const std::string& name) { return lab_.dir() + "/serial-" + name + ".log"; }
  void RequireComponents();
  // web (3 instances, one per host, peers from their topology event) and db (1 instance in the
  // neighbouring subnet, polling every web address), all guests booted, every web guest
  // answered by both peers.
  void DeployWebAndDb();
  // kill -9 of `victim`'s qemu; waits until every peer got an answer from the healed guest.
  void KillAndFollow(const std::string& victim, Heal* heal);
  void PrintHealFigures(const std::string& victim, const Heal& heal);
  // No flow of the old host delivers the MAC to a local port; when the old host still runs web
  // instances it sends the MAC into the tunnel, to the new host (with none left there it has no
  // web flows at all: everything of web is dropped).
  void ExpectOldLocationCutOff(const Heal& heal);

  ScriptLab lab_;
  std::map<std::string, v1::InstanceInfo> web_;
};

void GuestNetworkQemuE2eTest::RequireComponents() {
  if (!HaveProgram("qemu-system-x86_64"))
    REGEN_REQUIRE_COMPONENT("qemu-system-x86_64", "apt-get install qemu-system-x86");
  for (const char* p : {"ovs-vswitchd", "ovsdb-server", "ethtool"}) {
    if (!HaveProgram(p) && access((std::string("/usr/sbin/") + p).c_str(), X_OK) != 0)
      REGEN_REQUIRE_COMPONENT(p, "apt-get install openvswitch-switch ethtool");
  }
  if (geteuid() != 0) REGEN_REQUIRE_COMPONENT("root", "network namespaces need root");
  if (Slurp(kGuestDir + "/VERSION").find("net") == std::string::npos ||
      !std::filesystem::exists(kGuestDir + "/vmlinux")) {
    REGEN_REQUIRE_COMPONENT("the networked test guest in " + kGuestDir,
                            "scripts/guest-image.sh " + kGuestDir + " (install-deps runs it)");
  }
}

void GuestNetworkQemuE2eTest::DeployWebAndDb() {
  const std::string web_tmpl = lab_.dir() + "/templates/web.xml";
  WriteFileOrDie(web_tmpl, GuestTemplate(lab_.dir(), "regen.poll_ms=100"));
  ASSERT_NO_FATAL_FAILURE(lab_.Apply(ServiceYaml("web", 3, "10.20.0.0/25", web_tmpl)));
  ASSERT_TRUE(lab_.WaitRunning(3, milliseconds(60000))) << lab_.Logs();
  const int64_t running = WallMillis();
  std::string web_ips;
  for (const auto& i : lab_.Instances()) {
    web_[i.name()] = i;
    web_ips += (web_ips.empty() ? "" : ",") + i.ip();
  }
  ASSERT_EQ(web_.size(), 3u) << lab_.last_error();
  std::set<std::string> hosts;
  for (const auto& [n, i] : web_) hosts.insert(i.host());
  EXPECT_EQ(hosts.size(), 3u) << "spread: one web instance per host";

  // db's guest has a /24 that covers web's addresses: only the flows stand between them.
  const std::string db_tmpl = lab_.dir() + "/templates/db.xml";
  WriteFileOrDie(db_tmpl, GuestTemplate(lab_.dir(), "regen.poll_ms=100 regen.peers=" + web_ips));
  ASSERT_NO_FATAL_FAILURE(lab_.Apply(ServiceYaml("db", 1, "10.20.0.128/25", db_tmpl)));
  ASSERT_TRUE(lab_.WaitRunning(4, milliseconds(60000))) << lab_.Logs();

  auto all_reach = [&] {
    for (const auto& [name, i] : web_) {
      auto polls = Polls(Serial(name));
      for (const auto& [peer, j] : web_) {
        if (peer != name && !Reached(polls, peer, j.generation())) return false;
      }
    }
    return true;
  };
  ASSERT_TRUE(WaitFor(all_reach, milliseconds(90000)))
      << "web-0:\n"
      << ScriptLab::Tail(Serial("web-0"), 15) << "web-1:\n"
      << ScriptLab::Tail(Serial("web-1"), 15) << "web-2:\n"
      << ScriptLab::Tail(Serial("web-2"), 15) << lab_.Logs();
  std::printf(
      "FIGURE guests booted and reached every peer (3 web + 1 db, TCG): %lld ms from "
      "running\n",
      static_cast<long long>(WallMillis() - running));
}

void GuestNetworkQemuE2eTest::KillAndFollow(const std::string& victim, Heal* heal) {
  heal->before = web_[victim];
  const int64_t gen = heal->before.generation();
  std::vector<std::string> peers;
  for (const auto& [n, i] : web_) {
    if (n != victim) peers.push_back(n);
  }
  for (const auto& p : peers) heal->offset[p] = FileSize(Serial(p));
  const size_t victim_offset = FileSize(Serial(victim));
  const int pid = lab_.QemuPid(heal->before.host(), victim);
  ASSERT_GT(pid, 0) << "no qemu of " << victim << " in libvirt's pidfile on "
                    << heal->before.host();
  heal->killed = WallMillis();
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_TRUE(WaitFor(
      [&] {
        if (heal->running == 0) {
          auto i = lab_.Instance(victim);
          if (i && i->generation() > gen && i->state() == "running") heal->running = WallMillis();
        }
        if (heal->net_up == 0 &&
            Slurp(Serial(victim)).find("net up", victim_offset) != std::string::npos)
          heal->net_up = WallMillis();
        for (const auto& p : peers) {
          if (!heal->first_ok.count(p) &&
              Reached(Polls(Serial(p), heal->offset[p]), victim, gen + 1))
            heal->first_ok[p] = WallMillis();
        }
        return heal->first_ok.size() == peers.size();
      },
      milliseconds(90000), milliseconds(10)))
      << "peer " << peers[0] << ":\n"
      << ScriptLab::Tail(Serial(peers[0]), 15) << victim << ":\n"
      << ScriptLab::Tail(Serial(victim), 15) << lab_.Logs();
  auto healed = lab_.Instance(victim);
  ASSERT_TRUE(healed.has_value()) << "the controller does not list " << victim
                                  << " (last error: " << lab_.last_error() << ")";
  heal->healed = *healed;
}

void GuestNetworkQemuE2eTest::PrintHealFigures(const std::string& victim, const Heal& heal) {
  if (heal.running > 0) {
    std::printf("FIGURE qemu kill -9 -> healed %s running on %s (controller, polled): %lld ms\n",
                victim.c_str(), heal.healed.host().c_str(),
                static_cast<long long>(heal.running - heal.killed));
  }
  if (heal.net_up > 0) {
    std::printf("FIGURE qemu kill -9 -> the healed guest booted with eth0 up (serial): %lld ms\n",
                static_cast<long long>(heal.net_up - heal.killed));
  }
  int lost = 0;
  for (const auto& [p, at] : heal.first_ok) {
    // What p's guest got from the victim's address after the kill, runs of equal results.
    std::vector<std::pair<std::string, int>> runs;
    for (const auto& poll : Polls(Serial(p), heal.offset.at(p))) {
      if (poll.ip != heal.before.ip()) continue;
      std::string what = poll.ok ? "ok gen " + std::to_string(poll.generation) : "fail";
      if (runs.empty() || runs.back().first != what) runs.push_back({what, 0});
      ++runs.back().second;
      if (poll.ok && poll.generation == heal.healed.generation()) break;
      lost += poll.ok ? 0 : 1;
    }
    std::string seq;
    for (const auto& [what, n] : runs) {
      seq += (seq.empty() ? "" : ", ") + what + " x" + std::to_string(n);
    }
    std::printf(
        "FIGURE qemu kill -9 -> %s's first successful request to healed %s: %lld ms "
        "(its requests after the kill: %s)\n",
        p.c_str(), victim.c_str(), static_cast<long long>(at - heal.killed), seq.c_str());
  }
  std::printf(
      "FIGURE requests to %s lost between the kill and the first answer (2 peers, 1 s "
      "timeout, 100 ms pause): %d\n",
      victim.c_str(), lost);
}

void GuestNetworkQemuE2eTest::ExpectOldLocationCutOff(const Heal& heal) {
  RealCommandRunner runner;
  auto flows =
      runner.Run({"ovs-ofctl", "-O", "OpenFlow14", "dump-flows",
                  "unix:" + lab_.dir() + "/" + heal.before.host() + "/ovs/br-int.mgmt", "table=40"},
                 std::chrono::seconds(10));
  ASSERT_TRUE(flows.ok() && flows->exit_code == 0);
  char tun[16];  // the new host's tunnel address 192.168.77.K as OpenFlow shows it
  std::snprintf(tun, sizeof tun, "0xc0a84d%02x", std::stoi(heal.healed.host().substr(5)));
  std::stringstream fl(flows->stdout_text);
  for (std::string line; std::getline(fl, line);) {
    if (line.find("dl_dst=" + heal.before.mac()) == std::string::npos) continue;
    EXPECT_TRUE(line.find(tun) != std::string::npos && line.find("output:4000") != line.npos)
        << "the old host " << heal.before.host() << " does not send " << heal.before.name()
        << " to " << heal.healed.host() << ": " << line;
  }
}

TEST_F(GuestNetworkQemuE2eTest, PeersReachAHealedInstanceAtItsAddressAndOtherServicesNever) {
  ASSERT_NO_FATAL_FAILURE(RequireComponents());
  if (IsSkipped()) return;
  ASSERT_NO_FATAL_FAILURE(lab_.Up(3));
  ASSERT_NO_FATAL_FAILURE(DeployWebAndDb());

  const std::string victim = "web-0";
  QemuSampler sampler(lab_, victim);
  Heal heal;
  ASSERT_NO_FATAL_FAILURE(KillAndFollow(victim, &heal));
  EXPECT_EQ(heal.healed.generation(), heal.before.generation() + 1);
  EXPECT_NE(heal.healed.host(), heal.before.host());
  EXPECT_EQ(heal.healed.ip(), heal.before.ip());
  EXPECT_EQ(heal.healed.mac(), heal.before.mac());
  PrintHealFigures(victim, heal);

  // The healed guest reaches its peers again from its new host.
  EXPECT_TRUE(WaitFor(
      [&] {
        auto polls = Polls(Serial(victim));
        for (const auto& [peer, i] : web_) {
          if (peer != victim && !Reached(polls, peer, i.generation())) return false;
        }
        return true;
      },
      milliseconds(30000)))
      << ScriptLab::Tail(Serial(victim), 15);
  ExpectOldLocationCutOff(heal);
  sampler.Stop();
  EXPECT_EQ(sampler.max_live(), 1) << "two qemus of " << victim << " ran at once";

  // db never got an answer from web, and did try every address.
  auto db = Polls(Serial("db-0"));
  int db_ok = 0;
  for (const auto& p : db) db_ok += p.ok ? 1 : 0;
  EXPECT_EQ(db_ok, 0) << ScriptLab::Tail(Serial("db-0"), 20);
  EXPECT_GE(db.size(), 3u) << "the db guest did not poll every web address: "
                           << ScriptLab::Tail(Serial("db-0"), 20);
  std::printf("FIGURE db-0's requests to web: %zu, answered: %d\n", db.size(), db_ok);
}

}  // namespace
}  // namespace regen::testing
