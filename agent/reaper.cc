#include "agent/reaper.h"

#include <dirent.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "common/log.h"

namespace regen {

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

int ChildReaper::ReapQemuZombies() {
  int reaped = 0;
  pid_t self = getpid();
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return 0;
  while (dirent* e = readdir(proc)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream stat(std::string("/proc/") + e->d_name + "/stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    // pid (comm) state ppid ...; comm may contain spaces and parentheses: use the last ')'.
    auto open = line.find('(');
    auto close = line.rfind(')');
    if (open == std::string::npos || close == std::string::npos || close + 4 >= line.size()) {
      continue;
    }
    std::string comm = line.substr(open + 1, close - open - 1);
    char state = line[close + 2];
    long ppid = std::strtol(line.c_str() + close + 4, nullptr, 10);
    if (state != 'Z' || ppid != self || comm.rfind("qemu", 0) != 0) continue;
    pid_t pid = static_cast<pid_t>(std::strtol(e->d_name, nullptr, 10));
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      ++reaped;
      spdlog::debug("reaped qemu process pid={} status={}", pid, status);
    }
  }
  closedir(proc);
  return reaped;
}

void ChildReaper::Loop() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  timespec timeout{0, 200 * 1000 * 1000};  // a safety net if a SIGCHLD was consumed elsewhere
  while (!stop_) {
    siginfo_t info;
    sigtimedwait(&set, &info, &timeout);
    reaped_ += ReapQemuZombies();
  }
}

}  // namespace regen
