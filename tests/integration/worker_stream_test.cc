// The push stream (WorkerStream) against a real orchestrator: workflow and activity tasks
// pushed to workers in this process, credits, a stream broken mid-task, exclusive queues and
// tokens. The workers here never share a process-local fast path: no eager start or activity.
#include <atomic>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/auth/token.h"
#include "common/proto_time.h"
#include "common/rpc_status.h"
#include "sdk/activity_worker.h"
#include "sdk/client.h"
#include "sdk/converter.h"
#include "sdk/workflow_worker.h"
#include "tests/testutil/fresh_orchestrator.h"
#include "tests/testutil/http.h"
#include "tests/testutil/orchestrator.h"
#include "tests/testutil/process.h"
#include "tests/testutil/test_worker.h"

namespace kiln {
namespace {

namespace api = ::kiln::api::v1;
using api::Payloads;

absl::StatusOr<Payloads> Echo(sdk::ActivityContext&, const Payloads& in) { return in; }

sdk::Task<absl::StatusOr<Payloads>> OneActivity(sdk::WorkflowContext& ctx, Payloads input) {
  sdk::ActivityOptions options;
  options.start_to_close_timeout = absl::Seconds(10);
  co_return co_await ctx.ExecuteActivity("Echo", input, options);
}

// Workflow code that takes its time (5 ms per task): no stream reader should wait for it.
sdk::Task<absl::StatusOr<Payloads>> Slow(sdk::WorkflowContext& ctx, Payloads input) {
  absl::SleepFor(absl::Milliseconds(5));
  co_return input;
}

using Fresh = testutil::FreshOrchestrator;

// A workflow worker of `queue` running OneActivity, started: its tasks come on the stream.
std::unique_ptr<sdk::WorkflowWorker> OneActivityWorkflows(
    testutil::OrchestratorProcess& orchestrator, const std::string& queue) {
  auto workflows = std::make_unique<sdk::WorkflowWorker>(
      orchestrator.connection(), queue, sdk::WorkflowWorkerOptions{.identity = "wf", .pollers = 1});
  workflows->Register("OneActivity", OneActivity);
  workflows->Start();
  return workflows;
}

TEST_CASE("Workflow and activity tasks come down the stream with no poll") {
  Fresh fresh;
  auto& orchestrator = fresh.orchestrator;
  // Separate connections: no process-local fast path between the workers.
  sdk::Connection wf_connection(orchestrator.address(), {.token = orchestrator.admin_token()});
  sdk::Connection act_connection(orchestrator.address(), {.token = orchestrator.admin_token()});
  sdk::ActivityWorker activities(act_connection, "streamed", {.identity = "act", .pollers = 1});
  REQUIRE(activities.Register("Echo", Echo).ok());
  REQUIRE(activities.Start().ok());
  sdk::WorkflowWorker workflows(wf_connection, "streamed", {.identity = "wf", .pollers = 1});
  workflows.Register("OneActivity", OneActivity);
  workflows.Start();

  std::vector<absl::Duration> took;
  for (int i = 0; i < 20; ++i) {
    absl::Time began = absl::Now();
    auto handle =
        fresh.client->StartWorkflow({.id = absl::StrCat("streamed-", i), .task_queue = "streamed"},
                                    "OneActivity", sdk::ToPayloads(std::string("kiln")));
    REQUIRE(handle.ok());
    REQUIRE(fresh.client->GetResult<std::string>(*handle, absl::Seconds(30)).value() == "kiln");
    took.push_back(absl::Now() - began);
  }
  std::sort(took.begin(), took.end());
  WARN("sequential p50 " << absl::FormatDuration(took[took.size() / 2]));
  CHECK(orchestrator.RpcCount("PollWorkflowTaskQueue").value() == 0);
  CHECK(orchestrator.RpcCount("PollActivityTaskQueue").value() == 0);
  CHECK(orchestrator.RpcCount("RespondWorkflowTaskCompleted").value() == 0);
  CHECK(orchestrator.RpcCount("RespondActivityTaskCompleted").value() == 0);
  CHECK(orchestrator.RpcCount("WorkerStream.RespondWorkflowTaskCompleted").value() == 40);
  CHECK(orchestrator.RpcCount("WorkerStream.RespondActivityTaskCompleted").value() == 20);
  // One at a time, each workflow task came alone: once the first few had shown the type's
  // tasks brief, they ran on the stream's reader, no thread woken for them (a loaded machine
  // may make a few look slow: the bound leaves room).
  CHECK(workflows.tasks_on_reader() >= 5);
  workflows.Stop();
  activities.Stop();
  REQUIRE(orchestrator.Stop().value() == 0);
}

TEST_CASE("A workflow type whose tasks take long never runs on the stream's reader") {
  Fresh fresh;
  sdk::Connection wf_connection(fresh.orchestrator.address(),
                                {.token = fresh.orchestrator.admin_token()});
  sdk::WorkflowWorker workflows(wf_connection, "slow", {.identity = "wf", .pollers = 1});
  workflows.Register("Slow", Slow);
  workflows.Start();
  for (int i = 0; i < 10; ++i) {
    auto handle =
        fresh.client->StartWorkflow({.id = absl::StrCat("slow-", i), .task_queue = "slow"}, "Slow",
                                    sdk::ToPayloads(std::string("kiln")));
    REQUIRE(handle.ok());
    REQUIRE(fresh.client->GetResult<std::string>(*handle, absl::Seconds(30)).value() == "kiln");
  }
  // Each came alone, short; but the reader would have held every answer and task behind it
  // for 5 ms.
  // (The last answer may reach the worker after the caller has the result.)
  CHECK(testutil::WaitFor([&] { return workflows.tasks_completed() == 10; }, absl::Seconds(10)));
  CHECK(workflows.tasks_on_reader() == 0);
  workflows.Stop();
}

using Rw = grpc::ClientReaderWriter<api::WorkerStreamRequest, api::WorkerStreamResponse>;

// A stream spoken raw, as a worker of another SDK would: opened with `credits`.
struct RawStream {
  RawStream(api::WorkflowService::Stub& stub, api::WorkerStreamKind kind, const std::string& queue,
            const std::string& identity, int credits, bool exclusive = false,
            const std::string& token = "") {
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
    stream = stub.WorkerStream(&context);
    api::WorkerStreamRequest open;
    open.mutable_open()->set_kind(kind);
    open.mutable_open()->mutable_task_queue()->set_name(queue);
    open.mutable_open()->set_identity(identity);
    open.mutable_open()->set_exclusive(exclusive);
    open.set_credits(credits);
    REQUIRE(stream->Write(open));
  }
  // Reads until `n` tasks have come (several may share a message).
  template <typename Task>
  std::vector<Task> ReadTasks(int n) {
    std::vector<Task> tasks;
    api::WorkerStreamResponse response;
    while (static_cast<int>(tasks.size()) < n && stream->Read(&response)) {
      if constexpr (std::is_same_v<Task, api::PollWorkflowTaskQueueResponse>) {
        for (auto& t : response.workflow_tasks()) tasks.push_back(t);
      } else {
        for (auto& t : response.activity_tasks()) tasks.push_back(t);
      }
    }
    return tasks;
  }
  void Grant(int credits) {
    api::WorkerStreamRequest more;
    more.set_credits(credits);
    REQUIRE(stream->Write(more));
  }
  // The stream's end: reads until the orchestrator finishes it.
  grpc::Status Finish() {
    api::WorkerStreamResponse ignored;
    while (stream->Read(&ignored)) {
    }
    return stream->Finish();
  }
  grpc::ClientContext context;
  std::unique_ptr<Rw> stream;
};

api::DescribeTaskQueueResponse DescribeQueue(api::WorkflowService::Stub& stub,
                                             const std::string& queue, bool activity) {
  grpc::ClientContext context;
  api::DescribeTaskQueueRequest request;
  request.mutable_task_queue()->set_name(queue);
  request.set_activity(activity);
  api::DescribeTaskQueueResponse response;
  REQUIRE(stub.DescribeTaskQueue(&context, request, &response).ok());
  return response;
}

TEST_CASE("A stream is pushed no more tasks than its credits") {
  Fresh fresh;
  auto& stub = fresh.orchestrator.connection().workflow_service();
  RawStream raw(stub, api::WORKER_STREAM_KIND_WORKFLOW, "credits", "raw", /*credits=*/2);
  // The stream's polls wait before the starts: the first two are started at schedule for it.
  REQUIRE(testutil::WaitFor(
      [&] { return DescribeQueue(stub, "credits", false).pollers_size() > 0; }, absl::Seconds(10)));
  // Each credit waits in matching as a poll of the stream's identity.
  api::DescribeTaskQueueResponse idle = DescribeQueue(stub, "credits", false);
  REQUIRE(idle.pollers_size() == 1);
  CHECK(idle.pollers(0).identity() == "raw");
  CHECK(idle.pollers(0).waiting_polls() == 2);
  CHECK(idle.pollers(0).stream());  // its polls are the stream's credits, not long polls
  for (int i = 0; i < 5; ++i) {
    REQUIRE(
        testutil::StartWorkflow(stub, absl::StrCat("credits-", i), "steps", "credits", "1").ok());
  }
  auto first = raw.ReadTasks<api::PollWorkflowTaskQueueResponse>(2);
  REQUIRE(first.size() == 2);
  // The other three wait in the backlog while the stream has no credit, and stay there.
  REQUIRE(
      testutil::WaitFor([&] { return DescribeQueue(stub, "credits", false).backlog_count() == 3; },
                        absl::Seconds(10)));
  for (int i = 0; i < 5; ++i) {
    CHECK(DescribeQueue(stub, "credits", false).backlog_count() == 3);
  }
  // Both credits taken: the worker is still listed, with nothing waiting (it is busy).
  api::DescribeTaskQueueResponse busy = DescribeQueue(stub, "credits", false);
  REQUIRE(busy.pollers_size() == 1);
  CHECK(busy.pollers(0).waiting_polls() == 0);
  CHECK(busy.pollers(0).stream());
  raw.Grant(1);
  auto third = raw.ReadTasks<api::PollWorkflowTaskQueueResponse>(1);
  REQUIRE(third.size() == 1);
  CHECK(third[0].workflow_execution().workflow_id() != first[0].workflow_execution().workflow_id());
  REQUIRE(
      testutil::WaitFor([&] { return DescribeQueue(stub, "credits", false).backlog_count() == 2; },
                        absl::Seconds(10)));
  raw.context.TryCancel();
  (void)raw.Finish();
}

TEST_CASE("The SDK activity worker runs no more activities than its slots on the stream") {
  Fresh fresh;
  auto& orchestrator = fresh.orchestrator;
  absl::Mutex mu;
  int running = 0, most = 0;
  bool release = false;
  sdk::ActivityWorker activities(orchestrator.connection(), "slots",
                                 {.identity = "act", .max_concurrent = 2, .pollers = 1});
  REQUIRE(activities
              .Register("Echo",
                        [&](sdk::ActivityContext&, const Payloads& in) -> absl::StatusOr<Payloads> {
                          absl::MutexLock lock(&mu);
                          most = std::max(most, ++running);
                          mu.Await(absl::Condition(&release));
                          --running;
                          return in;
                        })
              .ok());
  REQUIRE(activities.Start().ok());
  auto workflows = OneActivityWorkflows(orchestrator, "slots");
  std::vector<sdk::WorkflowHandle> handles;
  for (int i = 0; i < 5; ++i) {
    auto handle =
        fresh.client->StartWorkflow({.id = absl::StrCat("slots-", i), .task_queue = "slots"},
                                    "OneActivity", sdk::ToPayloads(std::string("kiln")));
    REQUIRE(handle.ok());
    handles.push_back(*handle);
  }
  auto& stub = orchestrator.connection().workflow_service();
  // Two run; three wait in the activity backlog, not pushed.
  REQUIRE(testutil::WaitFor(
      [&] {
        absl::MutexLock lock(&mu);
        return running == 2 && DescribeQueue(stub, "slots", true).backlog_count() == 3;
      },
      absl::Seconds(20)));
  {
    absl::MutexLock lock(&mu);
    release = true;
  }
  for (auto& handle : handles) {
    REQUIRE(fresh.client->GetResult<std::string>(handle, absl::Seconds(30)).value() == "kiln");
  }
  CHECK(most == 2);
  CHECK(orchestrator.RpcCount("PollActivityTaskQueue").value() == 0);
  workflows->Stop();
  activities.Stop();
}

sdk::Task<absl::StatusOr<Payloads>> ShortActivity(sdk::WorkflowContext& ctx, Payloads input) {
  sdk::ActivityOptions options;
  options.start_to_close_timeout = absl::Seconds(2);
  ToProto(absl::Milliseconds(100), options.retry_policy.mutable_initial_interval());
  co_return co_await ctx.ExecuteActivity("Echo", input, options);
}

TEST_CASE(
    "A task pushed on a stream that breaks is retried after its timeout and run once at a time") {
  Fresh fresh;
  auto& orchestrator = fresh.orchestrator;
  auto& stub = orchestrator.connection().workflow_service();
  sdk::WorkflowWorker workflows(orchestrator.connection(), "break",
                                {.identity = "wf", .pollers = 1});
  workflows.Register("ShortActivity", ShortActivity);
  workflows.Start();

  auto raw =
      std::make_unique<RawStream>(stub, api::WORKER_STREAM_KIND_ACTIVITY, "break", "lost", 1);
  auto handle = fresh.client->StartWorkflow({.id = "break-1", .task_queue = "break"},
                                            "ShortActivity", sdk::ToPayloads(std::string("kiln")));
  REQUIRE(handle.ok());
  auto lost = raw->ReadTasks<api::PollActivityTaskQueueResponse>(1);
  REQUIRE(lost.size() == 1);
  CHECK(lost[0].attempt() == 1);
  const absl::Time pushed = absl::Now();
  // The worker goes away with the task: the stream breaks.
  raw->context.TryCancel();
  (void)raw->Finish();
  raw.reset();

  absl::Mutex mu;
  std::vector<std::pair<int, absl::Time>> runs;
  sdk::ActivityWorker activities(orchestrator.connection(), "break",
                                 {.identity = "found", .pollers = 1});
  REQUIRE(
      activities
          .Register("Echo",
                    [&](sdk::ActivityContext& ctx, const Payloads& in) -> absl::StatusOr<Payloads> {
                      absl::MutexLock lock(&mu);
                      runs.emplace_back(ctx.info().attempt, absl::Now());
                      return in;
                    })
          .ok());
  REQUIRE(activities.Start().ok());
  REQUIRE(fresh.client->GetResult<std::string>(*handle, absl::Seconds(30)).value() == "kiln");
  absl::MutexLock lock(&mu);
  REQUIRE(runs.size() == 1);
  // Not lost, and not handed out again while the first attempt could still be running.
  CHECK(runs[0].first == 2);
  CHECK(runs[0].second - pushed >= absl::Milliseconds(1500));
  workflows.Stop();
  activities.Stop();
}

TEST_CASE(
    "An activity's result reaches a restarted orchestrator once, its stream broken meanwhile") {
  Fresh fresh;
  auto& orchestrator = fresh.orchestrator;
  auto workflows = OneActivityWorkflows(orchestrator, "restart");
  absl::Mutex mu;
  bool entered = false, release = false;
  sdk::ActivityWorker activities(orchestrator.connection(), "restart",
                                 {.identity = "act", .pollers = 1});
  REQUIRE(activities
              .Register("Echo",
                        [&](sdk::ActivityContext&, const Payloads& in) -> absl::StatusOr<Payloads> {
                          absl::MutexLock lock(&mu);
                          entered = true;
                          mu.Await(absl::Condition(&release));
                          return in;
                        })
              .ok());
  REQUIRE(activities.Start().ok());
  auto handle = fresh.client->StartWorkflow({.id = "restart-1", .task_queue = "restart"},
                                            "OneActivity", sdk::ToPayloads(std::string("kiln")));
  REQUIRE(handle.ok());
  {
    absl::MutexLock lock(&mu);
    REQUIRE(mu.AwaitWithTimeout(absl::Condition(&entered), absl::Seconds(20)));
  }
  // The stream the activity came on breaks while it runs; its result goes on a new stream, or
  // by the unary call when none is up yet, and the engine records it once.
  orchestrator.Kill();
  REQUIRE(orchestrator.Start().ok());
  {
    absl::MutexLock lock(&mu);
    release = true;
  }
  REQUIRE(fresh.client->GetResult<std::string>(*handle, absl::Seconds(30)).value() == "kiln");
  CHECK(orchestrator.RpcCount("RespondActivityTaskCompleted").value() +
            orchestrator.RpcCount("WorkerStream.RespondActivityTaskCompleted").value() ==
        1);
  workflows->Stop();
  activities.Stop();
}

TEST_CASE("An activity result over the engine's limit fails the activity, not retried") {
  Fresh fresh;
  auto& orchestrator = fresh.orchestrator;
  auto workflows = OneActivityWorkflows(orchestrator, "huge");
  std::atomic<int> runs{0};
  sdk::ActivityWorker activities(orchestrator.connection(), "huge",
                                 {.identity = "act", .pollers = 1});
  REQUIRE(activities
              .Register("Echo",
                        [&](sdk::ActivityContext&, const Payloads&) -> absl::StatusOr<Payloads> {
                          ++runs;
                          return sdk::ToPayloads(std::string(3 << 20, 'x'));  // over 2 MiB
                        })
              .ok());
  REQUIRE(activities.Start().ok());
  auto handle = fresh.client->StartWorkflow({.id = "huge-1", .task_queue = "huge"}, "OneActivity",
                                            sdk::ToPayloads(std::string("kiln")));
  REQUIRE(handle.ok());
  absl::StatusOr<std::string> result =
      fresh.client->GetResult<std::string>(*handle, absl::Seconds(30));
  REQUIRE_FALSE(result.ok());
  CHECK_THAT(std::string(result.status().message()), Catch::Contains("ResultRejected"));
  // Refused on the stream, reported as a failure that is not retried.
  CHECK(runs.load() == 1);
  CHECK(orchestrator.RpcCount("WorkerStream.RespondActivityTaskCompleted").value() == 1);
  CHECK(orchestrator.RpcCount("WorkerStream.RespondActivityTaskFailed").value() == 1);
  workflows->Stop();
  activities.Stop();
}

TEST_CASE("An exclusive queue held on a stream refuses another identity's stream") {
  Fresh fresh;
  auto& stub = fresh.orchestrator.connection().workflow_service();
  RawStream holder(stub, api::WORKER_STREAM_KIND_ACTIVITY, "solo", "holder", 1, /*exclusive=*/true);
  REQUIRE(testutil::WaitFor(
      [&] { return DescribeQueue(stub, "solo", true).exclusive_holder() == "holder"; },
      absl::Seconds(10)));
  RawStream other(stub, api::WORKER_STREAM_KIND_ACTIVITY, "solo", "other", 1, /*exclusive=*/true);
  grpc::Status refused = other.Finish();
  CHECK(refused.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
  CHECK(refused.error_message().find("holder") != std::string::npos);
  CHECK(DescribeQueue(stub, "solo", true).exclusive_holder() == "holder");
  holder.context.TryCancel();
  (void)holder.Finish();
}

TEST_CASE("A worker token opens streams on its own queues only") {
  Fresh fresh;
  auto& orchestrator = fresh.orchestrator;
  auto key = auth::TokenKey::Load(orchestrator.key_file());
  REQUIRE(key.ok());
  auth::Claims claims;
  claims.scope = auth::Scope::kWorker;
  claims.queues = {"mine"};
  claims.subject = "worker_stream_test";
  claims.issued = absl::Now();
  claims.expiry = claims.issued + absl::Hours(1);
  auto token = key->Mint(claims);
  REQUIRE(token.ok());
  sdk::Connection anonymous(orchestrator.address());
  auto& stub = anonymous.workflow_service();

  RawStream other(stub, api::WORKER_STREAM_KIND_WORKFLOW, "theirs", "w", 1, false, *token);
  grpc::Status refused = other.Finish();
  CHECK(refused.error_code() == grpc::StatusCode::PERMISSION_DENIED);

  RawStream none(stub, api::WORKER_STREAM_KIND_WORKFLOW, "mine", "w", 1);
  CHECK(none.Finish().error_code() == grpc::StatusCode::UNAUTHENTICATED);

  RawStream mine(stub, api::WORKER_STREAM_KIND_WORKFLOW, "mine", "w", 1, false, *token);
  REQUIRE(testutil::StartWorkflow(orchestrator.connection().workflow_service(), "mine-1", "steps",
                                  "mine", "1")
              .ok());
  CHECK(mine.ReadTasks<api::PollWorkflowTaskQueueResponse>(1).size() == 1);
  mine.context.TryCancel();
  (void)mine.Finish();
}

TEST_CASE("A message of more completions than a stream may have in flight ends the stream") {
  Fresh fresh;
  auto& stub = fresh.orchestrator.connection().workflow_service();
  RawStream stream(stub, api::WORKER_STREAM_KIND_ACTIVITY, "flood", "w", 1);
  // Empty completions cost the sender 2 bytes each: an 8 MiB message would carry millions,
  // each an executor task and an answer queued for the stream.
  api::WorkerStreamRequest flood;
  for (int i = 0; i < 200000; ++i) flood.add_completions()->set_seq(i);
  REQUIRE(stream.stream->Write(flood));
  grpc::Status status = stream.Finish();
  CHECK(status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(status.error_message().find("at most 1000 completions") != std::string::npos);
}

TEST_CASE("A queue holds a quarter of the streams, workers refused one poll instead") {
  Fresh fresh;
  auto& orchestrator = fresh.orchestrator;
  auto& stub = orchestrator.connection().workflow_service();
  // kMaxWorkerStreams and kMaxWorkerStreamsPerQueue (orchestrator/frontend/worker_stream.h).
  constexpr int kMaxWorkerStreams = 1000;
  constexpr int kPerQueue = 250;
  std::vector<std::unique_ptr<RawStream>> hog;
  for (int q = 0; q < kMaxWorkerStreams / kPerQueue; ++q) {
    const std::string queue = absl::StrCat("hog-", q);
    for (int i = 0; i < kPerQueue; ++i) {
      hog.push_back(std::make_unique<RawStream>(stub, api::WORKER_STREAM_KIND_ACTIVITY, queue,
                                                absl::StrCat("hog-", i), 1));
    }
    // Each stream's credit is a poll of its identity: all of them are open.
    REQUIRE(testutil::WaitFor(
        [&] { return DescribeQueue(stub, queue, true).pollers_size() == kPerQueue; },
        absl::Seconds(30)));
    if (q == 0) {
      RawStream more(stub, api::WORKER_STREAM_KIND_ACTIVITY, queue, "hog-more", 1);
      grpc::Status status = more.Finish();
      REQUIRE(status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
      CHECK(status.error_message().find("on this task queue") != std::string::npos);
    }
  }
  RawStream refused(stub, api::WORKER_STREAM_KIND_ACTIVITY, "hog-more", "hog", 1);
  grpc::Status status = refused.Finish();
  REQUIRE(status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  CHECK(status.error_message().find("too many worker streams (at most") != std::string::npos);

  // Workers of another queue are refused a stream and poll instead: their workflows run.
  sdk::Connection wf_connection(orchestrator.address(), {.token = orchestrator.admin_token()});
  sdk::Connection act_connection(orchestrator.address(), {.token = orchestrator.admin_token()});
  sdk::ActivityWorker activities(act_connection, "other", {.identity = "act", .pollers = 1});
  REQUIRE(activities.Register("Echo", Echo).ok());
  REQUIRE(activities.Start().ok());
  auto workflows = OneActivityWorkflows(orchestrator, "other");
  auto handle = fresh.client->StartWorkflow({.id = "polled", .task_queue = "other"}, "OneActivity",
                                            sdk::ToPayloads(std::string("kiln")));
  REQUIRE(handle.ok());
  CHECK(fresh.client->GetResult<std::string>(*handle, absl::Seconds(30)).value() == "kiln");
  CHECK(orchestrator.RpcCount("PollWorkflowTaskQueue").value() > 0);
  CHECK(orchestrator.RpcCount("PollActivityTaskQueue").value() > 0);
  workflows->Stop();
  activities.Stop();
  for (auto& stream : hog) stream->context.TryCancel();
  for (auto& stream : hog) (void)stream->Finish();
}

TEST_CASE("Credits past the bound end the stream, however large the grant") {
  Fresh fresh;
  auto& stub = fresh.orchestrator.connection().workflow_service();
  for (int grant : {1000, std::numeric_limits<int32_t>::max()}) {
    RawStream raw(stub, api::WORKER_STREAM_KIND_WORKFLOW, "credits", "raw", /*credits=*/1);
    raw.Grant(grant);
    grpc::Status status = raw.Finish();
    CHECK(status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(status.error_message().find("at most 1000 credits") != std::string::npos);
  }
}

}  // namespace
}  // namespace kiln
