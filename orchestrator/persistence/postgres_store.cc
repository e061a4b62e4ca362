#include "orchestrator/persistence/postgres_store.h"

#include <libpq-fe.h>

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "orchestrator/persistence/batch_validation.h"

namespace kiln::orchestrator {
namespace {

// Serialises schema creation between orchestrators opening one empty database at once
// (CREATE TABLE IF NOT EXISTS races otherwise). Any constant: "kiln" in ASCII.
constexpr int64_t kSchemaLockId = 0x6b696c6e;
// A session that sits inside a transaction longer than this is ended by the server, so that a
// paused or wedged process cannot hold locks (later: the shard fence row) indefinitely.
constexpr const char* kIdleInTransactionTimeout = "30s";

// The SQLSTATE kiln_check_fence raises when a shard's range moved ("KL": Kiln's own class).
constexpr const char* kFencedSqlState = "KL001";

std::string SqlTable(Table table) { return absl::StrCat("kiln_", TableName(table)); }

std::string ResultError(const PGresult* result, PGconn* conn) {
  const char* message = result ? PQresultErrorMessage(result) : PQerrorMessage(conn);
  std::string text = message ? message : "";
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text.empty() ? "no result (connection lost?)" : text;
}

// The status a failed statement maps to. Connection trouble, a server shutting down and a full
// disk (SQLSTATE classes 08, 57P, 53) are kUnavailable: the call may succeed later.
absl::Status StatementError(const PGresult* result, PGconn* conn, const char* what) {
  std::string message = absl::StrCat("postgres: ", what, ": ", ResultError(result, conn));
  if (PQstatus(conn) == CONNECTION_BAD || result == nullptr) {
    return absl::UnavailableError(message);
  }
  const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
  std::string_view sqlstate = state ? state : "";
  if (sqlstate.substr(0, 2) == "08" || sqlstate.substr(0, 3) == "57P" ||
      sqlstate.substr(0, 2) == "53") {
    return absl::UnavailableError(message);
  }
  if (sqlstate == "40001" || sqlstate == "40P01") return absl::AbortedError(message);
  if (sqlstate == kFencedSqlState) return absl::FailedPreconditionError(message);
  return absl::InternalError(message);
}

struct ResultDeleter {
  void operator()(PGresult* result) const { PQclear(result); }
};
using Result = std::unique_ptr<PGresult, ResultDeleter>;

Result Exec(PGconn* conn, const std::string& sql) { return Result(PQexec(conn, sql.c_str())); }

bool Ok(const Result& result) {
  if (!result) return false;
  ExecStatusType status = PQresultStatus(result.get());
  return status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK;
}

std::string PutStatement(Table table) { return absl::StrCat("put_", TableName(table)); }
std::string DeleteStatement(Table table) { return absl::StrCat("delete_", TableName(table)); }
std::string GetStatement(Table table) { return absl::StrCat("get_", TableName(table)); }

// The schema of version 1: a table per Store table, the shards with their range ids, and the
// fence check, which locks the shard row FOR SHARE until the transaction ends, so that a
// takeover (an UPDATE of the row) waits for commits in flight and every later commit sees it.
std::string CreateTablesSql() {
  std::string sql = absl::StrCat(
      "CREATE TABLE IF NOT EXISTS kiln_shards (shard_id integer PRIMARY KEY, "
      "range_id bigint NOT NULL, owner text NOT NULL);"
      "CREATE OR REPLACE FUNCTION kiln_check_fence(shard integer, expected bigint) "
      "RETURNS void LANGUAGE plpgsql AS $$ DECLARE current bigint; BEGIN "
      "SELECT range_id INTO current FROM kiln_shards WHERE shard_id = shard FOR SHARE; "
      "IF current IS DISTINCT FROM expected THEN "
      "RAISE EXCEPTION 'kiln: shard % is at range %; this writer holds range %', shard, "
      "current, expected USING ERRCODE = '",
      kFencedSqlState, "'; END IF; END $$;");
  for (int t = 0; t < kTableCount; ++t) {
    absl::StrAppend(&sql, "CREATE TABLE IF NOT EXISTS ", SqlTable(static_cast<Table>(t)),
                    " (k bytea PRIMARY KEY, v bytea NOT NULL);");
  }
  return sql;
}

// Opens a connection with bounds on waiting for an unreachable or silent server (libpq waits
// forever by default): 5 s to connect, TCP keepalives after 10 s idle, and 30 s for sent data to
// be acknowledged. A value in `conninfo` wins: libpq uses the last of repeated keywords, and the
// URI's own are expanded in place of `dbname`, after these.
PGconn* ConnectWithDefaults(const std::string& conninfo) {
  const char* keywords[] = {"connect_timeout",
                            "keepalives_idle",
                            "keepalives_interval",
                            "keepalives_count",
                            "tcp_user_timeout",
                            "dbname",
                            nullptr};
  const char* values[] = {"5", "10", "5", "3", "30000", conninfo.c_str(), nullptr};
  return PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
}

void IgnoreNotice(void*, const char*) {}

absl::Status CreateOrCheckSchema(PGconn* conn) {
  // The server's notices ("relation already exists, skipping") are not errors: not for stderr.
  PQsetNoticeProcessor(conn, IgnoreNotice, nullptr);
  Result begin = Exec(conn, absl::StrCat("BEGIN; SELECT pg_advisory_xact_lock(", kSchemaLockId,
                                         "); CREATE TABLE IF NOT EXISTS kiln_schema "
                                         "(version integer NOT NULL)"));
  if (!Ok(begin)) return StatementError(begin.get(), conn, "creating kiln_schema");
  Result version = Exec(conn, "SELECT max(version) FROM kiln_schema");
  if (!Ok(version)) return StatementError(version.get(), conn, "reading the schema version");
  if (PQgetisnull(version.get(), 0, 0)) {
    Result created =
        Exec(conn, absl::StrCat(CreateTablesSql(), "INSERT INTO kiln_schema (version) VALUES (",
                                PostgresStore::kSchemaVersion, ")"));
    if (!Ok(created)) return StatementError(created.get(), conn, "creating the schema");
  } else {
    int found = 0;
    if (!absl::SimpleAtoi(PQgetvalue(version.get(), 0, 0), &found) ||
        found != PostgresStore::kSchemaVersion) {
      Exec(conn, "ROLLBACK");
      return absl::FailedPreconditionError(absl::StrCat(
          "postgres: the database's kiln schema is version ", PQgetvalue(version.get(), 0, 0),
          "; this orchestrator reads and writes version ", PostgresStore::kSchemaVersion,
          found > PostgresStore::kSchemaVersion
              ? ": the database was written by a newer Kiln; run that version (or newer)"
              : ": no migration from it exists"));
    }
  }
  Result commit = Exec(conn, "COMMIT");
  if (!Ok(commit)) return StatementError(commit.get(), conn, "committing the schema");
  return absl::OkStatus();
}

// Per connection: the session settings and the statements every call uses, in one round trip.
absl::Status PrepareSession(PGconn* conn) {
  std::string sql =
      absl::StrCat("SET idle_in_transaction_session_timeout = '", kIdleInTransactionTimeout, "';",
                   "PREPARE fence (integer, bigint) AS SELECT kiln_check_fence($1, $2);");
  for (int t = 0; t < kTableCount; ++t) {
    auto table = static_cast<Table>(t);
    absl::StrAppend(&sql, "PREPARE ", PutStatement(table), " (bytea, bytea) AS INSERT INTO ",
                    SqlTable(table),
                    " (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = ", "EXCLUDED.v;");
    absl::StrAppend(&sql, "PREPARE ", DeleteStatement(table), " (bytea) AS DELETE FROM ",
                    SqlTable(table), " WHERE k = $1;");
    absl::StrAppend(&sql, "PREPARE ", GetStatement(table), " (bytea) AS SELECT v FROM ",
                    SqlTable(table), " WHERE k = $1;");
  }
  Result prepared = Exec(conn, sql);
  if (!Ok(prepared)) return StatementError(prepared.get(), conn, "preparing statements");
  return absl::OkStatus();
}

// Sends one prepared statement with binary bytea parameters.
bool SendPrepared(PGconn* conn, const std::string& name, std::string_view key,
                  const std::string* value) {
  const char* values[2] = {key.data(), value ? value->data() : nullptr};
  int lengths[2] = {static_cast<int>(key.size()), value ? static_cast<int>(value->size()) : 0};
  int formats[2] = {1, 1};
  return PQsendQueryPrepared(conn, name.c_str(), value ? 2 : 1, values, lengths, formats, 1) == 1;
}

bool SendFence(PGconn* conn, const ShardFence& fence) {
  std::string shard = absl::StrCat(fence.shard_id);
  std::string range = absl::StrCat(fence.range_id);
  const char* values[2] = {shard.c_str(), range.c_str()};
  return PQsendQueryPrepared(conn, "fence", 2, values, nullptr, nullptr, 0) == 1;
}

bool SendSql(PGconn* conn, const char* sql) {
  return PQsendQueryParams(conn, sql, 0, nullptr, nullptr, nullptr, nullptr, 0) == 1;
}

// What became of a batch's COMMIT.
enum class CommitOutcome { kNotSent, kSentUnconfirmed, kCommitted, kFailed };

// Reads the results of one pipeline chunk, up to and including its sync. `commit_index`, when
// in this chunk, is the position of COMMIT among the chunk's statements. Returns the first
// error, or OK when every statement succeeded.
absl::Status ReadChunk(PGconn* conn, size_t statements, std::optional<size_t> commit_index,
                       CommitOutcome* outcome) {
  absl::Status first_error;
  for (size_t i = 0; i < statements; ++i) {
    Result result(PQgetResult(conn));
    if (!result) {
      // The connection ended (or libpq lost track): every later result is gone too.
      return StatementError(nullptr, conn, "pipeline");
    }
    ExecStatusType status = PQresultStatus(result.get());
    const bool ok = status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK;
    if (commit_index && i == *commit_index) {
      *outcome = ok ? CommitOutcome::kCommitted : CommitOutcome::kFailed;
    }
    if (!ok && first_error.ok()) {
      first_error = status == PGRES_PIPELINE_ABORTED
                        ? absl::InternalError("postgres: pipeline aborted")
                        : StatementError(result.get(), conn, "commit");
    }
    // Each statement's results end with a null.
    while (Result extra{PQgetResult(conn)}) {
    }
  }
  Result sync(PQgetResult(conn));
  if (!sync || PQresultStatus(sync.get()) != PGRES_PIPELINE_SYNC) {
    return first_error.ok() ? StatementError(sync.get(), conn, "pipeline sync") : first_error;
  }
  return first_error;
}

}  // namespace

// A pooled connection returned on destruction.
class PostgresStore::Lease {
 public:
  Lease(PostgresStore& store, PGconn* conn) : store_(store), conn_(conn) {}
  ~Lease() { store_.Release(conn_); }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  PGconn* get() const { return conn_; }

 private:
  PostgresStore& store_;
  PGconn* conn_;
};

PostgresStore::PostgresStore(std::string conninfo, const PostgresStoreOptions& options)
    : conninfo_(std::move(conninfo)), options_(options) {}

absl::StatusOr<std::unique_ptr<PostgresStore>> PostgresStore::Open(
    const std::string& conninfo, const PostgresStoreOptions& options) {
  if (options.max_connections < 1) {
    return absl::InvalidArgumentError("postgres: max_connections must be at least 1");
  }
  std::unique_ptr<PostgresStore> store(new PostgresStore(conninfo, options));
  PGconn* conn = ConnectWithDefaults(conninfo);
  if (PQstatus(conn) != CONNECTION_OK) {
    absl::Status status = absl::UnavailableError(
        absl::StrCat("postgres: cannot connect: ", ResultError(nullptr, conn)));
    PQfinish(conn);
    return status;
  }
  absl::Status schema = CreateOrCheckSchema(conn);
  PQfinish(conn);
  if (!schema.ok()) return schema;
  // The first pooled connection, so that a store that opened can serve its first call.
  absl::StatusOr<PGconn*> first = store->Acquire();
  if (!first.ok()) return first.status();
  store->Release(*first);
  return store;
}

PostgresStore::~PostgresStore() {
  absl::MutexLock lock(&mu_);
  for (PGconn* conn : idle_) PQfinish(conn);
}

absl::StatusOr<PGconn*> PostgresStore::Connect() {
  PGconn* conn = ConnectWithDefaults(conninfo_);
  if (PQstatus(conn) != CONNECTION_OK) {
    absl::Status status = absl::UnavailableError(
        absl::StrCat("postgres: cannot connect: ", ResultError(nullptr, conn)));
    PQfinish(conn);
    return status;
  }
  if (absl::Status prepared = PrepareSession(conn); !prepared.ok()) {
    PQfinish(conn);
    return prepared;
  }
  return conn;
}

absl::StatusOr<PGconn*> PostgresStore::Acquire() {
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &PostgresStore::CanAcquire));
    if (!idle_.empty()) {
      PGconn* conn = idle_.back();
      idle_.pop_back();
      return conn;
    }
    ++open_;
  }
  absl::StatusOr<PGconn*> conn = Connect();
  if (!conn.ok()) {
    {
      absl::MutexLock lock(&mu_);
      --open_;
    }
    if (absl::IsUnavailable(conn.status())) Unwritable(std::string(conn.status().message()));
  }
  return conn;
}

bool PostgresStore::CanAcquire() const {
  return !idle_.empty() || open_ < options_.max_connections;
}

void PostgresStore::Release(PGconn* conn) {
  bool broken = PQstatus(conn) != CONNECTION_OK || PQtransactionStatus(conn) != PQTRANS_IDLE;
  if (broken) PQfinish(conn);
  absl::MutexLock lock(&mu_);
  if (broken) {
    --open_;
  } else {
    idle_.push_back(conn);
  }
}

absl::Status PostgresStore::Failed(PGconn* conn, absl::Status status) {
  if (PQstatus(conn) != CONNECTION_BAD && !absl::IsUnavailable(status)) return status;
  std::vector<PGconn*> stale;
  {
    absl::MutexLock lock(&mu_);
    stale.swap(idle_);
    open_ -= static_cast<int>(stale.size());
  }
  for (PGconn* idle : stale) PQfinish(idle);
  Unwritable(std::string(status.message()));
  return status;
}

void PostgresStore::Unwritable(std::string reason) {
  StoreHealth changed;
  {
    absl::MutexLock lock(&mu_);
    if (!health_.writable) return;
    health_ = {false, std::move(reason), absl::Now()};
    changed = health_;
  }
  if (options_.on_health_change) options_.on_health_change(changed);
}

void PostgresStore::Succeeded() {
  {
    absl::MutexLock lock(&mu_);
    if (health_.writable) return;
    health_ = {};
  }
  if (options_.on_health_change) options_.on_health_change(StoreHealth{});
}

absl::Status PostgresStore::Commit(const WriteBatch& batch) {
  if (absl::Status valid = ValidateBatch(batch); !valid.ok()) return valid;
  if (batch.empty() && batch.fences().empty()) return absl::OkStatus();
  absl::StatusOr<PGconn*> acquired = Acquire();
  if (!acquired.ok()) return acquired.status();
  Lease lease(*this, *acquired);
  PGconn* conn = lease.get();
  if (PQenterPipelineMode(conn) != 1) {
    return Failed(conn, StatementError(nullptr, conn, "entering pipeline mode"));
  }
  absl::Status status;
  CommitOutcome outcome = CommitOutcome::kNotSent;
  const auto& ops = batch.ops();
  size_t next = 0;
  bool first_chunk = true;
  while (status.ok()) {
    size_t statements = 0;
    bool sent = true;
    if (first_chunk) {
      sent = SendSql(conn, "BEGIN");
      ++statements;
      if (sent && !batch.sync()) {
        sent = SendSql(conn, "SET LOCAL synchronous_commit = off");
        ++statements;
      }
      for (const ShardFence& fence : batch.fences()) {
        if (!sent) break;
        sent = SendFence(conn, fence);
        ++statements;
      }
    }
    size_t chunk_end = std::min(ops.size(), next + kOpsPerRoundTrip);
    for (; sent && next < chunk_end; ++next) {
      const WriteBatch::Op& op = ops[next];
      sent = op.type == WriteBatch::OpType::kPut
                 ? SendPrepared(conn, PutStatement(op.table), op.key, &op.value)
                 : SendPrepared(conn, DeleteStatement(op.table), op.key, nullptr);
      ++statements;
    }
    std::optional<size_t> commit_index;
    const bool last_chunk = next == ops.size();
    if (sent && last_chunk) {
      sent = SendSql(conn, "COMMIT");
      commit_index = statements++;
      if (sent) outcome = CommitOutcome::kSentUnconfirmed;
    }
    if (!sent || PQpipelineSync(conn) != 1) {
      status = StatementError(nullptr, conn, "sending the batch");
      break;
    }
    status = ReadChunk(conn, statements, commit_index, &outcome);
    first_chunk = false;
    if (last_chunk) break;
  }
  if (PQstatus(conn) == CONNECTION_OK) {
    if (PQexitPipelineMode(conn) != 1) {
      status.Update(StatementError(nullptr, conn, "leaving pipeline mode"));
    }
    // After an error the transaction is left aborted; end it so the connection can go back.
    if (PQtransactionStatus(conn) != PQTRANS_IDLE) Exec(conn, "ROLLBACK");
  }
  // The server answered COMMIT: the batch is in, whatever came after (the sync's answer).
  if (outcome == CommitOutcome::kCommitted) status = absl::OkStatus();
  if (!status.ok()) {
    if (outcome == CommitOutcome::kSentUnconfirmed) {
      status = absl::UnavailableError(
          absl::StrCat("postgres: outcome unknown (the connection ended after COMMIT was sent): ",
                       status.message()));
    }
    return Failed(conn, status);
  }
  Succeeded();
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::string>> PostgresStore::Get(Table table, std::string_view key) {
  if (!IsKnownTable(table)) return absl::InvalidArgumentError("unknown table");
  absl::StatusOr<PGconn*> acquired = Acquire();
  if (!acquired.ok()) return acquired.status();
  Lease lease(*this, *acquired);
  PGconn* conn = lease.get();
  const char* values[1] = {key.data()};
  int lengths[1] = {static_cast<int>(key.size())};
  int formats[1] = {1};
  Result result(PQexecPrepared(conn, GetStatement(table).c_str(), 1, values, lengths, formats, 1));
  if (!Ok(result)) return Failed(conn, StatementError(result.get(), conn, "get"));
  Succeeded();
  if (PQntuples(result.get()) == 0) return std::nullopt;
  return std::string(PQgetvalue(result.get(), 0, 0), PQgetlength(result.get(), 0, 0));
}

absl::Status PostgresStore::Scan(Table table, std::string_view start, std::string_view end,
                                 size_t limit, const ScanVisitor& visit) {
  return ScanRows(table, start, end, limit, /*reverse=*/false, visit);
}

absl::Status PostgresStore::ReverseScan(Table table, std::string_view start, std::string_view end,
                                        size_t limit, const ScanVisitor& visit) {
  return ScanRows(table, start, end, limit, /*reverse=*/true, visit);
}

absl::Status PostgresStore::ScanRows(Table table, std::string_view start, std::string_view end,
                                     size_t limit, bool reverse, const ScanVisitor& visit) {
  if (!IsKnownTable(table)) return absl::InvalidArgumentError("unknown table");
  std::string sql = absl::StrCat("SELECT k, v FROM ", SqlTable(table), " WHERE k >= $1");
  if (!end.empty()) absl::StrAppend(&sql, " AND k < $2");
  absl::StrAppend(&sql, " ORDER BY k", reverse ? " DESC" : "");
  if (limit > 0) absl::StrAppend(&sql, " LIMIT ", limit);
  Result result;
  {
    absl::StatusOr<PGconn*> acquired = Acquire();
    if (!acquired.ok()) return acquired.status();
    Lease lease(*this, *acquired);
    PGconn* conn = lease.get();
    const char* values[2] = {start.data(), end.data()};
    int lengths[2] = {static_cast<int>(start.size()), static_cast<int>(end.size())};
    int formats[2] = {1, 1};
    result.reset(
        PQexecParams(conn, sql.c_str(), end.empty() ? 1 : 2, nullptr, values, lengths, formats, 1));
    if (!Ok(result)) return Failed(conn, StatementError(result.get(), conn, "scan"));
  }
  Succeeded();
  // The connection is back in the pool: the visitor may call the store.
  const int rows = PQntuples(result.get());
  for (int row = 0; row < rows; ++row) {
    std::string_view key(PQgetvalue(result.get(), row, 0), PQgetlength(result.get(), row, 0));
    std::string_view value(PQgetvalue(result.get(), row, 1), PQgetlength(result.get(), row, 1));
    if (!visit(key, value)) break;
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> PostgresStore::AcquireShard(int32_t shard_id, const std::string& owner) {
  absl::StatusOr<PGconn*> acquired = Acquire();
  if (!acquired.ok()) return acquired.status();
  Lease lease(*this, *acquired);
  PGconn* conn = lease.get();
  std::string shard = absl::StrCat(shard_id);
  const char* values[2] = {shard.c_str(), owner.c_str()};
  // The UPDATE locks the row: it waits for every commit holding it FOR SHARE (in flight under
  // the old range), and every commit after it sees the new range.
  Result result(PQexecParams(
      conn,
      "INSERT INTO kiln_shards (shard_id, range_id, owner) VALUES ($1::integer, 1, $2) "
      "ON CONFLICT (shard_id) DO UPDATE SET range_id = kiln_shards.range_id + 1, "
      "owner = EXCLUDED.owner RETURNING range_id",
      2, nullptr, values, nullptr, nullptr, 0));
  if (!Ok(result)) return Failed(conn, StatementError(result.get(), conn, "acquiring a shard"));
  Succeeded();
  int64_t range_id = 0;
  if (PQntuples(result.get()) != 1 ||
      !absl::SimpleAtoi(PQgetvalue(result.get(), 0, 0), &range_id)) {
    return absl::InternalError("postgres: acquiring a shard returned no range id");
  }
  return range_id;
}

uint64_t PostgresStore::ApproximateSize() {
  std::string sql = "SELECT (0";
  for (int t = 0; t < kTableCount; ++t) {
    absl::StrAppend(&sql, " + pg_total_relation_size('", SqlTable(static_cast<Table>(t)), "')");
  }
  absl::StrAppend(&sql, " + pg_total_relation_size('kiln_shards')");
  absl::StrAppend(&sql, ")::text");
  absl::StatusOr<PGconn*> acquired = Acquire();
  if (!acquired.ok()) return 0;
  Lease lease(*this, *acquired);
  PGconn* conn = lease.get();
  Result result = Exec(conn, sql);
  if (!Ok(result)) {
    Failed(conn, StatementError(result.get(), conn, "size")).IgnoreError();
    return 0;
  }
  uint64_t size = 0;
  if (!absl::SimpleAtoi(PQgetvalue(result.get(), 0, 0), &size)) return 0;
  return size;
}

StoreHealth PostgresStore::Health() {
  {
    absl::MutexLock lock(&mu_);
    if (health_.writable) return health_;
  }
  // Unwritable: find out whether the server is back (a connection that answers).
  absl::StatusOr<PGconn*> acquired = Acquire();
  if (acquired.ok()) {
    Lease lease(*this, *acquired);
    Result result = Exec(lease.get(), "SELECT 1");
    if (Ok(result)) {
      Succeeded();
    } else {
      Failed(lease.get(), StatementError(result.get(), lease.get(), "health check")).IgnoreError();
    }
  }
  absl::MutexLock lock(&mu_);
  return health_;
}

}  // namespace kiln::orchestrator
