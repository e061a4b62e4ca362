// Who calls the orchestrator and what each caller may do, decided in one place for every RPC
// of WorkflowService and LogService.
//
// The caller is resolved from an `authorization: Bearer <token>` header (common/auth/token.h):
// no header is an anonymous caller; a header whose token fails to verify, or whose token an
// admin revoked (RevokeToken, revoked_tokens.h), is refused with kUnauthenticated whatever the
// method. Then the caller's scope decides:
//   anonymous  kUnauthenticated "a token is required"; with require_auth off
//              (--insecure-allow-anonymous) everything, as an admin.
//   admin      everything.
//   worker with queues Q  polls on the queues of Q only; answers and heartbeats for tasks of
//              those queues (the queue is in the signed task token); starts (and
//              signal-with-start) of workflows on those queues; signal, cancel, terminate, query,
//              describe, history and log reads of runs whose task queue is in Q; lists and
//              counts filtered to those runs (VisibleRuns); appends to logs; and DescribeTaskQueue
//              and GetSystemInfo without the admin-only details below.
//   read-only  the reads (describe, list, count, history, query, describe task queue, read
//              log, system info).
//   agent of project P  PollActivityTaskQueue on `project/P` only; heartbeats and answers for
//              activities of `project/P` (from the signed task token); AppendLog to a run with
//              an activity on `project/P` started and pending now; GetSystemInfo. Nothing else.
// Admin only: RevokeToken.
// Everyone: an exclusive poll on `project/P` needs P's agent token (nobody squats a project's
// queue). Admin only: who holds or polls a queue (DescribeTaskQueue) and the data directory
// (GetSystemInfo); others get those fields empty.
// Refusals are kPermissionDenied naming the method (and the agent's project), and are counted
// in kiln_auth_refused_total{reason}.
//
// Cost: a call without a header costs one metadata lookup; with a token, a lookup in the
// verified tokens (auth/token_cache.h: one HMAC-SHA256 and the parsing the first time a token is
// seen) and one in the revocations; an answer by a worker or agent one HMAC (its task token). Only
// an agent's appends read the run's state (on the executor).
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
#include "common/auth/token_cache.h"
#include "common/clock.h"
#include "orchestrator/history/history_engine.h"
#include "orchestrator/rpc/revoked_tokens.h"
#include "orchestrator/visibility/visibility_list.h"

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
  kResetWorkflowExecution,
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
  // Administration.
  kRevokeToken,
};

std::string_view RpcName(Rpc rpc);

// The caller of one RPC. Cheap to copy for anonymous callers (no claims).
struct Principal {
  // Unset: anonymous.
  std::optional<auth::Claims> claims;

  bool is_agent() const { return claims.has_value() && claims->scope == auth::Scope::kAgent; }
  bool is_worker() const { return claims.has_value() && claims->scope == auth::Scope::kWorker; }
  // Admin, or anonymous where anonymous callers are let in (--insecure-allow-anonymous).
  bool is_admin() const { return !claims.has_value() || claims->scope == auth::Scope::kAdmin; }
};

struct AuthOptions {
  // Refuse callers without a token (the server's default; --insecure-allow-anonymous clears it).
  bool require_auth = true;
};

class Authorizer {
 public:
  // `engine` answers agents' lookups; `registry` may be null (no metrics); `revoked` may be null
  // (no revocation: RevokeToken answers kFailedPrecondition).
  Authorizer(auth::TokenKey key, Clock* clock, HistoryEngine* engine,
             prometheus::Registry* registry, AuthOptions options, RevokedTokens* revoked = nullptr);

  // Before anything else, on gRPC's thread: who the caller is, and whether it may call `rpc`
  // at all. `task_queue` and `exclusive`: what a poll (PollWorkflowTaskQueue,
  // PollActivityTaskQueue) asks for. kUnauthenticated or kPermissionDenied.
  absl::StatusOr<Principal> Admit(const grpc::ServerContextBase& ctx, Rpc rpc,
                                  std::string_view task_queue = {}, bool exclusive = false);

  // On the executor, before the engine call: an agent may heartbeat or answer only an activity
  // of its project's queue and may not drive the workflow task its answer schedules
  // (`drives_workflow`: return_new_workflow_task or a speculative task); a worker only a task
  // of its queues. The queue comes from the signed task token (a forged one is refused as the
  // engine would: kPermissionDenied; a task that no longer exists is left to the engine's
  // kNotFound). Admins: OK at once.
  absl::Status CheckTaskAnswer(const Principal& principal, Rpc rpc, const std::string& task_token,
                               bool drives_workflow = false);
  // A worker may start (or signal-with-start) workflows only on its queues. Others: OK.
  absl::Status CheckStart(const Principal& principal, Rpc rpc, std::string_view task_queue);
  // On the executor: a worker may signal, cancel, terminate, reset, query, describe, read the
  // history or read the log only of runs of its queues (the run is looked up: one read).
  // Others: OK at once.
  absl::Status CheckRun(const Principal& principal, Rpc rpc, const std::string& ns,
                        const kiln::api::v1::WorkflowExecution& execution);
  // Which runs a list or count by `principal` shows: a worker's, those of its queues (filtered,
  // not refused, so that a worker lists its own runs with the same calls an admin uses, and a
  // count agrees with the list); everyone else's, all (empty filter).
  TaskQueueFilter VisibleRuns(const Principal& principal) const;
  // On the executor: an agent may append only to a run with an activity on its project's
  // queue started and pending now. Other callers: OK at once.
  absl::Status CheckAppendLog(const Principal& principal, const std::string& run_id);

  // On the executor, for an admin admitted to kRevokeToken: revokes the token `request` names by
  // id (kept until the longest a token minted now could live) or gives whole (it must verify
  // with this key; kept until its expiry). kInvalidArgument for neither or a bad id.
  absl::StatusOr<kiln::api::v1::RevokeTokenResponse> RevokeToken(
      const kiln::api::v1::RevokeTokenRequest& request);

  bool require_auth() const { return options_.require_auth; }

 private:
  enum Reason { kInvalidToken, kTokenRequired, kScope, kProject, kQueue, kRevoked, kReasons };
  absl::Status Refuse(Reason reason, absl::Status status);
  absl::Status ProjectDenied(Rpc rpc, const auth::Claims& claims);
  absl::Status QueueDenied(Rpc rpc, std::string_view queue);
  static std::string AgentQueue(const auth::Claims& claims) { return "project/" + claims.project; }

  const auth::TokenKey key_;
  // Callers' tokens that verified with key_; revocation is checked after every lookup.
  auth::VerifiedTokenCache verified_;
  Clock* const clock_;
  HistoryEngine* const engine_;
  const AuthOptions options_;
  RevokedTokens* const revoked_;
  std::array<prometheus::Counter*, kReasons> refused_{};
};

}  // namespace kiln::orchestrator
