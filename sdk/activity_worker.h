// The activity half of a worker: polls one task queue for activity tasks and runs the
// registered activity functions on a bounded pool, answering each task with its result,
// failure or cancellation. It serves both the control-plane worker and the builder agent; for
// the agent it also says how long the queue has been idle, so the agent can exit when its
// queue drains.
//
// Flow control: a poller asks for a task only while it holds a free slot, so the engine never
// hands this worker a task it cannot start at once (the task would otherwise wait here while
// its start-to-close timer runs).
//
//   ActivityWorker worker(connection, "project/42", {.max_concurrent = 4});
//   worker.Register("fetch", Fetch);
//   RETURN_IF_ERROR(worker.Start());
//   while (!worker.WaitForIdle(absl::Seconds(30), absl::InfiniteDuration())) {}
//   worker.Stop();
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/client_context.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/executor.h"
#include "sdk/activity.h"
#include "sdk/client.h"
#include "sdk/connection.h"

namespace kiln::sdk {

namespace internal {
class WorkerStream;
}

// How a worker gets its tasks. kAuto: the orchestrator's push stream (WorkerStream) when it
// offers one, polls when it answers UNIMPLEMENTED. kPolls: polls only.
enum class TaskDelivery { kAuto, kPolls };

struct ActivityWorkerOptions {
  // Empty: "<hostname>:<pid>". An exclusive queue is held by one identity.
  std::string identity{};
  // Polls claim the queue for this identity (PollActivityTaskQueueRequest.exclusive): a
  // builder agent serves its project's queue alone. A poll refused because another identity
  // holds the queue is then fatal (see fatal_error()), not retried.
  bool exclusive = false;
  std::string ns{};
  // Activities running at once (threads of the pool, and slots a poll needs).
  int max_concurrent = 16;
  // Threads long-polling the queue (with polls).
  int pollers = 2;
  // kAuto uses the push stream, except on an exclusive queue (the builder agent), whose idle
  // exit is defined by an empty poll: there kAuto polls.
  TaskDelivery delivery = TaskDelivery::kAuto;
  // With the stream: free slots lent to it as credits at most (0: every slot, or one per
  // poller when a workflow worker of this process takes activities eagerly: the rest stay free
  // for it).
  int stream_credits = 0;
  // Client-side deadline of one long poll; the engine answers empty 1 s before it (or after
  // 60 s). An agent that must notice an empty queue quickly can make it shorter.
  absl::Duration poll_timeout = absl::Seconds(70);
  // Heartbeat RPCs of an activity that heartbeats go out at least this often (zero: 80 % of
  // its heartbeat timeout, or 1 s without one). A cancel is heard in a heartbeat's answer, so
  // this bounds how long a cancel takes to reach a long step (the builder agent: 2 s).
  absl::Duration max_heartbeat_interval = absl::ZeroDuration();
  // How long Stop lets running activities finish after cancelling their contexts.
  absl::Duration graceful_shutdown_timeout = absl::Seconds(10);
  // How long Stop lets running activities run on before cancelling their contexts (zero:
  // cancel at once, so cooperative activities return promptly).
  absl::Duration shutdown_cancel_delay = absl::ZeroDuration();
  // Deadline and retries of the answer RPCs. Patient by default (about 25 s of UNAVAILABLE):
  // an answer lost to an orchestrator restart would rerun the whole activity.
  RpcPolicy rpc{.max_attempts = 8, .initial_backoff = absl::Milliseconds(200)};
  // Optional; metrics are kept in a private registry when not given.
  prometheus::Registry* registry = nullptr;
  Clock* clock = nullptr;
  Logger* logger = nullptr;
  const PayloadConverter* converter = nullptr;
};

class ActivityWorker {
 public:
  ActivityWorker(Connection& connection, std::string task_queue,
                 ActivityWorkerOptions options = {});
  // Stops, then waits for every activity still running (they are cancelled).
  ~ActivityWorker();
  ActivityWorker(const ActivityWorker&) = delete;
  ActivityWorker& operator=(const ActivityWorker&) = delete;

  // Before Start. kAlreadyExists for a name registered twice.
  absl::Status Register(const std::string& activity_type, ActivityFn fn);
  // kFailedPrecondition when already started or nothing is registered.
  absl::Status Start();
  // Stops polling (in-flight polls are cancelled), cancels running activities' contexts
  // (after shutdown_cancel_delay) and waits up to graceful_shutdown_timeout for them. An
  // activity still running then goes on in the background and still reports its outcome;
  // the destructor waits for it. Idempotent.
  void Stop();

  // How long the queue has been idle: the time since the last task finished (or Start) while
  // nothing runs, counted only once a poll has come back empty since then (the engine had no
  // task for us). Zero while anything runs or before that poll, and always zero on the push
  // stream (nothing there says "no task"): a worker that waits for idleness polls (kPolls, or
  // exclusive as the builder agent is).
  absl::Duration IdleFor();
  int64_t idle_for_ms() { return absl::ToInt64Milliseconds(IdleFor()); }
  // Blocks until IdleFor() >= `idle` (true) or `timeout` passes, Stop is called or polling
  // failed for good (false).
  bool WaitForIdle(absl::Duration idle, absl::Duration timeout);
  // Why polling stopped for good, OK while it goes on: kFailedPrecondition when an exclusive
  // poll was refused (the message names the holder and when its lease ends),
  // kUnauthenticated or kPermissionDenied when the orchestrator refused our credentials. The
  // pollers have stopped then; running activities finish and answer; the owner calls Stop.
  absl::Status fatal_error();

  // Eager dispatch, for a WorkflowWorker on the same task queue (WorkflowWorkerOptions::
  // eager_activities): before answering a workflow task that schedules an activity this worker
  // runs, it takes a free slot; the engine then starts the activity at once and returns it in
  // the answer, and RunEager runs it in that slot (no poll). A slot no task came for goes back
  // with ReleaseSlot. TryReserveSlot is false when no slot is free, before Start or once
  // stopping.
  bool Handles(const std::string& activity_type) const {
    return activities_.contains(activity_type);
  }
  bool TryReserveSlot();
  void ReleaseSlot();
  // `done` (if set) runs once the task has ended: answered, and the workflow task the answer
  // brought back run.
  void RunEager(api::PollActivityTaskQueueResponse task, std::function<void()> done = nullptr);
  // The other direction: a completed activity asks for its workflow's next task (started in
  // the completion's transition) and runs it on `runner` — the workflow worker of this queue
  // in the same process (WorkflowWorker sets itself here when it has eager_activities). Null
  // turns it off; it waits for the runner's tasks in progress, so the runner may go after it.
  void SetWorkflowTaskRunner(EagerWorkflowTaskRunner* runner);

  int running();
  int64_t tasks_started() const { return tasks_started_.load(); }
  const std::string& identity() const { return options_.identity; }

 private:
  class GrpcHeartbeatRecorder;
  struct Metrics;

  // Start's checks and setup, under mu_.
  absl::Status StartLocked();
  void PollLoop();
  // The push stream: a task arrived (its slot is one lent as a credit); slots to lend; the
  // stream stopped for good (UNIMPLEMENTED: fall back to polls).
  void OnStreamTask(api::PollActivityTaskQueueResponse task);
  void TopUpCredits();
  void OnStreamStopped(const absl::Status& status);
  // The stream is up and answers completions.
  bool StreamActive();
  // A task got in a slot already taken: runs it on the pool.
  void Dispatch(api::PollActivityTaskQueueResponse task, std::function<void()> done = nullptr);
  // Waits for a free slot and takes it; false when stopping.
  bool TakeSlot();
  void Run(api::PollActivityTaskQueueResponse task);
  // What answering a task left to do.
  struct Answer {
    // The workflow's next task, when the completion brought one back (asked for when a
    // workflow task runner is set).
    std::optional<api::PollWorkflowTaskQueueResponse> next_task;
    // The task's slot went to an activity the runner's speculative task starts: the runner
    // owns it now, and the caller must not free it.
    bool slot_handed_over = false;
  };
  // Answers the task with `result`. With `may_hand_over_slot`, the task's slot may go to an
  // activity the runner's speculative task starts (see Answer::slot_handed_over).
  Answer Respond(const ActivityInfo& info, const absl::StatusOr<api::Payloads>& result,
                 ActivityContext* context, bool may_hand_over_slot = false);
  // Sends a completion on the stream (filled by `fill`) and waits for its answer (given to
  // `take` when OK); false when the stream is not up or broke first (use the unary call).
  bool AnswerOnStream(const std::function<void(api::WorkerStreamCompletion&)>& fill,
                      const std::function<void(api::WorkerStreamAnswer&)>& take,
                      absl::Status* status);
  // The result of an activity that succeeded, sent on the stream without waiting for the
  // answer: the pool thread goes back to the pool, and the answer (on the stream's reader)
  // frees the task's slot. False, having done nothing, where the answer is needed on this
  // thread: no stream, or a workflow worker of this process runs the workflow's next task
  // (it comes back with the answer).
  bool AnswerCompletedAsync(const ActivityInfo& info, api::Payloads& result);
  // After the answer to a completed result: ResultRejected if the engine refused the result,
  // the outcome's metric and log line, the slot freed.
  void FinishCompleted(const ActivityInfo& info, absl::Status status);
  // RespondActivityTaskCompleted as a unary call (with retries): the stream is not up, or it
  // broke before the answer.
  absl::Status RespondCompletedUnary(const api::RespondActivityTaskCompletedRequest& request,
                                     api::RespondActivityTaskCompletedResponse* response);
  // The failure sent for the task (RespondActivityTaskFailed, on the stream or unary).
  absl::Status RespondFailed(const ActivityInfo& info, const api::Failure& failure,
                             const api::Payloads* last_heartbeat_details);
  void LogAnswer(const ActivityInfo& info, const std::string& outcome, const absl::Status& status);
  // Runs `work` on the pool (it blocks: a unary call), or here if the pool refuses it.
  void RunOnPool(std::function<void()> work);
  // Runs it on the workflow task runner, if one is still set.
  void RunNextWorkflowTask(api::PollWorkflowTaskQueueResponse task);
  // A task is done: frees its slot (unless handed over), and the worker may be idle from now.
  void Finish(bool free_slot = true);
  absl::Duration IdleForLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Waits until `done` (evaluated under mu_) holds or the injected clock reaches `deadline`;
  // returns `done`'s last value.
  bool WaitUntil(absl::Time deadline, const std::function<bool()>& done);

  Connection& connection_;
  const std::string task_queue_;
  ActivityWorkerOptions options_;
  Clock* clock_;
  Logger* logger_;
  std::map<std::string, ActivityFn> activities_;
  std::unique_ptr<prometheus::Registry> owned_registry_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<GrpcHeartbeatRecorder> recorder_;

  absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  // Set once Stop cancels contexts: a task that starts after that starts cancelled.
  bool cancelling_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status fatal_error_ ABSL_GUARDED_BY(mu_);
  int free_slots_ ABSL_GUARDED_BY(mu_) = 0;
  // Slots lent to the stream as credits (not free, not running).
  int stream_slots_ ABSL_GUARDED_BY(mu_) = 0;
  // A workflow worker of this process runs with this one (SetWorkflowTaskRunner).
  std::atomic<bool> has_runner_{false};
  // Set before the pollers or the stream start; the stream is stopped first in Stop.
  std::unique_ptr<internal::WorkerStream> stream_;
  std::atomic<bool> stream_active_{false};
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  std::set<grpc::ClientContext*> polls_ ABSL_GUARDED_BY(mu_);
  std::set<ActivityContext*> contexts_ ABSL_GUARDED_BY(mu_);
  // Idle tracking: since when nothing has run, and whether a poll came back empty since.
  absl::Time idle_since_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  bool empty_poll_since_idle_ ABSL_GUARDED_BY(mu_) = false;
  // Bumped on every change that matters to WaitForIdle.
  int64_t version_ ABSL_GUARDED_BY(mu_) = 0;
  // Bumped by clock alarms so that waits on the clock re-check their conditions.
  int64_t ticks_ ABSL_GUARDED_BY(mu_) = 0;
  // Alarms of WaitUntil that may still run; the destructor waits for none.
  int alarms_pending_ ABSL_GUARDED_BY(mu_) = 0;

  // Held shared while a completion uses the runner, exclusively to change it.
  absl::Mutex runner_mu_;
  EagerWorkflowTaskRunner* workflow_task_runner_ ABSL_GUARDED_BY(runner_mu_) = nullptr;

  std::atomic<int64_t> tasks_started_{0};
  std::vector<std::thread> pollers_;
  // Declared last: destroyed first, so its threads finish before the state above goes.
  std::unique_ptr<Executor> executor_;
};

}  // namespace kiln::sdk
