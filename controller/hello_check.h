// What the controller checks in an agent's Hello before anything of it is stored (issue 15,
// finding 3: a Hello with a negative capacity was stored, and the controller then refused to
// start from its own database): the tunnel address and the capacity. Pure; any thread.
#pragma once

#include "common/proto/regen.pb.h"
#include "common/status.h"

namespace regen {

// The largest capacity a host may claim (a typo or a hostile Hello, not a machine).
inline constexpr int64_t kMaxHostVcpus = 4096;
inline constexpr int64_t kMaxHostMemoryMib = int64_t{64} << 20;  // 64 TiB
inline constexpr int64_t kMaxHostDiskGib = int64_t{1} << 20;     // 1 PiB
inline constexpr int64_t kMaxHostBandwidthMbps = 10'000'000;     // 10 Tbps

// INVALID_ARGUMENT naming the field and the value ("hello.capacity.vcpus: must be between 0 and
// 4096, got -4"; "hello.address: not an IPv4 address: \"x\"") or OK. The host name is checked
// apart (ValidateName).
Status CheckHello(const v1::Hello& hello);

}  // namespace regen
