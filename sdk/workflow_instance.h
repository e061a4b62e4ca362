// One workflow run's state inside a worker: the coroutine, its pending futures, and the replay
// machinery that feeds it history events. Given the events of a workflow task (the whole
// history, or only the new ones when the instance is cached), it replays past workflow tasks —
// checking that the code produces exactly the commands the history recorded — and runs the
// current one, returning its commands.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kiln/api/v1/command.pb.h"
#include "kiln/api/v1/history.pb.h"
#include "kiln/api/v1/stack_trace.pb.h"
#include "sdk/workflow.h"

namespace kiln::sdk {

class WorkflowInstance {
 public:
  WorkflowInstance(WorkflowFn fn, WorkflowInfo info);
  ~WorkflowInstance();
  WorkflowInstance(const WorkflowInstance&) = delete;
  WorkflowInstance& operator=(const WorkflowInstance&) = delete;

  // Feeds the events with ids >= next_event_id() (earlier ones are skipped) up to and including
  // the workflow task started last, and returns the commands of that task. A mismatch between
  // the code and the history is kFailedPrecondition with a message starting
  // "non-determinism:" that names the event and the command.
  absl::StatusOr<std::vector<api::Command>> ProcessWorkflowTask(const api::History& history);

  // After its task's completion was recorded: feeds the events the completion wrote (from its
  // WorkflowTaskCompleted on: RespondWorkflowTaskCompletedResponse.new_events), so that the
  // instance holds every event of the run (level()). Stops before a workflow task they
  // schedule: that task brings its own history.
  absl::Status AbsorbCompletion(const api::History& events);
  // It holds every event of the run: AbsorbCompletion took all since its last task.
  bool level() const { return level_; }
  // Runs the workflow task that the completion of activity `activity_id` with `result` starts,
  // on events as the engine records them when nothing else happens to the run meanwhile
  // (ActivityTaskStarted, ActivityTaskCompleted, WorkflowTaskScheduled, WorkflowTaskStarted at
  // `now`, ids from next_event_id()), and returns its commands. Needs level(). kNotFound, the
  // instance untouched, for an activity the run does not wait on.
  absl::StatusOr<std::vector<api::Command>> RunSpeculativeTask(const std::string& activity_id,
                                                               const api::Payloads& result,
                                                               absl::Time now);

  // Replays a whole recorded history (e.g. a closed run's) against the code, checking every
  // command. Used by the Replayer to test a code change before deploying it.
  absl::Status Replay(const api::History& history);

  // The next event id this instance expects.
  int64_t next_event_id() const { return next_event_id_; }
  // The started event id of the last workflow task it ran (replayed or live).
  int64_t last_started_event_id() const { return last_started_event_id_; }
  bool completed() const { return completed_; }

  // For WorkflowContext. `where` is the workflow code's call, for the stack trace.
  Future<absl::StatusOr<api::Payloads>> ScheduleActivity(const std::string& type,
                                                         const api::Payloads& input,
                                                         const ActivityOptions& options,
                                                         SourceLocation where = {});
  Future<absl::Status> StartTimer(absl::Duration duration, SourceLocation where = {});
  api::Payloads SideEffect(const std::function<api::Payloads()>& fn);
  Future<absl::StatusOr<api::Payloads>> ScheduleActivityIn(CancellationScope* scope,
                                                           const std::string& type,
                                                           const api::Payloads& input,
                                                           const ActivityOptions& options,
                                                           SourceLocation where = {});
  Future<absl::Status> StartTimerIn(CancellationScope* scope, absl::Duration duration,
                                    SourceLocation where = {});
  Future<absl::Status> WaitCondition(std::function<bool()> condition, SourceLocation where = {});
  void Cancel(CancellationScope& scope);
  SignalChannel& Channel(const std::string& name);
  void SetQueryHandler(const std::string& type, QueryHandler handler) {
    query_handlers_[type] = std::move(handler);
  }
  // Answers a query from the current state (after Replay). kStackTraceQuery is answered with
  // StackTrace() unless the workflow registered a handler of that name.
  absl::StatusOr<api::Payloads> Query(const std::string& type, const api::Payloads& args);
  // What the code waits on now: every operation it started whose outcome it has not received.
  api::WorkflowStackTrace StackTrace() const;
  Future<absl::Status> CancellationRequested(SourceLocation where = {});
  bool cancel_requested() const { return cancel_requested_; }
  const std::string& cancel_cause() const { return cancel_cause_; }
  ChildWorkflow StartChild(const std::string& type, const api::Payloads& input,
                           const ChildWorkflowOptions& options, SourceLocation where = {});
  // Signals / asks to cancel another workflow's run (SignalExternalWorkflow and
  // RequestCancelExternalWorkflow); the future resolves with the engine's recorded result.
  Future<absl::Status> SignalExternal(const std::string& workflow_id, const std::string& run_id,
                                      const std::string& signal_name, const api::Payloads& input,
                                      SourceLocation where = {});
  Future<absl::Status> CancelExternal(const std::string& workflow_id, const std::string& run_id,
                                      const std::string& reason, SourceLocation where = {});
  absl::Status SetContinueAsNew(api::Payloads input);
  void UpsertSearchAttributes(const api::SearchAttributes& attributes);
  absl::Time now() const { return now_; }
  // Deterministic: the same sequence for the same run id in every process and on every replay.
  uint64_t Random();
  const WorkflowInfo& info() const { return info_; }
  bool replaying() const { return replaying_; }
  Scheduler* scheduler() { return &scheduler_; }

 private:
  struct PendingActivity {
    Future<absl::StatusOr<api::Payloads>> future;
    std::string type;
    SourceLocation where;
  };
  struct PendingTimer {
    Future<absl::Status> future;
    absl::Duration duration;
    SourceLocation where;
    // Its TimerStarted event's time plus the duration, once that event is matched.
    absl::Time fire_time;
  };
  struct PendingCondition {
    std::function<bool()> condition;
    Future<absl::Status> future;
    SourceLocation where;
  };
  struct PendingExternal {
    Future<absl::Status> future;
    SourceLocation where;
    std::string workflow_id;
    // Empty for a cancel request.
    std::string signal_name;
  };

  absl::Status HandleEvent(const api::History& history, int index);
  absl::Status HandleChildEvent(const api::HistoryEvent& event);
  // Runs the workflow code until it blocks; appends its commands to `produced_`.
  void Activate(absl::Time task_time, bool replaying);
  // Resolves the conditions now true; returns whether any was (their waiters are scheduled).
  bool ResolveConditions();
  // Matches a command event of the history against the next command the code produced.
  absl::Status MatchCommandEvent(const api::HistoryEvent& event);
  absl::Status Nondeterminism(const api::HistoryEvent& event, const std::string& why) const;
  void PrescanMarkers(const api::History& history, int from);

  WorkflowFn fn_;
  WorkflowInfo info_;
  WorkflowContext context_;
  Scheduler scheduler_;
  api::Payloads input_;
  std::optional<Task<absl::StatusOr<api::Payloads>>> root_;
  bool completed_ = false;
  bool replaying_ = false;
  bool level_ = false;
  absl::Time now_;
  // Made on the first Random() (2.5 KB of state most workflows never use), seeded from the run id.
  std::unique_ptr<std::mt19937_64> rng_;
  int64_t next_event_id_ = 1;
  int64_t last_started_event_id_ = 0;
  int64_t next_seq_ = 1;

  // Commands the code produced, waiting to be matched with history events.
  std::deque<api::Command> unmatched_;
  // Commands of the current activation (returned to the engine).
  std::vector<api::Command> produced_;
  // Activities by activity id, and the scheduled event id once matched.
  std::map<std::string, PendingActivity> activities_;
  std::map<int64_t, std::string> activity_by_event_;
  std::map<std::string, PendingTimer> timers_;
  // Side-effect results recorded in the history, read ahead for the task being replayed.
  std::map<std::string, api::Payloads> recorded_markers_;

  // Drops a command not yet sent (cancelled in the activation that created it).
  bool Unsend(const std::function<bool(const api::Command&)>& match);
  void Emit(api::Command command);

  std::map<std::string, std::unique_ptr<SignalChannel>> channels_;
  std::map<std::string, QueryHandler> query_handlers_;
  bool cancel_requested_ = false;
  std::string cancel_cause_;
  std::optional<Future<absl::Status>> cancellation_;
  // The last call of CancellationRequested.
  SourceLocation cancellation_where_;
  // WaitCondition calls whose condition was still false, in call order.
  std::vector<PendingCondition> conditions_;
  struct PendingChild {
    ChildWorkflow futures;
    std::string workflow_id;
    std::string type;
    SourceLocation where;
  };
  std::map<std::string, PendingChild> children_;       // by workflow id
  std::map<int64_t, std::string> child_by_initiated_;  // initiated event id -> workflow id
  // Emits `command` (a signal or cancel of another run, its control set to `seq`) and returns
  // the future its result event resolves.
  Future<absl::Status> EmitExternal(const std::string& seq, api::Command command,
                                    PendingExternal pending);

  std::map<std::string, PendingExternal> externals_;  // by sequence id
  std::map<int64_t, std::string> external_by_initiated_;
  std::deque<std::string> unmatched_externals_;  // sequence ids, in command order
  std::optional<api::Payloads> continue_as_new_;
};

}  // namespace kiln::sdk
