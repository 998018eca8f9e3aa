// End to end inside real guests: two hosts on qemu:///embed (TCG), each VM boots the tiny guest of
// scripts/guest-image.sh (Debian's kernel, a busybox initramfs whose init copies every line of
// its org.regen.events.0 port to the serial console as "regen-event: <line>"). After kill -9 of
// one VM's qemu and its heal on the other host:
//  - the peer's guest has read the failure, reallocation and topology events from its channel;
//  - the healed guest has read the failure and reallocation of its own heal, which reached its new
//    host before its domain (and channel) existed;
//  - each guest read exactly the lines of its instance's event file on its host, in order, once.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "tests/e2e/lab_harness.h"

namespace regen::testing {
namespace {

using std::chrono::milliseconds;

constexpr char kMarker[] = "regen-guest: reading";
constexpr char kPrefix[] = "regen-event: ";

std::string GuestDir() { return REGEN_GUEST_DIR; }

struct GuestLog {
  int boots = 0;                    // "regen-guest: reading" lines
  std::vector<std::string> events;  // event lines read by the last boot
};

// Reads a guest's serial log (every boot of the instance appends to it).
GuestLog ReadGuestLog(const std::string& path) {
  GuestLog out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find(kMarker) != std::string::npos) {
      // A boot killed by kill -9 can stop in the middle of an event line: the next boot's marker
      // then ends that cut line, which belongs to the boot that died and is not an event read.
      ++out.boots;
      out.events.clear();
      continue;
    }
    size_t at = line.find(kPrefix);
    if (at != std::string::npos) out.events.push_back(line.substr(at + sizeof(kPrefix) - 1));
  }
  return out;
}

std::vector<std::string> FileLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

bool HasEvent(const std::vector<std::string>& lines, const std::string& kind,
              const std::string& instance, int64_t generation = 0) {
  for (const auto& line : lines) {
    auto e = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!e.is_object() || e.value("event", "") != kind) continue;
    if (kind == "topology") {
      for (const auto& i : e.value("instances", nlohmann::json::array())) {
        if (i.value("name", "") == instance) return true;
      }
      continue;
    }
    if (e.value("instance", "") != instance) continue;
    if (generation != 0 && e.value("generation", int64_t{0}) != generation) continue;
    return true;
  }
  return false;
}

TEST(GuestEventsQemuE2eTest, GuestsReadTheirEventsFromTheChannelAcrossAHeal) {
  if (!HaveProgram("qemu-system-x86_64"))
    REGEN_REQUIRE_COMPONENT("qemu-system-x86_64", "apt-get install qemu-system-x86");
  if (!std::filesystem::exists(GuestDir() + "/vmlinux") ||
      !std::filesystem::exists(GuestDir() + "/initrd.img")) {
    REGEN_REQUIRE_COMPONENT("the test guest in " + GuestDir(),
                            "scripts/guest-image.sh " + GuestDir() + " (install-deps runs it)");
  }
  LabOptions options;
  options.driver = "qemu";
  options.hosts = 2;
  options.poll_interval = "500ms";
  Lab lab(options);

  // One serial log per instance name: a healed instance's new VM appends to it.
  const std::string tmpl = lab.dir() + "/guest.xml";
  {
    std::ofstream out(tmpl);
    out << "<domain type='qemu'>\n  <name>{{name}}</name>\n  <uuid>{{uuid}}</uuid>\n"
        << "  <metadata>{{metadata}}</metadata>\n"
        << "  <memory unit='KiB'>{{memory_kib}}</memory>\n  <vcpu>{{vcpus}}</vcpu>\n"
        << "  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n"
        << "    <kernel>" << GuestDir() << "/vmlinux</kernel>\n"
        << "    <initrd>" << GuestDir() << "/initrd.img</initrd>\n"
        << "    <cmdline>console=ttyS0 quiet loglevel=1 panic=-1</cmdline>\n  </os>\n"
        << "  <on_crash>destroy</on_crash>\n  <devices>\n"
        << "    <serial type='file'>\n      <source path='" << lab.dir()
        << "/serial-{{name}}.log' append='on'/>\n      <target port='0'/>\n    </serial>\n"
        << "    <memballoon model='none'/>\n{{events_channel}}  </devices>\n</domain>\n";
  }
  auto serial = [&](const std::string& name) { return lab.dir() + "/serial-" + name + ".log"; };

  lab.StartAll();
  std::string spec = Lab::ServiceYaml("web", 2, 2, 128);
  const std::string v1 = "  v1:\n";
  spec.insert(spec.find(v1) + v1.size(), "    domain_template: " + tmpl + "\n");
  ASSERT_NO_FATAL_FAILURE(lab.Apply(spec));
  ASSERT_TRUE(lab.WaitAllRunning(2, milliseconds(120000))) << lab.Logs();
  int64_t started = WallMillis();
  // Both guests booted and opened their port.
  ASSERT_TRUE(WaitFor(
      [&] {
        return ReadGuestLog(serial("web-0")).boots == 1 && ReadGuestLog(serial("web-1")).boots == 1;
      },
      milliseconds(180000)))
      << "serial web-0:\n"
      << Tail(serial("web-0"), 20) << "\nserial web-1:\n"
      << Tail(serial("web-1"), 20) << lab.Logs();
  std::printf("FIGURE test guest boot (2 at once, TCG): %lld ms from running to port open\n",
              static_cast<long long>(WallMillis() - started));

  auto victim = *lab.Instance("web-0");
  auto peer = *lab.Instance("web-1");
  int64_t killed = lab.KillQemu("web-0");
  ASSERT_GT(killed, 0) << "no qemu of web-0 on " << victim.host();
  ASSERT_TRUE(lab.WaitRunningGeneration("web-0", victim.generation() + 1, milliseconds(60000)))
      << lab.Logs();
  auto healed = *lab.Instance("web-0");
  EXPECT_NE(healed.host(), victim.host());

  // The peer's guest reads all three kinds of event about the heal.
  ASSERT_TRUE(WaitFor(
      [&] {
        auto log = ReadGuestLog(serial("web-1"));
        return HasEvent(log.events, "failure", "web-0") &&
               HasEvent(log.events, "reallocation", "web-0", healed.generation()) &&
               HasEvent(log.events, "topology", "web-0");
      },
      milliseconds(30000)))
      << "the peer's guest read:\n"
      << Tail(serial("web-1"), 30) << lab.Logs();
  std::printf(
      "FIGURE qemu kill -9 -> the peer's guest has read failure+reallocation+topology: "
      "%lld ms\n",
      static_cast<long long>(WallMillis() - killed));

  // The healed guest boots again and reads the failure and reallocation of its own heal.
  ASSERT_TRUE(WaitFor(
      [&] {
        auto log = ReadGuestLog(serial("web-0"));
        return log.boots == 2 && HasEvent(log.events, "failure", "web-0") &&
               HasEvent(log.events, "reallocation", "web-0", healed.generation());
      },
      milliseconds(180000)))
      << "the healed guest read:\n"
      << Tail(serial("web-0"), 30) << lab.Logs();
  std::printf(
      "FIGURE qemu kill -9 -> the healed guest (booted again) has read its own heal: "
      "%lld ms\n",
      static_cast<long long>(WallMillis() - killed));

  // Each guest read exactly its event file on its host: every line, in order, once. Compared once
  // the two agree (the last lines may still be on their way) or after 10 s.
  for (const auto& [name, host] : {std::pair{std::string("web-1"), peer.host()},
                                   std::pair{std::string("web-0"), healed.host()}}) {
    const std::string file = lab.StateDir(Lab::HostNumber(host)) + "/events/" + name + ".jsonl";
    // name captured by an init-capture: clang 14 cannot capture a structured binding.
    WaitFor([&, &name = name] { return ReadGuestLog(serial(name)).events == FileLines(file); },
            milliseconds(10000));
    EXPECT_EQ(ReadGuestLog(serial(name)).events, FileLines(file))
        << name << "'s guest on " << host << " vs " << file;
  }
}

}  // namespace
}  // namespace regen::testing
