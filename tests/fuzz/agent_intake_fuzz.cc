// libFuzzer target: the agent's intake of what the controller sends. The input is a
// regen.fuzz.AgentIntakeInput (fuzz_input.proto: a sequence of ControllerMessages, mutated by
// proto_mutator.h); each message goes where ControllerLink::OnControllerMessage sends it: a desired
// set (instances with names, image and template paths, health checks; images to stage) to the real
// Agent in controller mode (converted as ControllerLink::OnDesired does: DesiredFromProto, which
// clamps health checks), a topology to the real NetworkAgent (over the FakeVSwitch), a notification
// to the real EventDelivery (the daemon's observer). The hypervisor is the FakeHypervisor, qemu-img
// the FakeCommandRunner (it writes the overlay it is asked for), health probes a prober that never
// connects: no libvirt, no qemu, no subprocess.
//
// The file tree: <root>/a/b/c/state is the state directory, <root>/images the only image
// directory (images, a template, a symlink out of it, a directory symlink out of it), and files
// that must stay as they are under <root>/outside and next to each level above the state
// directory (four "../" from the state directory reach <root>). In every string of the input
// "@ROOT@" stands for <root>. After each message (once the agent reconciled) and at the end (once
// the agent, its stager and its prober stopped): nothing under <root> but the state directory was
// created, written, removed or replaced; every qemu-img target is under the state directory and
// every backing file under it or the image directory; every path in a defined domain's XML is
// under one of them; no crash, no exception. Fuzzer thread only (the agent runs its own threads).
#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include <google/protobuf/stubs/logging.h>

#include "agent/agent.h"
#include "agent/agent_report.h"
#include "agent/event_delivery.h"
#include "agent/network_agent.h"
#include "common/log.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_command_runner.h"
#include "tests/fakes/fake_hypervisor.h"
#include "tests/fakes/fake_vswitch.h"
#include "tests/fuzz/fuzz_input.pb.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/fuzz/proto_mutator.h"

namespace regen::fuzz {
namespace {

namespace fs = std::filesystem;
constexpr int kMaxMessages = 16;

std::string g_root;   // the run's temporary directory
std::string g_state;  // <root>/a/b/c/state
std::string g_images;

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  Check(out.good(), "cannot write " + path);
}

// The tree the agent must leave alone.
void MakeTree() {
  char tmpl[] = "/tmp/regen-agent-intake.XXXXXX";
  Check(mkdtemp(tmpl) != nullptr, "mkdtemp");
  g_root = tmpl;
  g_state = g_root + "/a/b/c/state";
  g_images = g_root + "/images";
  fs::create_directories(g_state);
  fs::create_directories(g_images + "/sub");
  fs::create_directories(g_root + "/outside/dir");
  WriteFile(g_images + "/web-v1.qcow2", "base v1");
  WriteFile(g_images + "/web-v2.qcow2", "base v2");
  WriteFile(g_images + "/sub/db-v1.qcow2", "base db");
  WriteFile(g_images + "/domain.xml",
            "<domain type='test'><name>{{name}}</name>{{metadata}}<memory unit='KiB'>"
            "{{memory_kib}}</memory><vcpu>{{vcpus}}</vcpu><devices><disk type='file'>"
            "<source file='{{disk}}'/></disk>{{events_channel}}</devices></domain>\n");
  WriteFile(g_root + "/outside/secret", "not for domains");
  WriteFile(g_root + "/outside/dir/file", "keep");
  WriteFile(g_root + "/outside/victim.events.sock", "keep");
  WriteFile(g_root + "/a/b/c/victim", "keep");
  WriteFile(g_root + "/a/b/victim.jsonl", "keep");
  WriteFile(g_root + "/a/victim.qcow2", "keep");
  WriteFile(g_root + "/victim", "keep");
  fs::create_symlink(g_root + "/outside/secret", g_images + "/escape.qcow2");
  fs::create_symlink(g_root + "/outside", g_images + "/outdir");
  fs::create_symlink("../outside/secret", g_images + "/relative-escape.qcow2");
}

struct Entry {
  fs::file_type type;
  uintmax_t size;
  int64_t mtime_ns;
  std::string target;  // symlinks
  bool operator==(const Entry&) const = default;
};

// Everything under <root> but the state directory's contents, symlinks not followed.
std::map<std::string, Entry> Snapshot() {
  std::map<std::string, Entry> out;
  std::error_code ec;
  fs::recursive_directory_iterator it(g_root, fs::directory_options::none, ec), end;
  Check(!ec, "cannot list " + g_root + ": " + ec.message());
  for (; it != end; it.increment(ec)) {
    Check(!ec, "cannot list " + g_root + ": " + ec.message());
    const std::string path = it->path().string();
    struct stat st {};
    Check(lstat(path.c_str(), &st) == 0, "lstat " + path);
    Entry e{it->symlink_status().type(), 0, 0, ""};
    if (e.type == fs::file_type::regular) e.size = static_cast<uintmax_t>(st.st_size);
    if (e.type != fs::file_type::directory) {
      e.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
    }
    if (e.type == fs::file_type::symlink) e.target = fs::read_symlink(it->path()).string();
    out[path] = e;
    if (path == g_state) it.disable_recursion_pending();
  }
  return out;
}

const std::map<std::string, Entry>& Baseline() {
  static const auto* baseline = new std::map<std::string, Entry>(Snapshot());
  return *baseline;
}

void CheckTree(const std::string& when) {
  auto now = Snapshot();
  const auto& before = Baseline();
  for (const auto& [path, e] : now) {
    auto it = before.find(path);
    Check(it != before.end(), when + ": created " + path);
    Check(it->second == e, when + ": changed " + path);
  }
  for (const auto& [path, e] : before) {
    Check(now.count(path) == 1, when + ": removed " + path);
  }
  Check(fs::is_directory(fs::symlink_status(g_state)), when + ": the state directory was replaced");
}

// `path` is absolute, has no "..", and is under `dir`.
bool Under(const std::string& path, const std::string& dir) {
  if (path.empty() || path[0] != '/') return false;
  if (fs::path(path).lexically_normal().string() != path) return false;
  return path.rfind(dir + "/", 0) == 0;
}

bool UnderOurDirs(const std::string& path) {
  return Under(path, g_state) || Under(path, g_images) ||
         Under(path, fs::canonical(g_images).string());
}

std::string Expand(std::string s) {
  for (size_t at = s.find("@ROOT@"); at != std::string::npos; at = s.find("@ROOT@", at)) {
    s.replace(at, 6, g_root);
    at += g_root.size();
  }
  return s;
}

// Every string field of `msg` with @ROOT@ expanded (reflection, like the mutator).
void ExpandAll(google::protobuf::Message* msg) {
  using google::protobuf::FieldDescriptor;
  const auto* d = msg->GetDescriptor();
  const auto* r = msg->GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
      if (f->is_repeated()) {
        for (int j = 0; j < r->FieldSize(*msg, f); ++j) {
          r->SetRepeatedString(msg, f, j, Expand(r->GetRepeatedString(*msg, f, j)));
        }
      } else {
        r->SetString(msg, f, Expand(r->GetString(*msg, f)));
      }
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      if (f->is_repeated()) {
        for (int j = 0; j < r->FieldSize(*msg, f); ++j) {
          ExpandAll(r->MutableRepeatedMessage(msg, f, j));
        }
      } else if (r->HasField(*msg, f)) {
        ExpandAll(r->MutableMessage(msg, f));
      }
    }
  }
}

// Health probes never leave the process: every probe fails at once.
class NullProber : public Prober {
 public:
  void Probe(const std::string&, const HealthCheck&, Done done) override {
    done(Unavailable("fuzz: not probed"));
  }
};

// qemu-img create ... -b <base> <target>: the target must be under the state directory and the
// base under it or the image directory; the fake then writes the overlay.
Result<CommandOutput> FakeQemuImg(const testing::FakeCommandRunner::Call& call) {
  const auto& argv = call.argv;
  Check(!argv.empty() && argv[0] == "qemu-img",
        "an unexpected command: " + (argv.empty() ? "" : argv[0]));
  for (size_t i = 0; i + 1 < argv.size(); ++i) {
    if (argv[i] == "-b") {
      Check(UnderOurDirs(argv[i + 1]), "qemu-img backing file outside the dirs: " + argv[i + 1]);
    }
  }
  if (argv.size() > 1 && argv[1] == "create") {
    Check(Under(argv.back(), g_state), "qemu-img writes outside state_dir: " + argv.back());
    WriteFile(argv.back(), "overlay");
  }
  return CommandOutput{0, "", ""};
}

void CheckDomainXml(testing::FakeHypervisor& hv) {
  static const std::regex kPath("(?:file|path)='([^']*)'");
  auto listed = hv.ListDomains();
  if (!listed.ok()) return;
  for (const auto& d : *listed) {
    const std::string xml = hv.XmlOf(d.name);
    for (std::sregex_iterator m(xml.begin(), xml.end(), kPath), end; m != end; ++m) {
      const std::string path = (*m)[1];
      if (path.empty()) continue;  // {{disk}} of a templated spec without an image: no file
      Check(UnderOurDirs(path), "domain " + d.name + " names a path outside the dirs: " + path);
    }
  }
}

AgentConfig Config() {
  AgentConfig c;
  c.host_name = "host-a";
  c.address = "192.0.2.10";
  c.controller_address = "controller.invalid:7400";  // controller mode; never dialled here
  c.controller_addresses = {c.controller_address};
  c.insecure = true;
  c.libvirt_uri = "fake:///";
  c.poll_interval = std::chrono::milliseconds(60'000);
  c.domain_type = "test";
  c.ovs_bridge = "br-int";
  c.state_dir = g_state;
  c.image_dirs = {g_images};
  c.control_socket = g_state + "/agent.sock";
  return c;
}

// The agent's main loop has run every task posted so far and the reconcile they asked for.
void Settle(Agent& agent) {
  (void)agent.Call<int>([] { return 0; });  // the posted tasks ran; a reconcile may follow
  (void)agent.Call<int>([] { return 0; });  // ...and has finished
}

// ControllerLink::OnDesired, with the link's own conversion (DesiredFromProto).
void Desired(Agent& agent, const v1::DesiredInstances& d) {
  DesiredSet set = DesiredFromProto(d);
  agent.SetControllerDesired(std::move(set.instances), std::move(set.checks), std::move(set.stage));
}

void RunOne(const AgentIntakeInput& input) {
  std::error_code ec;
  fs::remove_all(g_state, ec);
  fs::create_directories(g_state, ec);
  Check(!ec, "cannot reset " + g_state);
  testing::FakeClock clock;
  testing::FakeHypervisor hv;
  testing::FakeCommandRunner runner;
  runner.SetHandler(FakeQemuImg);
  testing::FakeVSwitch vswitch;
  NullProber prober;
  NetworkAgentOptions net_options;
  net_options.host = "host-a";
  net_options.tunnel_ip = "192.0.2.10";
  NetworkAgent network(net_options, vswitch, clock);
  EventDelivery delivery(g_state);
  {
    Agent agent(Config(), hv, clock, runner, &prober);
    agent.Start();
    agent.RenewLease(clock.Now() + std::chrono::hours(24));  // past kMaxMessages minutes
    agent.NoteHello(agent.fence_log().seq());
    int n = 0;
    for (auto msg : input.messages()) {
      if (++n > kMaxMessages) break;
      // Past any retry backoff (at most a minute) and poll: each message's specs are tried anew.
      clock.Advance(std::chrono::seconds(61));
      ExpandAll(&msg);
      if (msg.has_action() && msg.action().has_desired()) {
        Desired(agent, msg.action().desired());
        Settle(agent);
        CheckDomainXml(hv);
      } else if (msg.has_topology()) {
        network.Submit(msg.topology());
        (void)network.SyncNow();
      } else if (msg.has_notification()) {
        const auto& note = msg.notification();
        std::vector<std::string> instances(note.instances().begin(), note.instances().end());
        (void)delivery.Deliver(instances, note.json());
      }
      // heartbeat_ack, refusal: the link's own state, nothing reaches the agent's disk.
      CheckTree("after message " + std::to_string(n));
    }
    agent.Stop();
  }  // the stager's worker has finished its copies
  CheckTree("at the end");
}

const std::vector<std::string>& Dictionary() {
  static const auto* words = new std::vector<std::string>{"web",
                                                          "db",
                                                          "web-0",
                                                          "web-1",
                                                          "db-0",
                                                          "v1",
                                                          "v2",
                                                          "host-a",
                                                          "host-b",
                                                          "br-int",
                                                          "@ROOT@/images/web-v1.qcow2",
                                                          "@ROOT@/images/web-v2.qcow2",
                                                          "@ROOT@/images/sub/db-v1.qcow2",
                                                          "@ROOT@/images/domain.xml",
                                                          "@ROOT@/images/escape.qcow2",
                                                          "@ROOT@/images/outdir/secret",
                                                          "@ROOT@/images/relative-escape.qcow2",
                                                          "@ROOT@/images/../outside/secret",
                                                          "@ROOT@/images/sub/../web-v1.qcow2",
                                                          "@ROOT@/images",
                                                          "@ROOT@/images/",
                                                          "@ROOT@/outside/secret",
                                                          "@ROOT@/a/b/c/state/lease.json",
                                                          "@ROOT@/a/b/c/state",
                                                          "images/web-v1.qcow2",
                                                          "/etc/passwd",
                                                          "/dev/zero",
                                                          "/proc/self/mem",
                                                          "..",
                                                          "../victim",
                                                          "../../victim",
                                                          "../../../victim",
                                                          "../../../../victim",
                                                          "../../../../outside/secret",
                                                          "../outside",
                                                          "./web-0",
                                                          "web-0/..",
                                                          "web-0/../../x",
                                                          "Web-0",
                                                          "web_0",
                                                          "-web",
                                                          "web.0",
                                                          "web 0",
                                                          ".",
                                                          "a/b",
                                                          "\\",
                                                          "web\n0",
                                                          "10.10.0.2",
                                                          "10.10.0.3",
                                                          "192.0.2.10",
                                                          "192.0.2.11",
                                                          "52:54:00:00:00:01",
                                                          "52:54:00:00:00:02",
                                                          "tcp",
                                                          "http",
                                                          "none",
                                                          "/health",
                                                          "{\"event\":\"x\"}",
                                                          "victim",
                                                          "victim.events",
                                                          "op-1"};
  return *words;
}

}  // namespace
}  // namespace regen::fuzz

REGEN_FUZZ_PROTO_MUTATOR(regen::fuzz::AgentIntakeInput)

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // REGEN_FUZZ_LOG=info: the agent's log, to see what an input did (off: it would cost most of
  // the time).
  const char* level = std::getenv("REGEN_FUZZ_LOG");
  regen::InitLogging("agent_intake_fuzz", level != nullptr ? level : "off");
  google::protobuf::SetLogHandler(nullptr);
  regen::fuzz::SetStringDictionary(&regen::fuzz::Dictionary());
  regen::fuzz::MakeTree();
  (void)regen::fuzz::Baseline();
  std::atexit([] {
    std::error_code ec;
    std::filesystem::remove_all(regen::fuzz::g_root, ec);
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  regen::fuzz::AgentIntakeInput input;
  if (!regen::fuzz::ParseInput(data, size, &input)) return -1;
  regen::fuzz::RunOne(input);
  return 0;
}
