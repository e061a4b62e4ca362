#include "orchestrator/frontend/start_wait.h"

#include <utility>

#include "absl/synchronization/mutex.h"
#include "common/hop_trace.h"
#include "orchestrator/frontend/run_wait.h"

namespace kiln::orchestrator {
namespace {

constexpr char kMethod[] = "StartWorkflowExecution.WaitForClose";

class StartWait final : public RunWaitReactor {
 public:
  StartWait(const FrontendDeps& deps, RpcMetrics* metrics,
            const api::StartWorkflowExecutionRequest* request,
            api::StartWorkflowExecutionResponse* response, absl::Time deadline,
            std::function<absl::StatusOr<api::StartWorkflowExecutionResponse>()> start,
            std::function<absl::Status(const api::WorkflowExecution&)> may_read)
      : RunWaitReactor(deps),
        metrics_(metrics),
        request_(request),
        response_(response),
        deadline_(deadline),
        began_(deps.clock->Now()),
        start_(std::move(start)),
        may_read_(std::move(may_read)) {}

  void Begin() {
    hoptrace::Mark("o.start.rpc");
    Ref();
    if (!deps_.executor->TrySubmit([this] {
          Start();
          Unref();
        })) {
      {
        absl::MutexLock lock(&mu_);
        starting_ = false;
      }
      Done(absl::ResourceExhaustedError("orchestrator is overloaded: work queue full"));
      Unref();
    }
  }

  void OnCancel() override {
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      // The start still reads the request: it finishes the call once it is done.
      if (starting_) return;
    }
    Done(absl::CancelledError("start cancelled while waiting for the run to close"));
  }

 private:
  void Start() {
    hoptrace::Mark("o.start.exec");
    absl::StatusOr<api::StartWorkflowExecutionResponse> started = start_();
    hoptrace::Mark("o.started");
    // The last reads of the request: once starting_ is false a cancel may finish the call.
    api::GetWorkflowExecutionHistoryRequest read;
    read.set_namespace_(request_->namespace_());
    read.mutable_execution()->set_workflow_id(request_->workflow_id());
    {
      absl::MutexLock lock(&mu_);
      starting_ = false;
      if (cancelled_) started = absl::CancelledError("start cancelled");
    }
    if (!started.ok()) return Done(started.status());
    started_ = std::move(*started);
    read.mutable_execution()->set_run_id(started_.run_id());
    const api::WorkflowExecution& execution = read.execution();
    if (!may_read_(execution).ok() || deps_.clock->Now() >= deadline_) return Answer(nullptr);

    // Watch first, then read: a close committed between the two still wakes the watcher.
    Ref();
    auto watch = deps_.watchers->WatchClose(execution.run_id(),
                                            [this](const api::HistoryEvent* close_event) {
                                              hoptrace::Mark("o.closed");
                                              WatchFired();
                                              Answer(close_event);
                                              Unref();
                                            });
    if (!watch.ok()) {
      Unref();
      return Answer(nullptr);
    }
    SetWatch(*watch);
    // Closed already: a retried start of a run that closed, or one whose first task closed it.
    read.set_history_event_filter_type(api::HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT);
    absl::StatusOr<HistoryRead> closed = deps_.engine->ReadHistory(read);
    if (!closed.ok() || closed->response.history().events_size() > 0) {
      CancelWatch();
      return Answer(closed.ok() ? &closed->response.history().events(0) : nullptr);
    }
    absl::MutexLock lock(&mu_);
    if (finished_here_ || alarm_ != 0) return;
    Ref();
    alarm_ = deps_.clock->ScheduleAlarm(deadline_, [this] {
      {
        absl::MutexLock lock(&mu_);
        alarm_ = 0;
      }
      Answer(nullptr);  // Still open: the caller waits as usual.
      Unref();
    });
  }

  // The start's answer, with the close event when there is one that fits.
  void Answer(const api::HistoryEvent* close_event) {
    if (close_event != nullptr && close_event->ByteSizeLong() > kMaxWaitedCloseEventBytes) {
      close_event = nullptr;
    }
    Done(absl::OkStatus(), [&] {
      *response_ = std::move(started_);
      if (close_event != nullptr) *response_->mutable_close_event() = *close_event;
    });
  }

  void Done(const absl::Status& status, const std::function<void()>& write = nullptr) {
    const bool finished = FinishOnce(
        status, write, [&] { metrics_->Record(kMethod, status, deps_.clock->Now() - began_); });
    if (!finished) return;
    CancelWatch();
    {
      absl::MutexLock lock(&mu_);
      finished_here_ = true;
    }
    CancelAlarm();
  }

  RpcMetrics* metrics_;
  // The call's own: read only while starting_ is true (a cancel waits for the start to end).
  const api::StartWorkflowExecutionRequest* request_;
  api::StartWorkflowExecutionResponse* response_;
  const absl::Time deadline_;
  const absl::Time began_;
  std::function<absl::StatusOr<api::StartWorkflowExecutionResponse>()> start_;
  std::function<absl::Status(const api::WorkflowExecution&)> may_read_;
  // Written once by Start before any watcher or alarm exists; moved into the answer.
  api::StartWorkflowExecutionResponse started_;
  bool starting_ ABSL_GUARDED_BY(mu_) = true;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_here_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerUnaryReactor* StartAndWaitForClose(
    const FrontendDeps& deps, RpcMetrics* metrics,
    const api::StartWorkflowExecutionRequest* request,
    api::StartWorkflowExecutionResponse* response, absl::Time deadline,
    std::function<absl::StatusOr<api::StartWorkflowExecutionResponse>()> start,
    std::function<absl::Status(const api::WorkflowExecution&)> may_read) {
  auto* reactor = new StartWait(deps, metrics, request, response, deadline, std::move(start),
                                std::move(may_read));
  reactor->Begin();
  return reactor;
}

}  // namespace kiln::orchestrator
