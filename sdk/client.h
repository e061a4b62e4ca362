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

// The fast-path protocol between the client and this process's workers (an eager start, its
// run followed here) lives in sdk/internal/eager.h; the options and the handle only name it.
class EagerWorkflowTaskRunner;
class LocalRun;

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

  // StartWorkflow, then GetResult with `timeout`, in one call where it can: the start waits for
  // the run to close and its answer carries the close event (wait_for_close), so no history long
  // poll follows. A run still open when that wait ends (the server bounds it by its long-poll
  // limit), a result too large to come with the start, a run that continued as new and an older
  // orchestrator fall back to GetResult for the rest of `timeout`. An eager start (a worker of
  // the queue in this process) takes its own path, as StartWorkflow does. A start retried after
  // UNAVAILABLE (an orchestrator restarted meanwhile) keeps its request id: it waits for the
  // same run. Errors as StartWorkflow's and GetResult's.
  absl::StatusOr<api::Payloads> Execute(const StartWorkflowOptions& options,
                                        const std::string& workflow_type,
                                        const api::Payloads& input, absl::Duration timeout);

  template <class T>
  absl::StatusOr<T> Execute(const StartWorkflowOptions& options, const std::string& workflow_type,
                            const api::Payloads& input, absl::Duration timeout) {
    auto payloads = Execute(options, workflow_type, input, timeout);
    if (!payloads.ok()) return payloads.status();
    return FromPayloadAt<T>(*payloads, 0, *converter_);
  }

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
  // StartWorkflow; with `wait_for_close` above zero (and no eager start), the start waits up to
  // that long for the run to close and `close_event` gets its close event if it came.
  absl::StatusOr<WorkflowHandle> Start(const StartWorkflowOptions& options,
                                       const std::string& workflow_type, const api::Payloads& input,
                                       absl::Duration wait_for_close,
                                       std::optional<api::HistoryEvent>* close_event);

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
