#include "common/names.h"

#include <arpa/inet.h>

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

}  // namespace regen
