// Makes the agent a child subreaper and reaps the qemu processes re-parented to it, so libvirt
// notices a dead qemu in milliseconds (LAB-NOTES.md). Only zombies named qemu* whose parent is
// this process are reaped: libvirt waits for its own children itself and must not lose them.
// BlockSigchld() must be called on the main thread before any other thread starts; Start/Stop from
// one thread.
#pragma once

#include <atomic>
#include <thread>

#include "common/status.h"

namespace regen {

class ChildReaper {
 public:
  ChildReaper() = default;
  ~ChildReaper();
  ChildReaper(const ChildReaper&) = delete;
  ChildReaper& operator=(const ChildReaper&) = delete;

  // Blocks SIGCHLD in the calling thread (threads started later inherit the mask).
  static void BlockSigchld();
  // prctl(PR_SET_CHILD_SUBREAPER) and starts the reaping thread.
  Status Start();
  void Stop();
  // Reaps every qemu zombie child now; returns how many. Thread-safe.
  static int ReapQemuZombies();
  int reaped() const { return reaped_.load(); }

 private:
  void Loop();
  std::atomic<bool> stop_{false};
  std::atomic<int> reaped_{0};
  std::thread thread_;
};

}  // namespace regen
