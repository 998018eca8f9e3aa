// Certificate revocation (tls.crl) and reload (tls.reload_interval) over real gRPC on loopback,
// with certificates from scripts/gen-certs.sh: the server refuses a revoked client, a client
// refuses a revoked server, a replaced certificate (or CRL) serves new connections without a
// restart, and a broken replacement is refused (logged, naming the file) while the old set
// keeps serving. Tests wait on conditions with deadlines, never blindly.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "common/grpc_tls.h"
#include "common/proto/regen.grpc.pb.h"
#include "common/subprocess.h"
#include "common/tls_reloader.h"
#include "config/agent_config.h"
#include "config/controller_config.h"
#include "tests/fakes/test_util.h"

namespace regen {
namespace {

using std::chrono::milliseconds;
using testing::SourceDir;
using testing::TempDir;
using testing::WaitFor;

constexpr milliseconds kReload{100};
constexpr milliseconds kDeadline{15000};  // reload interval + gRPC's 1 s file watcher, with room

void GenCerts(const std::vector<std::string>& args) {
  RealCommandRunner runner;
  std::vector<std::string> argv = {SourceDir() + "/scripts/gen-certs.sh"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto out = CheckedRun(runner, argv, milliseconds(60000));
  ASSERT_TRUE(out.ok()) << out.status().ToString();
}

// Replaces `to` in one step (a rename), as an operator's deploy tool should.
void Install(const std::string& from, const std::string& to) {
  std::filesystem::copy_file(from, to + ".new", std::filesystem::copy_options::overwrite_existing);
  std::filesystem::rename(to + ".new", to);
}

struct CallResult {
  grpc::StatusCode code = grpc::StatusCode::UNKNOWN;
  std::string server_cn;  // the CN of the certificate the server presented
};

class TlsReloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    GenCerts({dir_.File("a"), "localhost", "host-1", "host-2"});
    GenCerts({"--crl", dir_.File("a")});
    std::filesystem::create_directory(dir_.File("live"));
    for (const char* f : {"ca.crt", "controller.crt", "controller.key", "crl.pem"}) {
      Install(dir_.File("a/") + f, dir_.File("live/") + f);
    }
  }
  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now());
  }

  TlsFiles ServerFiles(bool with_crl) const {
    return {dir_.File("live/ca.crt"), dir_.File("live/controller.crt"),
            dir_.File("live/controller.key"), "", with_crl ? dir_.File("live/crl.pem") : ""};
  }
  TlsFiles ClientFiles(const std::string& host, const std::string& crl = "",
                       const std::string& server_name = "localhost") const {
    return {dir_.File("a/ca.crt"), dir_.File("a/" + host + ".crt"), dir_.File("a/" + host + ".key"),
            server_name, crl};
  }

  // Installs a second controller certificate from the same CA, with another CN
  // (ctl-b.lab.example), in place of the live one.
  void ReplaceControllerCertificate() {
    std::filesystem::create_directory(dir_.File("b"));
    Install(dir_.File("a/ca.crt"), dir_.File("b/ca.crt"));
    Install(dir_.File("a/ca.key"), dir_.File("b/ca.key"));
    GenCerts({dir_.File("b"), "ctl-b.lab.example", "host-1"});
    Install(dir_.File("b/controller.key"), dir_.File("live/controller.key"));
    Install(dir_.File("b/controller.crt"), dir_.File("live/controller.crt"));
  }
  // A server with the AdminService's defaults: every RPC that gets through TLS is UNIMPLEMENTED.
  void StartServer(bool with_crl, bool require_client_cert = true) {
    if (server_) {
      server_->Shutdown(std::chrono::system_clock::now());
      server_.reset();
    }
    auto tls = MakeServerCredentials(ServerFiles(with_crl), require_client_cert, kReload);
    ASSERT_TRUE(tls.ok()) << tls.status().ToString();
    tls_ = *tls;
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", tls_.credentials, &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }

  // One RPC on a new channel (its own connection and handshake).
  CallResult Call(const TlsFiles& client) const {
    CallResult r;
    auto credentials = MakeChannelCredentials(client);
    if (!credentials.ok()) {
      ADD_FAILURE() << credentials.status().ToString();
      return r;
    }
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    ApplyServerName(client, &args);
    auto channel =
        grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port_), *credentials, args);
    auto stub = v1::AdminService::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ListHostsRequest req;
    v1::ListHostsResponse resp;
    r.code = stub->ListHosts(&context, req, &resp).error_code();
    if (auto auth = context.auth_context()) {
      for (const auto& v : auth->FindPropertyValues("x509_common_name")) {
        r.server_cn = std::string(v.data(), v.size());
      }
    }
    return r;
  }
  bool Works(const TlsFiles& client) const {
    return Call(client).code == grpc::StatusCode::UNIMPLEMENTED;
  }
  bool LastErrorHas(const std::string& text) const {
    return tls_.reloader->stats().last_error.find(text) != std::string::npos;
  }

  TempDir dir_{"regen-tls-reload"};
  v1::AdminService::Service service_;
  ServerTls tls_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

TEST_F(TlsReloadTest, ServerRefusesARevokedClientCertificate) {
  GenCerts({"--revoke", dir_.File("a"), "host-2"});
  Install(dir_.File("a/crl.pem"), dir_.File("live/crl.pem"));
  StartServer(/*with_crl=*/true);
  EXPECT_EQ(Call(ClientFiles("host-1")).code, grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(Call(ClientFiles("host-2")).code, grpc::StatusCode::UNAVAILABLE);
}

// With tokens (auth.tokens) the controller lets a client without a certificate through the
// handshake; a presented certificate is still verified, and checked against the CRL.
TEST_F(TlsReloadTest, OptionalClientCertificateStillRefusesARevokedOne) {
  GenCerts({"--revoke", dir_.File("a"), "host-2"});
  Install(dir_.File("a/crl.pem"), dir_.File("live/crl.pem"));
  StartServer(/*with_crl=*/true, /*require_client_cert=*/false);
  TlsFiles no_cert = {dir_.File("a/ca.crt"), "", "", "localhost", ""};
  EXPECT_TRUE(Works(no_cert));
  EXPECT_TRUE(Works(ClientFiles("host-1")));
  EXPECT_EQ(Call(ClientFiles("host-2")).code, grpc::StatusCode::UNAVAILABLE);
  GenCerts({dir_.File("c"), "localhost", "host-1"});  // another CA's client certificate
  TlsFiles foreign = {dir_.File("a/ca.crt"), dir_.File("c/host-1.crt"), dir_.File("c/host-1.key"),
                      "localhost", ""};
  EXPECT_EQ(Call(foreign).code, grpc::StatusCode::UNAVAILABLE);
  StartServer(/*with_crl=*/false, /*require_client_cert=*/true);
  EXPECT_EQ(Call(no_cert).code, grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsReloadTest, WithoutACrlTheSameRevokedCertificateGetsIn) {
  GenCerts({"--revoke", dir_.File("a"), "host-2"});
  StartServer(/*with_crl=*/false);
  EXPECT_TRUE(Works(ClientFiles("host-2")));
}

TEST_F(TlsReloadTest, ANewCrlRefusesNewConnectionsWithoutARestart) {
  StartServer(/*with_crl=*/true);
  ASSERT_TRUE(Works(ClientFiles("host-1")));
  GenCerts({"--revoke", dir_.File("a"), "host-1"});
  auto start = std::chrono::steady_clock::now();
  Install(dir_.File("a/crl.pem"), dir_.File("live/crl.pem"));
  EXPECT_TRUE(
      WaitFor([&] { return Call(ClientFiles("host-1")).code == grpc::StatusCode::UNAVAILABLE; },
              kDeadline, milliseconds(50)));
  std::printf(
      "figure: a revoked certificate refused %lld ms after crl.pem was replaced "
      "(reload_interval %lld ms)\n",
      static_cast<long long>(
          std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start)
              .count()),
      static_cast<long long>(kReload.count()));
  EXPECT_TRUE(Works(ClientFiles("host-2")));
}

TEST_F(TlsReloadTest, ClientRefusesARevokedControllerCertificate) {
  StartServer(/*with_crl=*/false);
  // The client's TLS path with a CRL that revokes nothing works, and still checks the name.
  EXPECT_TRUE(Works(ClientFiles("host-1", dir_.File("a/crl.pem"))));
  EXPECT_TRUE(Works(ClientFiles("host-1", dir_.File("a/crl.pem"), "")));  // IP SAN 127.0.0.1
  EXPECT_EQ(Call(ClientFiles("host-1", dir_.File("a/crl.pem"), "other.example")).code,
            grpc::StatusCode::UNAVAILABLE);
  GenCerts({"--revoke", dir_.File("a"), "controller"});
  EXPECT_EQ(Call(ClientFiles("host-1", dir_.File("a/crl.pem"))).code,
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(Works(ClientFiles("host-1")));  // the same server, no CRL on the client
}

TEST_F(TlsReloadTest, AReplacedCertificateServesNewConnectionsWithoutARestart) {
  StartServer(/*with_crl=*/true);
  ASSERT_EQ(Call(ClientFiles("host-1")).server_cn, "localhost");
  auto start = std::chrono::steady_clock::now();
  ReplaceControllerCertificate();
  EXPECT_TRUE(WaitFor([&] { return Call(ClientFiles("host-1")).server_cn == "ctl-b.lab.example"; },
                      kDeadline, milliseconds(50)));
  std::printf(
      "figure: the new certificate served %lld ms after the files were replaced "
      "(reload_interval %lld ms)\n",
      static_cast<long long>(
          std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start)
              .count()),
      static_cast<long long>(kReload.count()));
  EXPECT_GE(tls_.reloader->stats().published, 2u);
}

// SIGHUP's path: ReloadAll wakes every reloader for a re-read now, without waiting for its
// interval (an hour here).
TEST_F(TlsReloadTest, ReloadAllReReadsAtOnceInsteadOfAtTheInterval) {
  auto reloader = TlsReloader::Start(ServerFiles(/*with_crl=*/true), std::chrono::hours(1));
  ASSERT_TRUE(reloader.ok()) << reloader.status().ToString();
  ReplaceControllerCertificate();
  EXPECT_EQ((*reloader)->stats().published, 1u);
  EXPECT_GE(TlsReloader::ReloadAll(), 1);
  EXPECT_TRUE(WaitFor([&] { return (*reloader)->stats().published == 2u; }, kDeadline));
  EXPECT_EQ((*reloader)->stats().checks, 1u);
  reloader->reset();
  const int left = TlsReloader::ReloadAll();
  EXPECT_EQ(left, tls_.reloader ? 1 : 0) << "a destroyed reloader is not woken";
}

TEST_F(TlsReloadTest, ACertificateFromAnotherCaLocksOutOldClientsAndLetsNewOnesIn) {
  StartServer(/*with_crl=*/false);
  ASSERT_TRUE(Works(ClientFiles("host-1")));
  GenCerts({dir_.File("c"), "localhost", "host-1"});  // a new CA
  Install(dir_.File("c/ca.crt"), dir_.File("live/ca.crt"));
  Install(dir_.File("c/controller.key"), dir_.File("live/controller.key"));
  Install(dir_.File("c/controller.crt"), dir_.File("live/controller.crt"));
  TlsFiles new_client = {dir_.File("c/ca.crt"), dir_.File("c/host-1.crt"),
                         dir_.File("c/host-1.key"), "localhost", ""};
  EXPECT_TRUE(WaitFor([&] { return Works(new_client); }, kDeadline, milliseconds(50)));
  EXPECT_EQ(Call(ClientFiles("host-1")).code, grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsReloadTest, BrokenReplacementsAreRefusedAndTheOldSetKeepsServing) {
  StartServer(/*with_crl=*/true);
  ASSERT_EQ(Call(ClientFiles("host-1")).server_cn, "localhost");
  const std::string cert = dir_.File("live/controller.crt");
  const std::string key = dir_.File("live/controller.key");
  const std::string crl = dir_.File("live/crl.pem");

  testing::WriteFileOrDie(cert + ".new", "-----BEGIN CERTIFICATE-----\ngarbage\n");
  std::filesystem::rename(cert + ".new", cert);
  ASSERT_TRUE(WaitFor([&] { return LastErrorHas("tls.cert: \"" + cert + "\""); }, kDeadline));
  EXPECT_EQ(Call(ClientFiles("host-1")).server_cn, "localhost");

  Install(dir_.File("a/controller.crt"), cert);
  Install(dir_.File("a/host-1.key"), key);  // a key that is not the certificate's
  ASSERT_TRUE(WaitFor([&] { return LastErrorHas("does not match the certificate"); }, kDeadline));
  EXPECT_TRUE(LastErrorHas("tls.key: \"" + key + "\""));
  EXPECT_EQ(Call(ClientFiles("host-1")).server_cn, "localhost");

  Install(dir_.File("a/controller.key"), key);
  testing::WriteFileOrDie(crl + ".new", "not a crl at all\n");
  std::filesystem::rename(crl + ".new", crl);
  ASSERT_TRUE(WaitFor([&] { return LastErrorHas("tls.crl: \"" + crl + "\""); }, kDeadline));
  EXPECT_TRUE(Works(ClientFiles("host-1")));
  EXPECT_EQ(tls_.reloader->stats().published, 1u);  // nothing broken was ever handed to gRPC
}

TEST_F(TlsReloadTest, StartRefusesAMissingOrForeignCrl) {
  TlsFiles files = ServerFiles(true);
  files.crl = dir_.File("live/missing.pem");
  auto tls = MakeServerCredentials(files, true, kReload);
  ASSERT_FALSE(tls.ok());
  EXPECT_NE(tls.status().message().find("tls.crl: cannot read \"" + files.crl + "\""),
            std::string::npos)
      << tls.status().message();
  // A CRL of another CA.
  GenCerts({dir_.File("c"), "localhost", "host-1"});
  GenCerts({"--crl", dir_.File("c")});
  files.crl = dir_.File("c/crl.pem");
  tls = MakeServerCredentials(files, true, kReload);
  ASSERT_FALSE(tls.ok());
  EXPECT_NE(tls.status().message().find("is not signed by a certificate in tls.ca"),
            std::string::npos)
      << tls.status().message();
}

TEST_F(TlsReloadTest, ConfigNamesAMissingCrlFile) {
  const std::string yaml = dir_.File("controller.yaml");
  const std::string missing = dir_.File("live/nope.pem");
  testing::WriteFileOrDie(yaml, "tls:\n  ca: " + dir_.File("live/ca.crt") +
                                    "\n  cert: " + dir_.File("live/controller.crt") +
                                    "\n  key: " + dir_.File("live/controller.key") +
                                    "\n  crl: " + missing + "\n  reload_interval: 2s\n");
  Result<ControllerConfig> c = LoadControllerConfig(yaml);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find(yaml + ": tls.crl: cannot read \"" + missing + "\""),
            std::string::npos)
      << c.status().message();

  Result<ControllerConfig> parsed = ParseControllerConfig(
      "tls: {ca: /a/ca, cert: /a/c, key: /a/k, crl: /a/crl.pem, "
      "reload_interval: 2s}\n",
      "c.yaml");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->tls.crl, "/a/crl.pem");
  EXPECT_EQ(parsed->tls.reload_interval, milliseconds(2000));
  parsed = ParseControllerConfig("tls: {ca: /a/ca, cert: /a/c, key: /a/k, reload_interval: 1ms}\n",
                                 "c.yaml");
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.status().message().find("reload_interval"), std::string::npos)
      << parsed.status().message();
  parsed = ParseControllerConfig("tls: {ca: /a/ca, cert: /a/c, key: /a/k, crl: rel/crl.pem}\n",
                                 "c.yaml");
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.status().message().find("crl"), std::string::npos) << parsed.status().message();

  Result<AgentConfig> agent = ParseAgentConfig(
      "host_name: a\ncontroller_address: ctl:7400\n"
      "tls: {ca: /a/ca, cert: /a/c, key: /a/k, crl: /a/crl.pem, server_name: ctl.lab}\n",
      "agent.yaml");
  ASSERT_TRUE(agent.ok()) << agent.status().ToString();
  EXPECT_EQ(agent->tls.crl, "/a/crl.pem");
  agent = ParseAgentConfig(
      "host_name: a\ncontroller_address: ctl:7400\n"
      "tls: {ca: /a/ca, cert: /a/c, key: /a/k, reload_interval: 2s}\n",
      "agent.yaml");
  EXPECT_FALSE(agent.ok());  // the agent reads its files at each connection: no interval
}

}  // namespace
}  // namespace regen
