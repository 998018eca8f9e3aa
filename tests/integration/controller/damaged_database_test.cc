// The real regen-controller on a damaged SQLite file (issue 15, finding 5): it refuses to start
// (exit status 1), its log names what is damaged (the table and the row, or integrity_check's
// findings), and it changes nothing in the file. Before the fix a read error looked like the end
// of a table and the controller re-created the "missing" instances.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "controller/store.h"
#include "tests/fakes/test_util.h"

namespace regen {
namespace {

using std::chrono::milliseconds;
using testing::ChildProcess;
using testing::ReadFileOrDie;
using testing::TempDir;
using testing::WaitFor;
using testing::WriteFileOrDie;

void WriteDatabase(const std::string& path) {
  auto store = OpenSqliteStore(path);
  ASSERT_TRUE(store.ok()) << store.status().message();
  ASSERT_TRUE((*store)
                  ->Transaction([&](StoreTxn& txn) {
                    HostRecord h;
                    h.name = "host-1";
                    h.address = "10.0.0.1";
                    RETURN_IF_ERROR(txn.PutHost(h));
                    for (int k = 0; k < 2000; ++k) {
                      InstanceRecord i;
                      i.name = "web-" + std::to_string(k);
                      i.service = "web";
                      i.index = k;
                      RETURN_IF_ERROR(txn.PutInstance(i));
                    }
                    return Status::Ok();
                  })
                  .ok());
}

void RawExec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
  sqlite3_close(db);
  ASSERT_EQ(rc, SQLITE_OK) << sql;
}

// Runs regen-controller on `db` until it exits: its exit status and log.
std::pair<int, std::string> RunController(const TempDir& dir, const std::string& db) {
  WriteFileOrDie(dir.File("controller.yaml"),
                 "listen_address: \"127.0.0.1:" + std::to_string(testing::FreePort()) +
                     "\"\ndatabase: " + db + "\ninsecure: true\n");
  ChildProcess controller({REGEN_CONTROLLER_BIN, "run", "--config", dir.File("controller.yaml")},
                          dir.File("controller.log"));
  bool exited = WaitFor([&] { return !controller.Running(); }, milliseconds(20000));
  int status = controller.Stop();
  EXPECT_TRUE(exited) << "the controller started on a damaged database";
  std::string log = ReadFileOrDie(dir.File("controller.log"));
  std::printf("[ log ] %s", log.substr(log.rfind('\n', log.size() - 2) + 1).c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, log};
}

TEST(DamagedDatabaseTest, AGarbageRowStopsTheControllerNamingTheRow) {
  TempDir dir;
  const std::string db = dir.File("controller.db");
  WriteDatabase(db);
  RawExec(db, "INSERT INTO instances VALUES ('web-9999', 'web', 'host-1', 'running', '{oops')");
  std::string before = ReadFileOrDie(db);
  auto [code, log] = RunController(dir, db);
  EXPECT_EQ(code, 1) << log;
  EXPECT_NE(log.find("table instances, row \"web-9999\""), std::string::npos) << log;
  EXPECT_EQ(ReadFileOrDie(db), before) << "the refused database was changed";
}

TEST(DamagedDatabaseTest, AnOverwrittenPageStopsTheControllerBeforeAnyWrite) {
  TempDir dir;
  const std::string db = dir.File("controller.db");
  WriteDatabase(db);
  std::string bytes = ReadFileOrDie(db);
  ASSERT_GT(bytes.size(), 20u * 4096);
  for (size_t k = 12 * 4096; k < 13 * 4096; ++k) bytes[k] = static_cast<char>(k * 7 % 253);
  WriteFileOrDie(db, bytes);
  auto [code, log] = RunController(dir, db);
  EXPECT_EQ(code, 1) << log;
  EXPECT_NE(log.find("is damaged (PRAGMA integrity_check"), std::string::npos) << log;
  EXPECT_EQ(ReadFileOrDie(db), bytes) << "the refused database was changed";
}

}  // namespace
}  // namespace regen
