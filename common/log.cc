#include "common/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <cstdlib>

namespace regen {

void InitLogging(const std::string& component, const std::string& level) {
  auto logger = spdlog::stderr_color_mt(component);
  if (std::getenv("JOURNAL_STREAM") != nullptr) {
    logger->set_pattern("%l %n %v");
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %l %n %v");
  }
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

}  // namespace regen
