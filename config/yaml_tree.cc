// The one file of Regen that includes yaml-cpp. It drives yaml-cpp's event parser and builds a
// YamlNode tree, so that yaml-cpp's exceptions, its lack of duplicate-key checks and its deep
// recursion on nested input stay here.
#include "config/yaml_tree.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

#include <cstdint>
#include <exception>
#include <new>
#include <optional>
#include <sstream>
#include <unordered_map>
#include <utility>

#include "common/names.h"

namespace regen {

const YamlMapEntry* YamlNode::FindEntry(std::string_view key) const {
  for (const YamlMapEntry& e : entries) {
    if (e.key.value == key) return &e;
  }
  return nullptr;
}

const YamlNode* YamlNode::Find(std::string_view key) const {
  const YamlMapEntry* e = FindEntry(key);
  return e == nullptr ? nullptr : &e->value;
}

const char* KindName(YamlNode::Kind kind) {
  switch (kind) {
    case YamlNode::Kind::kNull:
      return "an empty value";
    case YamlNode::Kind::kScalar:
      return "a scalar";
    case YamlNode::Kind::kSequence:
      return "a list";
    case YamlNode::Kind::kMap:
      return "a map";
  }
  return "?";
}

std::string JoinPath(std::string_view parent, std::string_view key) {
  bool plain = !key.empty();
  for (unsigned char c : key) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.';
    if (!ok) plain = false;
  }
  std::string out(parent);
  if (!out.empty()) out += '.';
  out += plain ? std::string(key) : QuoteValue(key);
  return out;
}

std::string IndexPath(std::string_view parent, size_t index) {
  return std::string(parent) + "[" + std::to_string(index) + "]";
}

namespace {

// Thrown by the tree builder (from inside yaml-cpp's parser) to stop parsing; caught below.
struct BuildError {
  int line;    // 1-based
  int column;  // 1-based
  std::string message;
};

std::string Located(std::string_view path, std::string_view what) {
  if (path.empty()) return std::string(what);
  return std::string(path) + ": " + std::string(what);
}

size_t CountNodes(const YamlNode& node) {
  size_t n = 1;
  for (const YamlNode& item : node.items) n += CountNodes(item);
  for (const YamlMapEntry& e : node.entries) n += 1 + CountNodes(e.value);
  return n;
}

// The text a node holds: scalars and map keys, in bytes (what an alias copies besides nodes).
size_t CountBytes(const YamlNode& node) {
  size_t n = node.value.size();
  for (const YamlNode& item : node.items) n += CountBytes(item);
  for (const YamlMapEntry& e : node.entries) n += e.key.value.size() + CountBytes(e.value);
  return n;
}

// What an anchor's node costs each time an alias copies it.
struct AnchorCost {
  size_t nodes = 0;
  size_t bytes = 0;
};

// Builds the tree from yaml-cpp's events; throws BuildError to abort the parse.
class TreeBuilder : public YAML::EventHandler {
 public:
  TreeBuilder(std::string_view text, const YamlLimits& limits) : text_(text), limits_(limits) {}

  bool has_root() const { return root_.has_value(); }
  YamlNode TakeRoot() { return std::move(*root_); }
  // Where the parser was when it failed, for errors without a position.
  int last_line() const { return last_line_; }
  int last_column() const { return last_column_; }
  // The field path being built, e.g. "versions.v1.image" or "instances[2]".
  std::string Path() const {
    std::string path;
    for (const Frame& f : stack_) {
      if (f.node.is_sequence()) {
        path = IndexPath(path, f.node.items.size());
      } else if (f.has_key) {
        path = JoinPath(path, f.key.value);
      }
    }
    return path;
  }

  void OnDocumentStart(const YAML::Mark& mark) override { Touch(mark); }
  void OnDocumentEnd() override {}

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    Touch(mark);
    YamlNode node = At(YamlNode::Kind::kNull, mark);
    // yaml-cpp puts an empty value at the next token (often the next line); Add() moves it to
    // its key. An explicit "~" or "null" keeps its own position.
    size_t at = static_cast<size_t>(mark.pos) + Offset();
    bool explicit_null = mark.pos >= 0 && at < text_.size() &&
                         (text_[at] == '~' || text_[at] == 'n' || text_[at] == 'N');
    Add(std::move(node), anchor, /*empty=*/!explicit_null);
  }

  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    Touch(mark);
    auto it = anchors_.find(anchor);
    if (it == anchors_.end()) {
      throw BuildError{mark.line + 1, mark.column + 1,
                       Located(Path(),
                               "this alias refers to a map or list that contains it "
                               "(recursive aliases are not supported)")};
    }
    alias_nodes_ += it->second.second.nodes;
    alias_bytes_ += it->second.second.bytes;
    if (alias_nodes_ > limits_.max_alias_nodes) {
      throw BuildError{
          mark.line + 1, mark.column + 1,
          Located(Path(), "aliases expand to more than " + std::to_string(limits_.max_alias_nodes) +
                              " nodes (write the values out instead of nesting "
                              "aliases)")};
    }
    if (alias_bytes_ > limits_.max_alias_bytes) {
      throw BuildError{
          mark.line + 1, mark.column + 1,
          Located(Path(), "aliases expand to more than " + std::to_string(limits_.max_alias_bytes) +
                              " bytes of text (write the values out instead of "
                              "repeating a large anchor)")};
    }
    YamlNode copy = it->second.first;
    copy.line = mark.line + 1;
    copy.column = mark.column + 1;
    Add(std::move(copy), YAML::NullAnchor, false);
  }

  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    Touch(mark);
    YamlNode node = At(YamlNode::Kind::kScalar, mark);
    node.value = value;
    node.quoted = tag != "?";
    if (node.quoted) CheckQuoteClosed(mark);
    Add(std::move(node), anchor, false);
  }

  void OnSequenceStart(const YAML::Mark& mark, const std::string& /*tag*/, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value /*style*/) override {
    Open(YamlNode::Kind::kSequence, mark, anchor);
  }
  void OnSequenceEnd() override { Close(); }

  void OnMapStart(const YAML::Mark& mark, const std::string& /*tag*/, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value /*style*/) override {
    Open(YamlNode::Kind::kMap, mark, anchor);
  }
  void OnMapEnd() override { Close(); }

 private:
  struct Frame {
    YamlNode node;
    YAML::anchor_t anchor = YAML::NullAnchor;
    bool has_key = false;
    YamlNode key;
    std::unordered_map<std::string, size_t> key_index;  // key -> index in node.entries
  };

  void Touch(const YAML::Mark& mark) {
    if (mark.is_null()) return;
    last_line_ = mark.line + 1;
    last_column_ = mark.column + 1;
  }

  // yaml-cpp accepts a quoted scalar whose closing quote is missing and silently takes the rest
  // of the file as its text (hiding every setting after it), so look for the closing quote.
  void CheckQuoteClosed(const YAML::Mark& mark) const {
    if (mark.pos < 0) return;
    size_t p = static_cast<size_t>(mark.pos) + Offset();
    auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
    while (p < text_.size() && (text_[p] == '&' || text_[p] == '!')) {  // anchor or tag first
      while (p < text_.size() && !space(text_[p])) ++p;
      while (p < text_.size() && space(text_[p])) ++p;
    }
    if (p >= text_.size() || (text_[p] != '"' && text_[p] != '\'')) return;  // | or > scalar
    char quote = text_[p];
    for (size_t q = p + 1; q < text_.size(); ++q) {
      if (quote == '"' && text_[q] == '\\') {
        ++q;
      } else if (text_[q] == quote) {
        if (quote == '\'' && q + 1 < text_.size() && text_[q + 1] == '\'') {
          ++q;  // '' is an escaped quote
        } else {
          return;
        }
      }
    }
    throw BuildError{mark.line + 1, mark.column + 1,
                     Located(Path(), std::string("this quoted value has no closing ") + quote +
                                         " (add it; otherwise the rest of the file would be "
                                         "read as part of the value)")};
  }

  // yaml-cpp's positions do not count a UTF-8 byte order mark.
  size_t Offset() const { return text_.substr(0, 3) == "\xef\xbb\xbf" ? 3 : 0; }

  static YamlNode At(YamlNode::Kind kind, const YAML::Mark& mark) {
    YamlNode node;
    node.kind = kind;
    node.line = mark.line + 1;
    node.column = mark.column + 1;
    return node;
  }

  void Open(YamlNode::Kind kind, const YAML::Mark& mark, YAML::anchor_t anchor) {
    Touch(mark);
    if (static_cast<int>(stack_.size()) >= limits_.max_depth) {
      throw BuildError{mark.line + 1, mark.column + 1,
                       Located(Path(), "maps and lists are nested more than " +
                                           std::to_string(limits_.max_depth) +
                                           " levels deep (Regen's files need a handful; check "
                                           "that this is the right file and that every '[' and "
                                           "'{' is closed)")};
    }
    Frame frame;
    frame.node = At(kind, mark);
    frame.anchor = anchor;
    stack_.push_back(std::move(frame));
  }

  void Close() {
    Frame frame = std::move(stack_.back());
    stack_.pop_back();
    Add(std::move(frame.node), frame.anchor, false);
  }

  void Add(YamlNode node, YAML::anchor_t anchor, bool empty) {
    if (anchor != YAML::NullAnchor) {
      anchors_[anchor] = {node, AnchorCost{CountNodes(node), CountBytes(node)}};
    }
    if (stack_.empty()) {
      root_ = std::move(node);
      return;
    }
    Frame& f = stack_.back();
    if (f.node.is_sequence()) {
      f.node.items.push_back(std::move(node));
      return;
    }
    if (!f.has_key) {
      if (!node.is_scalar()) {
        throw BuildError{
            node.line, node.column,
            Located(Path(), std::string("map keys must be plain text, got ") + KindName(node.kind) +
                                " as a key (check the indentation and the ':' "
                                "after each key)")};
      }
      auto [it, inserted] = f.key_index.emplace(node.value, f.node.entries.size());
      if (!inserted) {
        const YamlNode& first = f.node.entries[it->second].key;
        throw BuildError{node.line, node.column,
                         JoinPath(Path(), node.value) + ": duplicate key " +
                             QuoteValue(node.value) + " (first set at line " +
                             std::to_string(first.line) + ", column " +
                             std::to_string(first.column) + "; each key may appear only once)"};
      }
      f.key = std::move(node);
      f.has_key = true;
      return;
    }
    if (empty) {
      node.line = f.key.line;
      node.column = f.key.column;
    }
    f.node.entries.push_back(YamlMapEntry{std::move(f.key), std::move(node)});
    f.key = YamlNode();
    f.has_key = false;
  }

  std::string_view text_;
  YamlLimits limits_;
  std::vector<Frame> stack_;
  std::optional<YamlNode> root_;
  std::unordered_map<YAML::anchor_t, std::pair<YamlNode, AnchorCost>> anchors_;
  size_t alias_nodes_ = 0;
  size_t alias_bytes_ = 0;
  int last_line_ = 1;
  int last_column_ = 1;
};

// Stops at the start of a second document.
class SecondDocumentDetector : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override {
    throw BuildError{mark.line + 1, mark.column + 1,
                     "a second YAML document starts here ('---'); put all settings into one "
                     "document"};
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

// Refuses NUL bytes and invalid UTF-8 before yaml-cpp sees them (it reads past neither sanely).
std::optional<BuildError> CheckBytes(std::string_view text) {
  int line = 1;
  int column = 1;
  size_t i = 0;
  while (i < text.size()) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == 0) {
      return BuildError{line, column,
                        "NUL byte in the file (is this a text file? YAML files are UTF-8 text)"};
    }
    size_t len = 1;
    uint32_t min = 0;
    uint32_t cp = c;
    if (c < 0x80) {
      len = 1;
    } else if ((c & 0xe0) == 0xc0) {
      len = 2, min = 0x80, cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3, min = 0x800, cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4, min = 0x10000, cp = c & 0x07;
    } else {
      len = 0;
    }
    bool ok = len > 0 && i + len <= text.size();
    for (size_t k = 1; ok && k < len; ++k) {
      unsigned char cc = static_cast<unsigned char>(text[i + k]);
      if ((cc & 0xc0) != 0x80) ok = false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if (ok && len > 1 && (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))) {
      ok = false;
    }
    if (!ok) {
      return BuildError{
          line, column,
          "invalid UTF-8 byte " + QuoteValue(text.substr(i, 1)) + " (save the file as UTF-8)"};
    }
    if (c == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
    i += len;
  }
  return std::nullopt;
}

// The text of line `line` (1-based), for hints.
std::string_view LineOf(std::string_view text, int line) {
  size_t start = 0;
  for (int l = 1; l < line; ++l) {
    size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) return {};
    start = nl + 1;
  }
  size_t end = text.find('\n', start);
  return text.substr(start, end == std::string_view::npos ? end : end - start);
}

std::string SyntaxHint(std::string_view text, int line) {
  std::string_view l = LineOf(text, line);
  for (char c : l) {
    if (c == '\t') return " (a tab is used for indentation near here: YAML needs spaces)";
    if (c != ' ') break;
  }
  return " (check the indentation, and quote values that contain \": \" or \" #\" or start "
         "with one of [ ] { } & * ! | > ' \" % @ `)";
}

Status ErrorAt(const std::string& file, int line, int column, const std::string& message) {
  return InvalidArgument(file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " +
                         message);
}

}  // namespace

Result<YamlNode> ParseYaml(std::string_view text, const std::string& file_name,
                           const YamlLimits& limits) {
  if (text.size() > limits.max_input_bytes) {
    return ErrorAt(file_name, 1, 1,
                   "the document is " + std::to_string(text.size()) + " bytes, more than " +
                       std::to_string(limits.max_input_bytes) +
                       " (Regen's files are a few kilobytes; check that this is the right file)");
  }
  if (std::optional<BuildError> bad = CheckBytes(text)) {
    return ErrorAt(file_name, bad->line, bad->column, bad->message);
  }
  std::istringstream stream{std::string(text)};
  TreeBuilder builder(text, limits);
  try {
    YAML::Parser parser(stream);
    if (!parser.HandleNextDocument(builder) || !builder.has_root()) {
      YamlNode empty;
      return empty;
    }
    SecondDocumentDetector detector;
    parser.HandleNextDocument(detector);
    return builder.TakeRoot();
  } catch (const BuildError& e) {
    return ErrorAt(file_name, e.line, e.column, e.message);
  } catch (const YAML::Exception& e) {
    int line = e.mark.is_null() ? builder.last_line() : e.mark.line + 1;
    int column = e.mark.is_null() ? builder.last_column() : e.mark.column + 1;
    std::string what = e.msg.empty() ? std::string("unreadable YAML") : e.msg;
    if (what == "bad file") what = "the document is too deeply nested or malformed";
    std::string path = builder.Path();
    std::string where = path.empty() ? "" : " in " + path;
    return ErrorAt(file_name, line, column,
                   "YAML syntax error" + where + ": " + what + SyntaxHint(text, line));
  } catch (const std::bad_alloc&) {
    return ErrorAt(file_name, builder.last_line(), builder.last_column(),
                   "out of memory while parsing YAML (is the file far too large?)");
  } catch (const std::exception& e) {
    return ErrorAt(file_name, builder.last_line(), builder.last_column(),
                   std::string("cannot parse YAML: ") + e.what());
  } catch (...) {
    return ErrorAt(file_name, builder.last_line(), builder.last_column(), "cannot parse YAML");
  }
}

}  // namespace regen
