// The only file that includes <ares.h>.
#include "dns/cares_resolver.h"

#include <ares.h>
#include <arpa/inet.h>
#include <poll.h>

#include <algorithm>
#include <mutex>

namespace regen::dns {
namespace {

constexpr int kMaxAddresses = 512;

struct Pending {
  std::string name;
  LookupResult* result = nullptr;
  int* outstanding = nullptr;
  std::string server;
};

void OnAnswer(void* arg, int status, int /*timeouts*/, unsigned char* abuf, int alen) {
  auto* pending = static_cast<Pending*>(arg);
  LookupResult& result = *pending->result;
  --*pending->outstanding;
  if (status == ARES_ENOTFOUND || status == ARES_ENODATA) {
    result.status = Status::Ok();  // NXDOMAIN or no A records: the name has no address
    return;
  }
  if (status != ARES_SUCCESS) {
    result.status = Unavailable("DNS lookup of " + pending->name + " at " + pending->server +
                                " failed: " + ares_strerror(status));
    return;
  }
  std::vector<ares_addrttl> addresses(kMaxAddresses);
  int count = kMaxAddresses;
  int rc = ares_parse_a_reply(abuf, alen, nullptr, addresses.data(), &count);
  if (rc == ARES_ENODATA) {
    result.status = Status::Ok();
    return;
  }
  if (rc != ARES_SUCCESS) {
    result.status = Internal("DNS answer for " + pending->name + " from " + pending->server +
                             " cannot be parsed: " + ares_strerror(rc));
    return;
  }
  result.status = Status::Ok();
  for (int i = 0; i < count; ++i) {
    char text[INET_ADDRSTRLEN] = {};
    inet_ntop(AF_INET, &addresses[i].ipaddr, text, sizeof(text));
    result.addresses.emplace_back(text);
  }
  std::sort(result.addresses.begin(), result.addresses.end());
  result.addresses.erase(std::unique(result.addresses.begin(), result.addresses.end()),
                         result.addresses.end());
}

class CaresResolver : public Resolver {
 public:
  CaresResolver(ares_channel channel, std::string server_name)
      : channel_(channel), server_name_(std::move(server_name)) {}
  ~CaresResolver() override { ares_destroy(channel_); }

  std::map<std::string, LookupResult> ResolveAll(const std::vector<std::string>& names) override {
    std::map<std::string, LookupResult> results;
    std::vector<Pending> pending(names.size());
    int outstanding = 0;
    for (size_t i = 0; i < names.size(); ++i) {
      LookupResult& result = results[names[i]];
      if (result.status.code() == Code::kInternal) continue;  // duplicate name, already queued
      result.status = Internal("no answer yet");
      pending[i] = {names[i], &result, &outstanding, server_name_};
      ++outstanding;
      ares_query(channel_, names[i].c_str(), 1 /* C_IN */, 1 /* T_A */, OnAnswer, &pending[i]);
    }
    while (outstanding > 0) {
      ares_socket_t sockets[ARES_GETSOCK_MAXNUM];
      int bits = ares_getsock(channel_, sockets, ARES_GETSOCK_MAXNUM);
      std::vector<pollfd> fds;
      for (int i = 0; i < ARES_GETSOCK_MAXNUM; ++i) {
        short events = 0;
        if (ARES_GETSOCK_READABLE(bits, i)) events |= POLLIN;
        if (ARES_GETSOCK_WRITABLE(bits, i)) events |= POLLOUT;
        if (events != 0) fds.push_back({sockets[i], events, 0});
      }
      timeval max{1, 0};
      timeval tv{};
      ares_timeout(channel_, &max, &tv);
      int wait_ms = static_cast<int>(tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000);
      int n = poll(fds.data(), fds.size(), wait_ms);
      if (n <= 0) {
        ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // timeouts
        continue;
      }
      for (const pollfd& p : fds) {
        if (p.revents == 0) continue;
        bool readable = (p.revents & (POLLIN | POLLERR | POLLHUP)) != 0;
        bool writable = (p.revents & POLLOUT) != 0;
        ares_process_fd(channel_, readable ? p.fd : ARES_SOCKET_BAD,
                        writable ? p.fd : ARES_SOCKET_BAD);
      }
    }
    return results;
  }

 private:
  ares_channel channel_;
  std::string server_name_;
};

}  // namespace

Result<std::unique_ptr<Resolver>> NewCaresResolver(const CaresResolverOptions& options) {
  static std::once_flag init_once;
  static int init_rc = ARES_SUCCESS;
  std::call_once(init_once, [] { init_rc = ares_library_init(ARES_LIB_INIT_ALL); });
  if (init_rc != ARES_SUCCESS) {
    return Internal(std::string("c-ares cannot start: ") + ares_strerror(init_rc));
  }
  if (options.timeout.count() <= 0 || options.tries < 1) {
    return InvalidArgument("DNS resolver timeout and tries must be positive");
  }
  std::string server_name = "the system resolvers";
  std::string csv;
  if (!options.server.empty()) {
    in_addr v4{};
    in6_addr v6{};
    if (inet_pton(AF_INET, options.server.c_str(), &v4) == 1) {
      server_name = options.server + ":" + std::to_string(options.port);
    } else if (inet_pton(AF_INET6, options.server.c_str(), &v6) == 1) {
      server_name = "[" + options.server + "]:" + std::to_string(options.port);
    } else {
      return InvalidArgument("DNS server \"" + options.server +
                             "\" is not an IP address; give an IPv4 or IPv6 literal");
    }
    if (options.port == 0) return InvalidArgument("DNS server port must be 1 to 65535, got 0");
    csv = server_name;
  }
  ares_options ao{};
  ao.timeout = static_cast<int>(options.timeout.count());
  ao.tries = options.tries;
  ao.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_EDNS;
  ao.ednspsz = 4096;
  int mask = ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS | ARES_OPT_EDNSPSZ;
  ares_channel channel = nullptr;
  int rc = ares_init_options(&channel, &ao, mask);
  if (rc != ARES_SUCCESS) {
    return Internal(std::string("c-ares channel: ") + ares_strerror(rc));
  }
  if (!csv.empty()) {
    rc = ares_set_servers_ports_csv(channel, csv.c_str());
    if (rc != ARES_SUCCESS) {
      ares_destroy(channel);
      return InvalidArgument("DNS server " + csv + " rejected by c-ares: " + ares_strerror(rc));
    }
  }
  return std::unique_ptr<Resolver>(new CaresResolver(channel, server_name));
}

}  // namespace regen::dns
