#include "orchestrator/persistence/postgres_store.h"

#include <libpq-fe.h>

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/fiber.h"
#include "common/status.h"
#include "orchestrator/persistence/batch_validation.h"
#include "orchestrator/persistence/keys.h"

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

absl::Status CreateOrCheckSchema(PGconn* conn, int* found_version) {
  // The server's notices ("relation already exists, skipping") are not errors: not for stderr.
  PQsetNoticeProcessor(conn, IgnoreNotice, nullptr);
  Result begin = Exec(conn, absl::StrCat("BEGIN; SELECT pg_advisory_xact_lock(", kSchemaLockId,
                                         "); CREATE TABLE IF NOT EXISTS kiln_schema "
                                         "(version integer NOT NULL)"));
  if (!Ok(begin)) return StatementError(begin.get(), conn, "creating kiln_schema");
  Result version = Exec(conn, "SELECT max(version) FROM kiln_schema");
  if (!Ok(version)) return StatementError(version.get(), conn, "reading the schema version");
  *found_version = 0;
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
      *found_version = found;
      return absl::FailedPreconditionError(absl::StrCat(
          "postgres: the database's kiln schema is version ", PQgetvalue(version.get(), 0, 0),
          "; this orchestrator reads and writes version ", PostgresStore::kSchemaVersion,
          found > PostgresStore::kSchemaVersion
              ? ": the database was written by a newer Kiln; run that version (or newer)"
              : ": no migration from it exists"));
    }
    *found_version = found;
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
// error (its statement's position in `failed_index`), or OK when every statement succeeded.
absl::Status ReadChunk(PGconn* conn, size_t statements, std::optional<size_t> commit_index,
                       CommitOutcome* outcome, size_t* failed_index) {
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
      *failed_index = i;
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

// One queued commit; lives on its caller's stack until a writer answers it.
struct PostgresStore::Committer {
  const WriteBatch* batch = nullptr;
  absl::Status status;
  fiber::Waiter done;
};

// One read queued for the reader threads; lives on its caller's stack until a reader has run it.
struct PostgresStore::QueuedRead {
  absl::FunctionRef<void()> read;
  fiber::Waiter done;
};

// What became of one transaction.
struct PostgresStore::GroupResult {
  absl::Status status;
  // The store's own claim failed its fence (nothing applied).
  bool claim_fenced = false;
  // COMMIT was sent and no answer came: the transaction may or may not have committed.
  bool outcome_unknown = false;
  // A statement of one member failed (nothing applied): worth retrying member by member.
  bool member_failed = false;
};

PostgresStore::PostgresStore(std::string conninfo, const PostgresStoreOptions& options)
    : conninfo_(std::move(conninfo)), options_(options) {}

absl::StatusOr<std::unique_ptr<PostgresStore>> PostgresStore::Open(
    const std::string& conninfo, const PostgresStoreOptions& options) {
  if (options.max_connections < 1) {
    return absl::InvalidArgumentError("postgres: max_connections must be at least 1");
  }
  if (options.writer_threads < 1) {
    return absl::InvalidArgumentError("postgres: writer_threads must be at least 1");
  }
  if (options.reader_threads < 0 || options.max_queued_reads < 1) {
    return absl::InvalidArgumentError(
        "postgres: reader_threads must be at least 0 and max_queued_reads at least 1");
  }
  std::unique_ptr<PostgresStore> store(new PostgresStore(conninfo, options));
  // The schema is created (or checked) on its own connection, as `migrate` does it.
  if (absl::StatusOr<int> schema = Migrate(conninfo); !schema.ok()) return schema.status();
  // The first pooled connection, so that a store that opened can serve its first call.
  absl::StatusOr<PGconn*> first = store->Acquire();
  if (!first.ok()) return first.status();
  store->Release(*first);
  if (!options.owner.empty()) {
    // Waits for a previous owner's commits in flight; its later ones fail their fence.
    absl::StatusOr<int64_t> range = store->AcquireShard(kStoreShard, options.owner);
    if (!range.ok()) return range.status();
    absl::MutexLock lock(&store->mu_);
    store->claim_range_ = *range;
  }
  for (int i = 0; i < options.writer_threads; ++i) {
    store->writers_.emplace_back([s = store.get()] { s->WriterLoop(); });
  }
  for (int i = 0; i < options.reader_threads; ++i) {
    store->readers_.emplace_back([s = store.get()] { s->ReaderLoop(); });
  }
  return store;
}

absl::StatusOr<int> PostgresStore::Migrate(const std::string& conninfo) {
  PGconn* conn = ConnectWithDefaults(conninfo);
  if (PQstatus(conn) != CONNECTION_OK) {
    absl::Status status = absl::UnavailableError(
        absl::StrCat("postgres: cannot connect: ", ResultError(nullptr, conn)));
    PQfinish(conn);
    return status;
  }
  int found_version = 0;
  absl::Status schema = CreateOrCheckSchema(conn, &found_version);
  PQfinish(conn);
  if (!schema.ok()) return schema;
  return found_version;
}

PostgresStore::~PostgresStore() {
  {
    absl::MutexLock lock(&reads_mu_);
    reads_stopping_ = true;
    for (fiber::Waiter* waiting : waiting_for_room_) waiting->Notify();
    waiting_for_room_.clear();
  }
  for (std::thread& reader : readers_) reader.join();
  {
    absl::MutexLock lock(&queue_mu_);
    stopping_ = true;
  }
  for (std::thread& writer : writers_) writer.join();
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
    if (health_.writable || !fenced_out_.empty()) return;
    health_ = {};
  }
  if (options_.on_health_change) options_.on_health_change(StoreHealth{});
}

absl::Status PostgresStore::Commit(const WriteBatch& batch) {
  return CommitOverlapped(batch, [] {});
}

absl::Status PostgresStore::CommitOverlapped(const WriteBatch& batch,
                                             absl::FunctionRef<void()> meanwhile) {
  if (absl::Status valid = ValidateBatch(batch); !valid.ok()) return valid;
  if (batch.empty() && batch.fences().empty()) {
    meanwhile();
    return absl::OkStatus();
  }
  Committer self;
  self.batch = &batch;
  {
    absl::MutexLock lock(&queue_mu_);
    if (stopping_) return absl::UnavailableError("postgres: the store is closing");
    ++commits_;
    queued_.push_back(&self);
  }
  // The writer may take the batch (and even commit it) meanwhile: `done` keeps its notice.
  meanwhile();
  absl::MutexLock lock(&queue_mu_);
  self.done.Wait(&queue_mu_);
  return self.status;
}

void PostgresStore::Read(absl::FunctionRef<void()> read) {
  // A caller that may not park would only block on the queue instead of the socket.
  if (readers_.empty() || !fiber::CanPark()) return read();
  QueuedRead queued{read, {}};
  absl::ReleasableMutexLock lock(&reads_mu_);
  while (!reads_stopping_ && reads_.size() >= options_.max_queued_reads) {
    fiber::Waiter room;
    waiting_for_room_.push_back(&room);
    room.Wait(&reads_mu_);
  }
  if (reads_stopping_) {
    // Closing: the readers may have gone. (Only a caller racing the destructor gets here.)
    lock.Release();
    return read();
  }
  reads_.push_back(&queued);
  ++parked_reads_;
  queued.done.Wait(&reads_mu_);
}

void PostgresStore::ReaderLoop() {
  for (;;) {
    QueuedRead* next = nullptr;
    {
      absl::MutexLock lock(&reads_mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(reads_mu_) {
        return reads_stopping_ || !reads_.empty();
      };
      reads_mu_.Await(absl::Condition(&ready));
      if (reads_.empty()) return;  // Stopping, every queued read answered.
      next = reads_.front();
      reads_.pop_front();
      if (!waiting_for_room_.empty()) {
        waiting_for_room_.front()->Notify();
        waiting_for_room_.pop_front();
      }
    }
    next->read();
    absl::MutexLock lock(&reads_mu_);
    // The caller may return (and free `next`) once the lock is released.
    next->done.Notify();
  }
}

void PostgresStore::WriterLoop() {
  std::vector<Committer*> group;
  for (;;) {
    group.clear();
    {
      absl::MutexLock lock(&queue_mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_) {
        return stopping_ || !queued_.empty();
      };
      queue_mu_.Await(absl::Condition(&ready));
      if (queued_.empty()) return;  // Stopping, every commit answered.
      size_t bytes = 0;
      size_t take = 0;
      while (take < queued_.size() && take < kMaxGroupCommits &&
             (take == 0 || bytes + queued_[take]->batch->bytes() <= kMaxGroupBytes)) {
        bytes += queued_[take]->batch->bytes();
        ++take;
      }
      group.assign(queued_.begin(), queued_.begin() + static_cast<ptrdiff_t>(take));
      queued_.erase(queued_.begin(), queued_.begin() + static_cast<ptrdiff_t>(take));
    }
    WriteGroup(group);
    absl::MutexLock lock(&queue_mu_);
    // A committer may return (and free its Committer) once the lock is released: nothing
    // touches a group member after this loop.
    for (Committer* c : group) c->done.Notify();
  }
}

void PostgresStore::WriteGroup(const std::vector<Committer*>& group) {
  std::vector<const WriteBatch*> batches;
  batches.reserve(group.size());
  for (const Committer* c : group) batches.push_back(c->batch);
  // A renewal of the claim this transaction raced with fails its fence without anything applied:
  // once more with the new range.
  GroupResult result;
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (absl::Status settled = SettleClaim(/*for_read=*/false); !settled.ok()) {
      for (Committer* c : group) c->status = settled;
      return;
    }
    int64_t range = 0;
    {
      absl::MutexLock lock(&mu_);
      range = claim_range_;
      ++stats_.groups;
    }
    result = Transaction(batches, range);
    if (!result.claim_fenced) break;
    absl::MutexLock lock(&mu_);
    if (claim_range_ == range) break;  // Not our own renewal: another owner took the store.
  }
  if (result.claim_fenced) {
    FencedOut(std::string(result.status.message()));
    absl::Status lost = absl::UnavailableError(absl::StrCat(
        "postgres: another orchestrator took this database over; this one no longer writes: ",
        result.status.message()));
    for (Committer* c : group) c->status = lost;
    return;
  }
  if (result.member_failed && group.size() > 1) {
    // One member's statement failed and took the group's transaction with it: each member
    // alone, so that only the failing one fails.
    {
      absl::MutexLock lock(&mu_);
      ++stats_.group_retries;
    }
    std::vector<Committer*> one(1);
    for (Committer* c : group) {
      one[0] = c;
      WriteGroup(one);
    }
    return;
  }
  for (Committer* c : group) c->status = result.status;
}

absl::Status PostgresStore::SettleClaim(bool for_read) {
  absl::MutexLock claim(&claim_mu_);
  int64_t range = 0;
  {
    absl::MutexLock lock(&mu_);
    if (!fenced_out_.empty()) {
      // The new owner's takeover waited for our lost transaction too: reads see a final state.
      if (for_read) return absl::OkStatus();
      return absl::UnavailableError(absl::StrCat(
          "postgres: another orchestrator took this database over; this one no longer writes: ",
          fenced_out_));
    }
    if (!renew_claim_) return absl::OkStatus();
    range = claim_range_;
  }
  // Waits for the lost transaction, should the server still hold it: it has committed or never
  // will once this returns.
  absl::StatusOr<int64_t> renewed = RenewShard(kStoreShard, range);
  if (absl::IsFailedPrecondition(renewed.status())) {
    FencedOut(std::string(renewed.status().message()));
    if (for_read) return absl::OkStatus();
    return absl::UnavailableError(absl::StrCat(
        "postgres: another orchestrator took this database over; this one no longer writes: ",
        renewed.status().message()));
  }
  if (!renewed.ok()) return renewed.status();
  absl::MutexLock lock(&mu_);
  claim_range_ = *renewed;
  renew_claim_ = false;
  ++stats_.renewals;
  return absl::OkStatus();
}

void PostgresStore::FencedOut(const std::string& reason) {
  {
    absl::MutexLock lock(&mu_);
    if (fenced_out_.empty()) fenced_out_ = reason.empty() ? "fenced out" : reason;
  }
  Unwritable(absl::StrCat("another orchestrator took this database over: ", reason));
}

PostgresStore::GroupResult PostgresStore::Transaction(const std::vector<const WriteBatch*>& batches,
                                                      int64_t claim_range) {
  GroupResult result;
  absl::StatusOr<PGconn*> acquired = Acquire();
  if (!acquired.ok()) {
    result.status = acquired.status();
    return result;
  }
  Lease lease(*this, *acquired);
  PGconn* conn = lease.get();
  if (PQenterPipelineMode(conn) != 1) {
    result.status = Failed(conn, StatementError(nullptr, conn, "entering pipeline mode"));
    return result;
  }
  // The fences: the store's claim first (its failure is told apart), then the batches' own,
  // each (shard, range) once.
  std::vector<ShardFence> fences;
  if (claim_range > 0) fences.push_back({kStoreShard, claim_range});
  bool sync = false;
  size_t total_ops = 0;
  for (const WriteBatch* batch : batches) {
    sync = sync || batch->sync();
    total_ops += batch->size();
    for (const ShardFence& fence : batch->fences()) {
      if (std::none_of(fences.begin(), fences.end(), [&](const ShardFence& f) {
            return f.shard_id == fence.shard_id && f.range_id == fence.range_id;
          })) {
        fences.push_back(fence);
      }
    }
  }
  const bool claim_fence = claim_range > 0;
  absl::Status status;
  CommitOutcome outcome = CommitOutcome::kNotSent;
  size_t batch_index = 0;  // the batch and op to send next
  size_t op_index = 0;
  size_t sent_ops = 0;
  bool first_chunk = true;
  while (status.ok()) {
    size_t statements = 0;
    std::optional<size_t> claim_index;
    bool sent = true;
    if (first_chunk) {
      sent = SendSql(conn, "BEGIN");
      ++statements;
      if (sent && !sync) {
        sent = SendSql(conn, "SET LOCAL synchronous_commit = off");
        ++statements;
      }
      for (size_t f = 0; sent && f < fences.size(); ++f) {
        if (f == 0 && claim_fence) claim_index = statements;
        sent = SendFence(conn, fences[f]);
        ++statements;
      }
    }
    const size_t chunk_end = std::min(total_ops, sent_ops + kOpsPerRoundTrip);
    while (sent && sent_ops < chunk_end) {
      const std::vector<WriteBatch::Op>& ops = batches[batch_index]->ops();
      if (op_index == ops.size()) {
        ++batch_index;
        op_index = 0;
        continue;
      }
      const WriteBatch::Op& op = ops[op_index++];
      sent = op.type == WriteBatch::OpType::kPut
                 ? SendPrepared(conn, PutStatement(op.table), op.key, &op.value)
                 : SendPrepared(conn, DeleteStatement(op.table), op.key, nullptr);
      ++statements;
      ++sent_ops;
    }
    std::optional<size_t> commit_index;
    const bool last_chunk = sent_ops == total_ops;
    if (sent && last_chunk) {
      sent = SendSql(conn, "COMMIT");
      commit_index = statements++;
      if (sent) outcome = CommitOutcome::kSentUnconfirmed;
    }
    if (!sent || PQpipelineSync(conn) != 1) {
      status = StatementError(nullptr, conn, "sending the batch");
      break;
    }
    size_t failed_index = 0;
    status = ReadChunk(conn, statements, commit_index, &outcome, &failed_index);
    if (!status.ok() && claim_index && failed_index == *claim_index &&
        absl::IsFailedPrecondition(status)) {
      result.claim_fenced = true;
    }
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
      result.outcome_unknown = true;
      status = absl::UnavailableError(
          absl::StrCat("postgres: outcome unknown (the connection ended after COMMIT was sent): ",
                       status.message()));
      if (claim_fence) {
        // Renewed before the next read or commit, so that what the engine reloads is final.
        absl::MutexLock lock(&mu_);
        renew_claim_ = true;
      }
    } else if (!result.claim_fenced && PQstatus(conn) == CONNECTION_OK &&
               !absl::IsUnavailable(status)) {
      // A statement failed and the server is fine: one member's doing, or the group's.
      result.member_failed = true;
    }
    result.status = Failed(conn, status);
    return result;
  }
  Succeeded();
  result.status = absl::OkStatus();
  return result;
}

absl::StatusOr<std::optional<std::string>> PostgresStore::Get(Table table, std::string_view key) {
  if (!IsKnownTable(table)) return absl::InvalidArgumentError("unknown table");
  return OnReader([&]() -> absl::StatusOr<std::optional<std::string>> {
    RETURN_IF_ERROR(SettleClaim(/*for_read=*/true));
    absl::StatusOr<PGconn*> acquired = Acquire();
    if (!acquired.ok()) return acquired.status();
    Lease lease(*this, *acquired);
    PGconn* conn = lease.get();
    const char* values[1] = {key.data()};
    int lengths[1] = {static_cast<int>(key.size())};
    int formats[1] = {1};
    Result result(
        PQexecPrepared(conn, GetStatement(table).c_str(), 1, values, lengths, formats, 1));
    if (!Ok(result)) return Failed(conn, StatementError(result.get(), conn, "get"));
    Succeeded();
    if (PQntuples(result.get()) == 0) return std::nullopt;
    return std::string(PQgetvalue(result.get(), 0, 0), PQgetlength(result.get(), 0, 0));
  });
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
  RETURN_IF_ERROR(OnReader([&]() -> absl::Status {
    RETURN_IF_ERROR(SettleClaim(/*for_read=*/true));
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
    Succeeded();
    return absl::OkStatus();
  }));
  // The connection is back in the pool, and the rows on the caller's thread: the visitor may
  // call the store.
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

absl::StatusOr<int64_t> PostgresStore::RenewShard(int32_t shard_id, int64_t range_id) {
  absl::StatusOr<PGconn*> acquired = Acquire();
  if (!acquired.ok()) return acquired.status();
  Lease lease(*this, *acquired);
  PGconn* conn = lease.get();
  std::string shard = absl::StrCat(shard_id);
  std::string range = absl::StrCat(range_id);
  const char* values[2] = {shard.c_str(), range.c_str()};
  // Compare and set: an owner that lost the shard must not take it back by renewing.
  Result result(PQexecParams(conn,
                             "UPDATE kiln_shards SET range_id = range_id + 1 "
                             "WHERE shard_id = $1::integer AND range_id = $2::bigint "
                             "RETURNING range_id",
                             2, nullptr, values, nullptr, nullptr, 0));
  if (!Ok(result)) return Failed(conn, StatementError(result.get(), conn, "renewing a shard"));
  Succeeded();
  if (PQntuples(result.get()) == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "postgres: shard ", shard_id, " moved past range ", range_id, " (another owner took it)"));
  }
  int64_t renewed = 0;
  if (!absl::SimpleAtoi(PQgetvalue(result.get(), 0, 0), &renewed)) {
    return absl::InternalError("postgres: renewing a shard returned no range id");
  }
  return renewed;
}

absl::StatusOr<int64_t> PostgresStore::FetchAdd(Table table, std::string_view key, int64_t delta) {
  if (!IsKnownTable(table)) return absl::InvalidArgumentError("unknown table");
  if (delta <= 0) return absl::InvalidArgumentError("FetchAdd: delta must be positive");
  return OnReader([&]() -> absl::StatusOr<int64_t> {
    RETURN_IF_ERROR(SettleClaim(/*for_read=*/false));
    int64_t claim = range_id();
    absl::StatusOr<PGconn*> acquired = Acquire();
    if (!acquired.ok()) return acquired.status();
    Lease lease(*this, *acquired);
    PGconn* conn = lease.get();
    // One statement: the row lock of ON CONFLICT DO UPDATE orders concurrent increments, from any
    // process. The values are the engine's 8-byte big-endian counters (int8send writes that; the
    // bit(64) cast reads it). The claim's fence is evaluated once, in the SELECT.
    const std::string t = SqlTable(table);
    std::string sql = absl::StrCat(
        "INSERT INTO ", t, " (k, v) SELECT $1::bytea, int8send($2::bigint) ",
        claim > 0 ? "FROM (SELECT kiln_check_fence($3::integer, $4::bigint)) AS fence " : "",
        "WHERE true ON CONFLICT (k) DO UPDATE SET v = int8send(('x' || encode(", t,
        ".v, 'hex'))::bit(64)::bigint + $2::bigint) RETURNING v");
    std::string delta_text = absl::StrCat(delta);
    std::string shard_text = absl::StrCat(kStoreShard);
    std::string claim_text = absl::StrCat(claim);
    const char* values[4] = {key.data(), delta_text.c_str(), shard_text.c_str(),
                             claim_text.c_str()};
    int lengths[4] = {static_cast<int>(key.size()), 0, 0, 0};
    int formats[4] = {1, 0, 0, 0};
    Result result(PQexecParams(conn, sql.c_str(), claim > 0 ? 4 : 2, nullptr, values, lengths,
                               formats, /*resultFormat=*/1));
    if (!Ok(result)) {
      absl::Status status = StatementError(result.get(), conn, "fetch-add");
      if (claim > 0 && absl::IsFailedPrecondition(status)) {
        FencedOut(std::string(status.message()));
        return absl::UnavailableError(absl::StrCat(
            "postgres: another orchestrator took this database over; this one no longer writes: ",
            status.message()));
      }
      return Failed(conn, status);
    }
    Succeeded();
    if (PQntuples(result.get()) != 1 || PQgetlength(result.get(), 0, 0) != 8) {
      return absl::DataLossError(absl::StrCat("counter ", TableName(table), "/", std::string(key),
                                              " is not an 8-byte value"));
    }
    return static_cast<int64_t>(
        keys::ReadBigEndian64(std::string_view(PQgetvalue(result.get(), 0, 0), 8)));
  });
}

int64_t PostgresStore::range_id() {
  absl::MutexLock lock(&mu_);
  return claim_range_;
}

PostgresStore::Stats PostgresStore::stats() {
  Stats stats;
  {
    absl::MutexLock lock(&mu_);
    stats = stats_;
  }
  {
    absl::MutexLock lock(&reads_mu_);
    stats.parked_reads = parked_reads_;
  }
  absl::MutexLock lock(&queue_mu_);
  stats.commits = commits_;
  return stats;
}

uint64_t PostgresStore::ApproximateSize() {
  std::string sql = "SELECT (0";
  for (int t = 0; t < kTableCount; ++t) {
    absl::StrAppend(&sql, " + pg_total_relation_size('", SqlTable(static_cast<Table>(t)), "')");
  }
  absl::StrAppend(&sql, " + pg_total_relation_size('kiln_shards')");
  absl::StrAppend(&sql, ")::text");
  return OnReader([&]() -> uint64_t {
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
  });
}

StoreHealth PostgresStore::Health() {
  {
    absl::MutexLock lock(&mu_);
    if (health_.writable || !fenced_out_.empty()) return health_;
  }
  // Unwritable: find out whether the server is back (a connection that answers).
  Read([&] {
    absl::StatusOr<PGconn*> acquired = Acquire();
    if (!acquired.ok()) return;
    Lease lease(*this, *acquired);
    Result result = Exec(lease.get(), "SELECT 1");
    if (Ok(result)) {
      Succeeded();
    } else {
      Failed(lease.get(), StatementError(result.get(), lease.get(), "health check")).IgnoreError();
    }
  });
  absl::MutexLock lock(&mu_);
  return health_;
}

}  // namespace kiln::orchestrator
