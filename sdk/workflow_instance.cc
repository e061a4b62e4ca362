#include "sdk/workflow_instance.h"

#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "common/proto_time.h"
#include "common/status.h"
#include "sdk/stack_trace.h"

namespace kiln::sdk {
namespace {

constexpr char kSideEffectMarker[] = "SideEffect";

std::string EventName(api::EventType type) {
  // "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED" -> "ActivityTaskScheduled".
  std::string upper = api::EventType_Name(type).substr(sizeof("EVENT_TYPE_") - 1);
  std::string out;
  bool start = true;
  for (char c : upper) {
    if (c == '_') {
      start = true;
      continue;
    }
    out += start ? c : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    start = false;
  }
  return out;
}

std::string Describe(const api::Command& command) {
  switch (command.command_type()) {
    case api::COMMAND_TYPE_SCHEDULE_ACTIVITY_TASK: {
      const auto& a = command.schedule_activity_task_command_attributes();
      return absl::StrCat("ScheduleActivityTask(activity_id=", a.activity_id(),
                          ", type=", a.activity_type().name(), ")");
    }
    case api::COMMAND_TYPE_START_TIMER:
      return absl::StrCat(
          "StartTimer(timer_id=", command.start_timer_command_attributes().timer_id(), ")");
    case api::COMMAND_TYPE_RECORD_MARKER:
      return absl::StrCat("RecordMarker(", command.record_marker_command_attributes().marker_name(),
                          ")");
    case api::COMMAND_TYPE_COMPLETE_WORKFLOW_EXECUTION:
      return "CompleteWorkflowExecution";
    case api::COMMAND_TYPE_FAIL_WORKFLOW_EXECUTION:
      return "FailWorkflowExecution";
    default:
      return api::CommandType_Name(command.command_type());
  }
}

std::string DescribeEvent(const api::HistoryEvent& event) {
  std::string s = absl::StrCat(event.event_id(), " ", EventName(event.event_type()));
  switch (event.event_type()) {
    case api::EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: {
      const auto& a = event.activity_task_scheduled_event_attributes();
      absl::StrAppend(&s, "(activity_id=", a.activity_id(), ", type=", a.activity_type().name(),
                      ")");
      break;
    }
    case api::EVENT_TYPE_TIMER_STARTED:
      absl::StrAppend(&s, "(timer_id=", event.timer_started_event_attributes().timer_id(), ")");
      break;
    case api::EVENT_TYPE_MARKER_RECORDED:
      absl::StrAppend(&s, "(", event.marker_recorded_event_attributes().marker_name(), ")");
      break;
    default:
      break;
  }
  return s;
}

// The command a command event records (UNSPECIFIED for any other event).
api::CommandType CommandOf(api::EventType type) {
  switch (type) {
    case api::EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
      return api::COMMAND_TYPE_SCHEDULE_ACTIVITY_TASK;
    case api::EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED:
      return api::COMMAND_TYPE_REQUEST_CANCEL_ACTIVITY_TASK;
    case api::EVENT_TYPE_TIMER_STARTED:
      return api::COMMAND_TYPE_START_TIMER;
    case api::EVENT_TYPE_TIMER_CANCELED:
      return api::COMMAND_TYPE_CANCEL_TIMER;
    case api::EVENT_TYPE_MARKER_RECORDED:
      return api::COMMAND_TYPE_RECORD_MARKER;
    case api::EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
      return api::COMMAND_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES;
    case api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
      return api::COMMAND_TYPE_COMPLETE_WORKFLOW_EXECUTION;
    case api::EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
      return api::COMMAND_TYPE_FAIL_WORKFLOW_EXECUTION;
    case api::EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
      return api::COMMAND_TYPE_CANCEL_WORKFLOW_EXECUTION;
    case api::EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
      return api::COMMAND_TYPE_CONTINUE_AS_NEW_WORKFLOW_EXECUTION;
    case api::EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
      return api::COMMAND_TYPE_START_CHILD_WORKFLOW_EXECUTION;
    case api::EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
      return api::COMMAND_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION;
    case api::EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
      return api::COMMAND_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION;
    default:
      return api::COMMAND_TYPE_UNSPECIFIED;
  }
}

bool IsCommandEvent(api::EventType type) {
  return CommandOf(type) != api::COMMAND_TYPE_UNSPECIFIED;
}

absl::Status ActivityError(const api::Failure& failure, const std::string& activity_type) {
  std::string message = absl::StrCat("activity ", activity_type, " failed: ", failure.message());
  if (failure.has_application_failure_info() &&
      !failure.application_failure_info().type().empty()) {
    absl::StrAppend(&message, " [", failure.application_failure_info().type(), "]");
  }
  return absl::UnknownError(message);
}

}  // namespace

absl::Time WorkflowContext::Now() const { return instance_->now(); }
uint64_t WorkflowContext::Random() { return instance_->Random(); }
std::string WorkflowContext::NewUuid() {
  uint64_t hi = instance_->Random();
  return FormatUuid(hi, instance_->Random());
}
const WorkflowInfo& WorkflowContext::info() const { return instance_->info(); }
bool WorkflowContext::is_replaying() const { return instance_->replaying(); }
Future<absl::StatusOr<api::Payloads>> WorkflowContext::ExecuteActivity(
    const std::string& activity_type, const api::Payloads& input, const ActivityOptions& options,
    SourceLocation where) {
  return instance_->ScheduleActivity(activity_type, input, options, where);
}
Future<absl::Status> WorkflowContext::Sleep(absl::Duration duration, SourceLocation where) {
  return instance_->StartTimer(duration, where);
}
Future<absl::Status> WorkflowContext::WaitCondition(std::function<bool()> condition,
                                                    SourceLocation where) {
  return instance_->WaitCondition(std::move(condition), where);
}
api::Payloads WorkflowContext::SideEffect(const std::function<api::Payloads()>& fn) {
  return instance_->SideEffect(fn);
}
SignalChannel& WorkflowContext::GetSignalChannel(const std::string& name) {
  return instance_->Channel(name);
}
void WorkflowContext::SetQueryHandler(const std::string& query_type, QueryHandler handler) {
  instance_->SetQueryHandler(query_type, std::move(handler));
}
Future<absl::Status> WorkflowContext::CancellationRequested(SourceLocation where) {
  return instance_->CancellationRequested(where);
}
bool WorkflowContext::cancel_requested() const { return instance_->cancel_requested(); }
const std::string& WorkflowContext::cancel_cause() const { return instance_->cancel_cause(); }
Future<absl::StatusOr<api::Payloads>> WorkflowContext::ExecuteActivityIn(
    CancellationScope& scope, const std::string& activity_type, const api::Payloads& input,
    const ActivityOptions& options, SourceLocation where) {
  return instance_->ScheduleActivityIn(&scope, activity_type, input, options, where);
}
Future<absl::Status> WorkflowContext::SleepIn(CancellationScope& scope, absl::Duration duration,
                                              SourceLocation where) {
  return instance_->StartTimerIn(&scope, duration, where);
}
void WorkflowContext::Cancel(CancellationScope& scope) { instance_->Cancel(scope); }
ChildWorkflow WorkflowContext::ExecuteChildWorkflow(const std::string& workflow_type,
                                                    const api::Payloads& input,
                                                    const ChildWorkflowOptions& options,
                                                    SourceLocation where) {
  return instance_->StartChild(workflow_type, input, options, where);
}
Future<absl::Status> WorkflowContext::SignalExternalWorkflow(const std::string& workflow_id,
                                                             const std::string& run_id,
                                                             const std::string& signal_name,
                                                             const api::Payloads& input,
                                                             SourceLocation where) {
  return instance_->SignalExternal(workflow_id, run_id, signal_name, input, where);
}
Future<absl::Status> WorkflowContext::RequestCancelExternalWorkflow(const std::string& workflow_id,
                                                                    const std::string& run_id,
                                                                    const std::string& reason,
                                                                    SourceLocation where) {
  return instance_->CancelExternal(workflow_id, run_id, reason, where);
}
void WorkflowContext::UpsertSearchAttributes(const api::SearchAttributes& attributes) {
  instance_->UpsertSearchAttributes(attributes);
}
absl::Status WorkflowContext::ContinueAsNew(api::Payloads input) {
  return instance_->SetContinueAsNew(std::move(input));
}

Future<api::Payloads> SignalChannel::Receive(SourceLocation where) {
  auto state = std::make_shared<Future<api::Payloads>::State>();
  state->scheduler = scheduler_;
  Future<api::Payloads> future(state);
  if (!queued_.empty()) {
    future.Resolve(std::move(queued_.front()));
    queued_.pop_front();
  } else {
    waiting_.push_back(Waiting{future, where});
  }
  return future;
}

std::optional<api::Payloads> SignalChannel::TryReceive() {
  if (queued_.empty()) return std::nullopt;
  api::Payloads input = std::move(queued_.front());
  queued_.pop_front();
  return input;
}

void SignalChannel::Deliver(api::Payloads input) {
  if (!waiting_.empty()) {
    auto future = std::move(waiting_.front().future);
    waiting_.pop_front();
    future.Resolve(std::move(input));
  } else {
    queued_.push_back(std::move(input));
  }
}

void WorkflowContext::Log(LogLevel level, std::string_view event,
                          std::initializer_list<LogField> fields) {
  if (instance_->replaying()) return;
  DefaultLogger().Log(level, event, fields);
}

WorkflowInstance::WorkflowInstance(WorkflowFn fn, WorkflowInfo info)
    : fn_(std::move(fn)), info_(std::move(info)), context_(this) {}

uint64_t WorkflowInstance::Random() {
  if (rng_ == nullptr) {
    // FNV-1a over the run id's bytes: the same in every process, unlike absl::Hash, which
    // is salted per process, so a run replayed by another worker (a restart, a cache miss)
    // draws the same numbers and ids as when it first ran.
    uint64_t seed = 0xcbf29ce484222325;
    for (unsigned char c : info_.run_id) {
      seed ^= c;
      seed *= 0x100000001b3;
    }
    rng_ = std::make_unique<std::mt19937_64>(seed);
  }
  return (*rng_)();
}

WorkflowInstance::~WorkflowInstance() {
  // Destroy the coroutine frames before the futures they wait on; nothing resumes after this.
  scheduler_.Clear();
  root_.reset();
}

Future<absl::StatusOr<api::Payloads>> WorkflowInstance::ScheduleActivity(
    const std::string& type, const api::Payloads& input, const ActivityOptions& options,
    SourceLocation where) {
  return ScheduleActivityIn(nullptr, type, input, options, where);
}

Future<absl::StatusOr<api::Payloads>> WorkflowInstance::ScheduleActivityIn(
    CancellationScope* scope, const std::string& type, const api::Payloads& input,
    const ActivityOptions& options, SourceLocation where) {
  if (scope != nullptr && scope->cancelled_) {
    return Future<absl::StatusOr<api::Payloads>>::Ready(
        &scheduler_, absl::CancelledError(absl::StrCat("activity ", type, " was cancelled")));
  }
  std::string id = options.activity_id.empty() ? std::to_string(next_seq_++) : options.activity_id;
  api::Command command;
  command.set_command_type(api::COMMAND_TYPE_SCHEDULE_ACTIVITY_TASK);
  auto* a = command.mutable_schedule_activity_task_command_attributes();
  a->set_activity_id(id);
  a->mutable_activity_type()->set_name(type);
  a->mutable_task_queue()->set_name(options.task_queue);
  *a->mutable_input() = input;
  if (options.start_to_close_timeout > absl::ZeroDuration()) {
    ToProto(options.start_to_close_timeout, a->mutable_start_to_close_timeout());
  }
  if (options.schedule_to_close_timeout > absl::ZeroDuration()) {
    ToProto(options.schedule_to_close_timeout, a->mutable_schedule_to_close_timeout());
  }
  if (options.schedule_to_start_timeout > absl::ZeroDuration()) {
    ToProto(options.schedule_to_start_timeout, a->mutable_schedule_to_start_timeout());
  }
  if (options.heartbeat_timeout > absl::ZeroDuration()) {
    ToProto(options.heartbeat_timeout, a->mutable_heartbeat_timeout());
  }
  *a->mutable_retry_policy() = options.retry_policy;
  auto state = std::make_shared<Future<absl::StatusOr<api::Payloads>>::State>();
  state->scheduler = &scheduler_;
  Future<absl::StatusOr<api::Payloads>> future(state);
  activities_[id] = PendingActivity{future, type, where};
  if (scope != nullptr) scope->activities_.push_back(id);
  Emit(std::move(command));
  return future;
}

Future<absl::Status> WorkflowInstance::StartTimer(absl::Duration duration, SourceLocation where) {
  return StartTimerIn(nullptr, duration, where);
}

Future<absl::Status> WorkflowInstance::StartTimerIn(CancellationScope* scope,
                                                    absl::Duration duration, SourceLocation where) {
  if (scope != nullptr && scope->cancelled_) {
    return Future<absl::Status>::Ready(&scheduler_, absl::CancelledError("timer was cancelled"));
  }
  if (duration <= absl::ZeroDuration())
    return Future<absl::Status>::Ready(&scheduler_, absl::OkStatus());
  std::string id = std::to_string(next_seq_++);
  api::Command command;
  command.set_command_type(api::COMMAND_TYPE_START_TIMER);
  command.mutable_start_timer_command_attributes()->set_timer_id(id);
  ToProto(duration,
          command.mutable_start_timer_command_attributes()->mutable_start_to_fire_timeout());
  auto state = std::make_shared<Future<absl::Status>::State>();
  state->scheduler = &scheduler_;
  Future<absl::Status> future(state);
  // The engine fires it at its TimerStarted event's time plus the duration; until that event
  // is matched, this task's time stands in for the event's.
  timers_[id] = PendingTimer{future, duration, where, now_ + duration};
  if (scope != nullptr) scope->timers_.push_back(id);
  Emit(std::move(command));
  return future;
}

Future<absl::Status> WorkflowInstance::WaitCondition(std::function<bool()> condition,
                                                     SourceLocation where) {
  if (condition()) return Future<absl::Status>::Ready(&scheduler_, absl::OkStatus());
  auto state = std::make_shared<Future<absl::Status>::State>();
  state->scheduler = &scheduler_;
  Future<absl::Status> future(state);
  conditions_.push_back(PendingCondition{std::move(condition), future, where});
  return future;
}

bool WorkflowInstance::ResolveConditions() {
  // Taken out while the conditions run: one that (against the rules) calls WaitCondition adds to
  // a fresh list rather than to the one being walked.
  std::vector<PendingCondition> checking = std::move(conditions_);
  conditions_.clear();
  std::vector<PendingCondition> still_false;
  bool resolved = false;
  for (PendingCondition& pending : checking) {
    if (pending.condition()) {
      // Only schedules the waiters; nothing runs here.
      pending.future.Resolve(absl::OkStatus());
      resolved = true;
    } else {
      still_false.push_back(std::move(pending));
    }
  }
  for (PendingCondition& added : conditions_) still_false.push_back(std::move(added));
  conditions_ = std::move(still_false);
  return resolved;
}

void WorkflowInstance::Emit(api::Command command) {
  produced_.push_back(command);
  unmatched_.push_back(std::move(command));
}

bool WorkflowInstance::Unsend(const std::function<bool(const api::Command&)>& match) {
  auto in_produced = std::find_if(produced_.begin(), produced_.end(), match);
  if (in_produced == produced_.end()) return false;
  produced_.erase(in_produced);
  auto in_unmatched = std::find_if(unmatched_.begin(), unmatched_.end(), match);
  if (in_unmatched != unmatched_.end()) unmatched_.erase(in_unmatched);
  return true;
}

void WorkflowInstance::Cancel(CancellationScope& scope) {
  if (scope.cancelled_) return;
  scope.cancelled_ = true;
  for (const std::string& id : scope.activities_) {
    auto activity = activities_.find(id);
    if (activity == activities_.end()) continue;  // Already closed.
    bool unsent = Unsend([&](const api::Command& c) {
      return c.command_type() == api::COMMAND_TYPE_SCHEDULE_ACTIVITY_TASK &&
             c.schedule_activity_task_command_attributes().activity_id() == id;
    });
    if (!unsent) {
      for (const auto& [event_id, activity_id] : activity_by_event_) {
        if (activity_id != id) continue;
        api::Command command;
        command.set_command_type(api::COMMAND_TYPE_REQUEST_CANCEL_ACTIVITY_TASK);
        command.mutable_request_cancel_activity_task_command_attributes()->set_scheduled_event_id(
            event_id);
        Emit(std::move(command));
        break;
      }
    }
    auto future = activity->second.future;
    std::string type = activity->second.type;
    activities_.erase(activity);
    future.Resolve(absl::CancelledError(absl::StrCat("activity ", type, " was cancelled")));
  }
  for (const std::string& id : scope.timers_) {
    auto timer = timers_.find(id);
    if (timer == timers_.end()) continue;
    bool unsent = Unsend([&](const api::Command& c) {
      return c.command_type() == api::COMMAND_TYPE_START_TIMER &&
             c.start_timer_command_attributes().timer_id() == id;
    });
    if (!unsent) {
      api::Command command;
      command.set_command_type(api::COMMAND_TYPE_CANCEL_TIMER);
      command.mutable_cancel_timer_command_attributes()->set_timer_id(id);
      Emit(std::move(command));
    }
    auto future = timer->second.future;
    timers_.erase(timer);
    future.Resolve(absl::CancelledError("timer was cancelled"));
  }
}

SignalChannel& WorkflowInstance::Channel(const std::string& name) {
  auto& channel = channels_[name];
  if (!channel) channel = std::make_unique<SignalChannel>(&scheduler_);
  return *channel;
}

absl::StatusOr<api::Payloads> WorkflowInstance::Query(const std::string& type,
                                                      const api::Payloads& args) {
  auto handler = query_handlers_.find(type);
  if (handler == query_handlers_.end()) {
    if (type == kStackTraceQuery) return EncodeStackTrace(StackTrace());
    std::string known;
    for (const auto& [name, fn] : query_handlers_)
      absl::StrAppend(&known, known.empty() ? "" : ", ", name);
    return absl::NotFoundError(absl::StrCat(
        "workflow ", info_.workflow_type, " has no query handler '", type, "' (it has: ", known,
        known.empty() ? "" : ", ", "the built-in ", kStackTraceQuery, ")"));
  }
  return handler->second(args);
}

Future<absl::Status> WorkflowInstance::CancellationRequested(SourceLocation where) {
  cancellation_where_ = where;
  if (!cancellation_.has_value()) {
    auto state = std::make_shared<Future<absl::Status>::State>();
    state->scheduler = &scheduler_;
    cancellation_.emplace(state);
    if (cancel_requested_) cancellation_->Resolve(absl::OkStatus());
  }
  return *cancellation_;
}

ChildWorkflow WorkflowInstance::StartChild(const std::string& type, const api::Payloads& input,
                                           const ChildWorkflowOptions& options,
                                           SourceLocation where) {
  ChildWorkflow child;
  auto started = std::make_shared<Future<absl::StatusOr<api::WorkflowExecution>>::State>();
  started->scheduler = &scheduler_;
  child.started = Future<absl::StatusOr<api::WorkflowExecution>>(started);
  auto result = std::make_shared<Future<absl::StatusOr<api::Payloads>>::State>();
  result->scheduler = &scheduler_;
  child.result = Future<absl::StatusOr<api::Payloads>>(result);
  std::string workflow_id = options.workflow_id.empty()
                                ? absl::StrCat(info_.workflow_id, "/child-", next_seq_++)
                                : options.workflow_id;
  if (children_.count(workflow_id) != 0) {
    absl::Status dup = absl::AlreadyExistsError(
        absl::StrCat("child workflow ", workflow_id, " was already started by this workflow"));
    child.started.Resolve(dup);
    child.result.Resolve(dup);
    return child;
  }
  api::Command command;
  command.set_command_type(api::COMMAND_TYPE_START_CHILD_WORKFLOW_EXECUTION);
  auto* a = command.mutable_start_child_workflow_execution_command_attributes();
  a->set_workflow_id(workflow_id);
  a->mutable_workflow_type()->set_name(type);
  a->mutable_task_queue()->set_name(options.task_queue);
  *a->mutable_input() = input;
  a->set_parent_close_policy(options.parent_close_policy);
  if (options.run_timeout > absl::ZeroDuration()) {
    ToProto(options.run_timeout, a->mutable_workflow_run_timeout());
  }
  if (options.task_timeout > absl::ZeroDuration()) {
    ToProto(options.task_timeout, a->mutable_workflow_task_timeout());
  }
  children_[workflow_id] = PendingChild{child, workflow_id, type, where};
  Emit(std::move(command));
  return child;
}

Future<absl::Status> WorkflowInstance::SignalExternal(const std::string& workflow_id,
                                                      const std::string& run_id,
                                                      const std::string& signal_name,
                                                      const api::Payloads& input,
                                                      SourceLocation where) {
  std::string seq = std::to_string(next_seq_++);
  api::Command command;
  command.set_command_type(api::COMMAND_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION);
  auto* a = command.mutable_signal_external_workflow_execution_command_attributes();
  a->mutable_execution()->set_workflow_id(workflow_id);
  a->mutable_execution()->set_run_id(run_id);
  a->set_signal_name(signal_name);
  *a->mutable_input() = input;
  a->set_control(seq);
  return EmitExternal(seq, std::move(command), {{}, where, workflow_id, signal_name});
}

Future<absl::Status> WorkflowInstance::CancelExternal(const std::string& workflow_id,
                                                      const std::string& run_id,
                                                      const std::string& reason,
                                                      SourceLocation where) {
  std::string seq = std::to_string(next_seq_++);
  api::Command command;
  command.set_command_type(api::COMMAND_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION);
  auto* a = command.mutable_request_cancel_external_workflow_execution_command_attributes();
  a->set_workflow_id(workflow_id);
  a->set_run_id(run_id);
  a->set_control(seq);
  a->set_reason(reason);
  return EmitExternal(seq, std::move(command), {{}, where, workflow_id, ""});
}

Future<absl::Status> WorkflowInstance::EmitExternal(const std::string& seq, api::Command command,
                                                    PendingExternal pending) {
  auto state = std::make_shared<Future<absl::Status>::State>();
  state->scheduler = &scheduler_;
  Future<absl::Status> future(state);
  pending.future = future;
  externals_[seq] = std::move(pending);
  Emit(std::move(command));
  return future;
}

void WorkflowInstance::UpsertSearchAttributes(const api::SearchAttributes& attributes) {
  api::Command command;
  command.set_command_type(api::COMMAND_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES);
  *command.mutable_upsert_workflow_search_attributes_command_attributes()
       ->mutable_search_attributes() = attributes;
  Emit(std::move(command));
}

absl::Status WorkflowInstance::SetContinueAsNew(api::Payloads input) {
  continue_as_new_ = std::move(input);
  return absl::AbortedError("continue-as-new");
}

api::Payloads WorkflowInstance::SideEffect(const std::function<api::Payloads()>& fn) {
  std::string id = std::to_string(next_seq_++);
  api::Payloads value;
  if (auto it = recorded_markers_.find(id); replaying_ && it != recorded_markers_.end()) {
    value = it->second;
  } else {
    value = fn();
  }
  api::Command command;
  command.set_command_type(api::COMMAND_TYPE_RECORD_MARKER);
  auto* marker = command.mutable_record_marker_command_attributes();
  marker->set_marker_name(kSideEffectMarker);
  (*marker->mutable_details())["data"] = value;
  (*marker->mutable_details())["id"].add_payloads()->set_data(id);
  Emit(std::move(command));
  return value;
}

void WorkflowInstance::PrescanMarkers(const api::History& history, int from) {
  recorded_markers_.clear();
  for (int i = from; i < history.events_size(); ++i) {
    const auto& event = history.events(i);
    if (event.event_type() == api::EVENT_TYPE_WORKFLOW_TASK_STARTED) break;
    if (event.event_type() != api::EVENT_TYPE_MARKER_RECORDED) continue;
    const auto& marker = event.marker_recorded_event_attributes();
    auto id = marker.details().find("id");
    auto data = marker.details().find("data");
    if (marker.marker_name() == kSideEffectMarker && id != marker.details().end() &&
        data != marker.details().end() && id->second.payloads_size() > 0) {
      recorded_markers_[id->second.payloads(0).data()] = data->second;
    }
  }
}

void WorkflowInstance::Activate(absl::Time task_time, bool replaying) {
  now_ = task_time;
  replaying_ = replaying;
  produced_.clear();
  if (!root_.has_value()) {
    root_.emplace(fn_(context_, input_));
    scheduler_.Schedule(root_->handle());
  }
  scheduler_.RunUntilIdle();
  while (!conditions_.empty() && ResolveConditions()) scheduler_.RunUntilIdle();
  if (!completed_ && root_->done()) {
    completed_ = true;
    absl::StatusOr<api::Payloads>& result = root_->result();
    api::Command command;
    if (!result.ok() && continue_as_new_.has_value()) {
      command.set_command_type(api::COMMAND_TYPE_CONTINUE_AS_NEW_WORKFLOW_EXECUTION);
      auto* a = command.mutable_continue_as_new_workflow_execution_command_attributes();
      a->mutable_workflow_type()->set_name(info_.workflow_type);
      a->mutable_task_queue()->set_name(info_.task_queue);
      *a->mutable_input() = *continue_as_new_;
    } else if (absl::IsCancelled(result.status()) && cancel_requested_) {
      command.set_command_type(api::COMMAND_TYPE_CANCEL_WORKFLOW_EXECUTION);
    } else if (result.ok()) {
      command.set_command_type(api::COMMAND_TYPE_COMPLETE_WORKFLOW_EXECUTION);
      *command.mutable_complete_workflow_execution_command_attributes()->mutable_result() = *result;
    } else {
      command.set_command_type(api::COMMAND_TYPE_FAIL_WORKFLOW_EXECUTION);
      auto* failure =
          command.mutable_fail_workflow_execution_command_attributes()->mutable_failure();
      failure->set_message(std::string(result.status().message()));
      failure->set_source("kiln-sdk-cpp");
      failure->mutable_application_failure_info()->set_type(
          absl::StatusCodeToString(result.status().code()));
    }
    Emit(std::move(command));
  }
  replaying_ = false;
}

absl::Status WorkflowInstance::Nondeterminism(const api::HistoryEvent& event,
                                              const std::string& why) const {
  return absl::FailedPreconditionError(
      absl::StrCat("non-determinism: history event ", DescribeEvent(event), " ", why));
}

absl::Status WorkflowInstance::MatchCommandEvent(const api::HistoryEvent& event) {
  if (unmatched_.empty()) {
    return Nondeterminism(event, "was recorded, but the workflow code produced no command for it");
  }
  api::Command command = std::move(unmatched_.front());
  unmatched_.pop_front();
  auto mismatch = [&]() {
    return Nondeterminism(event, absl::StrCat("does not match the command the workflow code "
                                              "produced: ",
                                              Describe(command)));
  };
  api::CommandType expected = CommandOf(event.event_type());
  if (expected == api::COMMAND_TYPE_UNSPECIFIED) {
    return Nondeterminism(event, "is a command event this SDK does not produce");
  }
  if (command.command_type() != expected) return mismatch();
  // The kind matches; the identifying attributes must too.
  switch (event.event_type()) {
    case api::EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: {
      const auto& e = event.activity_task_scheduled_event_attributes();
      const auto& c = command.schedule_activity_task_command_attributes();
      if (e.activity_id() != c.activity_id() ||
          e.activity_type().name() != c.activity_type().name()) {
        return mismatch();
      }
      activity_by_event_[event.event_id()] = e.activity_id();
      return absl::OkStatus();
    }
    case api::EVENT_TYPE_TIMER_STARTED: {
      const std::string& id = command.start_timer_command_attributes().timer_id();
      if (id != event.timer_started_event_attributes().timer_id()) return mismatch();
      if (auto timer = timers_.find(id); timer != timers_.end()) {
        timer->second.fire_time = FromProto(event.event_time()) + timer->second.duration;
      }
      return absl::OkStatus();
    }
    case api::EVENT_TYPE_MARKER_RECORDED:
      if (command.record_marker_command_attributes().marker_name() !=
          event.marker_recorded_event_attributes().marker_name()) {
        return mismatch();
      }
      return absl::OkStatus();
    case api::EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED:
      if (command.request_cancel_activity_task_command_attributes().scheduled_event_id() !=
          event.activity_task_cancel_requested_event_attributes().scheduled_event_id()) {
        return mismatch();
      }
      return absl::OkStatus();
    case api::EVENT_TYPE_TIMER_CANCELED:
      if (command.cancel_timer_command_attributes().timer_id() !=
          event.timer_canceled_event_attributes().timer_id()) {
        return mismatch();
      }
      return absl::OkStatus();
    case api::EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED: {
      const auto& e = event.start_child_workflow_execution_initiated_event_attributes();
      const auto& c = command.start_child_workflow_execution_command_attributes();
      if (e.workflow_id() != c.workflow_id() ||
          e.workflow_type().name() != c.workflow_type().name()) {
        return mismatch();
      }
      child_by_initiated_[event.event_id()] = c.workflow_id();
      return absl::OkStatus();
    }
    case api::EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
      if (command.signal_external_workflow_execution_command_attributes().signal_name() !=
          event.signal_external_workflow_execution_initiated_event_attributes().signal_name()) {
        return mismatch();
      }
      external_by_initiated_[event.event_id()] =
          command.signal_external_workflow_execution_command_attributes().control();
      return absl::OkStatus();
    case api::EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
      external_by_initiated_[event.event_id()] =
          command.request_cancel_external_workflow_execution_command_attributes().control();
      return absl::OkStatus();
    default:
      return absl::OkStatus();  // Closing commands and upserts: the kind is all there is.
  }
}

absl::Status WorkflowInstance::HandleEvent(const api::History& history, int index) {
  const api::HistoryEvent& event = history.events(index);
  if (IsCommandEvent(event.event_type())) return MatchCommandEvent(event);
  switch (event.event_type()) {
    case api::EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: {
      const auto& a = event.workflow_execution_started_event_attributes();
      input_ = a.input();
      info_.start_time = FromProto(event.event_time());
      if (info_.workflow_type.empty()) info_.workflow_type = a.workflow_type().name();
      if (info_.task_queue.empty()) info_.task_queue = a.task_queue().name();
      return absl::OkStatus();
    }
    case api::EVENT_TYPE_WORKFLOW_TASK_STARTED: {
      bool last = index == history.events_size() - 1;
      bool completed = !last && history.events(index + 1).event_type() ==
                                    api::EVENT_TYPE_WORKFLOW_TASK_COMPLETED;
      if (!last && !completed) return absl::OkStatus();  // That task failed or timed out.
      if (!unmatched_.empty()) {
        return Nondeterminism(event,
                              absl::StrCat("began a new workflow task, but the code's "
                                           "command ",
                                           Describe(unmatched_.front()), " was never recorded"));
      }
      if (completed) PrescanMarkers(history, index + 2);
      Activate(FromProto(event.event_time()), /*replaying=*/completed);
      last_started_event_id_ = event.event_id();
      return absl::OkStatus();
    }
    case api::EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
    case api::EVENT_TYPE_ACTIVITY_TASK_FAILED:
    case api::EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
    case api::EVENT_TYPE_ACTIVITY_TASK_CANCELED: {
      int64_t scheduled = 0;
      switch (event.event_type()) {
        case api::EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
          scheduled = event.activity_task_completed_event_attributes().scheduled_event_id();
          break;
        case api::EVENT_TYPE_ACTIVITY_TASK_FAILED:
          scheduled = event.activity_task_failed_event_attributes().scheduled_event_id();
          break;
        case api::EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
          scheduled = event.activity_task_timed_out_event_attributes().scheduled_event_id();
          break;
        default:
          scheduled = event.activity_task_canceled_event_attributes().scheduled_event_id();
      }
      auto id = activity_by_event_.find(scheduled);
      if (id == activity_by_event_.end()) {
        return Nondeterminism(event,
                              absl::StrCat("closes an activity (scheduled by event ", scheduled,
                                           ") the workflow code never scheduled"));
      }
      auto activity = activities_.find(id->second);
      if (activity == activities_.end()) return absl::OkStatus();
      auto future = activity->second.future;
      std::string type = activity->second.type;
      activities_.erase(activity);
      activity_by_event_.erase(id);
      switch (event.event_type()) {
        case api::EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
          future.Resolve(event.activity_task_completed_event_attributes().result());
          break;
        case api::EVENT_TYPE_ACTIVITY_TASK_FAILED:
          future.Resolve(
              ActivityError(event.activity_task_failed_event_attributes().failure(), type));
          break;
        case api::EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
          future.Resolve(absl::DeadlineExceededError(
              absl::StrCat("activity ", type, " timed out: ",
                           event.activity_task_timed_out_event_attributes().failure().message())));
          break;
        default:
          future.Resolve(absl::CancelledError(absl::StrCat("activity ", type, " was cancelled")));
      }
      return absl::OkStatus();
    }
    case api::EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: {
      const auto& a = event.workflow_execution_signaled_event_attributes();
      Channel(a.signal_name()).Deliver(a.input());
      return absl::OkStatus();
    }
    case api::EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED:
      cancel_requested_ = true;
      cancel_cause_ = event.workflow_execution_cancel_requested_event_attributes().cause();
      if (cancellation_.has_value()) cancellation_->Resolve(absl::OkStatus());
      return absl::OkStatus();
    case api::EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED:
    case api::EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED:
    case api::EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED:
    case api::EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED:
    case api::EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_CANCELED:
    case api::EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TIMED_OUT:
    case api::EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TERMINATED:
      return HandleChildEvent(event);
    case api::EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_SIGNALED:
    case api::EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED:
    case api::EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_CANCEL_REQUESTED:
    case api::EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_FAILED: {
      int64_t initiated = 0;
      absl::Status outcome;
      switch (event.event_type()) {
        case api::EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_SIGNALED:
          initiated =
              event.external_workflow_execution_signaled_event_attributes().initiated_event_id();
          break;
        case api::EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED:
          initiated = event.signal_external_workflow_execution_failed_event_attributes()
                          .initiated_event_id();
          outcome = absl::NotFoundError(absl::StrCat(
              "signal not delivered: ",
              event.signal_external_workflow_execution_failed_event_attributes().cause()));
          break;
        case api::EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_CANCEL_REQUESTED:
          initiated = event.external_workflow_execution_cancel_requested_event_attributes()
                          .initiated_event_id();
          break;
        default:
          initiated = event.request_cancel_external_workflow_execution_failed_event_attributes()
                          .initiated_event_id();
          outcome = absl::NotFoundError(absl::StrCat(
              "cancel not delivered: ",
              event.request_cancel_external_workflow_execution_failed_event_attributes().cause()));
      }
      auto seq = external_by_initiated_.find(initiated);
      if (seq == external_by_initiated_.end()) return absl::OkStatus();
      auto future = externals_.find(seq->second);
      if (future != externals_.end()) {
        auto f = future->second.future;
        externals_.erase(future);
        f.Resolve(outcome);
      }
      external_by_initiated_.erase(seq);
      return absl::OkStatus();
    }
    case api::EVENT_TYPE_TIMER_FIRED: {
      auto timer = timers_.find(event.timer_fired_event_attributes().timer_id());
      if (timer == timers_.end()) return absl::OkStatus();  // Cancelled meanwhile.
      auto future = timer->second.future;
      timers_.erase(timer);
      future.Resolve(absl::OkStatus());
      return absl::OkStatus();
    }
    default:
      return absl::OkStatus();  // Scheduled/started/completed bookkeeping, terminations, etc.
  }
}

absl::Status WorkflowInstance::HandleChildEvent(const api::HistoryEvent& event) {
  int64_t initiated = 0;
  switch (event.event_type()) {
    case api::EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED:
      initiated =
          event.start_child_workflow_execution_failed_event_attributes().initiated_event_id();
      break;
    case api::EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED:
      initiated = event.child_workflow_execution_started_event_attributes().initiated_event_id();
      break;
    case api::EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED:
      initiated = event.child_workflow_execution_completed_event_attributes().initiated_event_id();
      break;
    case api::EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED:
      initiated = event.child_workflow_execution_failed_event_attributes().initiated_event_id();
      break;
    case api::EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_CANCELED:
      initiated = event.child_workflow_execution_canceled_event_attributes().initiated_event_id();
      break;
    case api::EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TIMED_OUT:
      initiated = event.child_workflow_execution_timed_out_event_attributes().initiated_event_id();
      break;
    default:
      initiated = event.child_workflow_execution_terminated_event_attributes().initiated_event_id();
  }
  auto id = child_by_initiated_.find(initiated);
  if (id == child_by_initiated_.end()) {
    return Nondeterminism(event, "concerns a child workflow the code never started");
  }
  auto child = children_.find(id->second);
  if (child == children_.end()) return absl::OkStatus();
  ChildWorkflow futures = child->second.futures;
  const std::string name = absl::StrCat("child workflow ", child->second.workflow_id);
  bool closed = true;
  switch (event.event_type()) {
    case api::EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED: {
      absl::Status failed = absl::AlreadyExistsError(
          absl::StrCat(name, " could not start: ",
                       event.start_child_workflow_execution_failed_event_attributes().cause()));
      futures.started.Resolve(failed);
      futures.result.Resolve(failed);
      break;
    }
    case api::EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED:
      futures.started.Resolve(
          event.child_workflow_execution_started_event_attributes().workflow_execution());
      closed = false;
      break;
    case api::EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED:
      futures.result.Resolve(event.child_workflow_execution_completed_event_attributes().result());
      break;
    case api::EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED:
      futures.result.Resolve(absl::AbortedError(absl::StrCat(
          name, " failed: ",
          event.child_workflow_execution_failed_event_attributes().failure().message())));
      break;
    case api::EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_CANCELED:
      futures.result.Resolve(absl::CancelledError(absl::StrCat(name, " was canceled")));
      break;
    case api::EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TIMED_OUT:
      futures.result.Resolve(absl::DeadlineExceededError(absl::StrCat(name, " timed out")));
      break;
    default:
      futures.result.Resolve(absl::AbortedError(absl::StrCat(name, " was terminated")));
  }
  if (closed) {
    children_.erase(child);
    child_by_initiated_.erase(id);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<api::Command>> WorkflowInstance::ProcessWorkflowTask(
    const api::History& history) {
  produced_.clear();
  level_ = false;
  bool ran_current = false;
  for (int i = 0; i < history.events_size(); ++i) {
    const api::HistoryEvent& event = history.events(i);
    if (event.event_id() < next_event_id_) continue;
    if (event.event_id() != next_event_id_) {
      return absl::FailedPreconditionError(absl::StrCat(
          "history has a gap: expected event ", next_event_id_, ", got ", event.event_id()));
    }
    absl::Status status = HandleEvent(history, i);
    if (!status.ok()) return status;
    ++next_event_id_;
    if (event.event_type() == api::EVENT_TYPE_WORKFLOW_TASK_STARTED &&
        i == history.events_size() - 1) {
      ran_current = true;
    }
  }
  if (!ran_current) {
    return absl::FailedPreconditionError(
        "the workflow task's history does not end with its "
        "WorkflowTaskStarted event");
  }
  return produced_;
}

absl::Status WorkflowInstance::AbsorbCompletion(const api::History& events) {
  level_ = false;
  if (events.events_size() == 0) return absl::OkStatus();  // not sent: nothing known
  for (int i = 0; i < events.events_size(); ++i) {
    const api::HistoryEvent& event = events.events(i);
    if (event.event_id() < next_event_id_) continue;
    if (event.event_id() != next_event_id_) {
      return absl::FailedPreconditionError(
          absl::StrCat("completion events have a gap: expected event ", next_event_id_, ", got ",
                       event.event_id()));
    }
    if (event.event_type() == api::EVENT_TYPE_WORKFLOW_TASK_SCHEDULED ||
        event.event_type() == api::EVENT_TYPE_WORKFLOW_TASK_STARTED) {
      return absl::OkStatus();
    }
    RETURN_IF_ERROR(HandleEvent(events, i));
    ++next_event_id_;
  }
  level_ = true;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<api::Command>> WorkflowInstance::RunSpeculativeTask(
    const std::string& activity_id, const api::Payloads& result, absl::Time now) {
  if (!level_) return absl::FailedPreconditionError("the instance is not level with the history");
  int64_t scheduled = 0;
  for (const auto& [event_id, id] : activity_by_event_) {
    if (id == activity_id) scheduled = event_id;
  }
  if (scheduled == 0 || !activities_.contains(activity_id)) {
    return absl::NotFoundError(
        absl::StrCat("run ", info_.run_id, " waits on no activity '", activity_id, "'"));
  }
  api::History history;
  const int64_t first = next_event_id_;
  auto add = [&](api::EventType type) {
    api::HistoryEvent* event = history.add_events();
    event->set_event_id(first + history.events_size() - 1);
    event->set_event_type(type);
    ToProto(now, event->mutable_event_time());
    return event;
  };
  add(api::EVENT_TYPE_ACTIVITY_TASK_STARTED)
      ->mutable_activity_task_started_event_attributes()
      ->set_scheduled_event_id(scheduled);
  auto* completed = add(api::EVENT_TYPE_ACTIVITY_TASK_COMPLETED)
                        ->mutable_activity_task_completed_event_attributes();
  completed->set_scheduled_event_id(scheduled);
  completed->set_started_event_id(first);
  *completed->mutable_result() = result;
  add(api::EVENT_TYPE_WORKFLOW_TASK_SCHEDULED);
  add(api::EVENT_TYPE_WORKFLOW_TASK_STARTED)
      ->mutable_workflow_task_started_event_attributes()
      ->set_scheduled_event_id(first + 2);
  return ProcessWorkflowTask(history);
}

absl::Status WorkflowInstance::Replay(const api::History& history) {
  for (int i = 0; i < history.events_size(); ++i) {
    const api::HistoryEvent& event = history.events(i);
    if (event.event_id() != next_event_id_) {
      return absl::FailedPreconditionError(absl::StrCat(
          "history has a gap: expected event ", next_event_id_, ", got ", event.event_id()));
    }
    absl::Status status = HandleEvent(history, i);
    if (!status.ok()) return status;
    ++next_event_id_;
  }
  // A closed history must account for every command the code produced before it closed.
  bool closed = history.events_size() > 0 &&
                IsCommandEvent(history.events(history.events_size() - 1).event_type()) &&
                history.events(history.events_size() - 1).event_type() !=
                    api::EVENT_TYPE_ACTIVITY_TASK_SCHEDULED;
  if (closed && !unmatched_.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("non-determinism: the workflow code produced ", Describe(unmatched_.front()),
                     " after the last recorded command"));
  }
  return absl::OkStatus();
}

}  // namespace kiln::sdk
