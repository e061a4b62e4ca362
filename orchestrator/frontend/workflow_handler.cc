#include "orchestrator/frontend/workflow_handler.h"

#include <atomic>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/proto_time.h"
#include "common/rpc_status.h"
#include "common/status.h"
#include "common/version.h"
#include "orchestrator/frontend/validation.h"
#include "orchestrator/history/limits.h"

namespace kiln::orchestrator {
namespace {

// A reactor that frees itself once gRPC is done with it AND every asynchronous path holding a
// reference (a waiting poll, a watcher, an alarm, queued work) has let go.
class RefCountedReactor : public grpc::ServerUnaryReactor {
 public:
  void Ref() { refs_.fetch_add(1, std::memory_order_relaxed); }
  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }
  void OnDone() override { Unref(); }

 protected:
  // Finishes the call once; later calls are ignored. Returns whether this call finished it.
  // `write` fills the response first, under the same guard: once a call is finished (say by
  // a cancellation), gRPC may free its request and response, so nothing may touch them after.
  // `record` runs before the answer goes out, so that a caller reading the metrics after its
  // answer finds its own call counted.
  bool FinishOnce(const absl::Status& status, const std::function<void()>& write,
                  const std::function<void()>& record) {
    {
      absl::MutexLock lock(&finish_mu_);
      if (finished_) return false;
      finished_ = true;
      if (write) write();
    }
    record();
    Finish(ToGrpc(status));
    return true;
  }
  bool finished() {
    absl::MutexLock lock(&finish_mu_);
    return finished_;
  }

 private:
  std::atomic<int> refs_{1};  // gRPC's own, released in OnDone.
  absl::Mutex finish_mu_;
  bool finished_ ABSL_GUARDED_BY(finish_mu_) = false;
};

// A task-queue long poll: waits in matching (no thread), records the start of the task it gets,
// and answers; a stale task is dropped and the poll goes on until its deadline.
template <typename Response>
class TaskPoll final : public RefCountedReactor {
 public:
  using Start = std::function<absl::StatusOr<Response>(const QueuedTask&, const std::string&)>;

  TaskPoll(const FrontendDeps& deps, RpcMetrics* metrics, const char* method, keys::TaskKind kind,
           std::string ns, std::string queue, std::string identity, bool exclusive,
           absl::Time deadline, Response* response, Start start)
      : deps_(deps),
        metrics_(metrics),
        method_(method),
        kind_(kind),
        ns_(std::move(ns)),
        queue_(std::move(queue)),
        identity_(std::move(identity)),
        exclusive_(exclusive),
        deadline_(deadline),
        response_(response),
        start_(std::move(start)),
        began_(deps.clock->Now()) {}

  void Begin() {
    Ref();  // For the matching callback.
    auto poll = deps_.matching->Poll(
        kind_, ns_, queue_, identity_, deadline_,
        [this](std::optional<QueuedTask> task) { OnTask(std::move(task)); },
        PollOptions{.exclusive = exclusive_});
    if (!poll.ok()) {
      Done(poll.status());
      Unref();
      return;
    }
    absl::MutexLock lock(&mu_);
    poll_id_ = *poll;
    if (cancelled_) deps_.matching->CancelPoll(poll_id_);
  }

  void OnCancel() override {
    uint64_t id;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      id = poll_id_;
    }
    if (id != 0) deps_.matching->CancelPoll(id);
  }

 private:
  void OnTask(std::optional<QueuedTask> task) {
    if (!task.has_value()) {
      Done(absl::OkStatus());  // Deadline or cancel: an empty answer.
      Unref();
      return;
    }
    QueuedTask copy = *task;
    if (!deps_.executor->TrySubmit(
            [this, t = std::move(copy)]() mutable { Record(std::move(t)); })) {
      deps_.matching->Return(std::move(*task));
      Done(absl::ResourceExhaustedError("orchestrator is overloaded: work queue full"));
      Unref();
    }
  }

  void Record(QueuedTask task) {
    // A task started at schedule for this poll answers as a retry of that start.
    std::string request_id =
        task.started_request_id.empty() ? deps_.ids->NewUuid() : task.started_request_id;
    absl::StatusOr<Response> started = start_(task, request_id);
    if (started.ok()) {
      deps_.matching->Done(task);
      Done(absl::OkStatus(), [&] { *response_ = std::move(*started); });
    } else if (absl::IsNotFound(started.status()) || absl::IsFailedPrecondition(started.status())) {
      // Stale: the run closed or the task was superseded. Drop it and keep polling.
      absl::Status dropped = deps_.engine->DropStaleTask(task);
      if (!dropped.ok()) LogWarn("matching.drop_stale_failed", {{"status", dropped}});
      deps_.matching->Done(task);
      bool again;
      {
        absl::MutexLock lock(&mu_);
        again = !cancelled_ && deps_.clock->Now() < deadline_;
      }
      if (again) {
        Begin();
      } else {
        Done(absl::OkStatus());
      }
    } else {
      deps_.matching->Return(std::move(task));
      Done(started.status());
    }
    Unref();
  }

  void Done(const absl::Status& status, const std::function<void()>& write = nullptr) {
    FinishOnce(status, write,
               [&] { metrics_->Record(method_, status, deps_.clock->Now() - began_); });
  }

  const FrontendDeps& deps_;
  RpcMetrics* metrics_;
  const char* method_;
  keys::TaskKind kind_;
  std::string ns_;
  std::string queue_;
  std::string identity_;
  bool exclusive_;
  absl::Time deadline_;
  Response* response_;
  Start start_;
  absl::Time began_;
  absl::Mutex mu_;
  uint64_t poll_id_ ABSL_GUARDED_BY(mu_) = 0;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

// A history read that may wait for new events (how a client waits for a workflow's result).
class HistoryWait final : public RefCountedReactor {
 public:
  HistoryWait(const FrontendDeps& deps, RpcMetrics* metrics,
              const api::GetWorkflowExecutionHistoryRequest* request,
              api::GetWorkflowExecutionHistoryResponse* response, absl::Time deadline)
      : deps_(deps),
        metrics_(metrics),
        request_(*request),
        response_(response),
        deadline_(deadline),
        began_(deps.clock->Now()) {}

  void Begin() { Schedule(); }

  void OnCancel() override { Done(absl::CancelledError("history read cancelled")); }

 private:
  // Queues an attempt on the executor, holding a reference for it.
  void Schedule() {
    Ref();
    if (!deps_.executor->TrySubmit([this] {
          Attempt();
          Unref();
        })) {
      Done(absl::ResourceExhaustedError("orchestrator is overloaded: work queue full"));
      Unref();
    }
  }

  void Attempt() {
    if (finished()) return;
    auto read = deps_.engine->ReadHistory(request_);
    if (!read.ok()) return Done(read.status());
    if (!read->wait) return Respond(std::move(read->response));
    if (deps_.clock->Now() >= deadline_) return Respond(EmptyPage());

    // Watch first, then read again: an event committed between the two reads still wakes us.
    Ref();
    // A reader of the close event only cares about the run closing.
    const bool close_only =
        request_.history_event_filter_type() == api::HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT;
    auto watch = deps_.watchers->Watch(
        read->run_id,
        [this] {
          {
            absl::MutexLock lock(&mu_);
            watch_id_ = 0;
          }
          if (!finished()) Schedule();
          Unref();
        },
        close_only);
    if (!watch.ok()) {
      Unref();
      return Done(watch.status());
    }
    {
      absl::MutexLock lock(&mu_);
      watch_id_ = *watch;
    }
    auto again = deps_.engine->ReadHistory(request_);
    if (!again.ok() || !again->wait) {
      CancelWatch();
      if (!again.ok()) return Done(again.status());
      return Respond(std::move(again->response));
    }
    absl::MutexLock lock(&mu_);
    if (alarm_ == 0) {
      Ref();
      alarm_ = deps_.clock->ScheduleAlarm(deadline_, [this] {
        CancelWatch();
        Respond(EmptyPage());
        Unref();
      });
    }
  }

  void CancelWatch() {
    uint64_t id;
    {
      absl::MutexLock lock(&mu_);
      id = watch_id_;
      watch_id_ = 0;
    }
    if (id != 0 && deps_.watchers->Cancel(id)) Unref();
  }

  api::GetWorkflowExecutionHistoryResponse EmptyPage() {
    api::GetWorkflowExecutionHistoryResponse empty;
    empty.set_next_page_token(request_.next_page_token());
    return empty;
  }

  void Respond(api::GetWorkflowExecutionHistoryResponse response) {
    Done(absl::OkStatus(), [&] { *response_ = std::move(response); });
  }

  void Done(const absl::Status& status, const std::function<void()>& write = nullptr) {
    const bool finished = FinishOnce(status, write, [&] {
      metrics_->Record("GetWorkflowExecutionHistory", status, deps_.clock->Now() - began_);
    });
    if (!finished) return;
    CancelWatch();
    AlarmId alarm;
    {
      absl::MutexLock lock(&mu_);
      alarm = alarm_;
    }
    if (alarm != 0 && deps_.clock->CancelAlarm(alarm)) Unref();
  }

  const FrontendDeps& deps_;
  RpcMetrics* metrics_;
  // A copy: the call's own request may be freed once the call is finished (e.g. cancelled)
  // while an attempt still runs on the executor.
  const api::GetWorkflowExecutionHistoryRequest request_;
  api::GetWorkflowExecutionHistoryResponse* response_;
  absl::Time deadline_;
  absl::Time began_;
  absl::Mutex mu_;
  uint64_t watch_id_ ABSL_GUARDED_BY(mu_) = 0;
  AlarmId alarm_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

WorkflowHandler::WorkflowHandler(FrontendDeps deps)
    : deps_(std::move(deps)), metrics_(deps_.registry), start_time_(absl::Now()) {}

absl::StatusOr<Principal> WorkflowHandler::Admit(Ctx* ctx, Rpc rpc, std::string_view task_queue) {
  if (deps_.authorizer == nullptr) return Principal{};
  return deps_.authorizer->Admit(*ctx, rpc, task_queue);
}

absl::Status WorkflowHandler::CheckActivityAnswer(const Principal& principal, Rpc rpc,
                                                  const std::string& task_token,
                                                  bool drives_workflow) {
  if (deps_.authorizer == nullptr) return absl::OkStatus();
  return deps_.authorizer->CheckActivityAnswer(principal, rpc, task_token, drives_workflow);
}

absl::Time WorkflowHandler::PollDeadline(Ctx* ctx) {
  absl::Time now = deps_.clock->Now();
  absl::Time deadline = now + deps_.long_poll;
  absl::Time caller = absl::FromChrono(ctx->deadline());
  if (caller - limits::kLongPollMargin < deadline) deadline = caller - limits::kLongPollMargin;
  return std::max(deadline, now);
}

grpc::ServerUnaryReactor* WorkflowHandler::RunOnExecutor(Ctx* ctx, const char* method,
                                                         std::function<absl::Status()> work) {
  Reactor* reactor = ctx->DefaultReactor();
  absl::Time began = deps_.clock->Now();
  bool queued = deps_.executor->TrySubmit([this, reactor, method, began, work = std::move(work)] {
    absl::Status status = work();
    metrics_.Record(method, status, deps_.clock->Now() - began);
    reactor->Finish(ToGrpc(status));
  });
  if (!queued) {
    absl::Status status =
        absl::ResourceExhaustedError("orchestrator is overloaded: work queue full");
    metrics_.Record(method, status, absl::ZeroDuration());
    reactor->Finish(ToGrpc(status));
  }
  return reactor;
}

#define KILN_REJECT_IF_ERROR(ctx, method, expr)                     \
  do {                                                              \
    absl::Status kiln_invalid_ = (expr);                            \
    if (!kiln_invalid_.ok()) {                                      \
      metrics_.Record(method, kiln_invalid_, absl::ZeroDuration()); \
      auto* kiln_reactor_ = (ctx)->DefaultReactor();                \
      kiln_reactor_->Finish(ToGrpc(kiln_invalid_));                 \
      return kiln_reactor_;                                         \
    }                                                               \
  } while (0)

// Refuses the call unless its caller may call the method (the Rpc named like it).
#define KILN_AUTHORIZE(ctx, method, ...) \
  KILN_REJECT_IF_ERROR(ctx, #method, Admit(ctx, Rpc::k##method, ##__VA_ARGS__).status())

grpc::ServerUnaryReactor* WorkflowHandler::StartWorkflowExecution(
    Ctx* ctx, const api::StartWorkflowExecutionRequest* request,
    api::StartWorkflowExecutionResponse* response) {
  KILN_AUTHORIZE(ctx, StartWorkflowExecution);
  KILN_REJECT_IF_ERROR(ctx, "StartWorkflowExecution", ValidateStart(*request));
  return RunOnExecutor(ctx, "StartWorkflowExecution", [this, request, response] {
    auto result = deps_.engine->StartWorkflowExecution(*request);
    if (!result.ok()) return result.status();
    *response = std::move(*result);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WorkflowHandler::TerminateWorkflowExecution(
    Ctx* ctx, const api::TerminateWorkflowExecutionRequest* request,
    api::TerminateWorkflowExecutionResponse* response) {
  KILN_AUTHORIZE(ctx, TerminateWorkflowExecution);
  KILN_REJECT_IF_ERROR(ctx, "TerminateWorkflowExecution",
                       ValidateExecution(request->workflow_execution(), false));
  return RunOnExecutor(ctx, "TerminateWorkflowExecution", [this, request] {
    return deps_.engine->TerminateWorkflowExecution(*request);
  });
}

grpc::ServerUnaryReactor* WorkflowHandler::DescribeWorkflowExecution(
    Ctx* ctx, const api::DescribeWorkflowExecutionRequest* request,
    api::DescribeWorkflowExecutionResponse* response) {
  KILN_AUTHORIZE(ctx, DescribeWorkflowExecution);
  KILN_REJECT_IF_ERROR(ctx, "DescribeWorkflowExecution",
                       ValidateExecution(request->execution(), false));
  return RunOnExecutor(ctx, "DescribeWorkflowExecution", [this, request, response] {
    auto result = deps_.engine->DescribeWorkflowExecution(*request);
    if (!result.ok()) return result.status();
    *response = std::move(*result);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WorkflowHandler::GetWorkflowExecutionHistory(
    Ctx* ctx, const api::GetWorkflowExecutionHistoryRequest* request,
    api::GetWorkflowExecutionHistoryResponse* response) {
  KILN_AUTHORIZE(ctx, GetWorkflowExecutionHistory);
  KILN_REJECT_IF_ERROR(ctx, "GetWorkflowExecutionHistory",
                       ValidateExecution(request->execution(), false));
  auto* reactor = new HistoryWait(deps_, &metrics_, request, response, PollDeadline(ctx));
  reactor->Begin();
  return reactor;
}

grpc::ServerUnaryReactor* WorkflowHandler::ListWorkflowExecutions(
    Ctx* ctx, const api::ListWorkflowExecutionsRequest* request,
    api::ListWorkflowExecutionsResponse* response) {
  KILN_AUTHORIZE(ctx, ListWorkflowExecutions);
  KILN_REJECT_IF_ERROR(ctx, "ListWorkflowExecutions", ValidateNamespace(request->namespace_()));
  return RunOnExecutor(ctx, "ListWorkflowExecutions", [this, request, response] {
    auto result = deps_.engine->ListWorkflowExecutions(*request);
    if (!result.ok()) return result.status();
    *response = std::move(*result);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WorkflowHandler::PollWorkflowTaskQueue(
    Ctx* ctx, const api::PollWorkflowTaskQueueRequest* request,
    api::PollWorkflowTaskQueueResponse* response) {
  KILN_AUTHORIZE(ctx, PollWorkflowTaskQueue);
  KILN_REJECT_IF_ERROR(ctx, "PollWorkflowTaskQueue", ValidateNamespace(request->namespace_()));
  KILN_REJECT_IF_ERROR(ctx, "PollWorkflowTaskQueue", ValidateTaskQueue(request->task_queue()));
  KILN_REJECT_IF_ERROR(ctx, "PollWorkflowTaskQueue", ValidateIdentity(request->identity()));
  KILN_REJECT_IF_ERROR(ctx, "PollWorkflowTaskQueue",
                       ValidateWorkerInstance(request->worker_instance_id(), "worker_instance_id"));
  std::string identity = request->identity();
  std::string instance = request->worker_instance_id();
  auto* reactor = new TaskPoll<api::PollWorkflowTaskQueueResponse>(
      deps_, &metrics_, "PollWorkflowTaskQueue", keys::TaskKind::kWorkflow,
      request->namespace_().empty() ? deps_.engine->default_namespace() : request->namespace_(),
      request->task_queue().name(), identity, request->exclusive(), PollDeadline(ctx), response,
      [this, identity, instance](const QueuedTask& task, const std::string& request_id)
          -> absl::StatusOr<api::PollWorkflowTaskQueueResponse> {
        if (!task.record.query_id().empty()) {
          auto query = queries_.Get(task.record.query_id());
          if (!query.has_value()) return absl::NotFoundError("query no longer waiting");
          return deps_.engine->BuildQueryTask(task, *query);
        }
        return deps_.engine->RecordWorkflowTaskStarted(task, identity, request_id, std::nullopt,
                                                       instance);
      });
  reactor->Begin();
  return reactor;
}

grpc::ServerUnaryReactor* WorkflowHandler::PollActivityTaskQueue(
    Ctx* ctx, const api::PollActivityTaskQueueRequest* request,
    api::PollActivityTaskQueueResponse* response) {
  KILN_AUTHORIZE(ctx, PollActivityTaskQueue, request->task_queue().name());
  KILN_REJECT_IF_ERROR(ctx, "PollActivityTaskQueue", ValidateNamespace(request->namespace_()));
  KILN_REJECT_IF_ERROR(ctx, "PollActivityTaskQueue", ValidateTaskQueue(request->task_queue()));
  KILN_REJECT_IF_ERROR(ctx, "PollActivityTaskQueue", ValidateIdentity(request->identity()));
  std::string identity = request->identity();
  auto* reactor = new TaskPoll<api::PollActivityTaskQueueResponse>(
      deps_, &metrics_, "PollActivityTaskQueue", keys::TaskKind::kActivity,
      request->namespace_().empty() ? deps_.engine->default_namespace() : request->namespace_(),
      request->task_queue().name(), identity, request->exclusive(), PollDeadline(ctx), response,
      [this, identity](const QueuedTask& task, const std::string& request_id) {
        return deps_.engine->RecordActivityTaskStarted(task, identity, request_id);
      });
  reactor->Begin();
  return reactor;
}

grpc::ServerUnaryReactor* WorkflowHandler::RespondWorkflowTaskCompleted(
    Ctx* ctx, const api::RespondWorkflowTaskCompletedRequest* request,
    api::RespondWorkflowTaskCompletedResponse* response) {
  KILN_AUTHORIZE(ctx, RespondWorkflowTaskCompleted);
  KILN_REJECT_IF_ERROR(ctx, "RespondWorkflowTaskCompleted",
                       ValidateWorkerInstance(request->sticky_worker(), "sticky_worker"));
  return RunOnExecutor(ctx, "RespondWorkflowTaskCompleted", [this, request, response] {
    auto result = deps_.engine->RespondWorkflowTaskCompleted(*request);
    if (!result.ok()) return result.status();
    *response = std::move(*result);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WorkflowHandler::RespondWorkflowTaskFailed(
    Ctx* ctx, const api::RespondWorkflowTaskFailedRequest* request,
    api::RespondWorkflowTaskFailedResponse* response) {
  KILN_AUTHORIZE(ctx, RespondWorkflowTaskFailed);
  return RunOnExecutor(ctx, "RespondWorkflowTaskFailed", [this, request] {
    return deps_.engine->RespondWorkflowTaskFailed(*request);
  });
}

grpc::ServerUnaryReactor* WorkflowHandler::RecordActivityTaskHeartbeat(
    Ctx* ctx, const api::RecordActivityTaskHeartbeatRequest* request,
    api::RecordActivityTaskHeartbeatResponse* response) {
  absl::StatusOr<Principal> principal = Admit(ctx, Rpc::kRecordActivityTaskHeartbeat);
  KILN_REJECT_IF_ERROR(ctx, "RecordActivityTaskHeartbeat", principal.status());
  return RunOnExecutor(ctx, "RecordActivityTaskHeartbeat",
                       [this, request, response, principal = std::move(*principal)] {
                         RETURN_IF_ERROR(CheckActivityAnswer(
                             principal, Rpc::kRecordActivityTaskHeartbeat, request->task_token()));
                         auto result = deps_.engine->RecordActivityTaskHeartbeat(*request);
                         if (!result.ok()) return result.status();
                         *response = std::move(*result);
                         return absl::OkStatus();
                       });
}

grpc::ServerUnaryReactor* WorkflowHandler::RespondActivityTaskCompleted(
    Ctx* ctx, const api::RespondActivityTaskCompletedRequest* request,
    api::RespondActivityTaskCompletedResponse* response) {
  absl::StatusOr<Principal> principal = Admit(ctx, Rpc::kRespondActivityTaskCompleted);
  KILN_REJECT_IF_ERROR(ctx, "RespondActivityTaskCompleted", principal.status());
  KILN_REJECT_IF_ERROR(
      ctx, "RespondActivityTaskCompleted",
      ValidateWorkerInstance(request->speculative_workflow_task().completion().sticky_worker(),
                             "speculative_workflow_task.completion.sticky_worker"));
  return RunOnExecutor(
      ctx, "RespondActivityTaskCompleted",
      [this, request, response, principal = std::move(*principal)] {
        RETURN_IF_ERROR(CheckActivityAnswer(
            principal, Rpc::kRespondActivityTaskCompleted, request->task_token(),
            request->return_new_workflow_task() || request->has_speculative_workflow_task()));
        auto result = deps_.engine->RespondActivityTaskCompleted(*request);
        if (!result.ok()) return result.status();
        *response = std::move(*result);
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* WorkflowHandler::RespondActivityTaskFailed(
    Ctx* ctx, const api::RespondActivityTaskFailedRequest* request,
    api::RespondActivityTaskFailedResponse* response) {
  absl::StatusOr<Principal> principal = Admit(ctx, Rpc::kRespondActivityTaskFailed);
  KILN_REJECT_IF_ERROR(ctx, "RespondActivityTaskFailed", principal.status());
  return RunOnExecutor(
      ctx, "RespondActivityTaskFailed", [this, request, principal = std::move(*principal)] {
        RETURN_IF_ERROR(
            CheckActivityAnswer(principal, Rpc::kRespondActivityTaskFailed, request->task_token()));
        return deps_.engine->RespondActivityTaskFailed(*request);
      });
}

grpc::ServerUnaryReactor* WorkflowHandler::RespondActivityTaskCanceled(
    Ctx* ctx, const api::RespondActivityTaskCanceledRequest* request,
    api::RespondActivityTaskCanceledResponse* response) {
  absl::StatusOr<Principal> principal = Admit(ctx, Rpc::kRespondActivityTaskCanceled);
  KILN_REJECT_IF_ERROR(ctx, "RespondActivityTaskCanceled", principal.status());
  return RunOnExecutor(ctx, "RespondActivityTaskCanceled",
                       [this, request, principal = std::move(*principal)] {
                         RETURN_IF_ERROR(CheckActivityAnswer(
                             principal, Rpc::kRespondActivityTaskCanceled, request->task_token()));
                         return deps_.engine->RespondActivityTaskCanceled(*request);
                       });
}

grpc::ServerUnaryReactor* WorkflowHandler::CountWorkflowExecutions(
    Ctx* ctx, const api::CountWorkflowExecutionsRequest* request,
    api::CountWorkflowExecutionsResponse* response) {
  KILN_AUTHORIZE(ctx, CountWorkflowExecutions);
  KILN_REJECT_IF_ERROR(ctx, "CountWorkflowExecutions", ValidateNamespace(request->namespace_()));
  return RunOnExecutor(ctx, "CountWorkflowExecutions", [this, request, response] {
    auto result = deps_.engine->CountWorkflowExecutions(*request);
    if (!result.ok()) return result.status();
    *response = std::move(*result);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WorkflowHandler::SignalWorkflowExecution(
    Ctx* ctx, const api::SignalWorkflowExecutionRequest* request,
    api::SignalWorkflowExecutionResponse* response) {
  KILN_AUTHORIZE(ctx, SignalWorkflowExecution);
  KILN_REJECT_IF_ERROR(ctx, "SignalWorkflowExecution",
                       ValidateExecution(request->workflow_execution(), false));
  return RunOnExecutor(ctx, "SignalWorkflowExecution",
                       [this, request] { return deps_.engine->SignalWorkflowExecution(*request); });
}

grpc::ServerUnaryReactor* WorkflowHandler::SignalWithStartWorkflowExecution(
    Ctx* ctx, const api::SignalWithStartWorkflowExecutionRequest* request,
    api::SignalWithStartWorkflowExecutionResponse* response) {
  KILN_AUTHORIZE(ctx, SignalWithStartWorkflowExecution);
  KILN_REJECT_IF_ERROR(ctx, "SignalWithStartWorkflowExecution", ValidateStart(request->start()));
  return RunOnExecutor(ctx, "SignalWithStartWorkflowExecution", [this, request, response] {
    auto result = deps_.engine->SignalWithStartWorkflowExecution(*request);
    if (!result.ok()) return result.status();
    *response = std::move(*result);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WorkflowHandler::RequestCancelWorkflowExecution(
    Ctx* ctx, const api::RequestCancelWorkflowExecutionRequest* request,
    api::RequestCancelWorkflowExecutionResponse* response) {
  KILN_AUTHORIZE(ctx, RequestCancelWorkflowExecution);
  KILN_REJECT_IF_ERROR(ctx, "RequestCancelWorkflowExecution",
                       ValidateExecution(request->workflow_execution(), false));
  return RunOnExecutor(ctx, "RequestCancelWorkflowExecution", [this, request] {
    return deps_.engine->RequestCancelWorkflowExecution(*request);
  });
}

grpc::ServerUnaryReactor* WorkflowHandler::QueryWorkflow(Ctx* ctx,
                                                         const api::QueryWorkflowRequest* request,
                                                         api::QueryWorkflowResponse* response) {
  KILN_AUTHORIZE(ctx, QueryWorkflow);
  KILN_REJECT_IF_ERROR(ctx, "QueryWorkflow", ValidateExecution(request->execution(), false));
  if (request->query().query_type().empty()) {
    KILN_REJECT_IF_ERROR(ctx, "QueryWorkflow",
                         absl::InvalidArgumentError("query.query_type: must be set"));
  }
  Reactor* reactor = ctx->DefaultReactor();
  absl::Time began = deps_.clock->Now();
  absl::Time deadline = PollDeadline(ctx);
  bool queued = deps_.executor->TrySubmit([this, reactor, request, response, began, deadline] {
    auto finish = [this, reactor, began](const absl::Status& status) {
      metrics_.Record("QueryWorkflow", status, deps_.clock->Now() - began);
      reactor->Finish(ToGrpc(status));
    };
    api::DescribeWorkflowExecutionRequest describe;
    describe.set_namespace_(request->namespace_());
    *describe.mutable_execution() = request->execution();
    auto described = deps_.engine->DescribeWorkflowExecution(describe);
    if (!described.ok()) return finish(described.status());
    const auto& info = described->workflow_execution_info();
    auto added =
        queries_.Add(request->query(), [finish, response](absl::StatusOr<api::Payloads> answer) {
          if (answer.ok()) *response->mutable_query_result() = std::move(*answer);
          finish(answer.status());
        });
    if (!added.ok()) return finish(added.status());
    std::string query_id = added->first;
    QueuedTask task;
    task.kind = keys::TaskKind::kWorkflow;
    task.ns =
        request->namespace_().empty() ? deps_.engine->default_namespace() : request->namespace_();
    task.queue = info.task_queue();
    task.task_id = added->second;
    task.record.set_namespace_(task.ns);
    task.record.set_workflow_id(info.execution().workflow_id());
    task.record.set_run_id(info.execution().run_id());
    task.record.set_query_id(query_id);
    deps_.matching->TaskAdded(std::move(task));
    deps_.clock->ScheduleAlarm(deadline, [this, query_id, queue = info.task_queue()] {
      queries_.Complete(query_id, absl::DeadlineExceededError(
                                      absl::StrCat("no worker on task queue ", queue,
                                                   " answered the query before the deadline")));
    });
  });
  if (!queued) {
    reactor->Finish(ToGrpc(absl::ResourceExhaustedError("orchestrator is overloaded")));
  }
  return reactor;
}

grpc::ServerUnaryReactor* WorkflowHandler::RespondQueryTaskCompleted(
    Ctx* ctx, const api::RespondQueryTaskCompletedRequest* request,
    api::RespondQueryTaskCompletedResponse* response) {
  KILN_AUTHORIZE(ctx, RespondQueryTaskCompleted);
  auto token = DecodeTaskToken(request->task_token());
  absl::Status status = token.status();
  if (token.ok() && token->kind() != "q") {
    status = absl::InvalidArgumentError("task_token: not a query task");
  }
  if (status.ok()) {
    absl::StatusOr<api::Payloads> answer = request->query_result();
    if (request->completed_type() == api::QUERY_RESULT_TYPE_FAILED) {
      answer =
          absl::FailedPreconditionError(absl::StrCat("query failed: ", request->error_message()));
    }
    if (!queries_.Complete(token->activity_id(), std::move(answer))) {
      status = absl::NotFoundError("the query is no longer waiting (it timed out)");
    }
  }
  metrics_.Record("RespondQueryTaskCompleted", status, absl::ZeroDuration());
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpc(status));
  return reactor;
}

grpc::ServerUnaryReactor* WorkflowHandler::DescribeTaskQueue(
    Ctx* ctx, const api::DescribeTaskQueueRequest* request,
    api::DescribeTaskQueueResponse* response) {
  KILN_AUTHORIZE(ctx, DescribeTaskQueue);
  KILN_REJECT_IF_ERROR(ctx, "DescribeTaskQueue", ValidateTaskQueue(request->task_queue()));
  return RunOnExecutor(ctx, "DescribeTaskQueue", [this, request, response] {
    auto described = deps_.matching->Describe(
        request->activity() ? keys::TaskKind::kActivity : keys::TaskKind::kWorkflow,
        request->namespace_().empty() ? deps_.engine->default_namespace() : request->namespace_(),
        request->task_queue().name());
    if (!described.ok()) return described.status();
    for (const PollerInfo& poller : described->pollers) {
      auto* p = response->add_pollers();
      p->set_identity(poller.identity);
      ToProto(poller.last_seen, p->mutable_last_access_time());
    }
    response->set_backlog_count(described->backlog_count);
    if (!described->exclusive_holder.empty()) {
      response->set_exclusive_holder(described->exclusive_holder);
      ToProto(described->exclusive_lease_expiry, response->mutable_exclusive_lease_expiry());
    }
    response->set_backlog_count_capped(described->backlog_count_capped);
    if (described->oldest_task_created != absl::InfinitePast()) {
      ToProto(deps_.clock->Now() - described->oldest_task_created,
              response->mutable_oldest_task_age());
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WorkflowHandler::GetSystemInfo(Ctx* ctx,
                                                         const api::GetSystemInfoRequest* request,
                                                         api::GetSystemInfoResponse* response) {
  KILN_AUTHORIZE(ctx, GetSystemInfo);
  response->set_server_version(kVersion);
  response->mutable_start_time()->set_seconds(absl::ToUnixSeconds(start_time_));
  response->set_data_dir(deps_.data_dir);
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace kiln::orchestrator
