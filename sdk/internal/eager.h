// The SDK's fast-path protocol: how the client, the activity worker and the workflow worker of
// one process hand tasks to each other without a poll (docs/fast-paths.md maps the paths).
// Internal: a workflow author never names these; sdk/client.h only forward-declares the runner
// (StartWorkflowOptions::eager_worker) and the followed run (WorkflowHandle::local).
//
//   - EagerWorkflowTaskRunner: takes a run's first workflow task from an eager start, and runs
//     workflow tasks ahead of the engine (speculative tasks) for the activity worker and the
//     client. WorkflowWorker implements it.
//   - SpeculativeTask: one workflow task run ahead, between Speculate and FinishSpeculative (or
//     SpeculateStart and FinishSpeculativeStart). Every Speculate* that returns one is followed
//     by its Finish*, with the outcome of the call it went with.
//   - LocalRun: a run started eagerly whose end this process learns first, while its tasks stay
//     here; Client::GetResult waits on it before it long-polls the orchestrator.
//
// Each is an optimisation only: when the engine refuses one or its answer is lost, the plain
// path (poll, history replay, long-poll for the result) takes over with the same history.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "kiln/api/v1/history.pb.h"
#include "kiln/api/v1/workflow_service.pb.h"

namespace kiln::sdk {

namespace api = ::kiln::api::v1;

// A run this process drives after starting it eagerly: while its tasks stay in this process
// (its first task run by the starter, activities started eagerly, next tasks brought back with
// their completions) the worker knows how it ends. It says so here, or that the run's tasks
// left this process (a timer, a task polled elsewhere), after which only the orchestrator knows.
// GetResult waits here first and long-polls the orchestrator only in the second case.
// Thread-safe.
class LocalRun {
 public:
  // A task of the run is in this process's hands (taken before the task it came with ends).
  void Hold();
  // That task ended. The last one ending with the run still open: it left this process.
  void Release();
  // A completion closed the run; `close_event` as the orchestrator recorded it.
  void Closed(api::HistoryEvent close_event);
  // Waits until the run closed here (its close event) or left, or until `deadline` (nullopt).
  std::optional<api::HistoryEvent> Wait(absl::Time deadline);
  // Closed here, or left.
  bool settled();

 private:
  absl::Mutex mu_;
  int holds_ ABSL_GUARDED_BY(mu_) = 0;
  bool left_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<api::HistoryEvent> close_event_ ABSL_GUARDED_BY(mu_);
};

// A workflow task a runner ran ahead of the engine (EagerWorkflowTaskRunner::Speculate): the
// request part goes with the activity's completion; the rest is the runner's.
class SpeculativeTask {
 public:
  virtual ~SpeculativeTask() = default;
  api::SpeculativeWorkflowTask request;
  // The completing activity's slot went to an activity the task starts eagerly (the runner
  // gives it back or runs that activity in it, like a slot it reserved).
  bool took_slot = false;
};

// Takes a new run's first workflow task straight from the start's answer (eager start).
// WorkflowWorker implements it.
class EagerWorkflowTaskRunner {
 public:
  virtual ~EagerWorkflowTaskRunner() = default;
  // Whether it serves `task_queue` and can take a task now.
  virtual bool AcceptsEagerTask(const std::string& task_queue) = 0;
  // The worker identity the task is started for.
  virtual const std::string& eager_identity() const = 0;
  // Runs the task (on the calling thread) and answers it.
  virtual void RunEagerTask(api::PollWorkflowTaskQueueResponse task) = 0;
  // Whether it holds `run_id` in its cache, so a task of it may come with only the events after
  // the run's previous task (a task it then cannot place, it reads in full).
  virtual bool HoldsRun(const std::string& run_id) { return false; }
  // Runs a new run's first task like RunEagerTask, and follows the run while its tasks stay in
  // this process; null when the runner does not follow runs.
  virtual std::shared_ptr<LocalRun> StartEagerRun(api::PollWorkflowTaskQueueResponse task) {
    RunEagerTask(std::move(task));
    return nullptr;
  }
  // Activity `activity_id` of `run_id` completed with `result` in this process. When the runner
  // holds the run idle and level with its history, it runs the workflow task that completion
  // starts, now, and returns it to go with the completion (api::SpeculativeWorkflowTask);
  // FinishSpeculative must follow with the completion's outcome. `slot`: the completing
  // activity's slot may go to an activity the task starts eagerly. Null: no speculation.
  virtual std::unique_ptr<SpeculativeTask> Speculate(const std::string& run_id,
                                                     const std::string& activity_id,
                                                     const api::Payloads& result, bool slot) {
    return nullptr;
  }
  // The completion's outcome: `status` and, when OK, its answer (workflow_task_completed set
  // when the engine accepted the task).
  virtual void FinishSpeculative(std::unique_ptr<SpeculativeTask> task, const absl::Status& status,
                                 api::RespondActivityTaskCompletedResponse* response) {}
  // Eager start, run ahead: runs the first workflow task of the run `request` (complete but for
  // this) starts, on a run id of its own, and sets request.speculative_first_task. Null: none;
  // else FinishSpeculativeStart must follow.
  virtual std::unique_ptr<SpeculativeTask> SpeculateStart(
      api::StartWorkflowExecutionRequest& request) {
    return nullptr;
  }
  // The start's outcome. Accepted (first_task_completed): the run goes on here and is followed
  // as by StartEagerRun. Refused: what ran is dropped, and the first task in the answer (if
  // any) is run as by StartEagerRun.
  virtual std::shared_ptr<LocalRun> FinishSpeculativeStart(
      std::unique_ptr<SpeculativeTask> task, const absl::Status& status,
      api::StartWorkflowExecutionResponse* response) {
    return nullptr;
  }
};

}  // namespace kiln::sdk
