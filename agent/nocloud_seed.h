// The cloud-init NoCloud seed of an instance (issue 16): an ISO 9660 image labelled "cidata" with
// meta-data (instance-id <name>-g<generation>, local-hostname <name>), user-data (an empty
// #cloud-config) and network-config (version 2: the NIC matched by the allocation's MAC gets
// allocation.ip/prefix_len and the gateway). A real cloud image attached to it as a cdrom
// ({{seed}} in a domain template) comes up at its allocated address with no DHCP; a new
// generation gets a new instance-id, so cloud-init configures a healed instance anew.
// Written by genisoimage under <state_dir>/seeds/<name>-g<generation>.iso, only for templates
// that name {{seed}}; removed with the instance's domain.
#pragma once

#include <string>

#include "common/model.h"
#include "common/status.h"
#include "common/subprocess.h"

namespace regen {

struct NoCloudSeed {
  std::string meta_data;
  std::string user_data;
  std::string network_config;  // "" when the instance has no IP
};

// Pure. Names and addresses were validated (BuildDomainXml) before.
NoCloudSeed BuildNoCloudSeed(const InstanceSpec& spec);

// <state_dir>/seeds/<name>-g<generation>.iso
std::string SeedPath(const std::string& state_dir, const InstanceSpec& spec);

// Writes the seed ISO (atomically: a half-written seed is never attached). Errors name the
// instance and carry genisoimage's stderr, or say to install genisoimage.
Result<std::string> WriteNoCloudSeed(CommandRunner& runner, const std::string& state_dir,
                                     const InstanceSpec& spec);

// Removes every generation's seed of the instance. Missing files are fine.
void RemoveNoCloudSeeds(const std::string& state_dir, const std::string& instance);

}  // namespace regen
