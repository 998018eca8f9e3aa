// Fuzz-style robustness of every loader: deterministic pseudo-random bytes, mutations of the
// examples and pathological inputs. Each input must either load or give INVALID_ARGUMENT with a
// message starting with the file name; nothing may crash, hang or throw.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "config/agent_config.h"
#include "config/controller_config.h"
#include "config/service_spec.h"
#include "tests/unit/config/config_test_util.h"

namespace regen {
namespace {

struct Loader {
  const char* file;  // the file name passed to the parser
  std::function<Status(const std::string& text, const std::string& file)> parse;
  std::vector<const char*> examples;  // files in config/examples/ to mutate
};

const std::vector<Loader>& Loaders() {
  static const std::vector<Loader> loaders = {
      {"fuzz/agent.yaml",
       [](const std::string& t, const std::string& f) { return ParseAgentConfig(t, f).status(); },
       {"agent.yaml", "agent-lab.yaml"}},
      {"fuzz/controller.yaml",
       [](const std::string& t, const std::string& f) {
         return ParseControllerConfig(t, f).status();
       },
       {"controller.yaml"}},
      {"fuzz/service.yaml",
       [](const std::string& t, const std::string& f) { return ParseServiceSpec(t, f).status(); },
       {"service.yaml"}},
      {"fuzz/desired.yaml",
       [](const std::string& t, const std::string& f) {
         return ParseDesiredInstances(t, f).status();
       },
       {"desired.yaml"}},
  };
  return loaders;
}

// Feeds inputs to loaders and records the first few violations.
class Checker {
 public:
  void Check(const Loader& loader, const std::string& input, const char* kind) {
    ++runs_;
    Status status = loader.parse(input, loader.file);
    if (status.ok()) {
      ++accepted_;
      return;
    }
    std::string prefix = std::string(loader.file) + ":";
    bool good = status.code() == Code::kInvalidArgument &&
                status.message().size() > prefix.size() && status.message().rfind(prefix, 0) == 0;
    if (!good && ++failures_ <= 10) {
      ADD_FAILURE() << kind << " input to " << loader.file << " gave " << status.ToString()
                    << "\ninput (first 300 bytes): " << input.substr(0, 300);
    }
  }
  void CheckAll(const std::string& input, const char* kind) {
    for (const Loader& loader : Loaders()) Check(loader, input, kind);
  }
  int runs() const { return runs_; }
  int accepted() const { return accepted_; }

 private:
  int runs_ = 0;
  int accepted_ = 0;
  int failures_ = 0;
};

// Deterministic on every platform: raw mt19937_64 output, no std distributions.
class Random {
 public:
  explicit Random(uint64_t seed) : engine_(seed) {}
  size_t Below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(engine_() % n); }
  bool OneIn(size_t n) { return Below(n) == 0; }
  template <typename T>
  const T& Pick(const std::vector<T>& v) {
    return v[Below(v.size())];
  }

 private:
  std::mt19937_64 engine_;
};

const std::string kPunctuation = ":-[]{},&*!|>'\"#?%@`~ \t\n.";

const std::vector<std::string> kTokens = {
    "host_name",
    "name",
    "instances",
    "versions",
    "version",
    "flavor",
    "vcpus",
    "memory_mib",
    "network",
    "subnet",
    "mac",
    "ip",
    "dns",
    "tsig",
    "capacity",
    "ovs",
    "bridge",
    "v1",
    "web-0",
    "10.10.0.0/24",
    "52:54:00:00:00:02",
    "1s",
    "500ms",
    "5",
    "-1",
    "true",
    "false",
    "~",
    "null",
    "''",
    "\"\"",
    "&a",
    "*a",
    "!!str",
    "!!map",
    "- ",
    ": ",
    "\n",
    "\n  ",
    "\n    ",
    "[",
    "]",
    "{",
    "}",
    ", ",
    "# c",
    "|\n  x",
    ">\n  y",
    "---\n",
    "...\n",
    "? ",
    "<<: *a",
    "\t",
    "\"\\x41\"",
    "'it''s'",
    "\xc3\xa9",
    "\xff",
    std::string(1, '\0'),
};

std::string RandomBytes(Random& rng) {
  std::string s(rng.Below(257), '\0');
  for (char& c : s) c = static_cast<char>(rng.Below(256));
  return s;
}

std::string RandomYamlish(Random& rng) {
  std::string s;
  size_t n = rng.Below(200);
  for (size_t i = 0; i < n; ++i) {
    size_t r = rng.Below(10);
    if (r < 5) {
      s += kPunctuation[rng.Below(kPunctuation.size())];
    } else if (r < 9) {
      s += static_cast<char>('a' + rng.Below(26));
    } else {
      s += static_cast<char>('0' + rng.Below(10));
    }
  }
  return s;
}

std::string RandomTokens(Random& rng) {
  std::string s;
  size_t n = rng.Below(40);
  for (size_t i = 0; i < n; ++i) s += rng.Pick(kTokens);
  return s;
}

std::vector<std::string> SplitLines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string::npos) nl = text.size() - 1;
    lines.push_back(text.substr(start, nl - start + 1));
    start = nl + 1;
  }
  return lines;
}

std::string JoinLines(const std::vector<std::string>& lines) {
  std::string s;
  for (const std::string& l : lines) s += l;
  return s;
}

std::string Mutate(Random& rng, std::string text) {
  int ops = 1 + static_cast<int>(rng.Below(4));
  for (int op = 0; op < ops; ++op) {
    switch (rng.Below(8)) {
      case 0:  // flip a bit
        if (!text.empty()) text[rng.Below(text.size())] ^= static_cast<char>(1 << rng.Below(8));
        break;
      case 1:  // replace a byte
        if (!text.empty()) text[rng.Below(text.size())] = static_cast<char>(rng.Below(256));
        break;
      case 2:  // truncate
        text.resize(rng.Below(text.size() + 1));
        break;
      case 3: {  // delete a line
        std::vector<std::string> lines = SplitLines(text);
        if (!lines.empty()) lines.erase(lines.begin() + rng.Below(lines.size()));
        text = JoinLines(lines);
        break;
      }
      case 4: {  // duplicate a line
        std::vector<std::string> lines = SplitLines(text);
        if (!lines.empty()) {
          size_t i = rng.Below(lines.size());
          lines.insert(lines.begin() + i, lines[i]);
        }
        text = JoinLines(lines);
        break;
      }
      case 5:  // insert YAML punctuation
        text.insert(rng.Below(text.size() + 1), 1, kPunctuation[rng.Below(kPunctuation.size())]);
        break;
      case 6:  // insert a token
        text.insert(rng.Below(text.size() + 1), rng.Pick(kTokens));
        break;
      case 7: {  // swap two lines
        std::vector<std::string> lines = SplitLines(text);
        if (lines.size() >= 2)
          std::swap(lines[rng.Below(lines.size())], lines[rng.Below(lines.size())]);
        text = JoinLines(lines);
        break;
      }
    }
  }
  return text;
}

std::vector<std::string> PathologicalInputs() {
  std::vector<std::string> v;
  auto repeat = [](const std::string& s, int n) {
    std::string out;
    out.reserve(s.size() * n);
    for (int i = 0; i < n; ++i) out += s;
    return out;
  };
  // Deep nesting, flow and block.
  v.push_back(repeat("[", 10000));
  v.push_back(repeat("[", 10000) + repeat("]", 10000));
  v.push_back(repeat("{", 10000));
  v.push_back(repeat("{a: ", 10000));
  v.push_back(repeat("- ", 10000));
  v.push_back(repeat("? ", 10000));
  v.push_back("host_name: " + repeat("[", 10000));
  v.push_back("instances:\n  - " + repeat("[", 10000));
  v.push_back(repeat("!!seq [", 5000));
  v.push_back(repeat("&a [", 5000));
  {
    std::string deep;
    for (int i = 0; i < 500; ++i) deep += std::string(i, ' ') + "k" + std::to_string(i) + ":\n";
    v.push_back(deep);
    std::string seqs;
    for (int i = 0; i < 500; ++i) seqs += std::string(2 * i, ' ') + "-\n";
    v.push_back(seqs);
  }
  // Very long scalars and keys.
  v.push_back("host_name: " + std::string(1 << 20, 'a') + "\n");
  v.push_back("name: \"" + repeat("\\x41", 100000) + "\"\n");
  v.push_back(std::string(1 << 20, 'k') + ": 1\n");
  v.push_back("host_name: |\n" + repeat("  line\n", 50000));
  v.push_back(std::string(100000, ' ') + "x");
  v.push_back(std::string(100000, '\n'));
  // Many keys, many items.
  {
    std::string keys;
    for (int i = 0; i < 20000; ++i)
      keys += "k" + std::to_string(i) + ": " + std::to_string(i) + "\n";
    v.push_back(keys);
    std::string items = "instances:\n";
    for (int i = 0; i < 5000; ++i) {
      items += "  - {name: w-" + std::to_string(i) +
               ", service: w, version: v1, resources: {vcpus: 1, memory_mib: 64}}\n";
    }
    v.push_back(items);
  }
  // Anchors and aliases.
  {
    std::string bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
    for (int i = 1; i < 12; ++i) {
      std::string p = "*a" + std::to_string(i - 1);
      bomb += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [" + repeat(p + ", ", 9) +
              p + "]\n";
    }
    v.push_back(bomb);
  }
  v.push_back("a: &x [1, *x]\n");
  v.push_back("a: &x {b: *x}\n");
  v.push_back("host_name: *nothing\n");
  v.push_back("host_name: &h kvm-1\naddress: *h\n");
  v.push_back("&a host_name: &b x\n*a : *b\n");
  v.push_back(
      "name: &n web\nversions: {v1: {}}\nversion: v1\nflavor: &f {vcpus: 1, memory_mib: 64}\n"
      "network: *f\n");
  v.push_back("<<: {host_name: a}\n");
  // Tabs, odd whitespace and line ends.
  v.push_back("\thost_name: a\n");
  v.push_back("host_name:\ta\n");
  v.push_back("ovs:\n\tbridge: br0\n");
  v.push_back("host_name: a\r\naddress: 10.0.0.1\r\n");
  v.push_back("host_name: a\raddress: 10.0.0.1\r");
  v.push_back("\xef\xbb\xbfhost_name: a\n");
  v.push_back("\xef\xbb\xbf");
  // NUL bytes and invalid UTF-8.
  v.push_back(std::string(1, '\0'));
  v.push_back(std::string("host_name: a\0b\n", 15));
  v.push_back(std::string(1000, '\0'));
  v.push_back(
      "\xff\xfe"
      "h\0o\0s\0t\0");
  v.push_back("\xfe\xff\0h\0o");
  v.push_back("host_name: \xff\xff\n");
  v.push_back("host_name: \"\xc3\"\n");
  v.push_back("\xed\xa0\x80: 1\n");
  v.push_back("host_name: \xf4\x90\x80\x80\n");
  // Directives, documents and lone indicators.
  v.push_back("---\n---\n");
  v.push_back("...\n");
  v.push_back("%YAML 1.2\n---\nhost_name: a\n");
  v.push_back("%YAML 9.9\n---\nhost_name: a\n");
  v.push_back("%TAG ! tag:example.com,2000:\n---\n!a b\n");
  v.push_back("!<tag:x> {host_name: a}\n");
  v.push_back("!!binary aGVsbG8=\n");
  v.push_back("? a\n? b\n");
  v.push_back("? - a\n  - b\n: c\n");
  v.push_back(": : :\n");
  v.push_back("- - - -\n");
  for (const char* s : {"'",
                        "\"",
                        "|",
                        ">",
                        "&",
                        "*",
                        "!",
                        "#",
                        "@",
                        "`",
                        "%",
                        "[",
                        "]",
                        "{",
                        "}",
                        ",",
                        "?",
                        ":",
                        "-",
                        "--- |\n",
                        "\"\\",
                        "\"\\u\"",
                        "\"\\U0011ffff\"",
                        "'''",
                        "[,]",
                        "{,}",
                        "[:]",
                        "{:}",
                        "- :",
                        "a: b: c",
                        "a:\n- b\n c",
                        "a: 'multi\n\n line'",
                        "a: \"\\\n\"",
                        "? |\n x\n: y"}) {
    v.push_back(s);
  }
  return v;
}

TEST(ConfigFuzzTest, NoInputCrashesAndEveryErrorNamesTheFile) {
  auto start = std::chrono::steady_clock::now();
  Checker checker;
  Random rng(0x5eed'c0f1'9u);

  // (a) Pseudo-random inputs, each to every loader.
  for (int i = 0; i < 3000; ++i) {
    switch (i % 3) {
      case 0:
        checker.CheckAll(RandomBytes(rng), "random-bytes");
        break;
      case 1:
        checker.CheckAll(RandomYamlish(rng), "random-yamlish");
        break;
      case 2:
        checker.CheckAll(RandomTokens(rng), "random-tokens");
        break;
    }
  }

  // (b) Mutations of the valid examples, each to its own loader.
  int mutants = 0;
  for (const Loader& loader : Loaders()) {
    for (const char* example : loader.examples) {
      std::string text =
          testing::ReadWholeFile(testing::ConfigSourceDir() + "/config/examples/" + example);
      ASSERT_FALSE(text.empty()) << example;
      ASSERT_TRUE(loader.parse(text, loader.file).ok()) << example;
      for (int i = 0; i < 600; ++i) {
        checker.Check(loader, Mutate(rng, text), "mutated-example");
        ++mutants;
      }
    }
  }

  // (c) Pathological inputs, each to every loader.
  std::vector<std::string> pathological = PathologicalInputs();
  for (const std::string& input : pathological) checker.CheckAll(input, "pathological");

  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "config fuzz: " << checker.runs() << " parses (" << mutants << " mutants, "
            << pathological.size() << " pathological inputs x " << Loaders().size() << " loaders), "
            << checker.accepted() << " accepted, " << seconds << " s\n";
  RecordProperty("seconds", std::to_string(seconds));
}

}  // namespace
}  // namespace regen
