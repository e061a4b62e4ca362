// Tokens and scopes against a real kiln-orchestrator: an agent token of project a is refused
// everything of project b (its queue, its activity's task, its run's log) and allowed the same
// on project a; bad tokens are unauthenticated; tokenless calls are refused unless
// --insecure-allow-anonymous; the first start writes the local admin credential.
// Workflow tasks are answered here with the raw API (schedule one activity on a given queue).
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/auth/credentials.h"
#include "common/auth/token.h"
#include "common/proto_time.h"
#include "kiln/api/v1/log_service.grpc.pb.h"
#include "kiln/internal/v1/persistence.pb.h"
#include "kiln/platform/v1/platform.pb.h"
#include "sdk/converter.h"
#include "tests/testutil/http.h"
#include "tests/testutil/orchestrator.h"
#include "tests/testutil/process.h"

namespace kiln {
namespace {

namespace api = ::kiln::api::v1;
using auth::Claims;
using auth::Scope;
using auth::TokenKey;

constexpr auto kCall = std::chrono::seconds(10);

std::unique_ptr<grpc::ClientContext> Ctx(std::chrono::seconds timeout = kCall) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + timeout);
  return ctx;
}

std::string Mint(const TokenKey& key, Scope scope, std::string project = "",
                 absl::Duration age = absl::ZeroDuration(), std::vector<std::string> queues = {}) {
  Claims claims;
  claims.scope = scope;
  claims.project = std::move(project);
  claims.queues = std::move(queues);
  claims.subject = "auth_test";
  claims.issued = absl::Now() - age;
  claims.expiry = claims.issued + absl::Hours(1);
  auto token = key.Mint(claims);
  REQUIRE(token.ok());
  return *token;
}

// A connection presenting `token` (none when empty), with both services' stubs.
struct Caller {
  Caller(const std::string& address, const std::string& token)
      : connection(
            address,
            token.empty()
                ? sdk::ConnectionOptions{}
                : sdk::ConnectionOptions{.metadata = {{"authorization", "Bearer " + token}}}),
        logs(api::LogService::NewStub(connection.channel())) {}
  api::WorkflowService::Stub& wf() { return connection.workflow_service(); }

  grpc::StatusCode SystemInfo() {
    api::GetSystemInfoResponse response;
    return wf().GetSystemInfo(Ctx().get(), {}, &response).error_code();
  }
  grpc::Status Poll(const std::string& queue, api::PollActivityTaskQueueResponse* task,
                    std::chrono::seconds timeout = std::chrono::seconds(5), bool exclusive = false,
                    const std::string& identity = "auth_test") {
    api::PollActivityTaskQueueRequest poll;
    poll.mutable_task_queue()->set_name(queue);
    poll.set_identity(identity);
    poll.set_exclusive(exclusive);
    return wf().PollActivityTaskQueue(Ctx(timeout).get(), poll, task);
  }
  grpc::Status Heartbeat(const std::string& token) {
    api::RecordActivityTaskHeartbeatRequest request;
    request.set_task_token(token);
    api::RecordActivityTaskHeartbeatResponse response;
    return wf().RecordActivityTaskHeartbeat(Ctx().get(), request, &response);
  }
  grpc::Status Complete(const std::string& token) {
    api::RespondActivityTaskCompletedRequest request;
    request.set_task_token(token);
    api::RespondActivityTaskCompletedResponse response;
    return wf().RespondActivityTaskCompleted(Ctx().get(), request, &response);
  }
  grpc::Status Fail(const std::string& token) {
    api::RespondActivityTaskFailedRequest request;
    request.set_task_token(token);
    request.mutable_failure()->set_message("no");
    api::RespondActivityTaskFailedResponse response;
    return wf().RespondActivityTaskFailed(Ctx().get(), request, &response);
  }
  grpc::Status Append(const std::string& workflow_id, const std::string& data) {
    api::AppendLogRequest request;
    request.mutable_execution()->set_workflow_id(workflow_id);
    request.set_stream("build");
    request.set_sequence(++sequence);
    request.set_data(data);
    api::AppendLogResponse response;
    return logs->AppendLog(Ctx().get(), request, &response);
  }

  // The whole "build" stream of the workflow's current run.
  grpc::Status ReadLog(const std::string& workflow_id, std::string* data) {
    api::ReadLogRequest request;
    request.mutable_execution()->set_workflow_id(workflow_id);
    request.set_stream("build");
    auto ctx = Ctx();
    auto reader = logs->ReadLog(ctx.get(), request);
    api::ReadLogResponse chunk;
    data->clear();
    while (reader->Read(&chunk)) *data += chunk.data();
    return reader->Finish();
  }
  grpc::Status History(const std::string& workflow_id) {
    api::GetWorkflowExecutionHistoryRequest request;
    request.mutable_execution()->set_workflow_id(workflow_id);
    api::GetWorkflowExecutionHistoryResponse response;
    return wf().GetWorkflowExecutionHistory(Ctx().get(), request, &response);
  }
  grpc::Status Describe(const std::string& workflow_id) {
    api::DescribeWorkflowExecutionRequest request;
    request.mutable_execution()->set_workflow_id(workflow_id);
    api::DescribeWorkflowExecutionResponse response;
    return wf().DescribeWorkflowExecution(Ctx().get(), request, &response);
  }
  // The workflow ids `query` lists (a failed call: REQUIREd not to happen).
  std::vector<std::string> List(const std::string& query = "") {
    api::ListWorkflowExecutionsRequest request;
    request.set_query(query);
    api::ListWorkflowExecutionsResponse response;
    grpc::Status status = wf().ListWorkflowExecutions(Ctx().get(), request, &response);
    INFO(status.error_message());
    REQUIRE(status.ok());
    std::vector<std::string> ids;
    for (const auto& run : response.executions()) ids.push_back(run.execution().workflow_id());
    std::sort(ids.begin(), ids.end());
    return ids;
  }
  int64_t Count(const std::string& query = "") {
    api::CountWorkflowExecutionsRequest request;
    request.set_query(query);
    api::CountWorkflowExecutionsResponse response;
    grpc::Status status = wf().CountWorkflowExecutions(Ctx().get(), request, &response);
    INFO(status.error_message());
    REQUIRE(status.ok());
    return response.count();
  }

  sdk::Connection connection;
  std::unique_ptr<api::LogService::Stub> logs;
  int64_t sequence = 0;
};

// Starts workflow `id` on queue "wf" and answers its first workflow task by scheduling one
// activity on `activity_queue`.
void StartWithActivityOn(Caller& admin, const std::string& id, const std::string& activity_queue) {
  api::StartWorkflowExecutionRequest start;
  start.set_workflow_id(id);
  start.mutable_workflow_type()->set_name("Build");
  start.mutable_task_queue()->set_name("wf");
  start.set_request_id(id);
  api::StartWorkflowExecutionResponse started;
  grpc::Status status = admin.wf().StartWorkflowExecution(Ctx().get(), start, &started);
  INFO(status.error_message());
  REQUIRE(status.ok());

  api::PollWorkflowTaskQueueRequest poll;
  poll.mutable_task_queue()->set_name("wf");
  poll.set_identity("auth_test");
  api::PollWorkflowTaskQueueResponse task;
  REQUIRE(admin.wf().PollWorkflowTaskQueue(Ctx().get(), poll, &task).ok());
  REQUIRE(task.workflow_execution().workflow_id() == id);
  api::RespondWorkflowTaskCompletedRequest done;
  done.set_task_token(task.task_token());
  api::Command& command = *done.add_commands();
  command.set_command_type(api::COMMAND_TYPE_SCHEDULE_ACTIVITY_TASK);
  auto* a = command.mutable_schedule_activity_task_command_attributes();
  a->set_activity_id("1");
  a->mutable_activity_type()->set_name("kiln.builder.Build");
  a->mutable_task_queue()->set_name(activity_queue);
  ToProto(absl::Minutes(5), a->mutable_start_to_close_timeout());
  api::RespondWorkflowTaskCompletedResponse ignored;
  status = admin.wf().RespondWorkflowTaskCompleted(Ctx().get(), done, &ignored);
  INFO(status.error_message());
  REQUIRE(status.ok());
}

TEST_CASE("an agent token serves its own project only") {
  testutil::TempDir dir;
  testutil::OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());
  // The orchestrator created its key on first start, mode 0600.
  auto key = TokenKey::Load(dir.path() + "/data/auth.key");
  INFO(key.status().ToString());
  REQUIRE(key.ok());

  Caller admin(orchestrator.address(), Mint(*key, Scope::kAdmin));
  Caller agent_a(orchestrator.address(), Mint(*key, Scope::kAgent, "a"));
  Caller anonymous(orchestrator.address(), "");
  StartWithActivityOn(admin, "build-a", "project/a");
  StartWithActivityOn(admin, "build-b", "project/b");

  // b's activity task, taken with the admin token.
  api::PollActivityTaskQueueResponse task_b;
  REQUIRE(admin.Poll("project/b", &task_b).ok());
  REQUIRE(!task_b.task_token().empty());

  // Agent a, on project b: refused at once (no long poll), every time.
  api::PollActivityTaskQueueResponse none;
  grpc::Status polled = agent_a.Poll("project/b", &none);
  CHECK(polled.error_code() == grpc::StatusCode::PERMISSION_DENIED);
  CHECK(polled.error_message().find("PollActivityTaskQueue") != std::string::npos);
  CHECK(polled.error_message().find("'a'") != std::string::npos);
  CHECK(agent_a.Heartbeat(task_b.task_token()).error_code() == grpc::StatusCode::PERMISSION_DENIED);
  CHECK(agent_a.Complete(task_b.task_token()).error_code() == grpc::StatusCode::PERMISSION_DENIED);
  CHECK(agent_a.Fail(task_b.task_token()).error_code() == grpc::StatusCode::PERMISSION_DENIED);
  CHECK(agent_a.Append("build-b", "not mine\n").error_code() ==
        grpc::StatusCode::PERMISSION_DENIED);
  // Nor may it do anything but serve its queue.
  api::ListWorkflowExecutionsResponse listed;
  CHECK(agent_a.wf().ListWorkflowExecutions(Ctx().get(), {}, &listed).error_code() ==
        grpc::StatusCode::PERMISSION_DENIED);
  CHECK(agent_a.SystemInfo() == grpc::StatusCode::OK);

  // b's activity is untouched: the admin token still heartbeats it.
  CHECK(admin.Heartbeat(task_b.task_token()).ok());

  // The same token on project a: poll, log (its activity is started), heartbeat, complete.
  CHECK(agent_a.Append("build-a", "too early\n").error_code() ==
        grpc::StatusCode::PERMISSION_DENIED);  // Nothing of a started on that run yet.
  api::PollActivityTaskQueueResponse task_a;
  grpc::Status own = agent_a.Poll("project/a", &task_a);
  INFO(own.error_message());
  REQUIRE(own.ok());
  REQUIRE(!task_a.task_token().empty());
  grpc::Status appended = agent_a.Append("build-a", "building\n");
  INFO(appended.error_message());
  CHECK(appended.ok());
  CHECK(agent_a.Heartbeat(task_a.task_token()).ok());
  CHECK(agent_a.Complete(task_a.task_token()).ok());
  // An activity that no longer exists answers as the engine would.
  CHECK(agent_a.Heartbeat(task_a.task_token()).error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK(agent_a.Append("build-a", "after\n").error_code() == grpc::StatusCode::PERMISSION_DENIED);

  // A read-only token reads and writes nothing.
  Caller reader(orchestrator.address(), Mint(*key, Scope::kReadOnly));
  CHECK(reader.wf().ListWorkflowExecutions(Ctx().get(), {}, &listed).ok());
  CHECK(reader.Heartbeat(task_b.task_token()).error_code() == grpc::StatusCode::PERMISSION_DENIED);

  // Expired, and signed with another key: unauthenticated whatever the method.
  Caller expired(orchestrator.address(), Mint(*key, Scope::kAdmin, "", absl::Hours(2)));
  CHECK(expired.SystemInfo() == grpc::StatusCode::UNAUTHENTICATED);
  auto other_key = TokenKey::FromBytes(std::string(auth::token_limits::kKeyBytes, 'z'));
  REQUIRE(other_key.ok());
  Caller forged(orchestrator.address(), Mint(*other_key, Scope::kAdmin));
  grpc::Status forged_call = forged.Heartbeat(task_b.task_token());
  CHECK(forged_call.error_code() == grpc::StatusCode::UNAUTHENTICATED);
  CHECK(forged_call.error_message().find("kiln1.") == std::string::npos);

  // Tokenless callers are refused by default.
  CHECK(anonymous.SystemInfo() == grpc::StatusCode::UNAUTHENTICATED);
  CHECK(anonymous.Fail(task_b.task_token()).error_code() == grpc::StatusCode::UNAUTHENTICATED);

  // Refusals are counted by reason.
  auto metrics = testutil::HttpGet("127.0.0.1", orchestrator.metrics_port(), "/metrics");
  REQUIRE(metrics.ok());
  CHECK(metrics->find("kiln_auth_refused_total{reason=\"project\"} 7") != std::string::npos);
  CHECK(metrics->find("kiln_auth_refused_total{reason=\"invalid_token\"} 2") != std::string::npos);
  CHECK(metrics->find("kiln_auth_refused_total{reason=\"token_required\"} 2") != std::string::npos);
  REQUIRE(orchestrator.Stop().ok());
}

// Starts workflow `id` on task queue `queue` (nobody runs it) and writes a line to its log.
void StartOn(Caller& admin, const std::string& id, const std::string& queue) {
  api::StartWorkflowExecutionRequest start;
  start.set_workflow_id(id);
  start.mutable_workflow_type()->set_name("Job");
  start.mutable_task_queue()->set_name(queue);
  start.set_request_id(id);
  api::StartWorkflowExecutionResponse started;
  grpc::Status status = admin.wf().StartWorkflowExecution(Ctx().get(), start, &started);
  INFO(status.error_message());
  REQUIRE(status.ok());
  REQUIRE(admin.Append(id, "log of " + id + "\n").ok());
}

TEST_CASE("A worker token reads only the runs of its own task queues") {
  testutil::TempDir dir;
  testutil::OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());
  auto key = TokenKey::Load(dir.path() + "/data/auth.key");
  REQUIRE(key.ok());
  Caller admin(orchestrator.address(), Mint(*key, Scope::kAdmin));
  StartOn(admin, "mine-1", "jobs-a");
  StartOn(admin, "mine-2", "jobs-b");
  StartOn(admin, "theirs", "billing");
  Caller worker(orchestrator.address(),
                Mint(*key, Scope::kWorker, "", absl::ZeroDuration(), {"jobs-*"}));

  // Its own runs: history, describe, log.
  CHECK(worker.History("mine-1").ok());
  CHECK(worker.Describe("mine-2").ok());
  std::string log;
  grpc::Status read = worker.ReadLog("mine-1", &log);
  INFO(read.error_message());
  CHECK(read.ok());
  CHECK(log == "log of mine-1\n");

  // Another queue's run: refused, naming the call and the queue.
  grpc::Status history = worker.History("theirs");
  CHECK(history.error_code() == grpc::StatusCode::PERMISSION_DENIED);
  CHECK(history.error_message().find("GetWorkflowExecutionHistory") != std::string::npos);
  CHECK(history.error_message().find("'billing'") != std::string::npos);
  CHECK(worker.Describe("theirs").error_code() == grpc::StatusCode::PERMISSION_DENIED);
  grpc::Status theirs_log = worker.ReadLog("theirs", &log);
  CHECK(theirs_log.error_code() == grpc::StatusCode::PERMISSION_DENIED);
  CHECK(theirs_log.error_message().find("ReadLog") != std::string::npos);
  CHECK(log.empty());
  // A run that does not exist answers as it would to anyone.
  CHECK(worker.History("nobody").error_code() == grpc::StatusCode::NOT_FOUND);

  // Lists and counts show its runs only, whatever the query asks.
  CHECK(worker.List() == std::vector<std::string>{"mine-1", "mine-2"});
  CHECK(worker.Count() == 2);
  CHECK(worker.List("TaskQueue = 'billing'").empty());
  CHECK(worker.Count("TaskQueue = 'billing'") == 0);
  CHECK(worker.List("WorkflowId = 'mine-2'") == std::vector<std::string>{"mine-2"});

  // Admin and read-only tokens keep reading everything.
  Caller reader(orchestrator.address(), Mint(*key, Scope::kReadOnly));
  for (Caller* full : {&admin, &reader}) {
    CHECK(full->List() == std::vector<std::string>{"mine-1", "mine-2", "theirs"});
    CHECK(full->Count() == 3);
    CHECK(full->History("theirs").ok());
    CHECK(full->ReadLog("theirs", &log).ok());
    CHECK(log == "log of theirs\n");
  }
  REQUIRE(orchestrator.Stop().ok());
}

TEST_CASE("Task tokens are signed and bound to the poll and attempt that received them") {
  testutil::TempDir dir;
  testutil::OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());
  Caller admin(orchestrator.address(), orchestrator.admin_token());
  StartWithActivityOn(admin, "signed", "work");
  api::PollActivityTaskQueueResponse task;
  REQUIRE(admin.Poll("work", &task).ok());
  const std::string real = task.task_token();
  REQUIRE(!real.empty());

  // A hand-made token naming the same activity and attempt: refused before any lookup, even
  // with an admin token, and the error does not echo it.
  internal::v1::TaskToken forged;
  forged.set_namespace_("default");
  forged.set_workflow_id("signed");
  forged.set_run_id(task.workflow_execution().run_id());
  forged.set_scheduled_event_id(5);
  forged.set_attempt(1);
  forged.set_activity_id("1");
  forged.set_kind("a");
  for (const std::string& bad :
       {forged.SerializeAsString(), forged.SerializeAsString() + std::string(32, 'x'),
        real.substr(0, real.size() - 1) + static_cast<char>(real.back() ^ 1),
        static_cast<char>(real[0] ^ 0x20) + real.substr(1)}) {
    grpc::Status refused = admin.Complete(bad);
    CHECK(refused.error_code() == grpc::StatusCode::PERMISSION_DENIED);
    CHECK(refused.error_message().find("not signed by this orchestrator") != std::string::npos);
    CHECK(admin.Heartbeat(bad).error_code() == grpc::StatusCode::PERMISSION_DENIED);
  }
  // The real one still works, and outlives a restart (the key is in the data directory).
  REQUIRE(orchestrator.Stop().ok());
  REQUIRE(orchestrator.Start().ok());
  grpc::Status beat = admin.Heartbeat(real);
  INFO(beat.error_message());
  CHECK(beat.ok());

  // A replayed token of an older attempt is refused once the next attempt runs.
  REQUIRE(admin.Fail(real).ok());  // Retryable: attempt 2 after the 1 s backoff.
  api::PollActivityTaskQueueResponse retry;
  REQUIRE(admin.Poll("work", &retry, std::chrono::seconds(10)).ok());
  REQUIRE(retry.attempt() == 2);
  grpc::Status replayed = admin.Complete(real);
  CHECK(replayed.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
  CHECK(replayed.error_message().find("attempt 1") != std::string::npos);
  CHECK(admin.Complete(retry.task_token()).ok());
  REQUIRE(orchestrator.Stop().ok());
}

TEST_CASE(
    "A worker token serves its own queues and only admins see holders or the data directory") {
  testutil::TempDir dir;
  testutil::OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());
  auto key = TokenKey::Load(orchestrator.key_file());
  REQUIRE(key.ok());
  Caller admin(orchestrator.address(), orchestrator.admin_token());
  Caller worker(orchestrator.address(),
                Mint(*key, Scope::kWorker, "", absl::ZeroDuration(), {"wf", "jobs-*"}));
  Caller agent(orchestrator.address(), Mint(*key, Scope::kAgent, "a"));
  Caller reader(orchestrator.address(), Mint(*key, Scope::kReadOnly));

  // Starts: on its queues only.
  auto start = [](Caller& caller, const std::string& id, const std::string& queue) {
    api::StartWorkflowExecutionRequest request;
    request.set_workflow_id(id);
    request.mutable_workflow_type()->set_name("Build");
    request.mutable_task_queue()->set_name(queue);
    request.set_request_id(id);
    api::StartWorkflowExecutionResponse response;
    return caller.wf().StartWorkflowExecution(Ctx().get(), request, &response);
  };
  grpc::Status elsewhere = start(worker, "w-other", "other");
  CHECK(elsewhere.error_code() == grpc::StatusCode::PERMISSION_DENIED);
  CHECK(elsewhere.error_message().find("'other'") != std::string::npos);
  // Its own workflow queue: start, poll and answer (StartWithActivityOn does all three).
  StartWithActivityOn(worker, "w-own", "jobs-1");

  // Polls: a queue of its list or under its prefix, nothing else.
  api::PollActivityTaskQueueResponse task;
  CHECK(worker.Poll("project/a", &task).error_code() == grpc::StatusCode::PERMISSION_DENIED);
  grpc::Status own = worker.Poll("jobs-1", &task);
  INFO(own.error_message());
  REQUIRE(own.ok());
  REQUIRE(!task.task_token().empty());
  CHECK(worker.Heartbeat(task.task_token()).ok());

  // Answers: only for tasks of its queues (the queue is in the signed task token).
  StartWithActivityOn(admin, "a-build", "project/a");
  api::PollActivityTaskQueueResponse task_a;
  REQUIRE(admin.Poll("project/a", &task_a).ok());
  CHECK(worker.Complete(task_a.task_token()).error_code() == grpc::StatusCode::PERMISSION_DENIED);
  CHECK(worker.Fail(task_a.task_token()).error_code() == grpc::StatusCode::PERMISSION_DENIED);
  CHECK(worker.Complete(task.task_token()).ok());

  // Signal, describe, query, cancel and terminate: only runs of its queues.
  REQUIRE(start(admin, "a-other", "other").ok());
  auto signal = [](Caller& caller, const std::string& id) {
    api::SignalWorkflowExecutionRequest request;
    request.mutable_workflow_execution()->set_workflow_id(id);
    request.set_signal_name("poke");
    api::SignalWorkflowExecutionResponse response;
    return caller.wf().SignalWorkflowExecution(Ctx().get(), request, &response);
  };
  CHECK(signal(worker, "w-own").ok());
  grpc::Status foreign_signal = signal(worker, "a-other");
  CHECK(foreign_signal.error_code() == grpc::StatusCode::PERMISSION_DENIED);
  CHECK(foreign_signal.error_message().find("'other'") != std::string::npos);
  CHECK(signal(admin, "a-other").ok());
  {
    api::DescribeWorkflowExecutionRequest request;
    request.mutable_execution()->set_workflow_id("a-other");
    api::DescribeWorkflowExecutionResponse response;
    CHECK(worker.wf().DescribeWorkflowExecution(Ctx().get(), request, &response).error_code() ==
          grpc::StatusCode::PERMISSION_DENIED);
    request.mutable_execution()->set_workflow_id("w-own");
    CHECK(worker.wf().DescribeWorkflowExecution(Ctx().get(), request, &response).ok());
  }
  {
    api::QueryWorkflowRequest request;
    request.mutable_execution()->set_workflow_id("a-other");
    request.mutable_query()->set_query_type("state");
    api::QueryWorkflowResponse response;
    CHECK(worker.wf().QueryWorkflow(Ctx().get(), request, &response).error_code() ==
          grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    api::RequestCancelWorkflowExecutionRequest cancel;
    cancel.mutable_workflow_execution()->set_workflow_id("a-other");
    api::RequestCancelWorkflowExecutionResponse cancelled;
    CHECK(
        worker.wf().RequestCancelWorkflowExecution(Ctx().get(), cancel, &cancelled).error_code() ==
        grpc::StatusCode::PERMISSION_DENIED);
    api::TerminateWorkflowExecutionRequest terminate;
    terminate.mutable_workflow_execution()->set_workflow_id("a-other");
    api::TerminateWorkflowExecutionResponse terminated;
    CHECK(
        worker.wf().TerminateWorkflowExecution(Ctx().get(), terminate, &terminated).error_code() ==
        grpc::StatusCode::PERMISSION_DENIED);
    api::ResetWorkflowExecutionRequest reset;
    reset.mutable_workflow_execution()->set_workflow_id("a-other");
    reset.set_reset_point(api::RESET_POINT_LAST_WORKFLOW_TASK);
    api::ResetWorkflowExecutionResponse was_reset;
    CHECK(worker.wf().ResetWorkflowExecution(Ctx().get(), reset, &was_reset).error_code() ==
          grpc::StatusCode::PERMISSION_DENIED);
    CHECK(reader.wf().ResetWorkflowExecution(Ctx().get(), reset, &was_reset).error_code() ==
          grpc::StatusCode::PERMISSION_DENIED);
  }

  // Nobody but project a's agent takes project/a exclusively, not even an admin.
  api::PollActivityTaskQueueResponse none;
  grpc::Status squat = admin.Poll("project/a", &none, std::chrono::seconds(2), true, "squatter");
  CHECK(squat.error_code() == grpc::StatusCode::PERMISSION_DENIED);
  CHECK(squat.error_message().find("agent token") != std::string::npos);
  CHECK(agent.Poll("project/a", &none, std::chrono::seconds(2), true, "agent-a@m1").ok());

  // Who holds a queue, and where the data lives, only admins see.
  api::DescribeTaskQueueRequest describe;
  describe.mutable_task_queue()->set_name("project/a");
  describe.set_activity(true);
  api::DescribeTaskQueueResponse by_reader, by_admin;
  REQUIRE(reader.wf().DescribeTaskQueue(Ctx().get(), describe, &by_reader).ok());
  REQUIRE(admin.wf().DescribeTaskQueue(Ctx().get(), describe, &by_admin).ok());
  CHECK(by_admin.exclusive_holder() == "agent-a@m1");
  CHECK(by_reader.exclusive_holder().empty());
  REQUIRE(by_reader.pollers_size() > 0);
  for (const auto& poller : by_reader.pollers()) CHECK(poller.identity().empty());
  api::GetSystemInfoResponse info;
  REQUIRE(reader.wf().GetSystemInfo(Ctx().get(), {}, &info).ok());
  CHECK(info.data_dir().empty());
  REQUIRE(agent.wf().GetSystemInfo(Ctx().get(), {}, &info).ok());
  CHECK(info.data_dir().empty());
  REQUIRE(admin.wf().GetSystemInfo(Ctx().get(), {}, &info).ok());
  CHECK(!info.data_dir().empty());
  REQUIRE(orchestrator.Stop().ok());
}

// Runs `kiln args...`; the exit code, with stdout and stderr in `out`.
int Kiln(std::vector<std::string> args, std::string* out) {
  auto code = testutil::RunCommand(testutil::BinaryPath("kiln"), args, out, absl::Seconds(60));
  REQUIRE(code.ok());
  return *code;
}

TEST_CASE("A revoked token is refused from then on and after a restart") {
  testutil::TempDir dir;
  const std::string data = dir.path() + "/data";
  testutil::OrchestratorProcess orchestrator(data);
  REQUIRE(orchestrator.Start().ok());
  auto key = TokenKey::Load(data + "/auth.key");
  REQUIRE(key.ok());
  Caller admin(orchestrator.address(), Mint(*key, Scope::kAdmin));

  // `kiln-orchestrator token` says the id of the token it mints (on stderr).
  std::string minted;
  auto code = testutil::RunCommand(
      testutil::BinaryPath("kiln-orchestrator"),
      {"token", "--data-dir", data, "--scope", "worker", "--queues", "jobs", "--ttl", "2h"},
      &minted, absl::Seconds(30));
  REQUIRE(code.ok());
  REQUIRE(*code == 0);
  // stdout is the token alone, after the id line.
  const std::string worker_token(
      absl::StripAsciiWhitespace(minted.substr(minted.rfind("kiln1."), std::string::npos)));
  auto worker_claims = key->Verify(worker_token, absl::Now());
  REQUIRE(worker_claims.ok());
  CHECK(minted.find("id " + worker_claims->id) != std::string::npos);
  Caller worker(orchestrator.address(), worker_token);
  const std::string reader_token = Mint(*key, Scope::kReadOnly);
  Caller reader(orchestrator.address(), reader_token);
  Caller other(orchestrator.address(), Mint(*key, Scope::kReadOnly));
  CHECK(worker.SystemInfo() == grpc::StatusCode::OK);

  // Revoked by id with the CLI (an admin's call).
  std::string out;
  CHECK(Kiln({"--address", orchestrator.address(), "--token-file", orchestrator.admin_token_file(),
              "token", "revoke", worker_claims->id},
             &out) == 0);
  INFO(out);
  CHECK(out.find("revoked " + worker_claims->id) != std::string::npos);
  api::GetSystemInfoResponse info;
  grpc::Status refused = worker.wf().GetSystemInfo(Ctx().get(), {}, &info);
  CHECK(refused.error_code() == grpc::StatusCode::UNAUTHENTICATED);
  CHECK(refused.error_message() == "token revoked");

  // Revoked by giving the token: kept until its own expiry. Again: already revoked. Used first,
  // so that the orchestrator holds it as verified: revocation must still win.
  CHECK(reader.SystemInfo() == grpc::StatusCode::OK);
  api::RevokeTokenRequest request;
  request.set_token(reader_token);
  api::RevokeTokenResponse response;
  REQUIRE(admin.wf().RevokeToken(Ctx().get(), request, &response).ok());
  CHECK(!response.already_revoked());
  CHECK(FromProto(response.expire_time()) == key->Verify(reader_token, absl::Now())->expiry);
  REQUIRE(admin.wf().RevokeToken(Ctx().get(), request, &response).ok());
  CHECK(response.already_revoked());
  CHECK(reader.SystemInfo() == grpc::StatusCode::UNAUTHENTICATED);
  // Others still work; only admins revoke.
  CHECK(other.SystemInfo() == grpc::StatusCode::OK);
  request.Clear();
  request.set_id("someone-else");
  CHECK(other.wf().RevokeToken(Ctx().get(), request, &response).error_code() ==
        grpc::StatusCode::PERMISSION_DENIED);
  Caller another_worker(orchestrator.address(),
                        Mint(*key, Scope::kWorker, "", absl::ZeroDuration(), {"jobs"}));
  CHECK(another_worker.wf().RevokeToken(Ctx().get(), request, &response).error_code() ==
        grpc::StatusCode::PERMISSION_DENIED);
  CHECK(another_worker.SystemInfo() == grpc::StatusCode::OK);
  request.Clear();
  CHECK(admin.wf().RevokeToken(Ctx().get(), request, &response).error_code() ==
        grpc::StatusCode::INVALID_ARGUMENT);

  // After a restart: still refused; the others still work.
  REQUIRE(orchestrator.Stop().ok());
  REQUIRE(orchestrator.Start().ok());
  CHECK(worker.SystemInfo() == grpc::StatusCode::UNAUTHENTICATED);
  CHECK(reader.SystemInfo() == grpc::StatusCode::UNAUTHENTICATED);
  CHECK(other.SystemInfo() == grpc::StatusCode::OK);
  CHECK(admin.SystemInfo() == grpc::StatusCode::OK);
  auto metrics = testutil::HttpGet("127.0.0.1", orchestrator.metrics_port(), "/metrics");
  REQUIRE(metrics.ok());
  CHECK(metrics->find("kiln_auth_refused_total{reason=\"revoked\"} 2") != std::string::npos);
  REQUIRE(orchestrator.Stop().ok());
}

TEST_CASE(
    "kiln-worker's BuildService takes admin tokens and read-only ones for reads and no secret "
    "leaks") {
  testutil::TempDir dir;
  testutil::OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());
  auto key = TokenKey::Load(orchestrator.key_file());
  REQUIRE(key.ok());
  const std::string platform = absl::StrCat("127.0.0.1:", testutil::FreePort());
  auto worker = testutil::Process::Start(
      testutil::BinaryPath("kiln-worker"),
      {"--orchestrator", orchestrator.address(), "--data-dir", dir.path() + "/worker", "--listen",
       platform, "--http", "", "--auth-key-file", orchestrator.key_file()},
      dir.path() + "/worker.log");
  REQUIRE(worker.ok());
  REQUIRE(testutil::WaitFor(
      [&] { return (*worker)->Output().find("worker.connected") != std::string::npos; },
      absl::Seconds(20)));

  const std::string admin_file = orchestrator.admin_token_file();
  const std::string admin = auth::ReadTokenFile(admin_file).value();
  const std::string reader = Mint(*key, Scope::kReadOnly);
  const std::string agent = Mint(*key, Scope::kAgent, "web");
  // A token-shaped secret signed with another key: refused, and never repeated.
  auto other_key = TokenKey::FromBytes(std::string(auth::token_limits::kKeyBytes, 'q'));
  REQUIRE(other_key.ok());
  const std::string foreign = Mint(*other_key, Scope::kAdmin);
  const std::vector<std::string> base = {"--platform", platform};
  auto with = [&](std::vector<std::string> auth_args, std::vector<std::string> command) {
    std::vector<std::string> args = base;
    args.insert(args.end(), auth_args.begin(), auth_args.end());
    args.insert(args.end(), command.begin(), command.end());
    return args;
  };
  const std::vector<std::string> list = {"project", "list"};
  const std::vector<std::string> create = {
      "project", "create", "--id", "web", "--repo", "file:///srv/git/web.git", "--port", "18080"};
  std::string out;
  std::vector<std::string> answers;
  // No token (and no credential in KILN_DATA_DIR or ./kiln-data): refused.
  CHECK(Kiln(with({}, list), &out) == 1);
  CHECK(out.find("token") != std::string::npos);
  CHECK(Kiln(with({"--token", foreign}, list), &out) == 1);
  answers.push_back(out);
  CHECK(Kiln(with({"--token", agent}, list), &out) == 1);
  CHECK(out.find("agent") != std::string::npos);
  answers.push_back(out);
  // Read-only reads but does not write; admin (the local credential file) does both.
  CHECK(Kiln(with({"--token", reader}, list), &out) == 0);
  CHECK(Kiln(with({"--token", reader}, create), &out) == 1);
  CHECK(out.find("may not") != std::string::npos);
  answers.push_back(out);
  CHECK(Kiln(with({"--token-file", admin_file}, create), &out) == 0);
  CHECK(Kiln(with({"--token-file", admin_file}, list), &out) == 0);
  CHECK(out.find("web") != std::string::npos);

  // The same refusals from the orchestrator.
  Caller forged(orchestrator.address(), foreign);
  api::ListWorkflowExecutionsResponse listed;
  answers.push_back(forged.wf().ListWorkflowExecutions(Ctx().get(), {}, &listed).error_message());

  (*worker)->Signal(SIGTERM);
  REQUIRE((*worker)->Wait(absl::Seconds(20)).ok());
  REQUIRE(orchestrator.Stop().ok());
  // No token, nor any part of its signature, in any answer or log.
  const std::vector<std::string> outputs = {orchestrator.Log(), (*worker)->Output()};
  for (const std::string& token : {admin, reader, agent, foreign}) {
    const std::string signature = token.substr(token.rfind('.') + 1);
    for (const std::string& text : answers) {
      CHECK(text.find(signature) == std::string::npos);
    }
    for (const std::string& text : outputs) {
      CHECK(text.find(signature) == std::string::npos);
      CHECK(text.find(token) == std::string::npos);
    }
  }
  for (const std::string& text : outputs) CHECK(text.find("kiln1.") == std::string::npos);
}

// A self-signed certificate for 127.0.0.1 made with openssl: `name`.pem and `name`.key in `dir`.
void MakeCertificate(const std::string& dir, const std::string& name) {
  std::string out;
  auto code =
      testutil::RunCommand("/usr/bin/openssl",
                           {"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                            "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout",
                            dir + "/" + name + ".key", "-out", dir + "/" + name + ".pem"},
                           &out);
  INFO(out);
  REQUIRE(code.ok());
  REQUIRE(*code == 0);
}

TEST_CASE("The orchestrator serves TLS and mutual TLS to the SDK and the CLI") {
  testutil::TempDir dir;
  MakeCertificate(dir.path(), "server");
  MakeCertificate(dir.path(), "client");
  const std::string server_pem = testutil::ReadFile(dir.path() + "/server.pem");
  const std::string address = absl::StrCat("127.0.0.1:", testutil::FreePort());
  auto orchestrator = testutil::Process::Start(
      testutil::BinaryPath("kiln-orchestrator"),
      {"--data-dir", dir.path() + "/data", "--listen", address, "--metrics", "", "--tls-cert",
       dir.path() + "/server.pem", "--tls-key", dir.path() + "/server.key", "--tls-client-ca",
       dir.path() + "/client.pem"},
      dir.path() + "/orchestrator.log");
  REQUIRE(orchestrator.ok());
  const std::string token_file = dir.path() + "/data/admin.token";

  sdk::ConnectionOptions mutual{.tls = true,
                                .tls_root_certs = server_pem,
                                .tls_cert_chain = testutil::ReadFile(dir.path() + "/client.pem"),
                                .tls_private_key = testutil::ReadFile(dir.path() + "/client.key")};
  sdk::Connection connection(address, mutual);
  REQUIRE(connection.CheckHealth(absl::Seconds(20)).ok());
  mutual.token = auth::ReadTokenFile(token_file).value();
  sdk::Connection with_token(address, mutual);
  api::GetSystemInfoResponse info;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + kCall);
  CHECK(with_token.workflow_service().GetSystemInfo(&ctx, {}, &info).ok());

  // Plain gRPC, or TLS without a client certificate, does not get through.
  CHECK(!sdk::Connection(address).CheckHealth(absl::Seconds(2)).ok());
  CHECK(!sdk::Connection(address, {.tls = true, .tls_root_certs = server_pem})
             .CheckHealth(absl::Seconds(2))
             .ok());

  // The CLI, with the same files.
  std::string out;
  CHECK(Kiln({"--address", address, "--token-file", token_file, "--tls-ca",
              dir.path() + "/server.pem", "--tls-cert", dir.path() + "/client.pem", "--tls-key",
              dir.path() + "/client.key", "info"},
             &out) == 0);
  INFO(out);
  // Plain text to a TLS listener: no answer it can read (exit 4), and the hint names --tls-ca.
  CHECK(Kiln({"--address", address, "--token-file", token_file, "info"}, &out) == 4);
  CHECK(out.find("--tls-ca") != std::string::npos);
  (*orchestrator)->Signal(SIGTERM);
  REQUIRE((*orchestrator)->Wait(absl::Seconds(20)).ok());
  // TLS on: no warning about the listener.
  CHECK((*orchestrator)->Output().find("insecure_listener") == std::string::npos);
}

TEST_CASE("Builder agents present client certificates to a mutual-TLS orchestrator") {
  testutil::TempDir dir;
  MakeCertificate(dir.path(), "server");
  MakeCertificate(dir.path(), "worker");
  MakeCertificate(dir.path(), "agent");
  // Both self-signed client certificates are trusted as their own CA.
  {
    std::ofstream clients(dir.path() + "/clients.pem");
    clients << testutil::ReadFile(dir.path() + "/worker.pem")
            << testutil::ReadFile(dir.path() + "/agent.pem");
  }
  const std::string server_pem = dir.path() + "/server.pem";
  const std::string address = absl::StrCat("127.0.0.1:", testutil::FreePort());
  auto orchestrator = testutil::Process::Start(
      testutil::BinaryPath("kiln-orchestrator"),
      {"--data-dir", dir.path() + "/data", "--listen", address, "--metrics", "", "--tls-cert",
       server_pem, "--tls-key", dir.path() + "/server.key", "--tls-client-ca",
       dir.path() + "/clients.pem"},
      dir.path() + "/orchestrator.log");
  REQUIRE(orchestrator.ok());
  const std::string token_file = dir.path() + "/data/admin.token";
  REQUIRE(
      testutil::WaitFor([&] { return std::filesystem::exists(token_file); }, absl::Seconds(20)));
  sdk::Connection admin(address,
                        {.token = auth::ReadTokenFile(token_file).value(),
                         .tls = true,
                         .tls_root_certs = testutil::ReadFile(server_pem),
                         .tls_cert_chain = testutil::ReadFile(dir.path() + "/worker.pem"),
                         .tls_private_key = testutil::ReadFile(dir.path() + "/worker.key")});
  REQUIRE(admin.CheckHealth(absl::Seconds(20)).ok());
  auto key = TokenKey::Load(dir.path() + "/data/auth.key");
  REQUIRE(key.ok());

  // An agent with its token and the CA but no client certificate does not get through.
  std::string out;
  auto bare =
      testutil::RunCommand(testutil::BinaryPath("kiln-builder-agent"),
                           {"--orchestrator", address, "--project", "web", "--volume",
                            dir.path() + "/bare-volume", "--tls-ca", server_pem,
                            "--connect-timeout", "2", "--token", Mint(*key, Scope::kAgent, "web")},
                           &out, absl::Seconds(30));
  REQUIRE(bare.ok());
  INFO(out);
  CHECK(*bare != 0);

  // kiln-worker with its own client certificate wakes an agent that presents the agent's.
  auto worker = testutil::Process::Start(testutil::BinaryPath("kiln-worker"),
                                         {"--orchestrator",
                                          address,
                                          "--auth-key-file",
                                          dir.path() + "/data/auth.key",
                                          "--data-dir",
                                          dir.path() + "/worker",
                                          "--http",
                                          "",
                                          "--listen",
                                          "",
                                          "--connect-timeout",
                                          "20",
                                          "--orchestrator-tls-ca",
                                          server_pem,
                                          "--orchestrator-tls-cert",
                                          dir.path() + "/worker.pem",
                                          "--orchestrator-tls-key",
                                          dir.path() + "/worker.key",
                                          "--agent-tls-cert",
                                          dir.path() + "/agent.pem",
                                          "--agent-tls-key",
                                          dir.path() + "/agent.key"},
                                         dir.path() + "/worker.log");
  REQUIRE(worker.ok());
  REQUIRE(testutil::WaitFor(
      [&] { return (*worker)->Output().find("worker.connected") != std::string::npos; },
      absl::Seconds(30)));

  // A build-shaped run: wake web's machine (kiln-worker), then one activity on project/web
  // (the agent; an activity type it does not know, which it answers as failed).
  api::StartWorkflowExecutionRequest start;
  start.set_workflow_id("wake-web");
  start.mutable_workflow_type()->set_name("Build");
  start.mutable_task_queue()->set_name("wf");
  start.set_request_id("wake-web");
  api::StartWorkflowExecutionResponse started;
  REQUIRE(admin.workflow_service().StartWorkflowExecution(Ctx().get(), start, &started).ok());
  api::PollWorkflowTaskQueueRequest poll;
  poll.mutable_task_queue()->set_name("wf");
  poll.set_identity("auth_test");
  api::PollWorkflowTaskQueueResponse task;
  REQUIRE(admin.workflow_service().PollWorkflowTaskQueue(Ctx().get(), poll, &task).ok());
  api::RespondWorkflowTaskCompletedRequest done;
  done.set_task_token(task.task_token());
  auto schedule = [&](const std::string& id, const std::string& type, const std::string& queue,
                      api::Payloads input) {
    api::Command& command = *done.add_commands();
    command.set_command_type(api::COMMAND_TYPE_SCHEDULE_ACTIVITY_TASK);
    auto* a = command.mutable_schedule_activity_task_command_attributes();
    a->set_activity_id(id);
    a->mutable_activity_type()->set_name(type);
    a->mutable_task_queue()->set_name(queue);
    *a->mutable_input() = std::move(input);
    ToProto(absl::Minutes(2), a->mutable_start_to_close_timeout());
    a->mutable_retry_policy()->set_maximum_attempts(1);
  };
  platform::v1::WakeMachineInput wake;
  wake.set_project_id("web");
  wake.set_size("small");
  schedule("wake", "kiln.platform.WakeMachine", "kiln-platform", sdk::ToPayloads(wake));
  schedule("build", "kiln.test.Unknown", "project/web", {});
  api::RespondWorkflowTaskCompletedResponse ignored;
  grpc::Status responded =
      admin.workflow_service().RespondWorkflowTaskCompleted(Ctx().get(), done, &ignored);
  INFO(responded.error_message());
  REQUIRE(responded.ok());

  // The agent polled, started and answered the project's activity over mutual TLS.
  std::string agent_identity;
  std::string last_history;
  int answered = 0;
  bool seen = testutil::WaitFor(
      [&] {
        api::GetWorkflowExecutionHistoryRequest request;
        request.mutable_execution()->set_workflow_id("wake-web");
        api::GetWorkflowExecutionHistoryResponse history;
        if (!admin.workflow_service()
                 .GetWorkflowExecutionHistory(Ctx().get(), request, &history)
                 .ok()) {
          return false;
        }
        answered = 0;
        last_history = history.DebugString();
        for (const auto& e : history.history().events()) {
          if (e.event_type() == api::EVENT_TYPE_ACTIVITY_TASK_STARTED) {
            const std::string& who = e.activity_task_started_event_attributes().identity();
            if (who.rfind("kiln-builder-agent/web", 0) == 0) agent_identity = who;
          }
          if (e.event_type() == api::EVENT_TYPE_ACTIVITY_TASK_COMPLETED ||
              e.event_type() == api::EVENT_TYPE_ACTIVITY_TASK_FAILED) {
            ++answered;
          }
        }
        return answered == 2 && !agent_identity.empty();
      },
      absl::Seconds(60));
  INFO((*worker)->Output());
  INFO(last_history);
  CHECK(seen);
  CHECK(!agent_identity.empty());
  (*worker)->Signal(SIGTERM);
  REQUIRE((*worker)->Wait(absl::Seconds(30)).ok());
  (*orchestrator)->Signal(SIGTERM);
  REQUIRE((*orchestrator)->Wait(absl::Seconds(20)).ok());
}

// The mode bits of `path` (07777).
unsigned Mode(const std::string& path) {
  struct stat st = {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

TEST_CASE("The orchestrator requires tokens by default and writes a local admin credential") {
  testutil::TempDir dir;
  const std::string data = dir.path() + "/data";
  testutil::OrchestratorProcess orchestrator(data);
  REQUIRE(orchestrator.Start().ok());

  // The data directory and everything in it is the orchestrator's alone.
  CHECK(Mode(data) == 0700);
  CHECK(Mode(data + "/auth.key") == 0600);
  CHECK(Mode(orchestrator.admin_token_file()) == 0600);
  for (const auto& entry : std::filesystem::recursive_directory_iterator(data)) {
    INFO(entry.path().string());
    CHECK((Mode(entry.path().string()) & 077) == 0);
  }

  Caller anonymous(orchestrator.address(), "");
  api::GetSystemInfoResponse info;
  grpc::Status refused = anonymous.wf().GetSystemInfo(Ctx().get(), {}, &info);
  CHECK(refused.error_code() == grpc::StatusCode::UNAUTHENTICATED);
  CHECK(refused.error_message().find("a token is required") != std::string::npos);
  CHECK(anonymous.Append("x", "y").error_code() == grpc::StatusCode::UNAUTHENTICATED);
  // The health service stays open (supervisors and load balancers ask it).
  CHECK(anonymous.connection.CheckHealth(absl::Seconds(5)).ok());

  // The credential the orchestrator wrote is an admin token: it may do anything.
  auto admin_token = auth::ReadTokenFile(orchestrator.admin_token_file());
  REQUIRE(admin_token.ok());
  auto key = TokenKey::Load(data + "/auth.key");
  REQUIRE(key.ok());
  auto claims = key->Verify(*admin_token, absl::Now());
  REQUIRE(claims.ok());
  CHECK(claims->scope == Scope::kAdmin);
  Caller admin(orchestrator.address(), *admin_token);
  StartWithActivityOn(admin, "by-admin", "project/a");

  // A restart keeps the same credential (it is still valid).
  REQUIRE(orchestrator.Stop().ok());
  REQUIRE(orchestrator.Start().ok());
  CHECK(auth::ReadTokenFile(orchestrator.admin_token_file()).value() == *admin_token);
  CHECK(admin.SystemInfo() == grpc::StatusCode::OK);
  REQUIRE(orchestrator.Stop().ok());
}

TEST_CASE("The insecure-allow-anonymous flag lets tokenless calls through") {
  testutil::TempDir dir;
  const std::string key_file = dir.path() + "/keys/orchestrator.key";
  testutil::OrchestratorProcess orchestrator(
      dir.path() + "/data", {"--insecure-allow-anonymous", "--auth-key-file=" + key_file});
  REQUIRE(orchestrator.Start().ok());
  auto key = TokenKey::Load(key_file);
  REQUIRE(key.ok());
  Caller anonymous(orchestrator.address(), "");
  CHECK(anonymous.SystemInfo() == grpc::StatusCode::OK);
  // A token that does not verify is still refused.
  Caller expired(orchestrator.address(), Mint(*key, Scope::kAdmin, "", absl::Hours(2)));
  CHECK(expired.SystemInfo() == grpc::StatusCode::UNAUTHENTICATED);
  REQUIRE(orchestrator.Stop().ok());
}

// Revocations live in the orchestrator: kiln-worker confirms a token there, so its BuildService
// refuses a revoked admin token within kTokenConfirmedFor (5 s).
TEST_CASE("kiln-worker's BuildService refuses a token the orchestrator has revoked") {
  testutil::TempDir dir;
  const std::string data = dir.path() + "/data";
  testutil::OrchestratorProcess orchestrator(data);
  REQUIRE(orchestrator.Start().ok());
  auto key = TokenKey::Load(data + "/auth.key");
  REQUIRE(key.ok());
  const std::string admin_token = Mint(*key, Scope::kAdmin);
  const std::string platform = absl::StrCat("127.0.0.1:", testutil::FreePort());
  auto worker = testutil::Process::Start(
      testutil::BinaryPath("kiln-worker"),
      {"--orchestrator", orchestrator.address(), "--auth-key-file", data + "/auth.key",
       "--data-dir", dir.path() + "/worker", "--http", "", "--metrics", "", "--listen", platform},
      dir.path() + "/worker.log");
  REQUIRE(worker.ok());
  std::string out;
  auto list = [&] {
    return Kiln({"--platform", platform, "--token", admin_token, "project", "list"}, &out);
  };
  REQUIRE(testutil::WaitFor([&] { return list() == 0; }, absl::Seconds(30)));
  CHECK(Kiln({"--address", orchestrator.address(), "--token-file", orchestrator.admin_token_file(),
              "token", "revoke", admin_token},
             &out) == 0);
  // Refused within the confirmation interval (5 s), saying why.
  REQUIRE(testutil::WaitFor([&] { return list() != 0; }, absl::Seconds(15)));
  INFO(out);
  CHECK(out.find("revoked") != std::string::npos);
  // Other tokens still work.
  CHECK(Kiln({"--platform", platform, "--token", Mint(*key, Scope::kAdmin), "project", "list"},
             &out) == 0);
  (*worker)->Signal(SIGTERM);
  REQUIRE((*worker)->Wait(absl::Seconds(20)).ok());
}

TEST_CASE("kiln-worker speaks TLS to the orchestrator and serves BuildService over TLS") {
  testutil::TempDir dir;
  MakeCertificate(dir.path(), "server");
  const std::string pem = dir.path() + "/server.pem";
  const std::string key = dir.path() + "/server.key";
  const std::string address = absl::StrCat("127.0.0.1:", testutil::FreePort());
  auto orchestrator =
      testutil::Process::Start(testutil::BinaryPath("kiln-orchestrator"),
                               {"--data-dir", dir.path() + "/data", "--listen", address,
                                "--metrics", "", "--tls-cert", pem, "--tls-key", key},
                               dir.path() + "/orchestrator.log");
  REQUIRE(orchestrator.ok());
  const std::string token_file = dir.path() + "/data/admin.token";
  REQUIRE(
      testutil::WaitFor([&] { return std::filesystem::exists(token_file); }, absl::Seconds(20)));
  auto worker_args = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = {"--orchestrator",  address,
                                     "--auth-key-file", dir.path() + "/data/auth.key",
                                     "--data-dir",      dir.path() + "/worker",
                                     "--http",          ""};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  // Without the CA the worker cannot reach a TLS orchestrator, and says so.
  std::string out;
  auto plain = testutil::RunCommand(testutil::BinaryPath("kiln-worker"),
                                    worker_args({"--listen", "", "--connect-timeout", "2"}), &out,
                                    absl::Seconds(30));
  REQUIRE(plain.ok());
  CHECK(*plain == 1);

  const std::string platform = absl::StrCat("127.0.0.1:", testutil::FreePort());
  auto worker = testutil::Process::Start(
      testutil::BinaryPath("kiln-worker"),
      worker_args({"--orchestrator-tls-ca", pem, "--listen", platform, "--tls-cert", pem,
                   "--tls-key", key, "--connect-timeout", "20"}),
      dir.path() + "/worker.log");
  REQUIRE(worker.ok());
  REQUIRE(testutil::WaitFor(
      [&] { return (*worker)->Output().find("worker.connected") != std::string::npos; },
      absl::Seconds(30)));
  // BuildService over TLS: the CLI with the CA gets through, without it does not.
  CHECK(
      Kiln({"--platform", platform, "--token-file", token_file, "--tls-ca", pem, "project", "list"},
           &out) == 0);
  INFO(out);
  CHECK(Kiln({"--platform", platform, "--token-file", token_file, "project", "list"}, &out) != 0);
  (*worker)->Signal(SIGTERM);
  REQUIRE((*worker)->Wait(absl::Seconds(20)).ok());
  CHECK((*worker)->Output().find("insecure_listener") == std::string::npos);
  (*orchestrator)->Signal(SIGTERM);
  REQUIRE((*orchestrator)->Wait(absl::Seconds(20)).ok());

  // The builder agent reads its CA or refuses to start, naming the flag.
  auto agent =
      testutil::RunCommand(testutil::BinaryPath("kiln-builder-agent"),
                           {"--orchestrator", address, "--project", "web", "--tls-ca",
                            dir.path() + "/missing.pem", "--volume", dir.path() + "/volume"},
                           &out, absl::Seconds(30));
  REQUIRE(agent.ok());
  CHECK(*agent != 0);
  CHECK(out.find("--tls-ca: cannot read") != std::string::npos);
}

}  // namespace
}  // namespace kiln
