// `kiln workflow logs`: writes a run's log stream byte for byte. With --follow it keeps
// following until the run closes: a second thread long-polls the run's history for its close
// event and then cancels the follow, and the command reads what is left and exits. A follow
// broken by an orchestrator restart resumes from the offset after the last byte written, so
// the output has no gap and no repeat.
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "cli/workflow_actions.h"

namespace kiln::cli {

namespace api = ::kiln::api::v1;

namespace {

// How long a follow keeps reconnecting without getting through before it gives up.
constexpr absl::Duration kReconnectFor = absl::Seconds(60);
constexpr absl::Duration kMaxReconnectBackoff = absl::Seconds(2);
// The deadline of a read that does not follow (a whole stream is at most 256 MiB).
constexpr absl::Duration kReadTimeout = absl::Minutes(10);

// Long-polls the run's history for its close event on its own thread; at the close, cancels
// the follow call attached at that moment.
class CloseWatch {
 public:
  CloseWatch(WorkflowStub& stub, api::WorkflowExecution execution)
      : stub_(stub), execution_(std::move(execution)), thread_([this] { Loop(); }) {}
  ~CloseWatch() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
      if (poll_ != nullptr) poll_->TryCancel();
    }
    thread_.join();
  }

  bool closed() {
    absl::MutexLock lock(&mu_);
    return closed_;
  }

  // The follow call to cancel at the close; nullptr detaches it.
  void Attach(grpc::ClientContext* follow) {
    absl::MutexLock lock(&mu_);
    follow_ = follow;
    if (closed_ && follow_ != nullptr) follow_->TryCancel();
  }

 private:
  void Loop() {
    api::GetWorkflowExecutionHistoryRequest request;
    *request.mutable_execution() = execution_;
    request.set_wait_new_event(true);
    request.set_history_event_filter_type(api::HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT);
    for (;;) {
      std::unique_ptr<grpc::ClientContext> context = CallContext(kLongPollTimeout);
      {
        absl::MutexLock lock(&mu_);
        if (stop_) return;
        poll_ = context.get();
      }
      api::GetWorkflowExecutionHistoryResponse response;
      grpc::Status status = stub_.GetWorkflowExecutionHistory(context.get(), request, &response);
      absl::MutexLock lock(&mu_);
      poll_ = nullptr;
      if (stop_) return;
      if (status.ok() && response.history().events_size() > 0) {
        closed_ = true;
        if (follow_ != nullptr) follow_->TryCancel();
        return;
      }
      if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
        // The orchestrator is restarting: ask again shortly (or stop when told to).
        mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::Milliseconds(500));
      } else if (!status.ok() && status.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
        return;  // Unexpected: stop watching; the follow still ends at the server's idle limit.
      }
    }
  }

  WorkflowStub& stub_;
  const api::WorkflowExecution execution_;
  absl::Mutex mu_;
  grpc::ClientContext* poll_ ABSL_GUARDED_BY(mu_) = nullptr;
  grpc::ClientContext* follow_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// One ReadLog call from `*offset`: writes what arrives and advances `*offset` past it.
grpc::Status ReadOnce(LogStub& logs, api::ReadLogRequest request, CloseWatch* watch,
                      int64_t* offset, const Io& io) {
  request.set_from_offset(*offset);
  grpc::ClientContext context;
  if (!request.follow()) {
    context.set_deadline(std::chrono::system_clock::now() +
                         absl::ToChronoMilliseconds(kReadTimeout));
  }
  if (watch != nullptr) watch->Attach(&context);
  std::unique_ptr<grpc::ClientReaderInterface<api::ReadLogResponse>> reader =
      logs.ReadLog(&context, request);
  api::ReadLogResponse response;
  grpc::Status gap;
  while (reader->Read(&response)) {
    if (response.offset() != *offset) {
      gap = grpc::Status(
          grpc::StatusCode::DATA_LOSS,
          absl::StrCat("the log jumped from offset ", *offset, " to ", response.offset()));
      context.TryCancel();
      break;
    }
    io.log.write(response.data().data(), static_cast<std::streamsize>(response.data().size()));
    io.log.flush();
    *offset += static_cast<int64_t>(response.data().size());
  }
  grpc::Status status = reader->Finish();
  if (watch != nullptr) watch->Attach(nullptr);
  return gap.ok() ? status : gap;
}

}  // namespace

int PrintLogs(WorkflowStub& workflows, LogStub& logs, const LogsOptions& options, const Io& io) {
  api::ReadLogRequest request;
  request.mutable_execution()->set_workflow_id(options.run.workflow_id);
  request.mutable_execution()->set_run_id(options.run.run_id);
  request.set_stream(options.stream);
  int64_t offset = options.from_offset;
  if (!options.follow) {
    grpc::Status status = ReadOnce(logs, request, nullptr, &offset, io);
    return status.ok() ? 0 : ReportError(io, status);
  }

  // Pin the run, so a reconnect reads the same run's stream even if the workflow moves on.
  api::DescribeWorkflowExecutionRequest describe;
  *describe.mutable_execution() = request.execution();
  api::DescribeWorkflowExecutionResponse described;
  grpc::Status status =
      workflows.DescribeWorkflowExecution(CallContext(kCallTimeout).get(), describe, &described);
  if (!status.ok()) return ReportError(io, status);
  const api::WorkflowExecutionInfo& info = described.workflow_execution_info();
  request.mutable_execution()->set_run_id(info.execution().run_id());
  if (info.status() != api::WORKFLOW_EXECUTION_STATUS_RUNNING) {
    status = ReadOnce(logs, request, nullptr, &offset, io);  // Closed: nothing more will come.
    return status.ok() ? 0 : ReportError(io, status);
  }

  CloseWatch watch(workflows, request.execution());
  absl::Time trying_since = absl::Now();
  absl::Duration backoff = absl::Milliseconds(100);
  for (;;) {
    const int64_t before = offset;
    request.set_follow(!watch.closed());
    status = ReadOnce(logs, request, request.follow() ? &watch : nullptr, &offset, io);
    if (!request.follow()) return status.ok() ? 0 : ReportError(io, status);  // The rest.
    if (watch.closed()) continue;
    if (offset > before || status.ok()) {
      // Progress, or the server's idle limit ended the follow: follow on.
      trying_since = absl::Now();
      backoff = absl::Milliseconds(100);
    }
    if (status.ok()) continue;
    // UNAVAILABLE: the orchestrator went away (or ended the follow at its shutdown). CANCELLED
    // (this command cancels only at the close): gRPC refused the call while the orchestrator
    // was shutting down.
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE &&
        status.error_code() != grpc::StatusCode::CANCELLED) {
      return ReportError(io, status);
    }
    if (absl::Now() - trying_since > kReconnectFor) {
      return ReportError(
          io, absl::StrCat("lost the orchestrator for over ", absl::FormatDuration(kReconnectFor),
                           ": ", status.error_message()));
    }
    absl::SleepFor(backoff);  // Reconnect shortly.
    backoff = std::min(backoff * 2, kMaxReconnectBackoff);
  }
}

}  // namespace kiln::cli
