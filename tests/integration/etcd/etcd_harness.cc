#include "tests/integration/etcd/etcd_harness.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <sstream>

#include "common/subprocess.h"
#include "etcd/etcd_client.h"

namespace regen::testing {

using std::chrono::milliseconds;

std::string EtcdCluster::FindEtcd() {
  std::string path = std::getenv("PATH") ? std::getenv("PATH") : "";
  path += ":/usr/bin:/usr/sbin";
  std::stringstream dirs(path);
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) continue;
    std::string candidate = dir + "/etcd";
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

Result<std::unique_ptr<EtcdCluster>> EtcdCluster::Start(int members) {
  EtcdClusterOptions options;
  options.members = members;
  return Start(options);
}

Result<std::unique_ptr<EtcdCluster>> EtcdCluster::Start(const EtcdClusterOptions& options) {
  const int members = options.members;
  std::string etcd = FindEtcd();
  if (etcd.empty()) {
    return FailedPrecondition(
        "etcd is needed for the etcd integration tests and was not found in PATH, /usr/bin or "
        "/usr/sbin: install the Debian package etcd-server (scripts/install-deps.sh)");
  }
  Status last;
  // A port chosen free may be taken before etcd binds it: try a few times.
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::unique_ptr<EtcdCluster> cluster(new EtcdCluster());
    cluster->etcd_ = etcd;
    cluster->tls_ = options.tls;
    if (options.tls) RETURN_IF_ERROR(cluster->MakeCertificates());
    cluster->token_ = "regen-test-" + std::to_string(getpid()) + "-" + std::to_string(attempt);
    for (int i = 0; i < members; ++i) {
      cluster->members_.push_back({"m" + std::to_string(i), FreePort(), FreePort(), 0, nullptr});
    }
    last = Status::Ok();
    for (int i = 0; i < members && last.ok(); ++i) last = cluster->Launch(i, true);
    for (int i = 0; i < members && last.ok(); ++i) last = cluster->WaitReady(i);
    if (last.ok()) return cluster;
  }
  return last;
}

EtcdCluster::~EtcdCluster() {
  for (int i = 0; i < size(); ++i) Stop(i);
}

std::string EtcdCluster::endpoint(int i) const {
  return "127.0.0.1:" + std::to_string(members_[static_cast<size_t>(i)].client_port);
}

std::vector<std::string> EtcdCluster::endpoints() const {
  std::vector<std::string> out;
  for (int i = 0; i < size(); ++i) out.push_back(endpoint(i));
  return out;
}

etcd::EtcdOptions EtcdCluster::Options() const {
  etcd::EtcdOptions options;
  options.endpoints = endpoints();
  if (tls_) {
    options.tls = {certs_dir() + "/ca.crt", certs_dir() + "/admin.crt", certs_dir() + "/admin.key",
                   ""};
  }
  return options;
}

Status EtcdCluster::MakeCertificates() {
  RealCommandRunner runner;
  auto out = CheckedRun(
      runner, {SourceDir() + "/scripts/gen-certs.sh", certs_dir(), "localhost", "host-a", "host-b"},
      milliseconds(60000));
  return out.status().WithContext("making the etcd test certificates");
}

std::string EtcdCluster::InitialCluster() const {
  std::string out;
  for (const Member& m : members_) {
    if (!out.empty()) out += ",";
    out += m.name + "=http://127.0.0.1:" + std::to_string(m.peer_port);
  }
  return out;
}

Status EtcdCluster::Launch(int i, bool new_cluster) {
  Member& m = members_[static_cast<size_t>(i)];
  std::string client =
      std::string(tls_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(m.client_port);
  std::string peer = "http://127.0.0.1:" + std::to_string(m.peer_port);
  // Short heartbeat and election timeouts: a lost leader is replaced in well under a second.
  std::vector<std::string> argv = {
      etcd_,
      "--name=" + m.name,
      "--data-dir=" + dir_.File(m.name),
      "--listen-client-urls=" + client,
      "--advertise-client-urls=" + client,
      "--listen-peer-urls=" + peer,
      "--initial-advertise-peer-urls=" + peer,
      "--initial-cluster=" + InitialCluster(),
      "--initial-cluster-token=" + token_,
      std::string("--initial-cluster-state=") + (new_cluster ? "new" : "existing"),
      "--heartbeat-interval=50",
      "--election-timeout=500",
      "--logger=zap",
      "--log-outputs=stderr"};
  if (tls_) {
    for (std::string flag :
         {"--cert-file=" + certs_dir() + "/controller.crt",
          "--key-file=" + certs_dir() + "/controller.key",
          "--trusted-ca-file=" + certs_dir() + "/ca.crt", std::string("--client-cert-auth")}) {
      argv.push_back(flag);
    }
  }
  // A test killed on its timeout must not leave etcd running: setpriv (util-linux) sets the
  // parent-death signal and execs etcd (same PID).
  if (access("/usr/bin/setpriv", X_OK) == 0) {
    argv.insert(argv.begin(), {"/usr/bin/setpriv", "--pdeathsig", "KILL", "--"});
  }
  std::string log_path = dir_.File(m.name + ".log");
  m.log_offset = access(log_path.c_str(), R_OK) == 0 ? ReadFileOrDie(log_path).size() : 0;
  m.process = std::make_unique<ChildProcess>(argv, log_path);
  if (m.process->pid() <= 0) return Internal("cannot start " + etcd_);
  return Status::Ok();
}

Status EtcdCluster::WaitReady(int i) {
  // A connection made while etcd starts is accepted but stalls for ~10 s before etcd speaks
  // HTTP/2 on it: connect once the member logged that it serves clients.
  Member& m = members_[static_cast<size_t>(i)];
  std::string log_path = dir_.File(m.name + ".log");
  bool serving = WaitFor(
      [&] {
        return !m.process->Running() ||
               (access(log_path.c_str(), R_OK) == 0 &&
                ReadFileOrDie(log_path).find("serving client traffic", m.log_offset) !=
                    std::string::npos);
      },
      milliseconds(20000), milliseconds(20));
  if (!serving) {
    return Unavailable("etcd member " + m.name + " does not serve clients within 20 s; log:\n" +
                       Log(i));
  }
  etcd::EtcdOptions options = Options();
  options.endpoints = {endpoint(i)};
  options.attempt_timeout = milliseconds(500);
  auto client = etcd::EtcdClient::Connect(options);
  if (!client.ok()) return client.status();
  Status last;
  bool ready = WaitFor(
      [&] {
        if (!m.process->Running()) return true;
        auto r = (*client)->Get("/regen-harness-probe", milliseconds(500));
        last = r.status();
        // An answer that refuses us (auth enabled, no user) is an answer too.
        return r.ok() || (r.status().code() != Code::kUnavailable &&
                          r.status().code() != Code::kDeadlineExceeded);
      },
      milliseconds(20000), milliseconds(20));
  if (!m.process->Running()) {
    return Unavailable("etcd member " + m.name + " exited at start; log:\n" + Log(i));
  }
  if (!ready) {
    return Unavailable("etcd member " + m.name + " at " + endpoint(i) +
                       " does not answer within 20 s (" + last.ToString() + "); log:\n" + Log(i));
  }
  return Status::Ok();
}

void EtcdCluster::Kill(int i) {
  auto& p = members_[static_cast<size_t>(i)].process;
  if (p) p->Kill();
}

void EtcdCluster::Stop(int i) {
  auto& p = members_[static_cast<size_t>(i)].process;
  if (p) p->Stop();
  p.reset();
}

Status EtcdCluster::Restart(int i) {
  Stop(i);
  RETURN_IF_ERROR(Launch(i, false));
  return WaitReady(i);
}

bool EtcdCluster::Running(int i) {
  auto& p = members_[static_cast<size_t>(i)].process;
  return p && p->Running();
}

std::string EtcdCluster::Log(int i) const {
  std::string path = dir_.File(members_[static_cast<size_t>(i)].name + ".log");
  if (access(path.c_str(), R_OK) != 0) return "(no log)";
  std::string log = ReadFileOrDie(path);
  // The end says why it stopped.
  return log.size() > 4000 ? "..." + log.substr(log.size() - 4000) : log;
}

}  // namespace regen::testing
