#include "orchestrator/frontend/long_polls.h"

#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "orchestrator/frontend/run_wait.h"
#include "orchestrator/rpc/reactor.h"

namespace kiln::orchestrator {
namespace {

// A task-queue long poll: waits in matching (no thread), records the start of the task it gets,
// and answers; a stale task is dropped and the poll goes on until its deadline.
template <typename Response>
class TaskPoll final : public RefCountedReactor {
 public:
  using Start = std::function<absl::StatusOr<Response>(const QueuedTask&, const std::string&)>;

  TaskPoll(const FrontendDeps& deps, RpcMetrics* metrics, const char* method, keys::TaskKind kind,
           std::string ns, std::string queue, std::string identity, bool exclusive,
           std::string worker_instance_id, absl::Time deadline, Response* response, Start start)
      : deps_(deps),
        metrics_(metrics),
        method_(method),
        kind_(kind),
        ns_(std::move(ns)),
        queue_(std::move(queue)),
        identity_(std::move(identity)),
        exclusive_(exclusive),
        worker_instance_id_(std::move(worker_instance_id)),
        deadline_(deadline),
        response_(response),
        start_(std::move(start)),
        began_(deps.clock->Now()) {}

  void Begin() {
    Ref();  // For the matching callback.
    auto poll = deps_.matching->Poll(
        kind_, ns_, queue_, identity_, deadline_,
        [this](std::optional<QueuedTask> task) { OnTask(std::move(task)); },
        PollOptions{.exclusive = exclusive_, .worker_instance_id = worker_instance_id_});
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
    // Started and its answer built by the transition that made it (HistoryEngine::Commit):
    // answered now, with no hop to the executor.
    std::shared_ptr<Response> answer;
    if constexpr (std::is_same_v<Response, api::PollWorkflowTaskQueueResponse>) {
      answer = std::move(task->answer);
    } else {
      answer = std::move(task->activity_answer);
    }
    if (answer != nullptr) {
      deps_.matching->Done(*task);
      Done(absl::OkStatus(), [&] { *response_ = std::move(*answer); });
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
  std::string worker_instance_id_;
  absl::Time deadline_;
  Response* response_;
  Start start_;
  absl::Time began_;
  absl::Mutex mu_;
  uint64_t poll_id_ ABSL_GUARDED_BY(mu_) = 0;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

// A history read that may wait for new events (how a client waits for a workflow's result).
class HistoryWait final : public RunWaitReactor {
 public:
  HistoryWait(const FrontendDeps& deps, RpcMetrics* metrics,
              const api::GetWorkflowExecutionHistoryRequest* request,
              api::GetWorkflowExecutionHistoryResponse* response, absl::Time deadline,
              std::function<absl::Status()> admit)
      : RunWaitReactor(deps),
        metrics_(metrics),
        request_(*request),
        response_(response),
        deadline_(deadline),
        began_(deps.clock->Now()),
        admit_(std::move(admit)) {}

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
    // Once: later attempts read the same run for the same caller.
    if (admit_) {
      absl::Status admitted = std::exchange(admit_, nullptr)();
      if (!admitted.ok()) return Done(admitted);
    }
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
          WatchFired();
          if (!finished()) Schedule();
          Unref();
        },
        close_only);
    if (!watch.ok()) {
      Unref();
      // Shutting down: the wait ends empty now, as task polls do, and the client asks again
      // (of the next orchestrator) instead of holding the shutdown to its full drain.
      if (absl::IsUnavailable(watch.status())) return Respond(EmptyPage());
      return Done(watch.status());
    }
    SetWatch(*watch);
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
    CancelAlarm();
  }

  RpcMetrics* metrics_;
  // A copy: the call's own request may be freed once the call is finished (e.g. cancelled)
  // while an attempt still runs on the executor.
  const api::GetWorkflowExecutionHistoryRequest request_;
  api::GetWorkflowExecutionHistoryResponse* response_;
  absl::Time deadline_;
  absl::Time began_;
  // Run by the first attempt and cleared, before any watch exists (so before any other attempt).
  std::function<absl::Status()> admit_;
};

}  // namespace

grpc::ServerUnaryReactor* StartWorkflowTaskPoll(
    const FrontendDeps& deps, RpcMetrics* metrics, TaskPollTarget target,
    api::PollWorkflowTaskQueueResponse* response,
    StartTask<api::PollWorkflowTaskQueueResponse> start) {
  auto* reactor = new TaskPoll<api::PollWorkflowTaskQueueResponse>(
      deps, metrics, "PollWorkflowTaskQueue", keys::TaskKind::kWorkflow, std::move(target.ns),
      std::move(target.queue), std::move(target.identity), target.exclusive,
      std::move(target.worker_instance_id), target.deadline, response, std::move(start));
  reactor->Begin();
  return reactor;
}

grpc::ServerUnaryReactor* StartActivityTaskPoll(
    const FrontendDeps& deps, RpcMetrics* metrics, TaskPollTarget target,
    api::PollActivityTaskQueueResponse* response,
    StartTask<api::PollActivityTaskQueueResponse> start) {
  auto* reactor = new TaskPoll<api::PollActivityTaskQueueResponse>(
      deps, metrics, "PollActivityTaskQueue", keys::TaskKind::kActivity, std::move(target.ns),
      std::move(target.queue), std::move(target.identity), target.exclusive,
      std::move(target.worker_instance_id), target.deadline, response, std::move(start));
  reactor->Begin();
  return reactor;
}

grpc::ServerUnaryReactor* StartHistoryWait(const FrontendDeps& deps, RpcMetrics* metrics,
                                           const api::GetWorkflowExecutionHistoryRequest* request,
                                           api::GetWorkflowExecutionHistoryResponse* response,
                                           absl::Time deadline,
                                           std::function<absl::Status()> admit) {
  auto* reactor = new HistoryWait(deps, metrics, request, response, deadline, std::move(admit));
  reactor->Begin();
  return reactor;
}

}  // namespace kiln::orchestrator
