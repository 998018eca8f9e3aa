#include "agent/event_delivery.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "common/log.h"
#include "common/names.h"

namespace regen {

namespace {

std::string Errno() { return std::strerror(errno); }

// Writes all of `data` to `fd` (a regular file opened with O_APPEND).
bool WriteAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

std::string EventsFilePath(const std::string& state_dir, const std::string& instance) {
  return state_dir + "/events/" + instance + ".jsonl";
}

std::string EventsSocketPath(const std::string& state_dir, const std::string& instance) {
  return state_dir + "/channels/" + instance + ".events.sock";
}

EventDelivery::EventDelivery(std::string state_dir) : state_dir_(std::move(state_dir)) {}

Status EventDelivery::EnsureDirectories() {
  std::lock_guard lock(mu_);
  if (directories_ready_) return Status::Ok();
  for (const char* sub : {"/events", "/channels"}) {
    std::error_code ec;
    std::filesystem::create_directories(state_dir_ + sub, ec);
    if (ec) {
      return Unavailable("cannot create " + state_dir_ + sub + ": " + ec.message() +
                         " (check state_dir in agent.yaml and its permissions)");
    }
  }
  directories_ready_ = true;
  return Status::Ok();
}

Status EventDelivery::Deliver(const std::vector<std::string>& instances, const std::string& json) {
  if (json.find('\n') != std::string::npos) {
    return InvalidArgument("an event for instances must be one line of JSON, got " +
                           std::to_string(json.size()) + " bytes with a newline");
  }
  if (Status s = EnsureDirectories(); !s.ok()) {
    spdlog::error("event delivery: {}", s.message());
    std::lock_guard lock(mu_);
    ++stats_.errors;
    return s;
  }
  const std::string line = json + "\n";
  Status first;
  for (const auto& instance : instances) {
    Status s = DeliverOne(instance, line);
    if (!s.ok() && first.ok()) first = s;
  }
  return first;
}

Status EventDelivery::DeliverOne(const std::string& instance, const std::string& line) {
  if (!IsValidName(instance)) {
    std::lock_guard lock(mu_);
    ++stats_.errors;
    return InvalidArgument("event delivery: instance name \"" + instance +
                           "\" is not a valid name; nothing written");
  }
  const std::string path = EventsFilePath(state_dir_, instance);
  {
    std::lock_guard lock(mu_);  // one writer per file at a time: lines never interleave
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) {
      ++stats_.errors;
      Status s = Unavailable("cannot open " + path + ": " + Errno());
      spdlog::error("event delivery to {}: {}", instance, s.message());
      return s;
    }
    bool ok = WriteAll(fd, line);
    std::string err = ok ? "" : Errno();
    ::close(fd);
    if (!ok) {
      ++stats_.errors;
      Status s = Unavailable("cannot append to " + path + ": " + err);
      spdlog::error("event delivery to {}: {}", instance, s.message());
      return s;
    }
    ++stats_.lines_written;
  }
  WriteSocket(instance, line);
  return Status::Ok();
}

void EventDelivery::WriteSocket(const std::string& instance, const std::string& line) {
  const std::string path = EventsSocketPath(state_dir_, instance);
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return;  // no channel (yet)
  auto fail = [&](const std::string& what) {
    spdlog::warn("event channel of {} ({}): {}; the line is in its event file", instance, path,
                 what);
    std::lock_guard lock(mu_);
    ++stats_.errors;
  };
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) return fail("path too long for a unix socket");
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail("socket: " + Errno());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    std::string err = Errno();
    ::close(fd);
    return fail("connect: " + err);
  }
  ssize_t n = ::send(fd, line.data(), line.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  std::string err = n < 0 ? Errno() : "";
  ::close(fd);
  if (n < 0) return fail("send: " + err);
  if (static_cast<size_t>(n) != line.size()) {
    return fail("only " + std::to_string(n) + " of " + std::to_string(line.size()) +
                " bytes sent (the instance does not read its channel)");
  }
  std::lock_guard lock(mu_);
  ++stats_.socket_writes;
}

EventDeliveryStats EventDelivery::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace regen
