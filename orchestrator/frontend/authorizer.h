// Who calls the orchestrator and what each caller may do, decided in one place for every RPC
// of WorkflowService and LogService.
//
// The caller is resolved from an `authorization: Bearer <token>` header (common/auth/token.h):
// no header is an anonymous caller; a header whose token fails to verify is refused with
// kUnauthenticated whatever the method. Then the caller's scope decides:
//   anonymous  everything, as before tokens existed, unless require_auth (then
//              kUnauthenticated "a token is required"). Issue 19 gives every caller a token.
//   admin, worker  everything.
//   read-only  the reads (describe, list, count, history, query, describe task queue, read
//              log, system info).
//   agent of project P  PollActivityTaskQueue on `project/P` only; heartbeats and answers for
//              activities scheduled on `project/P` (looked up in the run's state: task tokens
//              are not signed); AppendLog to a run with an activity on `project/P` started and
//              pending now; GetSystemInfo. Nothing else.
// Refusals are kPermissionDenied naming the method (and the agent's project), and are counted
// in kiln_auth_refused_total{reason}.
//
// Cost: a call without a header costs one metadata lookup; with a token, one HMAC-SHA256.
// Only an agent's activity answers and appends read the run's state (on the executor).
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

#include <grpcpp/server_context.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include "absl/status/statusor.h"
#include "common/auth/token.h"
#include "common/clock.h"
#include "orchestrator/history/history_engine.h"

namespace kiln::orchestrator {

// The methods the Authorizer knows, by service.
enum class Rpc {
  // WorkflowService: reads.
  kDescribeWorkflowExecution,
  kGetWorkflowExecutionHistory,
  kListWorkflowExecutions,
  kCountWorkflowExecutions,
  kQueryWorkflow,
  kDescribeTaskQueue,
  kGetSystemInfo,
  // WorkflowService: writes.
  kStartWorkflowExecution,
  kSignalWorkflowExecution,
  kSignalWithStartWorkflowExecution,
  kRequestCancelWorkflowExecution,
  kTerminateWorkflowExecution,
  kPollWorkflowTaskQueue,
  kRespondWorkflowTaskCompleted,
  kRespondWorkflowTaskFailed,
  kRespondQueryTaskCompleted,
  kPollActivityTaskQueue,
  kRecordActivityTaskHeartbeat,
  kRespondActivityTaskCompleted,
  kRespondActivityTaskFailed,
  kRespondActivityTaskCanceled,
  // LogService.
  kReadLog,
  kAppendLog,
};

std::string_view RpcName(Rpc rpc);

// The caller of one RPC. Cheap to copy for anonymous callers (no claims).
struct Principal {
  // Unset: anonymous.
  std::optional<auth::Claims> claims;

  bool is_agent() const { return claims.has_value() && claims->scope == auth::Scope::kAgent; }
};

struct AuthOptions {
  // Refuse callers without a token (the server's default; --insecure-allow-anonymous clears it).
  bool require_auth = true;
};

class Authorizer {
 public:
  // `engine` answers agents' lookups; `registry` may be null (no metrics).
  Authorizer(auth::TokenKey key, Clock* clock, HistoryEngine* engine,
             prometheus::Registry* registry, AuthOptions options);

  // Before anything else, on gRPC's thread: who the caller is, and whether it may call `rpc`
  // at all. `task_queue`: the queue PollActivityTaskQueue names. kUnauthenticated or
  // kPermissionDenied.
  absl::StatusOr<Principal> Admit(const grpc::ServerContextBase& ctx, Rpc rpc,
                                  std::string_view task_queue = {});

  // On the executor, before the engine call: an agent may heartbeat or answer only an activity
  // on its project's queue (kNotFound, as the engine would say, for an activity that no longer
  // exists), and may not drive the workflow task its answer schedules (`drives_workflow`:
  // return_new_workflow_task or a speculative task). Other callers: OK at once.
  absl::Status CheckActivityAnswer(const Principal& principal, Rpc rpc,
                                   const std::string& task_token, bool drives_workflow = false);
  // On the executor: an agent may append only to a run with an activity on its project's
  // queue started and pending now. Other callers: OK at once.
  absl::Status CheckAppendLog(const Principal& principal, const std::string& run_id);

  bool require_auth() const { return options_.require_auth; }

 private:
  enum Reason { kInvalidToken, kTokenRequired, kScope, kProject, kReasons };
  absl::Status Refuse(Reason reason, absl::Status status);
  absl::Status ProjectDenied(Rpc rpc, const auth::Claims& claims);
  static std::string AgentQueue(const auth::Claims& claims) { return "project/" + claims.project; }

  const auth::TokenKey key_;
  Clock* const clock_;
  HistoryEngine* const engine_;
  const AuthOptions options_;
  std::array<prometheus::Counter*, kReasons> refused_{};
};

}  // namespace kiln::orchestrator
