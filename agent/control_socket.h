// The agent's host-local control socket (unix stream): one JSON request line in, one JSON
// response line out. Used by `regen-agent status` and the other host subcommands. The server
// runs its own accept thread; the handler is called on it. No exception from the handler leaves
// the server (it answers {"ok": false, "error": ...}), and invalid UTF-8 in an answer becomes
// U+FFFD (DumpJson), so text from outside never takes the agent down.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace regen {

class ControlSocketServer {
 public:
  using Handler = std::function<nlohmann::json(const nlohmann::json& request)>;
  ControlSocketServer(std::string path, Handler handler);
  ~ControlSocketServer();
  // Binds (replacing a stale socket file; refusing if another agent answers on it) and starts.
  Status Start();
  void Stop();

 private:
  void Loop();
  void Serve(int fd);
  nlohmann::json Handle(const nlohmann::json& request);
  bool owns_path_ = false;
  std::string path_;
  Handler handler_;
  int listen_fd_ = -1;
  int wake_pipe_[2] = {-1, -1};
  std::thread thread_;
};

// `j` as one line of JSON; invalid UTF-8 in its strings is replaced (never throws on it).
std::string DumpJson(const nlohmann::json& j);

// Client side: sends `request`, returns the response. Errors name the socket path.
Result<nlohmann::json> ControlSocketCall(const std::string& path, const nlohmann::json& request,
                                         std::chrono::milliseconds timeout);

}  // namespace regen
