// End to end on a lab with mutual TLS (real controller and agents on loopback, certificates from
// scripts/gen-certs.sh in the lab's temp dir): an agent with its own certificate joins; an agent
// whose certificate another CA signed, an agent whose certificate names another host and an agent
// without a certificate are refused and never listed; regenctl without credentials is refused
// (UNAUTHENTICATED, or at the handshake when the controller requires certificates), a read-only
// certificate or token may list but not change anything (PERMISSION_DENIED), an agent's
// certificate may not use regenctl's RPCs, an admin token or certificate may; a config with
// neither tls nor insecure does not start, and insecure mode warns.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <sstream>

#include "common/grpc_tls.h"
#include "common/proto/regen.grpc.pb.h"
#include "common/subprocess.h"
#include "ctl/regenctl.h"
#include "tests/e2e/lab_harness.h"

namespace regen::testing {
namespace {

using std::chrono::milliseconds;

struct CtlResult {
  int code = -1;
  std::string out;
  std::string err;
};

// regenctl ARGS... in this process, with no REGEN_* credentials from the environment.
CtlResult Regenctl(std::vector<std::string> args) {
  for (const char* v :
       {"REGEN_CA", "REGEN_CERT", "REGEN_KEY", "REGEN_TOKEN_FILE", "REGEN_CONTROLLER"}) {
    unsetenv(v);
  }
  args.insert(args.begin(), "regenctl");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  std::ostringstream out, err;
  CtlResult r;
  r.code = RegenctlMain(static_cast<int>(argv.size()), argv.data(), out, err);
  r.out = out.str();
  r.err = err.str();
  return r;
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// An agent's first steps done by hand: Connect with `tls` (plaintext when tls.ca is empty), say
// hello as `host`, and return how the controller ended the stream; *refusal gets the Refusal's
// reason when one came.
grpc::Status HelloAs(const std::string& address, const TlsFiles& tls, const std::string& host,
                     std::string* refusal) {
  auto credentials = MakeChannelCredentials(tls);
  EXPECT_TRUE(credentials.ok()) << credentials.status().ToString();
  if (!credentials.ok()) return grpc::Status(grpc::StatusCode::INTERNAL, "no credentials");
  grpc::ChannelArguments args;
  ApplyServerName(tls, &args);
  auto channel = grpc::CreateCustomChannel(address, *credentials, args);
  auto stub = v1::AgentService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = stub->Connect(&context);
  v1::AgentMessage hello;
  hello.mutable_hello()->set_host(host);
  hello.mutable_hello()->set_address("127.0.0.1");
  hello.mutable_hello()->set_agent_version("0.1");
  auto* capacity = hello.mutable_hello()->mutable_capacity();
  capacity->set_vcpus(4);
  capacity->set_memory_mib(4096);
  capacity->set_disk_gib(10);
  capacity->set_bandwidth_mbps(100);
  if (stream->Write(hello)) stream->WritesDone();
  v1::ControllerMessage reply;
  while (stream->Read(&reply)) {
    if (reply.has_refusal()) *refusal = reply.refusal().reason();
  }
  return stream->Finish();
}

std::set<std::string> HostNames(Lab& lab) {
  std::set<std::string> names;
  auto r = lab.client().ListHosts();
  if (r.ok()) {
    for (const auto& h : r->hosts()) names.insert(h.name());
  }
  return names;
}

// Rewrites `host`'s agent.yaml: every occurrence of `from` becomes `to`.
void EditAgentConfig(Lab& lab, int host, const std::string& from, const std::string& to) {
  std::string text = ReadFileOrDie(lab.AgentConfigPath(host));
  size_t at = text.find(from);
  ASSERT_NE(at, std::string::npos) << from << " not in\n" << text;
  while (at != std::string::npos) {
    text.replace(at, from.size(), to);
    at = text.find(from, at + to.size());
  }
  WriteFileOrDie(lab.AgentConfigPath(host), text);
}

std::string ControllerLog(Lab& lab) { return ReadFileOrDie(lab.dir() + "/controller.log"); }
std::string AgentLog(Lab& lab, int host) {
  return ReadFileOrDie(lab.dir() + "/" + lab.HostName(host) + "/agent.log");
}

TEST(SecurityE2eTest, OnlyAnAgentWithItsOwnCertificateFromTheCaJoins) {
  LabOptions o;
  o.hosts = 4;
  o.tls = true;
  Lab lab(o);
  const std::string certs = lab.CertsDir() + "/";
  // host-2: a certificate with the right name from another CA.
  GenerateCerts(lab.dir() + "/other-ca", "regen-controller", {"host-2"});
  EditAgentConfig(lab, 2, certs + "host-2.", lab.dir() + "/other-ca/host-2.");
  // host-3: host-1's certificate (CN host-1) while claiming to be host-3.
  EditAgentConfig(lab, 3, certs + "host-3.", certs + "host-1.");
  // host-4: no certificate at all (plaintext).
  std::string host4 = ReadFileOrDie(lab.AgentConfigPath(4));
  host4 = host4.substr(0, host4.find("tls:\n")) + "insecure: true\n";
  WriteFileOrDie(lab.AgentConfigPath(4), host4);

  lab.StartController();
  for (int k = 1; k <= 4; ++k) lab.StartAgent(k);

  // (1) host-1, with its own certificate, joins.
  ASSERT_TRUE(WaitFor([&] { return lab.HostState("host-1") == "up"; }, milliseconds(20000),
                      milliseconds(50)))
      << lab.Logs();

  // (3) host-3 is refused, and the controller's log names both the certificate and the claim.
  ASSERT_TRUE(WaitFor(
      [&] {
        std::string log = ControllerLog(lab);
        return Contains(log, "its certificate names \"host-1\"") &&
               Contains(log, "its hello claims host \"host-3\"");
      },
      milliseconds(20000), milliseconds(50)))
      << lab.Logs();
  EXPECT_TRUE(WaitFor([&] { return Contains(AgentLog(lab, 3), "claims host \"host-3\""); },
                      milliseconds(10000), milliseconds(50)))
      << "the refused agent logs why\n"
      << AgentLog(lab, 3);
  // (4) host-4 warns that it runs without TLS.
  EXPECT_TRUE(WaitFor([&] { return Contains(AgentLog(lab, 4), "insecure: true"); },
                      milliseconds(10000), milliseconds(50)))
      << AgentLog(lab, 4);

  // (2), (3), (4): none of the refused agents is ever listed (watched for three seconds, while
  // they keep retrying).
  bool impostor_listed = WaitFor([&] { return HostNames(lab) != std::set<std::string>{"host-1"}; },
                                 milliseconds(3000), milliseconds(50));
  EXPECT_FALSE(impostor_listed) << "hosts: " << [&] {
    std::string s;
    for (const auto& h : HostNames(lab)) s += h + " ";
    return s;
  }() << "\n" << lab.Logs();
  EXPECT_EQ(lab.HostState("host-1"), "up");

  // The same refusals by hand, with the gRPC codes.
  std::string refusal;
  grpc::Status wrong_host =
      HelloAs(lab.controller_address(), lab.ClientTls("host-1"), "host-3", &refusal);
  EXPECT_EQ(wrong_host.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << wrong_host.error_message();
  EXPECT_TRUE(Contains(wrong_host.error_message(), "\"host-1\"") &&
              Contains(wrong_host.error_message(), "\"host-3\""))
      << wrong_host.error_message();
  EXPECT_EQ(refusal, wrong_host.error_message()) << "a Refusal message comes first";

  TlsFiles other_ca = lab.ClientTls("");
  other_ca.cert = lab.dir() + "/other-ca/host-2.crt";
  other_ca.key = lab.dir() + "/other-ca/host-2.key";
  grpc::Status foreign = HelloAs(lab.controller_address(), other_ca, "host-2", &refusal);
  EXPECT_EQ(foreign.error_code(), grpc::StatusCode::UNAVAILABLE)
      << "refused at the TLS handshake: " << foreign.error_message();

  grpc::Status plaintext = HelloAs(lab.controller_address(), TlsFiles{}, "host-4", &refusal);
  EXPECT_EQ(plaintext.error_code(), grpc::StatusCode::UNAVAILABLE) << plaintext.error_message();

  // No tokens configured: the controller requires a certificate at the handshake, so regenctl
  // without one cannot even connect, and a plaintext regenctl neither.
  const std::string ca = certs + "ca.crt";
  CtlResult no_cert =
      Regenctl({"--controller", lab.controller_address(), "--ca", ca, "host", "list"});
  EXPECT_EQ(no_cert.code, 1) << no_cert.out << no_cert.err;
  EXPECT_TRUE(Contains(no_cert.err, "--cert/--key"))
      << "the error hints at the fix: " << no_cert.err;
  CtlResult plain = Regenctl({"--controller", lab.controller_address(), "host", "list"});
  EXPECT_EQ(plain.code, 1) << plain.out << plain.err;
  EXPECT_TRUE(Contains(plain.err, "needs --ca")) << plain.err;
  // The read-only certificate lists hosts.
  CtlResult ro =
      Regenctl({"--controller", lab.controller_address(), "--ca", ca, "--cert",
                certs + "readonly.crt", "--key", certs + "readonly.key", "host", "list"});
  EXPECT_EQ(ro.code, 0) << ro.err;
  EXPECT_TRUE(Contains(ro.out, "host-1")) << ro.out;
}

// SIGHUP (an operator's `systemctl reload`, or `kill -HUP` after replacing certificates): the
// controller re-reads its tls: files at once instead of at the next reload_interval, and neither
// daemon ends (SIGHUP's default action ended both before); the host stays up.
TEST(SecurityE2eTest, SighupReReadsTheCertificatesAndEndsNoDaemon) {
  LabOptions o;
  o.hosts = 1;
  o.tls = true;
  Lab lab(o);
  lab.StartController();
  lab.StartAgent(1);
  ASSERT_TRUE(WaitFor([&] { return lab.HostState("host-1") == "up"; }, milliseconds(20000),
                      milliseconds(50)))
      << lab.Logs();
  ASSERT_EQ(kill(lab.ControllerPid(), SIGHUP), 0);
  ASSERT_EQ(kill(lab.AgentPid(1), SIGHUP), 0);
  EXPECT_TRUE(WaitFor(
      [&] {
        return Contains(ReadFileOrDie(lab.dir() + "/controller.log"),
                        "SIGHUP: re-reading the TLS files");
      },
      milliseconds(10000)))
      << lab.Logs();
  EXPECT_TRUE(WaitFor(
      [&] {
        return Contains(ReadFileOrDie(lab.dir() + "/host-1/agent.log"),
                        "SIGHUP: nothing to reload");
      },
      milliseconds(10000)))
      << lab.Logs();
  // The re-read found the same files: nothing refused, nothing new.
  EXPECT_FALSE(Contains(ReadFileOrDie(lab.dir() + "/controller.log"), "keeping the certificates"));
  EXPECT_TRUE(lab.ControllerRunning());
  EXPECT_TRUE(lab.AgentRunning(1));
  EXPECT_EQ(lab.HostState("host-1"), "up");
}

TEST(SecurityE2eTest, RegenctlNeedsCredentialsAndTheRoleForTheCall) {
  LabOptions o;
  o.hosts = 2;
  o.tls = true;
  o.tokens = true;  // certificates become optional at the handshake; the RPCs check
  Lab lab(o);
  lab.StartAll();
  const std::string certs = lab.CertsDir() + "/";
  const std::string addr = lab.controller_address();
  const std::string ca = certs + "ca.crt";
  const std::string spec = lab.dir() + "/web.yaml";
  WriteFileOrDie(spec, Lab::ServiceYaml("web", 2, 2));
  auto with = [&](std::vector<std::string> creds, std::vector<std::string> command) {
    std::vector<std::string> args = {"--controller", addr, "--timeout", "20"};
    args.insert(args.end(), creds.begin(), creds.end());
    args.insert(args.end(), command.begin(), command.end());
    return Regenctl(args);
  };
  const std::vector<std::string> readonly_cert = {
      "--ca", ca, "--cert", certs + "readonly.crt", "--key", certs + "readonly.key"};
  const std::vector<std::string> readonly_token = {"--ca", ca, "--token-file",
                                                   certs + "readonly.token"};
  const std::vector<std::string> admin_token = {"--ca", ca, "--token-file", certs + "admin.token"};

  // (5) No credentials at all (TLS, no certificate, no token): UNAUTHENTICATED, for unary calls
  // and for the event stream.
  CtlResult none = with({"--ca", ca}, {"host", "list"});
  EXPECT_EQ(none.code, 1);
  EXPECT_TRUE(Contains(none.err, "ListHosts refused: no credentials")) << none.err;
  CtlResult none_events = with({"--ca", ca}, {"events"});
  EXPECT_EQ(none_events.code, 1);
  EXPECT_TRUE(Contains(none_events.err, "Events refused: no credentials")) << none_events.err;
  AdminClientOptions bare;
  bare.tls = lab.ClientTls("");
  AdminClient anonymous(addr, bare);
  EXPECT_EQ(anonymous.ListHosts().status().code(), Code::kUnauthenticated);
  EXPECT_EQ(anonymous
                .Drain([] {
                  v1::DrainRequest r;
                  r.set_host("host-1");
                  return r;
                }())
                .status()
                .code(),
            Code::kUnauthenticated);
  // A token the controller does not know.
  WriteFileOrDie(lab.dir() + "/wrong.token", "0123456789abcdef\n");
  CtlResult wrong =
      with({"--ca", ca, "--token-file", lab.dir() + "/wrong.token"}, {"host", "list"});
  EXPECT_EQ(wrong.code, 1);
  EXPECT_TRUE(Contains(wrong.err, "ListHosts refused: the token is not accepted")) << wrong.err;
  // An agent without a certificate over TLS (possible here: certificates are optional at the
  // handshake) is refused UNAUTHENTICATED.
  std::string refusal;
  grpc::Status agent_without_cert = HelloAs(addr, lab.ClientTls(""), "host-1", &refusal);
  EXPECT_EQ(agent_without_cert.error_code(), grpc::StatusCode::UNAUTHENTICATED)
      << agent_without_cert.error_message();
  EXPECT_TRUE(Contains(agent_without_cert.error_message(), "no client certificate"))
      << agent_without_cert.error_message();

  // (6) Read-only certificate and token: lists work, changes are PERMISSION_DENIED.
  for (const auto& creds : {readonly_cert, readonly_token}) {
    CtlResult list = with(creds, {"host", "list"});
    EXPECT_EQ(list.code, 0) << list.err;
    EXPECT_TRUE(Contains(list.out, "host-1") && Contains(list.out, "host-2")) << list.out;
    CtlResult events = with(creds, {"events"});
    EXPECT_EQ(events.code, 0) << events.err;
    CtlResult drain = with(creds, {"host", "drain", "host-1"});
    EXPECT_EQ(drain.code, 1) << drain.out;
    EXPECT_TRUE(Contains(drain.err, "Drain refused: it changes the cluster and needs role admin"))
        << drain.err;
    EXPECT_TRUE(Contains(drain.err, "has role read-only")) << drain.err;
    CtlResult apply = with(creds, {"service", "apply", "-f", spec});
    EXPECT_EQ(apply.code, 1) << apply.out;
    EXPECT_TRUE(Contains(apply.err, "ApplyService refused")) << apply.err;
  }
  AdminClientOptions ro;
  ro.tls = lab.ClientTls("readonly");
  AdminClient readonly(addr, ro);
  EXPECT_TRUE(readonly.ListInstances().ok());
  v1::DrainRequest drain_request;
  drain_request.set_host("host-1");
  EXPECT_EQ(readonly.Drain(drain_request).status().code(), Code::kPermissionDenied);
  EXPECT_EQ(lab.HostState("host-1"), "up") << "the refused drain changed nothing";

  // An agent's certificate is not a regenctl credential unless auth.certs lists it.
  CtlResult agent_cert =
      with({"--ca", ca, "--cert", certs + "host-1.crt", "--key", certs + "host-1.key"},
           {"host", "list"});
  EXPECT_EQ(agent_cert.code, 1);
  EXPECT_TRUE(Contains(agent_cert.err, "is not listed in auth.certs")) << agent_cert.err;

  // (7) The admin token changes things; so does the admin certificate.
  CtlResult apply = with(admin_token, {"service", "apply", "-f", spec});
  EXPECT_EQ(apply.code, 0) << apply.err;
  EXPECT_TRUE(Contains(apply.out, "service web created")) << apply.out;
  ASSERT_TRUE(lab.WaitAllRunning(2, milliseconds(20000))) << lab.Logs();
  CtlResult drain = with({"--ca", ca, "--cert", certs + "admin.crt", "--key", certs + "admin.key"},
                         {"host", "drain", "host-2"});
  EXPECT_EQ(drain.code, 0) << drain.err;
  EXPECT_EQ(lab.HostState("host-2"), "draining");

  // Refusals are in the controller's log with the RPC.
  std::string log = ControllerLog(lab);
  EXPECT_TRUE(Contains(log, "regenctl call from") && Contains(log, "Drain refused")) << log;

  // The controller's certificate names "regen-controller" (and 127.0.0.1, which the lab dials):
  // --tls-server-name picks the name to check; a name it does not carry fails the handshake.
  CtlResult named = with({"--ca", ca, "--tls-server-name", "regen-controller", "--token-file",
                          certs + "readonly.token"},
                         {"host", "list"});
  EXPECT_EQ(named.code, 0) << named.err;
  CtlResult misnamed = with(
      {"--ca", ca, "--tls-server-name", "other.example", "--token-file", certs + "readonly.token"},
      {"host", "list"});
  EXPECT_EQ(misnamed.code, 1) << misnamed.out;
  EXPECT_TRUE(Contains(misnamed.err, "--tls-server-name")) << misnamed.err;

  // Bad flag combinations never reach the controller.
  CtlResult no_key = with({"--ca", ca, "--cert", certs + "admin.crt"}, {"host", "list"});
  EXPECT_EQ(no_key.code, 2);
  EXPECT_TRUE(Contains(no_key.err, "needs --key")) << no_key.err;
  CtlResult no_cert = with({"--ca", ca, "--key", certs + "admin.key"}, {"host", "list"});
  EXPECT_EQ(no_cert.code, 2);
  EXPECT_TRUE(Contains(no_cert.err, "needs --cert")) << no_cert.err;
  CtlResult no_ca =
      with({"--cert", certs + "admin.crt", "--key", certs + "admin.key"}, {"host", "list"});
  EXPECT_EQ(no_ca.code, 2);
  EXPECT_TRUE(Contains(no_ca.err, "--cert needs --ca")) << no_ca.err;
  CtlResult missing = with({"--ca", lab.dir() + "/nope.crt"}, {"host", "list"});
  EXPECT_EQ(missing.code, 2);
  EXPECT_TRUE(Contains(missing.err, "--ca: cannot read")) << missing.err;
  CtlResult no_token =
      with({"--ca", ca, "--token-file", lab.dir() + "/nope.token"}, {"host", "list"});
  EXPECT_EQ(no_token.code, 2);
  EXPECT_TRUE(Contains(no_token.err, "--token-file")) << no_token.err;

  // --crl: a controller whose certificate the CA revoked is refused; without --crl it is not.
  CtlResult crl_alone = with({"--crl", certs + "crl.pem"}, {"host", "list"});
  EXPECT_EQ(crl_alone.code, 2);
  EXPECT_TRUE(Contains(crl_alone.err, "--crl needs --ca")) << crl_alone.err;
  RealCommandRunner runner;
  auto revoked = CheckedRun(
      runner, {SourceDir() + "/scripts/gen-certs.sh", "--revoke", lab.CertsDir(), "controller"},
      milliseconds(60000));
  ASSERT_TRUE(revoked.ok()) << revoked.status().ToString();
  std::vector<std::string> with_crl = readonly_token;
  with_crl.insert(with_crl.end(), {"--crl", certs + "crl.pem"});
  CtlResult refused = with(with_crl, {"host", "list"});
  EXPECT_EQ(refused.code, 1) << refused.out;
  EXPECT_FALSE(Contains(refused.out, "host-1")) << refused.out;
  EXPECT_TRUE(Contains(refused.err, "--crl says the controller's certificate is revoked"))
      << refused.err;
  CtlResult without_crl = with(readonly_token, {"host", "list"});
  EXPECT_EQ(without_crl.code, 0) << without_crl.err;

  // The environment works like the flags.
  setenv("REGEN_CA", ca.c_str(), 1);
  setenv("REGEN_TOKEN_FILE", (certs + "readonly.token").c_str(), 1);
  std::string a0 = "regenctl", a1 = "--controller", a2 = addr, a3 = "host", a4 = "list";
  char* argv[] = {a0.data(), a1.data(), a2.data(), a3.data(), a4.data()};
  std::ostringstream out, err;
  EXPECT_EQ(RegenctlMain(5, argv, out, err), 0) << err.str();
  EXPECT_TRUE(Contains(out.str(), "host-1")) << out.str();
  unsetenv("REGEN_CA");
  unsetenv("REGEN_TOKEN_FILE");
}

TEST(SecurityE2eTest, NeitherTlsNorInsecureDoesNotStartAndInsecureWarns) {
  TempDir dir("regen-security");
  int port = FreePort();
  const std::string listen = "127.0.0.1:" + std::to_string(port);
  WriteFileOrDie(dir.File("controller.yaml"),
                 "listen_address: \"" + listen + "\"\ndatabase: " + dir.File("c.db") + "\n");
  {
    ChildProcess controller({ControllerBin(), "run", "--config", dir.File("controller.yaml")},
                            dir.File("refused.log"));
    ASSERT_TRUE(WaitFor([&] { return !controller.Running(); }, milliseconds(10000)))
        << "the controller started without tls or insecure";
    int status = controller.Stop();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << status;
  }
  std::string log = ReadFileOrDie(dir.File("refused.log"));
  EXPECT_TRUE(Contains(log,
                       "tls: required field is missing: set tls: {ca, cert, key} or "
                       "insecure: true"))
      << log;

  WriteFileOrDie(dir.File("agent.yaml"),
                 "host_name: host-a\ncontroller_address: \"" + listen +
                     "\"\nlibvirt_uri: \"test:///default\"\ndomain_type: test\nstate_dir: " +
                     dir.File("state") + "\ncontrol_socket: " + dir.File("agent.sock") + "\n");
  {
    ChildProcess agent({AgentBin(), "run", "--config", dir.File("agent.yaml")},
                       dir.File("agent-refused.log"));
    ASSERT_TRUE(WaitFor([&] { return !agent.Running(); }, milliseconds(10000)))
        << "the agent started without tls or insecure";
    int status = agent.Stop();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << status;
  }
  log = ReadFileOrDie(dir.File("agent-refused.log"));
  EXPECT_TRUE(Contains(log, "tls: required field is missing")) << log;

  // insecure: true starts, with a warning.
  WriteFileOrDie(dir.File("controller.yaml"), "listen_address: \"" + listen + "\"\ndatabase: " +
                                                  dir.File("c.db") + "\ninsecure: true\n");
  ChildProcess controller({ControllerBin(), "run", "--config", dir.File("controller.yaml")},
                          dir.File("controller.log"));
  ASSERT_TRUE(WaitFor([&] { return PortOpen(port); }, milliseconds(10000), milliseconds(10)))
      << ReadFileOrDie(dir.File("controller.log"));
  // The port opens before the daemon logs that it listens: wait for the lines.
  EXPECT_TRUE(WaitFor(
      [&] {
        log = ReadFileOrDie(dir.File("controller.log"));
        return Contains(log, "INSECURE plaintext");
      },
      milliseconds(10000), milliseconds(10)))
      << log;
  EXPECT_TRUE(Contains(log, "warning")) << log;
  EXPECT_TRUE(Contains(log, "insecure: true: agents and regenctl connect over plaintext")) << log;
  // Without an auth block anything goes in insecure mode.
  CtlResult list = Regenctl({"--controller", listen, "host", "list"});
  EXPECT_EQ(list.code, 0) << list.err;
  controller.Stop();
}

}  // namespace
}  // namespace regen::testing
