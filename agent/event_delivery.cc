#include "agent/event_delivery.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string_view>

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

std::string EventsCursorPath(const std::string& state_dir, const std::string& instance) {
  return state_dir + "/channels/" + instance + ".cursor";
}

EventDelivery::EventDelivery(std::string state_dir, int64_t max_file_bytes)
    : state_dir_(std::move(state_dir)), max_file_bytes_(max_file_bytes) {}

EventDelivery::~EventDelivery() {
  Stop();
  MutexLock lock(mu_);
  for (auto& [name, ch] : channels_) CloseLocked(ch);
}

Status EventDelivery::EnsureDirectories() {
  MutexLock lock(mu_);
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
    MutexLock lock(mu_);
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
  MutexLock lock(mu_);  // one writer per file at a time: lines never interleave
  if (!IsValidName(instance)) {
    ++stats_.errors;
    return InvalidArgument("event delivery: instance name \"" + instance +
                           "\" is not a valid name; nothing written");
  }
  const std::string path = EventsFilePath(state_dir_, instance);
  MaybeRotateLocked(instance, line.size());
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
  FlushLocked(instance);
  return Status::Ok();
}

void EventDelivery::FlushChannels() {
  static constexpr std::string_view kSuffix = ".events.sock";
  MutexLock lock(mu_);
  std::set<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(state_dir_ + "/channels", ec)) {
    std::string file = entry.path().filename().string();
    if (file.size() <= kSuffix.size() || !file.ends_with(kSuffix)) continue;
    std::string instance = file.substr(0, file.size() - kSuffix.size());
    if (IsValidName(instance)) names.insert(std::move(instance));
  }
  // Connections whose socket is gone are closed by FlushLocked.
  for (const auto& [name, ch] : channels_) {
    if (ch.fd >= 0) names.insert(name);
  }
  for (const auto& name : names) FlushLocked(name);
}

void EventDelivery::Start(std::chrono::milliseconds interval) {
  MutexLock lock(flusher_mu_);
  if (flusher_.joinable()) return;
  flusher_stop_ = false;
  flusher_ = std::thread([this, interval] {
    MutexLock lock(flusher_mu_);
    while (true) {
      const auto deadline = std::chrono::steady_clock::now() + interval;
      while (!flusher_stop_ &&
             flusher_cv_.wait_until(lock.native(), deadline) != std::cv_status::timeout) {
      }
      if (flusher_stop_) return;
      lock.native().unlock();
      FlushChannels();
      lock.native().lock();
    }
  });
}

void EventDelivery::Stop() {
  std::thread t;
  {
    MutexLock lock(flusher_mu_);
    flusher_stop_ = true;
    t = std::move(flusher_);
  }
  flusher_cv_.notify_all();
  if (t.joinable()) t.join();
}

void EventDelivery::CountErrorLocked(const std::string& instance, const std::string& what) {
  ++stats_.errors;
  Channel& ch = channels_[instance];
  if (what == ch.last_error) return;  // said once; the flusher retries quietly
  ch.last_error = what;
  spdlog::warn("event channel of {} ({}): {}; its lines wait in {}", instance,
               EventsSocketPath(state_dir_, instance), what, EventsFilePath(state_dir_, instance));
}

void EventDelivery::CloseLocked(Channel& ch) {
  if (ch.fd >= 0) ::close(ch.fd);
  ch.fd = -1;
  ch.inode = 0;
  ch.warned_full = false;
}

bool EventDelivery::ConnectLocked(const std::string& instance, Channel& ch, const struct stat& st) {
  const std::string path = EventsSocketPath(state_dir_, instance);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    CountErrorLocked(instance, "path too long for a unix socket");
    return false;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    CountErrorLocked(instance, "socket: " + Errno());
    return false;
  }
  // A unix stream connect completes at once or fails (EAGAIN: the listener's backlog is full).
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    std::string err = Errno();
    ::close(fd);
    CountErrorLocked(instance, "connect: " + err);
    return false;
  }
  ch.fd = fd;
  ch.inode = st.st_ino;
  ch.warned_full = false;
  if (!ch.last_error.empty()) {
    spdlog::info("event channel of {}: connected again", instance);
    ch.last_error.clear();
  }
  return true;
}

void EventDelivery::SaveCursorLocked(const std::string& instance, int64_t cursor) {
  const std::string path = EventsCursorPath(state_dir_, instance);
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  bool ok = fd >= 0 && WriteAll(fd, std::to_string(cursor) + "\n");
  if (fd >= 0) ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    // Not fatal: after a restart the channel would get these lines a second time.
    ++stats_.errors;
    spdlog::warn("event channel of {}: cannot save its cursor in {}: {}", instance, path, Errno());
  }
}

namespace {

// Whether `path` is a unix socket (the channel's qemu listens there); fills `st`.
bool IsSocket(const std::string& path, struct stat* st) {
  return ::stat(path.c_str(), st) == 0 && S_ISSOCK(st->st_mode);
}

// The cursor saved in `path`; 0 when there is none (a new instance: its whole file is pending).
int64_t LoadCursor(const std::string& instance, const std::string& path) {
  std::ifstream in(path);
  if (!in) return 0;
  std::string text;
  std::getline(in, text);
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 0) {
    spdlog::warn(
        "event channel of {}: cursor file {} holds \"{}\", not a byte count; sending "
        "its event file from the start",
        instance, path, text);
    return 0;
  }
  return value;
}

}  // namespace

EventDelivery::Channel& EventDelivery::ChannelLocked(const std::string& instance) {
  Channel& ch = channels_[instance];
  if (ch.cursor < 0) ch.cursor = LoadCursor(instance, EventsCursorPath(state_dir_, instance));
  return ch;
}

void EventDelivery::MaybeRotateLocked(const std::string& instance, size_t adding) {
  const std::string path = EventsFilePath(state_dir_, instance);
  struct stat fst;
  if (::stat(path.c_str(), &fst) != 0) return;
  const int64_t size = fst.st_size;
  if (size == 0 || size + static_cast<int64_t>(adding) <= max_file_bytes_) return;
  FlushLocked(instance);  // give the channel what it can take first
  struct stat sst;
  const bool has_channel = IsSocket(EventsSocketPath(state_dir_, instance), &sst);
  Channel& ch = ChannelLocked(instance);
  const int64_t behind = has_channel ? size - std::min(ch.cursor, size) : 0;
  if (behind > 0 && size < 4 * max_file_bytes_) return;  // wait for the guest to read
  const std::string old = path + ".1";
  if (::rename(path.c_str(), old.c_str()) != 0) {
    ++stats_.errors;
    spdlog::warn("event file of {}: cannot rotate {} to {}: {}", instance, path, old, Errno());
    return;
  }
  ++stats_.rotations;
  if (behind > 0) {
    spdlog::warn(
        "event file of {}: rotated {} ({} bytes) to {} although its channel has not "
        "taken the last {} bytes (the instance does not read it); they stay in {}",
        instance, path, size, old, behind, old);
  } else {
    spdlog::info("event file of {}: rotated {} ({} bytes, limit {}) to {}", instance, path, size,
                 max_file_bytes_, old);
  }
  ch.cursor = 0;  // the new file starts empty
  SaveCursorLocked(instance, 0);
}

void EventDelivery::FlushLocked(const std::string& instance) {
  struct stat st;
  if (!IsSocket(EventsSocketPath(state_dir_, instance), &st)) {
    auto it = channels_.find(instance);
    if (it != channels_.end()) CloseLocked(it->second);
    return;  // no channel (yet): the lines wait in the file
  }
  Channel& ch = ChannelLocked(instance);
  if (ch.fd >= 0 && ch.inode != st.st_ino) CloseLocked(ch);  // a new domain made a new socket

  const std::string file = EventsFilePath(state_dir_, instance);
  int in = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return;  // nothing was ever delivered to this instance
  struct stat fst;
  if (::fstat(in, &fst) != 0) {
    ::close(in);
    return;
  }
  const int64_t size = fst.st_size;
  const int64_t start = ch.cursor;
  if (size < ch.cursor) {
    spdlog::warn(
        "event channel of {}: {} is shorter ({} bytes) than what its channels took ({}); "
        "it was replaced: sending it from the start",
        instance, file, size, ch.cursor);
    ch.cursor = 0;
  }
  // Two rounds: a connection the other end closed (qemu stopped, or its domain was re-created
  // between two flushes) is replaced once.
  for (int round = 0; round < 2 && ch.cursor < size; ++round) {
    if (ch.fd < 0 && !ConnectLocked(instance, ch, st)) break;
    bool reconnect = false;
    while (ch.cursor < size) {
      char buf[16384];
      size_t want = static_cast<size_t>(std::min<int64_t>(sizeof buf, size - ch.cursor));
      ssize_t r = ::pread(in, buf, want, ch.cursor);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        CountErrorLocked(instance, "cannot read " + file + ": " + (r < 0 ? Errno() : "EOF"));
        break;
      }
      ssize_t n = ::send(ch.fd, buf, static_cast<size_t>(r), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (!ch.warned_full) {
          spdlog::warn("event channel of {}: the instance does not read it; {} bytes wait in {}",
                       instance, size - ch.cursor, file);
          ch.warned_full = true;
        }
        break;
      }
      if (n < 0) {  // EPIPE, ECONNRESET: the other end went away
        spdlog::info("event channel of {}: {}; connecting again", instance, Errno());
        CloseLocked(ch);
        reconnect = true;
        break;
      }
      ch.cursor += n;
      ch.warned_full = false;
      stats_.socket_writes += std::count(buf, buf + n, '\n');
    }
    if (!reconnect) break;
  }
  ::close(in);
  if (ch.cursor != start) SaveCursorLocked(instance, ch.cursor);
}

EventDeliveryStats EventDelivery::stats() const {
  MutexLock lock(mu_);
  return stats_;
}

}  // namespace regen
