// YAML text -> Regen's own tree of maps, lists and scalars, each with its 1-based line:column.
// The only code that touches yaml-cpp; it never throws. Pure functions and values; any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace regen {

struct YamlMapEntry;

// One node of a parsed YAML document. Aliases (*name) are expanded into copies of their anchor.
struct YamlNode {
  enum class Kind {
    kNull,      // an empty value ("key:"), "~" or "null"
    kScalar,    // text; numbers and booleans are scalars too, the loaders interpret them
    kSequence,  // a list: "- a" lines or [a, b]
    kMap,       // "key: value" lines or {key: value}
  };

  Kind kind = Kind::kNull;
  int line = 1;                       // 1-based
  int column = 1;                     // 1-based
  std::string value;                  // kScalar: the text, quotes and escapes resolved
  bool quoted = false;                // kScalar: written in quotes or as a block scalar (| or >)
  std::vector<YamlNode> items;        // kSequence: the items in file order
  std::vector<YamlMapEntry> entries;  // kMap: the entries in file order; keys are unique scalars

  bool is_null() const { return kind == Kind::kNull; }
  bool is_scalar() const { return kind == Kind::kScalar; }
  bool is_sequence() const { return kind == Kind::kSequence; }
  bool is_map() const { return kind == Kind::kMap; }
  // kMap: the value under `key`, or nullptr.
  const YamlNode* Find(std::string_view key) const;
  const YamlMapEntry* FindEntry(std::string_view key) const;
};

struct YamlMapEntry {
  YamlNode key;  // always a kScalar
  // For an empty value ("key:" and nothing after it) the position is the key's position.
  YamlNode value;
};

// "a map", "a list", "an empty value" or "a scalar": for messages.
const char* KindName(YamlNode::Kind kind);

// Field paths: JoinPath("network", "subnet") = "network.subnet", IndexPath("instances", 3) =
// "instances[3]". Keys that are not plain words ([A-Za-z0-9_.-]+) are quoted.
std::string JoinPath(std::string_view parent, std::string_view key);
std::string IndexPath(std::string_view parent, size_t index);

struct YamlLimits {
  int max_depth = 64;                // nested maps/lists; deeper documents are refused
  size_t max_alias_nodes = 100'000;  // nodes created by expanding aliases (billion laughs guard)
  // Text (scalars and keys) copied by expanding aliases: one large anchor aliased many times
  // stays under max_alias_nodes and still fills memory (issue 15, finding 10).
  size_t max_alias_bytes = size_t{4} << 20;
  size_t max_input_bytes = size_t{4} << 20;  // the document itself
};

// Parses one YAML document. An empty document (no text, or only comments) gives a kNull root at
// 1:1. Errors are INVALID_ARGUMENT "file_name:line:column: message": YAML syntax errors, more
// than one document, duplicate or non-scalar map keys, NUL bytes, invalid UTF-8, nesting deeper
// than limits.max_depth, aliases that refer to themselves or expand too much (nodes or bytes), a
// document larger than limits.max_input_bytes.
Result<YamlNode> ParseYaml(std::string_view text, const std::string& file_name,
                           const YamlLimits& limits = YamlLimits());

}  // namespace regen
