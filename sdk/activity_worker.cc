#include "sdk/activity_worker.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <exception>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/hop_trace.h"
#include "common/metrics.h"
#include "common/proto_time.h"
#include "common/rpc_status.h"
#include "common/status.h"
#include "sdk/internal/eager.h"
#include "sdk/internal/worker_stream.h"

namespace kiln::sdk {
namespace {

// Backoff after a failed poll (the orchestrator is down or refusing): grows to the cap, resets
// on the next good poll.
constexpr absl::Duration kPollBackoffInitial = absl::Milliseconds(100);
constexpr absl::Duration kPollBackoffMax = absl::Seconds(5);
// Heartbeats are best effort (the next interval retries), so one attempt with this deadline.
constexpr absl::Duration kHeartbeatTimeout = absl::Seconds(10);
// The engine answers a poll after 60 s anyway; this only keeps the deadline arithmetic sane.
constexpr absl::Duration kMaxPoll = absl::Minutes(10);

// The engine refused an activity's result itself (too large, say): the attempt fails with this,
// not retried (the same result would be refused again), rather than left to time out.
api::Failure ResultRejected(const absl::Status& refused) {
  return FailureFromStatus(ApplicationError("ResultRejected", std::string(refused.message()),
                                            /*non_retryable=*/true));
}

std::string DefaultIdentity() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  return absl::StrCat(host[0] != '\0' ? host : "localhost", ":", getpid());
}

// Activities run from milliseconds to the better part of an hour (a build).
const prometheus::Histogram::BucketBoundaries& ActivityLatencyBuckets() {
  static const auto* buckets = [] {
    auto* b = new prometheus::Histogram::BucketBoundaries(LatencyBuckets());
    for (double s : {120.0, 300.0, 600.0, 1800.0, 3600.0}) b->push_back(s);
    return b;
  }();
  return *buckets;
}

// The failure type for an activity that stopped because its context was cancelled by
// something other than the workflow (such an attempt is retried).
std::string CancelFailureType(CancelReason reason) {
  switch (reason) {
    case CancelReason::kWorkerShutdown:
      return "WorkerShutdown";
    case CancelReason::kDeadline:
      return "ActivityDeadlineExceeded";
    case CancelReason::kNotRunning:
      return "ActivityNotRunning";
    case CancelReason::kNone:
    case CancelReason::kRequested:
      break;
  }
  return "Canceled";
}

}  // namespace

class ActivityWorker::GrpcHeartbeatRecorder final : public HeartbeatRecorder {
 public:
  GrpcHeartbeatRecorder(api::WorkflowService::Stub* stub, std::string identity)
      : stub_(stub), identity_(std::move(identity)) {}

  void RecordHeartbeat(const std::string& task_token, const api::Payloads& details,
                       std::function<void(absl::StatusOr<bool>)> done) override {
    // Owned by the callback: it lives until gRPC has finished with it.
    struct Call {
      grpc::ClientContext context;
      api::RecordActivityTaskHeartbeatRequest request;
      api::RecordActivityTaskHeartbeatResponse response;
    };
    auto call = std::make_shared<Call>();
    call->context.set_deadline(std::chrono::system_clock::now() +
                               absl::ToChronoMilliseconds(kHeartbeatTimeout));
    call->request.set_task_token(task_token);
    call->request.set_identity(identity_);
    if (details.payloads_size() > 0) *call->request.mutable_details() = details;
    stub_->async()->RecordActivityTaskHeartbeat(
        &call->context, &call->request, &call->response,
        [call, done = std::move(done)](grpc::Status status) {
          if (status.ok()) {
            done(call->response.cancel_requested());
          } else {
            done(FromGrpc(status));
          }
        });
  }

 private:
  api::WorkflowService::Stub* stub_;
  std::string identity_;
};

struct ActivityWorker::Metrics {
  Metrics(prometheus::Registry& registry, const std::string& task_queue)
      : task_queue(task_queue),
        latency(prometheus::BuildHistogram()
                    .Name("kiln_sdk_activity_task_latency_seconds")
                    .Help("Time an activity function ran, by activity type")
                    .Register(registry)),
        schedule_to_start(prometheus::BuildHistogram()
                              .Name("kiln_sdk_activity_schedule_to_start_seconds")
                              .Help("Time from an attempt being scheduled to its start")
                              .Register(registry)
                              .Add({{"task_queue", task_queue}}, LatencyBuckets())),
        slots_used(prometheus::BuildGauge()
                       .Name("kiln_sdk_activity_slots_used")
                       .Help("Activities running now")
                       .Register(registry)
                       .Add({{"task_queue", task_queue}})),
        results(prometheus::BuildCounter()
                    .Name("kiln_sdk_activity_results_total")
                    .Help("Activity tasks answered, by outcome")
                    .Register(registry)) {}

  void Result(const std::string& result) {
    results.Add({{"task_queue", task_queue}, {"result", result}}).Increment();
  }
  void Latency(const std::string& activity_type, absl::Duration d) {
    latency
        .Add({{"task_queue", task_queue}, {"activity_type", activity_type}},
             ActivityLatencyBuckets())
        .Observe(absl::ToDoubleSeconds(d));
  }

  std::string task_queue;
  prometheus::Family<prometheus::Histogram>& latency;
  prometheus::Histogram& schedule_to_start;
  prometheus::Gauge& slots_used;
  prometheus::Family<prometheus::Counter>& results;
};

ActivityWorker::ActivityWorker(Connection& connection, std::string task_queue,
                               ActivityWorkerOptions options)
    : connection_(connection), task_queue_(std::move(task_queue)), options_(std::move(options)) {
  if (options_.identity.empty()) options_.identity = DefaultIdentity();
  clock_ = options_.clock != nullptr ? options_.clock : RealClock::Default();
  logger_ = options_.logger != nullptr ? options_.logger : &DefaultLogger();
  prometheus::Registry* registry = options_.registry;
  if (registry == nullptr) {
    owned_registry_ = std::make_unique<prometheus::Registry>();
    registry = owned_registry_.get();
  }
  metrics_ = std::make_unique<Metrics>(*registry, task_queue_);
  recorder_ =
      std::make_unique<GrpcHeartbeatRecorder>(&connection_.workflow_service(), options_.identity);
}

ActivityWorker::~ActivityWorker() {
  Stop();
  // Activities that outlived the graceful timeout still hold slots and threads: wait for them.
  executor_.reset();
  absl::MutexLock lock(&mu_);
  auto no_alarms = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return alarms_pending_ == 0; };
  mu_.Await(absl::Condition(&no_alarms));
}

absl::Status ActivityWorker::Register(const std::string& activity_type, ActivityFn fn) {
  absl::MutexLock lock(&mu_);
  if (started_) {
    return absl::FailedPreconditionError(
        absl::StrCat("registering activity '", activity_type, "' after Start"));
  }
  if (activity_type.empty() || !fn) {
    return absl::InvalidArgumentError("an activity needs a type name and a function");
  }
  if (!activities_.emplace(activity_type, std::move(fn)).second) {
    return absl::AlreadyExistsError(
        absl::StrCat("activity '", activity_type, "' is already registered"));
  }
  return absl::OkStatus();
}

absl::Status ActivityWorker::Start() {
  RETURN_IF_ERROR(StartLocked());
  if (stream_ != nullptr) {
    // Outside the lock: the stream's reader calls back into this worker.
    stream_->Start();
    TopUpCredits();
  }
  return absl::OkStatus();
}

absl::Status ActivityWorker::StartLocked() {
  absl::MutexLock lock(&mu_);
  if (started_) return absl::FailedPreconditionError("activity worker already started");
  if (activities_.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("no activities registered for task queue '", task_queue_, "'"));
  }
  if (options_.max_concurrent < 1 || options_.pollers < 1) {
    return absl::InvalidArgumentError("max_concurrent and pollers must be at least 1");
  }
  started_ = true;
  free_slots_ = options_.max_concurrent;
  idle_since_ = clock_->Now();
  // Slots bound what is queued plus running, so the queue never refuses a task.
  executor_ =
      std::make_unique<Executor>(absl::StrCat("activities:", task_queue_), options_.max_concurrent,
                                 static_cast<size_t>(options_.max_concurrent));
  const bool stream = options_.delivery == TaskDelivery::kAuto && !options_.exclusive;
  if (stream) {
    api::WorkerStreamOpen open;
    open.set_kind(api::WORKER_STREAM_KIND_ACTIVITY);
    open.set_namespace_(options_.ns);
    open.mutable_task_queue()->set_name(task_queue_);
    open.set_identity(options_.identity);
    open.set_exclusive(options_.exclusive);
    stream_ = std::make_unique<internal::WorkerStream>(
        connection_, std::move(open),
        internal::WorkerStream::Handlers{
            .workflow_task = nullptr,
            .activity_task =
                [this](api::PollActivityTaskQueueResponse task) { OnStreamTask(std::move(task)); },
            .stopped = [this](const absl::Status& status) { OnStreamStopped(status); }});
    stream_active_ = true;
  } else {
    for (int i = 0; i < options_.pollers; ++i) pollers_.emplace_back([this] { PollLoop(); });
  }
  std::vector<std::string> names;
  for (const auto& [name, fn] : activities_) names.push_back(name);
  logger_->Log(LogLevel::kInfo, "activity_worker.started",
               {{"task_queue", task_queue_},
                {"identity", options_.identity},
                {"activities", absl::StrJoin(names, ",")},
                {"max_concurrent", options_.max_concurrent},
                {"delivery", stream ? "stream" : "polls"}});
  return absl::OkStatus();
}

bool ActivityWorker::StreamActive() { return stream_active_.load(std::memory_order_acquire); }

void ActivityWorker::TopUpCredits() {
  if (!StreamActive()) return;
  int grant = 0;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ || !fatal_error_.ok()) return;
    // Every slot, unless a workflow worker of this process takes activities eagerly: then
    // what the pollers would hold, and the rest stay free for it (an activity started eagerly
    // keeps its run's result local; one pushed does not).
    int target = options_.stream_credits > 0 ? options_.stream_credits
                 : has_runner_.load()        ? options_.pollers
                                             : options_.max_concurrent;
    target = std::min(target, options_.max_concurrent);
    // A workflow worker that came after the slots were lent takes some back (negative).
    grant = internal::CreditsToLend(target, stream_slots_, free_slots_);
    if (grant == 0) return;
    free_slots_ -= grant;
    stream_slots_ += grant;
  }
  stream_->Grant(grant);
}

void ActivityWorker::OnStreamTask(api::PollActivityTaskQueueResponse task) {
  {
    absl::MutexLock lock(&mu_);
    // The slot lent as the task's credit now belongs to the task.
    if (stream_slots_ > 0) {
      --stream_slots_;
    } else {
      --free_slots_;  // Never expected: the engine keeps to the credits.
    }
    ++running_;
    idle_since_ = absl::InfiniteFuture();
    empty_poll_since_idle_ = false;
    ++version_;
  }
  Dispatch(std::move(task));
  TopUpCredits();
}

void ActivityWorker::OnStreamStopped(const absl::Status& status) {
  stream_active_ = false;
  absl::MutexLock lock(&mu_);
  // The slots lent to the stream are free again.
  free_slots_ += stream_slots_;
  stream_slots_ = 0;
  ++version_;
  if (stopping_) return;
  if (absl::IsUnimplemented(status) || absl::IsResourceExhausted(status)) {
    logger_->Log(LogLevel::kInfo, "activity_worker.stream_unavailable_polling",
                 {{"task_queue", task_queue_}, {"status", status}});
    for (int i = 0; i < options_.pollers; ++i) pollers_.emplace_back([this] { PollLoop(); });
    return;
  }
  logger_->Log(LogLevel::kError, "activity_worker.stream_refused",
               {{"task_queue", task_queue_}, {"error", status}});
  if (fatal_error_.ok()) fatal_error_ = status;
}

void ActivityWorker::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (!started_ || stopping_) {
      // Another Stop is under way or done: wait for it, so every caller returns after it.
      auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopped_ || !started_; };
      mu_.Await(absl::Condition(&done));
      return;
    }
    stopping_ = true;
    ++version_;
    for (grpc::ClientContext* poll : polls_) poll->TryCancel();
  }
  // First: its reader may start the pollers (fallback) until it has stopped. Completions after
  // this answer with the unary calls.
  if (stream_ != nullptr) {
    stream_active_ = false;
    stream_->Stop();
  }
  for (auto& t : pollers_) t.join();
  pollers_.clear();

  auto none_running = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return running_ == 0; };
  if (options_.shutdown_cancel_delay > absl::ZeroDuration()) {
    WaitUntil(clock_->Now() + options_.shutdown_cancel_delay, none_running);
  }
  int cancelled = 0;
  {
    absl::MutexLock lock(&mu_);
    cancelling_ = true;
    for (ActivityContext* context : contexts_) {
      context->Cancel(CancelReason::kWorkerShutdown);
      ++cancelled;
    }
  }
  bool drained = WaitUntil(clock_->Now() + options_.graceful_shutdown_timeout, none_running);
  int still_running;
  {
    absl::MutexLock lock(&mu_);
    still_running = running_;
    stopped_ = true;
  }
  if (!drained) {
    logger_->Log(LogLevel::kWarn, "activity_worker.stop_timed_out",
                 {{"task_queue", task_queue_},
                  {"running", still_running},
                  {"waited", options_.graceful_shutdown_timeout}});
  }
  logger_->Log(LogLevel::kInfo, "activity_worker.stopped",
               {{"task_queue", task_queue_}, {"cancelled", cancelled}});
}

absl::Duration ActivityWorker::IdleFor() {
  absl::MutexLock lock(&mu_);
  return IdleForLocked();
}

absl::Duration ActivityWorker::IdleForLocked() {
  if (running_ > 0 || !empty_poll_since_idle_ || idle_since_ == absl::InfiniteFuture()) {
    return absl::ZeroDuration();
  }
  return std::max(absl::ZeroDuration(), clock_->Now() - idle_since_);
}

bool ActivityWorker::WaitForIdle(absl::Duration idle, absl::Duration timeout) {
  const absl::Time end =
      timeout == absl::InfiniteDuration() ? absl::InfiniteFuture() : clock_->Now() + timeout;
  for (;;) {
    absl::Time target;
    int64_t seen;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_ || !fatal_error_.ok()) return false;
      if (IdleForLocked() >= idle) return true;
      // Confirmed idle: it is only a matter of time. Otherwise wait for the state to change.
      target =
          running_ == 0 && empty_poll_since_idle_ ? idle_since_ + idle : absl::InfiniteFuture();
      seen = version_;
    }
    if (clock_->Now() >= end) return false;
    WaitUntil(std::min(target, end), [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_ || version_ != seen;
    });
  }
}

absl::Status ActivityWorker::fatal_error() {
  absl::MutexLock lock(&mu_);
  return fatal_error_;
}

int ActivityWorker::running() {
  absl::MutexLock lock(&mu_);
  return running_;
}

bool ActivityWorker::WaitUntil(absl::Time deadline, const std::function<bool()>& done) {
  AlarmId alarm = 0;
  if (deadline != absl::InfiniteFuture()) {
    {
      absl::MutexLock lock(&mu_);
      ++alarms_pending_;
    }
    alarm = clock_->ScheduleAlarm(deadline, [this] {
      absl::MutexLock lock(&mu_);
      ++ticks_;
      --alarms_pending_;
    });
  }
  bool result;
  {
    absl::MutexLock lock(&mu_);
    for (;;) {
      result = done();
      if (result || clock_->Now() >= deadline) break;
      int64_t seen = ticks_;
      auto changed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return ticks_ != seen || done(); };
      mu_.Await(absl::Condition(&changed));
    }
  }
  if (alarm != 0 && clock_->CancelAlarm(alarm)) {
    absl::MutexLock lock(&mu_);
    --alarms_pending_;
  }
  return result;
}

bool ActivityWorker::TakeSlot() {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || !fatal_error_.ok() || free_slots_ > 0;
  };
  mu_.Await(absl::Condition(&ready));
  if (stopping_ || !fatal_error_.ok()) return false;
  --free_slots_;
  return true;
}

void ActivityWorker::PollLoop() {
  absl::Duration backoff = kPollBackoffInitial;
  while (TakeSlot()) {
    api::PollActivityTaskQueueRequest request;
    request.set_namespace_(options_.ns);
    request.mutable_task_queue()->set_name(task_queue_);
    request.set_identity(options_.identity);
    request.set_exclusive(options_.exclusive);
    api::PollActivityTaskQueueResponse task;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         absl::ToChronoMilliseconds(std::min(options_.poll_timeout, kMaxPoll)));
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) {
        ++free_slots_;
        return;
      }
      // Registered under the lock Stop cancels under, so no poll escapes the cancel.
      polls_.insert(&context);
    }
    grpc::Status status =
        connection_.workflow_service().PollActivityTaskQueue(&context, request, &task);
    bool got_task = status.ok() && !task.task_token().empty();
    bool stopping;
    {
      absl::MutexLock lock(&mu_);
      polls_.erase(&context);
      // A poll cut short because polling failed for good ends this loop quietly.
      stopping = stopping_ || !fatal_error_.ok();
      if (got_task) {
        // The slot taken for the poll now belongs to the task.
        ++running_;
        idle_since_ = absl::InfiniteFuture();
        empty_poll_since_idle_ = false;
      } else {
        ++free_slots_;
        if (status.ok() && running_ == 0) empty_poll_since_idle_ = true;
      }
      ++version_;
    }
    if (got_task) {
      backoff = kPollBackoffInitial;
      Dispatch(std::move(task));
      continue;
    }
    if (status.ok()) {
      backoff = kPollBackoffInitial;
      continue;  // An empty long poll: ask again.
    }
    if (stopping) return;
    if (internal::RefusesWorker(status, options_.exclusive)) {
      absl::Status fatal = FromGrpc(status);
      logger_->Log(LogLevel::kError, "activity_worker.poll_refused",
                   {{"task_queue", task_queue_}, {"error", fatal}});
      absl::MutexLock lock(&mu_);
      if (fatal_error_.ok()) fatal_error_ = fatal;
      // The other pollers stop too: asking again would be refused again.
      for (grpc::ClientContext* poll : polls_) poll->TryCancel();
      ++version_;
      return;
    }
    logger_->Log(status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                         status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED
                     ? LogLevel::kDebug
                     : LogLevel::kWarn,
                 "activity_worker.poll_failed",
                 {{"task_queue", task_queue_}, {"error", FromGrpc(status)}});
    absl::Time until = clock_->Now() + backoff;
    WaitUntil(until, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; });
    backoff = std::min(backoff * 2, kPollBackoffMax);
  }
}

void ActivityWorker::Dispatch(api::PollActivityTaskQueueResponse task, std::function<void()> done) {
  metrics_->slots_used.Increment();
  ++tasks_started_;
  auto shared_done = std::make_shared<std::function<void()>>(std::move(done));
  // Cannot be refused: at most max_concurrent tasks hold slots, and the pool has as many
  // threads plus as many queue places.
  bool queued = executor_->TrySubmit(
      [this, task = std::make_shared<api::PollActivityTaskQueueResponse>(std::move(task)),
       shared_done] {
        hoptrace::Mark("w.act");
        Run(std::move(*task));
        if (*shared_done) (*shared_done)();
      });
  if (!queued) {
    logger_->Log(LogLevel::kError, "activity_worker.pool_refused_task",
                 {{"task_queue", task_queue_}});
    Finish();
    if (*shared_done) (*shared_done)();
  }
}

void ActivityWorker::SetWorkflowTaskRunner(EagerWorkflowTaskRunner* runner) {
  {
    absl::MutexLock lock(&runner_mu_);
    workflow_task_runner_ = runner;
    has_runner_ = runner != nullptr;
  }
  TopUpCredits();  // The stream holds fewer slots beside an eager workflow worker.
}

bool ActivityWorker::TryReserveSlot() {
  absl::MutexLock lock(&mu_);
  if (!started_ || stopping_ || free_slots_ == 0) return false;
  --free_slots_;
  return true;
}

void ActivityWorker::ReleaseSlot() {
  {
    absl::MutexLock lock(&mu_);
    ++free_slots_;
  }
  TopUpCredits();
}

void ActivityWorker::RunEager(api::PollActivityTaskQueueResponse task, std::function<void()> done) {
  {
    absl::MutexLock lock(&mu_);
    // The reserved slot now belongs to the task.
    ++running_;
    idle_since_ = absl::InfiniteFuture();
    empty_poll_since_idle_ = false;
    ++version_;
  }
  Dispatch(std::move(task), std::move(done));
}

void ActivityWorker::Finish(bool free_slot) {
  metrics_->slots_used.Decrement();
  {
    absl::MutexLock lock(&mu_);
    if (free_slot) ++free_slots_;
    --running_;
    if (running_ == 0) {
      idle_since_ = clock_->Now();
      empty_poll_since_idle_ = false;
    }
    ++version_;
  }
  TopUpCredits();
}

void ActivityWorker::Run(api::PollActivityTaskQueueResponse task) {
  ActivityInfo info = ActivityInfoFromTask(task, task_queue_);
  if (info.started_time != absl::InfinitePast() &&
      info.current_attempt_scheduled_time != absl::InfinitePast()) {
    metrics_->schedule_to_start.Observe(
        absl::ToDoubleSeconds(info.started_time - info.current_attempt_scheduled_time));
  }
  auto it = activities_.find(info.activity_type);
  if (it == activities_.end()) {
    std::vector<std::string> names;
    for (const auto& [name, fn] : activities_) names.push_back(name);
    absl::Status error = ApplicationError(
        "ActivityNotRegistered",
        absl::StrCat("activity type '", info.activity_type, "' is not registered on worker ",
                     options_.identity, " of task queue '", task_queue_,
                     "' (registered: ", absl::StrJoin(names, ", "), ")"),
        /*non_retryable=*/true);
    (void)Respond(info, error, nullptr);
    Finish();
    return;
  }

  absl::Duration heartbeat_interval = options_.max_heartbeat_interval;
  if (heartbeat_interval > absl::ZeroDuration() && info.heartbeat_timeout > absl::ZeroDuration()) {
    heartbeat_interval = std::min(heartbeat_interval, info.heartbeat_timeout * 0.8);
  }
  ActivityContext context(info, task.heartbeat_details(), recorder_.get(),
                          {.clock = clock_,
                           .logger = logger_,
                           .converter = options_.converter,
                           .heartbeat_interval = heartbeat_interval});
  {
    absl::MutexLock lock(&mu_);
    contexts_.insert(&context);
    if (cancelling_) context.Cancel(CancelReason::kWorkerShutdown);
  }
  absl::Time began = clock_->Now();
  absl::StatusOr<api::Payloads> result;
  // Activity code is not ours: an exception must not take the worker down with it.
  try {
    result = it->second(context, task.input());
  } catch (const std::exception& e) {
    result = ApplicationError("Exception", absl::StrCat("activity threw: ", e.what()));
  } catch (...) {
    result = ApplicationError("Exception", "activity threw a non-standard exception");
  }
  metrics_->Latency(info.activity_type, clock_->Now() - began);
  {
    absl::MutexLock lock(&mu_);
    contexts_.erase(&context);
  }
  context.Close();
  if (result.ok() && AnswerCompletedAsync(info, *result)) return;
  Answer answer = Respond(info, result, &context, /*may_hand_over_slot=*/true);
  // The activity is over: its slot is free before the workflow's next task runs on this
  // thread, so an activity that task schedules can take it (eagerly) at once. A task run with
  // the completion (speculative) may have handed it to such an activity already.
  Finish(/*free_slot=*/!answer.slot_handed_over);
  if (answer.next_task.has_value()) RunNextWorkflowTask(std::move(*answer.next_task));
}

bool ActivityWorker::AnswerOnStream(const std::function<void(api::WorkerStreamCompletion&)>& fill,
                                    const std::function<void(api::WorkerStreamAnswer&)>& take,
                                    absl::Status* status) {
  if (!StreamActive()) return false;
  api::WorkerStreamCompletion completion;
  fill(completion);
  absl::StatusOr<api::WorkerStreamAnswer> answer = stream_->CompleteAndWait(std::move(completion));
  // Not sent, or the stream broke before the answer: the unary call answers instead (a
  // completion the engine recorded already is refused as stale, as a retried call is).
  if (absl::IsUnavailable(answer.status())) return false;
  *status = answer.status();
  if (answer.ok() && take) take(*answer);
  return true;
}

ActivityWorker::Answer ActivityWorker::Respond(const ActivityInfo& info,
                                               const absl::StatusOr<api::Payloads>& result,
                                               ActivityContext* context, bool may_hand_over_slot) {
  Answer answer;
  auto& stub = connection_.workflow_service();
  std::string outcome;
  absl::Status status;
  CancelReason reason = context != nullptr ? context->cancel_reason() : CancelReason::kNone;
  api::Failure failure;
  bool fail = false;

  if (result.ok()) {
    outcome = "completed";
    api::RespondActivityTaskCompletedRequest request;
    request.set_task_token(info.task_token);
    *request.mutable_result() = *result;
    request.set_identity(options_.identity);
    absl::ReaderMutexLock runner_lock(&runner_mu_);
    EagerWorkflowTaskRunner* runner = workflow_task_runner_;
    std::unique_ptr<SpeculativeTask> speculative;
    if (runner != nullptr && runner->AcceptsEagerTask(task_queue_)) {
      request.set_return_new_workflow_task(true);
      request.set_workflow_task_identity(runner->eager_identity());
      // The workflow's next task, run now on the runner's cached state, goes with the
      // completion; should the engine refuse it, the task comes back (whole: the runner drops
      // the run) as without it.
      speculative = runner->Speculate(info.run_id, info.activity_id, *result,
                                      /*slot=*/may_hand_over_slot);
      if (speculative != nullptr) {
        request.mutable_speculative_workflow_task()->Swap(&speculative->request);
        if (may_hand_over_slot) answer.slot_handed_over = speculative->took_slot;
      } else {
        request.set_workflow_task_partial_history(runner->HoldsRun(info.run_id));
      }
    }
    api::RespondActivityTaskCompletedResponse response;
    if (!AnswerOnStream(
            [&](api::WorkerStreamCompletion& c) { *c.mutable_activity_task_completed() = request; },
            [&](api::WorkerStreamAnswer& a) { response.Swap(a.mutable_activity_task_completed()); },
            &status)) {
      status = RespondCompletedUnary(request, &response);
    }
    if (speculative != nullptr)
      runner->FinishSpeculative(std::move(speculative), status, &response);
    if (status.ok() && response.has_workflow_task()) {
      answer.next_task = std::move(*response.mutable_workflow_task());
    }
    if (absl::IsInvalidArgument(status)) {
      failure = ResultRejected(status);
      fail = true;
    }
  } else if (IsCanceledError(result.status()) && reason == CancelReason::kRequested) {
    outcome = "canceled";
    api::RespondActivityTaskCanceledRequest request;
    request.set_task_token(info.task_token);
    *request.mutable_details() = context->last_heartbeat_details();
    request.set_identity(options_.identity);
    api::RespondActivityTaskCanceledResponse response;
    if (!AnswerOnStream(
            [&](api::WorkerStreamCompletion& c) { *c.mutable_activity_task_canceled() = request; },
            nullptr, &status)) {
      status = CallWithRetry(options_.rpc, *clock_, "RespondActivityTaskCanceled",
                             [&](grpc::ClientContext* c) {
                               return stub.RespondActivityTaskCanceled(c, request, &response);
                             });
    }
  } else {
    failure = FailureFromStatus(result.status());
    if (IsCanceledError(result.status()) && reason != CancelReason::kNone) {
      // Cancelled by this worker (shutdown) or by the clock: a retryable failure, so the
      // engine retries the attempt (elsewhere) rather than closing the activity as canceled.
      failure.mutable_application_failure_info()->set_type(CancelFailureType(reason));
      failure.mutable_application_failure_info()->set_non_retryable(false);
    }
    fail = true;
  }

  if (fail) {
    outcome = context == nullptr ? "not_registered" : "failed";
    // Details of a heartbeat the throttle held back still reach the next attempt.
    std::optional<api::Payloads> details;
    if (context != nullptr) details = context->last_heartbeat_details();
    status = RespondFailed(info, failure, details.has_value() ? &*details : nullptr);
  }
  metrics_->Result(outcome);
  LogAnswer(info, outcome, status);
  return answer;
}

absl::Status ActivityWorker::RespondFailed(const ActivityInfo& info, const api::Failure& failure,
                                           const api::Payloads* last_heartbeat_details) {
  api::RespondActivityTaskFailedRequest request;
  request.set_task_token(info.task_token);
  *request.mutable_failure() = failure;
  request.set_identity(options_.identity);
  if (last_heartbeat_details != nullptr) {
    *request.mutable_last_heartbeat_details() = *last_heartbeat_details;
  }
  absl::Status status;
  if (!AnswerOnStream(
          [&](api::WorkerStreamCompletion& c) { *c.mutable_activity_task_failed() = request; },
          nullptr, &status)) {
    api::RespondActivityTaskFailedResponse response;
    status = CallWithRetry(
        options_.rpc, *clock_, "RespondActivityTaskFailed", [&](grpc::ClientContext* c) {
          return connection_.workflow_service().RespondActivityTaskFailed(c, request, &response);
        });
  }
  return status;
}

void ActivityWorker::LogAnswer(const ActivityInfo& info, const std::string& outcome,
                               const absl::Status& status) {
  if (status.ok()) {
    logger_->Log(LogLevel::kDebug, "activity.answered",
                 {{"activity_id", info.activity_id},
                  {"activity_type", info.activity_type},
                  {"attempt", info.attempt},
                  {"outcome", outcome}});
  } else if (absl::IsNotFound(status) || absl::IsFailedPrecondition(status)) {
    // The engine closed this attempt already (timed out, workflow gone): nothing to do.
    logger_->Log(LogLevel::kInfo, "activity.answer_stale",
                 {{"activity_id", info.activity_id},
                  {"activity_type", info.activity_type},
                  {"attempt", info.attempt},
                  {"error", status}});
  } else {
    logger_->Log(LogLevel::kWarn, "activity.answer_failed",
                 {{"activity_id", info.activity_id},
                  {"activity_type", info.activity_type},
                  {"attempt", info.attempt},
                  {"outcome", outcome},
                  {"error", status}});
  }
}

absl::Status ActivityWorker::RespondCompletedUnary(
    const api::RespondActivityTaskCompletedRequest& request,
    api::RespondActivityTaskCompletedResponse* response) {
  return CallWithRetry(
      options_.rpc, *clock_, "RespondActivityTaskCompleted", [&](grpc::ClientContext* c) {
        return connection_.workflow_service().RespondActivityTaskCompleted(c, request, response);
      });
}

bool ActivityWorker::AnswerCompletedAsync(const ActivityInfo& info, api::Payloads& result) {
  // A runner of this process takes the next task with the answer (Respond): the thread waits.
  if (!StreamActive() || has_runner_.load(std::memory_order_acquire)) return false;
  // Kept for the unary call, should the stream break before the answer.
  auto request = std::make_shared<api::RespondActivityTaskCompletedRequest>();
  request->set_task_token(info.task_token);
  request->mutable_result()->Swap(&result);
  request->set_identity(options_.identity);
  api::WorkerStreamCompletion completion;
  *completion.mutable_activity_task_completed() = *request;
  auto task = std::make_shared<ActivityInfo>(info);
  stream_->Complete(
      std::move(completion), [this, task, request](absl::StatusOr<api::WorkerStreamAnswer> answer) {
        if (absl::IsUnavailable(answer.status())) {
          // Not sent, or the stream broke before the answer: the unary call (a completion the
          // engine recorded already is refused as stale, as a retried call is).
          RunOnPool([this, task, request] {
            api::RespondActivityTaskCompletedResponse response;
            absl::Status status = RespondCompletedUnary(*request, &response);
            FinishCompleted(*task, status);
          });
          return;
        }
        absl::Status status = answer.status();
        if (answer.ok() && answer->code() != 0) {
          status = absl::Status(static_cast<absl::StatusCode>(answer->code()), answer->message());
        }
        if (absl::IsInvalidArgument(status)) {
          RunOnPool([this, task, status] { FinishCompleted(*task, status); });
          return;
        }
        FinishCompleted(*task, status);
      });
  return true;
}

void ActivityWorker::FinishCompleted(const ActivityInfo& info, absl::Status status) {
  std::string outcome = "completed";
  if (absl::IsInvalidArgument(status)) {
    outcome = "failed";
    status = RespondFailed(info, ResultRejected(status), nullptr);
  }
  metrics_->Result(outcome);
  LogAnswer(info, outcome, status);
  Finish();
}

void ActivityWorker::RunOnPool(std::function<void()> work) {
  if (!executor_->TrySubmit(work)) work();
}

void ActivityWorker::RunNextWorkflowTask(api::PollWorkflowTaskQueueResponse task) {
  absl::ReaderMutexLock runner_lock(&runner_mu_);
  // Unset meanwhile (its worker is stopping): the task is retried after its timeout, like a
  // task lost with its worker.
  if (workflow_task_runner_ != nullptr) workflow_task_runner_->RunEagerTask(std::move(task));
}

}  // namespace kiln::sdk
