// Logging for the daemons: spdlog, one line per event, "key=value" fields so journald and grep
// both work. Thread-safe (spdlog's multi-threaded sinks).
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace regen {

// Sets up the default logger: stderr, "<level> <component> message" when under systemd
// (JOURNAL_STREAM set), with a timestamp otherwise. `level`: trace|debug|info|warn|error.
void InitLogging(const std::string& component, const std::string& level = "info");

}  // namespace regen
