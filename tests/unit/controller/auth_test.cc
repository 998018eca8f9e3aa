// controller/auth: who may call which AdminService RPC (roles from certificates and bearer
// tokens, insecure mode, a missing auth block) and which agent may claim which host.
#include "controller/auth.h"

#include <gtest/gtest.h>

#include "tests/fakes/test_util.h"

namespace regen {
namespace {

ControllerConfig TlsConfigWithAuth() {
  ControllerConfig c;
  c.tls = {"/ca.crt", "/ctl.crt", "/ctl.key", ""};
  c.auth.configured = true;
  c.auth.certs = {{"admin@regenctl", "admin"}, {"readonly@regenctl", "read-only"}};
  return c;
}

Authorizer WithTokens(const ControllerConfig& c) {
  return Authorizer(c, {{"admin-secret", Role::kAdmin}, {"ro-secret", Role::kReadOnly}});
}

Caller Cert(std::vector<std::string> names) {
  Caller caller;
  caller.cert_names = std::move(names);
  return caller;
}

Caller Token(const std::string& header) {
  Caller caller;
  caller.authorization = header;
  return caller;
}

TEST(AuthorizerTest, AdminCertificateMayDoEverything) {
  Authorizer a = WithTokens(TlsConfigWithAuth());
  EXPECT_TRUE(a.AuthorizeAdmin(Cert({"admin@regenctl"}), "Drain", true).ok());
  EXPECT_TRUE(a.AuthorizeAdmin(Cert({"admin@regenctl"}), "ListHosts", false).ok());
}

TEST(AuthorizerTest, ReadOnlyCertificateMayOnlyRead) {
  Authorizer a = WithTokens(TlsConfigWithAuth());
  EXPECT_TRUE(a.AuthorizeAdmin(Cert({"readonly@regenctl"}), "ListHosts", false).ok());
  Status s = a.AuthorizeAdmin(Cert({"readonly@regenctl"}), "Drain", true);
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_EQ(s.message(),
            "Drain refused: it changes the cluster and needs role admin; certificate "
            "\"readonly@regenctl\" has role read-only");
}

TEST(AuthorizerTest, AgentCertificateIsNotARegenctlCredentialUnlessListed) {
  ControllerConfig c = TlsConfigWithAuth();
  Authorizer a = WithTokens(c);
  Status s = a.AuthorizeAdmin(Cert({"host-1"}), "ListHosts", false);
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_NE(s.message().find("ListHosts refused: the client certificate (\"host-1\") is not "
                             "listed in auth.certs"),
            std::string::npos)
      << s.message();
  c.auth.certs.push_back({"host-1", "admin"});
  EXPECT_TRUE(WithTokens(c).AuthorizeAdmin(Cert({"host-1"}), "Failover", true).ok());
}

TEST(AuthorizerTest, AnyOfTheCertificateNamesCounts) {
  Authorizer a = WithTokens(TlsConfigWithAuth());
  EXPECT_TRUE(a.AuthorizeAdmin(Cert({"ops-laptop", "admin@regenctl"}), "Drain", true).ok());
}

TEST(AuthorizerTest, TokensCarryTheirRole) {
  Authorizer a = WithTokens(TlsConfigWithAuth());
  EXPECT_TRUE(a.AuthorizeAdmin(Token("Bearer admin-secret"), "ApplyService", true).ok());
  EXPECT_TRUE(a.AuthorizeAdmin(Token("bearer ro-secret"), "ListInstances", false).ok());
  Status s = a.AuthorizeAdmin(Token("Bearer ro-secret"), "UpgradeStart", true);
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_NE(s.message().find("the token has role read-only"), std::string::npos) << s.message();
}

TEST(AuthorizerTest, UnknownOrMalformedTokenIsUnauthenticated) {
  Authorizer a = WithTokens(TlsConfigWithAuth());
  Status s = a.AuthorizeAdmin(Token("Bearer admin-secreT"), "ListHosts", false);
  EXPECT_EQ(s.code(), Code::kUnauthenticated);
  EXPECT_EQ(s.message().rfind("ListHosts refused: the token is not accepted", 0), 0u);
  EXPECT_EQ(a.AuthorizeAdmin(Token("Bearer admin-secret-longer"), "ListHosts", false).code(),
            Code::kUnauthenticated);
  EXPECT_EQ(a.AuthorizeAdmin(Token("Bearer "), "ListHosts", false).code(), Code::kUnauthenticated);
  s = a.AuthorizeAdmin(Token("Basic YWRtaW4="), "ListHosts", false);
  EXPECT_EQ(s.code(), Code::kUnauthenticated);
  EXPECT_NE(s.message().find("\"Bearer TOKEN\""), std::string::npos) << s.message();
  // A bad token is refused even beside a good certificate.
  Caller both = Cert({"admin@regenctl"});
  both.authorization = "Bearer nope";
  EXPECT_EQ(a.AuthorizeAdmin(both, "ListHosts", false).code(), Code::kUnauthenticated);
}

TEST(AuthorizerTest, NoCredentialsIsUnauthenticatedNamingTheRpcAndTheFlags) {
  Authorizer a = WithTokens(TlsConfigWithAuth());
  Status s = a.AuthorizeAdmin(Caller{}, "Events", false);
  EXPECT_EQ(s.code(), Code::kUnauthenticated);
  EXPECT_EQ(s.message().rfind("Events refused: no credentials", 0), 0u) << s.message();
  EXPECT_NE(s.message().find("--token-file"), std::string::npos) << s.message();
}

TEST(AuthorizerTest, TlsWithoutAuthBlockRefusesEveryone) {
  ControllerConfig c = TlsConfigWithAuth();
  c.auth = {};
  Authorizer a(c, {});
  EXPECT_EQ(a.AuthorizeAdmin(Caller{}, "ListHosts", false).code(), Code::kUnauthenticated);
  Status s = a.AuthorizeAdmin(Cert({"admin@regenctl"}), "ListHosts", false);
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_NE(s.message().find("no auth: block"), std::string::npos) << s.message();
  ASSERT_EQ(a.StartupWarnings().size(), 2u);
  EXPECT_NE(a.StartupWarnings()[0].find("every regenctl RPC will be refused"), std::string::npos);
  EXPECT_NE(a.StartupWarnings()[1].find("no auth.hosts: any certificate of the CA"),
            std::string::npos);
  c.auth.hosts = {"host-*"};
  EXPECT_EQ(Authorizer(c, {}).StartupWarnings().size(), 1u) << "the list silences it";
}

TEST(AuthorizerTest, InsecureWithoutAuthAllowsAllAndWarns) {
  ControllerConfig c;
  c.insecure = true;
  Authorizer a(c, {});
  EXPECT_TRUE(a.AuthorizeAdmin(Caller{}, "Drain", true).ok());
  auto warnings = a.StartupWarnings();
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_EQ(warnings[0].rfind("insecure: true:", 0), 0u) << warnings[0];
  EXPECT_NE(warnings[1].find("allowed to anyone"), std::string::npos) << warnings[1];
}

TEST(AuthorizerTest, InsecureWithTokensStillChecksThem) {
  ControllerConfig c;
  c.insecure = true;
  c.auth.configured = true;
  c.auth.tokens = {{"/t", "admin"}};
  Authorizer a(c, {{"t0ken", Role::kAdmin}});
  EXPECT_EQ(a.AuthorizeAdmin(Caller{}, "Drain", true).code(), Code::kUnauthenticated);
  EXPECT_TRUE(a.AuthorizeAdmin(Token("Bearer t0ken"), "Drain", true).ok());
}

TEST(AuthorizerTest, CreateReadsTokenFilesAndRefusesEmptyOnes) {
  testing::TempDir dir;
  testing::WriteFileOrDie(dir.File("admin.token"), "  s3cret\n");
  testing::WriteFileOrDie(dir.File("empty.token"), "\n");
  ControllerConfig c = TlsConfigWithAuth();
  c.auth.tokens = {{dir.File("admin.token"), "admin"}};
  auto a = Authorizer::Create(c);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_TRUE(a->AuthorizeAdmin(Token("Bearer s3cret"), "Drain", true).ok());
  c.auth.tokens.push_back({dir.File("empty.token"), "read-only"});
  a = Authorizer::Create(c);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().message().rfind(
                "auth.tokens[1].file: \"" + dir.File("empty.token") + "\" is empty", 0),
            0u)
      << a.status().message();
  c.auth.tokens = {{dir.File("missing.token"), "admin"}};
  a = Authorizer::Create(c);
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("auth.tokens[0].file: cannot read"), std::string::npos)
      << a.status().message();
}

TEST(AgentIdentityTest, TheCertificateMustNameTheHost) {
  EXPECT_TRUE(CheckAgentIdentity(true, AuthConfig{}, {"host-1"}, "host-1").ok());
  EXPECT_TRUE(CheckAgentIdentity(true, AuthConfig{}, {"kvm-7.lab", "host-1"}, "host-1").ok())
      << "a SAN";
  Status s = CheckAgentIdentity(true, AuthConfig{}, {"host-1"}, "host-2");
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_EQ(s.message().rfind("its certificate names \"host-1\" but its hello claims host "
                              "\"host-2\"",
                              0),
            0u)
      << s.message();
  s = CheckAgentIdentity(true, AuthConfig{}, {}, "host-2");
  EXPECT_EQ(s.code(), Code::kUnauthenticated);
  EXPECT_NE(s.message().find("no client certificate"), std::string::npos);
  EXPECT_TRUE(CheckAgentIdentity(false, AuthConfig{}, {}, "anything").ok()) << "insecure mode";
}

TEST(AgentIdentityTest, OnlyListedHostsJoinAndOperatorCertificatesNeverDo) {
  AuthConfig auth;
  auth.certs = {{"ops", "admin"}};
  auth.hosts = {"host-1", "rack1-*"};
  EXPECT_TRUE(CheckAgentIdentity(true, auth, {"host-1"}, "host-1").ok());
  EXPECT_TRUE(CheckAgentIdentity(true, auth, {"rack1-kvm7"}, "rack1-kvm7").ok());
  Status s = CheckAgentIdentity(true, auth, {"host-9"}, "host-9");
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_NE(s.message().find("host \"host-9\", which auth.hosts of controller.yaml does not list"),
            std::string::npos)
      << s.message();
  s = CheckAgentIdentity(false, auth, {}, "rack2-kvm1");
  EXPECT_EQ(s.code(), Code::kPermissionDenied) << "the list holds without TLS too";
  // An operator's certificate (auth.certs) joins as a host only when auth.hosts lists the host.
  auth.hosts = {};
  s = CheckAgentIdentity(true, auth, {"ops"}, "ops");
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_NE(s.message().find("\"ops\" is an operator certificate"), std::string::npos)
      << s.message();
  EXPECT_TRUE(CheckAgentIdentity(true, auth, {"host-1"}, "host-1").ok()) << "not an operator's";
  auth.hosts = {"ops"};
  EXPECT_TRUE(CheckAgentIdentity(true, auth, {"ops"}, "ops").ok()) << "listed: both on purpose";
}

TEST(AgentIdentityTest, HostPatterns) {
  EXPECT_TRUE(HostPatternMatches("host-1", "host-1"));
  EXPECT_FALSE(HostPatternMatches("host-1", "host-10"));
  EXPECT_TRUE(HostPatternMatches("host-*", "host-10"));
  EXPECT_TRUE(HostPatternMatches("host-*", "host-"));
  EXPECT_FALSE(HostPatternMatches("host-*", "hos"));
  EXPECT_TRUE(HostPatternMatches("*-kvm", "rack1-kvm"));
  EXPECT_TRUE(HostPatternMatches("r*-k*m", "rack1-kvm"));
  EXPECT_FALSE(HostPatternMatches("r*-k*m", "rack1-kvx"));
  EXPECT_TRUE(HostPatternMatches("*", "anything"));
}

TEST(ConstantTimeEqualsTest, ComparesWholeStrings) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "ab"));
  EXPECT_FALSE(ConstantTimeEquals("ab", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("", "a"));
  EXPECT_FALSE(ConstantTimeEquals(std::string("a\0b", 3), std::string("a\0c", 3)));
}

}  // namespace
}  // namespace regen
