#include "tests/testutil/test_worker.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "common/rpc_status.h"

namespace kiln::testutil {
namespace api = ::kiln::api::v1;
namespace {

std::unique_ptr<grpc::ClientContext> Context(absl::Duration timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
  return context;
}

std::string FirstPayload(const api::Payloads& payloads) {
  return payloads.payloads_size() > 0 ? payloads.payloads(0).data() : "";
}

api::Command ScheduleActivity(const std::string& id, const std::string& type,
                              const api::Payloads& input) {
  api::Command command;
  command.set_command_type(api::COMMAND_TYPE_SCHEDULE_ACTIVITY_TASK);
  auto* a = command.mutable_schedule_activity_task_command_attributes();
  a->set_activity_id(id);
  a->mutable_activity_type()->set_name(type);
  *a->mutable_input() = input;
  ToProto(absl::Seconds(10), a->mutable_start_to_close_timeout());
  ToProto(absl::Milliseconds(100), a->mutable_retry_policy()->mutable_initial_interval());
  return command;
}

api::Command Complete(const std::string& result) {
  api::Command command;
  command.set_command_type(api::COMMAND_TYPE_COMPLETE_WORKFLOW_EXECUTION);
  *command.mutable_complete_workflow_execution_command_attributes()->mutable_result() =
      TextPayload(result);
  return command;
}

// The stateless deciders: read the whole history, say what comes next.
std::vector<api::Command> Decide(const std::string& type, const api::History& history) {
  std::string input =
      FirstPayload(history.events(0).workflow_execution_started_event_attributes().input());
  int scheduled = 0, completed = 0, timers = 0, fired = 0;
  std::string last_result;
  for (const auto& e : history.events()) {
    switch (e.event_type()) {
      case api::EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
        ++scheduled;
        break;
      case api::EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
        ++completed;
        last_result = FirstPayload(e.activity_task_completed_event_attributes().result());
        break;
      case api::EVENT_TYPE_ACTIVITY_TASK_FAILED:
      case api::EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: {
        api::Command fail;
        fail.set_command_type(api::COMMAND_TYPE_FAIL_WORKFLOW_EXECUTION);
        fail.mutable_fail_workflow_execution_command_attributes()->mutable_failure()->set_message(
            "activity failed");
        return {fail};
      }
      case api::EVENT_TYPE_TIMER_STARTED:
        ++timers;
        break;
      case api::EVENT_TYPE_TIMER_FIRED:
        ++fired;
        break;
      default:
        break;
    }
  }
  if (type == "steps") {
    int steps = 1;
    if (!absl::SimpleAtoi(input, &steps)) steps = 1;
    if (completed >= steps) return {Complete(last_result)};
    if (scheduled == completed) {
      return {ScheduleActivity(absl::StrCat("step-", completed), "echo",
                               TextPayload(absl::StrCat("step-", completed)))};
    }
    return {};
  }
  if (type == "timer") {
    if (fired > 0) return {Complete("slept")};
    if (timers == 0) {
      int seconds = 1;
      if (!absl::SimpleAtoi(input, &seconds)) seconds = 1;
      api::Command timer;
      timer.set_command_type(api::COMMAND_TYPE_START_TIMER);
      timer.mutable_start_timer_command_attributes()->set_timer_id("sleep");
      ToProto(absl::Seconds(seconds),
              timer.mutable_start_timer_command_attributes()->mutable_start_to_fire_timeout());
      return {timer};
    }
    return {};
  }
  if (type == "flaky") {
    if (completed > 0) return {Complete(last_result)};
    if (scheduled == 0) return {ScheduleActivity("flaky", "flaky", TextPayload(input))};
    return {};
  }
  api::Command fail;
  fail.set_command_type(api::COMMAND_TYPE_FAIL_WORKFLOW_EXECUTION);
  fail.mutable_fail_workflow_execution_command_attributes()->mutable_failure()->set_message(
      "unknown workflow type " + type);
  return {fail};
}

bool Transient(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
         status.error_code() == grpc::StatusCode::UNAVAILABLE ||
         status.error_code() == grpc::StatusCode::CANCELLED;
}

}  // namespace

api::Payloads TextPayload(const std::string& text) {
  api::Payloads payloads;
  auto* p = payloads.add_payloads();
  (*p->mutable_metadata())["encoding"] = "text/plain";
  p->set_data(text);
  return payloads;
}

TestWorker::TestWorker(std::shared_ptr<grpc::Channel> channel, std::string queue,
                       int workflow_pollers, int activity_pollers)
    : stub_(api::WorkflowService::NewStub(channel)),
      queue_(std::move(queue)),
      workflow_pollers_(workflow_pollers),
      activity_pollers_(activity_pollers) {}

TestWorker::~TestWorker() { Stop(); }

void TestWorker::Start() {
  for (int i = 0; i < workflow_pollers_; ++i) threads_.emplace_back([this] { WorkflowLoop(); });
  for (int i = 0; i < activity_pollers_; ++i) threads_.emplace_back([this] { ActivityLoop(); });
}

void TestWorker::Stop() {
  stop_ = true;
  for (auto& t : threads_) t.join();
  threads_.clear();
}

void TestWorker::WorkflowLoop() {
  while (!stop_) {
    api::PollWorkflowTaskQueueRequest poll;
    poll.mutable_task_queue()->set_name(queue_);
    poll.set_identity("test-worker");
    api::PollWorkflowTaskQueueResponse task;
    // Short polls so Stop() is prompt.
    grpc::Status status =
        stub_->PollWorkflowTaskQueue(Context(absl::Seconds(3)).get(), poll, &task);
    if (!status.ok()) {
      if (!Transient(status)) ++errors_;
      if (status.error_code() == grpc::StatusCode::UNAVAILABLE) usleep(20'000);  // reconnecting
      continue;
    }
    if (task.task_token().empty()) continue;
    ++workflow_tasks_;
    api::History history = task.history();
    std::string token = task.next_page_token();
    while (!token.empty()) {
      api::GetWorkflowExecutionHistoryRequest more;
      *more.mutable_execution() = task.workflow_execution();
      more.set_next_page_token(token);
      api::GetWorkflowExecutionHistoryResponse page;
      if (!stub_->GetWorkflowExecutionHistory(Context(absl::Seconds(10)).get(), more, &page).ok())
        break;
      for (const auto& e : page.history().events()) *history.add_events() = e;
      token = page.next_page_token();
      if (history.events_size() >= task.started_event_id()) break;
    }
    api::RespondWorkflowTaskCompletedRequest done;
    done.set_task_token(task.task_token());
    done.set_identity("test-worker");
    for (auto& c : Decide(task.workflow_type().name(), history))
      *done.add_commands() = std::move(c);
    api::RespondWorkflowTaskCompletedResponse ignored;
    status = stub_->RespondWorkflowTaskCompleted(Context(absl::Seconds(10)).get(), done, &ignored);
    if (!status.ok() && !Transient(status)) ++errors_;
  }
}

void TestWorker::ActivityLoop() {
  while (!stop_) {
    api::PollActivityTaskQueueRequest poll;
    poll.mutable_task_queue()->set_name(queue_);
    poll.set_identity("test-worker");
    api::PollActivityTaskQueueResponse task;
    grpc::Status status =
        stub_->PollActivityTaskQueue(Context(absl::Seconds(3)).get(), poll, &task);
    if (!status.ok()) {
      if (!Transient(status)) ++errors_;
      if (status.error_code() == grpc::StatusCode::UNAVAILABLE) usleep(20'000);
      continue;
    }
    if (task.task_token().empty()) continue;
    ++activity_tasks_;
    if (task.activity_type().name() == "flaky" && task.attempt() == 1) {
      api::RespondActivityTaskFailedRequest fail;
      fail.set_task_token(task.task_token());
      fail.mutable_failure()->set_message("first attempt always fails");
      fail.mutable_failure()->mutable_application_failure_info()->set_type("Flaky");
      api::RespondActivityTaskFailedResponse ignored;
      status = stub_->RespondActivityTaskFailed(Context(absl::Seconds(10)).get(), fail, &ignored);
    } else {
      api::RespondActivityTaskCompletedRequest done;
      done.set_task_token(task.task_token());
      done.set_identity("test-worker");
      *done.mutable_result() =
          TextPayload(absl::StrCat(FirstPayload(task.input()), "@", task.attempt()));
      api::RespondActivityTaskCompletedResponse ignored;
      status =
          stub_->RespondActivityTaskCompleted(Context(absl::Seconds(10)).get(), done, &ignored);
    }
    if (!status.ok() && !Transient(status)) ++errors_;
  }
}

absl::StatusOr<std::string> StartWorkflow(api::WorkflowService::Stub& stub,
                                          const std::string& workflow_id, const std::string& type,
                                          const std::string& queue, const std::string& input) {
  api::StartWorkflowExecutionRequest request;
  request.set_workflow_id(workflow_id);
  request.mutable_workflow_type()->set_name(type);
  request.mutable_task_queue()->set_name(queue);
  *request.mutable_input() = TextPayload(input);
  request.set_request_id(absl::StrCat("start-", workflow_id));
  api::StartWorkflowExecutionResponse response;
  grpc::Status status =
      stub.StartWorkflowExecution(Context(absl::Seconds(10)).get(), request, &response);
  if (!status.ok()) return FromGrpc(status);
  return response.run_id();
}

absl::StatusOr<api::HistoryEvent> WaitForClose(api::WorkflowService::Stub& stub,
                                               const std::string& workflow_id,
                                               const std::string& run_id, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    api::GetWorkflowExecutionHistoryRequest request;
    request.mutable_execution()->set_workflow_id(workflow_id);
    request.mutable_execution()->set_run_id(run_id);
    request.set_wait_new_event(true);
    request.set_history_event_filter_type(api::HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT);
    api::GetWorkflowExecutionHistoryResponse response;
    grpc::Status status = stub.GetWorkflowExecutionHistory(
        Context(std::min(absl::Seconds(10), deadline - absl::Now() + absl::Seconds(1))).get(),
        request, &response);
    if (!status.ok()) {
      if (Transient(status)) {
        usleep(20'000);
        continue;
      }
      return FromGrpc(status);
    }
    if (response.history().events_size() > 0) return response.history().events(0);
  }
  return absl::DeadlineExceededError(absl::StrCat("workflow ", workflow_id, " did not close"));
}

absl::StatusOr<api::History> GetHistory(api::WorkflowService::Stub& stub,
                                        const std::string& workflow_id, const std::string& run_id) {
  api::History history;
  std::string token;
  do {
    api::GetWorkflowExecutionHistoryRequest request;
    request.mutable_execution()->set_workflow_id(workflow_id);
    request.mutable_execution()->set_run_id(run_id);
    request.set_next_page_token(token);
    api::GetWorkflowExecutionHistoryResponse response;
    grpc::Status status =
        stub.GetWorkflowExecutionHistory(Context(absl::Seconds(10)).get(), request, &response);
    if (!status.ok()) return FromGrpc(status);
    for (const auto& e : response.history().events()) *history.add_events() = e;
    token = response.next_page_token();
  } while (!token.empty());
  return history;
}

}  // namespace kiln::testutil
