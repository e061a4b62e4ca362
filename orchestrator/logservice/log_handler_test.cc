// LogService over real gRPC in-process, on MemoryStore (behind a fault injector) and a
// FakeClock: appends and reads, follows that join mid-stream, slow followers fed back from the
// store, the idle limit, cancellation and shutdown, sdk::LogWriter's chunks and retries through
// store faults, and the errors of bad requests.
#include "orchestrator/logservice/log_handler.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <catch2/catch.hpp>

#include <thread>

#include "absl/strings/str_cat.h"
#include "orchestrator/logs/log_layout.h"
#include "orchestrator/logs/log_test_util.h"
#include "orchestrator/persistence/fault_injecting_store.h"
#include "orchestrator/persistence/memory_store.h"
#include "sdk/log_writer.h"
#include "tests/testutil/process.h"

namespace kiln::orchestrator {
namespace {

namespace api = ::kiln::api::v1;
using testutil::WaitFor;

constexpr absl::Duration kWait = absl::Seconds(20);

class Fixture {
 public:
  explicit Fixture(LogOptions options = {}) {
    REQUIRE(testing::PutRun(store_, "default", "wf", "run-1").ok());
    handler_ = std::make_unique<LogHandler>(
        LogDeps{&faults_, &clock_, &executor_, &registry_, "default"}, options);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(handler_.get());
    server_ = builder.BuildAndStart();
    REQUIRE(port != 0);
    address_ = absl::StrCat("127.0.0.1:", port);
    stub_ =
        api::LogService::NewStub(grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
  }
  ~Fixture() {
    handler_->Shutdown();
    server_->Shutdown();
    server_->Wait();
    handler_.reset();
  }

  api::LogService::Stub& stub() { return *stub_; }
  LogHandler& handler() { return *handler_; }
  FakeClock& clock() { return clock_; }
  Store& store() { return store_; }
  FaultInjectingStore& faults() { return faults_; }
  const std::string& address() const { return address_; }

  absl::StatusOr<int64_t> Append(const std::string& data, int64_t sequence = 0,
                                 const std::string& stream = "build") {
    api::AppendLogRequest request;
    request.mutable_execution()->set_workflow_id("wf");
    request.set_stream(stream);
    request.set_sequence(sequence);
    request.set_data(data);
    api::AppendLogResponse response;
    grpc::ClientContext ctx;
    grpc::Status status = stub_->AppendLog(&ctx, request, &response);
    if (!status.ok())
      return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                          status.error_message());
    return response.offset();
  }

  double Gauge(const std::string& name) {
    for (const auto& family : registry_.Collect()) {
      if (family.name == name && !family.metric.empty()) return family.metric[0].gauge.value;
    }
    return -1;
  }

 private:
  MemoryStore store_;
  FaultInjectingStore faults_{store_};
  std::string address_;
  FakeClock clock_;
  prometheus::Registry registry_;
  Executor executor_{"logs-test", 4, 1000};
  std::unique_ptr<LogHandler> handler_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<api::LogService::Stub> stub_;
};

api::ReadLogRequest Read(int64_t from, bool follow, const std::string& stream = "build") {
  api::ReadLogRequest request;
  request.mutable_execution()->set_workflow_id("wf");
  request.set_stream(stream);
  request.set_from_offset(from);
  request.set_follow(follow);
  return request;
}

// A ReadLog call on its own thread, checking that every chunk continues where the last ended.
class Reader {
 public:
  Reader(api::LogService::Stub& stub, api::ReadLogRequest request) : next_(request.from_offset()) {
    thread_ = std::thread([this, &stub, request] {
      auto stream = stub.ReadLog(&ctx_, request);
      api::ReadLogResponse response;
      while (stream->Read(&response)) {
        absl::MutexLock lock(&mu_);
        if (response.offset() != next_) gapless_ = false;
        data_ += response.data();
        next_ = response.offset() + static_cast<int64_t>(response.data().size());
      }
      grpc::Status status = stream->Finish();
      absl::MutexLock lock(&mu_);
      status_ = status;
      finished_ = true;
    });
  }
  ~Reader() {
    ctx_.TryCancel();
    thread_.join();
  }

  std::string data() {
    absl::MutexLock lock(&mu_);
    return data_;
  }
  bool gapless() {
    absl::MutexLock lock(&mu_);
    return gapless_;
  }
  bool finished() {
    absl::MutexLock lock(&mu_);
    return finished_;
  }
  grpc::Status status() {
    absl::MutexLock lock(&mu_);
    return status_;
  }
  bool WaitForData(const std::string& expected) {
    return WaitFor([&] { return data() == expected; }, kWait);
  }
  bool WaitForEnd() {
    return WaitFor([&] { return finished(); }, kWait);
  }
  void Cancel() { ctx_.TryCancel(); }

 private:
  grpc::ClientContext ctx_;
  absl::Mutex mu_;
  std::string data_ ABSL_GUARDED_BY(mu_);
  int64_t next_ ABSL_GUARDED_BY(mu_);
  bool gapless_ ABSL_GUARDED_BY(mu_) = true;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

TEST_CASE("AppendLog answers offsets and ReadLog reads back from any offset") {
  Fixture f;
  REQUIRE(f.Append("one\n", 1).value() == 0);
  REQUIRE(f.Append("two\n", 2).value() == 4);
  REQUIRE(f.Append("two\n", 2).value() == 4);  // a retry: acknowledged, not written again
  REQUIRE(f.Append("three\n", 3).value() == 8);
  {
    Reader all(f.stub(), Read(0, false));
    REQUIRE(all.WaitForEnd());
    REQUIRE(all.status().ok());
    REQUIRE(all.data() == "one\ntwo\nthree\n");
    REQUIRE(all.gapless());
  }
  {
    Reader middle(f.stub(), Read(5, false));
    REQUIRE(middle.WaitForEnd());
    REQUIRE(middle.data() == "wo\nthree\n");
  }
  {
    Reader past(f.stub(), Read(100, false));
    REQUIRE(past.WaitForEnd());
    REQUIRE(past.status().ok());
    REQUIRE(past.data().empty());
  }
  REQUIRE(WaitFor([&] { return f.handler().open_reads() == 0; }, kWait));
}

TEST_CASE("A follower that joins mid-stream gets the past, then the live tail, once each") {
  Fixture f;
  std::string expected;
  for (int i = 0; i < 50; ++i) {
    std::string line = absl::StrCat("past ", i, "\n");
    REQUIRE(f.Append(line, i + 1).ok());
    expected += line;
  }
  Reader follower(f.stub(), Read(0, true));
  REQUIRE(follower.WaitForData(expected));
  REQUIRE(f.Gauge("kiln_log_followers") == 1);
  // Appends racing with a second follower's start: it registers before it reads the store.
  Reader late(f.stub(), Read(7, true));
  for (int i = 0; i < 200; ++i) {
    std::string line = absl::StrCat("live ", i, "\n");
    REQUIRE(f.Append(line, 100 + i).ok());
    expected += line;
  }
  REQUIRE(follower.WaitForData(expected));
  REQUIRE(late.WaitForData(expected.substr(7)));
  REQUIRE(follower.gapless());
  REQUIRE(late.gapless());
  REQUIRE(!follower.finished());
  follower.Cancel();
  late.Cancel();
  REQUIRE(follower.WaitForEnd());
  REQUIRE(follower.status().error_code() == grpc::StatusCode::CANCELLED);
  REQUIRE(WaitFor([&] { return f.handler().open_reads() == 0; }, kWait));
  REQUIRE(f.handler().active_streams() == 0);
  REQUIRE(f.Gauge("kiln_log_followers") == 0);
}

TEST_CASE("A follower whose queue overflows is fed from the store and misses nothing") {
  LogOptions options;
  options.follower_queue_bytes = 8;  // almost every live chunk is dropped and read back
  Fixture f(options);
  Reader follower(f.stub(), Read(0, true));
  REQUIRE(WaitFor([&] { return f.handler().active_streams() == 1; }, kWait));
  std::string expected;
  for (int i = 0; i < 300; ++i) {
    std::string chunk = absl::StrCat("chunk ", i, " ", std::string(i % 17, 'x'), "\n");
    REQUIRE(f.Append(chunk).ok());
    expected += chunk;
  }
  REQUIRE(follower.WaitForData(expected));
  REQUIRE(follower.gapless());
}

TEST_CASE("Appends to different streams run in parallel and stay apart") {
  Fixture f;
  std::vector<std::thread> writers;
  for (int w = 0; w < 4; ++w) {
    writers.emplace_back([&f, w] {
      for (int i = 0; i < 50; ++i) {
        REQUIRE(f.Append(absl::StrCat(w, ":", i, "\n"), i + 1, absl::StrCat("s", w)).ok());
      }
    });
  }
  for (auto& t : writers) t.join();
  for (int w = 0; w < 4; ++w) {
    std::string expected;
    for (int i = 0; i < 50; ++i) expected += absl::StrCat(w, ":", i, "\n");
    Reader reader(f.stub(), Read(0, false, absl::StrCat("s", w)));
    REQUIRE(reader.WaitForEnd());
    REQUIRE(reader.data() == expected);
  }
}

TEST_CASE("A follow ends after the idle limit without data") {
  LogOptions options;
  options.follow_idle_limit = absl::Minutes(10);
  Fixture f(options);
  REQUIRE(f.Append("x").ok());
  Reader follower(f.stub(), Read(0, true));
  REQUIRE(follower.WaitForData("x"));
  f.clock().Advance(absl::Minutes(9));
  REQUIRE(f.Append("y").ok());  // data resets the idle time
  REQUIRE(follower.WaitForData("xy"));
  f.clock().Advance(absl::Minutes(9));
  REQUIRE(!follower.finished());
  f.clock().Advance(absl::Minutes(2));
  REQUIRE(follower.WaitForEnd());
  REQUIRE(follower.status().ok());
}

TEST_CASE("Shutdown ends follows with UNAVAILABLE and refuses new reads") {
  Fixture f;
  REQUIRE(f.Append("x").ok());
  Reader follower(f.stub(), Read(0, true));
  REQUIRE(follower.WaitForData("x"));
  f.handler().Shutdown();
  REQUIRE(follower.WaitForEnd());
  REQUIRE(follower.status().error_code() == grpc::StatusCode::UNAVAILABLE);
  Reader refused(f.stub(), Read(0, false));
  REQUIRE(refused.WaitForEnd());
  REQUIRE(refused.status().error_code() == grpc::StatusCode::UNAVAILABLE);
  REQUIRE(f.Append("appends still work").ok());
}

TEST_CASE("LogWriter sends line-aligned chunks, and a retry after a lost answer is stored once") {
  Fixture f;
  Reader follower(f.stub(), Read(0, true));
  REQUIRE(WaitFor([&] { return f.handler().active_streams() == 1; }, kWait));
  sdk::Connection connection(f.address());
  sdk::LogWriterOptions options;
  options.chunk_bytes = 64;
  options.initial_backoff = absl::Milliseconds(1);
  options.first_sequence = 100;
  kiln::api::v1::WorkflowExecution run;
  run.set_workflow_id("wf");
  sdk::LogWriter writer(connection, run, "build", options);

  std::string expected;
  for (int i = 0; i < 20; ++i) absl::StrAppend(&expected, "line ", i, " of the build output\n");
  // Stored, but answered UNAVAILABLE ("outcome unknown"): the retry must not store it again.
  f.faults().FailNextCommits(1, FaultInjectingStore::CommitFaultMode::kAfterApply);
  REQUIRE(writer.Append(expected.substr(0, 300)).ok());
  // Refused before it was stored: the retry stores it.
  f.faults().FailNextCommits(1, FaultInjectingStore::CommitFaultMode::kBeforeApply);
  REQUIRE(writer.Append(expected.substr(300)).ok());
  REQUIRE(writer.Flush().ok());
  REQUIRE(writer.retries() == 2);
  REQUIRE(writer.offset() == static_cast<int64_t>(expected.size()));
  REQUIRE(follower.WaitForData(expected));
  REQUIRE(follower.gapless());

  // Every stored chunk ends a line and fits the chunk size; one sequence number each.
  auto page = ReadLogChunks(f.store(), "run-1", "build", 0, 1000, 1 << 20);
  REQUIRE(page.ok());
  std::string stored;
  for (const LogChunk& chunk : page->chunks) {
    REQUIRE(chunk.data->size() <= 64);
    REQUIRE(chunk.data->back() == '\n');
    stored += *chunk.data;
  }
  REQUIRE(stored == expected);
  auto meta = f.store().Get(Table::kLogs, log_layout::MetaKey("run-1", "build"));
  REQUIRE(log_layout::DecodeMeta(meta->value())->last_sequence ==
          100 + static_cast<int64_t>(page->chunks.size()) - 1);

  // A refused send keeps its data, up to the writer's limit.
  run.set_workflow_id("missing");
  options.max_delay = absl::ZeroDuration();
  options.max_buffered_bytes = 100;
  sdk::LogWriter lost(connection, run, "build", options);
  REQUIRE(lost.Append("a line\n").code() == absl::StatusCode::kNotFound);
  REQUIRE(lost.buffered() == 7);
  REQUIRE(lost.Append(std::string(94, 'x')).code() == absl::StatusCode::kResourceExhausted);
  REQUIRE(lost.buffered() == 7);
}

TEST_CASE("Bad log requests get clear errors") {
  Fixture f;
  api::AppendLogRequest request;
  request.mutable_execution()->set_workflow_id("missing");
  request.set_stream("build");
  request.set_data("x");
  api::AppendLogResponse response;
  grpc::ClientContext ctx;
  grpc::Status status = f.stub().AppendLog(&ctx, request, &response);
  REQUIRE(status.error_code() == grpc::StatusCode::NOT_FOUND);
  REQUIRE(status.error_message() == "workflow missing not found in namespace default");

  REQUIRE(f.Append("x", 0, "").status().code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(f.Append(std::string(1 << 20, 'x')).ok());
  REQUIRE(f.Append(std::string((1 << 20) + 1, 'x')).status().code() ==
          absl::StatusCode::kInvalidArgument);

  api::ReadLogRequest read = Read(0, true);
  read.mutable_execution()->set_run_id("no-such-run");
  Reader missing(f.stub(), read);
  REQUIRE(missing.WaitForEnd());
  REQUIRE(missing.status().error_code() == grpc::StatusCode::NOT_FOUND);
  Reader negative(f.stub(), Read(-5, false));
  REQUIRE(negative.WaitForEnd());
  REQUIRE(negative.status().error_code() == grpc::StatusCode::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace kiln::orchestrator
