// Network rewiring end to end in network namespaces: three simulated hosts, each its own Open
// vSwitch (OvsSandbox: ovsdb-server + ovs-vswitchd, userspace datapath, in a namespace of its
// own) programmed by its own NetworkAgent (agent/network_agent.h) from topology revisions. The
// underlay is a chain of veths host-1 -- host-2 -- host-3 on one L2 segment (each host's veths on
// a br-phy bridge that carries the host's tunnel address, as OVS's userspace tunnelling wants);
// br-int's flow-based VXLAN port (remote_ip=flow) carries instance traffic between hosts.
// "Instances" are namespaces attached to br-int by veth with their allocated IP and MAC.
//
// Asserted: ping and a TCP connection between two instances of one service work across hosts;
// between two services both are dropped; after web-1 moves from host-2 to host-3 (same IP and
// MAC, generation 2, revision 2 applied by the three agents) its peer web-0 reaches it again with
// nothing changed inside web-0, and the stale copy left on host-2 is cut off both ways.
// The second case runs the same rig from a real Controller (in process, SQLite store): hosts say
// Hello with their tunnel addresses, services are deployed by the allocator, each agent session's
// sink hands topology revisions to that host's NetworkAgent (worker running, as in regen-agent),
// and an operator failover moves web-1: the revision the controller pushes rewires the network.
// Everything (daemons by PID, namespaces, veths with them) is removed by the sandboxes' RAII, also
// when an assertion fails. Prints the timings. Needs root and Open vSwitch; never skips.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "agent/network_agent.h"
#include "common/subprocess.h"
#include "controller/controller.h"
#include "ovs/ovs_vswitch.h"
#include "tests/fakes/test_util.h"
#include "tests/integration/ovs/ovs_sandbox.h"

namespace regen {
namespace {

using namespace std::chrono_literals;
using testing::OvsSandbox;
using SteadyClock = std::chrono::steady_clock;

double Ms(SteadyClock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// Runs `fn` on a thread that has entered network namespace `ns` (the caller's stays as it was).
template <typename T>
T InNetns(const std::string& ns, const std::function<T()>& fn, T on_error) {
  T result = on_error;
  std::thread t([&] {
    int fd = open(("/var/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    bool ok = setns(fd, CLONE_NEWNET) == 0;
    close(fd);
    if (ok) result = fn();
  });
  t.join();
  return result;
}

uint16_t Checksum(const void* data, size_t len) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < len; i += 2) sum += (p[i] << 8) | p[i + 1];
  if (len % 2) sum += p[len - 1] << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return htons(static_cast<uint16_t>(~sum));
}

// One ICMP echo from namespace `ns` to `ip` (raw socket, as ping does), retried every 100 ms until
// a reply or `timeout`. The round trip of the answered request, or -1.
double Ping(const std::string& ns, const std::string& ip, std::chrono::milliseconds timeout) {
  return InNetns<double>(
      ns,
      [&]() -> double {
        int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
        if (fd < 0) return -1;
        sockaddr_in to{};
        to.sin_family = AF_INET;
        inet_pton(AF_INET, ip.c_str(), &to.sin_addr);
        const uint16_t id = static_cast<uint16_t>(getpid() ^ 0x5a5a);
        auto deadline = SteadyClock::now() + timeout;
        for (uint16_t seq = 1; SteadyClock::now() < deadline; ++seq) {
          icmphdr req{};
          req.type = ICMP_ECHO;
          req.un.echo.id = htons(id);
          req.un.echo.sequence = htons(seq);
          req.checksum = Checksum(&req, sizeof req);
          auto sent = SteadyClock::now();
          sendto(fd, &req, sizeof req, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
          auto wait_until = std::min(deadline, sent + 100ms);
          while (SteadyClock::now() < wait_until) {
            pollfd p{fd, POLLIN, 0};
            int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                            wait_until - SteadyClock::now())
                                            .count());
            if (poll(&p, 1, std::max(left, 1)) <= 0) continue;
            char buf[1500];
            sockaddr_in from{};
            socklen_t flen = sizeof from;
            ssize_t n = recvfrom(fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &flen);
            if (n < static_cast<ssize_t>(sizeof(iphdr) + sizeof(icmphdr))) continue;
            const auto* iph = reinterpret_cast<const iphdr*>(buf);
            const auto* rep = reinterpret_cast<const icmphdr*>(buf + iph->ihl * 4);
            if (from.sin_addr.s_addr == to.sin_addr.s_addr && rep->type == ICMP_ECHOREPLY &&
                ntohs(rep->un.echo.id) == id && ntohs(rep->un.echo.sequence) == seq) {
              close(fd);
              return Ms(SteadyClock::now() - sent);
            }
          }
        }
        close(fd);
        return -1;
      },
      -1.0);
}

// A TCP listener inside a namespace, counting accepted connections that said "ping" (answered
// "pong"). Stops on destruction.
class TcpServer {
 public:
  TcpServer(const std::string& ns, int port) {
    std::atomic<bool> ready{false};
    thread_ = std::thread([this, ns, port, &ready] {
      int fd = InNetns<int>(
          ns,
          [&] {
            int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            int one = 1;
            setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            sockaddr_in a{};
            a.sin_family = AF_INET;
            a.sin_port = htons(static_cast<uint16_t>(port));
            if (bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(s, 8) != 0) {
              close(s);
              return -1;
            }
            return s;
          },
          -1);
      ready = true;
      if (fd < 0) return;
      while (!stop_) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 20) <= 0) continue;
        int c = accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) continue;
        pollfd pc{c, POLLIN, 0};
        char buf[16] = {};
        if (poll(&pc, 1, 2000) > 0 && recv(c, buf, 4, 0) == 4 && std::string(buf, 4) == "ping") {
          send(c, "pong", 4, MSG_NOSIGNAL);
          ++accepted_;
        }
        close(c);
      }
      close(fd);
    });
    while (!ready) std::this_thread::yield();
  }
  ~TcpServer() {
    stop_ = true;
    thread_.join();
  }
  int accepted() const { return accepted_; }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

// A TCP connection from namespace `ns` to ip:port that sends "ping" and reads "pong", retried
// until `timeout`. The time of the successful exchange (connect to pong), or -1.
double TcpExchange(const std::string& ns, const std::string& ip, int port,
                   std::chrono::milliseconds timeout) {
  return InNetns<double>(
      ns,
      [&]() -> double {
        auto deadline = SteadyClock::now() + timeout;
        while (SteadyClock::now() < deadline) {
          int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
          sockaddr_in a{};
          a.sin_family = AF_INET;
          a.sin_port = htons(static_cast<uint16_t>(port));
          inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
          auto start = SteadyClock::now();
          connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
          pollfd p{s, POLLOUT, 0};
          int err = 0;
          socklen_t len = sizeof err;
          if (poll(&p, 1, 500) > 0 && getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
              err == 0 && send(s, "ping", 4, MSG_NOSIGNAL) == 4) {
            pollfd r{s, POLLIN, 0};
            char buf[8] = {};
            if (poll(&r, 1, 1000) > 0 && recv(s, buf, 4, 0) == 4 && std::string(buf, 4) == "pong") {
              close(s);
              return Ms(SteadyClock::now() - start);
            }
          }
          close(s);
          std::this_thread::sleep_for(50ms);
        }
        return -1;
      },
      -1.0);
}

struct InstanceDef {
  std::string name, service, ip, mac;
};
const InstanceDef kWeb0{"web-0", "web", "10.0.0.10", "52:54:00:00:00:10"};
const InstanceDef kWeb1{"web-1", "web", "10.0.0.11", "52:54:00:00:00:11"};
const InstanceDef kDb0{"db-0", "db", "10.0.0.20", "52:54:00:00:00:20"};

// One simulated host: its Open vSwitch, the VSwitch over it and its network agent.
struct SimHost {
  std::string name;
  std::string tunnel_ip;
  OvsSandbox sandbox;
  RealCommandRunner runner;
  RealClock clock;
  std::unique_ptr<ovs::OvsVSwitch> vswitch;
  std::unique_ptr<NetworkAgent> agent;
};

class OvsNetnsE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto start = SteadyClock::now();
    for (int i = 1; i <= 3; ++i) {
      auto h = std::make_unique<SimHost>();
      h->name = "host-" + std::to_string(i);
      h->tunnel_ip = "192.168.100." + std::to_string(i);
      Status s = h->sandbox.Start();
      ASSERT_TRUE(s.ok()) << s.ToString();
      h->vswitch = std::make_unique<ovs::OvsVSwitch>(h->runner, h->sandbox.VSwitchOptions());
      NetworkAgentOptions o;
      o.host = h->name;
      o.tunnel_ip = h->tunnel_ip;
      o.resync_interval = 1s;
      h->agent = std::make_unique<NetworkAgent>(o, *h->vswitch, h->clock);
      ASSERT_TRUE(h->vswitch->EnsureBridge("br-int").ok());
      hosts_.push_back(std::move(h));
    }
    // Underlay: host-1 -- host-2 -- host-3 (no loop: one L2 segment through host-2's br-phy).
    ASSERT_NO_FATAL_FAILURE(Link(*hosts_[0], "u12", *hosts_[1], "u21"));
    ASSERT_NO_FATAL_FAILURE(Link(*hosts_[1], "u23", *hosts_[2], "u32"));
    for (auto& h : hosts_) ASSERT_NO_FATAL_FAILURE(Underlay(*h));
    std::printf("[ figures ] 3 hosts (ovsdb-server + ovs-vswitchd each) and underlay: %.0f ms\n",
                Ms(SteadyClock::now() - start));
  }

  void TearDown() override {
    for (auto& h : hosts_) {
      if (h->agent) h->agent->Stop();
      if (HasFailure())
        std::fprintf(stderr, "%s:\n%s", h->name.c_str(), h->sandbox.LogTail().c_str());
    }
    // hosts_ go in reverse order of creation: agents, vswitches, then each sandbox stops its
    // daemons by PID and deletes its namespaces (instance ones too); veths go with them.
  }

  void Exec(SimHost& h, const std::vector<std::string>& argv) {
    auto r = h.sandbox.Exec(argv);
    ASSERT_TRUE(r.ok()) << h.name << ": " << r.status().ToString();
  }

  // A veth from a's namespace (`a_end`) to b's (`b_end`), up, checksum offload off (the userspace
  // datapath does not complete checksums).
  void Link(SimHost& a, const std::string& a_end, SimHost& b, const std::string& b_end) {
    ASSERT_NO_FATAL_FAILURE(Exec(a, {"ip", "link", "add", a_end, "type", "veth", "peer", "name",
                                     b_end, "netns", b.sandbox.netns()}));
    underlay_ports_[&a].push_back(a_end);
    underlay_ports_[&b].push_back(b_end);
  }

  // br-phy: the host's underlay veths and its tunnel address (OVS routes VXLAN through it).
  void Underlay(SimHost& h) {
    ASSERT_TRUE(h.vswitch->EnsureBridge("br-phy").ok());
    // EnsureBridge makes bridges fail_mode=secure: br-phy is a plain L2 switch.
    std::vector<std::string> argv = {"ovs-ofctl", "add-flow", h.vswitch->OfctlTarget("br-phy"),
                                     "priority=0,actions=NORMAL"};
    auto added = CheckedRun(h.runner, argv, 10s);
    ASSERT_TRUE(added.ok()) << added.status().ToString();
    for (const auto& port : underlay_ports_[&h]) {
      ASSERT_NO_FATAL_FAILURE(Exec(h, {"ethtool", "-K", port, "tx", "off"}));
      ASSERT_NO_FATAL_FAILURE(Exec(h, {"ip", "link", "set", port, "up"}));
      ovs::PortSpec p;
      p.name = port;
      auto r = h.vswitch->EnsurePort("br-phy", p);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
    }
    ASSERT_NO_FATAL_FAILURE(Exec(h, {"ip", "addr", "add", h.tunnel_ip + "/24", "dev", "br-phy"}));
    ASSERT_NO_FATAL_FAILURE(Exec(h, {"ip", "link", "set", "br-phy", "up"}));
  }

  // Starts instance `in` on host `h`: a namespace (returned) whose eth0 has the instance's IP and
  // MAC, its veth peer on br-int as libvirt would leave a tap (iface-id, attached-mac).
  std::string StartInstance(SimHost& h, const InstanceDef& in, const std::string& short_name,
                            const std::string& port) {
    auto ns = h.sandbox.AddInstanceNamespace(short_name, port, in.mac, in.ip + "/24");
    EXPECT_TRUE(ns.ok()) << ns.status().ToString();
    if (!ns.ok()) return "";
    for (const auto& argv :
         std::vector<std::vector<std::string>>{{"ethtool", "-K", "eth0", "tx", "off"},
                                               {"ip", "link", "set", "eth0", "mtu", "1400"}}) {
      auto r = h.sandbox.ExecIn(*ns, argv);
      EXPECT_TRUE(r.ok()) << r.status().ToString();
    }
    auto off = h.sandbox.Exec({"ethtool", "-K", port, "tx", "off"});
    EXPECT_TRUE(off.ok()) << off.status().ToString();
    ovs::PortSpec p;
    p.name = port;
    p.external_ids = {{"iface-id", "uuid-" + short_name}, {"attached-mac", in.mac}};
    auto r = h.vswitch->EnsurePort("br-int", p);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return *ns;
  }

  v1::TopologyRevision Topology(int64_t revision, const std::string& web1_host, int64_t web1_gen) {
    v1::TopologyRevision t;
    t.set_revision(revision);
    for (auto& h : hosts_) {
      auto* th = t.add_hosts();
      th->set_name(h->name);
      th->set_address(h->tunnel_ip);
    }
    auto add = [&](const InstanceDef& in, const std::string& host, int64_t gen) {
      auto* i = t.add_instances();
      i->set_name(in.name);
      i->set_service(in.service);
      i->set_host(host);
      i->set_ip(in.ip);
      i->set_mac(in.mac);
      i->set_generation(gen);
    };
    add(kWeb0, "host-1", 1);
    add(kWeb1, web1_host, web1_gen);
    add(kDb0, "host-3", 1);
    return t;
  }

  // Every agent applies `t`: the time until the last one is done.
  double ApplyEverywhere(const v1::TopologyRevision& t) {
    auto start = SteadyClock::now();
    std::vector<std::thread> threads;
    std::vector<std::string> errors(hosts_.size());
    for (size_t i = 0; i < hosts_.size(); ++i) {
      threads.emplace_back([&, i] {
        hosts_[i]->agent->Submit(t);
        auto r = hosts_[i]->agent->SyncNow();
        if (!r.ok()) errors[i] = r.status().ToString();
      });
    }
    for (auto& th : threads) th.join();
    double ms = Ms(SteadyClock::now() - start);
    for (size_t i = 0; i < hosts_.size(); ++i)
      EXPECT_TRUE(errors[i].empty()) << hosts_[i]->name << ": " << errors[i];
    return ms;
  }

  std::vector<std::unique_ptr<SimHost>> hosts_;
  std::map<SimHost*, std::vector<std::string>> underlay_ports_;
};

TEST_F(OvsNetnsE2eTest, ServiceTrafficCrossesHostsOtherServicesDoNotAndAMoveIsFollowed) {
  SimHost& h1 = *hosts_[0];
  SimHost& h2 = *hosts_[1];
  SimHost& h3 = *hosts_[2];
  const std::string web0 = StartInstance(h1, kWeb0, "web0", "vnet-web0");
  const std::string web1 = StartInstance(h2, kWeb1, "web1", "vnet-web1");
  const std::string db0 = StartInstance(h3, kDb0, "db0", "vnet-db0");
  ASSERT_FALSE(web0.empty() || web1.empty() || db0.empty());

  // Before any revision: fail_mode=secure, nothing passes.
  EXPECT_LT(Ping(web0, kWeb1.ip, 300ms), 0);

  double first = ApplyEverywhere(Topology(1, "host-2", 1));
  for (auto& h : hosts_) EXPECT_EQ(h->agent->applied_revision(), 1) << h->name;
  std::printf("[ figures ] revision 1 applied by 3 agents (bridge, tunnel, flows): %.0f ms\n",
              first);

  // One service across hosts: ping (ARP answered by the flows) and TCP, both ways.
  double rtt = Ping(web0, kWeb1.ip, 5s);
  EXPECT_GE(rtt, 0) << "web-0 (host-1) cannot ping web-1 (host-2)";
  EXPECT_GE(Ping(web1, kWeb0.ip, 5s), 0) << "web-1 (host-2) cannot ping web-0 (host-1)";
  double tcp = -1;
  {
    TcpServer server(web1, 8080);
    tcp = TcpExchange(web0, kWeb1.ip, 8080, 5s);
    EXPECT_GE(tcp, 0) << "no TCP from web-0 (host-1) to web-1 (host-2)";
    EXPECT_EQ(server.accepted(), 1);
  }
  std::printf("[ figures ] web-0 -> web-1 across hosts: first ping %.1f ms, TCP exchange %.1f ms\n",
              rtt, tcp);

  // Another service, across hosts (through host-2's underlay): dropped, even with db-0's MAC
  // known (no ARP needed), both ways, ICMP and TCP.
  auto neigh = h1.sandbox.ExecIn(web0, {"ip", "neigh", "replace", kDb0.ip, "lladdr", kDb0.mac,
                                        "dev", "eth0", "nud", "permanent"});
  ASSERT_TRUE(neigh.ok()) << neigh.status().ToString();
  EXPECT_LT(Ping(web0, kDb0.ip, 500ms), 0) << "web-0 reaches db-0";
  EXPECT_LT(Ping(db0, kWeb0.ip, 500ms), 0) << "db-0 reaches web-0";
  {
    TcpServer server(db0, 5432);
    EXPECT_LT(TcpExchange(web0, kDb0.ip, 5432, 1s), 0) << "TCP from web-0 to db-0";
    EXPECT_EQ(server.accepted(), 0);
  }

  // web-1 moves to host-3: same IP and MAC, generation 2. Its new copy starts there; the old one
  // is left running on host-2 (a stale copy that must be cut off).
  const std::string web1_new = StartInstance(h3, kWeb1, "web1b", "vnet-web1b");
  ASSERT_FALSE(web1_new.empty());
  auto moved_at = SteadyClock::now();
  double move = ApplyEverywhere(Topology(2, "host-3", 2));
  for (auto& h : hosts_) EXPECT_EQ(h->agent->applied_revision(), 2) << h->name;
  double back = Ping(web0, kWeb1.ip, 5s);
  double back_ms = Ms(SteadyClock::now() - moved_at);
  EXPECT_GE(back, 0) << "web-0 cannot reach web-1 after its move to host-3";
  {
    TcpServer new_server(web1_new, 8081);
    TcpServer old_server(web1, 8081);
    EXPECT_GE(TcpExchange(web0, kWeb1.ip, 8081, 5s), 0) << "no TCP from web-0 to the moved web-1";
    EXPECT_EQ(new_server.accepted(), 1);
    EXPECT_EQ(old_server.accepted(), 0) << "the stale copy on host-2 still gets web-0's traffic";
  }
  // The stale copy cannot reach anyone, nor be reached.
  EXPECT_LT(Ping(web1, kWeb0.ip, 500ms), 0) << "the stale web-1 on host-2 still reaches web-0";
  // web-0 was not touched: its neighbour entry for web-1 is still the same MAC.
  auto entry = h1.sandbox.ExecIn(web0, {"ip", "neigh", "show", kWeb1.ip});
  ASSERT_TRUE(entry.ok());
  EXPECT_NE(entry->stdout_text.find(kWeb1.mac), std::string::npos) << entry->stdout_text;
  std::printf(
      "[ figures ] move of web-1 host-2 -> host-3: revision 2 applied by 3 agents in %.0f ms; "
      "web-0 reaches it again %.0f ms after revision 2 was handed to the agents (ping %.1f ms)\n",
      move, back_ms, back);
  (void)h2;
}

// What ControllerLink does with a topology message: hand it to the host's network worker.
class ToNetworkAgentSink : public AgentSink {
 public:
  explicit ToNetworkAgentSink(NetworkAgent& agent) : agent_(agent) {}
  void Send(const v1::ControllerMessage& message) override {
    if (message.has_topology()) agent_.Submit(message.topology());
  }

 private:
  NetworkAgent& agent_;
};

std::string Spec(const std::string& name, int instances, const std::string& subnet) {
  return "name: " + name + "\ninstances: " + std::to_string(instances) +
         "\nupdate_domains: 1\nflavor: {vcpus: 1, memory_mib: 64}\nnetwork: {subnet: " + subnet +
         "}\nversions:\n  v1: {}\nversion: v1\nplacement: spread\n";
}

TEST_F(OvsNetnsE2eTest, TheControllersRevisionsRewireTheNetworkAfterAFailover) {
  testing::TempDir dir("regen-ovs-netns-e2e");
  auto store = OpenSqliteStore(dir.File("controller.db"));
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  ControllerConfig config;
  RealClock clock;
  Controller controller(config, **store, clock);
  ASSERT_TRUE(controller.Load().ok());
  std::map<std::string, SimHost*> by_name;
  std::vector<std::unique_ptr<ToNetworkAgentSink>> sinks;
  for (auto& h : hosts_) {
    by_name[h->name] = h.get();
    h->agent->Start();
    sinks.push_back(std::make_unique<ToNetworkAgentSink>(*h->agent));
    v1::Hello hello;
    hello.set_host(h->name);
    hello.set_address(h->tunnel_ip);
    hello.mutable_capacity()->set_vcpus(4);
    hello.mutable_capacity()->set_memory_mib(4096);
    hello.mutable_capacity()->set_disk_gib(10);
    hello.mutable_capacity()->set_bandwidth_mbps(1000);
    ASSERT_TRUE(controller.OnHello(hello, sinks.back().get()).ok());
  }
  // One /24 on the wire, split between the services: only the flows keep them apart.
  for (const auto& [name, count, subnet] :
       {std::tuple{"web", 2, "10.0.0.0/25"}, std::tuple{"db", 1, "10.0.0.128/25"}}) {
    v1::ApplyServiceRequest req;
    req.set_spec_yaml(Spec(name, count, subnet));
    auto applied = controller.ApplyService(req);
    ASSERT_TRUE(applied.ok()) << applied.status().ToString();
  }
  auto all_applied = [&](int64_t revision) {
    for (auto& h : hosts_)
      if (h->agent->applied_revision() < revision) return false;
    return true;
  };
  // Each host hears only of the revisions that changed its slice (web's hosts not of db's
  // deploy, and the other way round): each applied the last one it was sent.
  auto all_caught_up = [&] {
    for (auto& h : hosts_) {
      if (h->agent->latest_revision() == 0 ||
          h->agent->applied_revision() != h->agent->latest_revision()) {
        return false;
      }
    }
    return true;
  };
  ASSERT_TRUE(testing::WaitFor(all_caught_up, 10s, 10ms));

  // Start every instance where the allocator put it (its IP and MAC), as libvirt would.
  std::map<std::string, std::string> ns;
  std::map<std::string, InstanceDef> def;
  for (const auto& [name, inst] : controller.instances()) {
    ASSERT_TRUE(by_name.count(inst.allocation.host)) << name;
    def[name] = {name, inst.service, inst.allocation.ip, inst.allocation.mac};
    std::string short_name = name;
    short_name.erase(std::remove(short_name.begin(), short_name.end(), '-'), short_name.end());
    ns[name] =
        StartInstance(*by_name[inst.allocation.host], def[name], short_name, "vnet-" + short_name);
    ASSERT_FALSE(ns[name].empty());
  }
  for (auto& h : hosts_) h->agent->Poke();  // new ports: the workers resync now
  const std::string web0_host = controller.instances().at("web-0").allocation.host;
  const std::string web1_host = controller.instances().at("web-1").allocation.host;
  ASSERT_NE(web0_host, web1_host);  // spread
  EXPECT_GE(Ping(ns["web-0"], def["web-1"].ip, 5s), 0) << "web-0 cannot ping web-1";
  {
    TcpServer server(ns["web-1"], 9090);
    EXPECT_GE(TcpExchange(ns["web-0"], def["web-1"].ip, 9090, 5s), 0);
    EXPECT_EQ(server.accepted(), 1);
  }
  EXPECT_LT(Ping(ns["web-0"], def["db-0"].ip, 500ms), 0) << "web-0 reaches db-0";
  EXPECT_LT(Ping(ns["db-0"], def["web-1"].ip, 500ms), 0) << "db-0 reaches web-1";

  // The operator fails web-1 over to the host without a web instance: all three hosts' slices
  // change (web-0's, the one web-1 leaves, the one it comes to).
  std::string target;
  for (auto& h : hosts_)
    if (h->name != web0_host && h->name != web1_host) target = h->name;
  const int64_t before = controller.topology_revision();
  auto decided = SteadyClock::now();
  v1::FailoverRequest failover;
  failover.set_instance("web-1");
  failover.set_to_host(target);
  auto moved = controller.Failover(failover);
  ASSERT_TRUE(moved.ok()) << moved.status().ToString();
  ASSERT_EQ(controller.topology_revision(), before + 1);
  const InstanceRecord& web1 = controller.instances().at("web-1");
  EXPECT_EQ(web1.allocation.host, target);
  EXPECT_EQ(web1.allocation.ip, def["web-1"].ip);
  EXPECT_EQ(web1.allocation.mac, def["web-1"].mac);
  EXPECT_EQ(web1.generation, 2);
  ASSERT_TRUE(testing::WaitFor([&] { return all_applied(before + 1); }, 10s, 5ms));
  double applied_ms = Ms(SteadyClock::now() - decided);
  // Its new domain comes up on the target (same IP and MAC); the old one is left running.
  const std::string web1_new = StartInstance(*by_name[target], def["web-1"], "web1b", "vnet-web1b");
  ASSERT_FALSE(web1_new.empty());
  by_name[target]->agent->Poke();
  double rtt = Ping(ns["web-0"], def["web-1"].ip, 5s);
  double reached_ms = Ms(SteadyClock::now() - decided);
  EXPECT_GE(rtt, 0) << "web-0 cannot reach web-1 on " << target;
  {
    TcpServer new_server(web1_new, 9091);
    TcpServer old_server(ns["web-1"], 9091);
    EXPECT_GE(TcpExchange(ns["web-0"], def["web-1"].ip, 9091, 5s), 0);
    EXPECT_EQ(new_server.accepted(), 1);
    EXPECT_EQ(old_server.accepted(), 0) << "the stale copy still gets web-0's traffic";
  }
  EXPECT_LT(Ping(ns["web-1"], def["web-0"].ip, 500ms), 0) << "the stale web-1 reaches web-0";
  std::printf(
      "[ figures ] controller failover of web-1 %s -> %s: revision %lld applied by all 3 agents "
      "%.0f ms after the decision; web-0 reaches the new copy %.0f ms after the decision (its "
      "port created in between)\n",
      web1_host.c_str(), target.c_str(), static_cast<long long>(before + 1), applied_ms,
      reached_ms);
}

}  // namespace
}  // namespace regen
