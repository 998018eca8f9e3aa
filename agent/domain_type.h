// The libvirt domain type of an agent's domains (agent.yaml domain_type): kvm, qemu (TCG) and
// test are taken as given; `auto` is resolved once libvirt is connected. Called from the agent's
// main thread (it runs a test guest for up to KvmProbeOptions::timeout).
//
// auto: the test driver gives `test`; otherwise kvm only when everything says a guest really
// runs under KVM: /dev/kvm exists and is readable and writable, libvirt's domain capabilities
// for type kvm name an emulator, and that emulator boots a 512-byte test guest with -accel kvm
// that prints a marker on its serial port before the timeout. A /dev/kvm that is there but
// cannot run guests (nested virtualization without support: the guest hangs) gives qemu, with
// the reason. The probe runs as the agent's user; libvirt checks its own qemu user itself. The
// test guest's verdict is cached for the boot (KvmProbeOptions::cache_file).
#pragma once

#include <chrono>
#include <string>

#include "agent/hypervisor.h"
#include "common/subprocess.h"

namespace regen {

struct DomainTypeChoice {
  std::string type;    // kvm | qemu | test
  std::string reason;  // for the log, `regen-agent status` and `regenctl host list -o json`
};

struct KvmProbeOptions {
  std::string dev_kvm = "/dev/kvm";
  std::string work_dir;  // where the test guest's boot sector is written (the agent's state_dir)
  std::chrono::milliseconds timeout{2000};
  // The verdict of the test guest is kept in cache_file ("" = never) for this boot: an agent
  // restarted on the same boot, same /dev/kvm and same emulator takes it without running the
  // guest again (a restart must not spend the probe's timeout before its first Hello: the old
  // session's lease is running out). A reboot (another boot_id) probes anew.
  std::string cache_file;
  std::string boot_id;
};

// `configured`: kvm | qemu | test | auto (agent_config validated it).
DomainTypeChoice ResolveDomainType(const std::string& configured, Hypervisor& hypervisor,
                                   CommandRunner& runner, const KvmProbeOptions& options);

// The emulator a domain capabilities XML names (<path>...</path>), "" if none. Pure.
std::string EmulatorOf(const std::string& domain_capabilities_xml);

// The probe's guest: a floppy boot sector that prints kKvmProbeMarker on COM1 and ends qemu
// through isa-debug-exit. Pure.
std::string KvmProbeBootSector();
inline constexpr const char* kKvmProbeMarker = "regen-kvm-probe-ok";

}  // namespace regen
