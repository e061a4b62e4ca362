#include "sdk/workflow_instance.h"

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "common/proto_time.h"

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

bool IsCommandEvent(api::EventType type) {
  switch (type) {
    case api::EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
    case api::EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED:
    case api::EVENT_TYPE_TIMER_STARTED:
    case api::EVENT_TYPE_TIMER_CANCELED:
    case api::EVENT_TYPE_MARKER_RECORDED:
    case api::EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
    case api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
    case api::EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
    case api::EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
    case api::EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
      return true;
    default:
      return false;
  }
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
    const std::string& activity_type, const api::Payloads& input, const ActivityOptions& options) {
  return instance_->ScheduleActivity(activity_type, input, options);
}
Future<absl::Status> WorkflowContext::Sleep(absl::Duration duration) {
  return instance_->StartTimer(duration);
}
api::Payloads WorkflowContext::SideEffect(const std::function<api::Payloads()>& fn) {
  return instance_->SideEffect(fn);
}
void WorkflowContext::Log(LogLevel level, std::string_view event,
                          std::initializer_list<LogField> fields) {
  if (instance_->replaying()) return;
  DefaultLogger().Log(level, event, fields);
}

WorkflowInstance::WorkflowInstance(WorkflowFn fn, WorkflowInfo info)
    : fn_(std::move(fn)),
      info_(std::move(info)),
      context_(this),
      rng_(absl::HashOf(info_.run_id)) {}

WorkflowInstance::~WorkflowInstance() {
  // Destroy the coroutine frames before the futures they wait on; nothing resumes after this.
  scheduler_.Clear();
  root_.reset();
}

Future<absl::StatusOr<api::Payloads>> WorkflowInstance::ScheduleActivity(
    const std::string& type, const api::Payloads& input, const ActivityOptions& options) {
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
  activities_[id] = PendingActivity{future, type};
  produced_.push_back(command);
  unmatched_.push_back(std::move(command));
  return future;
}

Future<absl::Status> WorkflowInstance::StartTimer(absl::Duration duration) {
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
  timers_[id] = future;
  produced_.push_back(command);
  unmatched_.push_back(std::move(command));
  return future;
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
  produced_.push_back(command);
  unmatched_.push_back(std::move(command));
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
  if (!completed_ && root_->done()) {
    completed_ = true;
    absl::StatusOr<api::Payloads>& result = root_->result();
    api::Command command;
    if (result.ok()) {
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
    produced_.push_back(command);
    unmatched_.push_back(std::move(command));
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
  switch (event.event_type()) {
    case api::EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: {
      const auto& e = event.activity_task_scheduled_event_attributes();
      const auto& c = command.schedule_activity_task_command_attributes();
      if (command.command_type() != api::COMMAND_TYPE_SCHEDULE_ACTIVITY_TASK ||
          e.activity_id() != c.activity_id() ||
          e.activity_type().name() != c.activity_type().name()) {
        return mismatch();
      }
      activity_by_event_[event.event_id()] = e.activity_id();
      return absl::OkStatus();
    }
    case api::EVENT_TYPE_TIMER_STARTED:
      if (command.command_type() != api::COMMAND_TYPE_START_TIMER ||
          command.start_timer_command_attributes().timer_id() !=
              event.timer_started_event_attributes().timer_id()) {
        return mismatch();
      }
      return absl::OkStatus();
    case api::EVENT_TYPE_MARKER_RECORDED:
      if (command.command_type() != api::COMMAND_TYPE_RECORD_MARKER ||
          command.record_marker_command_attributes().marker_name() !=
              event.marker_recorded_event_attributes().marker_name()) {
        return mismatch();
      }
      return absl::OkStatus();
    case api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
      if (command.command_type() != api::COMMAND_TYPE_COMPLETE_WORKFLOW_EXECUTION)
        return mismatch();
      return absl::OkStatus();
    case api::EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
      if (command.command_type() != api::COMMAND_TYPE_FAIL_WORKFLOW_EXECUTION) return mismatch();
      return absl::OkStatus();
    default:
      return Nondeterminism(event, "is a command event this SDK does not produce");
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
    case api::EVENT_TYPE_TIMER_FIRED: {
      auto timer = timers_.find(event.timer_fired_event_attributes().timer_id());
      if (timer == timers_.end()) {
        return Nondeterminism(event, "fires a timer the workflow code never started");
      }
      auto future = timer->second;
      timers_.erase(timer);
      future.Resolve(absl::OkStatus());
      return absl::OkStatus();
    }
    default:
      return absl::OkStatus();  // Scheduled/started/completed bookkeeping, terminations, etc.
  }
}

absl::StatusOr<std::vector<api::Command>> WorkflowInstance::ProcessWorkflowTask(
    const api::History& history) {
  produced_.clear();
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
