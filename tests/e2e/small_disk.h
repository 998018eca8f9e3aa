// A small tmpfs (16 MiB) for a controller's database, to fill that disk in tests (the chaos
// runner's disk-full fault, store_outage_e2e_test). Mounting needs root: error() says why when it
// could not. Unmounted and removed by the destructor, even when the test fails. One thread.
#pragma once

#include <fcntl.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace regen::testing {

class SmallDisk {
 public:
  SmallDisk() {
    char tmpl[] = "/tmp/regen-small-disk-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      error_ = std::string("mkdtemp: ") + std::strerror(errno);
      return;
    }
    path_ = tmpl;
    if (mount("tmpfs", path_.c_str(), "tmpfs", 0, "size=16m,mode=0755") != 0) {
      error_ = "mount tmpfs on " + path_ + " (needs root): " + std::strerror(errno);
      rmdir(path_.c_str());
      path_.clear();
    }
  }
  ~SmallDisk() {
    if (path_.empty()) return;
    umount2(path_.c_str(), MNT_DETACH);
    rmdir(path_.c_str());
  }
  SmallDisk(const SmallDisk&) = delete;
  SmallDisk& operator=(const SmallDisk&) = delete;

  bool ok() const { return !path_.empty(); }
  const std::string& error() const { return error_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }
  // Writes a filler until the disk is full (to the last byte); Free() removes it.
  void Fill() {
    int fd = open(File("filler").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return;
    std::string block(1 << 16, 'x');
    while (write(fd, block.data(), block.size()) > 0) {
    }
    while (write(fd, "x", 1) > 0) {
    }
    close(fd);
  }
  void Free() { unlink(File("filler").c_str()); }

 private:
  std::string path_;
  std::string error_;
};

}  // namespace regen::testing
