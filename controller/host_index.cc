#include "controller/host_index.h"

#include <algorithm>
#include <limits>

#include "common/names.h"

namespace regen {
namespace {

constexpr int64_t kNeg = std::numeric_limits<int64_t>::min() / 4;  // an ineligible leaf
constexpr int64_t kScoreScale = int64_t{1} << 20;  // one dimension fully free scores this much

const char* const kDimNames[4] = {"vCPU", "memory", "disk", "bandwidth"};
const char* const kDimUnits[4] = {"", " MiB", " GiB", " Mbps"};

}  // namespace

const char* HostStateName(HostState state) {
  switch (state) {
    case HostState::kUp:
      return "up";
    case HostState::kSuspect:
      return "suspect";
    case HostState::kDown:
      return "down";
    case HostState::kDraining:
      return "draining";
    case HostState::kCordoned:
      return "cordoned";
  }
  return "unknown";
}

Result<HostState> ParseHostState(std::string_view text) {
  for (HostState s : {HostState::kUp, HostState::kSuspect, HostState::kDown, HostState::kDraining,
                      HostState::kCordoned}) {
    if (text == HostStateName(s)) return s;
  }
  return InvalidArgument("host state: unknown value " + QuoteValue(text) +
                         " (use up, suspect, down, draining or cordoned)");
}

Resources& operator+=(Resources& a, const Resources& b) {
  a.vcpus += b.vcpus;
  a.memory_mib += b.memory_mib;
  a.disk_gib += b.disk_gib;
  a.bandwidth_mbps += b.bandwidth_mbps;
  return a;
}

Resources& operator-=(Resources& a, const Resources& b) {
  a.vcpus -= b.vcpus;
  a.memory_mib -= b.memory_mib;
  a.disk_gib -= b.disk_gib;
  a.bandwidth_mbps -= b.bandwidth_mbps;
  return a;
}

HostIndex::Vec HostIndex::ToVec(const Resources& r) {
  return {r.vcpus, r.memory_mib, r.disk_gib, r.bandwidth_mbps};
}

Resources HostIndex::FromVec(const Vec& v) { return {v[0], v[1], v[2], v[3]}; }

bool HostIndex::Fits(const Vec& free, const Vec& need) {
  return free[0] >= need[0] && free[1] >= need[1] && free[2] >= need[2] && free[3] >= need[3];
}

bool HostIndex::AnyNegative(const Resources& r) {
  return r.vcpus < 0 || r.memory_mib < 0 || r.disk_gib < 0 || r.bandwidth_mbps < 0;
}

std::string HostIndex::DescribeShortage(const Vec& free, const Vec& need) {
  std::string out;
  for (int d = 0; d < 4; ++d) {
    if (free[d] >= need[d]) continue;
    out += out.empty() ? "short of " : ", ";
    out += std::string(kDimNames[d]) + " by " + std::to_string(need[d] - free[d]) + kDimUnits[d];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Hosts.

int32_t HostIndex::Append(const HostInfo& h) {
  int32_t id = static_cast<int32_t>(hosts_.size());
  by_name_.emplace(h.name, id);
  hosts_.push_back({h.name, h.state, h.capacity, h.other_usage, {}, 0});
  if (tree_.empty()) return id;  // BuildIndex comes later
  if (hosts_.size() > leaves_) {
    Grow(hosts_.size() * 2);
  } else {
    UpdateLeaf(id);
  }
  return id;
}

void HostIndex::BuildIndex() { Grow(hosts_.size()); }

int32_t HostIndex::Find(std::string_view name) const {
  auto it = by_name_.find(std::string(name));
  return it == by_name_.end() ? -1 : it->second;
}

void HostIndex::Update(int32_t id, HostState state, const Resources& capacity,
                       const Resources& other_usage) {
  Host& host = hosts_[id];
  host.state = state;
  host.capacity = capacity;
  host.other_usage = other_usage;
  UpdateLeaf(id);
}

void HostIndex::SetState(int32_t id, HostState state) {
  hosts_[id].state = state;
  UpdateLeaf(id);
}

void HostIndex::AddAllocated(int32_t id, const Resources& r) {
  hosts_[id].allocated += r;
  UpdateLeaf(id);
}

void HostIndex::RemoveAllocated(int32_t id, const Resources& r) {
  hosts_[id].allocated -= r;
  UpdateLeaf(id);
}

void HostIndex::SetMask(int32_t host, uint8_t bits, bool on) {
  uint8_t before = hosts_[host].mask;
  hosts_[host].mask = on ? (before | bits) : (before & ~bits);
  if (hosts_[host].mask != before) UpdateLeaf(host);
}

// ---------------------------------------------------------------------------------------------
// The tree.

HostIndex::Vec HostIndex::FreeVec(const Host& h) const {
  Resources free = h.capacity;
  free -= h.other_usage;
  free -= h.allocated;
  return ToVec(free);
}

int64_t HostIndex::Score(const Host& h) const {
  const Vec free = FreeVec(h);
  const Vec cap = ToVec(h.capacity);
  int64_t score = 0;
  for (int d = 0; d < kDims; ++d) {
    if (cap[d] > 0) score += free[d] * kScoreScale / cap[d];
  }
  return score;
}

HostIndex::Node HostIndex::LeafValue(int32_t host) const {
  if (host < 0 || static_cast<size_t>(host) >= hosts_.size())
    return {{kNeg, kNeg, kNeg, kNeg}, kNeg};
  const Host& h = hosts_[host];
  if (h.state != HostState::kUp || h.mask != 0) return {{kNeg, kNeg, kNeg, kNeg}, kNeg};
  return {FreeVec(h), Score(h)};
}

void HostIndex::Combine(Node& out, const Node& a, const Node& b) {
  for (int d = 0; d < 4; ++d) out.max_free[d] = std::max(a.max_free[d], b.max_free[d]);
  out.max_score = std::max(a.max_score, b.max_score);
}

void HostIndex::Grow(size_t hosts) {
  leaves_ = 1;
  while (leaves_ < hosts) leaves_ *= 2;
  tree_.assign(2 * leaves_, Node{{kNeg, kNeg, kNeg, kNeg}, kNeg});
  for (size_t i = 0; i < hosts_.size(); ++i)
    tree_[leaves_ + i] = LeafValue(static_cast<int32_t>(i));
  for (size_t v = leaves_ - 1; v >= 1; --v) Combine(tree_[v], tree_[2 * v], tree_[2 * v + 1]);
}

void HostIndex::UpdateLeaf(int32_t host) {
  if (tree_.empty()) return;  // during Build, before BuildIndex
  size_t v = leaves_ + static_cast<size_t>(host);
  tree_[v] = LeafValue(host);
  for (v /= 2; v >= 1; v /= 2) Combine(tree_[v], tree_[2 * v], tree_[2 * v + 1]);
}

// Leftmost fitting host other than `current_host`.
int32_t HostIndex::SearchFirstFit(const Vec& need, int32_t current_host) const {
  size_t stack[128];
  size_t top = 0;
  stack[top++] = 1;
  while (top > 0) {
    size_t v = stack[--top];
    if (!Fits(tree_[v].max_free, need)) continue;
    if (v >= leaves_) {
      int32_t host = static_cast<int32_t>(v - leaves_);
      if (host == current_host) continue;
      return host;
    }
    stack[top++] = 2 * v + 1;
    stack[top++] = 2 * v;
  }
  return -1;
}

int32_t HostIndex::SearchMostFree(const Vec& need, int32_t current_host,
                                  const std::function<bool(int32_t)>& reject, int* rejected) {
  // Heap entries: {score, -start, node}; std::push_heap keeps the largest on top.
  heap_.clear();
  heap_.push_back({tree_[1].max_score, 0, 1});
  int32_t found = -1;
  while (!heap_.empty()) {
    std::pop_heap(heap_.begin(), heap_.end());
    const auto [score, neg_start, v64] = heap_.back();
    heap_.pop_back();
    const size_t v = static_cast<size_t>(v64);
    if (score == kNeg || !Fits(tree_[v].max_free, need)) continue;
    if (v >= leaves_) {
      int32_t host = static_cast<int32_t>(v - leaves_);
      if (host == current_host || (reject && reject(host))) {
        ++*rejected;
        continue;
      }
      found = host;
      break;
    }
    // Children of v cover [start, start + width) split in two halves.
    int64_t start = -neg_start;
    size_t level_width = leaves_;
    for (size_t u = v; u > 1; u /= 2) level_width /= 2;
    int64_t half = static_cast<int64_t>(level_width / 2);
    heap_.push_back({tree_[2 * v].max_score, -start, static_cast<int64_t>(2 * v)});
    std::push_heap(heap_.begin(), heap_.end());
    heap_.push_back({tree_[2 * v + 1].max_score, -(start + half), static_cast<int64_t>(2 * v + 1)});
    std::push_heap(heap_.begin(), heap_.end());
  }
  return found;
}

Status HostIndex::CheckIndex() const {
  if (leaves_ < hosts_.size() || tree_.size() != 2 * leaves_) return Internal("index too small");
  for (size_t v = 2 * leaves_ - 1; v >= 1; --v) {
    Node want;
    if (v >= leaves_) {
      want = LeafValue(static_cast<int32_t>(v - leaves_));
    } else {
      Combine(want, tree_[2 * v], tree_[2 * v + 1]);
    }
    if (want.max_free != tree_[v].max_free || want.max_score != tree_[v].max_score) {
      return Internal("index node " + std::to_string(v) + " is stale");
    }
  }
  return Status::Ok();
}

}  // namespace regen
