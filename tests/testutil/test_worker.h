// A worker for engine tests that speaks the raw WorkflowService API (no SDK): its workflows
// decide from the whole history on every task, so they are trivially deterministic.
//   "steps"  input N: runs activity "echo" N times in sequence, completes with the last result.
//   "timer"  input S: sleeps S seconds on a durable timer, then completes with "slept".
//   "flaky"  runs activity "flaky" (fails attempt 1, succeeds after) and completes with it.
// Activities: "echo" returns its input, "flaky" fails its first attempt.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/channel.h>
#include "absl/status/statusor.h"
#include "absl/time/time.h"

#include "kiln/api/v1/workflow_service.grpc.pb.h"

namespace kiln::testutil {

class TestWorker {
 public:
  TestWorker(std::shared_ptr<grpc::Channel> channel, std::string queue, int workflow_pollers = 2,
             int activity_pollers = 2);
  ~TestWorker();  // Stops.

  void Start();
  void Stop();

  int64_t workflow_tasks() const { return workflow_tasks_.load(); }
  int64_t activity_tasks() const { return activity_tasks_.load(); }
  // Calls that failed with anything but a timeout/unavailable (e.g. refused as stale).
  int64_t errors() const { return errors_.load(); }

 private:
  void WorkflowLoop();
  void ActivityLoop();

  std::unique_ptr<kiln::api::v1::WorkflowService::Stub> stub_;
  std::string queue_;
  int workflow_pollers_;
  int activity_pollers_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  std::atomic<int64_t> workflow_tasks_{0};
  std::atomic<int64_t> activity_tasks_{0};
  std::atomic<int64_t> errors_{0};
};

// Client helpers.
kiln::api::v1::Payloads TextPayload(const std::string& text);
absl::StatusOr<std::string> StartWorkflow(kiln::api::v1::WorkflowService::Stub& stub,
                                          const std::string& workflow_id, const std::string& type,
                                          const std::string& queue, const std::string& input);
// Waits (long polls) for the run's close event; returns it.
absl::StatusOr<kiln::api::v1::HistoryEvent> WaitForClose(kiln::api::v1::WorkflowService::Stub& stub,
                                                         const std::string& workflow_id,
                                                         const std::string& run_id,
                                                         absl::Duration timeout);
absl::StatusOr<kiln::api::v1::History> GetHistory(kiln::api::v1::WorkflowService::Stub& stub,
                                                  const std::string& workflow_id,
                                                  const std::string& run_id);

}  // namespace kiln::testutil
