// The real orchestrator on a really full filesystem (a small tmpfs this test mounts, so root
// only): writes answer UNAVAILABLE with the reason, reads go on, health and metrics say so, the
// process does not abort, writes resume by themselves once space returns, and a start on the
// still-full disk serves reads instead of crashing.
#include <sys/mount.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "kiln/api/v1/workflow_service.grpc.pb.h"
#include "tests/testutil/http.h"
#include "tests/testutil/orchestrator.h"

namespace kiln {
namespace {

namespace api = ::kiln::api::v1;

// A tmpfs mounted at `dir` for the test's lifetime.
class SmallFilesystem {
 public:
  SmallFilesystem(const std::string& dir, int size_mib) : dir_(dir) {
    std::filesystem::create_directories(dir);
    mounted_ = ::mount("tmpfs", dir.c_str(), "tmpfs", 0,
                       absl::StrCat("size=", size_mib, "m").c_str()) == 0;
  }
  ~SmallFilesystem() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  // Writes zeros into `name` until the filesystem is full.
  void Fill(const std::string& name) {
    std::ofstream out(dir_ + "/" + name, std::ios::binary);
    const std::string chunk(64 << 10, '\0');
    while (out.write(chunk.data(), chunk.size())) out.flush();
  }
  void Free(const std::string& name) { std::filesystem::remove(dir_ + "/" + name); }

 private:
  std::string dir_;
  bool mounted_ = false;
};

grpc::Status Start(api::WorkflowService::Stub& stub, const std::string& id,
                   const std::string& input = "") {
  api::StartWorkflowExecutionRequest request;
  request.set_workflow_id(id);
  request.mutable_workflow_type()->set_name("steps");
  request.mutable_task_queue()->set_name("full-disk");
  if (!input.empty()) {
    api::Payload* payload = request.mutable_input()->add_payloads();
    payload->set_data(input);
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  api::StartWorkflowExecutionResponse response;
  return stub.StartWorkflowExecution(&ctx, request, &response);
}

grpc::Status Describe(api::WorkflowService::Stub& stub, const std::string& id) {
  api::DescribeWorkflowExecutionRequest request;
  request.mutable_execution()->set_workflow_id(id);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  api::DescribeWorkflowExecutionResponse response;
  return stub.DescribeWorkflowExecution(&ctx, request, &response);
}

api::GetSystemInfoResponse SystemInfo(api::WorkflowService::Stub& stub) {
  grpc::ClientContext ctx;
  api::GetSystemInfoResponse response;
  grpc::Status status = stub.GetSystemInfo(&ctx, {}, &response);
  INFO(status.error_message());
  REQUIRE(status.ok());
  return response;
}

grpc::health::v1::HealthCheckResponse::ServingStatus Health(testutil::OrchestratorProcess& o,
                                                            const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(o.connection().channel());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = stub->Check(&ctx, request, &response);
  INFO(status.error_message());
  REQUIRE(status.ok());
  return response.status();
}

std::string Metrics(testutil::OrchestratorProcess& o) {
  auto body = testutil::HttpGet("127.0.0.1", o.metrics_port(), "/metrics");
  INFO(body.status().ToString());
  REQUIRE(body.ok());
  return *body;
}

constexpr auto kServing = grpc::health::v1::HealthCheckResponse::SERVING;
constexpr auto kNotServing = grpc::health::v1::HealthCheckResponse::NOT_SERVING;

TEST_CASE("A full disk stops the orchestrator's writes, not the orchestrator") {
  testutil::TempDir dir;
  const std::string data = dir.path() + "/data";  // the orchestrator's log goes beside it
  SmallFilesystem disk(data, 48);
  if (!disk.mounted()) {
    WARN("cannot mount a tmpfs here (not root?): the full-disk test is not run");
    return;
  }
  // No reserve: the writes meet the full disk in RocksDB itself, the case that aborted.
  testutil::OrchestratorProcess orchestrator(data, {"--min-free-disk-mb", "0"});
  REQUIRE(orchestrator.Start().ok());
  auto& stub = orchestrator.connection().workflow_service();
  REQUIRE(Start(stub, "before").ok());

  disk.Fill("filler");
  // RocksDB may still write into what it preallocated for the WAL: keep writing until a write
  // is refused.
  const std::string input(64 << 10, 'x');
  grpc::Status refused;
  for (int i = 0; i < 2000 && refused.ok(); ++i) {
    refused = Start(stub, absl::StrCat("filling-", i), input);
  }
  INFO(refused.error_message());
  REQUIRE(refused.error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK(absl::StrContains(refused.error_message(), "No space left on device"));

  grpc::Status again = Start(stub, "refused");
  CHECK(again.error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK(absl::StrContains(again.error_message(), "refuses writes"));
  CHECK(Describe(stub, "before").ok());
  api::GetSystemInfoResponse info = SystemInfo(stub);
  CHECK(info.store_read_only());
  CHECK(absl::StrContains(info.store_read_only_reason(), "No space left on device"));
  CHECK(Health(orchestrator, "") == kServing);
  CHECK(Health(orchestrator, "kiln.store.writes") == kNotServing);
  CHECK(absl::StrContains(Metrics(orchestrator), "kiln_store_writable 0"));
  CHECK(absl::StrContains(Metrics(orchestrator), "kiln_store_write_stops_total 1"));

  // Space comes back: writes resume without a restart.
  disk.Free("filler");
  REQUIRE(testutil::WaitFor([&] { return Start(stub, "after").ok(); }, absl::Seconds(30)));
  CHECK(Describe(stub, "before").ok());
  CHECK(Health(orchestrator, "kiln.store.writes") == kServing);
  CHECK_FALSE(SystemInfo(stub).store_read_only());
  CHECK(absl::StrContains(Metrics(orchestrator), "kiln_store_writable 1"));

  // A start on a full disk serves reads instead of aborting (the crash loop under a
  // supervisor), and writes once there is room.
  REQUIRE(orchestrator.Stop().value() == 0);
  disk.Fill("filler");
  INFO(orchestrator.Log());
  REQUIRE(orchestrator.Start().ok());
  CHECK(Describe(stub, "before").ok());
  CHECK(Describe(stub, "after").ok());
  CHECK(Start(stub, "refused-at-start").error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK(SystemInfo(stub).store_read_only());
  CHECK(Health(orchestrator, "kiln.store.writes") == kNotServing);
  CHECK(absl::StrContains(orchestrator.Log(), "orchestrator.read_only"));
  disk.Free("filler");
  REQUIRE(testutil::WaitFor([&] { return Start(stub, "after-restart").ok(); }, absl::Seconds(30)));
  CHECK(Describe(stub, "filling-0").ok());
  REQUIRE(orchestrator.Stop().value() == 0);
  CHECK_FALSE(absl::StrContains(orchestrator.Log(), "Assertion"));
}

}  // namespace
}  // namespace kiln
