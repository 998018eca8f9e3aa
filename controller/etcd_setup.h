// `regen-controller etcd init | add-host | remove-host`: etcd's users, roles and auth switch for
// the HA mode, run by an operator or an installer (main thread; one short-lived etcd client).
//
// What they set up (etcd 3.4 auth; the names are fixed so that every command is idempotent):
// - user `root` with role `root` (etcd requires it before auth can be enabled; the commands
//   authenticate as root, password from --root-password-file);
// - role `regen-controller`: read/write on the whole `<prefix>` range (state, election, hosts'
//   keys), granted to the controllers' user: controller.yaml's `etcd.user` (password from
//   `etcd.password_file`), or, when controller.yaml has no user but a client certificate
//   (`etcd.tls.cert`, etcd --client-cert-auth), a user named by that certificate's CN, without a
//   password (etcd maps a client certificate's CN to the user of that name);
// - per agent host HOST: user HOST (scripts/gen-certs.sh puts the host name in the agent
//   certificate's CN; with --password-file it also has a password, else none: certificate only),
//   role `regen-host-HOST` with read/write on `<prefix>hosts/HOST/` only, granted to it.
//
// What an agent needs for its lease key `<prefix>hosts/HOST/alive`, from etcd 3.4.23's own rules
// (etcdserver/apply_auth.go, auth/store.go, v3_server.go; checked by etcd_setup_test):
// - LeaseGrant: no permission at all (not even a user: etcd 3.4 checks none).
// - Put with a lease: WRITE on the key, and WRITE on every key already attached to that lease
//   (checkLeasePuts: whoever attaches a key must be able to revoke the lease).
// - LeaseKeepAlive (and LeaseTimeToLive): no permission (renewals are not checked in 3.4; a
//   removed host's agent can go on renewing a lease it holds, see remove-host).
// - LeaseRevoke: WRITE on every key attached to the lease.
// - Reading its key (Range, or a Txn compare on it, or a Watch of it): READ on the key.
// So READWRITE on `<prefix>hosts/HOST/` is all a host's role gets, and all it needs.
//
// A change to users or roles can make a token issued before it "old" ("revision of auth store is
// old": with --auth-token=jwt always, with the default simple tokens when it races a request);
// the etcd client (etcd/etcd_channels.cc, etcd_watch.cc) then authenticates again, as etcd's Go
// client does.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "common/status.h"
#include "config/controller_config.h"

namespace CLI {
class App;
}

namespace regen {

inline constexpr char kEtcdControllerRole[] = "regen-controller";
std::string EtcdHostRole(const std::string& host);                            // "regen-host-HOST"
std::string EtcdHostPrefix(const EtcdConfig& etcd, const std::string& host);  // <prefix>hosts/HOST/

// The etcd user the controllers authenticate as: etcd.user, else the CN of etcd.tls.cert;
// INVALID_ARGUMENT when controller.yaml has neither.
Result<std::string> ControllerEtcdUser(const EtcdConfig& etcd);
// The subject CN of a PEM certificate; INVALID_ARGUMENT naming the file.
Result<std::string> CertificateCommonName(const std::string& path);
// OK for a name add-host/remove-host may use: a Regen host name (common/names.h) that is neither
// root nor the controllers' user; else INVALID_ARGUMENT saying why.
Status ValidateEtcdHostName(const EtcdConfig& etcd, const std::string& host);
// A password file's content without trailing newlines; INVALID_ARGUMENT naming `what` and the file
// when it cannot be read or is empty.
Result<std::string> ReadPasswordFile(const std::string& path, const std::string& what);

// One line of what a command did or found ("user root: created"), printed as it goes.
using SetupLog = std::function<void(const std::string&)>;

// Creates what is missing of the above for the controllers and enables auth. On a cluster whose
// auth is on it authenticates as root with `root_password` and only adds what is missing.
Status EtcdInit(const EtcdConfig& etcd, const std::string& root_password, const SetupLog& log);
// User and role of agent host `host` (INVALID_ARGUMENT, nothing sent, for a name that is not a
// Regen host name or that is root's or the controllers' user). `password`: none = certificate
// only. Needs auth on (run EtcdInit first).
Status EtcdAddHost(const EtcdConfig& etcd, const std::string& root_password,
                   const std::string& host, const std::optional<std::string>& password,
                   const SetupLog& log);
// Deletes the host's user and role. Its keys stay (they go with their lease).
Status EtcdRemoveHost(const EtcdConfig& etcd, const std::string& root_password,
                      const std::string& host, const SetupLog& log);

// The `etcd` subcommand of regen-controller (init, add-host, remove-host) and its options.
class EtcdSetupCommand {
 public:
  // Adds `etcd` to `app`. `config_path` is the --config the caller parses (also accepted after
  // `etcd`); it must outlive this object.
  EtcdSetupCommand(CLI::App& app, std::string* config_path);
  bool parsed() const;
  // Runs the parsed command: 0 done, 1 failed (what failed on stderr), 2 bad usage.
  int Run() const;

 private:
  CLI::App* etcd_ = nullptr;
  CLI::App* init_ = nullptr;
  CLI::App* add_host_ = nullptr;
  CLI::App* remove_host_ = nullptr;
  std::string* config_path_;
  std::string root_password_file_;
  std::string host_;
  std::string password_file_;
};

}  // namespace regen
