#include "agent/image_stager.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include <spdlog/spdlog.h>

namespace regen {

namespace fs = std::filesystem;

namespace {
constexpr const char* kSidecar = ".source";

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Whether `dir` holds a temporary copy (".copying-*") of this stager.
bool HasCopyUnderWay(const fs::path& dir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().filename().string().rfind(".copying-", 0) == 0) return true;
  }
  return false;
}

std::string ImageName(const std::string& source) {
  std::string name = fs::path(source).filename().string();
  return name.empty() || name == "." || name == ".." ? "image" : name;
}
}  // namespace

ImageStager::ImageStager(std::string state_dir, ImageDirs image_dirs)
    : root_(std::move(state_dir) + "/images"), image_dirs_(std::move(image_dirs)) {
  {
    MutexLock lock(mu_);  // no other thread yet: for the analysis only
    Rescan();
  }
  worker_ = std::thread([this] { Worker(); });
}

ImageStager::~ImageStager() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void ImageStager::SetOnChange(std::function<void()> on_change) {
  MutexLock lock(mu_);
  on_change_ = std::move(on_change);
}

std::string ImageStager::DirOf(const std::string& service, const std::string& version) const {
  return root_ + "/" + service + "/" + version;
}

void ImageStager::Rescan() {
  std::error_code ec;
  if (!fs::is_directory(root_, ec)) return;
  // Only <service>/<version> directories (real ones, valid names) that this stager wrote (a
  // sidecar or a copy under way) are its own: an operator's images may live here too.
  for (const auto& svc : fs::directory_iterator(root_, ec)) {
    if (svc.is_symlink() || !svc.is_directory()) continue;
    std::error_code ec2;
    for (const auto& ver : fs::directory_iterator(svc.path(), ec2)) {
      if (ver.is_symlink() || !ver.is_directory()) continue;
      if (!ValidateServiceVersion(svc.path().filename().string(), ver.path().filename().string())
               .ok()) {
        continue;
      }
      std::string source = ReadFile(ver.path() / kSidecar);
      fs::path image = ver.path() / ImageName(source);
      std::error_code ec3;
      if (source.empty() || !fs::is_regular_file(image, ec3)) {
        if (!fs::exists(ver.path() / kSidecar, ec3) && !HasCopyUnderWay(ver.path())) continue;
        spdlog::warn("image staging: removing the unfinished copy in {}", ver.path().string());
        fs::remove_all(ver.path(), ec3);
        continue;
      }
      StagedImage s;
      s.service = svc.path().filename().string();
      s.version = ver.path().filename().string();
      s.source = source;
      s.path = image.string();
      s.ready = true;
      images_[{s.service, s.version}] = s;
      spdlog::info("image staging: found {} version {} staged at {}", s.service, s.version, s.path);
    }
  }
}

void ImageStager::SetWanted(const std::vector<StageRequest>& wanted, const std::set<Key>& in_use) {
  bool queued = false;
  {
    MutexLock lock(mu_);
    std::set<Key> wanted_keys;
    for (const auto& w : wanted) {
      Key key{w.service, w.version};
      wanted_keys.insert(key);  // refused or not: its error is reported, a ready copy kept
      if (Status checked = Check(w); !checked.ok()) {
        RefuseLocked(w, checked.message());
        continue;
      }
      auto it = images_.find(key);
      if (it != images_.end() && it->second.ready && it->second.source == w.source) continue;
      if (PendingLocked(key)) continue;  // being staged (a new source is taken when it is asked again)
      StagedImage& s = images_[key];
      if (s.ready && s.source != w.source) {
        spdlog::info("image staging: {} version {} now comes from {} (was {}); staging again",
                     w.service, w.version, w.source, s.source);
        s.ready = false;
        s.path.clear();
      }
      s.service = w.service;
      s.version = w.version;
      s.source = w.source;
      queue_.push_back(w);  // a failed one keeps its error until a retry succeeds
      queued = true;
    }
    for (auto it = images_.begin(); it != images_.end();) {
      const Key& key = it->first;
      if (wanted_keys.count(key) || in_use.count(key) || PendingLocked(key)) {
        ++it;
        continue;
      }
      if (it->second.ready) {
        spdlog::info("image staging: removing {} version {} ({}): no longer wanted here", key.first,
                     key.second, it->second.path);
        std::error_code ec;
        fs::remove_all(DirOf(key.first, key.second), ec);
      }
      it = images_.erase(it);
    }
  }
  if (queued) cv_.notify_all();
}

Status ImageStager::Check(const StageRequest& r) const {
  const std::string what = "staging " + r.service + " version " + r.version;
  RETURN_IF_ERROR(ValidateServiceVersion(r.service, r.version).WithContext("staging"));
  return image_dirs_.CheckLexically("image", r.source).WithContext(what);
}

Result<std::string> ImageStager::ConfineSource(const StageRequest& r) const {
  auto source = image_dirs_.Confine("image", r.source);
  if (!source.ok() && source.status().code() == Code::kNotFound) {
    return NotFound("staging " + r.service + " version " + r.version + ": image " + r.source +
                    " does not exist on this host (or is not a file)");
  }
  if (!source.ok()) {
    return source.status().WithContext("staging " + r.service + " version " + r.version);
  }
  return source;
}

void ImageStager::RefuseLocked(const StageRequest& r, const std::string& error) {
  spdlog::error("image staging: {}", error);
  StagedImage& s = images_[{r.service, r.version}];
  if (s.ready) return;  // a copy made earlier from a good source stays (it may be in use)
  s.service = r.service;
  s.version = r.version;
  s.source = r.source;
  s.error = error;
}

bool ImageStager::PendingLocked(const Key& key) const {
  if (busy_ && busy_key_ == key) return true;
  return std::any_of(queue_.begin(), queue_.end(), [&](const StageRequest& q) {
    return q.service == key.first && q.version == key.second;
  });
}

std::string ImageStager::StagedPath(const std::string& service, const std::string& version,
                                    const std::string& source) const {
  MutexLock lock(mu_);
  auto it = images_.find({service, version});
  if (it == images_.end() || !it->second.ready || it->second.source != source) return "";
  return it->second.path;
}

std::vector<StagedImage> ImageStager::Report() const {
  MutexLock lock(mu_);
  std::vector<StagedImage> out;
  for (const auto& [key, s] : images_) {
    if (s.ready || !s.error.empty()) out.push_back(s);
  }
  return out;
}

void ImageStager::WaitIdle() {
  MutexLock lock(mu_);
  while (!(stop_ || (queue_.empty() && !busy_))) cv_.wait(lock.native());
}

void ImageStager::Worker() {
  MutexLock lock(mu_);
  while (true) {
    while (!(stop_ || !queue_.empty())) cv_.wait(lock.native());
    if (stop_) return;
    StageRequest request = queue_.front();
    queue_.pop_front();
    busy_ = true;
    busy_key_ = {request.service, request.version};
    lock.native().unlock();
    auto source = ConfineSource(request);  // symlinks resolved: off the caller's thread
    std::string error = source.ok() ? Copy(request, *source) : source.status().message();
    if (!source.ok()) spdlog::error("image staging: {}", error);
    lock.native().lock();
    StagedImage& s = images_[{request.service, request.version}];
    s.service = request.service;
    s.version = request.version;
    s.source = request.source;
    s.error = error;
    s.ready = error.empty();
    s.path =
        s.ready ? DirOf(request.service, request.version) + "/" + ImageName(request.source) : "";
    auto on_change = on_change_;
    lock.native().unlock();
    if (on_change) on_change();
    lock.native().lock();
    busy_ = false;     // only now: WaitIdle returns after the change was announced
    cv_.notify_all();  // WaitIdle
  }
}

std::string ImageStager::Copy(const StageRequest& r, const std::string& source) {
  auto start = std::chrono::steady_clock::now();
  std::error_code ec;
  std::string what = "staging " + r.service + " version " + r.version + ": image " + r.source;
  fs::path dir = DirOf(r.service, r.version);
  fs::remove_all(dir, ec);  // an older copy, or one from another source
  fs::create_directories(dir, ec);
  if (ec) return what + ": cannot create " + dir.string() + ": " + ec.message();
  fs::path image = dir / ImageName(r.source);
  fs::path tmp = dir / (".copying-" + ImageName(r.source));
  {
    std::ofstream sidecar(dir / kSidecar, std::ios::trunc);
    sidecar << r.source;
    if (!sidecar) return what + ": cannot write " + (dir / kSidecar).string();
  }
  fs::copy_file(source, tmp, fs::copy_options::overwrite_existing, ec);
  if (ec) {
    std::string error = what + ": copy to " + tmp.string() + " failed: " + ec.message();
    fs::remove_all(dir, ec);
    spdlog::error("image staging: {}", error);
    return error;
  }
  fs::rename(tmp, image, ec);  // atomic: a half-copied image is never used
  if (ec) {
    std::string error = what + ": rename to " + image.string() + " failed: " + ec.message();
    fs::remove_all(dir, ec);
    return error;
  }
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  start)
                .count();
  spdlog::info("image staging: {} version {} staged at {} ({} bytes in {} ms)", r.service,
               r.version, image.string(), fs::file_size(image, ec), ms);
  return "";
}

}  // namespace regen
