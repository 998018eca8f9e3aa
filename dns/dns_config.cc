#include "dns/dns_config.h"

#include "common/names.h"

namespace regen::dns {

Status SplitHostPort(const std::string& text, std::string* address, uint16_t* port) {
  auto bad = [&] {
    return InvalidArgument("dns.server \"" + text +
                           "\" must be \"ip:port\" (e.g. \"127.0.0.1:53\" or \"[::1]:53\")");
  };
  std::string host;
  uint16_t value = 0;
  if (!regen::SplitHostPort(text, &host, &value)) return bad();
  *address = host;
  *port = value;
  return Status::Ok();
}

Result<std::optional<DnsSetup>> DnsSetupFromConfig(const DnsConfig& config) {
  if (config.server.empty()) return std::optional<DnsSetup>();
  DnsSetup setup;
  RETURN_IF_ERROR(SplitHostPort(config.server, &setup.updater.server_address, &setup.updater.port));
  RETURN_IF_ERROR(ValidateZoneName(config.zone).WithContext("dns.zone"));
  if (config.ttl < 1 || config.ttl > 86400) {
    return InvalidArgument("dns.ttl must be 1 to 86400 seconds, got " + std::to_string(config.ttl));
  }
  if (!config.tsig_key_name.empty()) {
    ASSIGN_OR_RETURN(TsigKey key, LoadTsigKey(config.tsig_secret_file, config.tsig_key_name,
                                              config.tsig_algorithm));
    setup.updater.tsig = std::move(key);
  }
  setup.sync.zone = config.zone;
  setup.sync.ttl = static_cast<uint32_t>(config.ttl);
  return std::optional<DnsSetup>(std::move(setup));
}

}  // namespace regen::dns
