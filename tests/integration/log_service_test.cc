// LogService over real gRPC against a real kiln-orchestrator process: a run's log written with
// sdk::LogWriter and read back; a follower that joins mid-stream; a writer and a follower that
// carry on through orchestrator restarts (SIGTERM and SIGKILL) and end with exactly the whole
// stream; a retried append written once; and `kiln workflow logs` (also --follow).
#include <catch2/catch.hpp>

#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "kiln/api/v1/log_service.grpc.pb.h"
#include "sdk/log_writer.h"
#include "tests/testutil/http.h"
#include "tests/testutil/orchestrator.h"
#include "tests/testutil/test_worker.h"

namespace kiln {
namespace {

namespace api = ::kiln::api::v1;
using testutil::OrchestratorProcess;
using testutil::StartWorkflow;
using testutil::WaitFor;

constexpr absl::Duration kWait = absl::Seconds(60);

api::WorkflowExecution Run(const std::string& workflow_id, const std::string& run_id = "") {
  api::WorkflowExecution run;
  run.set_workflow_id(workflow_id);
  run.set_run_id(run_id);
  return run;
}

std::string Lines(const std::string& prefix, int from, int to) {
  std::string out;
  for (int i = from; i < to; ++i) absl::StrAppend(&out, prefix, " line ", i, "\n");
  return out;
}

// Reads a stream to its current end (no follow).
std::string ReadAll(api::LogService::Stub& stub, const api::WorkflowExecution& run,
                    int64_t from = 0) {
  api::ReadLogRequest request;
  *request.mutable_execution() = run;
  request.set_stream("build");
  request.set_from_offset(from);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto reader = stub.ReadLog(&ctx, request);
  std::string data;
  api::ReadLogResponse response;
  while (reader->Read(&response)) {
    REQUIRE(response.offset() == from + static_cast<int64_t>(data.size()));
    data += response.data();
  }
  REQUIRE(reader->Finish().ok());
  return data;
}

// Follows a stream on its own thread the way a careful client does: when the call breaks (an
// orchestrator restart) it follows again from the offset after the last byte received. Counts
// every byte it gets, so a repeat or a gap shows.
class Follower {
 public:
  Follower(std::shared_ptr<grpc::Channel> channel, api::WorkflowExecution run, int64_t from = 0)
      : stub_(api::LogService::NewStub(std::move(channel))), run_(std::move(run)), from_(from) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~Follower() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
      if (ctx_ != nullptr) ctx_->TryCancel();
    }
    thread_.join();
  }

  std::string data() {
    absl::MutexLock lock(&mu_);
    return data_;
  }
  int calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  bool gapless() {
    absl::MutexLock lock(&mu_);
    return gapless_;
  }
  int unexpected_ends() {
    absl::MutexLock lock(&mu_);
    return unexpected_ends_;
  }
  bool WaitForData(const std::string& expected) {
    return WaitFor([&] { return data() == expected; }, kWait);
  }

 private:
  void Loop() {
    for (;;) {
      grpc::ClientContext ctx;
      // Waits for the orchestrator to be back instead of failing at once while it is down.
      ctx.set_wait_for_ready(true);
      api::ReadLogRequest request;
      *request.mutable_execution() = run_;
      request.set_stream("build");
      request.set_follow(true);
      {
        absl::MutexLock lock(&mu_);
        if (stop_) return;
        ctx_ = &ctx;
        ++calls_;
        request.set_from_offset(from_ + static_cast<int64_t>(data_.size()));
      }
      auto reader = stub_->ReadLog(&ctx, request);
      api::ReadLogResponse response;
      while (reader->Read(&response)) {
        absl::MutexLock lock(&mu_);
        if (response.offset() != from_ + static_cast<int64_t>(data_.size())) gapless_ = false;
        data_ += response.data();
      }
      grpc::Status status = reader->Finish();
      absl::MutexLock lock(&mu_);
      ctx_ = nullptr;
      if (stop_) return;
      // Only a restart may break a follow here: UNAVAILABLE, or CANCELLED for a call that
      // reached the orchestrator while it was shutting down.
      if (status.error_code() != grpc::StatusCode::UNAVAILABLE &&
          status.error_code() != grpc::StatusCode::CANCELLED) {
        ++unexpected_ends_;
      }
    }
  }

  std::unique_ptr<api::LogService::Stub> stub_;
  const api::WorkflowExecution run_;
  const int64_t from_;
  absl::Mutex mu_;
  std::string data_ ABSL_GUARDED_BY(mu_);
  grpc::ClientContext* ctx_ ABSL_GUARDED_BY(mu_) = nullptr;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  bool gapless_ ABSL_GUARDED_BY(mu_) = true;
  int unexpected_ends_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

TEST_CASE("A run's log is written with LogWriter and read back, and retries are not repeated") {
  testutil::TempDir dir;
  OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());
  std::string run_id =
      StartWorkflow(orchestrator.connection().workflow_service(), "build-1", "steps", "q", "1")
          .value();
  auto stub = api::LogService::NewStub(orchestrator.connection().channel());

  sdk::LogWriterOptions options;
  options.chunk_bytes = 100;  // several chunks, each ending at a line's end
  sdk::LogWriter writer(orchestrator.connection(), Run("build-1"), "build", options);
  const std::string expected = Lines("build", 0, 50) + "no newline at the end";
  REQUIRE(writer.Append(expected).ok());
  REQUIRE(writer.buffered() > 0);  // the partial line waits
  REQUIRE(writer.Flush().ok());
  REQUIRE(writer.buffered() == 0);
  REQUIRE(writer.offset() == static_cast<int64_t>(expected.size()));
  REQUIRE(ReadAll(*stub, Run("build-1")) == expected);
  REQUIRE(ReadAll(*stub, Run("build-1", run_id), 10) == expected.substr(10));

  // A retried append (same sequence number) is acknowledged at its offset and stored once.
  api::AppendLogRequest append;
  *append.mutable_execution() = Run("build-1", run_id);
  append.set_stream("build");
  append.set_sequence(std::numeric_limits<int64_t>::max() - 1);  // above the writer's numbers
  append.set_data("retried\n");
  for (int attempt = 0; attempt < 3; ++attempt) {
    grpc::ClientContext ctx;
    api::AppendLogResponse response;
    REQUIRE(stub->AppendLog(&ctx, append, &response).ok());
    REQUIRE(response.offset() == static_cast<int64_t>(expected.size()));
  }
  REQUIRE(ReadAll(*stub, Run("build-1")) == expected + "retried\n");

  // Errors name what is wrong.
  grpc::ClientContext ctx;
  api::AppendLogResponse response;
  append.mutable_execution()->set_workflow_id("no-such-workflow");
  append.mutable_execution()->clear_run_id();
  grpc::Status missing = stub->AppendLog(&ctx, append, &response);
  REQUIRE(missing.error_code() == grpc::StatusCode::NOT_FOUND);
  REQUIRE(missing.error_message() == "workflow no-such-workflow not found in namespace default");

  auto metrics = testutil::HttpGet("127.0.0.1", orchestrator.metrics_port(), "/metrics").value();
  REQUIRE(metrics.find(absl::StrCat("kiln_log_appended_bytes_total ", expected.size() + 8)) !=
          std::string::npos);
  REQUIRE(metrics.find("kiln_log_appends_total{result=\"duplicate\"} 2") != std::string::npos);
  REQUIRE(orchestrator.Stop().value() == 0);
}

TEST_CASE("A follower that joins mid-stream gets the past, then the live tail, once each") {
  testutil::TempDir dir;
  OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());
  REQUIRE(StartWorkflow(orchestrator.connection().workflow_service(), "build-2", "steps", "q", "1")
              .ok());
  sdk::LogWriterOptions options;
  options.max_delay = absl::ZeroDuration();  // every complete line goes out at once
  sdk::LogWriter writer(orchestrator.connection(), Run("build-2"), "build", options);
  std::string expected = Lines("past", 0, 100);
  REQUIRE(writer.Append(expected).ok());

  Follower follower(orchestrator.connection().channel(), Run("build-2"));
  REQUIRE(follower.WaitForData(expected));
  for (int i = 0; i < 100; ++i) {
    std::string line = Lines("live", i, i + 1);
    REQUIRE(writer.Append(line).ok());
    expected += line;
  }
  REQUIRE(follower.WaitForData(expected));
  // One joining now, from the middle of a line, while appends go on.
  Follower late(orchestrator.connection().channel(), Run("build-2"), 1234);
  for (int i = 100; i < 150; ++i) {
    std::string line = Lines("live", i, i + 1);
    REQUIRE(writer.Append(line).ok());
    expected += line;
  }
  REQUIRE(follower.WaitForData(expected));
  REQUIRE(late.WaitForData(expected.substr(1234)));
  REQUIRE(follower.gapless());
  REQUIRE(late.gapless());
  REQUIRE(follower.calls() == 1);
  REQUIRE(late.calls() == 1);
  auto metrics = testutil::HttpGet("127.0.0.1", orchestrator.metrics_port(), "/metrics").value();
  REQUIRE(metrics.find("kiln_log_followers 2") != std::string::npos);
}

TEST_CASE("A writer and a follower carry on through orchestrator restarts, losing nothing") {
  testutil::TempDir dir;
  OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());
  std::string run_id =
      StartWorkflow(orchestrator.connection().workflow_service(), "build-3", "steps", "q", "1")
          .value();
  sdk::LogWriterOptions options;
  options.max_delay = absl::ZeroDuration();
  options.initial_backoff = absl::Milliseconds(20);
  options.max_backoff = absl::Milliseconds(200);
  sdk::LogWriter writer(orchestrator.connection(), Run("build-3", run_id), "build", options);
  std::string expected = Lines("before", 0, 200);
  REQUIRE(writer.Append(expected).ok());
  Follower follower(orchestrator.connection().channel(), Run("build-3", run_id));
  REQUIRE(follower.WaitForData(expected));

  for (bool kill : {false, true}) {
    INFO((kill ? "SIGKILL" : "SIGTERM"));
    if (kill) {
      orchestrator.Kill();
    } else {
      REQUIRE(orchestrator.Stop().value() == 0);
    }
    // The writer goes on while the orchestrator is down: its appends are retried.
    const int64_t retries = writer.retries();
    const std::string more = Lines(kill ? "killed" : "stopped", 0, 100);
    absl::Status written;
    std::thread writing([&] { written = writer.Append(more); });
    REQUIRE(WaitFor([&] { return writer.retries() > retries; }, kWait));
    REQUIRE(orchestrator.Start().ok());
    writing.join();
    REQUIRE(written.ok());
    expected += more;
    REQUIRE(follower.WaitForData(expected));
  }
  REQUIRE(follower.gapless());
  REQUIRE(follower.unexpected_ends() == 0);
  REQUIRE(follower.calls() >= 3);  // it reconnected after each restart
  auto stub = api::LogService::NewStub(orchestrator.connection().channel());
  REQUIRE(ReadAll(*stub, Run("build-3")) == expected);
}

TEST_CASE("kiln workflow logs prints a run's log, and follows it until the run closes") {
  testutil::TempDir dir;
  OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());
  auto& workflows = orchestrator.connection().workflow_service();
  REQUIRE(StartWorkflow(workflows, "build-cli", "steps", "q", "1").ok());
  sdk::LogWriterOptions options;
  options.max_delay = absl::ZeroDuration();
  sdk::LogWriter writer(orchestrator.connection(), Run("build-cli"), "build", options);
  REQUIRE(writer.Append("first line\n").ok());

  std::string out;
  auto code = testutil::RunCommand(
      testutil::BinaryPath("kiln"),
      {"--address", orchestrator.address(), "--token-file", orchestrator.admin_token_file(),
       "workflow", "logs", "--id", "build-cli", "--from", "6"},
      &out);
  REQUIRE(code.value() == 0);
  REQUIRE(out == "line\n");

  auto follow = testutil::Process::Start(
      testutil::BinaryPath("kiln"),
      {"--address", orchestrator.address(), "--token-file", orchestrator.admin_token_file(),
       "workflow", "logs", "--id", "build-cli", "--follow"},
      dir.path() + "/follow.log");
  REQUIRE(follow.ok());
  REQUIRE(WaitFor([&] { return (*follow)->Output() == "first line\n"; }, kWait));
  REQUIRE(writer.Append("second line\n").ok());
  REQUIRE(WaitFor([&] { return (*follow)->Output() == "first line\nsecond line\n"; }, kWait));
  REQUIRE((*follow)->Running());

  // The run closes: the command prints what is left and exits 0.
  REQUIRE(writer.Append("last line\n").ok());
  api::TerminateWorkflowExecutionRequest terminate;
  *terminate.mutable_workflow_execution() = Run("build-cli");
  terminate.set_reason("test over");
  grpc::ClientContext ctx;
  api::TerminateWorkflowExecutionResponse terminated;
  REQUIRE(workflows.TerminateWorkflowExecution(&ctx, terminate, &terminated).ok());
  auto exit_code = (*follow)->Wait(kWait);
  INFO((*follow)->Output());
  REQUIRE(exit_code.value() == 0);
  REQUIRE((*follow)->Output() == "first line\nsecond line\nlast line\n");
}

}  // namespace
}  // namespace kiln
