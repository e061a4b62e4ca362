// The history service: one state machine per workflow run. Every transition loads the run's
// state (from the cache or the store) under the run's lock, applies a Mutation, commits ONE
// synced batch (events + state + tasks + timers + visibility), and only then updates the cache
// and tells the queues (EngineListener). Task tokens name run, scheduled event and attempt, so
// a stale or duplicate answer from a worker is refused and changes nothing.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/fiber.h"
#include "common/ids.h"
#include "kiln/api/v1/workflow_service.pb.h"
#include "kiln/internal/v1/persistence.pb.h"
#include "orchestrator/history/answer_holds.h"
#include "orchestrator/history/engine_listener.h"
#include "orchestrator/history/mutation.h"
#include "orchestrator/history/run_cache.h"
#include "orchestrator/history/task_id_allocator.h"
#include "orchestrator/history/task_token.h"
#include "orchestrator/persistence/store.h"
#include "orchestrator/visibility/visibility_list.h"

namespace kiln::orchestrator {

namespace api = ::kiln::api::v1;
namespace internal = ::kiln::internal::v1;

struct EngineOptions {
  size_t run_cache_capacity = 10'000;
  // Closed runs are deleted (state, history, visibility, logs) this long after they close.
  absl::Duration retention = absl::Hours(72);
  std::string default_namespace = "default";
  // The key task tokens are signed with (task_token.h): the server's token key, so that tokens
  // outlive a restart. Unset: a random key.
  std::optional<auth::TokenKey> task_token_key;
  // A workflow task started at schedule goes to its poller while its transition's commit
  // syncs (HistoryEngine::Commit, "before the sync"), when commits are few; false: after,
  // like an activity's (docs/fast-paths.md).
  bool workflow_tasks_before_sync = true;
  // When commits are few and a transition has nothing to do while its commit syncs, the
  // engine thread running it writes and syncs the batch itself (Store::CommitOnCaller) rather
  // than waking the store's writer and being woken after; false: always through the writer.
  bool quiet_commits_on_caller = true;
  // When a start, an activity's answer or a timer sends a workflow task out before its commit,
  // the transition may hold its commit, and the run's lock, up to this long for the task's
  // completion: the completion's transition then runs on the held state and one synced write
  // commits both (HistoryEngine::Commit, "held for the answer"). Zero: never held.
  absl::Duration hold_for_answer = absl::ZeroDuration();
  // Where the engine's own metrics go (the holds'); null: nowhere.
  prometheus::Registry* registry = nullptr;
};

// A history read: the page, or "wait" when the caller asked to wait for new events and there
// are none yet.
struct HistoryRead {
  api::GetWorkflowExecutionHistoryResponse response;
  bool wait = false;
  std::string run_id;
};

// The page token of a history read that goes on at `next_event_id` (GetWorkflowExecutionHistory).
// A workflow task's history whose task is transient (WorkflowTaskInfo.transient) names its
// started event id: the read's last page ends with the task's events, as the first page would
// have.
std::string HistoryPageToken(int64_t next_event_id, int64_t transient_started_event_id = 0);

// The events of the run's started transient workflow task: its WorkflowTaskScheduled and
// WorkflowTaskStarted as they are written when it completes, and as its worker gets them after
// the run's history. Empty unless the run's workflow task is transient and started.
std::vector<api::HistoryEvent> TransientWorkflowTaskEvents(const internal::ExecutionState& state);

// A commit held for its workflow task's answer while the answer's transition runs on the
// holder's run, its lock lent by the parked holder (RunCache::Entry::held): that transition's
// commit writes `batch` first, in the
// same synced write, runs `committed` (the holder's effects) once it landed, before its own, and
// leaves the outcome in `status`.
struct HeldCommit {
  WriteBatch* batch;
  // Whether commits were few when the holder began (its commit's way is then the quiet one).
  bool quiet;
  absl::FunctionRef<void()> committed;
  bool written = false;  // a commit took `batch`; `status` is its outcome
  absl::Status status;
};

class HistoryEngine {
 public:
  static absl::StatusOr<std::unique_ptr<HistoryEngine>> Create(Store* store, Clock* clock,
                                                               IdGenerator* ids,
                                                               EngineListener* listener,
                                                               EngineOptions options = {});

  // Clients.
  absl::StatusOr<api::StartWorkflowExecutionResponse> StartWorkflowExecution(
      const api::StartWorkflowExecutionRequest& request);
  absl::Status TerminateWorkflowExecution(const api::TerminateWorkflowExecutionRequest& request);
  // A new run of the workflow from a workflow task of an old one (reset.cc; the request's
  // comment in workflow_service.proto says what it keeps). kInvalidArgument for a point that is
  // not a workflow task; kFailedPrecondition when the run cannot be reset (not the current run
  // while that one is open, a child run, a child or external request pending at the point).
  absl::StatusOr<api::ResetWorkflowExecutionResponse> ResetWorkflowExecution(
      const api::ResetWorkflowExecutionRequest& request);
  absl::Status SignalWorkflowExecution(const api::SignalWorkflowExecutionRequest& request);
  absl::StatusOr<api::SignalWithStartWorkflowExecutionResponse> SignalWithStartWorkflowExecution(
      const api::SignalWithStartWorkflowExecutionRequest& request);
  absl::Status RequestCancelWorkflowExecution(
      const api::RequestCancelWorkflowExecutionRequest& request);
  // Lists and counts see only the runs `visible` lets through (empty: all).
  absl::StatusOr<api::CountWorkflowExecutionsResponse> CountWorkflowExecutions(
      const api::CountWorkflowExecutionsRequest& request, const TaskQueueFilter& visible = {});
  // A query task's answer to a poller: the run's whole history (no transition is written).
  absl::StatusOr<api::PollWorkflowTaskQueueResponse> BuildQueryTask(
      const QueuedTask& task, const api::WorkflowQuery& query);
  absl::StatusOr<api::DescribeWorkflowExecutionResponse> DescribeWorkflowExecution(
      const api::DescribeWorkflowExecutionRequest& request);
  absl::StatusOr<HistoryRead> ReadHistory(const api::GetWorkflowExecutionHistoryRequest& request);
  absl::StatusOr<api::ListWorkflowExecutionsResponse> ListWorkflowExecutions(
      const api::ListWorkflowExecutionsRequest& request, const TaskQueueFilter& visible = {});

  // Matching handed `task` to a poller: record that it started and build the poller's answer.
  // kNotFound / kFailedPrecondition mean the task is stale: call DropStaleTask.
  // `partial_history`: the answer's history starts after the previous workflow task's started
  // event (the worker holds the run), not at event 1. Unset: partial when `worker_instance_id`
  // (the poller's) is the worker that completed the previous task and keeps the run (sticky).
  absl::StatusOr<api::PollWorkflowTaskQueueResponse> RecordWorkflowTaskStarted(
      const QueuedTask& task, const std::string& identity, const std::string& poll_request_id,
      std::optional<bool> partial_history = std::nullopt,
      const std::string& worker_instance_id = "");
  absl::StatusOr<api::PollActivityTaskQueueResponse> RecordActivityTaskStarted(
      const QueuedTask& task, const std::string& identity, const std::string& poll_request_id);
  // Deletes a stale task's backlog entry.
  absl::Status DropStaleTask(const QueuedTask& task);

  // Workers.
  absl::StatusOr<api::RespondWorkflowTaskCompletedResponse> RespondWorkflowTaskCompleted(
      const api::RespondWorkflowTaskCompletedRequest& request);
  // Commits held for their workflow task's answer that got it / did not (AnswerHolds).
  int64_t holds_joined() const { return holds_ ? holds_->joined() : 0; }
  int64_t holds_missed() const { return holds_ ? holds_->missed() : 0; }
  absl::Status RespondWorkflowTaskFailed(const api::RespondWorkflowTaskFailedRequest& request);
  absl::StatusOr<api::RecordActivityTaskHeartbeatResponse> RecordActivityTaskHeartbeat(
      const api::RecordActivityTaskHeartbeatRequest& request);
  absl::StatusOr<api::RespondActivityTaskCompletedResponse> RespondActivityTaskCompleted(
      const api::RespondActivityTaskCompletedRequest& request);
  absl::Status RespondActivityTaskFailed(const api::RespondActivityTaskFailedRequest& request);
  absl::Status RespondActivityTaskCanceled(const api::RespondActivityTaskCanceledRequest& request);

  // For the frontend's authorisation of agents (read-only: nothing is written).
  // Whether run `run_id` is open and has an activity on `queue` started and pending now.
  absl::StatusOr<bool> HasStartedActivity(const std::string& run_id, const std::string& queue);

  // The timer queue: `task` (stored at `key`) is due. The transition deletes the key; a stale
  // timer's key is deleted on its own.
  absl::Status FireTimer(const std::string& key, const internal::TimerTask& task);
  // The retention queue (Table::kRetention): a closed run's time is up; deletes its records
  // and then the key.
  absl::Status FireRetention(const std::string& key, const internal::TimerTask& task);

  const std::string& default_namespace() const { return options_.default_namespace; }
  // Signs and checks the task tokens this engine hands out.
  const TaskTokenCodec& task_tokens() const { return task_tokens_; }
  size_t cached_runs() { return cache_.size(); }

 private:
  HistoryEngine(Store* store, Clock* clock, IdGenerator* ids, EngineListener* listener,
                std::unique_ptr<TaskIdAllocator> task_ids, EngineOptions options);

  using Handle = RunCache::Handle;

  // Loading, committing and reading runs (history_engine.cc).
  std::string Namespace(const std::string& ns) const;
  // Locks the run and loads its state. kNotFound when the run does not exist.
  absl::StatusOr<std::unique_ptr<Handle>> LoadRun(const std::string& run_id);
  // Resolves an execution (an empty run id means the current run) and loads it.
  absl::StatusOr<std::unique_ptr<Handle>> LoadExecution(const std::string& ns,
                                                        const api::WorkflowExecution& execution);
  absl::StatusOr<std::string> CurrentRunId(const std::string& ns, const std::string& workflow_id);
  // Builds and commits `mutation`, then updates the cache and tells the listener. A task the
  // transition creates whose queue has a poller waiting is started in the same batch for that
  // poller (StartForWaitingPollers).
  // Before an answer that rests on records read rather than written (a retried start or signal
  // found applied already): what it found may be the write of a commit that reported failure
  // ("outcome unknown"), in the store but not yet durable, which a power cut would take back
  // after the client was told OK. One small synced write makes everything before it durable.
  absl::Status SyncBeforeAnswering();
  // `may_hold`: the caller reads nothing of the run after the commit, so the commit may be held
  // for its workflow task's answer (EngineOptions::hold_for_answer), which then commits too.
  absl::Status Commit(Handle& handle, Mutation& mutation, WriteBatch* extra = nullptr,
                      Mutation* second_run = nullptr, bool may_hold = false);
  // Whether a commit that could be held is: always while most holds got their answer, else
  // one in kHoldProbeEvery (to notice when answers come fast again).
  bool HoldAllowed();
  struct StartedInline {
    TaskReservation reservation;
    QueuedTask task;
    // Handed to its poller already, before the commit (a workflow task of the locked run).
    bool handed_out = false;
  };
  // Transitions between their batch's build and their commit's end (see Commit).
  std::atomic<int> commits_in_flight_{0};
  // How often a commit found others in flight lately, a moving average (kBusyScale for always,
  // over about the last kBusyWindow commits; updated without a lock, so approximate): a workflow
  // task goes out before its commit syncs only while this is low (see Commit).
  std::atomic<int> busy_commits_{0};
  // Commits held for their workflow task's answer (null: EngineOptions::hold_for_answer zero),
  // how often lately a hold's answer did not come in time (a moving average like
  // busy_commits_), and a count for the probes while it is high.
  std::unique_ptr<AnswerHolds> holds_;
  std::atomic<int> hold_misses_{0};
  std::atomic<uint32_t> hold_probes_{0};
  // The token, run and task fields of a workflow task's poll answer, from `state` as it is after
  // the task's start (no history).
  void FillWorkflowTask(const internal::ExecutionState& state,
                        api::PollWorkflowTaskQueueResponse* response) const;
  // The poll answer of the workflow task started in `m` (the run `handle` holds) for a
  // reserved poller, built before the commit from `m` and the run cache's tail: null when the
  // tail lacks events the answer needs (the poll then records the start as a retry).
  std::shared_ptr<api::PollWorkflowTaskQueueResponse> AnswerBeforeCommit(
      Handle& handle, Mutation& m, const TaskReservation& reservation);
  // For each new task of `m` whose queue has a waiting poller: reserves the poller and applies
  // the task's start to `m` (the task then needs no backlog entry).
  absl::Status StartForWaitingPollers(Mutation& m, std::vector<StartedInline>* started);
  // Starts `task`, created by `m`, in `m` for `identity` (no backlog entry; the poll that gets
  // it answers as a retry of this start, with task.started_request_id).
  absl::Status StartNewTask(Mutation& m, QueuedTask& task, const std::string& identity);
  // The workflow task `m` creates for the open run, if any and not started yet.
  QueuedTask* NewPendingWorkflowTask(Mutation& m);
  // The start of the pending workflow task (workflow_tasks.cc) / of an activity's current
  // attempt (activity_tasks.cc), applied to `m`.
  absl::Status ApplyWorkflowTaskStarted(Mutation& m, int64_t backlog_task_id,
                                        const std::string& queue, const std::string& identity,
                                        const std::string& request_id);
  // A started activity's task, as its worker gets it (activity_tasks.cc).
  api::PollActivityTaskQueueResponse BuildActivityTask(const internal::ExecutionState& state,
                                                       int64_t scheduled_event_id) const;
  absl::Status ApplyActivityTaskStarted(Mutation& m, int64_t scheduled_event_id,
                                        int64_t backlog_task_id, const std::string& queue,
                                        const std::string& identity, const std::string& request_id);

  // Workflow task pieces (workflow_tasks.cc).
  absl::StatusOr<internal::TaskToken> CheckWorkflowToken(Handle& handle, const std::string& token);
  // RespondWorkflowTaskCompleted's transition, on the run `handle` holds (its own lock, or a
  // held commit's: Commit). `forced_task`: a task the completion started for its worker, for
  // the caller to answer with once the run's lock is let go.
  absl::StatusOr<api::RespondWorkflowTaskCompletedResponse> CompleteOnRun(
      Handle& handle, const api::RespondWorkflowTaskCompletedRequest& request,
      std::optional<QueuedTask>* forced_task);
  absl::Status FailWorkflowTask(Handle& handle, const internal::ExecutionState& state,
                                api::WorkflowTaskFailedCause cause, const std::string& message,
                                const std::string& identity);
  // Completes the started workflow task of `m`'s run with `request`'s commands and commits;
  // fills `response`. A bad command sets `bad_command` and `cause` and commits nothing.
  // `also`: more writes for the same batch (a new run's current pointer).
  absl::Status CompleteWorkflowTask(Handle& handle, Mutation& m,
                                    const api::RespondWorkflowTaskCompletedRequest& request,
                                    bool* bad_command, api::WorkflowTaskFailedCause* cause,
                                    api::RespondWorkflowTaskCompletedResponse* response,
                                    WriteBatch* also = nullptr,
                                    std::optional<QueuedTask>* forced_task = nullptr);
  // Applies `request`'s commands to `m`, one handler per command kind (commands.cc). A refused
  // command: kInvalidArgument or kResourceExhausted naming its index, and `cause` set.
  // Continue-as-new puts the next run in `new_run` and its current pointer in `extra`.
  absl::Status ApplyCommands(Mutation& m, const api::RespondWorkflowTaskCompletedRequest& request,
                             int64_t completed_event_id, api::WorkflowTaskFailedCause* cause,
                             std::unique_ptr<Mutation>* new_run, WriteBatch* extra);
  // Starts, in `m`, the new activities whose commands asked for eager execution (on the
  // workflow's own queue, up to the limit); their scheduled event ids go to `eager`.
  absl::Status StartEagerActivities(Mutation& m,
                                    const api::RespondWorkflowTaskCompletedRequest& request,
                                    std::vector<int64_t>* eager);
  // Events from_event_id..to_event_id (inclusive; 0: to the end) of a run, at most `limit`
  // (history_engine.cc).
  absl::StatusOr<api::History> ReadEvents(const std::string& run_id, int64_t from_event_id,
                                          int64_t to_event_id, size_t limit);

  // Activity pieces (activity_tasks.cc).
  // What an activity answer's transition recorded beyond the answer itself (the fast paths).
  struct ActivityAnswer {
    // The workflow task the answer scheduled, started for `next_task_identity`.
    std::optional<QueuedTask> next_task;
    // The answer of the worker's speculative task, when the engine accepted it.
    std::optional<api::RespondWorkflowTaskCompletedResponse> speculated;
  };
  // A worker's answer about an activity: checks its token, applies `apply`, commits.
  // `next_task_identity`: non-empty to start the workflow task the answer schedules (if it is
  // on the activity's own queue) for that identity in the same transition (`next_task`).
  // `speculative`: the worker's run of the workflow task the answer starts; when the engine
  // accepts it (see api::SpeculativeWorkflowTask) the task is completed in the same transition
  // (`speculated`), else the answer is recorded as without it.
  absl::StatusOr<ActivityAnswer> AnswerActivity(
      const std::string& task_token,
      const std::function<absl::Status(Mutation&, const internal::TaskToken&)>& apply,
      const std::string& next_task_identity = {},
      const api::SpeculativeWorkflowTask* speculative = nullptr);
  // The accepted case of AnswerActivity's `speculative`: the task's answer, or nullopt
  // (nothing done) when refused.
  absl::StatusOr<std::optional<api::RespondWorkflowTaskCompletedResponse>> RunSpeculativeTask(
      Handle& handle, const internal::TaskToken& token, const internal::ActivityInfo& activity,
      const std::function<absl::Status(Mutation&, const internal::TaskToken&)>& apply,
      const api::SpeculativeWorkflowTask& speculative);
  absl::StatusOr<internal::TaskToken> CheckActivityToken(Handle& handle, const std::string& token,
                                                         internal::ActivityInfo** activity);
  // Closes an activity: writes its started event and `close` event (ids fixed up if buffered).
  absl::Status CloseActivity(Mutation& m, int64_t scheduled_event_id, api::EventType close,
                             const std::function<void(api::HistoryEvent*)>& fill);
  absl::Status RetryOrFailActivity(Mutation& m, internal::ActivityInfo* activity,
                                   const api::Failure& failure, api::EventType final_event,
                                   const api::Payloads* heartbeat_details);

  // Starts (plain, signal-with-start, children, continue-as-new), signals and cancellation
  // (lifecycle.cc).
  struct ParentInfo {
    std::string ns;
    std::string workflow_id;
    std::string run_id;
    int64_t initiated_event_id = 0;
  };
  struct SignalInfo {
    std::string name;
    api::Payloads input;
    std::string identity;
    api::Header header;
  };
  // Starts a run under the workflow id's stripe lock, applying the reuse and conflict policies.
  // With `signal`, an open current run is signalled instead (signal-with-start).
  absl::StatusOr<api::StartWorkflowExecutionResponse> StartInternal(
      const api::StartWorkflowExecutionRequest& request, const ParentInfo* parent,
      const SignalInfo* signal);
  // The first transition of a new run (its events, tasks, timers and visibility).
  Mutation NewRun(const api::StartWorkflowExecutionRequest& request, const std::string& run_id,
                  const ParentInfo* parent, const SignalInfo* signal,
                  const std::string& continued_from_run_id, const std::string& first_run_id,
                  absl::Time now);
  // Adds the signal event to an open run (idempotent by request id).
  absl::Status SignalRun(Handle& handle, const SignalInfo& signal, const std::string& request_id);
  absl::Status CancelRun(Handle& handle, const std::string& reason, const std::string& identity);
  absl::Status ContinueAsNew(Mutation& m,
                             const api::ContinueAsNewWorkflowExecutionCommandAttributes& a,
                             int64_t completed_event_id, std::unique_ptr<Mutation>* new_run,
                             WriteBatch* extra);

  // Reset (reset.cc): the new run's first transition, from `history` (the old run's, events
  // 1..) kept up to `started_event_id`, and the old run's closing or recording transition.
  absl::StatusOr<std::unique_ptr<Mutation>> ResetRun(
      const internal::ExecutionState& old_state, const api::History& history,
      int64_t started_event_id, const api::ResetWorkflowExecutionRequest& request,
      const std::string& new_run_id, absl::Time now);

  // Transfer tasks (transfers.cc): work on another run that a committed transition implies.
  // FireTimer hands them to FireTransfer, which hands each to the function of its kind. Each
  // deletes `key` when done, or alone when the task is stale.
  absl::Status FireTransfer(const std::string& key, const internal::TimerTask& task);
  // Starts the child the parent's initiated event describes; records started or failed.
  absl::Status StartChild(const std::string& key, const internal::TimerTask& task);
  // Tells the parent (target_run_id) how its child (run_id) closed.
  absl::Status ReportChildClosed(const std::string& key, const internal::TimerTask& task);
  // Terminates or cancels the closed parent's child (target_workflow_id's current run).
  absl::Status ApplyParentClosePolicy(const std::string& key, const internal::TimerTask& task);
  // Signals / cancels the workflow a run's external request names; records the outcome.
  absl::Status SignalExternal(const std::string& key, const internal::TimerTask& task);
  absl::Status CancelExternal(const std::string& key, const internal::TimerTask& task);
  // What SignalExternal and CancelExternal share: reads the source run's request, `deliver`s
  // it to its target, then has `record` add the outcome's event to the source run (the failure
  // cause, empty when delivered) and commits.
  absl::Status DeliverExternalRequest(
      const std::string& key, const internal::TimerTask& task,
      absl::FunctionRef<absl::Status(Handle&, const internal::ExternalRequest&)> deliver,
      absl::FunctionRef<absl::Status(Mutation&, const internal::ExternalRequest&,
                                     const api::WorkflowExecution&, const std::string&)>
          record);

  // The run's own timers (timer_tasks.cc), one function per kind, applied to `m`. `stale`: the
  // timer no longer matches the run (nothing was applied).
  absl::Status FireUserTimer(Mutation& m, const internal::TimerTask& task, bool* stale);
  absl::Status FireActivityTimeout(Mutation& m, const internal::TimerTask& task, bool* stale);
  absl::Status FireActivityRetry(Mutation& m, const internal::TimerTask& task, bool* stale);
  absl::Status FireWorkflowTaskTimeout(Mutation& m, const internal::TimerTask& task, bool* stale);
  absl::Status FireWorkflowTaskRetry(Mutation& m, const internal::TimerTask& task, bool* stale);
  absl::Status FireRunTimeout(Mutation& m);
  // Retention (retention.cc): deletes a closed run's records in bounded batches, then `key`
  // from `table`.
  absl::Status DeleteRun(Table table, const std::string& key, const internal::TimerTask& task);

  Store* store_;
  Clock* clock_;
  IdGenerator* ids_;
  EngineListener* listener_;
  std::unique_ptr<TaskIdAllocator> task_ids_;
  EngineOptions options_;
  TaskTokenCodec task_tokens_;
  RunCache cache_;
  // Serialises starts of one workflow id (striped by hash), so that the check of the current
  // run and the write of a new one are atomic.
  static constexpr size_t kStartStripes = 64;
  fiber::Mutex start_stripes_[kStartStripes];
};

}  // namespace kiln::orchestrator
