#include "sdk/client.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/hop_trace.h"
#include "common/proto_time.h"
#include "common/rpc_status.h"
#include "sdk/internal/eager.h"

namespace kiln::sdk {
namespace {

// The server answers a waiting history read 1 s before the caller's deadline, and after 60 s
// at most; a call deadline a little past that never cuts a wait short.
constexpr absl::Duration kLongPollMargin = absl::Seconds(1);
constexpr absl::Duration kLongPollCallTimeout = absl::Seconds(70);
// Execute's start waits for the close at most this long (the server's long-poll limit), then
// goes on with GetResult.
constexpr absl::Duration kMaxStartWait = absl::Seconds(60);
// Following continue-as-new chains: a bound so that a loop in the data cannot spin forever.
constexpr int kMaxFollowedRuns = 1000;
constexpr int kHistoryPageSize = 1000;
// An infinite timeout would overflow the chrono deadline.
constexpr absl::Duration kMaxRpcTimeout = absl::Hours(24);
// 51,200 events (the engine's history limit) fit in 52 pages of 1,000.
constexpr int kMaxHistoryPages = 1000;
// Depth of a failure's cause chain spelled out in an error message.
constexpr int kMaxCauseDepth = 8;

constexpr char kClosedStatusUrl[] = "type.kiln.dev/kiln.sdk.WorkflowClosedStatus";
constexpr char kFailureUrl[] = "type.googleapis.com/kiln.api.v1.Failure";

void SleepFor(Clock& clock, absl::Duration d) {
  if (d <= absl::ZeroDuration()) return;
  absl::Notification done;
  clock.ScheduleAlarm(clock.Now() + d, [&done] { done.Notify(); });
  done.WaitForNotification();
}

std::string RunName(const WorkflowHandle& handle) {
  if (handle.run_id.empty()) return absl::StrCat("workflow '", handle.workflow_id, "'");
  return absl::StrCat("workflow '", handle.workflow_id, "' (run ", handle.run_id, ")");
}

// "message [type T]; cause: message [type U]; ..."
std::string DescribeFailure(const api::Failure& failure) {
  std::string out;
  const api::Failure* f = &failure;
  for (int depth = 0; f != nullptr && depth < kMaxCauseDepth; ++depth) {
    if (depth > 0) absl::StrAppend(&out, "; cause: ");
    absl::StrAppend(&out, f->message().empty() ? "(no message)" : f->message());
    if (f->has_application_failure_info() && !f->application_failure_info().type().empty()) {
      absl::StrAppend(&out, " [type ", f->application_failure_info().type(), "]");
    } else if (f->has_timeout_failure_info()) {
      absl::StrAppend(&out, " [", api::TimeoutType_Name(f->timeout_failure_info().timeout_type()),
                      "]");
    }
    f = f->has_cause() ? &f->cause() : nullptr;
  }
  return out;
}

absl::Status ClosedError(absl::StatusCode code, std::string message,
                         api::WorkflowExecutionStatus closed,
                         const api::Failure* failure = nullptr) {
  absl::Status status(code, message);
  status.SetPayload(kClosedStatusUrl, absl::Cord(absl::StrCat(static_cast<int>(closed))));
  if (failure != nullptr) status.SetPayload(kFailureUrl, absl::Cord(failure->SerializeAsString()));
  return status;
}

// The run a closed run handed over to (continue-as-new, a retry), or "".
std::string NextRunId(const api::HistoryEvent& close) {
  switch (close.event_type()) {
    case api::EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
      return close.workflow_execution_continued_as_new_event_attributes().new_execution_run_id();
    case api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
      return close.workflow_execution_completed_event_attributes().new_execution_run_id();
    case api::EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
      return close.workflow_execution_failed_event_attributes().new_execution_run_id();
    case api::EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
      return close.workflow_execution_timed_out_event_attributes().new_execution_run_id();
    default:
      return "";
  }
}

api::WorkflowExecution Execution(const WorkflowHandle& handle) {
  api::WorkflowExecution execution;
  execution.set_workflow_id(handle.workflow_id);
  execution.set_run_id(handle.run_id);
  return execution;
}

}  // namespace

absl::Status CallWithRetry(const RpcPolicy& policy, Clock& clock, std::string_view method,
                           const std::function<grpc::Status(grpc::ClientContext*)>& call) {
  const int attempts = std::max(1, policy.max_attempts);
  absl::Duration backoff = policy.initial_backoff;
  grpc::Status status;
  for (int attempt = 1;; ++attempt) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         absl::ToChronoMilliseconds(std::min(policy.timeout, kMaxRpcTimeout)));
    status = call(&context);
    if (status.ok()) return absl::OkStatus();
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE || attempt >= attempts) break;
    SleepFor(clock, backoff);
    backoff *= 2;
  }
  absl::Status error = FromGrpc(status);
  return absl::Status(error.code(), absl::StrCat(std::string(method), ": ", error.message()));
}

Client::Client(Connection& connection, ClientOptions options)
    : connection_(connection), options_(std::move(options)) {
  clock_ = options_.clock != nullptr ? options_.clock : RealClock::Default();
  if (options_.ids == nullptr) owned_ids_ = std::make_unique<RandomIdGenerator>();
  ids_ = options_.ids != nullptr ? options_.ids : owned_ids_.get();
  converter_ = options_.converter != nullptr ? options_.converter : &DefaultConverter();
}

absl::StatusOr<WorkflowHandle> Client::StartWorkflow(const StartWorkflowOptions& options,
                                                     const std::string& workflow_type,
                                                     const api::Payloads& input) {
  return Start(options, workflow_type, input, absl::ZeroDuration(), nullptr);
}

absl::StatusOr<api::Payloads> Client::Execute(const StartWorkflowOptions& options,
                                              const std::string& workflow_type,
                                              const api::Payloads& input, absl::Duration timeout) {
  const absl::Time deadline = clock_->Now() + timeout;
  std::optional<api::HistoryEvent> close;
  auto handle = Start(options, workflow_type, input, std::min(timeout, kMaxStartWait), &close);
  if (!handle.ok()) return handle.status();
  if (!close.has_value()) return GetResult(*handle, deadline - clock_->Now());
  std::string next = NextRunId(*close);
  if (next.empty()) return ResultFromCloseEvent(*handle, *close);
  // Continued as new (or retried): the successor's result, as GetResult follows it.
  return GetResult(WorkflowHandle{handle->workflow_id, next}, deadline - clock_->Now());
}

absl::StatusOr<WorkflowHandle> Client::Start(const StartWorkflowOptions& options,
                                             const std::string& workflow_type,
                                             const api::Payloads& input,
                                             absl::Duration wait_for_close,
                                             std::optional<api::HistoryEvent>* close_event) {
  api::StartWorkflowExecutionRequest request;
  request.set_namespace_(options_.ns);
  request.set_workflow_id(options.id);
  request.mutable_workflow_type()->set_name(workflow_type);
  request.mutable_task_queue()->set_name(options.task_queue);
  *request.mutable_input() = input;
  if (options.execution_timeout > absl::ZeroDuration()) {
    ToProto(options.execution_timeout, request.mutable_workflow_execution_timeout());
  }
  if (options.run_timeout > absl::ZeroDuration()) {
    ToProto(options.run_timeout, request.mutable_workflow_run_timeout());
  }
  if (options.task_timeout > absl::ZeroDuration()) {
    ToProto(options.task_timeout, request.mutable_workflow_task_timeout());
  }
  request.set_identity(options_.identity);
  const bool eager =
      options.eager_worker != nullptr && options.eager_worker->AcceptsEagerTask(options.task_queue);
  if (eager) {
    request.set_request_eager_execution(true);
    request.set_identity(options.eager_worker->eager_identity());
  }
  request.set_request_id(options.request_id.empty() ? ids_->NewUuid() : options.request_id);
  request.set_workflow_id_reuse_policy(options.id_reuse_policy);
  request.set_workflow_id_conflict_policy(options.id_conflict_policy);
  if (options.retry_policy.has_value()) *request.mutable_retry_policy() = *options.retry_policy;
  for (const auto& [name, value] : options.search_attributes) {
    (*request.mutable_search_attributes()->mutable_indexed_fields())[name] = value;
  }
  for (const auto& [name, value] : options.memo) {
    (*request.mutable_memo()->mutable_fields())[name] = value;
  }
  // The first task, run ahead by the worker, may go with the start (one RPC fewer).
  std::unique_ptr<SpeculativeTask> speculative;
  if (eager) speculative = options.eager_worker->SpeculateStart(request);
  RpcPolicy policy = options_.rpc;
  // An eager run is followed in this process (LocalRun): waiting at the server would be a
  // second wait for the same close.
  const bool wait = !eager && wait_for_close > absl::ZeroDuration() && close_event != nullptr;
  if (wait) {
    ToProto(wait_for_close, request.mutable_wait_for_close());
    // The server answers a second before the call's deadline: the margin keeps the wait whole.
    policy.timeout = std::max(policy.timeout, wait_for_close + kLongPollMargin);
  }
  api::StartWorkflowExecutionResponse response;
  hoptrace::Mark("c.call");
  absl::Status status =
      CallWithRetry(policy, *clock_, "StartWorkflowExecution", [&](grpc::ClientContext* c) {
        response.Clear();
        return connection_.workflow_service().StartWorkflowExecution(c, request, &response);
      });
  hoptrace::Mark("c.ret");
  if (wait && status.ok() && response.has_close_event()) {
    *close_event = std::move(*response.mutable_close_event());
  }
  if (speculative != nullptr) {
    std::shared_ptr<LocalRun> local =
        options.eager_worker->FinishSpeculativeStart(std::move(speculative), status, &response);
    if (!status.ok()) return status;
    WorkflowHandle handle{options.id, response.run_id()};
    handle.local = std::move(local);
    return handle;
  }
  if (!status.ok()) return status;
  WorkflowHandle handle{options.id, response.run_id()};
  if (eager && response.has_eager_workflow_task()) {
    handle.local =
        options.eager_worker->StartEagerRun(std::move(*response.mutable_eager_workflow_task()));
  }
  return handle;
}

absl::StatusOr<api::Payloads> Client::GetResult(const WorkflowHandle& handle,
                                                absl::Duration timeout) {
  const absl::Time deadline = clock_->Now() + timeout;
  WorkflowHandle current = handle;
  current.local = nullptr;
  int followed = 0;
  if (handle.local != nullptr) {
    // The local wait runs on real time (a mutex deadline), the rest on the client's clock.
    std::optional<api::HistoryEvent> close = handle.local->Wait(absl::Now() + timeout);
    if (close.has_value()) {
      std::string next = NextRunId(*close);
      if (next.empty()) return ResultFromCloseEvent(current, *close);
      ++followed;
      current.run_id = next;
    }
  }
  for (;;) {
    absl::Duration remaining = deadline - clock_->Now();
    if (remaining <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(absl::StrCat(RunName(current), " is still running after ",
                                                      absl::FormatDuration(timeout)));
    }
    api::GetWorkflowExecutionHistoryRequest request;
    request.set_namespace_(options_.ns);
    *request.mutable_execution() = Execution(current);
    request.set_wait_new_event(true);
    request.set_history_event_filter_type(api::HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT);
    api::GetWorkflowExecutionHistoryResponse response;
    RpcPolicy policy = options_.rpc;
    // The server answers an empty page 1 s before the call's deadline: add that second so the
    // empty answer comes at our own deadline rather than a second early (or at once).
    policy.timeout = std::min(remaining + kLongPollMargin, kLongPollCallTimeout);
    absl::Status status =
        CallWithRetry(policy, *clock_, "GetWorkflowExecutionHistory", [&](grpc::ClientContext* c) {
          response.Clear();
          return connection_.workflow_service().GetWorkflowExecutionHistory(c, request, &response);
        });
    if (absl::IsDeadlineExceeded(status)) continue;  // The loop's own deadline decides.
    if (!status.ok()) return status;
    if (response.history().events_size() == 0) continue;  // Still running: wait again.
    const api::HistoryEvent& close = response.history().events(0);
    std::string next = NextRunId(close);
    if (!next.empty()) {
      if (++followed > kMaxFollowedRuns) {
        return absl::FailedPreconditionError(
            absl::StrCat(RunName(handle), " handed over to more than ", kMaxFollowedRuns, " runs"));
      }
      current.run_id = next;
      continue;
    }
    return ResultFromCloseEvent(current, close);
  }
}

absl::StatusOr<api::DescribeWorkflowExecutionResponse> Client::Describe(
    const WorkflowHandle& handle) {
  api::DescribeWorkflowExecutionRequest request;
  request.set_namespace_(options_.ns);
  *request.mutable_execution() = Execution(handle);
  api::DescribeWorkflowExecutionResponse response;
  absl::Status status = CallWithRetry(
      options_.rpc, *clock_, "DescribeWorkflowExecution", [&](grpc::ClientContext* c) {
        return connection_.workflow_service().DescribeWorkflowExecution(c, request, &response);
      });
  if (!status.ok()) return status;
  return response;
}

absl::Status Client::Terminate(const WorkflowHandle& handle, const std::string& reason) {
  api::TerminateWorkflowExecutionRequest request;
  request.set_namespace_(options_.ns);
  *request.mutable_workflow_execution() = Execution(handle);
  request.set_reason(reason);
  request.set_identity(options_.identity);
  api::TerminateWorkflowExecutionResponse response;
  int attempts = 0;
  absl::Status status = CallWithRetry(
      options_.rpc, *clock_, "TerminateWorkflowExecution", [&](grpc::ClientContext* c) {
        ++attempts;
        return connection_.workflow_service().TerminateWorkflowExecution(c, request, &response);
      });
  if (absl::IsFailedPrecondition(status) && attempts > 1) {
    // An earlier attempt may have terminated the run before its answer was lost.
    auto described = Describe(handle);
    if (described.ok() && described->workflow_execution_info().status() ==
                              api::WORKFLOW_EXECUTION_STATUS_TERMINATED) {
      return absl::OkStatus();
    }
  }
  return status;
}

absl::StatusOr<api::History> Client::GetHistory(const WorkflowHandle& handle) {
  api::History history;
  std::string token;
  for (int page = 0;; ++page) {
    if (page >= kMaxHistoryPages) {
      return absl::ResourceExhaustedError(
          absl::StrCat("history of ", RunName(handle), " has over ", kMaxHistoryPages, " pages"));
    }
    api::GetWorkflowExecutionHistoryRequest request;
    request.set_namespace_(options_.ns);
    *request.mutable_execution() = Execution(handle);
    request.set_maximum_page_size(kHistoryPageSize);
    request.set_next_page_token(token);
    api::GetWorkflowExecutionHistoryResponse response;
    absl::Status status = CallWithRetry(
        options_.rpc, *clock_, "GetWorkflowExecutionHistory", [&](grpc::ClientContext* c) {
          response.Clear();
          return connection_.workflow_service().GetWorkflowExecutionHistory(c, request, &response);
        });
    if (!status.ok()) return status;
    for (auto& event : *response.mutable_history()->mutable_events()) {
      *history.add_events() = std::move(event);
    }
    token = response.next_page_token();
    if (token.empty()) break;
    // A page token with no events would loop forever: the server only sets it when more exist.
    if (response.history().events_size() == 0) {
      return absl::InternalError("GetWorkflowExecutionHistory: empty page with a next token");
    }
  }
  return history;
}

absl::StatusOr<api::Payloads> ResultFromCloseEvent(const WorkflowHandle& handle,
                                                   const api::HistoryEvent& close) {
  switch (close.event_type()) {
    case api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
      return close.workflow_execution_completed_event_attributes().result();
    case api::EVENT_TYPE_WORKFLOW_EXECUTION_FAILED: {
      const api::Failure& failure = close.workflow_execution_failed_event_attributes().failure();
      return ClosedError(absl::StatusCode::kAborted,
                         absl::StrCat(RunName(handle), " failed: ", DescribeFailure(failure)),
                         api::WORKFLOW_EXECUTION_STATUS_FAILED, &failure);
    }
    case api::EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED: {
      const std::string& reason = close.workflow_execution_terminated_event_attributes().reason();
      return ClosedError(
          absl::StatusCode::kAborted,
          absl::StrCat(RunName(handle), " was terminated", reason.empty() ? "" : ": ", reason),
          api::WORKFLOW_EXECUTION_STATUS_TERMINATED);
    }
    case api::EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
      return ClosedError(absl::StatusCode::kDeadlineExceeded,
                         absl::StrCat(RunName(handle), " timed out"),
                         api::WORKFLOW_EXECUTION_STATUS_TIMED_OUT);
    case api::EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
      return ClosedError(absl::StatusCode::kCancelled,
                         absl::StrCat(RunName(handle), " was canceled"),
                         api::WORKFLOW_EXECUTION_STATUS_CANCELED);
    case api::EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
      return ClosedError(
          absl::StatusCode::kFailedPrecondition,
          absl::StrCat(
              RunName(handle), " continued as new as run ",
              close.workflow_execution_continued_as_new_event_attributes().new_execution_run_id()),
          api::WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW);
    default:
      return absl::InternalError(absl::StrCat("event ", close.event_id(), " of ", RunName(handle),
                                              " (", api::EventType_Name(close.event_type()),
                                              ") is not a close event"));
  }
}

api::WorkflowExecutionStatus ClosedStatusOf(const absl::Status& status) {
  auto payload = status.GetPayload(kClosedStatusUrl);
  int value = 0;
  if (!payload.has_value() || !absl::SimpleAtoi(std::string(*payload), &value) ||
      !api::WorkflowExecutionStatus_IsValid(value)) {
    return api::WORKFLOW_EXECUTION_STATUS_UNSPECIFIED;
  }
  return static_cast<api::WorkflowExecutionStatus>(value);
}

std::optional<api::Failure> WorkflowFailureOf(const absl::Status& status) {
  auto payload = status.GetPayload(kFailureUrl);
  api::Failure failure;
  if (!payload.has_value() || !failure.ParseFromString(std::string(*payload))) return std::nullopt;
  return failure;
}

}  // namespace kiln::sdk
