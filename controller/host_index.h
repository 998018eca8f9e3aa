// The allocator's host index: hosts in host order, their state, capacity and free resources, and a
// segment tree over them for fast "which host fits" searches. Pure; owned by one thread.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/model.h"
#include "common/status.h"

namespace regen {

// Only hosts in state kUp take new instances. kCordoned (regenctl host cordon): running instances
// stay, nothing new is placed there.
enum class HostState { kUp, kSuspect, kDown, kDraining, kCordoned };
// "up", "suspect", "down", "draining", "cordoned"
const char* HostStateName(HostState state);
Result<HostState> ParseHostState(std::string_view text);

struct HostInfo {
  std::string name;
  HostState state = HostState::kUp;
  Resources capacity;
  // Usage NOT represented by the allocations given to the state (host overhead, foreign VMs).
  // Allocations known to the state add to it; do not count them here too.
  Resources other_usage;
};

Resources& operator+=(Resources& a, const Resources& b);
Resources& operator-=(Resources& a, const Resources& b);

// The segment tree is over the hosts in host order (the order of Append); each node holds the
// component-wise maximum free vCPU/memory/disk/bandwidth and the maximum "emptiness" score (sum
// over the four dimensions of the free fraction) of the eligible hosts below it (up, not masked).
// A subtree whose maxima cannot hold a need is never entered.
class HostIndex {
 public:
  static constexpr int kDims = 4;
  using Vec = std::array<int64_t, kDims>;  // vCPU, memory MiB, disk GiB, bandwidth Mbps

  // Mask bits: a masked host is invisible to the searches (set only during one placement call).
  static constexpr uint8_t kMaskExcluded = 1;
  static constexpr uint8_t kMaskService = 2;

  struct Host {
    std::string name;
    HostState state = HostState::kUp;
    Resources capacity;
    Resources other_usage;
    Resources allocated;  // sum of the allocations on this host
    uint8_t mask = 0;     // kMask* bits, set only during a Place* call
  };

  static Vec ToVec(const Resources& r);
  static Resources FromVec(const Vec& v);
  // free >= need in every dimension.
  static bool Fits(const Vec& free, const Vec& need);
  static bool AnyNegative(const Resources& r);
  // "short of vCPU by 1, memory by 2048 MiB"
  static std::string DescribeShortage(const Vec& free, const Vec& need);

  // Appends a host (no check of the name; see AllocatorState). Before BuildIndex the tree is left
  // alone; afterwards it grows (doubling) as needed.
  int32_t Append(const HostInfo& h);
  // Builds the tree for the hosts appended so far: O(H).
  void BuildIndex();
  // -1 for an unknown host.
  int32_t Find(std::string_view name) const;

  size_t size() const { return hosts_.size(); }
  const Host& host(int32_t id) const { return hosts_[id]; }
  const std::string& name(int32_t id) const { return hosts_[id].name; }

  // Replaces a host's state, capacity and other usage.
  void Update(int32_t id, HostState state, const Resources& capacity, const Resources& other_usage);
  void SetState(int32_t id, HostState state);
  void AddAllocated(int32_t id, const Resources& r);
  void RemoveAllocated(int32_t id, const Resources& r);
  void SetMask(int32_t id, uint8_t bits, bool on);

  // Capacity minus other usage minus allocations.
  Vec FreeVec(const Host& h) const;
  Vec FreeVec(int32_t id) const { return FreeVec(hosts_[id]); }
  int64_t Score(const Host& h) const;
  int64_t Score(int32_t id) const { return Score(hosts_[id]); }
  // Up and not excluded (the service mask does not count).
  bool Eligible(int32_t id) const {
    return hosts_[id].state == HostState::kUp && !(hosts_[id].mask & kMaskExcluded);
  }

  // Leftmost eligible fitting host other than `current_host`; -1 if none.
  int32_t SearchFirstFit(const Vec& need, int32_t current_host) const;
  // The emptiest eligible fitting host (ties: host order) other than `current_host` and the hosts
  // for which `reject` is true; adds the number of rejected fitting hosts to *rejected. Best-first:
  // a node's max_score bounds every leaf below it, so the first acceptable leaf taken from the heap
  // is the answer. -1 if none.
  int32_t SearchMostFree(const Vec& need, int32_t current_host,
                         const std::function<bool(int32_t)>& reject, int* rejected);

  // Checks the tree against the hosts; for AllocatorState::CheckInvariants.
  Status CheckIndex() const;

 private:
  struct Node {
    Vec max_free;
    int64_t max_score;
  };

  void Grow(size_t hosts);
  void UpdateLeaf(int32_t host);
  Node LeafValue(int32_t host) const;
  static void Combine(Node& out, const Node& a, const Node& b);

  std::vector<Host> hosts_;
  std::unordered_map<std::string, int32_t> by_name_;
  std::vector<Node> tree_;  // 1-based heap layout, leaves_ leaves
  size_t leaves_ = 0;
  std::vector<std::array<int64_t, 3>> heap_;  // scratch for SearchMostFree
};

}  // namespace regen
