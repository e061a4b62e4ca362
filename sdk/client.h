// The client: starts workflows and waits for, inspects and terminates them, over a Connection.
// Every call has a deadline, and a transient UNAVAILABLE (an orchestrator restarting, a
// connection being re-established) is retried a few times with a short backoff.
//
//   Client client(connection);
//   auto handle = client.StartWorkflow({.id = "deploy-42", .task_queue = "control"},
//                                      "DeploymentWorkflow", ToPayloads(request));
//   auto result = client.GetResult<DeployResult>(*handle, absl::Minutes(10));
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <grpcpp/client_context.h>
#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/ids.h"
#include "kiln/api/v1/history.pb.h"
#include "kiln/api/v1/workflow_service.pb.h"
#include "sdk/connection.h"
#include "sdk/converter.h"

namespace kiln::sdk {

namespace api = ::kiln::api::v1;

// How one unary RPC is made: a deadline per attempt, and retries of UNAVAILABLE only (every
// other code is an answer: retrying a refusal would not change it).
struct RpcPolicy {
  absl::Duration timeout = absl::Seconds(10);
  int max_attempts = 4;
  // Doubles after each failed attempt.
  absl::Duration initial_backoff = absl::Milliseconds(100);
};

// Runs `call` (one attempt with the context it is given) under `policy`; `method` names the
// call in error messages. `clock` times the backoff waits.
absl::Status CallWithRetry(const RpcPolicy& policy, Clock& clock, std::string_view method,
                           const std::function<grpc::Status(grpc::ClientContext*)>& call);

struct ClientOptions {
  std::string identity = "kiln-client";
  // Empty: the engine's default namespace.
  std::string ns{};
  RpcPolicy rpc{};
  // Defaults to the real clock and a random UUID source.
  Clock* clock = nullptr;
  IdGenerator* ids = nullptr;
  const PayloadConverter* converter = nullptr;
};

// A run this process drives after starting it eagerly: while its tasks stay in this process
// (its first task run by the starter, activities started eagerly, next tasks brought back with
// their completions) the worker knows how it ends. It says so here, or that the run's tasks
// left this process (a timer, a task polled elsewhere), after which only the orchestrator knows.
// GetResult waits here first and long-polls the orchestrator only in the second case.
// Thread-safe.
class LocalRun {
 public:
  // A task of the run is in this process's hands (taken before the task it came with ends).
  void Hold();
  // That task ended. The last one ending with the run still open: it left this process.
  void Release();
  // A completion closed the run; `close_event` as the orchestrator recorded it.
  void Closed(api::HistoryEvent close_event);
  // Waits until the run closed here (its close event) or left, or until `deadline` (nullopt).
  std::optional<api::HistoryEvent> Wait(absl::Time deadline);
  // Closed here, or left.
  bool settled();

 private:
  absl::Mutex mu_;
  int holds_ ABSL_GUARDED_BY(mu_) = 0;
  bool left_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<api::HistoryEvent> close_event_ ABSL_GUARDED_BY(mu_);
};

// A workflow task a runner ran ahead of the engine (EagerWorkflowTaskRunner::Speculate): the
// request part goes with the activity's completion; the rest is the runner's.
class SpeculativeTask {
 public:
  virtual ~SpeculativeTask() = default;
  api::SpeculativeWorkflowTask request;
  // The completing activity's slot went to an activity the task starts eagerly (the runner
  // gives it back or runs that activity in it, like a slot it reserved).
  bool took_slot = false;
};

// Takes a new run's first workflow task straight from the start's answer (eager start).
// WorkflowWorker implements it.
class EagerWorkflowTaskRunner {
 public:
  virtual ~EagerWorkflowTaskRunner() = default;
  // Whether it serves `task_queue` and can take a task now.
  virtual bool AcceptsEagerTask(const std::string& task_queue) = 0;
  // The worker identity the task is started for.
  virtual const std::string& eager_identity() const = 0;
  // Runs the task (on the calling thread) and answers it.
  virtual void RunEagerTask(api::PollWorkflowTaskQueueResponse task) = 0;
  // Whether it holds `run_id` in its cache, so a task of it may come with only the events after
  // the run's previous task (a task it then cannot place, it reads in full).
  virtual bool HoldsRun(const std::string& run_id) { return false; }
  // Runs a new run's first task like RunEagerTask, and follows the run while its tasks stay in
  // this process; null when the runner does not follow runs.
  virtual std::shared_ptr<LocalRun> StartEagerRun(api::PollWorkflowTaskQueueResponse task) {
    RunEagerTask(std::move(task));
    return nullptr;
  }
  // Activity `activity_id` of `run_id` completed with `result` in this process. When the runner
  // holds the run idle and level with its history, it runs the workflow task that completion
  // starts, now, and returns it to go with the completion (api::SpeculativeWorkflowTask);
  // FinishSpeculative must follow with the completion's outcome. `slot`: the completing
  // activity's slot may go to an activity the task starts eagerly. Null: no speculation.
  virtual std::unique_ptr<SpeculativeTask> Speculate(const std::string& run_id,
                                                     const std::string& activity_id,
                                                     const api::Payloads& result, bool slot) {
    return nullptr;
  }
  // The completion's outcome: `status` and, when OK, its answer (workflow_task_completed set
  // when the engine accepted the task).
  virtual void FinishSpeculative(std::unique_ptr<SpeculativeTask> task, const absl::Status& status,
                                 api::RespondActivityTaskCompletedResponse* response) {}
  // Eager start, run ahead: runs the first workflow task of the run `request` (complete but for
  // this) starts, on a run id of its own, and sets request.speculative_first_task. Null: none;
  // else FinishSpeculativeStart must follow.
  virtual std::unique_ptr<SpeculativeTask> SpeculateStart(
      api::StartWorkflowExecutionRequest& request) {
    return nullptr;
  }
  // The start's outcome. Accepted (first_task_completed): the run goes on here and is followed
  // as by StartEagerRun. Refused: what ran is dropped, and the first task in the answer (if
  // any) is run as by StartEagerRun.
  virtual std::shared_ptr<LocalRun> FinishSpeculativeStart(
      std::unique_ptr<SpeculativeTask> task, const absl::Status& status,
      api::StartWorkflowExecutionResponse* response) {
    return nullptr;
  }
};

struct StartWorkflowOptions {
  std::string id{};
  std::string task_queue{};
  // Zero: no limit (execution, run) or the engine's default (task).
  absl::Duration execution_timeout = absl::ZeroDuration();
  absl::Duration run_timeout = absl::ZeroDuration();
  absl::Duration task_timeout = absl::ZeroDuration();
  api::WorkflowIdReusePolicy id_reuse_policy = api::WORKFLOW_ID_REUSE_POLICY_UNSPECIFIED;
  api::WorkflowIdConflictPolicy id_conflict_policy = api::WORKFLOW_ID_CONFLICT_POLICY_UNSPECIFIED;
  // Retrying a start with the same request id returns the run it created. Empty: a new UUID,
  // generated once per StartWorkflow call, so the call's own retries are idempotent.
  std::string request_id{};
  std::optional<api::RetryPolicy> retry_policy{};
  std::map<std::string, api::Payload> search_attributes{};
  std::map<std::string, api::Payload> memo{};
  // Eager start: when this process's worker of `task_queue` can take it, the run's first
  // workflow task comes back with the start and is run by that worker before StartWorkflow
  // returns (one poll and one transition fewer). Not owned.
  EagerWorkflowTaskRunner* eager_worker = nullptr;
};

struct WorkflowHandle {
  std::string workflow_id{};
  // Empty: the current run of `workflow_id`.
  std::string run_id{};
  // Set by an eager start whose worker follows the run (see LocalRun).
  std::shared_ptr<LocalRun> local{};
};

// Thread-safe.
class Client {
 public:
  explicit Client(Connection& connection, ClientOptions options = {});

  absl::StatusOr<WorkflowHandle> StartWorkflow(const StartWorkflowOptions& options,
                                               const std::string& workflow_type,
                                               const api::Payloads& input);

  // Waits up to `timeout` for the run to close (a run this process drives, see LocalRun, is
  // waited for here without asking the orchestrator). Completed: its result. Otherwise an error
  // saying how it closed and why: kAborted for failed (the failure's message and type) and
  // terminated (the reason), kDeadlineExceeded for timed out, kCancelled for canceled; see
  // ClosedStatusOf. Still running at the timeout: kDeadlineExceeded without a closed status.
  // A run that continued as new (or was retried) is followed to its successor.
  absl::StatusOr<api::Payloads> GetResult(const WorkflowHandle& handle, absl::Duration timeout);

  // The result's first payload as T (a missing one reads as null).
  template <class T>
  absl::StatusOr<T> GetResult(const WorkflowHandle& handle, absl::Duration timeout) {
    auto payloads = GetResult(handle, timeout);
    if (!payloads.ok()) return payloads.status();
    return FromPayloadAt<T>(*payloads, 0, *converter_);
  }

  absl::StatusOr<api::DescribeWorkflowExecutionResponse> Describe(const WorkflowHandle& handle);
  absl::Status Terminate(const WorkflowHandle& handle, const std::string& reason);
  // Every event of the run, all pages.
  absl::StatusOr<api::History> GetHistory(const WorkflowHandle& handle);

  const PayloadConverter& converter() const { return *converter_; }

 private:
  Connection& connection_;
  ClientOptions options_;
  Clock* clock_;
  IdGenerator* ids_;
  const PayloadConverter* converter_;
  std::unique_ptr<IdGenerator> owned_ids_;
};

// A run's close event as GetResult reports it: the result when it completed, else the error
// described there. Exposed for tools that read close events themselves (the CLI).
absl::StatusOr<api::Payloads> ResultFromCloseEvent(const WorkflowHandle& handle,
                                                   const api::HistoryEvent& close);

// How the run closed, for an error from GetResult: FAILED, TERMINATED, TIMED_OUT or CANCELED;
// UNSPECIFIED for any other error (the wait timed out, an RPC failed).
api::WorkflowExecutionStatus ClosedStatusOf(const absl::Status& status);
// The failure of a FAILED run, when GetResult reported one.
std::optional<api::Failure> WorkflowFailureOf(const absl::Status& status);

}  // namespace kiln::sdk
