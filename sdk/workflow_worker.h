// The workflow half of a worker: polls a task queue for workflow tasks, runs them against the
// registered workflow code, and answers with commands. Running workflows stay in a bounded LRU
// cache, so a new task of a cached run feeds only the events it has not seen; on a miss (or
// when the cached state no longer fits the history) the whole history is replayed.
#pragma once

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "common/ids.h"
#include "sdk/activity_worker.h"
#include "sdk/client.h"
#include "sdk/connection.h"
#include "sdk/instance_cache.h"
#include "sdk/internal/eager.h"
#include "sdk/workflow_instance.h"

namespace kiln::sdk {

struct WorkflowWorkerOptions {
  std::string identity = "kiln-worker";
  std::string ns{};
  // Threads long-polling the queue, or with the push stream, running its tasks.
  int pollers = 2;
  // kAuto: the orchestrator's push stream when it offers one (else polls); kPolls: polls only.
  TaskDelivery delivery = TaskDelivery::kAuto;
  // With the stream: workflow tasks in hand at most (pushed, run, answer awaited); 0: 4 per
  // poller, at least 128. The answers are awaited without holding a thread.
  int stream_credits = 0;
  // Running workflows kept in memory.
  size_t cache_size = 1000;
  // Client-side deadline of one long poll (the server answers empty before it).
  absl::Duration poll_timeout = absl::Seconds(70);
  prometheus::Registry* registry = nullptr;
  // An activity worker on the same task queue: activities it runs are asked for eagerly when
  // it has a free slot (started by the workflow task's completion and handed straight to it,
  // saving a poll and a transition), and in the other direction a completed activity brings
  // back the workflow's next task for this worker (ActivityWorker::SetWorkflowTaskRunner).
  // Not owned; must outlive this worker's Stop.
  ActivityWorker* eager_activities = nullptr;
  // With eager_activities: when one of a cached run's activities completes there, run the
  // run's next workflow task at once on the cached state and send its answer with the
  // completion (api::SpeculativeWorkflowTask: one RPC and one synced write fewer per
  // activity). The engine takes it when nothing else happened to the run meanwhile.
  bool speculative_tasks = true;
};

class WorkflowWorker final : public EagerWorkflowTaskRunner {
 public:
  WorkflowWorker(Connection& connection, std::string task_queue, WorkflowWorkerOptions options);
  ~WorkflowWorker();

  void Register(const std::string& workflow_type, WorkflowFn fn);
  void Start();
  // Stops polling (in-flight polls are cancelled) and waits for running tasks to finish.
  void Stop();

  size_t cached();
  int64_t full_replays() const { return full_replays_.load(); }
  int64_t cache_hits() const { return cache_hits_.load(); }
  int64_t tasks_completed() const { return tasks_completed_.load(); }
  int64_t tasks_failed() const { return tasks_failed_.load(); }
  // Tasks whose history came partial (only what followed the previous task of a cached run).
  int64_t partial_histories() const { return partial_histories_.load(); }
  // Workflow tasks run ahead of the engine, with a start (SpeculateStart) or an activity's
  // completion (Speculate), by whether the engine took them.
  int64_t speculative_accepted() const { return speculative_accepted_.load(); }
  int64_t speculative_refused() const { return speculative_refused_.load(); }
  // Pushed workflow tasks run on the stream's reader thread (alone in their message, none
  // waiting before them): no other thread was woken for them.
  int64_t tasks_on_reader() const { return tasks_on_reader_.load(); }
  // Drops every cached workflow (the next task of each replays in full).
  void ClearCache();

  // Eager start (StartWorkflowOptions::eager_worker): between Start and Stop, for this
  // worker's queue.
  bool AcceptsEagerTask(const std::string& task_queue) override {
    return running_.load() && task_queue == task_queue_;
  }
  const std::string& eager_identity() const override { return options_.identity; }
  void RunEagerTask(api::PollWorkflowTaskQueueResponse task) override { Handle(task); }
  bool HoldsRun(const std::string& run_id) override;
  // Also follows the run (LocalRun) while its tasks stay in this process.
  std::shared_ptr<LocalRun> StartEagerRun(api::PollWorkflowTaskQueueResponse task) override;
  // With an activity's completion in this process: runs the run's next workflow task on the
  // cached instance at once (see EagerWorkflowTaskRunner::Speculate). Refused, the instance is
  // dropped (its code ran ahead of the history) and the task comes back the usual way.
  std::unique_ptr<SpeculativeTask> Speculate(const std::string& run_id,
                                             const std::string& activity_id,
                                             const api::Payloads& result, bool slot) override;
  void FinishSpeculative(std::unique_ptr<SpeculativeTask> task, const absl::Status& status,
                         api::RespondActivityTaskCompletedResponse* response) override;
  // With an eager start: runs the new run's first task before the start is sent.
  std::unique_ptr<SpeculativeTask> SpeculateStart(
      api::StartWorkflowExecutionRequest& request) override;
  std::shared_ptr<LocalRun> FinishSpeculativeStart(
      std::unique_ptr<SpeculativeTask> task, const absl::Status& status,
      api::StartWorkflowExecutionResponse* response) override;

 private:
  void PollLoop();
  // Runs tasks the stream pushed, on the poller threads.
  void StreamLoop();
  // A task the stream pushed (on its reader): run there, or queued for StreamLoop.
  void Pushed(api::PollWorkflowTaskQueueResponse task, bool alone);
  // Short enough to run on the stream's reader, were its type's tasks quick.
  bool Brief(const api::PollWorkflowTaskQueueResponse& task) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The cost of `type`'s brief tasks in ns (-1: none measured yet); null if not registered.
  std::atomic<int64_t>* BriefCost(const std::string& type);
  // Runs a pushed task; a brief one's time goes into its type's cost.
  void RunPushed(api::PollWorkflowTaskQueueResponse& task, bool brief);
  // A task's credit is back: granted in batches.
  void ReturnCredit();
  // `hold` (null for a task run eagerly) is kept until the task has ended, answer included; a
  // task with one came on the stream and is answered there, its answer awaited off this thread.
  void Handle(api::PollWorkflowTaskQueueResponse& task, std::shared_ptr<void> hold = nullptr);
  // What follows the completion's answer (on the stream's reader thread, or inline).
  void Completed(const std::string& run_id, std::unique_ptr<WorkflowInstance> instance,
                 int eager_slots, absl::Time began,
                 absl::StatusOr<api::RespondWorkflowTaskCompletedResponse> response);
  // Appends the run's events to the task's history page by page from `token` (from event 1
  // with `from_start`), up to the task's WorkflowTaskStarted.
  absl::Status FetchHistory(api::PollWorkflowTaskQueueResponse& task, std::string token,
                            bool from_start);
  // Marks the activities options_.eager_activities can start now as eager, taking a slot for
  // each (the first one `*hand_over` if set, which is then cleared); returns how many.
  int ReserveEagerSlots(api::RespondWorkflowTaskCompletedRequest& request,
                        bool* hand_over = nullptr);
  // After a workflow task's completion was recorded: the instance back in the cache (level
  // with the history when the answer has its events), the close handed to a local caller,
  // the eager activities started in their reserved slots (the rest given back).
  void AfterCompletion(const std::string& run_id, std::unique_ptr<WorkflowInstance> instance,
                       int eager_slots, api::RespondWorkflowTaskCompletedResponse& response);
  // Gives back slots reserved for eager activities no task came for.
  void ReleaseEagerSlots(int slots);
  // A task run ahead, by whether the engine took it (taken: a completed task, timed from
  // `began`).
  void CountSpeculative(bool accepted, absl::Time began);
  // The cached instance of `run_id`, if any. `after_answer`: first wait (up to
  // kAnswerWait) for the answer to the run's previous task, if it is still on its way: the
  // engine may push the run's next task before that answer, which returns the run to the cache.
  std::unique_ptr<WorkflowInstance> Checkout(const std::string& run_id, bool after_answer = false);
  void Return(const std::string& run_id, std::unique_ptr<WorkflowInstance> instance);
  // The run this process follows, if any.
  std::shared_ptr<LocalRun> FindLocal(const std::string& run_id);
  // Follows `run_id` from now (a held LocalRun: the caller releases it).
  std::shared_ptr<LocalRun> Follow(const std::string& run_id);

  Connection& connection_;
  std::string task_queue_;
  WorkflowWorkerOptions options_;
  // New for every worker: its polls get partial histories of the runs it keeps cached (the
  // identity may be shared by several workers).
  const std::string instance_id_;
  RandomIdGenerator run_ids_;  // for runs started with their first task run ahead
  std::map<std::string, WorkflowFn> workflows_;
  // Per registered workflow type, what its brief pushed tasks take in ns (-1: none measured
  // yet); keys set by Register, values read and written without a lock (Pushed, RunPushed).
  std::map<std::string, std::atomic<int64_t>> brief_cost_ns_;

  absl::Mutex mu_;
  InstanceCache cache_ ABSL_GUARDED_BY(mu_);
  std::vector<grpc::ClientContext*> polls_ ABSL_GUARDED_BY(mu_);
  // Runs started eagerly here, while someone holds them (a caller's handle, a task in hand);
  // expired and settled entries are swept as new ones come.
  absl::flat_hash_map<std::string, std::weak_ptr<LocalRun>> local_runs_ ABSL_GUARDED_BY(mu_);
  size_t local_runs_sweep_at_ ABSL_GUARDED_BY(mu_) = 64;

  // The push stream and the tasks it pushed, waiting for a thread.
  std::unique_ptr<internal::WorkerStream> stream_;
  std::atomic<bool> stream_active_{false};
  int stream_credits_ = 0;
  std::deque<api::PollWorkflowTaskQueueResponse> pushed_ ABSL_GUARDED_BY(mu_);
  int credits_to_return_ ABSL_GUARDED_BY(mu_) = 0;
  // Runs whose completion went on the stream and whose answer has not come yet.
  absl::flat_hash_set<std::string> answering_ ABSL_GUARDED_BY(mu_);

  std::atomic<bool> stopping_{false};
  std::atomic<bool> running_{false};
  std::vector<std::thread> threads_;
  std::atomic<int64_t> full_replays_{0};
  std::atomic<int64_t> cache_hits_{0};
  std::atomic<int64_t> tasks_completed_{0};
  std::atomic<int64_t> tasks_failed_{0};
  std::atomic<int64_t> tasks_on_reader_{0};
  std::atomic<int64_t> partial_histories_{0};
  std::atomic<int64_t> speculative_accepted_{0};
  std::atomic<int64_t> speculative_refused_{0};

  prometheus::Histogram* task_latency_ = nullptr;
  prometheus::Counter* replays_full_ = nullptr;
  prometheus::Counter* replays_incremental_ = nullptr;
  prometheus::Counter* speculative_accepted_total_ = nullptr;
  prometheus::Counter* speculative_refused_total_ = nullptr;
  prometheus::Gauge* cache_gauge_ = nullptr;
};

// Runs recorded histories against workflow code: the check before deploying a code change.
// OK when the code produces exactly the recorded commands.
absl::Status ReplayHistory(const WorkflowFn& fn, const api::History& history,
                           const std::string& workflow_id = "replay",
                           const std::string& run_id = "replay");

}  // namespace kiln::sdk
