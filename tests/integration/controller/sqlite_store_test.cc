// What only SqliteStore does (the Store contract for every store is store_contract_test.cc), and
// how it treats a damaged database file (issue 15, finding 5): never partial state, never a throw,
// an error naming the table and the row.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <chrono>
#include <cstdio>
#include <optional>
#include <vector>

#include "controller/store.h"
#include "tests/fakes/test_util.h"

namespace regen {
namespace {

using testing::ReadFileOrDie;
using testing::TempDir;
using testing::WriteFileOrDie;

TEST(SqliteStoreTest, UnopenablePathIsAClearError) {
  auto store = OpenSqliteStore("/nonexistent-dir/regen/c.db");
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find("/nonexistent-dir/regen/c.db"), std::string::npos);
}

InstanceRecord Instance(const std::string& name, int64_t index) {
  InstanceRecord i;
  i.name = name;
  i.service = "web";
  i.index = index;
  i.version = "v1";
  i.generation = 1;
  i.allocation.host = "host-1";
  i.allocation.ip = "10.20.0." + std::to_string(index % 250 + 2);
  i.allocation.mac = "52:54:00:00:00:01";
  i.state = InstanceState::kRunning;
  return i;
}

// A database with one host and `n` instances (web-0..), written through the store and closed.
void WriteDatabase(const std::string& path, int n) {
  auto store = OpenSqliteStore(path);
  ASSERT_TRUE(store.ok()) << store.status().message();
  ASSERT_TRUE((*store)
                  ->Transaction([&](StoreTxn& txn) {
                    HostRecord h;
                    h.name = "host-1";
                    h.address = "10.0.0.1";
                    h.capacity = {8, 8192, 100, 1000};
                    RETURN_IF_ERROR(txn.PutHost(h));
                    for (int k = 0; k < n; ++k) {
                      RETURN_IF_ERROR(txn.PutInstance(Instance("web-" + std::to_string(k), k)));
                    }
                    return Status::Ok();
                  })
                  .ok());
}

// Runs `sql` on the file with the plain sqlite3 API (what a bug or a hand edit would do).
void RawExec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  std::string msg = err ? err : "";
  sqlite3_free(err);
  sqlite3_close(db);
  ASSERT_EQ(rc, SQLITE_OK) << msg;
}

// The load of `path` fails (no throw) and its message holds every one of `needles`.
void ExpectLoadFails(const std::string& path, const std::vector<std::string>& needles) {
  auto store = OpenSqliteStore(path);
  ASSERT_TRUE(store.ok()) << store.status().message();
  std::optional<Result<StoreSnapshot>> snap;
  ASSERT_NO_THROW(snap.emplace((*store)->LoadAll()));
  ASSERT_FALSE(snap->ok()) << "a damaged row loaded as state";
  for (const auto& n : needles) {
    EXPECT_NE(snap->status().message().find(n), std::string::npos)
        << "'" << n << "' not in: " << snap->status().message();
  }
}

TEST(SqliteStoreTest, GarbageJsonRowFailsTheLoadNamingTableAndRow) {
  TempDir dir;
  const std::string db = dir.File("c.db");
  WriteDatabase(db, 3);
  RawExec(db, "INSERT INTO instances VALUES ('web-9', 'web', 'host-1', 'running', '{not json')");
  ExpectLoadFails(db, {"instances", "web-9", "corrupt"});
}

TEST(SqliteStoreTest, FieldOfTheWrongTypeFailsTheLoadWithoutThrowing) {
  TempDir dir;
  const std::string db = dir.File("c.db");
  WriteDatabase(db, 1);
  // nlohmann's value() throws type_error on these; the store reports them instead.
  RawExec(db, "UPDATE instances SET data = '{\"index\": \"three\"}' WHERE name = 'web-0'");
  ExpectLoadFails(db, {"instances", "web-0", "corrupt"});
  RawExec(db, "UPDATE instances SET data = '{}' WHERE name = 'web-0'");
  RawExec(db, "UPDATE hosts SET data = '[1, 2]' WHERE name = 'host-1'");
  ExpectLoadFails(db, {"hosts", "host-1"});
  RawExec(db, "UPDATE hosts SET data = '{\"capacity\": {\"vcpus\": []}}' WHERE name = 'host-1'");
  ExpectLoadFails(db, {"hosts", "host-1", "corrupt"});
  RawExec(db, "UPDATE hosts SET data = '{\"state\": \"sideways\"}' WHERE name = 'host-1'");
  ExpectLoadFails(db, {"hosts", "host-1", "sideways"});
}

TEST(SqliteStoreTest, MissingTableFailsTheLoadNamingIt) {
  TempDir dir;
  const std::string db = dir.File("c.db");
  WriteDatabase(db, 1);
  auto store = OpenSqliteStore(db);
  ASSERT_TRUE(store.ok());
  RawExec(db, "DROP TABLE operations");  // behind the open store's back
  auto snap = (*store)->LoadAll();
  ASSERT_FALSE(snap.ok());
  EXPECT_NE(snap.status().message().find("operations"), std::string::npos)
      << snap.status().message();
}

// A page of the instances table overwritten with garbage (a disk or a copy gone wrong): the open
// refuses the file with integrity_check's findings, and leaves the file as it was.
TEST(SqliteStoreTest, OverwrittenPageIsRefusedAtOpen) {
  TempDir dir;
  const std::string db = dir.File("c.db");
  WriteDatabase(db, 2000);  // ~100 pages; closing checkpoints the WAL into the file
  std::string before = ReadFileOrDie(db);
  ASSERT_GT(before.size(), 20u * 4096);
  for (size_t k = 10 * 4096; k < 11 * 4096; ++k) before[k] = static_cast<char>(k * 131 % 251);
  WriteFileOrDie(db, before);
  auto store = OpenSqliteStore(db);
  ASSERT_FALSE(store.ok()) << "a damaged database file was opened";
  EXPECT_NE(store.status().message().find("integrity_check"), std::string::npos)
      << store.status().message();
  EXPECT_NE(store.status().message().find(db), std::string::npos) << store.status().message();
  EXPECT_EQ(ReadFileOrDie(db), before) << "the refused file was changed";
}

// The figure for the open's integrity check on a big database (noted in sqlite_store.cc).
TEST(SqliteStoreTest, IntegrityCheckFigure) {
  TempDir dir;
  const std::string db = dir.File("c.db");
  // 200k rows give the figure; under ASan or TSan (the test command's sanitizer passes) the time
  // means nothing and 200k rows take minutes, so the same check runs on 20k.
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define REGEN_UNDER_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || defined(REGEN_UNDER_ASAN)
  const int n = 20000;
#else
  const int n = 200000;
#endif
  WriteDatabase(db, n);
  auto start = std::chrono::steady_clock::now();
  auto store = OpenSqliteStore(db);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  start)
                .count();
  ASSERT_TRUE(store.ok()) << store.status().message();
  auto snap = (*store)->LoadAll();
  ASSERT_TRUE(snap.ok()) << snap.status().message();
  EXPECT_EQ(snap->instances.size(), static_cast<size_t>(n));
  std::printf(
      "[ figures ] open with PRAGMA integrity_check, %d instance rows (%zu bytes): %lld ms\n", n,
      ReadFileOrDie(db).size(), static_cast<long long>(ms));
}

}  // namespace
}  // namespace regen
