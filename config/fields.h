// Typed, validated reading of settings from a YamlNode tree, shared by Regen's config loaders.
// Errors read "file:line:column: field.path: what is wrong "value" (what to do)". Pure; any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/model.h"
#include "common/names.h"
#include "common/status.h"
#include "config/yaml_tree.h"

namespace regen {

enum class Need { kOptional, kRequired };

// The whole content of a config file; INVALID_ARGUMENT "cannot read PATH: strerror" otherwise.
Result<std::string> ReadConfigFile(const std::string& path);

// How a message shows a value: the quoted text, or "a map", "a list", "an empty value".
std::string DescribeValue(const YamlNode& node);

// INVALID_ARGUMENT "file:line:column: path: what" at `at`'s position ("path: " left out if empty).
Status ErrorAt(const std::string& file, const YamlNode& at, std::string_view path,
               std::string_view what);

// "500ms", "2s", "1m", "1h": a whole number and a unit. Anything else (plain numbers too) is
// nullopt.
std::optional<std::chrono::milliseconds> ParseDuration(std::string_view text);
// The shortest exact form: "2500ms", "2s", "1m", "1h".
std::string FormatDuration(std::chrono::milliseconds d);

bool IsAbsolutePath(std::string_view path);  // "/..." without control characters
// IsValidDnsName, IsValidZoneName and IsValidHostPort: common/names.h.

// Inclusive bounds for one of the four resource fields; kRequired makes it mandatory.
struct ResourceRule {
  int64_t min = 0;
  int64_t max = std::numeric_limits<int64_t>::max();
  Need need = Need::kOptional;
};
struct ResourceRules {
  ResourceRule vcpus, memory_mib, disk_gib, bandwidth_mbps;
};

// A YAML map being read as settings. Opening it checks its keys against the allowed ones, so
// every setting a loader does not know is reported. Holds pointers into the tree: the tree and the
// file name must outlive it.
class FieldMap {
 public:
  // The document root: an empty file or a document that is not a map is an error. `what` names
  // the kind of file in messages, e.g. "agent configuration".
  static Result<FieldMap> Root(const std::string& file, const YamlNode& root, std::string_view what,
                               std::vector<std::string_view> allowed);
  // `node`, found at `path`, must be a map (an empty value counts as an empty map) whose keys are
  // all in `allowed`.
  static Result<FieldMap> Open(const std::string& file, const YamlNode& node, std::string path,
                               std::vector<std::string_view> allowed);

  const std::string& file() const { return *file_; }
  const std::string& path() const { return path_; }
  const YamlNode& node() const { return *node_; }
  bool Has(std::string_view key) const { return Find(key) != nullptr; }
  // The value of `key`, or nullptr.
  const YamlNode* Find(std::string_view key) const;
  // "network" + "subnet" -> "network.subnet".
  std::string PathOf(std::string_view key) const { return JoinPath(path_, key); }

  // An error at the value of `key` (at this map when `key` is absent), naming its path.
  Status ErrorAt(std::string_view key, std::string_view what) const;
  // "key: required field is missing": at this map's position.
  Status Missing(std::string_view key) const;

  // Text; an empty value gives "". Maps and lists are errors.
  Status GetString(std::string_view key, std::string* out, Need need = Need::kOptional) const;
  // A DNS zone ending with '.' (common/names IsValidZoneName); "" when optional and absent.
  Status GetZone(std::string_view key, std::string* out, Need need) const;
  // Text that must not be empty.
  Status GetNonEmptyString(std::string_view key, std::string* out,
                           Need need = Need::kOptional) const;
  // A decimal integer within [min, max].
  Status GetInt(std::string_view key, int64_t min, int64_t max, int64_t* out,
                Need need = Need::kOptional) const;
  // true or false (also True/TRUE/False/FALSE).
  Status GetBool(std::string_view key, bool* out) const;
  // A duration within [min, max] (see ParseDuration).
  Status GetDuration(std::string_view key, std::chrono::milliseconds min,
                     std::chrono::milliseconds max, std::chrono::milliseconds* out) const;
  // A service, instance or host name (see common/names.h).
  Status GetName(std::string_view key, std::string* out, Need need = Need::kOptional) const;
  // One of `values`.
  Status GetEnum(std::string_view key, const std::vector<std::string_view>& values,
                 std::string* out) const;
  // An absolute path of at most `max_len` bytes; "" only with `allow_empty`.
  Status GetAbsolutePath(std::string_view key, std::string* out, bool allow_empty = false,
                         size_t max_len = 4095, Need need = Need::kOptional) const;
  // A dotted IPv4 address; "" only with `allow_empty`.
  Status GetIpv4(std::string_view key, std::string* out, bool allow_empty = false) const;
  // "host:port" (see IsValidHostPort); "" only with `allow_empty`.
  Status GetHostPort(std::string_view key, std::string* out, bool allow_empty,
                     bool ip_only = false) const;

  // A nested map of settings; *out stays nullopt when the key is absent.
  Status GetMap(std::string_view key, std::vector<std::string_view> allowed,
                std::optional<FieldMap>* out, Need need = Need::kOptional) const;
  // A nested map with free keys (checked by the caller); *out is nullptr when absent or empty.
  Status GetDict(std::string_view key, const YamlNode** out, Need need = Need::kOptional) const;
  // A list; *out is nullptr when absent or empty.
  Status GetList(std::string_view key, const YamlNode** out, Need need = Need::kOptional) const;
  // A map of text to text, e.g. metadata.
  Status GetStringMap(std::string_view key, std::map<std::string, std::string>* out) const;
  // A map {vcpus, memory_mib, disk_gib, bandwidth_mbps} within `rules`.
  Status GetResources(std::string_view key, const ResourceRules& rules, Resources* out,
                      Need need = Need::kOptional) const;

 private:
  FieldMap(const std::string* file, const YamlNode* node, std::string path)
      : file_(file), node_(node), path_(std::move(path)) {}
  // The scalar text of `key` (nullopt when absent); an error for maps and lists.
  Result<std::optional<std::string>> Scalar(std::string_view key, Need need,
                                            std::string_view expected) const;

  const std::string* file_;
  const YamlNode* node_;
  std::string path_;
};

}  // namespace regen
