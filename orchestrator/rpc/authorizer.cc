#include "orchestrator/rpc/authorizer.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/proto_time.h"
#include "common/status.h"

namespace kiln::orchestrator {
namespace {

constexpr std::string_view kBearer = "bearer ";

bool IsRead(Rpc rpc) {
  switch (rpc) {
    case Rpc::kDescribeWorkflowExecution:
    case Rpc::kGetWorkflowExecutionHistory:
    case Rpc::kListWorkflowExecutions:
    case Rpc::kCountWorkflowExecutions:
    case Rpc::kQueryWorkflow:
    case Rpc::kDescribeTaskQueue:
    case Rpc::kGetSystemInfo:
    case Rpc::kReadLog:
      return true;
    default:
      return false;
  }
}

absl::string_view Absl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

}  // namespace

std::string_view RpcName(Rpc rpc) {
  switch (rpc) {
    case Rpc::kDescribeWorkflowExecution:
      return "DescribeWorkflowExecution";
    case Rpc::kGetWorkflowExecutionHistory:
      return "GetWorkflowExecutionHistory";
    case Rpc::kListWorkflowExecutions:
      return "ListWorkflowExecutions";
    case Rpc::kCountWorkflowExecutions:
      return "CountWorkflowExecutions";
    case Rpc::kQueryWorkflow:
      return "QueryWorkflow";
    case Rpc::kDescribeTaskQueue:
      return "DescribeTaskQueue";
    case Rpc::kGetSystemInfo:
      return "GetSystemInfo";
    case Rpc::kStartWorkflowExecution:
      return "StartWorkflowExecution";
    case Rpc::kSignalWorkflowExecution:
      return "SignalWorkflowExecution";
    case Rpc::kSignalWithStartWorkflowExecution:
      return "SignalWithStartWorkflowExecution";
    case Rpc::kRequestCancelWorkflowExecution:
      return "RequestCancelWorkflowExecution";
    case Rpc::kTerminateWorkflowExecution:
      return "TerminateWorkflowExecution";
    case Rpc::kResetWorkflowExecution:
      return "ResetWorkflowExecution";
    case Rpc::kPollWorkflowTaskQueue:
      return "PollWorkflowTaskQueue";
    case Rpc::kRespondWorkflowTaskCompleted:
      return "RespondWorkflowTaskCompleted";
    case Rpc::kRespondWorkflowTaskFailed:
      return "RespondWorkflowTaskFailed";
    case Rpc::kRespondQueryTaskCompleted:
      return "RespondQueryTaskCompleted";
    case Rpc::kPollActivityTaskQueue:
      return "PollActivityTaskQueue";
    case Rpc::kRecordActivityTaskHeartbeat:
      return "RecordActivityTaskHeartbeat";
    case Rpc::kRespondActivityTaskCompleted:
      return "RespondActivityTaskCompleted";
    case Rpc::kRespondActivityTaskFailed:
      return "RespondActivityTaskFailed";
    case Rpc::kRespondActivityTaskCanceled:
      return "RespondActivityTaskCanceled";
    case Rpc::kReadLog:
      return "ReadLog";
    case Rpc::kAppendLog:
      return "AppendLog";
    case Rpc::kRevokeToken:
      return "RevokeToken";
  }
  return "unknown";
}

Authorizer::Authorizer(auth::TokenKey key, Clock* clock, HistoryEngine* engine,
                       prometheus::Registry* registry, AuthOptions options, RevokedTokens* revoked)
    : key_(std::move(key)), clock_(clock), engine_(engine), options_(options), revoked_(revoked) {
  if (registry == nullptr) return;
  auto& family = prometheus::BuildCounter()
                     .Name("kiln_auth_refused_total")
                     .Help("Calls refused by authentication or authorisation, by reason")
                     .Register(*registry);
  refused_[kInvalidToken] = &family.Add({{"reason", "invalid_token"}});
  refused_[kTokenRequired] = &family.Add({{"reason", "token_required"}});
  refused_[kScope] = &family.Add({{"reason", "scope"}});
  refused_[kProject] = &family.Add({{"reason", "project"}});
  refused_[kQueue] = &family.Add({{"reason", "queue"}});
  refused_[kRevoked] = &family.Add({{"reason", "revoked"}});
}

absl::Status Authorizer::Refuse(Reason reason, absl::Status status) {
  if (refused_[reason] != nullptr) refused_[reason]->Increment();
  return status;
}

absl::Status Authorizer::ProjectDenied(Rpc rpc, const auth::Claims& claims) {
  return Refuse(kProject, absl::PermissionDeniedError(absl::StrCat(
                              Absl(RpcName(rpc)), ": an agent token of project '", claims.project,
                              "' may only serve task queue '", AgentQueue(claims), "'")));
}

absl::Status Authorizer::QueueDenied(Rpc rpc, std::string_view queue) {
  return Refuse(kQueue,
                absl::PermissionDeniedError(absl::StrCat(Absl(RpcName(rpc)),
                                                         ": this worker token does not serve "
                                                         "task queue '",
                                                         Absl(queue), "'")));
}

absl::StatusOr<Principal> Authorizer::Admit(const grpc::ServerContextBase& ctx, Rpc rpc,
                                            std::string_view task_queue, bool exclusive) {
  const auto& metadata = ctx.client_metadata();
  auto header = metadata.find("authorization");
  if (header == metadata.end()) {
    if (options_.require_auth) {
      return Refuse(kTokenRequired,
                    absl::UnauthenticatedError(absl::StrCat(
                        Absl(RpcName(rpc)), ": a token is required (authorization: Bearer)")));
    }
    return Principal{};
  }
  std::string_view value(header->second.data(), header->second.size());
  if (value.size() <= kBearer.size() ||
      !absl::EqualsIgnoreCase(Absl(value.substr(0, kBearer.size())), Absl(kBearer))) {
    return Refuse(kInvalidToken,
                  absl::UnauthenticatedError("authorization: expected 'Bearer <token>'"));
  }
  absl::StatusOr<auth::Claims> claims =
      verified_.Verify(key_, value.substr(kBearer.size()), clock_->Now());
  if (!claims.ok()) return Refuse(kInvalidToken, claims.status());
  // Hit or miss: a token revoked since it was cached is refused from this call on.
  if (revoked_ != nullptr && revoked_->Contains(claims->id)) {
    return Refuse(kRevoked, absl::UnauthenticatedError("token revoked"));
  }

  Principal principal{std::move(*claims)};
  const auth::Claims& c = *principal.claims;
  const bool poll = rpc == Rpc::kPollActivityTaskQueue || rpc == Rpc::kPollWorkflowTaskQueue;
  // A project's queue is its agent's alone to hold: a squatter would make the agent exit.
  if (poll && exclusive && absl::StartsWith(Absl(task_queue), "project/") &&
      !(c.scope == auth::Scope::kAgent && task_queue == AgentQueue(c))) {
    return Refuse(kProject, absl::PermissionDeniedError(absl::StrCat(
                                Absl(RpcName(rpc)), ": an exclusive poll on '", Absl(task_queue),
                                "' needs that project's agent token")));
  }
  if (rpc == Rpc::kRevokeToken && c.scope != auth::Scope::kAdmin) {
    return Refuse(kScope, absl::PermissionDeniedError(absl::StrCat(
                              Absl(RpcName(rpc)), ": only an admin token may revoke tokens")));
  }
  switch (c.scope) {
    case auth::Scope::kAdmin:
      return principal;
    case auth::Scope::kWorker:
      if (poll && !auth::ServesQueue(c.queues, task_queue)) return QueueDenied(rpc, task_queue);
      return principal;
    case auth::Scope::kReadOnly:
      if (IsRead(rpc)) return principal;
      return Refuse(kScope, absl::PermissionDeniedError(absl::StrCat(
                                Absl(RpcName(rpc)), ": a read-only token may only read")));
    case auth::Scope::kAgent:
      switch (rpc) {
        case Rpc::kGetSystemInfo:
        case Rpc::kRecordActivityTaskHeartbeat:  // The activity is checked on the executor.
        case Rpc::kRespondActivityTaskCompleted:
        case Rpc::kRespondActivityTaskFailed:
        case Rpc::kRespondActivityTaskCanceled:
        case Rpc::kAppendLog:  // The run is checked on the executor.
          return principal;
        case Rpc::kPollActivityTaskQueue:
          if (task_queue == AgentQueue(c)) return principal;
          return ProjectDenied(rpc, c);
        default:
          return Refuse(kScope, absl::PermissionDeniedError(
                                    absl::StrCat(Absl(RpcName(rpc)),
                                                 ": not allowed to an agent token (of "
                                                 "project '",
                                                 c.project, "')")));
      }
  }
  return Refuse(kScope, absl::PermissionDeniedError("unknown scope"));
}

absl::Status Authorizer::CheckTaskAnswer(const Principal& principal, Rpc rpc,
                                         const std::string& task_token, bool drives_workflow) {
  if (!principal.is_agent() && !principal.is_worker()) return absl::OkStatus();
  const auth::Claims& c = *principal.claims;
  if (principal.is_agent() && drives_workflow) {
    return Refuse(kScope, absl::PermissionDeniedError(
                              absl::StrCat(Absl(RpcName(rpc)), ": an agent token (of project '",
                                           c.project, "') may not take or run workflow tasks")));
  }
  // A forged or malformed token is refused as the engine would refuse it.
  ASSIGN_OR_RETURN(internal::TaskToken token, engine_->task_tokens().Decode(task_token));
  if (principal.is_agent()) {
    if (token.task_queue() != AgentQueue(c)) return ProjectDenied(rpc, c);
  } else if (!auth::ServesQueue(c.queues, token.task_queue())) {
    return QueueDenied(rpc, token.task_queue());
  }
  return absl::OkStatus();
}

absl::Status Authorizer::CheckStart(const Principal& principal, Rpc rpc,
                                    std::string_view task_queue) {
  if (!principal.is_worker() || auth::ServesQueue(principal.claims->queues, task_queue)) {
    return absl::OkStatus();
  }
  return QueueDenied(rpc, task_queue);
}

absl::Status Authorizer::CheckRun(const Principal& principal, Rpc rpc, const std::string& ns,
                                  const kiln::api::v1::WorkflowExecution& execution) {
  if (!principal.is_worker()) return absl::OkStatus();
  kiln::api::v1::DescribeWorkflowExecutionRequest describe;
  describe.set_namespace_(ns);
  *describe.mutable_execution() = execution;
  // A run that is not there is answered as the call itself would answer it.
  ASSIGN_OR_RETURN(auto described, engine_->DescribeWorkflowExecution(describe));
  const std::string& queue = described.workflow_execution_info().task_queue();
  if (auth::ServesQueue(principal.claims->queues, queue)) return absl::OkStatus();
  return QueueDenied(rpc, queue);
}

TaskQueueFilter Authorizer::VisibleRuns(const Principal& principal) const {
  if (!principal.is_worker()) return {};
  return [queues = principal.claims->queues](std::string_view task_queue) {
    return auth::ServesQueue(queues, task_queue);
  };
}

absl::Status Authorizer::CheckAppendLog(const Principal& principal, const std::string& run_id) {
  if (!principal.is_agent()) return absl::OkStatus();
  const auth::Claims& c = *principal.claims;
  ASSIGN_OR_RETURN(bool serving, engine_->HasStartedActivity(run_id, AgentQueue(c)));
  if (serving) return absl::OkStatus();
  return Refuse(kProject, absl::PermissionDeniedError(absl::StrCat(
                              "AppendLog: an agent token of project '", c.project,
                              "' may only write the logs of runs with an activity it is running "
                              "on task queue '",
                              AgentQueue(c), "'")));
}

absl::StatusOr<kiln::api::v1::RevokeTokenResponse> Authorizer::RevokeToken(
    const kiln::api::v1::RevokeTokenRequest& request) {
  if (revoked_ == nullptr) {
    return absl::FailedPreconditionError("RevokeToken: this orchestrator keeps no revocations");
  }
  if (request.id().empty() == request.token().empty()) {
    return absl::InvalidArgumentError("RevokeToken: give either the token's id or the token");
  }
  std::string id = request.id();
  absl::Time expiry;
  if (!request.token().empty()) {
    // Only a token of this key can be in use here; its own expiry bounds the record.
    absl::StatusOr<auth::Claims> claims = key_.Verify(request.token(), clock_->Now());
    if (!claims.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("RevokeToken: token: ", claims.status().message()));
    }
    id = claims->id;
    expiry = claims->expiry;
  } else {
    // Ids are what Mint writes: printable, no spaces, bounded.
    if (id.size() > auth::token_limits::kMaxFieldBytes ||
        !std::all_of(id.begin(), id.end(), [](char ch) { return ch > ' ' && ch < 0x7f; })) {
      return absl::InvalidArgumentError(absl::StrCat("RevokeToken: id: at most ",
                                                     auth::token_limits::kMaxFieldBytes,
                                                     " printable characters without spaces"));
    }
    // Not knowing the token, keep it as long as any token issued up to now may live.
    expiry = clock_->Now() + auth::token_limits::kMaxClockSkew + auth::token_limits::kMaxLifetime;
  }
  ASSIGN_OR_RETURN(bool already, revoked_->Revoke(id, expiry));
  kiln::api::v1::RevokeTokenResponse response;
  response.set_id(id);
  ToProto(expiry, response.mutable_expire_time());
  response.set_already_revoked(already);
  return response;
}

}  // namespace kiln::orchestrator
