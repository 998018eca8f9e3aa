#include "agent/control_socket.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/log.h"
#include "common/text.h"

namespace regen {

namespace {

Result<sockaddr_un> MakeAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return InvalidArgument("control socket path \"" + path + "\" must be 1.." +
                           std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

// Reads until '\n' or EOF, within the deadline.
Result<std::string> ReadLine(int fd, std::chrono::milliseconds timeout, size_t max_bytes) {
  std::string data;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[4096];
  while (data.find('\n') == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return DeadlineExceeded("no answer within " + std::to_string(timeout.count()) + " ms");
    pollfd p{fd, POLLIN, 0};
    int r = poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > max_bytes)
      return InvalidArgument("message longer than " + std::to_string(max_bytes) + " bytes");
  }
  auto nl = data.find('\n');
  if (nl != std::string::npos) data.resize(nl);
  return data;
}

bool WriteAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

ControlSocketServer::ControlSocketServer(std::string path, Handler handler)
    : path_(std::move(path)), handler_(std::move(handler)) {}

ControlSocketServer::~ControlSocketServer() { Stop(); }

Status ControlSocketServer::Start() {
  ASSIGN_OR_RETURN(sockaddr_un addr, MakeAddress(path_));
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path_).parent_path(), ec);
  if (std::filesystem::exists(path_, ec)) {
    // A live agent answers; a stale file from a crashed one is replaced.
    auto probe = ControlSocketCall(path_, {{"command", "ping"}}, std::chrono::milliseconds(500));
    if (probe.ok()) {
      return FailedPrecondition("control socket " + path_ +
                                " is in use by a running agent; stop it first or set "
                                "control_socket to another path");
    }
    unlink(path_.c_str());
  }
  listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return Internal(std::string("socket: ") + std::strerror(errno));
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(listen_fd_, 16) != 0) {
    Status s =
        Unavailable("cannot listen on control socket " + path_ + ": " + std::strerror(errno));
    close(listen_fd_);
    listen_fd_ = -1;
    return s;
  }
  owns_path_ = true;  // from here on the socket file is ours to remove
  chmod(path_.c_str(), 0660);
  if (pipe2(wake_pipe_, O_CLOEXEC) != 0)
    return Internal(std::string("pipe2: ") + std::strerror(errno));
  thread_ = std::thread([this] { Loop(); });
  return Status::Ok();
}

void ControlSocketServer::Stop() {
  if (wake_pipe_[1] >= 0) {
    char c = 'x';
    (void)!write(wake_pipe_[1], &c, 1);
  }
  if (thread_.joinable()) thread_.join();
  for (int* fd : {&listen_fd_, &wake_pipe_[0], &wake_pipe_[1]}) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
  }
  // Never remove a socket this server did not bind: it may be another agent's live one.
  if (owns_path_) unlink(path_.c_str());
  owns_path_ = false;
}

void ControlSocketServer::Loop() {
  while (true) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}};
    int r = poll(fds, 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 || fds[1].revents) return;
    if (fds[0].revents & POLLIN) {
      int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      Serve(fd);
      close(fd);
    }
  }
}

void ControlSocketServer::Serve(int fd) {
  nlohmann::json response;
  auto line = ReadLine(fd, std::chrono::seconds(5), 1 << 20);
  if (!line.ok()) {
    response = {{"ok", false}, {"error", "bad request: " + line.status().message()}};
  } else {
    nlohmann::json request = nlohmann::json::parse(*line, nullptr, /*allow_exceptions=*/false);
    if (request.is_discarded() || !request.is_object() || !request.contains("command") ||
        !request["command"].is_string()) {
      response = {{"ok", false},
                  {"error", "bad request: expected one JSON object with a string \"command\""}};
    } else if (request["command"] == "ping") {
      response = {{"ok", true}};
    } else {
      response = Handle(request);
    }
  }
  WriteAll(fd, DumpJson(response) + "\n");
}

nlohmann::json ControlSocketServer::Handle(const nlohmann::json& request) {
  // No exception leaves a handler: the agent answers with an error and goes on.
  std::string command = request["command"].get<std::string>();
  try {
    return handler_(request);
  } catch (const std::exception& e) {
    std::string what = SanitizeText(e.what(), 512);
    spdlog::error("control socket: command \"{}\" failed: {}", SanitizeText(command, 64), what);
    return {{"ok", false}, {"error", "command failed inside the agent: " + what}};
  } catch (...) {
    spdlog::error("control socket: command \"{}\" failed", SanitizeText(command, 64));
    return {{"ok", false}, {"error", "command failed inside the agent"}};
  }
}

std::string DumpJson(const nlohmann::json& j) {
  // Invalid UTF-8 anywhere (text from outside that no one sanitized) becomes U+FFFD instead of
  // throwing type_error 316.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Result<nlohmann::json> ControlSocketCall(const std::string& path, const nlohmann::json& request,
                                         std::chrono::milliseconds timeout) {
  ASSIGN_OR_RETURN(sockaddr_un addr, MakeAddress(path));
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Internal(std::string("socket: ") + std::strerror(errno));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    Status s = Unavailable("cannot reach the agent at " + path + ": " + std::strerror(errno) +
                           " (is regen-agent running? is control_socket right?)");
    close(fd);
    return s;
  }
  if (!WriteAll(fd, DumpJson(request) + "\n")) {
    close(fd);
    return Unavailable("cannot send to the agent at " + path + ": " + std::strerror(errno));
  }
  auto line = ReadLine(fd, timeout, 64 << 20);
  close(fd);
  if (!line.ok()) return line.status().WithContext("agent at " + path);
  auto j = nlohmann::json::parse(*line, nullptr, false);
  if (j.is_discarded()) return Internal("agent at " + path + " sent a malformed answer");
  return j;
}

}  // namespace regen
