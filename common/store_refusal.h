// How an UNAVAILABLE that the controller itself answers begins (its state store refused a write;
// the request may be retried later), so that clients (common/admin_client.cc) tell it from an
// unreachable controller. Constants only; any thread.
#pragma once

namespace regen {

inline constexpr char kStoreRefusedPrefix[] = "the controller's state store refused a write";

}  // namespace regen
