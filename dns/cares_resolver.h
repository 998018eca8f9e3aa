// The real Resolver: c-ares (included only in cares_resolver.cc) with one channel; all names of
// a poll are in flight at once and the calling thread drives the channel until every answer is in.
// ResolveAll must be called by one thread at a time (the poller's).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"
#include "dns/dns_poller.h"

namespace regen::dns {

struct CaresResolverOptions {
  // The DNS server to ask: an IP literal ("127.0.0.1", "::1"); "" = the servers in
  // /etc/resolv.conf.
  std::string server;
  uint16_t port = 53;
  std::chrono::milliseconds timeout{1000};  // per try
  int tries = 2;
};

// INVALID_ARGUMENT for a bad server address; INTERNAL when c-ares cannot start.
Result<std::unique_ptr<Resolver>> NewCaresResolver(const CaresResolverOptions& options);

}  // namespace regen::dns
