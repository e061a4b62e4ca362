#include "orchestrator/frontend/worker_stream.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/hop_trace.h"
#include "common/logging.h"
#include "common/rpc_status.h"
#include "common/status.h"
#include "orchestrator/rpc/reactor.h"

namespace kiln::orchestrator {
namespace {

using StreamReactor = grpc::ServerBidiReactor<api::WorkerStreamRequest, api::WorkerStreamResponse>;

// Waiting polls re-arm at this deadline: matching answers a poll empty at its deadline, and a
// stream lives far longer than one poll.
constexpr absl::Duration kStreamPollDeadline = absl::Seconds(60);

class WorkerStreamReactor final : public StreamReactor {
 public:
  WorkerStreamReactor(grpc::CallbackServerContext* ctx, const FrontendDeps& deps,
                      RpcMetrics* metrics, WorkerStreamHost* host, WorkerStreamCounts* counts)
      : ctx_(ctx),
        deps_(deps),
        metrics_(metrics),
        host_(host),
        counts_(counts),
        began_(deps.clock->Now()) {}

  void Begin() { StartRead(&in_); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The worker half-closed or went away: no more tasks; what is queued still goes out.
      Close(absl::OkStatus(), /*hard=*/false);
      return;
    }
    hoptrace::Mark("o.read");
    absl::Status handled = Handle();
    // The next read parses into a clean message (its credits are not this one's).
    in_.Clear();
    if (!handled.ok()) {
      Close(handled, /*hard=*/true);
      return;
    }
    absl::MutexLock lock(&mu_);
    if (closing_) return;
    if (completions_in_flight_ >= kMaxStreamCompletionsInFlight) {
      read_paused_ = true;  // Resumed when an answer goes out.
    } else {
      StartRead(&in_);
    }
  }

  void OnWriteDone(bool ok) override {
    bool finish = false;
    bool write = false;
    {
      absl::MutexLock lock(&mu_);
      write_in_flight_ = false;
      hoptrace::Mark("o.wdone");
      if (!ok) {
        hard_ = true;
        closing_ = true;
      }
      write = TakeWriteLocked();
      finish = !write && FinishDueLocked();
    }
    if (!ok) CancelPolls();
    if (write) StartWrite(&writing_);
    if (finish) DoFinish();
    Unref();  // The write's reference.
  }

  void OnCancel() override { Close(absl::CancelledError("worker stream cancelled"), true); }

  void OnDone() override {
    if (counted_) counts_->Remove(queue_key_);
    Unref();
  }

 private:
  void Ref() { refs_.Ref(); }
  void Unref() {
    if (refs_.Unref()) delete this;
  }

  // One request: the open (first), credits, completions.
  absl::Status Handle() {
    if (!opened_) {
      if (!in_.has_open()) {
        return absl::InvalidArgumentError("the first WorkerStream request must open the stream");
      }
      absl::StatusOr<Principal> principal = host_->AdmitStream(ctx_, in_.open());
      if (!principal.ok()) return principal.status();
      principal_ = std::move(*principal);
      open_ = in_.open();
      if (open_.namespace_().empty()) open_.set_namespace_(deps_.engine->default_namespace());
      kind_ = open_.kind() == api::WORKER_STREAM_KIND_WORKFLOW ? keys::TaskKind::kWorkflow
                                                               : keys::TaskKind::kActivity;
      queue_key_ = absl::StrCat(open_.kind(), "/", open_.namespace_().size(), "/",
                                open_.namespace_(), "/", open_.task_queue().name());
      RETURN_IF_ERROR(counts_->Add(queue_key_));
      counted_ = true;
      opened_ = true;
    } else if (in_.has_open()) {
      return absl::InvalidArgumentError("a WorkerStream is opened once");
    }
    // The in-flight bound pauses reading between messages; one message could still carry
    // millions (an empty completion is two bytes), each an executor task and a queued answer.
    // A worker never has more to answer than its credits.
    if (in_.completions_size() > kMaxStreamCompletionsInFlight) {
      return absl::InvalidArgumentError(
          absl::StrCat("a WorkerStream message carries at most ", kMaxStreamCompletionsInFlight,
                       " completions (a worker holds no more tasks than its credits)"));
    }
    if (in_.credits() > 0) {
      {
        absl::MutexLock lock(&mu_);
        // Compared so that no sum can overflow (a grant may be any int32).
        if (in_.credits() > kMaxStreamCredits - credits_) {
          return absl::InvalidArgumentError(
              absl::StrCat("a stream holds at most ", kMaxStreamCredits, " credits"));
        }
        credits_ += in_.credits();
      }
      ArmPolls();
    } else if (in_.credits() < 0) {
      // Taken back: the polls beyond the credits left end (a task one of them got meanwhile
      // is still pushed; the worker accepts it).
      std::vector<Matching::PollId> cancel;
      {
        absl::MutexLock lock(&mu_);
        credits_ = std::max(0, credits_ + in_.credits());
        int excess = armed_ - credits_;
        for (const auto& [token, id] : polls_) {
          if (excess <= 0) break;
          if (id == 0) continue;
          cancel.push_back(id);
          --excess;
        }
      }
      for (Matching::PollId id : cancel) deps_.matching->CancelPoll(id);
    }
    for (api::WorkerStreamCompletion& completion : *in_.mutable_completions()) {
      {
        absl::MutexLock lock(&mu_);
        ++completions_in_flight_;
      }
      Ref();
      auto shared = std::make_shared<api::WorkerStreamCompletion>(std::move(completion));
      if (!deps_.executor->TrySubmit([this, shared] {
            absl::Time began = deps_.clock->Now();
            hoptrace::Mark("o.exec");
            api::WorkerStreamAnswer answer = host_->Complete(principal_, open_, *shared);
            metrics_->Record(CompletionMethod(*shared),
                             absl::Status(static_cast<absl::StatusCode>(answer.code()), ""),
                             deps_.clock->Now() - began);
            hoptrace::Mark("o.completed");
            Answer(std::move(answer));
            Unref();
          })) {
        api::WorkerStreamAnswer busy;
        busy.set_seq(shared->seq());
        busy.set_code(static_cast<int>(absl::StatusCode::kResourceExhausted));
        busy.set_message("orchestrator is overloaded: work queue full");
        Answer(std::move(busy));
        Unref();
      }
    }
    return absl::OkStatus();
  }

  static const char* CompletionMethod(const api::WorkerStreamCompletion& c) {
    switch (c.completion_case()) {
      case api::WorkerStreamCompletion::kWorkflowTaskCompleted:
        return "WorkerStream.RespondWorkflowTaskCompleted";
      case api::WorkerStreamCompletion::kWorkflowTaskFailed:
        return "WorkerStream.RespondWorkflowTaskFailed";
      case api::WorkerStreamCompletion::kActivityTaskCompleted:
        return "WorkerStream.RespondActivityTaskCompleted";
      case api::WorkerStreamCompletion::kActivityTaskFailed:
        return "WorkerStream.RespondActivityTaskFailed";
      case api::WorkerStreamCompletion::kActivityTaskCanceled:
        return "WorkerStream.RespondActivityTaskCanceled";
      case api::WorkerStreamCompletion::COMPLETION_NOT_SET:
        break;
    }
    return "WorkerStream.Unknown";
  }

  // One waiting poll per credit not yet armed. A poll refused (another identity holds the
  // queue, too many pollers, shutting down) ends the stream with that error.
  void ArmPolls() {
    for (;;) {
      uint64_t token;
      {
        absl::MutexLock lock(&mu_);
        if (closing_ || armed_ >= credits_) return;
        ++armed_;
        token = ++next_token_;
        polls_.emplace(token, 0);
      }
      Ref();  // For the poll's callback.
      absl::StatusOr<Matching::PollId> poll = deps_.matching->Poll(
          kind_, open_.namespace_(), open_.task_queue().name(), open_.identity(),
          deps_.clock->Now() + kStreamPollDeadline,
          [this, token](std::optional<QueuedTask> task) { OnPollAnswer(token, std::move(task)); },
          PollOptions{.exclusive = open_.exclusive(),
                      .worker_instance_id = open_.worker_instance_id(),
                      .stream = true});
      if (!poll.ok()) {
        {
          absl::MutexLock lock(&mu_);
          --armed_;
          polls_.erase(token);
        }
        Unref();
        Close(poll.status(), /*hard=*/true);
        return;
      }
      bool cancel = false;
      {
        absl::MutexLock lock(&mu_);
        auto it = polls_.find(token);
        if (it != polls_.end()) {
          it->second = *poll;
          cancel = closing_;
        }
      }
      if (cancel) deps_.matching->CancelPoll(*poll);
    }
  }

  // Matching's answer to one of the stream's polls (see Matching::PollCallback: must not block).
  void OnPollAnswer(uint64_t token, std::optional<QueuedTask> task) {
    bool closing;
    {
      absl::MutexLock lock(&mu_);
      polls_.erase(token);
      --armed_;
      if (task.has_value()) --credits_;  // The credit goes with the task, whatever follows.
      closing = closing_;
    }
    if (!task.has_value()) {
      // The poll's deadline, a cancel, another identity taking the queue: ask again (the
      // last is then refused and ends the stream), off matching's call path.
      if (!closing && !deps_.executor->TrySubmit([this] {
            ArmPolls();
            Unref();
          })) {
        Close(absl::ResourceExhaustedError("orchestrator is overloaded: work queue full"), true);
        Unref();
      } else if (closing) {
        Unref();
      }
      return;
    }
    if (closing) {
      Abandon(std::move(*task));
      Unref();
      return;
    }
    if (task->answer != nullptr || task->activity_answer != nullptr) {
      // Started and its answer built by the transition that made it (HistoryEngine::Commit):
      // out now, with no hop to the executor.
      hoptrace::Mark("o.push");
      deps_.matching->Done(*task);
      Queue([&](api::WorkerStreamResponse& out) {
        if (task->answer != nullptr) *out.add_workflow_tasks() = std::move(*task->answer);
        if (task->activity_answer != nullptr) {
          *out.add_activity_tasks() = std::move(*task->activity_answer);
        }
      });
      Unref();
      return;
    }
    auto shared = std::make_shared<QueuedTask>(std::move(*task));
    if (!deps_.executor->TrySubmit([this, shared] {
          Start(std::move(*shared));
          Unref();
        })) {
      Abandon(std::move(*shared));
      Close(absl::ResourceExhaustedError("orchestrator is overloaded: work queue full"), true);
      Unref();
    }
  }

  // A task this stream will not start: back to the queue; one started at schedule for it is
  // already recorded started, and its timeout retries it (as for a poll's lost answer).
  void Abandon(QueuedTask task) {
    if (task.started_request_id.empty()) {
      deps_.matching->Return(std::move(task));
    } else {
      deps_.matching->Done(task);
    }
  }

  // On the executor: records the task started for this worker and queues it for writing.
  void Start(QueuedTask task) {
    {
      absl::MutexLock lock(&mu_);
      if (closing_) {
        Abandon(std::move(task));
        return;
      }
    }
    const std::string request_id =
        task.started_request_id.empty() ? deps_.ids->NewUuid() : task.started_request_id;
    api::WorkerStreamResponse piece;
    absl::Status started = host_->StartStreamTask(task, request_id, open_, &piece);
    if (started.ok()) {
      deps_.matching->Done(task);
      Queue([&](api::WorkerStreamResponse& out) {
        for (auto& t : *piece.mutable_workflow_tasks()) *out.add_workflow_tasks() = std::move(t);
        for (auto& t : *piece.mutable_activity_tasks()) *out.add_activity_tasks() = std::move(t);
      });
      return;
    }
    if (absl::IsNotFound(started) || absl::IsFailedPrecondition(started)) {
      // Stale: the run closed or the task was superseded. The credit is the worker's again.
      absl::Status dropped = deps_.engine->DropStaleTask(task);
      if (!dropped.ok()) LogWarn("matching.drop_stale_failed", {{"status", dropped}});
      deps_.matching->Done(task);
      {
        absl::MutexLock lock(&mu_);
        ++credits_;
      }
      ArmPolls();
      return;
    }
    deps_.matching->Return(std::move(task));
    Close(started, /*hard=*/true);
  }

  void Answer(api::WorkerStreamAnswer answer) {
    bool resume_read = false;
    {
      absl::MutexLock lock(&mu_);
      --completions_in_flight_;
      if (read_paused_ && !closing_) {
        read_paused_ = false;
        resume_read = true;
      }
    }
    Queue([&](api::WorkerStreamResponse& out) { *out.add_answers() = std::move(answer); });
    if (resume_read) StartRead(&in_);
  }

  // Adds to what goes out next; starts a write when none is in flight.
  template <typename Fill>
  void Queue(Fill fill) {
    bool write = false;
    bool finish = false;
    {
      absl::MutexLock lock(&mu_);
      if (finished_ || hard_) {
        finish = FinishDueLocked();
      } else {
        fill(out_);
        write = TakeWriteLocked();
        finish = !write && FinishDueLocked();
      }
    }
    if (write) {
      hoptrace::Mark("o.write");
      StartWrite(&writing_);
    }
    if (finish) DoFinish();
  }

  // Moves what is queued into writing_ when no write is in flight; the caller then starts it.
  bool TakeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (write_in_flight_ || finished_ || hard_) return false;
    if (out_.workflow_tasks_size() == 0 && out_.activity_tasks_size() == 0 &&
        out_.answers_size() == 0) {
      return false;
    }
    writing_.Clear();
    writing_.Swap(&out_);
    write_in_flight_ = true;
    Ref();  // For the write.
    return true;
  }

  // Closing, and nothing is left to go out (or the stream is broken): finish now.
  bool FinishDueLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!closing_ || finished_ || write_in_flight_) return false;
    if (!hard_ && (completions_in_flight_ > 0 || out_.answers_size() > 0 ||
                   out_.workflow_tasks_size() > 0 || out_.activity_tasks_size() > 0)) {
      return false;
    }
    finished_ = true;
    return true;
  }

  void DoFinish() {
    absl::Status status;
    {
      absl::MutexLock lock(&mu_);
      status = status_;
    }
    metrics_->Record("WorkerStream", status, deps_.clock->Now() - began_);
    Finish(ToGrpc(status));
  }

  // Ends the stream: no more polls; with `hard`, what is queued is dropped (the worker is gone
  // or refused) and the stream finishes as soon as no write is in flight.
  void Close(const absl::Status& status, bool hard) {
    bool finish;
    {
      absl::MutexLock lock(&mu_);
      if (hard) hard_ = true;
      if (!closing_) {
        closing_ = true;
        status_ = status;
      }
      finish = FinishDueLocked();
    }
    CancelPolls();
    if (finish) DoFinish();
  }

  void CancelPolls() {
    std::vector<Matching::PollId> ids;
    {
      absl::MutexLock lock(&mu_);
      for (const auto& [token, id] : polls_) {
        if (id != 0) ids.push_back(id);
      }
    }
    for (Matching::PollId id : ids) deps_.matching->CancelPoll(id);
  }

  grpc::CallbackServerContext* const ctx_;
  const FrontendDeps& deps_;
  RpcMetrics* const metrics_;
  WorkerStreamHost* const host_;
  WorkerStreamCounts* const counts_;
  const absl::Time began_;
  ReactorRefs refs_;

  // Touched only by the reading side (one read at a time).
  api::WorkerStreamRequest in_;
  bool opened_ = false;
  bool counted_ = false;  // in counts_, under queue_key_
  std::string queue_key_;
  // Set once at open, read-only after (the executor's jobs start after it).
  api::WorkerStreamOpen open_;
  Principal principal_;
  keys::TaskKind kind_ = keys::TaskKind::kActivity;

  // Owned by the write in flight.
  api::WorkerStreamResponse writing_;

  absl::Mutex mu_;
  int credits_ ABSL_GUARDED_BY(mu_) = 0;  // granted, not yet taken by a task
  int armed_ ABSL_GUARDED_BY(mu_) = 0;    // polls waiting in matching
  uint64_t next_token_ ABSL_GUARDED_BY(mu_) = 0;
  // Waiting polls by token: matching's id once Poll returned it (0 before).
  absl::flat_hash_map<uint64_t, Matching::PollId> polls_ ABSL_GUARDED_BY(mu_);
  int completions_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool read_paused_ ABSL_GUARDED_BY(mu_) = false;
  api::WorkerStreamResponse out_ ABSL_GUARDED_BY(mu_);
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool hard_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::Status WorkerStreamCounts::Add(const std::string& queue) {
  absl::MutexLock lock(&mu_);
  if (total_ >= kMaxWorkerStreams) {
    return absl::ResourceExhaustedError(
        absl::StrCat("too many worker streams (at most ", kMaxWorkerStreams, ")"));
  }
  int& on_queue = per_queue_[queue];
  if (on_queue >= kMaxWorkerStreamsPerQueue) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "too many worker streams on this task queue (at most ", kMaxWorkerStreamsPerQueue, ")"));
  }
  ++on_queue;
  ++total_;
  return absl::OkStatus();
}

void WorkerStreamCounts::Remove(const std::string& queue) {
  absl::MutexLock lock(&mu_);
  --total_;
  auto it = per_queue_.find(queue);
  if (it != per_queue_.end() && --it->second <= 0) per_queue_.erase(it);
}

grpc::ServerBidiReactor<api::WorkerStreamRequest, api::WorkerStreamResponse>* StartWorkerStream(
    grpc::CallbackServerContext* ctx, const FrontendDeps& deps, RpcMetrics* metrics,
    WorkerStreamHost* host, WorkerStreamCounts* counts) {
  auto* reactor = new WorkerStreamReactor(ctx, deps, metrics, host, counts);
  reactor->Begin();
  return reactor;
}

}  // namespace kiln::orchestrator
