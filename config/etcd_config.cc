#include "config/etcd_config.h"

#include <fstream>
#include <sstream>

#include "common/names.h"
#include "config/yaml_tree.h"

namespace regen {
namespace {

constexpr const char* kEndpointHint =
    " (an etcd member's client URL without the scheme, e.g. \"10.0.0.1:2379\")";

// endpoints: "a:1,b:2" (with `rules.endpoints_as_text`).
Status ReadEndpointsText(const FieldMap& etcd, const YamlNode& node,
                         std::vector<std::string>* endpoints) {
  std::string_view text = node.value;
  size_t index = 0;
  while (true) {
    size_t comma = text.find(',');
    std::string item(text.substr(0, comma));
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    if (!IsValidHostPort(item, /*ip_only=*/false)) {
      return etcd.ErrorAt("endpoints", "entry " + std::to_string(index + 1) +
                                           " must be \"host:port\" with a port from 1 to 65535, "
                                           "got " +
                                           QuoteValue(item) + kEndpointHint);
    }
    endpoints->push_back(std::move(item));
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
    ++index;
  }
  return Status::Ok();
}

// etcd.endpoints: a non-empty list of "host:port".
Status ReadEtcdEndpoints(const FieldMap& etcd, const EtcdBlockRules& rules,
                         std::vector<std::string>* endpoints) {
  const YamlNode* node = etcd.Find("endpoints");
  if (rules.endpoints_as_text && node != nullptr && node->is_scalar() && !node->value.empty()) {
    return ReadEndpointsText(etcd, *node, endpoints);
  }
  const YamlNode* list = nullptr;
  RETURN_IF_ERROR(etcd.GetList("endpoints", &list, Need::kRequired));
  if (list == nullptr || list->items.empty()) {
    return etcd.ErrorAt("endpoints", "must list at least one etcd member's client address, got " +
                                         DescribeValue(*etcd.Find("endpoints")) +
                                         " (e.g. [\"127.0.0.1:2379\"])");
  }
  for (size_t i = 0; i < list->items.size(); ++i) {
    const YamlNode& item = list->items[i];
    if (!item.is_scalar() || !IsValidHostPort(item.value, /*ip_only=*/false)) {
      return regen::ErrorAt(etcd.file(), item, IndexPath(etcd.PathOf("endpoints"), i),
                            "must be \"host:port\" with a port from 1 to 65535, got " +
                                DescribeValue(item) + kEndpointHint);
    }
    endpoints->push_back(item.value);
  }
  return Status::Ok();
}

// etcd.prefix: "/.../", printable, no spaces.
Status CheckEtcdPrefix(const FieldMap& etcd, const std::string& prefix) {
  bool ok = prefix.size() >= 2 && prefix.front() == '/' && prefix.back() == '/';
  for (char ch : prefix) ok = ok && static_cast<unsigned char>(ch) > 0x20 && ch != 0x7f;
  if (ok) return Status::Ok();
  return etcd.ErrorAt("prefix",
                      "must start and end with '/' and hold no spaces or control "
                      "characters, got " +
                          QuoteValue(prefix) +
                          " (every key of this cluster goes under it; default "
                          "\"/regen/\")");
}

// etcd.tls: ca required; cert and key together.
Status ReadEtcdTls(const FieldMap& etcd, const EtcdBlockRules& rules, TlsConfig* out) {
  std::optional<FieldMap> tls;
  std::vector<std::string_view> keys = {"ca", "cert", "key"};
  if (rules.tls_server_name) keys.push_back("server_name");
  RETURN_IF_ERROR(etcd.GetMap("tls", keys, &tls));
  if (!tls) return Status::Ok();
  RETURN_IF_ERROR(tls->GetAbsolutePath("ca", &out->ca, false, 4095, Need::kRequired));
  RETURN_IF_ERROR(tls->GetAbsolutePath("cert", &out->cert));
  RETURN_IF_ERROR(tls->GetAbsolutePath("key", &out->key));
  if (out->cert.empty() != out->key.empty()) {
    std::string_view missing = out->cert.empty() ? "cert" : "key";
    return tls->ErrorAt(missing, "must be given with " +
                                     std::string(missing == "cert" ? "key" : "cert") +
                                     " (a client certificate and its key go together; leave "
                                     "both out to present none)");
  }
  if (rules.tls_server_name)
    RETURN_IF_ERROR(tls->GetNonEmptyString("server_name", &out->server_name));
  return Status::Ok();
}

}  // namespace

Status ReadEtcdConnection(const FieldMap& etcd, const EtcdBlockRules& rules,
                          EtcdConnectionConfig* out) {
  RETURN_IF_ERROR(ReadEtcdEndpoints(etcd, rules, &out->endpoints));
  if (etcd.Has("prefix")) {
    RETURN_IF_ERROR(etcd.GetString("prefix", &out->prefix));
    RETURN_IF_ERROR(CheckEtcdPrefix(etcd, out->prefix));
  }
  RETURN_IF_ERROR(ReadEtcdTls(etcd, rules, &out->tls));
  RETURN_IF_ERROR(etcd.GetNonEmptyString("user", &out->user));
  RETURN_IF_ERROR(etcd.GetAbsolutePath("password_file", &out->password_file));
  if (out->user.empty() != out->password_file.empty()) {
    std::string_view missing = out->user.empty() ? "user" : "password_file";
    return etcd.ErrorAt(missing,
                        "required field is missing: etcd.user and etcd.password_file go "
                        "together (etcd's own auth), or leave both out");
  }
  return Status::Ok();
}

Status CheckEtcdFilesReadable(const EtcdConnectionConfig& c, const std::string& config_file) {
  if (!c.tls.ca.empty()) RETURN_IF_ERROR(CheckFileReadable(c.tls.ca, "etcd.tls.ca", config_file));
  if (!c.tls.cert.empty()) {
    RETURN_IF_ERROR(CheckFileReadable(c.tls.cert, "etcd.tls.cert", config_file));
    RETURN_IF_ERROR(CheckFileReadable(c.tls.key, "etcd.tls.key", config_file));
  }
  if (!c.password_file.empty()) {
    RETURN_IF_ERROR(CheckFileReadable(c.password_file, "etcd.password_file", config_file));
  }
  return Status::Ok();
}

Result<std::string> ReadEtcdPassword(const EtcdConnectionConfig& c) {
  if (c.password_file.empty()) return std::string();
  std::ifstream in(c.password_file);
  if (!in) return InvalidArgument("etcd.password_file: cannot read \"" + c.password_file + "\"");
  std::stringstream text;
  text << in.rdbuf();
  std::string password = text.str();
  while (!password.empty() && (password.back() == '\n' || password.back() == '\r')) {
    password.pop_back();
  }
  return password;
}

Result<etcd::EtcdOptions> EtcdClientOptions(const EtcdConnectionConfig& c) {
  etcd::EtcdOptions o;
  o.endpoints = c.endpoints;
  o.tls = {c.tls.ca, c.tls.cert, c.tls.key, c.tls.server_name};
  o.user = c.user;
  ASSIGN_OR_RETURN(o.password, ReadEtcdPassword(c));
  return o;
}

}  // namespace regen
