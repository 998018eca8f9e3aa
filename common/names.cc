#include "common/names.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstdio>
#include <string>

namespace regen {

bool IsValidName(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  if (name[0] < 'a' || name[0] > 'z') return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string QuoteValue(std::string_view value) {
  std::string out = "\"";
  size_t n = 0;
  for (unsigned char c : value) {
    if (++n > 80) {
      out += "...";
      break;
    }
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  out += "\"";
  return out;
}

Status ValidateName(std::string_view field, std::string_view name) {
  if (IsValidName(name)) return Status::Ok();
  return InvalidArgument(std::string(field) + ": invalid name " + QuoteValue(name) +
                         " (must match [a-z][a-z0-9-]{0,62}: lower-case letter first, then "
                         "lower-case letters, digits or '-', at most 63 characters)");
}

bool IsValidMac(std::string_view mac) {
  if (mac.size() != 17) return false;
  for (size_t i = 0; i < mac.size(); ++i) {
    char c = mac[i];
    if (i % 3 == 2) {
      if (c != ':') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  int first = std::stoi(std::string(mac.substr(0, 2)), nullptr, 16);
  return (first & 1) == 0;  // not multicast
}

bool IsValidIpv4(std::string_view ip) {
  in_addr addr{};
  return inet_pton(AF_INET, std::string(ip).c_str(), &addr) == 1;
}

const char kVersionNameRule[] =
    "must match [a-z0-9][a-z0-9._-]{0,62}: a lower-case letter or digit first, then lower-case "
    "letters, digits, '.', '_' or '-', at most 63 characters";

bool IsValidVersionName(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              (i > 0 && (c == '.' || c == '_' || c == '-'));
    if (!ok) return false;
  }
  return true;
}

bool IsValidDnsName(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  size_t start = 0;
  while (true) {
    size_t dot = name.find('.', start);
    std::string_view label =
        name.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
    }
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

bool IsValidZoneName(std::string_view zone) {
  return zone.size() >= 2 && zone.back() == '.' && IsValidDnsName(zone.substr(0, zone.size() - 1));
}

namespace {

// Host names as config files take them: letters (either case), digits, '-', '.', '_'; not
// starting with '-' or '.'.
bool IsHostName(std::string_view host) {
  if (host.empty() || host.size() > 253 || host.front() == '-' || host.front() == '.') {
    return false;
  }
  for (char c : host) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

bool SplitHostPort(std::string_view text, std::string* host, uint16_t* port, bool* bracketed) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return false;
  std::string_view host_text = text.substr(0, colon);
  std::string_view port_text = text.substr(colon + 1);
  if (port_text.empty() || port_text.size() > 5) return false;
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
  if (ec != std::errc() || ptr != port_text.data() + port_text.size() || value == 0 ||
      value > 65535) {
    return false;
  }
  const bool in_brackets =
      host_text.size() >= 2 && host_text.front() == '[' && host_text.back() == ']';
  if (in_brackets) {
    host_text = host_text.substr(1, host_text.size() - 2);
  } else if (host_text.find(':') != std::string_view::npos) {
    return false;  // IPv6 needs brackets
  }
  if (host_text.empty()) return false;
  *host = std::string(host_text);
  *port = static_cast<uint16_t>(value);
  if (bracketed != nullptr) *bracketed = in_brackets;
  return true;
}

bool IsValidHostPort(std::string_view text, bool ip_only) {
  std::string host;
  uint16_t port = 0;
  bool bracketed = false;
  if (!SplitHostPort(text, &host, &port, &bracketed)) return false;
  if (bracketed) {
    in6_addr addr{};
    return inet_pton(AF_INET6, host.c_str(), &addr) == 1;
  }
  if (IsValidIpv4(host)) return true;
  return !ip_only && IsHostName(host);
}

}  // namespace regen
