// agent/event_delivery: each event is one line in <state>/events/<instance>.jsonl, and is also
// written to <state>/channels/<instance>.events.sock when a listener (the domain's virtio-serial
// channel) is there; a socket nobody accepts on, a missing socket or a bad name never block and
// never lose the file line.
#include "agent/event_delivery.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/fakes/test_util.h"

namespace regen {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::TempDir;

std::vector<std::string> Lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// A unix socket listening at `path` (the qemu side of a channel).
class SocketListener {
 public:
  explicit SocketListener(const std::string& path, int backlog = 4) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << strerror(errno);
    EXPECT_EQ(::listen(fd_, backlog), 0);
  }
  ~SocketListener() { ::close(fd_); }
  // Accepts one connection and reads until it closes.
  std::string AcceptAndRead() {
    int c = ::accept(fd_, nullptr, nullptr);
    if (c < 0) return "<accept failed>";
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(c, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    ::close(c);
    return out;
  }

 private:
  int fd_ = -1;
};

TEST(EventDeliveryTest, OneLinePerEventPerInstance) {
  TempDir dir;
  EventDelivery delivery(dir.path());
  std::string failure = R"({"event":"failure","instance":"web-1"})";
  std::string topology = R"({"event":"topology","revision":3})";
  ASSERT_TRUE(delivery.Deliver({"web-0", "web-2"}, failure).ok());
  ASSERT_TRUE(delivery.Deliver({"web-0"}, topology).ok());
  EXPECT_THAT(Lines(EventsFilePath(dir.path(), "web-0")), ElementsAre(failure, topology));
  EXPECT_THAT(Lines(EventsFilePath(dir.path(), "web-2")), ElementsAre(failure));
  EXPECT_FALSE(std::filesystem::exists(EventsFilePath(dir.path(), "web-1")));
  EXPECT_EQ(EventsFilePath(dir.path(), "web-0"), dir.path() + "/events/web-0.jsonl");
  EXPECT_EQ(EventsSocketPath(dir.path(), "web-0"), dir.path() + "/channels/web-0.events.sock");
  for (const auto& line : Lines(EventsFilePath(dir.path(), "web-0"))) {
    EXPECT_TRUE(nlohmann::json::accept(line)) << line;
  }
  EXPECT_EQ(delivery.stats().lines_written, 3);
  EXPECT_EQ(delivery.stats().socket_writes, 0) << "no channel sockets exist";
  EXPECT_EQ(delivery.stats().errors, 0);
}

TEST(EventDeliveryTest, WritesToTheChannelSocketWhenItExists) {
  TempDir dir;
  EventDelivery delivery(dir.path());
  ASSERT_TRUE(delivery.EnsureDirectories().ok());
  SocketListener listener(EventsSocketPath(dir.path(), "web-0"));
  std::string event = R"({"event":"reallocation","instance":"web-1","new_host":"host-3"})";
  ASSERT_TRUE(delivery.Deliver({"web-0", "web-1"}, event).ok());
  EXPECT_EQ(listener.AcceptAndRead(), event + "\n");
  EXPECT_THAT(Lines(EventsFilePath(dir.path(), "web-0")), ElementsAre(event));
  EXPECT_THAT(Lines(EventsFilePath(dir.path(), "web-1")), ElementsAre(event));
  EXPECT_EQ(delivery.stats().socket_writes, 1);
  EXPECT_EQ(delivery.stats().errors, 0);
}

TEST(EventDeliveryTest, AChannelNobodyServesNeverBlocks) {
  TempDir dir;
  EventDelivery delivery(dir.path());
  ASSERT_TRUE(delivery.EnsureDirectories().ok());
  // A listener that never accepts, with its backlog full after a few connections: connects are
  // refused with EAGAIN instead of waiting.
  SocketListener listener(EventsSocketPath(dir.path(), "web-0"), /*backlog=*/0);
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(delivery.Deliver({"web-0"}, "{\"n\":" + std::to_string(i) + "}").ok());
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  EXPECT_EQ(Lines(EventsFilePath(dir.path(), "web-0")).size(), 20u) << "the file has them all";
  EXPECT_GT(delivery.stats().errors, 0) << "the refused connects are counted";

  // A stale socket file with no listener at all: connect refused, logged, file still written.
  TempDir dir2;
  EventDelivery d2(dir2.path());
  ASSERT_TRUE(d2.EnsureDirectories().ok());
  { SocketListener gone(EventsSocketPath(dir2.path(), "web-1")); }
  ASSERT_TRUE(d2.Deliver({"web-1"}, "{}").ok());
  EXPECT_EQ(d2.stats().errors, 1);
  EXPECT_EQ(d2.stats().lines_written, 1);
}

TEST(EventDeliveryTest, BadInputIsRefused) {
  TempDir dir;
  EventDelivery delivery(dir.path());
  Status s = delivery.Deliver({"../etc/passwd"}, "{}");
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("../etc/passwd"));
  s = delivery.Deliver({"web-0"}, "{\n}");
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("one line"));
  EXPECT_FALSE(std::filesystem::exists(EventsFilePath(dir.path(), "web-0")));

  EventDelivery unwritable("/proc/regen-cannot-be-here");
  s = unwritable.Deliver({"web-0"}, "{}");
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("/proc/regen-cannot-be-here"));
}

}  // namespace
}  // namespace regen
