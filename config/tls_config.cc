#include "config/tls_config.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/names.h"

namespace regen {

Status ReadTlsSettings(const FieldMap& top, TlsSide side, bool required, TlsConfig* tls,
                       bool* insecure) {
  const bool allow_server_name = side == TlsSide::kClient;
  std::vector<std::string_view> keys = {"ca", "cert", "key", "crl"};
  keys.push_back(allow_server_name ? "server_name" : "reload_interval");
  std::optional<FieldMap> map;
  RETURN_IF_ERROR(top.GetMap("tls", keys, &map));
  RETURN_IF_ERROR(top.GetBool("insecure", insecure));
  if (map) {
    RETURN_IF_ERROR(map->GetAbsolutePath("ca", &tls->ca, false, 4095, Need::kRequired));
    RETURN_IF_ERROR(map->GetAbsolutePath("cert", &tls->cert, false, 4095, Need::kRequired));
    RETURN_IF_ERROR(map->GetAbsolutePath("key", &tls->key, false, 4095, Need::kRequired));
    RETURN_IF_ERROR(map->GetAbsolutePath("crl", &tls->crl, false, 4095, Need::kOptional));
    if (!allow_server_name) {
      RETURN_IF_ERROR(map->GetDuration("reload_interval", std::chrono::milliseconds(100),
                                       std::chrono::hours(1), &tls->reload_interval));
    }
    if (allow_server_name) {
      RETURN_IF_ERROR(map->GetString("server_name", &tls->server_name));
      if (!tls->server_name.empty() && !IsValidDnsName(tls->server_name)) {
        return map->ErrorAt("server_name",
                            "must be a lower-case DNS name, got " + QuoteValue(tls->server_name) +
                                " (the name in the controller's certificate, e.g. "
                                "\"regen-ctl.lab.example\"; leave it out to use the host of "
                                "controller_address)");
      }
    }
  }
  if (map && *insecure) {
    return top.ErrorAt("insecure",
                       "true cannot go with a tls: block (choose one: remove insecure: true to "
                       "use TLS, or remove tls: to run without it)");
  }
  if (!map && !*insecure && required) {
    return top.ErrorAt("tls",
                       "required field is missing: set tls: {ca, cert, key} or insecure: true "
                       "(TLS with certificates from scripts/gen-certs.sh for real clusters; "
                       "insecure: true only for labs and tests)");
  }
  return Status::Ok();
}

Status CheckFileReadable(const std::string& path, const std::string& field,
                         const std::string& config_file) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int error = errno;
    return InvalidArgument(config_file + ": " + field + ": cannot read " + QuoteValue(path) + ": " +
                           std::strerror(error) +
                           " (fix the path, or make the file readable by the user the daemon "
                           "runs as)");
  }
  ::close(fd);
  return Status::Ok();
}

Status CheckTlsFilesReadable(const TlsConfig& tls, const std::string& config_file) {
  if (!tls.enabled()) return Status::Ok();
  RETURN_IF_ERROR(CheckFileReadable(tls.ca, "tls.ca", config_file));
  RETURN_IF_ERROR(CheckFileReadable(tls.cert, "tls.cert", config_file));
  RETURN_IF_ERROR(CheckFileReadable(tls.key, "tls.key", config_file));
  if (!tls.crl.empty()) RETURN_IF_ERROR(CheckFileReadable(tls.crl, "tls.crl", config_file));
  return Status::Ok();
}

}  // namespace regen
