// Queries in flight: a QueryWorkflow call waits here (a callback, no thread) until the worker
// that took the query task answers with RespondQueryTaskCompleted, or until its deadline.
// Query tasks are in memory only: a query is answered from a replay and writes no history.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "kiln/api/v1/workflow_service.pb.h"

namespace kiln::orchestrator {

class QueryRegistry {
 public:
  using Callback = std::function<void(absl::StatusOr<kiln::api::v1::Payloads>)>;

  explicit QueryRegistry(size_t max_in_flight = 10'000) : max_in_flight_(max_in_flight) {}

  // Registers a query; returns its id and task id (negative: never a stored task).
  absl::StatusOr<std::pair<std::string, int64_t>> Add(kiln::api::v1::WorkflowQuery query,
                                                      Callback callback);
  // The query a delivered task asks (nullopt once answered or expired).
  std::optional<kiln::api::v1::WorkflowQuery> Get(const std::string& id);
  // Answers (or fails) the query; false when it is no longer waiting.
  bool Complete(const std::string& id, absl::StatusOr<kiln::api::v1::Payloads> answer);

 private:
  struct Entry {
    kiln::api::v1::WorkflowQuery query;
    Callback callback;
  };
  const size_t max_in_flight_;
  absl::Mutex mu_;
  int64_t next_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<std::string, Entry> queries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kiln::orchestrator
