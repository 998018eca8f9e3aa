// The ldns updater against a scripted loopback "server" (no real DNS server): what goes on the
// wire, TCP fallback on a truncated answer, and the errors for bad input and a dead server.
#include "dns/ldns_updater.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace regen::dns {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;

ZoneUpdate HealUpdate() {
  return {"lab.example.",
          30,
          {"web-2.lab.example."},
          {{"web-1.lab.example.", {"10.0.0.7"}}, {"web.lab.example.", {"10.0.0.2", "10.0.0.7"}}}};
}

uint16_t U16(const std::vector<uint8_t>& m, size_t at) { return (m[at] << 8) | m[at + 1]; }

// Answers on UDP and TCP of one loopback port: echoes the query's header as a response with
// `rcode`, and sets TC on UDP answers when `truncate_udp`.
class ScriptedServer {
 public:
  ScriptedServer(int rcode, bool truncate_udp) : rcode_(rcode), truncate_udp_(truncate_udp) {
    // The kernel picks the UDP port; TCP takes the same number. Another process may hold that
    // number on TCP (a concurrent test's connection, CI under -j2): then pick again.
    bool bound = false;
    for (int attempt = 0; attempt < 50 && !bound; ++attempt) {
      udp_ = socket(AF_INET, SOCK_DGRAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      EXPECT_EQ(bind(udp_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
      socklen_t len = sizeof(a);
      getsockname(udp_, reinterpret_cast<sockaddr*>(&a), &len);
      port_ = ntohs(a.sin_port);
      tcp_ = socket(AF_INET, SOCK_STREAM, 0);
      int one = 1;
      setsockopt(tcp_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
      bound = bind(tcp_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
      if (!bound) {
        close(udp_);
        close(tcp_);
        udp_ = tcp_ = -1;
      }
    }
    if (!bound) {
      ADD_FAILURE() << "no loopback port free on both UDP and TCP in 50 tries";
      return;
    }
    EXPECT_EQ(listen(tcp_, 4), 0);
    thread_ = std::thread([this] { Run(); });
  }
  ~ScriptedServer() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (udp_ >= 0) close(udp_);
    if (tcp_ >= 0) close(tcp_);
  }
  uint16_t port() const { return port_; }
  int udp_queries() const { return udp_queries_; }
  int tcp_queries() const { return tcp_queries_; }
  std::vector<uint8_t> last_query() {
    std::lock_guard lock(mu_);
    return last_query_;
  }

 private:
  std::vector<uint8_t> Answer(const std::vector<uint8_t>& q, bool tc) {
    std::vector<uint8_t> a(q.begin(), q.begin() + 12);
    a[2] = 0x80 | (q[2] & 0x78) | (tc ? 0x02 : 0);  // QR, the query's opcode, TC
    a[3] = static_cast<uint8_t>(rcode_);
    for (int i = 4; i < 12; ++i) a[i] = 0;  // no sections
    return a;
  }
  void Run() {
    while (!stop_) {
      pollfd fds[2] = {{udp_, POLLIN, 0}, {tcp_, POLLIN, 0}};
      if (poll(fds, 2, 20) <= 0) continue;
      if (fds[0].revents & POLLIN) {
        std::vector<uint8_t> buf(65535);
        sockaddr_in from{};
        socklen_t len = sizeof(from);
        ssize_t n =
            recvfrom(udp_, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &len);
        buf.resize(n);
        Remember(buf);
        ++udp_queries_;
        auto a = Answer(buf, truncate_udp_);
        sendto(udp_, a.data(), a.size(), 0, reinterpret_cast<sockaddr*>(&from), len);
      }
      if (fds[1].revents & POLLIN) {
        int c = accept(tcp_, nullptr, nullptr);
        uint8_t lenbuf[2];
        ASSERT_EQ(recv(c, lenbuf, 2, MSG_WAITALL), 2);
        std::vector<uint8_t> buf((lenbuf[0] << 8) | lenbuf[1]);
        ASSERT_EQ(recv(c, buf.data(), buf.size(), MSG_WAITALL), static_cast<ssize_t>(buf.size()));
        Remember(buf);
        ++tcp_queries_;
        auto a = Answer(buf, false);
        std::vector<uint8_t> framed = {0, static_cast<uint8_t>(a.size())};
        framed.insert(framed.end(), a.begin(), a.end());
        send(c, framed.data(), framed.size(), MSG_NOSIGNAL);
        close(c);
      }
    }
  }
  void Remember(const std::vector<uint8_t>& q) {
    std::lock_guard lock(mu_);
    last_query_ = q;
  }

  int rcode_;
  bool truncate_udp_;
  int udp_ = -1, tcp_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> udp_queries_{0}, tcp_queries_{0};
  std::mutex mu_;
  std::vector<uint8_t> last_query_;
  std::thread thread_;
};

std::unique_ptr<DnsUpdater> Updater(uint16_t port, bool with_key, milliseconds timeout) {
  LdnsUpdaterOptions o;
  o.server_address = "127.0.0.1";
  o.port = port;
  o.timeout = timeout;
  if (with_key) o.tsig = TsigKey{"regen-key", "hmac-sha256", "c2VjcmV0LXNlY3JldA=="};
  auto u = NewLdnsUpdater(o);
  EXPECT_TRUE(u.ok()) << u.status().ToString();
  return std::move(u).value();
}

TEST(LdnsUpdaterTest, SendsOneSignedUpdateMessage) {
  ScriptedServer server(/*rcode=*/5, /*truncate_udp=*/false);  // REFUSED: no TSIG to verify
  auto updater = Updater(server.port(), /*with_key=*/true, milliseconds(2000));
  Status s = updater->Apply(HealUpdate());
  ASSERT_EQ(server.udp_queries(), 1);
  std::vector<uint8_t> q = server.last_query();
  ASSERT_GE(q.size(), 12u);
  EXPECT_EQ((q[2] >> 3) & 0x0f, 5) << "opcode UPDATE";
  EXPECT_EQ(q[2] & 0x01, 0) << "RD (a Z bit in UPDATE) must be clear";
  EXPECT_EQ(U16(q, 4), 1) << "one zone";
  EXPECT_EQ(U16(q, 6), 0) << "no prerequisites";
  EXPECT_EQ(U16(q, 8), HealUpdate().RecordCount()) << "every change in this one message";
  EXPECT_EQ(U16(q, 10), 1) << "the TSIG record";
  std::string wire(q.begin(), q.end());
  EXPECT_THAT(wire, HasSubstr("hmac-sha256"));
  EXPECT_THAT(wire, HasSubstr("regen-key"));

  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("zone lab.example."));
  EXPECT_THAT(s.message(), HasSubstr("127.0.0.1:" + std::to_string(server.port())));
  EXPECT_THAT(s.message(), HasSubstr("REFUSED"));
}

TEST(LdnsUpdaterTest, FallsBackToTcpWhenTheAnswerIsTruncated) {
  ScriptedServer server(/*rcode=*/0, /*truncate_udp=*/true);
  auto updater = Updater(server.port(), /*with_key=*/false, milliseconds(2000));
  Status s = updater->Apply(HealUpdate());
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(server.udp_queries(), 1);
  EXPECT_EQ(server.tcp_queries(), 1);
}

TEST(LdnsUpdaterTest, LargeUpdatesGoOverTcp) {
  ScriptedServer server(/*rcode=*/0, /*truncate_udp=*/false);
  auto updater = Updater(server.port(), /*with_key=*/false, milliseconds(2000));
  ZoneUpdate big{"lab.example.", 30, {}, {}};
  RRsetReplacement all{"web.lab.example.", {}};
  for (int i = 2; i < 102; ++i) {
    std::string ip = "10.0.0." + std::to_string(i);
    big.replaces.push_back({"web-" + std::to_string(i) + ".lab.example.", {ip}});
    all.addresses.push_back(ip);
  }
  std::sort(all.addresses.begin(), all.addresses.end());
  big.replaces.push_back(all);
  Status s = updater->Apply(big);
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(server.udp_queries(), 0);
  EXPECT_EQ(server.tcp_queries(), 1);
  EXPECT_EQ(U16(server.last_query(), 8), big.RecordCount());
}

TEST(LdnsUpdaterTest, SignedUpdateWithAnUnsignedNoErrorAnswerIsNotTrusted) {
  ScriptedServer server(/*rcode=*/0, /*truncate_udp=*/false);
  auto updater = Updater(server.port(), /*with_key=*/true, milliseconds(2000));
  Status s = updater->Apply(HealUpdate());
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("not signed"));
}

TEST(LdnsUpdaterTest, DeadServerIsUnavailableNamingServerAndZone) {
  uint16_t port = 0;
  {
    ScriptedServer server(0, false);  // find a free port, then close it
    port = server.port();
  }
  auto updater = Updater(port, /*with_key=*/true, milliseconds(300));
  auto start = std::chrono::steady_clock::now();
  Status s = updater->Apply(HealUpdate());
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(2000));
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("127.0.0.1:" + std::to_string(port)));
  EXPECT_THAT(s.message(), HasSubstr("zone lab.example."));
  EXPECT_THAT(s.message(), HasSubstr("is the DNS server running"));
}

TEST(LdnsUpdaterTest, EmptyUpdateSendsNothing) {
  auto updater = Updater(9, /*with_key=*/false, milliseconds(100));
  EXPECT_TRUE(updater->Apply({"lab.example.", 30, {}, {}}).ok());
}

TEST(LdnsUpdaterTest, RefusesBadOptions) {
  LdnsUpdaterOptions o;
  o.server_address = "dns.lab.example";
  auto by_name = NewLdnsUpdater(o);
  ASSERT_FALSE(by_name.ok());
  EXPECT_THAT(by_name.status().message(), HasSubstr("not an IP address"));
  o.server_address = "::1";
  o.tsig = TsigKey{"k.", "hmac-md5", "c2VjcmV0"};
  EXPECT_EQ(NewLdnsUpdater(o).status().code(), Code::kInvalidArgument);
  o.tsig = TsigKey{"k.", "hmac-sha256", "c2VjcmV0"};
  auto v6 = NewLdnsUpdater(o);
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ((*v6)->ServerName(), "[::1]:53");
}

}  // namespace
}  // namespace regen::dns
