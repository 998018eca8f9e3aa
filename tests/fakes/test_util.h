// Helpers shared by Regen's tests: temp dirs that clean themselves, waiting on a condition with a
// deadline (tests never sleep to wait), file helpers, and locating the source tree.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace regen::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "regen-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Figures for benchmarks: a duration in milliseconds, and the p-th percentile (0..1, nearest
// rank, rounded) of `values` (0 when empty).
double Millis(std::chrono::steady_clock::duration d);
double Percentile(std::vector<double> values, double p);

// Polls `condition` every `step` until it is true (returns true) or `timeout` passes (false).
bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
             std::chrono::milliseconds step = std::chrono::milliseconds(5));

std::string ReadFileOrDie(const std::string& path);

// DIR/etc/qemu.conf for a qemu:///embed?root=DIR (LAB-NOTES.md): qemu's output to files (else the
// driver wants virtlogd), and qemu run as root. As libvirt-qemu, on a machine whose /dev/kvm is
// root-only, libvirt's probe (run with CAP_DAC_OVERRIDE) finds KVM while its cache check (plain
// access() as libvirt-qemu) does not: the capabilities are never valid and every domain start
// probes again for seconds.
inline constexpr char kEmbedQemuConf[] =
    "stdio_handler = \"file\"\nuser = \"root\"\ngroup = \"root\"\n";
void WriteFileOrDie(const std::string& path, const std::string& content);

// The source tree root (REGEN_SOURCE_DIR, set by CTest; else the compile-time path).
std::string SourceDir();
std::string BinaryDir();

// A child process started by a test (argv, no shell), output to `log_path`; stopped by its own PID
// (SIGTERM, then SIGKILL after 5 s) when Stop() is called or the object is destroyed.
// A TCP port free on loopback now (bound and released: another process may take it before use).
int FreePort();
// Whether something accepts TCP connections on 127.0.0.1:port.
bool PortOpen(int port);

class ChildProcess {
 public:
  ChildProcess(const std::vector<std::string>& argv, const std::string& log_path);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  int pid() const { return pid_; }
  // False once the process has exited (it is then reaped, and its status kept for Stop).
  bool Running();
  // SIGTERM (SIGKILL after 5 s) unless it already exited; returns the exit status (as from
  // waitpid) or -1. A reaped process is never signalled: its PID may belong to another by now.
  int Stop();
  // Sends SIGKILL (unless it already exited) and reaps.
  void Kill();
  // Its waitpid status once Running() said false; nullopt while it runs (or when someone else
  // reaped it). DescribeWaitStatus (common/subprocess.h) puts it in words.
  std::optional<int> wait_status() const {
    return reaped_ && status_ >= 0 ? std::optional<int>(status_) : std::nullopt;
  }

 private:
  int pid_ = -1;
  bool reaped_ = false;
  int status_ = -1;
};

// /proc/PID/cmdline with NULs as spaces ("" when the process is gone or a zombie).
std::string ProcCmdline(int pid);

// PIDs of processes whose command line contains `needle` (from /proc/*/cmdline, NULs as spaces).
std::vector<int> FindProcesses(const std::string& needle);

// Kills (SIGKILL) every process whose command line contains `needle`; waits until they are gone.
void KillProcesses(const std::string& needle);

// Milliseconds since the Unix epoch (to compare with timestamps the agent reports).
int64_t WallMillis();

// True when `program` is found in PATH.
bool HaveProgram(const std::string& program);

// In CI (CI set in the environment) a missing component is a failure, never a skip; outside CI
// the test is skipped with a message saying what to install. Use as:
//   if (!HaveProgram("qemu-system-x86_64")) REGEN_REQUIRE_COMPONENT("qemu-system-x86_64", "...");
#define REGEN_REQUIRE_COMPONENT(what, hint)                                                  \
  do {                                                                                       \
    if (std::getenv("CI") != nullptr) {                                                      \
      FAIL() << "component " << (what) << " cannot run here and CI requires it: " << (hint); \
    } else {                                                                                 \
      GTEST_SKIP() << "component " << (what) << " cannot run here: " << (hint);              \
    }                                                                                        \
  } while (0)

}  // namespace regen::testing
