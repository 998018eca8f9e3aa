#include "agent/fence_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/log.h"

namespace regen {

namespace {

Status ReplaceFile(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Internal("cannot write " + tmp + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::string err = std::strerror(errno);
      ::close(fd);
      return Internal("cannot write " + tmp + ": " + err);
    }
    done += static_cast<size_t>(n);
  }
  // No fsync: the file must outlive the agent (a crash or restart), not the host, and an fsync
  // stalled behind a slow disk would hold up the fence itself (Add runs on the main loop).
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return Internal("cannot rename " + tmp + " to " + path + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

}  // namespace

Status FenceLog::Load() {
  std::ifstream in(path_);
  if (!in) return Status::Ok();  // nothing was fenced (or it was all reported)
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_array()) {
    return InvalidArgument("fence log " + path_ +
                           " is not a JSON array; the fences it held are lost (remove the file)");
  }
  std::vector<FencedRecord> loaded;
  for (const auto& e : j) {
    if (!e.is_object()) continue;
    FencedRecord r;
    r.instance = e.value("instance", "");
    r.generation = e.value("generation", int64_t{0});
    r.fenced_unix_ms = e.value("fenced_unix_ms", int64_t{0});
    r.reason = e.value("reason", "");
    if (!r.instance.empty()) loaded.push_back(std::move(r));
  }
  MutexLock lock(mu_);
  records_ = std::move(loaded);
  return Status::Ok();
}

void FenceLog::Add(FencedRecord record) {
  MutexLock lock(mu_);
  records_.push_back(std::move(record));
  ++seq_;
  if (Status s = WriteLocked(); !s.ok()) {
    spdlog::critical("{}: the fence of {} is kept in memory only (an agent restart loses it)",
                     s.message(), records_.back().instance);
  }
}

void FenceLog::NoteFence() {
  MutexLock lock(mu_);
  ++seq_;
}

FenceLog::Snapshot FenceLog::Take() const {
  MutexLock lock(mu_);
  return {records_, seq_};
}

void FenceLog::Accept(const Snapshot& sent) {
  if (sent.records.empty()) return;
  MutexLock lock(mu_);
  for (const auto& r : sent.records) {
    for (auto it = records_.begin(); it != records_.end(); ++it) {
      if (*it == r) {
        records_.erase(it);
        break;
      }
    }
  }
  if (Status s = WriteLocked(); !s.ok()) {
    spdlog::error("{}: fences the controller already knows may be reported again", s.message());
  }
}

uint64_t FenceLog::seq() const {
  MutexLock lock(mu_);
  return seq_;
}

Status FenceLog::WriteLocked() {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& r : records_) {
    j.push_back({{"instance", r.instance},
                 {"generation", r.generation},
                 {"fenced_unix_ms", r.fenced_unix_ms},
                 {"reason", r.reason}});
  }
  return ReplaceFile(path_, j.dump(1) + "\n");
}

}  // namespace regen
