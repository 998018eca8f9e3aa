#include "agent/reaper.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "common/log.h"

namespace regen {

namespace {

// qemu option values escape ',' as ",,".
std::string UntilUnescapedComma(const std::string& text, size_t from) {
  std::string out;
  for (size_t i = from; i < text.size(); ++i) {
    if (text[i] == ',') {
      if (i + 1 < text.size() && text[i + 1] == ',') {
        out += ',';
        ++i;
        continue;
      }
      break;
    }
    out += text[i];
  }
  return out;
}

}  // namespace

std::string ReadProcFile(const std::string& path) {
  // read(2), not an istreambuf_iterator: a process that exits while its file is read fails the
  // read with ESRCH, which libstdc++'s filebuf turns into an exception the iterator lets through
  // (it once ended the agent: "basic_filebuf::underflow error reading the file: No such process").
  std::string out;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char buf[4096];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) out.clear();  // half a file is no file
    break;
  }
  ::close(fd);
  return out;
}

std::optional<QemuIdentity> ParseQemuCmdline(const std::string& cmdline) {
  std::vector<std::string> args;
  size_t start = 0;
  while (start < cmdline.size()) {
    size_t nul = cmdline.find('\0', start);
    if (nul == std::string::npos) nul = cmdline.size();
    args.push_back(cmdline.substr(start, nul - start));
    start = nul + 1;
  }
  QemuIdentity who;
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "-name") {
      const std::string& v = args[i + 1];
      who.name = v.rfind("guest=", 0) == 0 ? UntilUnescapedComma(v, 6) : UntilUnescapedComma(v, 0);
      break;
    }
  }
  if (who.name.empty()) return std::nullopt;
  // libvirt's per-domain directories are named domain-<id>-<short name>.
  for (const auto& a : args) {
    size_t p = a.find("/domain-");
    while (p != std::string::npos) {
      size_t digits = p + 8;
      size_t end = digits;
      while (end < a.size() && a[end] >= '0' && a[end] <= '9') ++end;
      if (end > digits && end < a.size() && a[end] == '-') {
        who.domain_id = std::strtoll(a.c_str() + digits, nullptr, 10);
        return who;
      }
      p = a.find("/domain-", p + 1);
    }
  }
  return who;
}

ChildReaper::~ChildReaper() { Stop(); }

void ChildReaper::BlockSigchld() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

Status ChildReaper::Start() {
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) {
    return Internal(std::string("prctl(PR_SET_CHILD_SUBREAPER): ") + std::strerror(errno));
  }
  stop_ = false;
  thread_ = std::thread([this] { Loop(); });
  return Status::Ok();
}

void ChildReaper::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

int ChildReaper::ScanOnce() {
  MutexLock lock(mu_);
  int reaped = 0;
  pid_t self = getpid();
  pid_t own_session = getsid(0);
  std::set<pid_t> seen;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return 0;
  while (dirent* e = readdir(proc)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    const std::string line = ReadProcFile(std::string("/proc/") + e->d_name + "/stat");
    if (line.empty()) continue;
    // pid (comm) state ppid ...; comm may contain spaces and parentheses: use the last ')'.
    auto open = line.find('(');
    auto close = line.rfind(')');
    if (open == std::string::npos || close == std::string::npos || close + 4 >= line.size()) {
      continue;
    }
    std::string comm = line.substr(open + 1, close - open - 1);
    char state = line[close + 2];
    // ... state ppid pgrp session ...
    char* end = nullptr;
    long ppid = std::strtol(line.c_str() + close + 4, &end, 10);
    std::strtol(end, &end, 10);  // pgrp
    long session = std::strtol(end, nullptr, 10);
    if (ppid != self || comm.rfind("qemu", 0) != 0) continue;
    pid_t pid = static_cast<pid_t>(std::strtol(e->d_name, nullptr, 10));
    seen.insert(pid);
    if (state != 'Z') {
      if (!known_.count(pid)) {
        // A zombie's command line is empty: learn it while the process lives.
        auto who = ParseQemuCmdline(ReadProcFile(std::string("/proc/") + e->d_name + "/cmdline"));
        if (who) {
          spdlog::debug("qemu process pid={} runs domain {} (id {})", pid, who->name,
                        who->domain_id);
          known_[pid] = *who;
        }
      }
      continue;
    }
    if (!known_.count(pid) && session == own_session) {
      // Not a domain's qemu, in our own session: a child libvirt started itself and is about to
      // wait for (e.g. the capability probe's `qemu -daemonize` parent). Leave it a while. A qemu
      // in another session daemonized itself and was re-parented to us: libvirt, which may poll it
      // with kill(pid, 0) until it is gone, cannot wait for it; it is reaped at once.
      auto now = std::chrono::steady_clock::now();
      auto [it, fresh] = unknown_zombies_.emplace(pid, now);
      if (now - it->second < unknown_grace_) continue;
    }
    unknown_zombies_.erase(pid);
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      ++reaped;
      auto it = known_.find(pid);
      if (it != known_.end()) {
        QemuIdentity who = it->second;
        known_.erase(it);
        spdlog::debug("reaped qemu process pid={} domain={} id={} status={}", pid, who.name,
                      who.domain_id, status);
        if (exit_cb_) exit_cb_(who, status);
      } else {
        spdlog::debug("reaped qemu process pid={} status={}", pid, status);
      }
    }
  }
  closedir(proc);
  // Forget processes that vanished without us reaping them.
  for (auto it = known_.begin(); it != known_.end();) {
    it = seen.count(it->first) ? std::next(it) : known_.erase(it);
  }
  for (auto it = unknown_zombies_.begin(); it != unknown_zombies_.end();) {
    it = seen.count(it->first) ? std::next(it) : unknown_zombies_.erase(it);
  }
  return reaped;
}

std::vector<pid_t> ChildReaper::PidsOf(const std::string& name) {
  MutexLock lock(mu_);
  std::vector<pid_t> pids;
  for (const auto& [pid, who] : known_) {
    if (who.name == name) pids.push_back(pid);
  }
  return pids;
}

void ChildReaper::Loop() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  // A safety net if a SIGCHLD was consumed elsewhere, and how soon a new qemu is learnt at worst.
  timespec timeout{0, 200 * 1000 * 1000};
  while (!stop_) {
    siginfo_t info;
    sigtimedwait(&set, &info, &timeout);
    reaped_ += ScanOnce();
  }
}

}  // namespace regen
