#include "controller/maintenance.h"

#include <nlohmann/json.hpp>

namespace regen {

std::string MaintenanceToJson(const MaintenanceRecord& m) {
  return nlohmann::json{{"started_unix_ms", m.started_unix_ms},
                        {"until_unix_ms", m.until_unix_ms},
                        {"ended_unix_ms", m.ended_unix_ms},
                        {"holds_until_unix_ms", m.holds_until_unix_ms},
                        {"reason", m.reason}}
      .dump();
}

Result<MaintenanceRecord> ParseMaintenanceJson(const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return InvalidArgument("maintenance: not a JSON object: " + text);
  MaintenanceRecord m;
  for (auto [key, field] : {std::pair{"started_unix_ms", &m.started_unix_ms},
                            std::pair{"until_unix_ms", &m.until_unix_ms},
                            std::pair{"ended_unix_ms", &m.ended_unix_ms},
                            std::pair{"holds_until_unix_ms", &m.holds_until_unix_ms}}) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number_integer() || it->get<int64_t>() < 0) {
      return InvalidArgument(std::string("maintenance: ") + key +
                             " must be an integer >= 0, got " +
                             (it == j.end() ? std::string("nothing") : it->dump()));
    }
    *field = it->get<int64_t>();
  }
  if (auto it = j.find("reason"); it != j.end() && it->is_string()) m.reason = it->get<std::string>();
  return m;
}

v1::MaintenanceStatus MaintenanceStatusOf(const MaintenanceRecord& m, int64_t now_unix_ms) {
  v1::MaintenanceStatus s;
  s.set_active(m.Active(now_unix_ms));
  s.set_started_unix_ms(m.started_unix_ms);
  s.set_until_unix_ms(m.until_unix_ms);
  s.set_reason(m.reason);
  s.set_holds_until_unix_ms(m.HoldsUntil(now_unix_ms));
  return s;
}

Clock::TimePoint SteadyFromUnixMs(const Clock& clock, int64_t unix_ms) {
  return clock.Now() + std::chrono::milliseconds(unix_ms - clock.WallMillis());
}

}  // namespace regen
