// TSIG keys for signed DNS updates: the key's name, algorithm and base64 secret, read from a
// secret file. Pure parsing plus one file read; any thread.
#pragma once

#include <string>

#include "common/status.h"

namespace regen::dns {

struct TsigKey {
  std::string name;       // absolute, lower case, with the final '.': "regen-key."
  std::string algorithm;  // hmac-sha256 (default), hmac-sha512 or hmac-sha1
  std::string secret;     // base64, as the DNS server has it
  bool operator==(const TsigKey&) const = default;
};

// Parses a TSIG secret file. Three forms are accepted, so the file the DNS server uses can be
// shared as it is:
//  1. knot (`keymgr -t NAME hmac-sha256` output, or a knot.conf `key:` section):
//       key:
//         - id: regen-key.
//           algorithm: hmac-sha256
//           secret: c2VjcmV0...
//  2. BIND (`tsig-keygen -a hmac-sha256 NAME` output):
//       key "regen-key" { algorithm hmac-sha256; secret "c2VjcmV0..."; };
//  3. the bare base64 secret on one line.
// Lines starting with '#' (and, in BIND files, "//" lines) are comments. When the file names
// keys, the one named `key_name` is used and its algorithm must equal `algorithm`; a mismatch is
// an error naming the file and both values (a key the server would refuse). Errors are
// INVALID_ARGUMENT naming `file_name`.
Result<TsigKey> ParseTsigKeyFile(const std::string& text, const std::string& file_name,
                                 const std::string& key_name, const std::string& algorithm);

// Reads `path` and parses it as above. NOT_FOUND / FAILED_PRECONDITION when it cannot be read.
Result<TsigKey> LoadTsigKey(const std::string& path, const std::string& key_name,
                            const std::string& algorithm);

// "regen-key" or "Regen-Key." -> "regen-key.".
std::string AbsoluteKeyName(const std::string& name);

}  // namespace regen::dns
