#include "sdk/workflow_worker.h"

#include "sdk/internal/worker_stream.h"

#include "absl/strings/str_cat.h"
#include "common/hop_trace.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/proto_time.h"
#include "common/rpc_status.h"

namespace kiln::sdk {
namespace {

void Deadline(grpc::ClientContext* context, absl::Duration timeout) {
  context->set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
}

}  // namespace

WorkflowWorker::WorkflowWorker(Connection& connection, std::string task_queue,
                               WorkflowWorkerOptions options)
    : connection_(connection),
      task_queue_(std::move(task_queue)),
      options_(std::move(options)),
      instance_id_(RandomIdGenerator().NewUuid()),
      cache_(options_.cache_size) {
  if (options_.registry != nullptr) {
    task_latency_ = &prometheus::BuildHistogram()
                         .Name("kiln_sdk_workflow_task_latency_seconds")
                         .Help("Time to run one workflow task (replay included) and answer it")
                         .Register(*options_.registry)
                         .Add({{"task_queue", task_queue_}}, LatencyBuckets());
    auto& replays = prometheus::BuildCounter()
                        .Name("kiln_sdk_workflow_replays_total")
                        .Help("Workflow tasks by how the workflow state was obtained")
                        .Register(*options_.registry);
    replays_full_ = &replays.Add({{"kind", "full"}});
    replays_incremental_ = &replays.Add({{"kind", "cached"}});
    auto& speculative = prometheus::BuildCounter()
                            .Name("kiln_sdk_workflow_speculative_tasks_total")
                            .Help(
                                "Workflow tasks run ahead of the engine (with a start or an "
                                "activity's completion), by whether it accepted them")
                            .Register(*options_.registry);
    speculative_accepted_total_ = &speculative.Add({{"outcome", "accepted"}});
    speculative_refused_total_ = &speculative.Add({{"outcome", "refused"}});
    cache_gauge_ = &prometheus::BuildGauge()
                        .Name("kiln_sdk_workflow_cache_size")
                        .Help("Running workflows held in the worker's cache")
                        .Register(*options_.registry)
                        .Add({{"task_queue", task_queue_}});
  }
}

WorkflowWorker::~WorkflowWorker() { Stop(); }

void WorkflowWorker::Register(const std::string& workflow_type, WorkflowFn fn) {
  workflows_[workflow_type] = std::move(fn);
  brief_cost_ns_.try_emplace(workflow_type, -1);
}

void WorkflowWorker::Start() {
  stopping_ = false;
  running_ = true;
  if (options_.eager_activities != nullptr) options_.eager_activities->SetWorkflowTaskRunner(this);
  if (options_.delivery == TaskDelivery::kPolls) {
    for (int i = 0; i < options_.pollers; ++i) threads_.emplace_back([this] { PollLoop(); });
    return;
  }
  // No threads to run pushed tasks: none are asked for (eager tasks only).
  stream_credits_ = options_.pollers == 0         ? 0
                    : options_.stream_credits > 0 ? options_.stream_credits
                                                  : std::max(128, 4 * options_.pollers);
  api::WorkerStreamOpen open;
  open.set_kind(api::WORKER_STREAM_KIND_WORKFLOW);
  open.set_namespace_(options_.ns);
  open.mutable_task_queue()->set_name(task_queue_);
  open.set_identity(options_.identity);
  open.set_worker_instance_id(instance_id_);
  stream_ = std::make_unique<internal::WorkerStream>(
      connection_, std::move(open),
      internal::WorkerStream::Handlers{
          .workflow_task = [this](api::PollWorkflowTaskQueueResponse task,
                                  bool alone) { Pushed(std::move(task), alone); },
          .activity_task = nullptr,
          .stopped =
              [this](const absl::Status& status) {
                // The orchestrator has no stream (or refused it): poll instead. The stream's
                // threads run the tasks it pushed, then poll.
                absl::MutexLock lock(&mu_);
                stream_active_ = false;
                LogInfo("sdk.workflow_stream_stopped_polling",
                        {{"queue", task_queue_}, {"status", status}});
              }});
  stream_active_ = true;
  for (int i = 0; i < options_.pollers; ++i) threads_.emplace_back([this] { StreamLoop(); });
  stream_->Start();
  stream_->Grant(stream_credits_);
}

void WorkflowWorker::StreamLoop() {
  for (;;) {
    api::PollWorkflowTaskQueueResponse task;
    bool brief = false;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_.load() || !stream_active_.load() || !pushed_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (stopping_) return;
      if (pushed_.empty()) break;  // The stream stopped for good.
      task = std::move(pushed_.front());
      pushed_.pop_front();
      // Not one that will wait for its run's previous answer: the wait is not the task's cost.
      brief = Brief(task) && !answering_.contains(task.workflow_execution().run_id());
    }
    RunPushed(task, brief);
  }
  PollLoop();
}

bool WorkflowWorker::Brief(const api::PollWorkflowTaskQueueResponse& task) {
  // A cached run's next events, or a young run's whole history, with nothing to fetch: no
  // long replay, history read or query.
  constexpr int kMaxEvents = 64;
  const auto& events = task.history().events();
  const bool partial = !events.empty() && events[0].event_id() > 1;
  return !task.has_query() && task.next_page_token().empty() && events.size() <= kMaxEvents &&
         (!partial || cache_.Contains(task.workflow_execution().run_id()));
}

std::atomic<int64_t>* WorkflowWorker::BriefCost(const std::string& type) {
  auto it = brief_cost_ns_.find(type);
  return it == brief_cost_ns_.end() ? nullptr : &it->second;
}

void WorkflowWorker::RunPushed(api::PollWorkflowTaskQueueResponse& task, bool brief) {
  // The task's credit goes back once it has ended (its answer included): the engine never
  // has more of our tasks in hand than the credits.
  hoptrace::Mark("w.wft");
  const absl::Time began = absl::Now();
  std::atomic<int64_t>* cost = brief ? BriefCost(task.workflow_type().name()) : nullptr;
  Handle(task, std::shared_ptr<void>(this, [](WorkflowWorker* w) { w->ReturnCredit(); }));
  if (cost == nullptr) return;
  // What a brief task of this type takes, averaged over the last ~8: what running one on the
  // stream's reader holds up. Two threads may update it at once; one of the two samples wins.
  const int64_t took = absl::ToInt64Nanoseconds(absl::Now() - began);
  const int64_t was = cost->load(std::memory_order_relaxed);
  cost->store(was < 0 ? took : was + (took - was) / 8, std::memory_order_relaxed);
}

void WorkflowWorker::Pushed(api::PollWorkflowTaskQueueResponse task, bool alone) {
  {
    absl::MutexLock lock(&mu_);
    // A brief task alone in its message, with none waiting before it, runs here on the
    // stream's reader: waking a stream thread for it costs more than the task (~45 us against
    // ~20 on this VM). Brief: short (Brief) and of a type whose brief tasks have taken little
    // so far (measured on the stream's threads first): the answers and tasks behind it wait
    // while it runs. Not a run whose previous answer is still awaited: it would wait for the
    // reader that reads that answer.
    constexpr int64_t kMaxCostOnReaderNs = 1'000'000;
    auto quick_type = [&] {
      std::atomic<int64_t>* cost = BriefCost(task.workflow_type().name());
      const int64_t ns = cost == nullptr ? -1 : cost->load(std::memory_order_relaxed);
      return ns >= 0 && ns <= kMaxCostOnReaderNs;
    };
    const bool here = alone && pushed_.empty() && !stopping_.load() && Brief(task) &&
                      quick_type() && !answering_.contains(task.workflow_execution().run_id());
    if (!here) {
      pushed_.push_back(std::move(task));
      return;
    }
  }
  ++tasks_on_reader_;
  RunPushed(task, /*brief=*/true);
}

void WorkflowWorker::ReturnCredit() {
  int grant = 0;
  {
    absl::MutexLock lock(&mu_);
    ++credits_to_return_;
    if (credits_to_return_ < std::max(1, stream_credits_ / 4)) return;
    grant = std::exchange(credits_to_return_, 0);
  }
  if (stream_ != nullptr) stream_->Grant(grant);
}

void WorkflowWorker::Stop() {
  running_ = false;
  stopping_ = true;
  // Waits for workflow tasks the activity worker is running for us.
  if (options_.eager_activities != nullptr) {
    options_.eager_activities->SetWorkflowTaskRunner(nullptr);
  }
  {
    absl::MutexLock lock(&mu_);
    for (grpc::ClientContext* poll : polls_) poll->TryCancel();
  }
  for (auto& t : threads_) t.join();
  threads_.clear();
  // After the threads: a task they answered on the stream gets its answer (or the unary call).
  if (stream_ != nullptr) {
    stream_->Stop();
    absl::MutexLock lock(&mu_);
    pushed_.clear();  // Started for us: the engine retries them after their timeout.
  }
}

size_t WorkflowWorker::cached() {
  absl::MutexLock lock(&mu_);
  return cache_.size();
}

void WorkflowWorker::ClearCache() {
  absl::MutexLock lock(&mu_);
  cache_.Clear();
}

std::unique_ptr<WorkflowInstance> WorkflowWorker::Checkout(const std::string& run_id,
                                                           bool after_answer) {
  // Long enough for an answer behind a synced commit on a loaded machine; past it the task
  // reads the whole history, which is slower but as correct.
  constexpr absl::Duration kAnswerWait = absl::Seconds(5);
  absl::MutexLock lock(&mu_);
  if (after_answer) {
    auto answered = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_.load() || !answering_.contains(run_id);
    };
    mu_.AwaitWithTimeout(absl::Condition(&answered), kAnswerWait);
  }
  return cache_.Checkout(run_id);
}

void WorkflowWorker::Return(const std::string& run_id, std::unique_ptr<WorkflowInstance> instance) {
  std::vector<std::unique_ptr<WorkflowInstance>> left;  // destroyed outside the lock
  bool held = false;
  {
    absl::MutexLock lock(&mu_);
    held = cache_.Contains(run_id);
    left = cache_.Put(run_id, std::move(instance));
    if (cache_gauge_) cache_gauge_->Set(static_cast<double>(cache_.size()));
  }
  // Rare (a later task of the run finished first, on a fresh instance); logged so that how
  // often it happens can be seen.
  if (held) LogInfo("sdk.workflow_cache_put_back_while_held", {{"run_id", run_id}});
}

void WorkflowWorker::PollLoop() {
  while (!stopping_) {
    api::PollWorkflowTaskQueueRequest request;
    request.set_namespace_(options_.ns);
    request.mutable_task_queue()->set_name(task_queue_);
    request.set_identity(options_.identity);
    request.set_worker_instance_id(instance_id_);
    api::PollWorkflowTaskQueueResponse task;
    grpc::ClientContext context;
    Deadline(&context, options_.poll_timeout);
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
      polls_.push_back(&context);
    }
    grpc::Status status =
        connection_.workflow_service().PollWorkflowTaskQueue(&context, request, &task);
    {
      absl::MutexLock lock(&mu_);
      polls_.erase(std::find(polls_.begin(), polls_.end(), &context));
    }
    if (!status.ok()) {
      if (stopping_) break;
      if (status.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
        LogWarn("sdk.workflow_poll_failed", {{"queue", task_queue_}, {"status", FromGrpc(status)}});
        absl::SleepFor(absl::Milliseconds(200));  // Back off while the server is away.
      }
      continue;
    }
    if (task.task_token().empty()) continue;
    Handle(task);
  }
}

absl::Status WorkflowWorker::FetchHistory(api::PollWorkflowTaskQueueResponse& task,
                                          std::string token, bool from_start) {
  for (bool first = from_start; first || !token.empty(); first = false) {
    api::GetWorkflowExecutionHistoryRequest request;
    request.set_namespace_(options_.ns);
    *request.mutable_execution() = task.workflow_execution();
    request.set_next_page_token(token);
    api::GetWorkflowExecutionHistoryResponse page;
    grpc::ClientContext context;
    Deadline(&context, absl::Seconds(30));
    grpc::Status status =
        connection_.workflow_service().GetWorkflowExecutionHistory(&context, request, &page);
    if (!status.ok()) return FromGrpc(status);
    for (auto& event : *page.mutable_history()->mutable_events()) {
      if (event.event_id() > task.started_event_id()) return absl::OkStatus();
      *task.mutable_history()->add_events() = std::move(event);
    }
    token = page.next_page_token();
  }
  return absl::OkStatus();
}

std::shared_ptr<LocalRun> WorkflowWorker::Follow(const std::string& run_id) {
  auto local = std::make_shared<LocalRun>();
  local->Hold();
  absl::MutexLock lock(&mu_);
  if (local_runs_.size() >= local_runs_sweep_at_) {
    absl::erase_if(local_runs_, [](const auto& entry) {
      std::shared_ptr<LocalRun> run = entry.second.lock();
      return run == nullptr || run->settled();
    });
    local_runs_sweep_at_ = std::max<size_t>(64, 2 * local_runs_.size());
  }
  local_runs_[run_id] = local;
  return local;
}

std::shared_ptr<LocalRun> WorkflowWorker::StartEagerRun(api::PollWorkflowTaskQueueResponse task) {
  std::shared_ptr<LocalRun> local = Follow(task.workflow_execution().run_id());
  Handle(task);
  local->Release();  // The first task is over.
  return local;
}

bool WorkflowWorker::HoldsRun(const std::string& run_id) {
  absl::MutexLock lock(&mu_);
  return cache_.Contains(run_id);
}

std::shared_ptr<LocalRun> WorkflowWorker::FindLocal(const std::string& run_id) {
  absl::MutexLock lock(&mu_);
  auto it = local_runs_.find(run_id);
  if (it == local_runs_.end()) return nullptr;
  std::shared_ptr<LocalRun> local = it->second.lock();
  if (local == nullptr || local->settled()) {
    local_runs_.erase(it);
    return nullptr;
  }
  return local;
}

void WorkflowWorker::Handle(api::PollWorkflowTaskQueueResponse& task, std::shared_ptr<void> hold) {
  absl::Time began = absl::Now();
  const std::string& run_id = task.workflow_execution().run_id();
  const std::string& type = task.workflow_type().name();

  auto respond_failed = [&](api::WorkflowTaskFailedCause cause, const absl::Status& why) {
    ++tasks_failed_;
    LogWarn("sdk.workflow_task_failed", {{"workflow_id", task.workflow_execution().workflow_id()},
                                         {"run_id", run_id},
                                         {"status", why}});
    api::RespondWorkflowTaskFailedRequest request;
    request.set_task_token(task.task_token());
    request.set_cause(cause);
    request.mutable_failure()->set_message(std::string(why.message()));
    request.mutable_failure()->set_source("kiln-sdk-cpp");
    request.set_identity(options_.identity);
    api::RespondWorkflowTaskFailedResponse ignored;
    grpc::ClientContext context;
    Deadline(&context, absl::Seconds(30));
    (void)connection_.workflow_service().RespondWorkflowTaskFailed(&context, request, &ignored);
  };

  auto fn = workflows_.find(type);
  if (fn == workflows_.end()) {
    respond_failed(api::WORKFLOW_TASK_FAILED_CAUSE_WORKFLOW_WORKER_UNHANDLED_FAILURE,
                   absl::NotFoundError(absl::StrCat("workflow type '", type,
                                                    "' is not registered on queue ", task_queue_)));
    return;
  }
  if (task.has_query()) {
    // A query: replay the run so far (never the cached instance, which may be mid-task) and ask
    // the workflow's handler. Nothing is written to the history.
    WorkflowInfo info;
    info.ns = options_.ns;
    info.workflow_id = task.workflow_execution().workflow_id();
    info.run_id = run_id;
    info.workflow_type = type;
    info.task_queue = task_queue_;
    WorkflowInstance instance(fn->second, std::move(info));
    absl::Status replayed = instance.Replay(task.history());
    absl::StatusOr<api::Payloads> answer =
        replayed.ok() ? instance.Query(task.query().query_type(), task.query().query_args())
                      : absl::StatusOr<api::Payloads>(replayed);
    api::RespondQueryTaskCompletedRequest request;
    request.set_task_token(task.task_token());
    if (answer.ok()) {
      request.set_completed_type(api::QUERY_RESULT_TYPE_ANSWERED);
      *request.mutable_query_result() = std::move(*answer);
    } else {
      request.set_completed_type(api::QUERY_RESULT_TYPE_FAILED);
      request.set_error_message(std::string(answer.status().message()));
    }
    api::RespondQueryTaskCompletedResponse ignored;
    grpc::ClientContext context;
    Deadline(&context, absl::Seconds(10));
    (void)connection_.workflow_service().RespondQueryTaskCompleted(&context, request, &ignored);
    return;
  }
  if (absl::Status fetched = FetchHistory(task, task.next_page_token(), false); !fetched.ok()) {
    LogWarn("sdk.history_fetch_failed", {{"run_id", run_id}, {"status", fetched}});
    return;  // The task times out and is retried.
  }

  // A partial history (events after the previous task only, asked for because the run was
  // cached here) needs the cached instance; without it, read the whole history and replay.
  const bool partial = task.history().events_size() > 0 && task.history().events(0).event_id() > 1;
  std::unique_ptr<WorkflowInstance> instance = Checkout(run_id, partial);
  // A cached instance fits only if its last task is the one the engine last saw completed.
  if (instance != nullptr &&
      instance->last_started_event_id() != task.previous_started_event_id()) {
    instance.reset();
  }
  if (partial) ++partial_histories_;
  if (partial && instance == nullptr) {
    task.clear_history();
    if (absl::Status fetched = FetchHistory(task, "", true); !fetched.ok()) {
      LogWarn("sdk.history_fetch_failed", {{"run_id", run_id}, {"status", fetched}});
      return;  // The task times out and is retried.
    }
  }
  if (instance != nullptr) {
    ++cache_hits_;
    if (replays_incremental_) replays_incremental_->Increment();
  } else {
    ++full_replays_;
    if (replays_full_) replays_full_->Increment();
    WorkflowInfo info;
    info.ns = options_.ns;
    info.workflow_id = task.workflow_execution().workflow_id();
    info.run_id = run_id;
    info.workflow_type = type;
    info.task_queue = task_queue_;
    instance = std::make_unique<WorkflowInstance>(fn->second, std::move(info));
  }

  absl::StatusOr<std::vector<api::Command>> commands =
      instance->ProcessWorkflowTask(task.history());
  if (!commands.ok()) {
    bool nondeterministic =
        std::string(commands.status().message()).rfind("non-determinism", 0) == 0;
    respond_failed(nondeterministic
                       ? api::WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR
                       : api::WORKFLOW_TASK_FAILED_CAUSE_WORKFLOW_WORKER_UNHANDLED_FAILURE,
                   commands.status());
    return;  // The instance is dropped: the retry replays from scratch.
  }

  api::RespondWorkflowTaskCompletedRequest request;
  request.set_task_token(task.task_token());
  request.set_identity(options_.identity);
  // The instance goes back to the cache: this worker's poll of the run's next task then gets
  // only the new events (one that was evicted meanwhile reads the whole history).
  // It also takes the events the completion records, to run the run's next task itself when
  // an activity of the run completes here (Speculate).
  if (!instance->completed() && options_.cache_size > 0) {
    request.set_sticky_worker(instance_id_);
    request.set_return_new_events(options_.eager_activities != nullptr &&
                                  options_.speculative_tasks);
  }
  for (auto& command : *commands) *request.add_commands() = std::move(command);
  int eager_slots = ReserveEagerSlots(request);
  // Unary: the answer, on this thread.
  auto unary = [this](const api::RespondWorkflowTaskCompletedRequest& request)
      -> absl::StatusOr<api::RespondWorkflowTaskCompletedResponse> {
    api::RespondWorkflowTaskCompletedResponse response;
    grpc::ClientContext context;
    Deadline(&context, absl::Seconds(30));
    grpc::Status status =
        connection_.workflow_service().RespondWorkflowTaskCompleted(&context, request, &response);
    if (!status.ok()) return FromGrpc(status);
    return response;
  };
  // Only a task the stream pushed (it holds a credit) is answered on the stream: a task run
  // eagerly (with a start, or an activity's completion here) is answered before this returns,
  // so that its close reaches a local caller (LocalRun) while the run is still held here.
  if (!stream_active_.load() || hold == nullptr) {
    Completed(run_id, std::move(instance), eager_slots, began, unary(request));
    return;
  }
  // On the stream: the answer comes on its reader thread; this thread goes on to the next task.
  api::WorkerStreamCompletion completion;
  *completion.mutable_workflow_task_completed() = request;
  auto state = std::make_shared<std::unique_ptr<WorkflowInstance>>(std::move(instance));
  {
    absl::MutexLock lock(&mu_);
    answering_.insert(run_id);
  }
  stream_->Complete(
      std::move(completion),
      [this, run_id, state, eager_slots, began, hold, unary,
       request = std::move(request)](absl::StatusOr<api::WorkerStreamAnswer> answer) mutable {
        absl::StatusOr<api::RespondWorkflowTaskCompletedResponse> response;
        if (absl::IsUnavailable(answer.status())) {
          // Not sent, or the stream broke first: the unary call (a duplicate is refused).
          response = unary(request);
        } else if (!answer.ok()) {
          response = answer.status();
        } else if (answer->code() != 0) {
          response = absl::Status(static_cast<absl::StatusCode>(answer->code()), answer->message());
        } else {
          response = std::move(*answer->mutable_workflow_task_completed());
        }
        Completed(run_id, std::move(*state), eager_slots, began, std::move(response));
        absl::MutexLock lock(&mu_);
        answering_.erase(run_id);
      });
}

void WorkflowWorker::Completed(const std::string& run_id,
                               std::unique_ptr<WorkflowInstance> instance, int eager_slots,
                               absl::Time began,
                               absl::StatusOr<api::RespondWorkflowTaskCompletedResponse> response) {
  if (!response.ok()) {
    ReleaseEagerSlots(eager_slots);
    ++tasks_failed_;
    LogWarn("sdk.workflow_task_respond_failed",
            {{"run_id", run_id}, {"status", response.status()}});
    return;  // The cached state may not match what the engine recorded: drop it.
  }
  ++tasks_completed_;
  if (task_latency_) task_latency_->Observe(absl::ToDoubleSeconds(absl::Now() - began));
  AfterCompletion(run_id, std::move(instance), eager_slots, *response);
}

void WorkflowWorker::AfterCompletion(const std::string& run_id,
                                     std::unique_ptr<WorkflowInstance> instance, int eager_slots,
                                     api::RespondWorkflowTaskCompletedResponse& response) {
  // Back in the cache before its activities start: one that completes at once finds the run
  // held here (and runs the next task itself, or asks for it with a partial history).
  if (!instance->completed()) {
    api::History events;
    events.mutable_events()->Swap(response.mutable_new_events());
    if (absl::Status absorbed = instance->AbsorbCompletion(events); absorbed.ok()) {
      Return(run_id, std::move(instance));
    } else {
      // The events do not fit the code: its next task replays the whole history (and fails
      // there, naming the event, if the code is at fault).
      LogWarn("sdk.completion_events_refused", {{"run_id", run_id}, {"status", absorbed}});
    }
  }
  std::shared_ptr<LocalRun> local = FindLocal(run_id);
  if (local != nullptr && response.has_closed_event()) {
    local->Closed(std::move(*response.mutable_closed_event()));
  }
  for (auto& activity : *response.mutable_activity_tasks()) {
    if (eager_slots == 0) break;  // Never more than asked for; the engine keeps to that.
    --eager_slots;
    std::function<void()> done;
    if (local != nullptr) {
      // The activity keeps the run here until it ends (and the next task it brings back).
      local->Hold();
      done = [local] { local->Release(); };
    }
    options_.eager_activities->RunEager(std::move(activity), std::move(done));
  }
  ReleaseEagerSlots(eager_slots);
}

void WorkflowWorker::ReleaseEagerSlots(int slots) {
  for (; slots > 0; --slots) options_.eager_activities->ReleaseSlot();
}

void WorkflowWorker::CountSpeculative(bool accepted, absl::Time began) {
  if (!accepted) {
    ++speculative_refused_;
    if (speculative_refused_total_) speculative_refused_total_->Increment();
    return;
  }
  ++speculative_accepted_;
  ++tasks_completed_;
  if (speculative_accepted_total_) speculative_accepted_total_->Increment();
  if (task_latency_) task_latency_->Observe(absl::ToDoubleSeconds(absl::Now() - began));
}

namespace {

struct Speculation final : SpeculativeTask {
  std::string run_id;
  std::unique_ptr<WorkflowInstance> instance;
  int eager_slots = 0;
  absl::Time began;
};

}  // namespace

std::unique_ptr<SpeculativeTask> WorkflowWorker::Speculate(const std::string& run_id,
                                                           const std::string& activity_id,
                                                           const api::Payloads& result, bool slot) {
  if (!running_.load() || !options_.speculative_tasks || options_.cache_size == 0) return nullptr;
  std::unique_ptr<WorkflowInstance> instance = Checkout(run_id);
  if (instance == nullptr) return nullptr;  // not here, or busy with another task
  if (!instance->level() || instance->completed()) {
    Return(run_id, std::move(instance));
    return nullptr;
  }
  auto task = std::make_unique<Speculation>();
  task->began = absl::Now();
  const int64_t next_event_id = instance->next_event_id();
  absl::StatusOr<std::vector<api::Command>> commands =
      instance->RunSpeculativeTask(activity_id, result, task->began);
  if (!commands.ok()) {
    if (absl::IsNotFound(commands.status())) {
      Return(run_id, std::move(instance));  // untouched: not an activity it waits on
    } else {
      LogWarn("sdk.speculative_task_failed", {{"run_id", run_id}, {"status", commands.status()}});
    }
    return nullptr;  // The task comes back with the completion and fails the usual way.
  }
  task->request.set_next_event_id(next_event_id);
  ToProto(task->began, task->request.mutable_started_time());
  api::RespondWorkflowTaskCompletedRequest& completion = *task->request.mutable_completion();
  completion.set_identity(options_.identity);
  if (!instance->completed()) {
    completion.set_sticky_worker(instance_id_);
    completion.set_return_new_events(true);
  }
  for (auto& command : *commands) *completion.add_commands() = std::move(command);
  bool hand_over = slot;
  task->eager_slots = ReserveEagerSlots(completion, &hand_over);
  task->took_slot = slot && !hand_over;
  task->run_id = run_id;
  task->instance = std::move(instance);
  return task;
}

void WorkflowWorker::FinishSpeculative(std::unique_ptr<SpeculativeTask> task,
                                       const absl::Status& status,
                                       api::RespondActivityTaskCompletedResponse* response) {
  auto& speculation = static_cast<Speculation&>(*task);
  if (!status.ok() || !response->has_workflow_task_completed()) {
    // Its code ran ahead of the history: the instance goes (with `task`).
    CountSpeculative(/*accepted=*/false, speculation.began);
    ReleaseEagerSlots(speculation.eager_slots);
    return;
  }
  CountSpeculative(/*accepted=*/true, speculation.began);
  if (replays_incremental_) replays_incremental_->Increment();
  AfterCompletion(speculation.run_id, std::move(speculation.instance), speculation.eager_slots,
                  *response->mutable_workflow_task_completed());
}

std::unique_ptr<SpeculativeTask> WorkflowWorker::SpeculateStart(
    api::StartWorkflowExecutionRequest& request) {
  if (!running_.load() || !options_.speculative_tasks || options_.cache_size == 0) return nullptr;
  auto fn = workflows_.find(request.workflow_type().name());
  if (fn == workflows_.end()) return nullptr;  // the task comes back and fails the usual way
  auto task = std::make_unique<Speculation>();
  task->began = absl::Now();
  task->run_id = run_ids_.NewTimeOrderedUuid(task->began);
  WorkflowInfo info;
  info.ns = options_.ns;
  info.workflow_id = request.workflow_id();
  info.run_id = task->run_id;
  info.workflow_type = request.workflow_type().name();
  info.task_queue = task_queue_;
  auto instance = std::make_unique<WorkflowInstance>(fn->second, std::move(info));
  // The events a start records: the run started, its first task scheduled and started.
  api::History history;
  auto add = [&](api::EventType type) {
    api::HistoryEvent* event = history.add_events();
    event->set_event_id(history.events_size());
    event->set_event_type(type);
    ToProto(task->began, event->mutable_event_time());
    return event;
  };
  auto* started = add(api::EVENT_TYPE_WORKFLOW_EXECUTION_STARTED)
                      ->mutable_workflow_execution_started_event_attributes();
  *started->mutable_workflow_type() = request.workflow_type();
  *started->mutable_task_queue() = request.task_queue();
  *started->mutable_input() = request.input();
  started->set_original_execution_run_id(task->run_id);
  add(api::EVENT_TYPE_WORKFLOW_TASK_SCHEDULED);
  add(api::EVENT_TYPE_WORKFLOW_TASK_STARTED)
      ->mutable_workflow_task_started_event_attributes()
      ->set_scheduled_event_id(2);
  absl::StatusOr<std::vector<api::Command>> commands = instance->ProcessWorkflowTask(history);
  if (!commands.ok()) return nullptr;  // the task comes back and fails the usual way
  task->request.set_run_id(task->run_id);
  task->request.set_next_event_id(1);
  ToProto(task->began, task->request.mutable_started_time());
  api::RespondWorkflowTaskCompletedRequest& completion = *task->request.mutable_completion();
  completion.set_identity(options_.identity);
  if (!instance->completed()) {
    completion.set_sticky_worker(instance_id_);
    completion.set_return_new_events(options_.eager_activities != nullptr);
  }
  for (auto& command : *commands) *completion.add_commands() = std::move(command);
  task->eager_slots = ReserveEagerSlots(completion);
  task->instance = std::move(instance);
  *request.mutable_speculative_first_task() = task->request;
  return task;
}

std::shared_ptr<LocalRun> WorkflowWorker::FinishSpeculativeStart(
    std::unique_ptr<SpeculativeTask> task, const absl::Status& status,
    api::StartWorkflowExecutionResponse* response) {
  auto& speculation = static_cast<Speculation&>(*task);
  if (!status.ok() || !response->has_first_task_completed()) {
    ReleaseEagerSlots(speculation.eager_slots);
    if (!status.ok()) return nullptr;
    CountSpeculative(/*accepted=*/false, speculation.began);
    task.reset();  // what ran ahead goes
    if (!response->has_eager_workflow_task()) return nullptr;
    return StartEagerRun(std::move(*response->mutable_eager_workflow_task()));
  }
  CountSpeculative(/*accepted=*/true, speculation.began);
  ++full_replays_;  // a new instance, like a first task's
  if (replays_full_) replays_full_->Increment();
  std::shared_ptr<LocalRun> local = Follow(speculation.run_id);
  AfterCompletion(speculation.run_id, std::move(speculation.instance), speculation.eager_slots,
                  *response->mutable_first_task_completed());
  local->Release();  // The first task is over.
  return local;
}

int WorkflowWorker::ReserveEagerSlots(api::RespondWorkflowTaskCompletedRequest& request,
                                      bool* hand_over) {
  ActivityWorker* activities = options_.eager_activities;
  if (activities == nullptr) return 0;
  int reserved = 0;
  for (api::Command& command : *request.mutable_commands()) {
    if (command.command_type() != api::COMMAND_TYPE_SCHEDULE_ACTIVITY_TASK) continue;
    auto* attrs = command.mutable_schedule_activity_task_command_attributes();
    const std::string& queue = attrs->task_queue().name();
    if ((!queue.empty() && queue != task_queue_) ||
        !activities->Handles(attrs->activity_type().name())) {
      continue;
    }
    if (hand_over != nullptr && *hand_over) {
      *hand_over = false;
    } else if (!activities->TryReserveSlot()) {
      continue;
    }
    attrs->set_request_eager_execution(true);
    ++reserved;
  }
  return reserved;
}

absl::Status ReplayHistory(const WorkflowFn& fn, const api::History& history,
                           const std::string& workflow_id, const std::string& run_id) {
  WorkflowInfo info;
  info.workflow_id = workflow_id;
  info.run_id = run_id;
  // Randomness is seeded by the run id: replay with the recorded one when the history has it.
  if (history.events_size() > 0 && !history.events(0)
                                        .workflow_execution_started_event_attributes()
                                        .original_execution_run_id()
                                        .empty()) {
    info.run_id =
        history.events(0).workflow_execution_started_event_attributes().original_execution_run_id();
  }
  WorkflowInstance instance(fn, std::move(info));
  return instance.Replay(history);
}

}  // namespace kiln::sdk
