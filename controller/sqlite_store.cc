// SqliteStore: the only file that includes sqlite3.h. Records are rows keyed by name with their
// fields as JSON (plus the columns an operator greps for: state, host, service).
#include <sqlite3.h>

#include <nlohmann/json.hpp>

#include <algorithm>

#include "controller/store.h"
#include "controller/store_codec.h"

namespace regen {

namespace {

using nlohmann::json;

class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); }
  ~Stmt() { sqlite3_finalize(stmt_); }
  bool ok() const { return rc_ == SQLITE_OK; }
  Stmt& Bind(int i, const std::string& s) {
    sqlite3_bind_text(stmt_, i, s.c_str(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  int Step() { return last_ = sqlite3_step(stmt_); }
  // After a loop of Step() == SQLITE_ROW: an error unless the statement ran to its end (a read
  // that stops early, e.g. SQLITE_BUSY, must not look like fewer rows).
  Status Done(sqlite3* db, const std::string& what) const {
    if (rc_ == SQLITE_OK && last_ == SQLITE_DONE) return Status::Ok();
    return Unavailable("store: reading " + what + ": " + sqlite3_errmsg(db));
  }
  std::string Text(int col) {
    auto* p = sqlite3_column_text(stmt_, col);
    return p ? std::string(reinterpret_cast<const char*>(p),
                           static_cast<size_t>(sqlite3_column_bytes(stmt_, col)))
             : std::string();
  }
  int64_t Int(int col) { return sqlite3_column_int64(stmt_, col); }

 private:
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
  int last_ = SQLITE_OK;
};

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS hosts (name TEXT PRIMARY KEY, state TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS services (name TEXT PRIMARY KEY, version TEXT NOT NULL,
  generation INTEGER NOT NULL, spec_yaml TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS instances (name TEXT PRIMARY KEY, service TEXT NOT NULL,
  host TEXT NOT NULL, state TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS operations (id TEXT PRIMARY KEY, kind TEXT NOT NULL,
  subject TEXT NOT NULL, state TEXT NOT NULL, payload TEXT NOT NULL,
  created_unix_ms INTEGER NOT NULL, updated_unix_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (sequence INTEGER PRIMARY KEY AUTOINCREMENT,
  unix_ms INTEGER NOT NULL, kind TEXT NOT NULL, service TEXT NOT NULL, instance TEXT NOT NULL,
  host TEXT NOT NULL, message TEXT NOT NULL, json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dns_names (zone TEXT NOT NULL, name TEXT NOT NULL,
  PRIMARY KEY (zone, name));
)sql";

class SqliteStore;

class SqliteTxn : public StoreTxn {
 public:
  explicit SqliteTxn(sqlite3* db) : db_(db) {}
  Status PutHost(const HostRecord& h) override {
    return Exec(Stmt(db_, "INSERT OR REPLACE INTO hosts VALUES (?1, ?2, ?3)")
                    .Bind(1, h.name)
                    .Bind(2, std::string(HostStateName(h.state)))
                    .Bind(3, HostToJson(h).dump()),
                "host " + h.name);
  }
  Status PutService(const ServiceRecord& s) override {
    return Exec(Stmt(db_, "INSERT OR REPLACE INTO services VALUES (?1, ?2, ?3, ?4)")
                    .Bind(1, s.name)
                    .Bind(2, s.version)
                    .Bind(3, s.generation)
                    .Bind(4, s.spec_yaml),
                "service " + s.name);
  }
  Status DeleteService(const std::string& name) override {
    return Exec(Stmt(db_, "DELETE FROM services WHERE name = ?1").Bind(1, name), "service " + name);
  }
  Status PutInstance(const InstanceRecord& i) override {
    return Exec(Stmt(db_, "INSERT OR REPLACE INTO instances VALUES (?1, ?2, ?3, ?4, ?5)")
                    .Bind(1, i.name)
                    .Bind(2, i.service)
                    .Bind(3, i.allocation.host)
                    .Bind(4, std::string(InstanceStateName(i.state)))
                    .Bind(5, InstanceToJson(i).dump()),
                "instance " + i.name);
  }
  Status DeleteInstance(const std::string& name) override {
    return Exec(Stmt(db_, "DELETE FROM instances WHERE name = ?1").Bind(1, name),
                "instance " + name);
  }
  Status PutOperation(const OperationRecord& o) override {
    return Exec(Stmt(db_, "INSERT OR REPLACE INTO operations VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
                    .Bind(1, o.id)
                    .Bind(2, o.kind)
                    .Bind(3, o.subject)
                    .Bind(4, o.state)
                    .Bind(5, o.payload_json)
                    .Bind(6, o.created_unix_ms)
                    .Bind(7, o.updated_unix_ms),
                "operation " + o.id);
  }
  Status SetMeta(const std::string& key, const std::string& value) override {
    return Exec(
        Stmt(db_, "INSERT OR REPLACE INTO meta VALUES (?1, ?2)").Bind(1, key).Bind(2, value),
        "meta " + key);
  }
  Status PutDnsName(const std::string& zone, const std::string& name) override {
    return Exec(
        Stmt(db_, "INSERT OR IGNORE INTO dns_names VALUES (?1, ?2)").Bind(1, zone).Bind(2, name),
        "DNS name " + name);
  }
  Status DeleteDnsName(const std::string& zone, const std::string& name) override {
    return Exec(Stmt(db_, "DELETE FROM dns_names WHERE zone = ?1 AND name = ?2")
                    .Bind(1, zone)
                    .Bind(2, name),
                "DNS name " + name);
  }
  Result<int64_t> AppendEvent(EventRecord e) override {
    RETURN_IF_ERROR(Exec(Stmt(db_,
                              "INSERT INTO events (unix_ms, kind, service, instance, host, "
                              "message, json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
                             .Bind(1, e.unix_ms)
                             .Bind(2, std::string(EventKindName(e.kind)))
                             .Bind(3, e.service)
                             .Bind(4, e.instance)
                             .Bind(5, e.host)
                             .Bind(6, e.message)
                             .Bind(7, e.json),
                         std::string("event ") + EventKindName(e.kind)));
    return static_cast<int64_t>(sqlite3_last_insert_rowid(db_));
  }

 private:
  Status Exec(Stmt& stmt, const std::string& what) {
    if (!stmt.ok() || stmt.Step() != SQLITE_DONE) {
      return Internal("store: writing " + what + ": " + sqlite3_errmsg(db_));
    }
    return Status::Ok();
  }
  sqlite3* db_;
};

class SqliteStore : public Store {
 public:
  explicit SqliteStore(sqlite3* db) : db_(db) {}
  ~SqliteStore() override { sqlite3_close(db_); }

  // Every table read to its end, every row decoded, or an error naming the table (and the row):
  // a damaged database never loads as partial state (issue 15, finding 5).
  Result<StoreSnapshot> LoadAll() override {
    StoreSnapshot snap;
    RETURN_IF_ERROR(ReadTable("hosts", "SELECT name, data FROM hosts", [&](Stmt& s) -> Status {
      ASSIGN_OR_RETURN(json j, ParseRecord(s.Text(1), "host " + s.Text(0)));
      ASSIGN_OR_RETURN(snap.hosts[s.Text(0)], HostFromJson(s.Text(0), j));
      return Status::Ok();
    }));
    RETURN_IF_ERROR(
        ReadTable("services", "SELECT name, version, generation, spec_yaml FROM services",
                  [&](Stmt& s) -> Status {
                    snap.services[s.Text(0)] = {s.Text(0), s.Text(3), s.Text(1), s.Int(2)};
                    return Status::Ok();
                  }));
    RETURN_IF_ERROR(
        ReadTable("instances", "SELECT name, data FROM instances", [&](Stmt& s) -> Status {
          ASSIGN_OR_RETURN(json j, ParseRecord(s.Text(1), "instance " + s.Text(0)));
          ASSIGN_OR_RETURN(snap.instances[s.Text(0)], InstanceFromJson(s.Text(0), j));
          return Status::Ok();
        }));
    RETURN_IF_ERROR(ReadTable("operations",
                              "SELECT id, kind, subject, state, payload, created_unix_ms, "
                              "updated_unix_ms FROM operations WHERE state = 'running'",
                              [&](Stmt& s) -> Status {
                                snap.operations[s.Text(0)] = {s.Text(0), s.Text(1), s.Text(2),
                                                              s.Text(4), s.Text(3), s.Int(5),
                                                              s.Int(6)};
                                return Status::Ok();
                              }));
    RETURN_IF_ERROR(ReadTable("meta", "SELECT key, value FROM meta", [&](Stmt& s) -> Status {
      snap.meta[s.Text(0)] = s.Text(1);
      return Status::Ok();
    }));
    RETURN_IF_ERROR(ReadTable("events", "SELECT COALESCE(MAX(sequence), 0) FROM events",
                              [&](Stmt& s) -> Status {
                                snap.last_event_sequence = s.Int(0);
                                return Status::Ok();
                              }));
    return snap;
  }

  Status Transaction(const std::function<Status(StoreTxn&)>& body) override {
    if (sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) {
      return Unavailable(std::string("store: BEGIN: ") + sqlite3_errmsg(db_));
    }
    SqliteTxn txn(db_);
    Status s = body(txn);
    if (!s.ok()) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      return s;
    }
    if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
      Status err = Unavailable(std::string("store: COMMIT: ") + sqlite3_errmsg(db_));
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      return err;
    }
    return Status::Ok();
  }

  Result<std::vector<EventRecord>> EventsAfter(int64_t after, int64_t limit) override {
    std::vector<EventRecord> out;
    Stmt s(db_,
           "SELECT sequence, unix_ms, kind, service, instance, host, message, json "
           "FROM events WHERE sequence > ?1 ORDER BY sequence LIMIT ?2");
    s.Bind(1, after).Bind(2, limit);
    while (s.Step() == SQLITE_ROW) {
      auto kind = ParseEventKind(s.Text(2));
      if (!kind.ok()) return kind.status().WithContext("store: event " + std::to_string(s.Int(0)));
      out.push_back(
          {s.Int(0), s.Int(1), *kind, s.Text(3), s.Text(4), s.Text(5), s.Text(6), s.Text(7)});
    }
    RETURN_IF_ERROR(s.Done(db_, "events"));
    return out;
  }

  Result<std::set<std::string>> DnsNames(const std::string& zone) override {
    std::set<std::string> out;
    Stmt s(db_, "SELECT name FROM dns_names WHERE zone = ?1");
    if (!s.ok()) return Internal(std::string("store: reading DNS names: ") + sqlite3_errmsg(db_));
    s.Bind(1, zone);
    int rc;
    while ((rc = s.Step()) == SQLITE_ROW) out.insert(s.Text(0));
    if (rc != SQLITE_DONE) {
      return Internal(std::string("store: reading DNS names: ") + sqlite3_errmsg(db_));
    }
    return out;
  }

  Result<std::optional<OperationRecord>> FindOperation(const std::string& id) override {
    Stmt s(db_,
           "SELECT id, kind, subject, state, payload, created_unix_ms, updated_unix_ms "
           "FROM operations WHERE id = ?1");
    s.Bind(1, id);
    if (int rc = s.Step(); rc != SQLITE_ROW) {
      if (rc == SQLITE_DONE) return std::optional<OperationRecord>();
      return Unavailable("store: reading operation " + id + ": " + sqlite3_errmsg(db_));
    }
    return std::optional<OperationRecord>(
        OperationRecord{s.Text(0), s.Text(1), s.Text(2), s.Text(4), s.Text(3), s.Int(5), s.Int(6)});
  }

 private:
  // Runs `sql`, hands every row to `row`; an error from `row` (a row that does not decode) or from
  // SQLite (SQLITE_CORRUPT, SQLITE_IOERR, SQLITE_BUSY...: anything but ROW and DONE) names the
  // table. Nothing is thrown (the decoders catch their own).
  Status ReadTable(const char* table, const char* sql, const std::function<Status(Stmt&)>& row) {
    Stmt s(db_, sql);
    if (!s.ok()) {
      return Internal(std::string("store: table ") + table + ": " + sqlite3_errmsg(db_) +
                      " (the database file is damaged or not Regen's)");
    }
    while (s.Step() == SQLITE_ROW) {
      Status st = row(s);
      if (!st.ok()) {
        return st.WithContext(std::string("store: table ") + table + ", row \"" + s.Text(0) + "\"");
      }
    }
    return s.Done(db_, std::string("table ") + table);
  }

  sqlite3* db_;
};

// PRAGMA integrity_check: "ok", or up to 10 lines of what is damaged (btree pages, indexes,
// rows out of order). Measured: 370 ms for 200k instance rows (64 MiB) on a busy 2-core machine
// (sqlite_store_test IntegrityCheckFigure), so the full check runs at every open, not quick_check.
Status CheckIntegrity(sqlite3* db, const std::string& path) {
  Stmt s(db, "PRAGMA integrity_check(10)");
  std::string problems;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    std::string line = s.Text(0);
    if (line == "ok") continue;
    std::replace(line.begin(), line.end(), '\n', ' ');  // one log line
    problems += (problems.empty() ? "" : "; ") + line;
  }
  if (!s.ok() || rc != SQLITE_DONE)
    problems += (problems.empty() ? "" : "; ") + std::string(sqlite3_errmsg(db));
  if (problems.empty()) return Status::Ok();
  return Internal(
      "state database " + path + " is damaged (PRAGMA integrity_check: " + problems +
      "); refusing to start: restore a backup, or salvage it with the sqlite3 shell's .recover");
}

}  // namespace

Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK) {
    std::string err = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return Unavailable("cannot open state database " + path + ": " + err);
  }
  // Another connection holding the write lock (a backup, an sqlite3 shell) is waited for up to
  // 10 s: the agents' leases do not depend on the main loop, so a slow write costs no VM; a write
  // refused after that ends the process (ClusterState::Commit).
  sqlite3_busy_timeout(db, 10000);
  // A damaged file is refused before anything is written to it (not even the schema).
  if (Status s = CheckIntegrity(db, path); !s.ok()) {
    sqlite3_close(db);
    return s;
  }
  char* err = nullptr;
  for (const char* sql :
       {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON", kSchema}) {
    if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "unknown error";
      sqlite3_free(err);
      sqlite3_close(db);
      return Unavailable("cannot initialise state database " + path + ": " + msg);
    }
  }
  return std::unique_ptr<Store>(new SqliteStore(db));
}

}  // namespace regen
