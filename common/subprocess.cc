#include "common/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

extern char** environ;

namespace regen {
namespace {

struct Pipe {
  int fds[2] = {-1, -1};
  ~Pipe() {
    for (int fd : fds)
      if (fd >= 0) close(fd);
  }
  void CloseEnd(int i) {
    if (fds[i] >= 0) close(fds[i]);
    fds[i] = -1;
  }
};

}  // namespace

std::string FormatArgv(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    if (a.empty() || a.find_first_of(" \t'\"\\$") != std::string::npos) {
      out += '\'';
      for (char c : a) {
        if (c == '\'')
          out += "'\\''";
        else
          out += c;
      }
      out += '\'';
    } else {
      out += a;
    }
  }
  return out;
}

namespace {

// Starts argv[0] (looked up in PATH) with the pipes as its stdin, stdout and stderr.
Result<pid_t> Spawn(const std::vector<std::string>& argv, const Pipe& in, const Pipe& out,
                    const Pipe& err) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in.fds[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out.fds[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err.fds[1], 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);  // the daemon may block SIGCHLD; children must not
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, cargv[0], &actions, &attr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return Unavailable("cannot start " + FormatArgv(argv) + ": " + std::strerror(rc));
  }
  return pid;
}

}  // namespace

Result<CommandOutput> RealCommandRunner::Run(const std::vector<std::string>& argv,
                                             std::chrono::milliseconds timeout,
                                             const std::string& input) {
  if (argv.empty()) return InvalidArgument("RunCommand: empty argv");
  Pipe in, out, err;
  if (pipe2(in.fds, O_CLOEXEC) != 0 || pipe2(out.fds, O_CLOEXEC) != 0 ||
      pipe2(err.fds, O_CLOEXEC) != 0) {
    return Internal(std::string("pipe2: ") + std::strerror(errno));
  }
  ASSIGN_OR_RETURN(pid_t pid, Spawn(argv, in, out, err));
  in.CloseEnd(0);
  out.CloseEnd(1);
  err.CloseEnd(1);

  CommandOutput result;
  size_t written = 0;
  if (input.empty()) in.CloseEnd(1);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool timed_out = false;
  while (out.fds[0] >= 0 || err.fds[0] >= 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd pfds[3];
    int n = 0;
    int idx_out = -1, idx_err = -1, idx_in = -1;
    if (out.fds[0] >= 0) idx_out = n, pfds[n++] = {out.fds[0], POLLIN, 0};
    if (err.fds[0] >= 0) idx_err = n, pfds[n++] = {err.fds[0], POLLIN, 0};
    if (in.fds[1] >= 0) idx_in = n, pfds[n++] = {in.fds[1], POLLOUT, 0};
    int pr = poll(pfds, n, static_cast<int>(left.count()));
    if (pr < 0 && errno != EINTR) break;
    char buf[4096];
    auto drain = [&](int idx, Pipe& p, std::string& sink) {
      if (idx < 0 || pfds[idx].revents == 0) return;
      ssize_t r = read(p.fds[0], buf, sizeof buf);
      if (r > 0)
        sink.append(buf, static_cast<size_t>(r));
      else if (r == 0 || (errno != EINTR && errno != EAGAIN))
        p.CloseEnd(0);
    };
    drain(idx_out, out, result.stdout_text);
    drain(idx_err, err, result.stderr_text);
    if (idx_in >= 0 && pfds[idx_in].revents != 0) {
      ssize_t w = write(in.fds[1], input.data() + written, input.size() - written);
      if (w > 0) written += static_cast<size_t>(w);
      if (w < 0 || written == input.size()) in.CloseEnd(1);
    }
  }
  int wstatus = 0;
  if (timed_out) {
    kill(pid, SIGKILL);
    waitpid(pid, &wstatus, 0);
    return DeadlineExceeded(FormatArgv(argv) + " did not finish within " +
                            std::to_string(timeout.count()) + " ms and was killed");
  }
  while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  result.exit_code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
  return result;
}

Result<CommandOutput> CheckedRun(CommandRunner& runner, const std::vector<std::string>& argv,
                                 std::chrono::milliseconds timeout, const std::string& input) {
  ASSIGN_OR_RETURN(CommandOutput out, runner.Run(argv, timeout, input));
  if (out.exit_code != 0) {
    std::string err = out.stderr_text;
    while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
    return Internal(FormatArgv(argv) + " exited with " + std::to_string(out.exit_code) +
                    (err.empty() ? "" : ": " + err));
  }
  return out;
}

std::string DescribeWaitStatus(int wait_status) {
  if (WIFSIGNALED(wait_status)) return "killed by signal " + std::to_string(WTERMSIG(wait_status));
  return "exit status " + std::to_string(WEXITSTATUS(wait_status));
}

}  // namespace regen
