#include "tests/integration/dns/knot_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <sstream>

#include "common/subprocess.h"

namespace regen::testing {
namespace {

using std::chrono::milliseconds;

std::string KnotConfig(const std::string& dir, uint16_t port, const KnotOptions& options) {
  std::ostringstream c;
  c << "server:\n"
    << "  rundir: \"" << dir << "/run\"\n"
    << "  listen: 127.0.0.1@" << port << "\n"
    << "  udp-workers: 1\n"
    << "  tcp-workers: 1\n"
    << "  background-workers: 1\n"
    << "log:\n"
    << "  - target: stderr\n"
    << "    any: info\n"
    << "database:\n"
    << "  storage: \"" << dir << "/db\"\n"
    << "include: \"" << dir << "/tsig.key\"\n"
    << "acl:\n"
    << "  - id: regen-update\n"
    << "    key: " << options.key_name << "\n"
    << "    action: update\n"
    << "template:\n"
    << "  - id: default\n"
    << "    storage: \"" << dir << "/zones\"\n"
    << "    zonefile-sync: -1\n"
    << "    journal-content: changes\n"
    << "zone:\n"
    << "  - domain: " << options.zone << "\n"
    << "    file: zone.txt\n"
    << "    acl: regen-update\n";
  return c.str();
}

std::string ZoneFile(const std::string& zone) {
  return "$ORIGIN " + zone + "\n$TTL 60\n@ SOA ns hostmaster 1 3600 600 86400 60\n@ NS ns\n" +
         "ns A 127.0.0.1\n";
}

}  // namespace

std::string FindProgram(const std::string& program) {
  std::string path = std::getenv("PATH") ? std::getenv("PATH") : "";
  path += ":/usr/sbin:/sbin:/usr/local/sbin";
  std::stringstream dirs(path);
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) continue;
    std::string candidate = dir + "/" + program;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

Result<uint16_t> FreeLoopbackPort() {
  for (int attempt = 0; attempt < 20; ++attempt) {
    int tcp = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (bind(tcp, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
        getsockname(tcp, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      close(tcp);
      continue;
    }
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    bool udp_free = bind(udp, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    close(udp);
    close(tcp);
    if (udp_free) return static_cast<uint16_t>(ntohs(a.sin_port));
  }
  return Unavailable("no free loopback port for both UDP and TCP");
}

KnotServer::KnotServer(KnotOptions options) : options_(std::move(options)), dir_("regen-knot") {}

KnotServer::~KnotServer() { Stop(); }

Result<std::unique_ptr<KnotServer>> KnotServer::Start(KnotOptions options) {
  std::unique_ptr<KnotServer> server(new KnotServer(std::move(options)));
  server->knotd_ = FindProgram("knotd");
  server->kdig_ = FindProgram("kdig");
  std::string keymgr = FindProgram("keymgr");
  if (server->knotd_.empty() || server->kdig_.empty() || keymgr.empty()) {
    return FailedPrecondition(
        "knotd, keymgr and kdig are needed for the DNS integration tests and were not all found "
        "in PATH, /usr/sbin or /sbin: install the Debian packages knot and knot-dnsutils "
        "(scripts/install-deps.sh)");
  }
  RealCommandRunner runner;
  auto key =
      CheckedRun(runner, {keymgr, "-t", server->options_.key_name, server->options_.algorithm},
                 milliseconds(10000));
  if (!key.ok()) return key.status().WithContext("generating the TSIG key");
  WriteFileOrDie(server->key_file(), key->stdout_text);
  ASSIGN_OR_RETURN(server->key_, dns::LoadTsigKey(server->key_file(), server->options_.key_name,
                                                  server->options_.algorithm));
  for (const char* sub : {"/run", "/db", "/zones"}) {
    std::string path = server->dir_.path() + sub;
    if (mkdir(path.c_str(), 0755) != 0) return Internal("mkdir " + path);
  }
  WriteFileOrDie(server->dir_.File("zones/zone.txt"), ZoneFile(server->options_.zone));
  // The port may be taken between FreeLoopbackPort and knotd's bind: try a few.
  Status last;
  for (int attempt = 0; attempt < 3; ++attempt) {
    ASSIGN_OR_RETURN(server->port_, FreeLoopbackPort());
    WriteFileOrDie(server->dir_.File("knot.conf"),
                   KnotConfig(server->dir_.path(), server->port_, server->options_));
    last = server->Launch();
    if (last.ok()) return server;
    server->Stop();
  }
  return last;
}

Status KnotServer::Launch() {
  process_ =
      std::make_unique<ChildProcess>(std::vector<std::string>{knotd_, "-c", dir_.File("knot.conf"),
                                                              "-s", dir_.File("run/knot.sock")},
                                     dir_.File("knotd.log"));
  if (process_->pid() <= 0) return Internal("cannot start " + knotd_);
  return WaitReady();
}

Status KnotServer::WaitReady() {
  RealCommandRunner runner;
  bool ready = WaitFor(
      [&] {
        if (!process_->Running()) return true;
        // TCP: refused at once while knotd is not listening yet (a UDP probe waits 1 s).
        auto out = runner.Run({kdig_, "@127.0.0.1", "-p", std::to_string(port_), "+tcp", "+short",
                               "+timeout=1", "+retry=0", options_.zone, "SOA"},
                              milliseconds(3000));
        return out.ok() && out->exit_code == 0 && !out->stdout_text.empty();
      },
      milliseconds(10000), milliseconds(20));
  if (!process_->Running()) {
    return Unavailable("knotd exited at start on port " + std::to_string(port_) + "; log:\n" +
                       Log());
  }
  if (!ready) {
    return Unavailable("knotd on port " + std::to_string(port_) +
                       " does not answer SOA queries for " + options_.zone +
                       " within 10 s; log:\n" + Log());
  }
  return Status::Ok();
}

void KnotServer::Stop() {
  if (process_) process_->Stop();
  process_.reset();
}

Status KnotServer::Restart() {
  Stop();
  return Launch();
}

bool KnotServer::Running() { return process_ && process_->Running(); }

std::string KnotServer::Log() const {
  if (access(dir_.File("knotd.log").c_str(), R_OK) != 0) return "(no log)";
  return ReadFileOrDie(dir_.File("knotd.log"));
}

Result<std::vector<std::string>> KnotServer::Dig(const std::string& name) const {
  RealCommandRunner runner;
  ASSIGN_OR_RETURN(CommandOutput out,
                   CheckedRun(runner,
                              {kdig_, "@127.0.0.1", "-p", std::to_string(port_), "+tcp", "+short",
                               "+timeout=2", "+retry=1", name, "A"},
                              milliseconds(5000)));
  std::vector<std::string> addresses;
  std::stringstream lines(out.stdout_text);
  std::string line;
  while (std::getline(lines, line)) {
    if (!line.empty()) addresses.push_back(line);
  }
  std::sort(addresses.begin(), addresses.end());
  return addresses;
}

}  // namespace regen::testing
