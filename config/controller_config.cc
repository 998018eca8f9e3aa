#include "config/controller_config.h"

#include "common/names.h"
#include "config/fields.h"
#include "config/yaml_tree.h"

namespace regen {
namespace {

using std::chrono::milliseconds;

Status ReadDns(const FieldMap& top, DnsConfig* dns) {
  std::optional<FieldMap> map;
  RETURN_IF_ERROR(top.GetMap("dns", {"server", "zone", "tsig", "ttl"}, &map));
  if (!map) return Status::Ok();
  RETURN_IF_ERROR(map->GetHostPort("server", &dns->server, /*allow_empty=*/true,
                                   /*ip_only=*/true));
  RETURN_IF_ERROR(
      map->GetZone("zone", &dns->zone, dns->server.empty() ? Need::kOptional : Need::kRequired));
  RETURN_IF_ERROR(map->GetInt("ttl", 1, 86400, &dns->ttl));

  std::optional<FieldMap> tsig;
  RETURN_IF_ERROR(map->GetMap("tsig", {"key_name", "algorithm", "secret_file"}, &tsig));
  if (tsig) {
    RETURN_IF_ERROR(tsig->GetNonEmptyString("key_name", &dns->tsig_key_name, Need::kRequired));
    std::string_view key_name = dns->tsig_key_name;
    if (key_name.back() == '.') key_name.remove_suffix(1);
    if (!IsValidDnsName(key_name)) {
      return tsig->ErrorAt("key_name", "must be a lower-case DNS name, got " +
                                           QuoteValue(dns->tsig_key_name) +
                                           " (the key's name as the DNS server knows it, e.g. "
                                           "\"regen-key.\")");
    }
    RETURN_IF_ERROR(tsig->GetEnum("algorithm", {"hmac-sha256", "hmac-sha512", "hmac-sha1"},
                                  &dns->tsig_algorithm));
    RETURN_IF_ERROR(tsig->GetAbsolutePath("secret_file", &dns->tsig_secret_file,
                                          /*allow_empty=*/false, 4095, Need::kRequired));
  }
  return Status::Ok();
}

// auth.hosts: a list of host names or patterns ([a-z0-9-] and `*`, starting with a letter or `*`).
Status ReadAuthHosts(const FieldMap& auth, std::vector<std::string>* hosts) {
  const YamlNode* list = nullptr;
  RETURN_IF_ERROR(auth.GetList("hosts", &list));
  if (list == nullptr) return Status::Ok();
  for (size_t i = 0; i < list->items.size(); ++i) {
    const YamlNode& item = list->items[i];
    const std::string& p = item.value;
    bool ok = item.is_scalar() && !p.empty() && p.size() <= 63 &&
              ((p[0] >= 'a' && p[0] <= 'z') || p[0] == '*');
    for (char ch : p) {
      ok = ok && ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '*');
    }
    if (!ok) {
      return ErrorAt(auth.file(), item, IndexPath("auth.hosts", i),
                     "must be a host name or a pattern with * (e.g. \"host-1\" or "
                     "\"rack1-*\"), got " +
                         QuoteValue(p));
    }
    hosts->push_back(p);
  }
  return Status::Ok();
}

Status ReadAuth(const FieldMap& top, AuthConfig* auth) {
  std::optional<FieldMap> map;
  RETURN_IF_ERROR(top.GetMap("auth", {"certs", "tokens", "hosts"}, &map));
  if (!map) return Status::Ok();
  auth->configured = true;
  const std::vector<std::string_view> roles = {"admin", "read-only"};
  const YamlNode* certs = nullptr;
  RETURN_IF_ERROR(map->GetList("certs", &certs));
  if (certs != nullptr) {
    for (size_t i = 0; i < certs->items.size(); ++i) {
      ASSIGN_OR_RETURN(FieldMap m, FieldMap::Open(map->file(), certs->items[i],
                                                  IndexPath("auth.certs", i), {"name", "role"}));
      AuthCert cert;
      RETURN_IF_ERROR(m.GetNonEmptyString("name", &cert.name, Need::kRequired));
      for (char ch : cert.name) {
        if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) {
          return m.ErrorAt("name", "must not hold control characters, got " +
                                       QuoteValue(cert.name) +
                                       " (the certificate's common name, e.g. "
                                       "\"admin@regenctl\")");
        }
      }
      RETURN_IF_ERROR(m.GetEnum("role", roles, &cert.role));
      if (m.Find("role") == nullptr) return m.Missing("role");
      for (const AuthCert& other : auth->certs) {
        if (other.name == cert.name) {
          return m.ErrorAt("name", "names a certificate listed before, got " +
                                       QuoteValue(cert.name) + " (list each name once)");
        }
      }
      auth->certs.push_back(std::move(cert));
    }
  }
  const YamlNode* tokens = nullptr;
  RETURN_IF_ERROR(map->GetList("tokens", &tokens));
  if (tokens != nullptr) {
    for (size_t i = 0; i < tokens->items.size(); ++i) {
      ASSIGN_OR_RETURN(FieldMap m, FieldMap::Open(map->file(), tokens->items[i],
                                                  IndexPath("auth.tokens", i), {"file", "role"}));
      AuthToken token;
      RETURN_IF_ERROR(m.GetAbsolutePath("file", &token.file, false, 4095, Need::kRequired));
      RETURN_IF_ERROR(m.GetEnum("role", roles, &token.role));
      if (m.Find("role") == nullptr) return m.Missing("role");
      auth->tokens.push_back(std::move(token));
    }
  }
  return ReadAuthHosts(*map, &auth->hosts);
}

Status ReadEtcd(const FieldMap& top, EtcdConfig* etcd) {
  std::optional<FieldMap> map;
  RETURN_IF_ERROR(
      top.GetMap("etcd", {"endpoints", "prefix", "tls", "user", "password_file", "election_ttl"},
                 &map, Need::kRequired));
  RETURN_IF_ERROR(ReadEtcdConnection(*map, EtcdBlockRules{}, etcd));
  RETURN_IF_ERROR(map->GetDuration("election_ttl", std::chrono::seconds(1), std::chrono::minutes(1),
                                   &etcd->election_ttl));
  if (etcd->election_ttl.count() % 1000 != 0) {
    return map->ErrorAt("election_ttl",
                        "must be whole seconds (etcd leases have a TTL in "
                        "seconds), got " +
                            DescribeValue(*map->Find("election_ttl")) + " (e.g. \"2s\")");
  }
  return Status::Ok();
}

// store, etcd and advertise_address.
Status ReadStore(const FieldMap& top, ControllerConfig* c) {
  RETURN_IF_ERROR(top.GetEnum("store", {"sqlite", "etcd"}, &c->store));
  if (c->store == "etcd") {
    RETURN_IF_ERROR(ReadEtcd(top, &c->etcd));
  } else if (top.Has("etcd")) {
    return top.ErrorAt("etcd",
                       "is used only with store: etcd, got an etcd block with store: " + c->store +
                           " (add store: etcd for the HA mode, or remove the "
                           "etcd block)");
  }
  RETURN_IF_ERROR(top.GetHostPort("advertise_address", &c->advertise_address, false));
  if (c->advertise_address.empty()) {
    c->advertise_address = c->listen_address;
    std::string_view host =
        std::string_view(c->listen_address).substr(0, c->listen_address.rfind(':'));
    if (c->store == "etcd" && (host == "0.0.0.0" || host == "[::]")) {
      return top.ErrorAt("listen_address",
                         "listens on every address (" + QuoteValue(c->listen_address) +
                             "): with store: etcd set advertise_address to the \"host:port\" "
                             "agents and regenctl reach this controller at (a standby names it)");
    }
  }
  return Status::Ok();
}

// The lease must outlive two heartbeats (one lost heartbeat must not fence a host) and a restart
// of the controller (restart_allowance after the last acknowledged heartbeat): otherwise every
// controller restart would stop every VM of the cluster.
Status CheckLeaseCoversRestart(const FieldMap& top, const ControllerConfig& c) {
  std::string_view at = top.Has("fencing_lease")        ? "fencing_lease"
                        : top.Has("heartbeat_interval") ? "heartbeat_interval"
                                                        : "restart_allowance";
  if (c.fencing_lease < 2 * c.heartbeat_interval) {
    return top.ErrorAt(at, "fencing_lease (" + FormatDuration(c.fencing_lease) +
                               ") must be at least two heartbeat_intervals (2 x " +
                               FormatDuration(c.heartbeat_interval) +
                               "): one lost heartbeat must not fence a host; raise fencing_lease "
                               "or lower heartbeat_interval");
  }
  if (c.fencing_lease < c.heartbeat_interval + c.restart_allowance) {
    return top.ErrorAt(
        at, "fencing_lease (" + FormatDuration(c.fencing_lease) +
                ") must cover heartbeat_interval + restart_allowance (" +
                FormatDuration(c.heartbeat_interval) + " + " + FormatDuration(c.restart_allowance) +
                "): a controller restart would make every agent fence (stop every VM); raise "
                "fencing_lease (and host_down_after) or lower heartbeat_interval");
  }
  return Status::Ok();
}

}  // namespace

bool HostPatternMatches(std::string_view pattern, std::string_view host) {
  size_t star = pattern.find('*');
  if (star == std::string_view::npos) return pattern == host;
  std::string_view head = pattern.substr(0, star);
  if (host.substr(0, head.size()) != head) return false;
  std::string_view rest = pattern.substr(star + 1);
  // `*` takes any run: try every split (names are at most 63 characters).
  for (size_t at = head.size(); at <= host.size(); ++at) {
    if (HostPatternMatches(rest, host.substr(at))) return true;
  }
  return false;
}

Result<ControllerConfig> ParseControllerConfig(const std::string& yaml_text,
                                               const std::string& file_name) {
  ASSIGN_OR_RETURN(YamlNode root, ParseYaml(yaml_text, file_name));
  ASSIGN_OR_RETURN(
      FieldMap top,
      FieldMap::Root(file_name, root, "controller configuration",
                     {"listen_address", "database", "heartbeat_interval", "host_down_after",
                      "fencing_lease", "restart_allowance", "maintenance_max", "dns", "upgrade",
                      "store", "etcd", "advertise_address", "log_level", "metrics_address", "tls",
                      "insecure", "auth", "allow_loopback_hosts"}));
  ControllerConfig c;
  RETURN_IF_ERROR(top.GetHostPort("listen_address", &c.listen_address, /*allow_empty=*/false));
  RETURN_IF_ERROR(top.GetHostPort("metrics_address", &c.metrics_address, /*allow_empty=*/true));
  RETURN_IF_ERROR(top.GetString("database", &c.database));
  if (top.Has("database") && c.database != ":memory:" && !IsAbsolutePath(c.database)) {
    return top.ErrorAt("database", "must be an absolute path to the SQLite file, got " +
                                       QuoteValue(c.database) +
                                       " (e.g. \"/var/lib/regen/controller.db\"; \":memory:\" "
                                       "keeps nothing across restarts, for tests)");
  }
  RETURN_IF_ERROR(top.GetDuration("heartbeat_interval", milliseconds(10), std::chrono::minutes(1),
                                  &c.heartbeat_interval));
  RETURN_IF_ERROR(top.GetDuration("host_down_after", milliseconds(100), std::chrono::hours(1),
                                  &c.host_down_after));
  RETURN_IF_ERROR(top.GetDuration("fencing_lease", milliseconds(100), std::chrono::minutes(10),
                                  &c.fencing_lease));
  RETURN_IF_ERROR(top.GetDuration("restart_allowance", milliseconds(0), std::chrono::minutes(10),
                                  &c.restart_allowance));
  RETURN_IF_ERROR(top.GetDuration("maintenance_max", std::chrono::minutes(1),
                                  std::chrono::hours(24 * 7), &c.maintenance_max));
  RETURN_IF_ERROR(ReadStore(top, &c));
  RETURN_IF_ERROR(CheckLeaseCoversRestart(top, c));
  if (c.host_down_after <= c.fencing_lease + c.heartbeat_interval) {
    std::string sum = "fencing_lease + heartbeat_interval (" + FormatDuration(c.fencing_lease) +
                      " + " + FormatDuration(c.heartbeat_interval) + " = " +
                      FormatDuration(c.fencing_lease + c.heartbeat_interval) + ")";
    std::string hint =
        " (a host cut off from the controller destroys its own instances after fencing_lease; "
        "the controller must wait longer than that, plus one heartbeat, before it runs them "
        "elsewhere: raise host_down_after or lower fencing_lease)";
    if (top.Has("host_down_after")) {
      return top.ErrorAt("host_down_after", "must be longer than " + sum + ", got " +
                                                DescribeValue(*top.Find("host_down_after")) + hint);
    }
    // host_down_after is the default: point at the setting that was written.
    std::string_view at = top.Has("fencing_lease") ? "fencing_lease" : "heartbeat_interval";
    return top.ErrorAt(at, "makes " + sum + " reach host_down_after (" +
                               FormatDuration(c.host_down_after) + ", the default), got " +
                               DescribeValue(*top.Find(at)) + hint);
  }
  RETURN_IF_ERROR(ReadDns(top, &c.dns));

  std::optional<FieldMap> upgrade;
  RETURN_IF_ERROR(
      top.GetMap("upgrade", {"manual_policy", "auto_rollback", "max_failed"}, &upgrade));
  if (upgrade) {
    RETURN_IF_ERROR(
        upgrade->GetEnum("manual_policy", {"block", "allow"}, &c.manual_upgrade_policy));
    RETURN_IF_ERROR(upgrade->GetBool("auto_rollback", &c.auto_rollback));
    RETURN_IF_ERROR(upgrade->GetInt("max_failed", 1, 100, &c.max_failed_health_checks));
  }
  RETURN_IF_ERROR(
      top.GetEnum("log_level", {"trace", "debug", "info", "warn", "error"}, &c.log_level));
  RETURN_IF_ERROR(top.GetBool("allow_loopback_hosts", &c.allow_loopback_hosts));
  RETURN_IF_ERROR(ReadAuth(top, &c.auth));
  RETURN_IF_ERROR(ReadTlsSettings(top, TlsSide::kServer, /*required=*/true, &c.tls, &c.insecure));
  return c;
}

Result<ControllerConfig> LoadControllerConfig(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadConfigFile(path));
  ASSIGN_OR_RETURN(ControllerConfig c, ParseControllerConfig(text, path));
  RETURN_IF_ERROR(CheckTlsFilesReadable(c.tls, path));
  for (size_t i = 0; i < c.auth.tokens.size(); ++i) {
    RETURN_IF_ERROR(
        CheckFileReadable(c.auth.tokens[i].file, IndexPath("auth.tokens", i) + ".file", path));
  }
  if (c.store == "etcd") RETURN_IF_ERROR(CheckEtcdFilesReadable(c.etcd, path));
  return c;
}

}  // namespace regen
