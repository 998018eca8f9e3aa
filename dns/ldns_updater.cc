// The only file that includes <ldns/ldns.h>. ldns defines bool/true/false macros unless
// <stdbool.h> came first, and those break C++ headers that follow: include it last of all.
#include "dns/ldns_updater.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include <ldns/ldns.h>
#include <stdbool.h>  // before ldns, see above

namespace regen::dns {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMaxUdpMessage = 512;  // RFC 1035 without EDNS
constexpr uint16_t kTsigFudgeSeconds = 300;
constexpr size_t kTsigErrorRdf = 5;  // TSIG rdata: algorithm, time, fudge, mac, id, error, other

// Owners of ldns objects.
struct PktFree {
  void operator()(ldns_pkt* p) const { ldns_pkt_free(p); }
};
struct RrListFree {
  void operator()(ldns_rr_list* l) const { ldns_rr_list_deep_free(l); }
};
struct BytesFree {
  void operator()(uint8_t* b) const { free(b); }
};
using PktPtr = std::unique_ptr<ldns_pkt, PktFree>;
using RrListPtr = std::unique_ptr<ldns_rr_list, RrListFree>;
using BytesPtr = std::unique_ptr<uint8_t, BytesFree>;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

std::string RcodeName(int rcode) {
  ldns_lookup_table* entry = ldns_lookup_by_id(ldns_rcodes, rcode);
  if (entry != nullptr && entry->name != nullptr) return entry->name;
  return "RCODE" + std::to_string(rcode);
}

std::string TsigErrorName(int error) {
  switch (error) {
    case 16:
      return "BADSIG";
    case 17:
      return "BADKEY";
    case 18:
      return "BADTIME";
    case 22:
      return "BADTRUNC";
    default:
      return RcodeName(error);
  }
}

int MillisLeft(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

// Waits until `fd` is ready for `events`; false on timeout.
Result<bool> WaitReady(int fd, short events, Clock::time_point deadline) {
  while (true) {
    pollfd p{fd, events, 0};
    int n = poll(&p, 1, MillisLeft(deadline));
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return Unavailable(std::string("poll: ") + std::strerror(errno));
  }
}

class LdnsUpdater : public DnsUpdater {
 public:
  LdnsUpdater(LdnsUpdaterOptions options, sockaddr_storage address, socklen_t address_len)
      : options_(std::move(options)), address_(address), address_len_(address_len) {
    bool v6 = options_.server_address.find(':') != std::string::npos;
    server_name_ = (v6 ? "[" + options_.server_address + "]" : options_.server_address) + ":" +
                   std::to_string(options_.port);
  }

  std::string ServerName() const override { return server_name_; }

  Status Apply(const ZoneUpdate& update) override {
    if (update.empty()) return Status::Ok();
    std::string what = "DNS update of zone " + update.zone + " at " + server_name_;
    ASSIGN_OR_RETURN(std::vector<uint8_t> query, Encode(update, what));
    Clock::time_point deadline = Clock::now() + options_.timeout;
    bool tcp = options_.tcp_only || query.size() > kMaxUdpMessage;
    std::vector<uint8_t> answer;
    if (!tcp) {
      ASSIGN_OR_RETURN(answer, ExchangeUdp(query, deadline, what));
      ASSIGN_OR_RETURN(bool truncated, IsTruncated(answer, what));
      if (truncated) {
        tcp = true;
        deadline = Clock::now() + options_.timeout;
      }
    }
    if (tcp) {
      ASSIGN_OR_RETURN(answer, ExchangeTcp(query, deadline, what));
    }
    return Check(query, answer, what);
  }

 private:
  // Builds the UPDATE, signed when a TSIG key is set, in wire format.
  Result<std::vector<uint8_t>> Encode(const ZoneUpdate& update, const std::string& what) {
    RrListPtr records(ldns_rr_list_new());
    auto push_delete = [&](const std::string& name) -> Status {
      ldns_rdf* owner = ldns_dname_new_frm_str(name.c_str());
      if (owner == nullptr) return InvalidArgument(what + ": bad DNS name " + name);
      ldns_rr* rr = ldns_rr_new();
      ldns_rr_set_owner(rr, owner);
      ldns_rr_set_type(rr, LDNS_RR_TYPE_A);
      ldns_rr_set_class(rr, LDNS_RR_CLASS_ANY);  // RFC 2136 2.5.2: delete an RRset
      ldns_rr_set_ttl(rr, 0);
      ldns_rr_list_push_rr(records.get(), rr);
      return Status::Ok();
    };
    for (const std::string& name : update.deletes) RETURN_IF_ERROR(push_delete(name));
    for (const RRsetReplacement& set : update.replaces) {
      RETURN_IF_ERROR(push_delete(set.name));
      for (const std::string& ip : set.addresses) {
        std::string text = set.name + " " + std::to_string(update.ttl) + " IN A " + ip;
        ldns_rr* rr = nullptr;
        ldns_status s = ldns_rr_new_frm_str(&rr, text.c_str(), update.ttl, nullptr, nullptr);
        if (s != LDNS_STATUS_OK) {
          return InvalidArgument(what + ": cannot encode record \"" + text +
                                 "\": " + ldns_get_errorstr_by_id(s));
        }
        ldns_rr_list_push_rr(records.get(), rr);
      }
    }
    ldns_rdf* zone = ldns_dname_new_frm_str(update.zone.c_str());
    if (zone == nullptr) return InvalidArgument(what + ": bad zone name");
    // Takes `zone`; copies `records`.
    PktPtr pkt(ldns_update_pkt_new(zone, LDNS_RR_CLASS_IN, nullptr, records.get(), nullptr));
    if (!pkt) return Internal(what + ": ldns could not build the UPDATE message");
    ldns_pkt_set_rd(pkt.get(), false);  // the header's Z bits must be zero in an UPDATE
    ldns_pkt_set_random_id(pkt.get());
    if (options_.tsig) {
      std::string algorithm = options_.tsig->algorithm + ".";
      ldns_status s =
          ldns_pkt_tsig_sign(pkt.get(), options_.tsig->name.c_str(), options_.tsig->secret.c_str(),
                             kTsigFudgeSeconds, algorithm.c_str(), nullptr);
      if (s != LDNS_STATUS_OK) {
        return InvalidArgument(what + ": cannot sign with TSIG key " + options_.tsig->name + " (" +
                               options_.tsig->algorithm + "): " + ldns_get_errorstr_by_id(s));
      }
    }
    uint8_t* wire = nullptr;
    size_t size = 0;
    ldns_status s = ldns_pkt2wire(&wire, pkt.get(), &size);
    BytesPtr owned(wire);
    if (s != LDNS_STATUS_OK) {
      return Internal(what + ": cannot encode the UPDATE: " + ldns_get_errorstr_by_id(s));
    }
    if (size > 65535) {
      return InvalidArgument(what + ": the UPDATE is " + std::to_string(size) +
                             " bytes, more than a DNS message can hold (" +
                             std::to_string(update.RecordCount()) + " records)");
    }
    return std::vector<uint8_t>(wire, wire + size);
  }

  Result<bool> IsTruncated(const std::vector<uint8_t>& answer, const std::string& what) {
    // Header flags: byte 2 holds QR(0x80) ... TC(0x02).
    if (answer.size() < 12) return Internal(what + ": answer shorter than a DNS header");
    return (answer[2] & 0x02) != 0;
  }

  Result<std::vector<uint8_t>> ExchangeUdp(const std::vector<uint8_t>& query,
                                           Clock::time_point deadline, const std::string& what) {
    int fd = socket(address_.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return Internal(what + ": socket: " + std::strerror(errno));
    Fd owner(fd);
    // Connected, so an ICMP port unreachable comes back as ECONNREFUSED at once.
    if (connect(fd, reinterpret_cast<const sockaddr*>(&address_), address_len_) != 0) {
      return Unavailable(what + " failed: connect: " + std::strerror(errno));
    }
    if (send(fd, query.data(), query.size(), 0) != static_cast<ssize_t>(query.size())) {
      return Unavailable(what + " failed: send: " + std::strerror(errno) + NotRunningHint());
    }
    std::vector<uint8_t> buffer(65535);
    while (true) {
      ASSIGN_OR_RETURN(bool ready, WaitReady(fd, POLLIN, deadline));
      if (!ready) return NoAnswer(what, "UDP");
      ssize_t n = recv(fd, buffer.data(), buffer.size(), 0);
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        return Unavailable(what + " failed: " + std::strerror(errno) + NotRunningHint());
      }
      // A stray datagram (another id) is dropped; the real answer may still come.
      if (n >= 12 && buffer[0] == query[0] && buffer[1] == query[1]) {
        buffer.resize(static_cast<size_t>(n));
        return buffer;
      }
    }
  }

  Result<std::vector<uint8_t>> ExchangeTcp(const std::vector<uint8_t>& query,
                                           Clock::time_point deadline, const std::string& what) {
    int fd = socket(address_.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return Internal(what + ": socket: " + std::strerror(errno));
    Fd owner(fd);
    if (connect(fd, reinterpret_cast<const sockaddr*>(&address_), address_len_) != 0) {
      if (errno != EINPROGRESS) {
        return Unavailable(what + " failed: TCP connect: " + std::strerror(errno) +
                           NotRunningHint());
      }
      ASSIGN_OR_RETURN(bool ready, WaitReady(fd, POLLOUT, deadline));
      if (!ready) return NoAnswer(what, "TCP connect");
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        return Unavailable(what + " failed: TCP connect: " + std::strerror(err) + NotRunningHint());
      }
    }
    std::vector<uint8_t> framed = {static_cast<uint8_t>(query.size() >> 8),
                                   static_cast<uint8_t>(query.size() & 0xff)};
    framed.insert(framed.end(), query.begin(), query.end());
    size_t sent = 0;
    while (sent < framed.size()) {
      ASSIGN_OR_RETURN(bool ready, WaitReady(fd, POLLOUT, deadline));
      if (!ready) return NoAnswer(what, "TCP send");
      ssize_t n = send(fd, framed.data() + sent, framed.size() - sent, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        return Unavailable(what + " failed: TCP send: " + std::strerror(errno));
      }
      sent += static_cast<size_t>(n);
    }
    auto read_exactly = [&](size_t count) -> Result<std::vector<uint8_t>> {
      std::vector<uint8_t> out(count);
      size_t got = 0;
      while (got < count) {
        ASSIGN_OR_RETURN(bool ready, WaitReady(fd, POLLIN, deadline));
        if (!ready) return NoAnswer(what, "TCP");
        ssize_t n = recv(fd, out.data() + got, count - got, 0);
        if (n == 0) return Unavailable(what + " failed: the server closed the TCP connection");
        if (n < 0) {
          if (errno == EINTR || errno == EAGAIN) continue;
          return Unavailable(what + " failed: TCP receive: " + std::strerror(errno));
        }
        got += static_cast<size_t>(n);
      }
      return out;
    };
    ASSIGN_OR_RETURN(std::vector<uint8_t> length, read_exactly(2));
    return read_exactly((static_cast<size_t>(length[0]) << 8) | length[1]);
  }

  Status NoAnswer(const std::string& what, const std::string& step) const {
    return Unavailable(what + " failed: no answer (" + step + ") within " +
                       std::to_string(options_.timeout.count()) + " ms" + NotRunningHint());
  }

  std::string NotRunningHint() const {
    return " (is the DNS server running and listening on " + server_name_ + "?)";
  }

  // The error for an answer with rcode other than NOERROR, with what the operator should check.
  Status RcodeError(const std::string& what, int rcode, int tsig_error, const std::string& key,
                    const std::string& acl_subject) const {
    std::string message = what + " refused: rcode " + RcodeName(rcode);
    if (tsig_error != 0) message += ", TSIG error " + TsigErrorName(tsig_error);
    switch (rcode) {
      case LDNS_RCODE_NOTAUTH:
        if (tsig_error == 17) {
          message += " (the server does not know " + key +
                     ": check dns.tsig.key_name and the key in the server's configuration)";
        } else if (tsig_error == 16) {
          message += " (the server rejects the signature of " + key +
                     ": the secret in dns.tsig.secret_file differs from the server's)";
        } else if (tsig_error == 18) {
          message += " (clocks differ by more than " + std::to_string(kTsigFudgeSeconds) +
                     " s: synchronise the controller's and the server's clocks)";
        } else {
          message +=
              " (the server is not authoritative for the zone, or its ACL does not "
              "allow " +
              acl_subject + ": check the server's zone and ACL)";
        }
        return FailedPrecondition(message);
      case LDNS_RCODE_REFUSED:
        return FailedPrecondition(message + " (the server's ACL does not allow " + acl_subject +
                                  " to this zone)");
      case LDNS_RCODE_NOTZONE:
        return FailedPrecondition(message + " (a name lies outside the zone the server has)");
      case LDNS_RCODE_SERVFAIL:
        return Unavailable(message + " (the server failed to apply it; it is retried)");
      default:
        return Internal(message);
    }
  }

  Status Check(const std::vector<uint8_t>& query, const std::vector<uint8_t>& answer,
               const std::string& what) {
    ldns_pkt* parsed = nullptr;
    ldns_status s = ldns_wire2pkt(&parsed, answer.data(), answer.size());
    PktPtr reply(parsed);
    if (s != LDNS_STATUS_OK) {
      return Internal(what + ": cannot parse the answer: " + ldns_get_errorstr_by_id(s));
    }
    if (ldns_pkt_id(reply.get()) != ((query[0] << 8) | query[1]) || !ldns_pkt_qr(reply.get())) {
      return Internal(what + ": the answer does not match the query (id or QR flag)");
    }
    int rcode = ldns_pkt_get_rcode(reply.get());
    ldns_rr* tsig = ldns_pkt_tsig(reply.get());
    int tsig_error = 0;
    if (tsig != nullptr && ldns_rr_rd_count(tsig) > kTsigErrorRdf) {
      tsig_error = ldns_rdf2native_int16(ldns_rr_rdf(tsig, kTsigErrorRdf));
    }
    std::string key =
        options_.tsig ? "TSIG key " + options_.tsig->name + " (" + options_.tsig->algorithm + ")"
                      : "no TSIG key";
    std::string acl_subject = options_.tsig ? "updates signed with " + key
                                            : "unsigned updates (set dns.tsig if it wants a key)";
    if (rcode != LDNS_RCODE_NOERROR) return RcodeError(what, rcode, tsig_error, key, acl_subject);
    if (!options_.tsig) return Status::Ok();
    if (tsig == nullptr) {
      return FailedPrecondition(what + ": the answer is NOERROR but not signed with " + key +
                                ": it cannot be trusted (is something between us and the "
                                "server answering?)");
    }
    // The MAC of our query, which the answer's MAC covers (RFC 8945 5.3).
    ldns_pkt* query_parsed = nullptr;
    if (ldns_wire2pkt(&query_parsed, query.data(), query.size()) != LDNS_STATUS_OK) {
      return Internal(what + ": cannot re-read the signed query");
    }
    PktPtr query_pkt(query_parsed);
    ldns_rr* query_tsig = ldns_pkt_tsig(query_pkt.get());
    if (query_tsig == nullptr || ldns_rr_rd_count(query_tsig) < 4) {
      return Internal(what + ": the signed query carries no TSIG");
    }
    bool verified =
        ldns_pkt_tsig_verify(reply.get(), answer.data(), answer.size(), options_.tsig->name.c_str(),
                             options_.tsig->secret.c_str(), ldns_rr_rdf(query_tsig, 3));
    if (!verified) {
      return FailedPrecondition(what + ": the answer's TSIG signature does not verify with " + key +
                                " (TSIG error " + TsigErrorName(tsig_error) +
                                "): the update may have been applied, but the answer cannot "
                                "be trusted");
    }
    return Status::Ok();
  }

  LdnsUpdaterOptions options_;
  sockaddr_storage address_;
  socklen_t address_len_;
  std::string server_name_;
};

}  // namespace

Result<std::unique_ptr<DnsUpdater>> NewLdnsUpdater(const LdnsUpdaterOptions& options) {
  if (options.port == 0) return InvalidArgument("DNS server port must be 1 to 65535, got 0");
  addrinfo hints{};
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  std::string port = std::to_string(options.port);
  int rc = getaddrinfo(options.server_address.c_str(), port.c_str(), &hints, &found);
  if (rc != 0 || found == nullptr) {
    return InvalidArgument("DNS server address \"" + options.server_address +
                           "\" is not an IP address (" + gai_strerror(rc) +
                           "); give an IPv4 or IPv6 literal, no host name");
  }
  sockaddr_storage address{};
  std::memcpy(&address, found->ai_addr, found->ai_addrlen);
  socklen_t address_len = found->ai_addrlen;
  freeaddrinfo(found);

  LdnsUpdaterOptions checked = options;
  if (checked.tsig) {
    checked.tsig->name = AbsoluteKeyName(checked.tsig->name);
    if (checked.tsig->secret.empty()) {
      return InvalidArgument("TSIG key " + checked.tsig->name + " has an empty secret");
    }
    const std::string& a = checked.tsig->algorithm;
    if (a != "hmac-sha256" && a != "hmac-sha512" && a != "hmac-sha1") {
      return InvalidArgument("TSIG algorithm \"" + a +
                             "\" is not supported: use hmac-sha256, hmac-sha512 or hmac-sha1");
    }
  }
  if (checked.timeout.count() <= 0) {
    return InvalidArgument("DNS update timeout must be positive, got " +
                           std::to_string(checked.timeout.count()) + " ms");
  }
  return std::unique_ptr<DnsUpdater>(new LdnsUpdater(std::move(checked), address, address_len));
}

}  // namespace regen::dns
