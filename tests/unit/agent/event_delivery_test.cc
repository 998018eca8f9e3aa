// agent/event_delivery: each event is one line in <state>/events/<instance>.jsonl, and is also
// streamed to <state>/channels/<instance>.events.sock when a listener (the domain's virtio-serial
// channel) is there: once, in order, over one connection, including the lines written before the
// channel existed; a socket nobody reads, a missing socket or a bad name never block and never
// lose the file line.
#include "agent/event_delivery.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
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
using testing::ReadFileOrDie;
using testing::TempDir;
using testing::WriteFileOrDie;

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
  ~SocketListener() {
    if (conn_ >= 0) ::close(conn_);
    ::close(fd_);
  }
  // Accepts the next connection (waits at most 5 s); false when none came.
  bool Accept() {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 5000) != 1) return false;
    if (conn_ >= 0) ::close(conn_);
    conn_ = ::accept(fd_, nullptr, nullptr);
    return conn_ >= 0;
  }
  // True when a connection waits to be accepted.
  bool Pending() {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
  }
  // Reads from the accepted connection until `n` lines came (at most 5 s between reads).
  std::vector<std::string> ReadLines(size_t n) {
    while (std::count(buf_.begin(), buf_.end(), '\n') < static_cast<long>(n)) {
      pollfd p{conn_, POLLIN, 0};
      if (::poll(&p, 1, 5000) != 1) break;
      char b[4096];
      ssize_t r = ::read(conn_, b, sizeof b);
      if (r <= 0) break;
      buf_.append(b, static_cast<size_t>(r));
    }
    std::vector<std::string> out;
    size_t pos;
    while (out.size() < n && (pos = buf_.find('\n')) != std::string::npos) {
      out.push_back(buf_.substr(0, pos));
      buf_.erase(0, pos + 1);
    }
    return out;
  }
  // Bytes readable now without waiting (after a short grace for ones in flight).
  std::string ReadAvailable() {
    std::string out = buf_;
    buf_.clear();
    pollfd p{conn_, POLLIN, 0};
    while (::poll(&p, 1, 50) == 1) {
      char b[4096];
      ssize_t r = ::read(conn_, b, sizeof b);
      if (r <= 0) break;
      out.append(b, static_cast<size_t>(r));
    }
    return out;
  }

 private:
  int fd_ = -1;
  int conn_ = -1;
  std::string buf_;
};

std::string Event(int n) { return "{\"n\":" + std::to_string(n) + "}"; }

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
  ASSERT_TRUE(listener.Accept());
  EXPECT_THAT(listener.ReadLines(1), ElementsAre(event));
  EXPECT_THAT(Lines(EventsFilePath(dir.path(), "web-0")), ElementsAre(event));
  EXPECT_THAT(Lines(EventsFilePath(dir.path(), "web-1")), ElementsAre(event));
  // The next lines go over the same connection (qemu drops unread bytes when a client hangs up).
  ASSERT_TRUE(delivery.Deliver({"web-0"}, Event(1)).ok());
  ASSERT_TRUE(delivery.Deliver({"web-0"}, Event(2)).ok());
  EXPECT_THAT(listener.ReadLines(2), ElementsAre(Event(1), Event(2)));
  EXPECT_FALSE(listener.Pending()) << "one connection, not one per line";
  EXPECT_EQ(delivery.stats().socket_writes, 3);
  EXPECT_EQ(delivery.stats().errors, 0);
  EXPECT_EQ(ReadFileOrDie(EventsCursorPath(dir.path(), "web-0")),
            std::to_string(std::filesystem::file_size(EventsFilePath(dir.path(), "web-0"))) + "\n");
}

TEST(EventDeliveryTest, LinesWrittenBeforeTheChannelExistsFollowWhenItAppears) {
  TempDir dir;
  EventDelivery delivery(dir.path());
  // A healed instance: its failure and reallocation arrive while its domain is still starting.
  ASSERT_TRUE(delivery.Deliver({"web-1"}, Event(1)).ok());
  ASSERT_TRUE(delivery.Deliver({"web-1"}, Event(2)).ok());
  delivery.FlushChannels();  // no socket yet: nothing to do
  EXPECT_EQ(delivery.stats().socket_writes, 0);
  SocketListener listener(EventsSocketPath(dir.path(), "web-1"));  // qemu started
  delivery.FlushChannels();
  ASSERT_TRUE(listener.Accept());
  EXPECT_THAT(listener.ReadLines(2), ElementsAre(Event(1), Event(2)));
  ASSERT_TRUE(delivery.Deliver({"web-1"}, Event(3)).ok());
  EXPECT_THAT(listener.ReadLines(1), ElementsAre(Event(3)));
  delivery.FlushChannels();
  EXPECT_EQ(listener.ReadAvailable(), "") << "nothing is sent twice";
  EXPECT_EQ(delivery.stats().socket_writes, 3);
}

TEST(EventDeliveryTest, TheFlusherSendsWaitingLinesByItself) {
  TempDir dir;
  EventDelivery delivery(dir.path());
  ASSERT_TRUE(delivery.Deliver({"web-1"}, Event(1)).ok());
  delivery.Start(std::chrono::milliseconds(20));
  SocketListener listener(EventsSocketPath(dir.path(), "web-1"));
  ASSERT_TRUE(listener.Accept()) << "the flusher connects to a channel that appeared";
  EXPECT_THAT(listener.ReadLines(1), ElementsAre(Event(1)));
  delivery.Stop();
  delivery.Stop();  // idempotent
}

TEST(EventDeliveryTest, ANewDomainGetsOnlyWhatEarlierChannelsDidNotTake) {
  TempDir dir;
  EventDelivery delivery(dir.path());
  ASSERT_TRUE(delivery.EnsureDirectories().ok());
  const std::string sock = EventsSocketPath(dir.path(), "web-0");
  {
    SocketListener first(sock);
    ASSERT_TRUE(delivery.Deliver({"web-0"}, Event(1)).ok());
    ASSERT_TRUE(first.Accept());
    EXPECT_THAT(first.ReadLines(1), ElementsAre(Event(1)));
    std::filesystem::remove(sock);  // the domain is re-created: a new socket at the same path
  }
  ASSERT_TRUE(delivery.Deliver({"web-0"}, Event(2)).ok());  // between the two domains
  SocketListener second(sock);
  ASSERT_TRUE(delivery.Deliver({"web-0"}, Event(3)).ok());
  ASSERT_TRUE(second.Accept());
  EXPECT_THAT(second.ReadLines(2), ElementsAre(Event(2), Event(3)));
  EXPECT_EQ(second.ReadAvailable(), "");
}

TEST(EventDeliveryTest, TheCursorSurvivesAnAgentRestart) {
  TempDir dir;
  const std::string sock = EventsSocketPath(dir.path(), "web-0");
  ASSERT_TRUE(EventDelivery(dir.path()).EnsureDirectories().ok());
  SocketListener listener(sock);
  {
    EventDelivery before(dir.path());
    ASSERT_TRUE(before.Deliver({"web-0"}, Event(1)).ok());
    ASSERT_TRUE(listener.Accept());
    EXPECT_THAT(listener.ReadLines(1), ElementsAre(Event(1)));
  }
  EventDelivery after(dir.path());  // the agent restarted; the domain kept running
  ASSERT_TRUE(after.Deliver({"web-0"}, Event(2)).ok());
  ASSERT_TRUE(listener.Accept());
  EXPECT_THAT(listener.ReadLines(1), ElementsAre(Event(2))) << "not event 1 again";
  EXPECT_EQ(listener.ReadAvailable(), "");

  // A damaged cursor: the whole file again (duplicates rather than losses), said in the log.
  WriteFileOrDie(EventsCursorPath(dir.path(), "web-0"), "garbage\n");
  EventDelivery third(dir.path());
  third.FlushChannels();
  ASSERT_TRUE(listener.Accept());
  EXPECT_THAT(listener.ReadLines(2), ElementsAre(Event(1), Event(2)));
}

TEST(EventDeliveryTest, AGuestThatDoesNotReadNeverBlocksAndLosesNothing) {
  TempDir dir;
  EventDelivery delivery(dir.path());
  ASSERT_TRUE(delivery.EnsureDirectories().ok());
  SocketListener listener(EventsSocketPath(dir.path(), "web-0"));
  // ~2 MB of events while nobody reads: far beyond a socket buffer.
  const std::string pad(2000, 'x');
  const int kLines = 1000;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kLines; ++i) {
    ASSERT_TRUE(
        delivery.Deliver({"web-0"}, "{\"n\":" + std::to_string(i) + ",\"pad\":\"" + pad + "\"}")
            .ok());
  }
  // Generous: a blocking send would hang forever, not take a little longer.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
  EXPECT_LT(delivery.stats().socket_writes, kLines) << "the socket buffer filled up";
  EXPECT_EQ(Lines(EventsFilePath(dir.path(), "web-0")).size(), static_cast<size_t>(kLines));
  // The guest starts reading: flushes deliver the rest, in order, each line once.
  ASSERT_TRUE(listener.Accept());
  std::vector<std::string> got;
  std::string partial;
  for (int round = 0; round < 1000 && got.size() < static_cast<size_t>(kLines); ++round) {
    delivery.FlushChannels();
    std::string chunk = listener.ReadAvailable();
    partial += chunk;
    size_t pos;
    while ((pos = partial.find('\n')) != std::string::npos) {
      got.push_back(partial.substr(0, partial.find(",")));
      partial.erase(0, pos + 1);
    }
  }
  ASSERT_EQ(got.size(), static_cast<size_t>(kLines));
  for (int i = 0; i < kLines; ++i) EXPECT_EQ(got[i], "{\"n\":" + std::to_string(i)) << i;
  EXPECT_EQ(delivery.stats().socket_writes, kLines);
}

TEST(EventDeliveryTest, AFullEventFileIsRotatedKeepingOneOldFile) {
  TempDir dir;
  EventDelivery delivery(dir.path(), /*max_file_bytes=*/100);  // no channel (test driver)
  for (int i = 0; i < 30; ++i) ASSERT_TRUE(delivery.Deliver({"web-0"}, Event(i)).ok());
  const std::string file = EventsFilePath(dir.path(), "web-0");
  EXPECT_GT(delivery.stats().rotations, 0);
  EXPECT_LE(std::filesystem::file_size(file), 100u);
  // The newest lines: the old file then the current one, in order, nothing lost between them.
  std::vector<std::string> both = Lines(file + ".1");
  for (const auto& l : Lines(file)) both.push_back(l);
  ASSERT_FALSE(both.empty());
  EXPECT_EQ(both.back(), Event(29));
  int first = 30 - static_cast<int>(both.size());
  for (size_t i = 0; i < both.size(); ++i) EXPECT_EQ(both[i], Event(first + static_cast<int>(i)));
}

TEST(EventDeliveryTest, AChannelThatKeepsUpSeesNoRotation) {
  TempDir dir;
  EventDelivery delivery(dir.path(), /*max_file_bytes=*/100);
  ASSERT_TRUE(delivery.EnsureDirectories().ok());
  SocketListener listener(EventsSocketPath(dir.path(), "web-0"));
  ASSERT_TRUE(delivery.Deliver({"web-0"}, Event(0)).ok());
  ASSERT_TRUE(listener.Accept());
  std::vector<std::string> got = listener.ReadLines(1);
  for (int i = 1; i < 30; ++i) {
    ASSERT_TRUE(delivery.Deliver({"web-0"}, Event(i)).ok());
    for (auto& l : listener.ReadLines(1)) got.push_back(l);
  }
  EXPECT_GT(delivery.stats().rotations, 0);
  ASSERT_EQ(got.size(), 30u) << "every line once, across rotations";
  for (int i = 0; i < 30; ++i) EXPECT_EQ(got[i], Event(i));
  EXPECT_EQ(listener.ReadAvailable(), "");
}

TEST(EventDeliveryTest, ALaggingChannelDelaysTheRotationUpToFourTimesTheLimit) {
  TempDir dir;
  EventDelivery delivery(dir.path(), /*max_file_bytes=*/1000);
  ASSERT_TRUE(delivery.EnsureDirectories().ok());
  // A stale socket: the channel exists but takes nothing.
  { SocketListener gone(EventsSocketPath(dir.path(), "web-0")); }
  const std::string file = EventsFilePath(dir.path(), "web-0");
  int i = 0;
  while (std::filesystem::exists(file) ? std::filesystem::file_size(file) < 3000 : true) {
    ASSERT_TRUE(delivery.Deliver({"web-0"}, Event(i++)).ok());
  }
  EXPECT_EQ(delivery.stats().rotations, 0) << "its lines wait for the channel";
  while (delivery.stats().rotations == 0 && i < 10000) {
    ASSERT_TRUE(delivery.Deliver({"web-0"}, Event(i++)).ok());
  }
  EXPECT_EQ(delivery.stats().rotations, 1);
  EXPECT_GE(std::filesystem::file_size(file + ".1"), 4000u) << "rotated at 4x the limit";
  EXPECT_EQ(ReadFileOrDie(EventsCursorPath(dir.path(), "web-0")), "0\n");
}

TEST(EventDeliveryTest, AStaleSocketIsRetriedQuietly) {
  // A socket file with no listener (qemu gone, file left): connect refused, counted, logged once;
  // the file line is written.
  TempDir dir;
  EventDelivery delivery(dir.path());
  ASSERT_TRUE(delivery.EnsureDirectories().ok());
  { SocketListener gone(EventsSocketPath(dir.path(), "web-1")); }
  ASSERT_TRUE(delivery.Deliver({"web-1"}, "{}").ok());
  EXPECT_EQ(delivery.stats().errors, 1);
  EXPECT_EQ(delivery.stats().lines_written, 1);
  delivery.FlushChannels();
  EXPECT_EQ(delivery.stats().errors, 2) << "each failed attempt is counted";
  EXPECT_EQ(delivery.stats().socket_writes, 0);
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
