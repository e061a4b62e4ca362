// The engine on fibers over PostgreSQL (issue 24: a fiber waiting on the database parks; it never
// blocks its thread). A second session holds kiln_meta locked, so the store read of a signal's
// dedup record waits in the server; the fiber pool has one thread, so another workflow completes
// meanwhile only if the waiting fiber parked.
#include <libpq-fe.h>

#include <catch2/catch.hpp>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/clock.h"
#include "common/fiber.h"
#include "common/ids.h"
#include "orchestrator/history/history_engine.h"
#include "orchestrator/persistence/postgres_store.h"
#include "tests/testutil/postgres.h"
#include "tests/testutil/process.h"

namespace kiln::orchestrator {
namespace {

namespace api = kiln::api::v1;

// A session of the test's own (another process's, for the server).
class Session {
 public:
  explicit Session(const std::string& conninfo) : conn_(PQconnectdb(conninfo.c_str())) {
    REQUIRE(PQstatus(conn_) == CONNECTION_OK);
  }
  ~Session() { PQfinish(conn_); }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  bool Exec(const std::string& sql) {
    PGresult* result = PQexec(conn_, sql.c_str());
    const bool ok = PQresultStatus(result) == PGRES_COMMAND_OK;
    PQclear(result);
    return ok;
  }
  // Sessions waiting for a lock on `table`.
  std::string Waiting(const std::string& table) {
    PGresult* result = PQexec(conn_, absl::StrCat("SELECT count(*) FROM pg_locks WHERE NOT granted "
                                                  "AND relation = '",
                                                  table, "'::regclass")
                                         .c_str());
    std::string count = PQresultStatus(result) == PGRES_TUPLES_OK ? PQgetvalue(result, 0, 0) : "";
    PQclear(result);
    return count;
  }

 private:
  PGconn* conn_;
};

class Listener : public EngineListener {
 public:
  void TaskAdded(QueuedTask task) override {
    absl::MutexLock lock(&mu_);
    tasks_.push_back(std::move(task));
  }
  void TimerAdded(Table, const std::string&, absl::Time) override {}
  void RunChanged(const std::string&, bool, const kiln::api::v1::HistoryEvent*) override {}

  std::optional<QueuedTask> WorkflowTaskOf(const std::string& run_id) {
    absl::MutexLock lock(&mu_);
    for (const QueuedTask& task : tasks_) {
      if (task.kind == keys::TaskKind::kWorkflow && task.record.run_id() == run_id) return task;
    }
    return std::nullopt;
  }

 private:
  absl::Mutex mu_;
  std::vector<QueuedTask> tasks_ ABSL_GUARDED_BY(mu_);
};

api::StartWorkflowExecutionRequest StartRequest(const std::string& workflow_id) {
  api::StartWorkflowExecutionRequest request;
  request.set_workflow_id(workflow_id);
  request.mutable_workflow_type()->set_name("wf");
  request.mutable_task_queue()->set_name("q");
  return request;
}

// Starts a workflow and completes it with one workflow task, as a worker would.
absl::StatusOr<api::WorkflowExecutionStatus> RunToCompletion(HistoryEngine& engine,
                                                             Listener& listener,
                                                             const std::string& workflow_id) {
  absl::StatusOr<api::StartWorkflowExecutionResponse> started =
      engine.StartWorkflowExecution(StartRequest(workflow_id));
  if (!started.ok()) return started.status();
  std::optional<QueuedTask> task = listener.WorkflowTaskOf(started->run_id());
  if (!task.has_value()) return absl::InternalError("no workflow task");
  auto polled = engine.RecordWorkflowTaskStarted(*task, "worker", "poll-1");
  if (!polled.ok()) return polled.status();
  api::RespondWorkflowTaskCompletedRequest completed;
  completed.set_task_token(polled->task_token());
  completed.set_identity("worker");
  completed.add_commands()->set_command_type(api::COMMAND_TYPE_COMPLETE_WORKFLOW_EXECUTION);
  if (auto responded = engine.RespondWorkflowTaskCompleted(completed); !responded.ok()) {
    return responded.status();
  }
  api::DescribeWorkflowExecutionRequest describe;
  describe.mutable_execution()->set_run_id(started->run_id());
  auto described = engine.DescribeWorkflowExecution(describe);
  if (!described.ok()) return described.status();
  return described->workflow_execution_info().status();
}

TEST_CASE("A run waiting on a PostgreSQL read parks and other runs on its thread complete") {
  absl::StatusOr<std::unique_ptr<testutil::PostgresCluster>> cluster =
      testutil::PostgresCluster::Start();
  if (absl::IsFailedPrecondition(cluster.status())) {
    if (testutil::PostgresRequired()) FAIL("PostgreSQL required: " << cluster.status().message());
    WARN("skipped: PostgreSQL cannot start here: " << cluster.status().message());
    return;
  }
  REQUIRE(cluster.ok());
  const std::string conninfo = (*cluster)->ConnInfo();
  PostgresStoreOptions options;
  auto store = PostgresStore::Open(conninfo, options);
  REQUIRE(store.ok());
  FakeClock clock;
  RandomIdGenerator ids(7);
  Listener listener;
  auto engine = HistoryEngine::Create(store->get(), &clock, &ids, &listener);
  REQUIRE(engine.ok());
  auto x = (*engine)->StartWorkflowExecution(StartRequest("x"));
  REQUIRE(x.ok());

  Session observer(conninfo);
  {
    // Every connection of the pool opened first: a new one prepares its statements, which
    // would wait for the lock below as a read does. Reads from plain threads, waiting together
    // on a locked table, each hold one.
    Session warm(conninfo);
    REQUIRE(warm.Exec("BEGIN"));
    REQUIRE(warm.Exec("LOCK TABLE kiln_logs IN ACCESS EXCLUSIVE MODE"));
    std::vector<std::thread> readers;
    for (int i = 0; i < options.max_connections; ++i) {
      readers.emplace_back([&] { CHECK((*store)->Get(Table::kLogs, "warm").ok()); });
    }
    CHECK(testutil::WaitFor(
        [&] { return observer.Waiting("kiln_logs") == absl::StrCat(options.max_connections); },
        absl::Seconds(30)));
    CHECK(warm.Exec("ROLLBACK"));
    for (std::thread& reader : readers) reader.join();
  }

  Session locker(conninfo);
  REQUIRE(locker.Exec("BEGIN"));
  REQUIRE(locker.Exec("LOCK TABLE kiln_meta IN ACCESS EXCLUSIVE MODE"));
  absl::Notification signalled;
  absl::Notification other_done;
  absl::Status signal;
  absl::StatusOr<api::WorkflowExecutionStatus> other;
  bool other_completed = false;
  {
    fiber::Pool pool(/*threads=*/1, /*fibers=*/4, /*max_queued=*/16);
    // The signal's dedup record is read (kiln_meta) under x's run lock.
    REQUIRE(pool.TrySubmit([&] {
      api::SignalWorkflowExecutionRequest request;
      request.mutable_workflow_execution()->set_workflow_id("x");
      request.set_signal_name("go");
      request.set_request_id("signal-1");
      signal = (*engine)->SignalWorkflowExecution(request);
      signalled.Notify();
    }));
    CHECK(
        testutil::WaitFor([&] { return observer.Waiting("kiln_meta") == "1"; }, absl::Seconds(30)));
    REQUIRE(pool.TrySubmit([&] {
      other = RunToCompletion(**engine, listener, "y");
      other_done.Notify();
    }));
    other_completed = other_done.WaitForNotificationWithTimeout(absl::Seconds(20));
    CHECK(other_completed);
    CHECK_FALSE(signalled.HasBeenNotified());
    REQUIRE(locker.Exec("ROLLBACK"));  // (also frees a blocked thread, should one be)
    CHECK(signalled.WaitForNotificationWithTimeout(absl::Seconds(30)));
  }
  INFO(other.status().ToString());
  REQUIRE(other.ok());
  CHECK(*other == api::WORKFLOW_EXECUTION_STATUS_COMPLETED);
  INFO(signal.ToString());
  CHECK(signal.ok());
  api::GetWorkflowExecutionHistoryRequest read;
  read.mutable_execution()->set_run_id(x->run_id());
  auto history = (*engine)->ReadHistory(read);
  REQUIRE(history.ok());
  bool has_signal = false;
  for (const api::HistoryEvent& event : history->response.history().events()) {
    has_signal |= event.event_type() == api::EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED;
  }
  CHECK(has_signal);
  CHECK((*store)->stats().parked_reads >= 1);
}

}  // namespace
}  // namespace kiln::orchestrator
