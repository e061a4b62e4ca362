// Listing and counting a namespace's workflow runs (ListWorkflowExecutions and
// CountWorkflowExecutions): one scan of the visibility table, newest first, filtered by the
// request's fields and its query (visibility_query.h), a page at a time. Reads only: history
// writes each run's record in the transition that changes what it shows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "kiln/api/v1/workflow_service.pb.h"
#include "orchestrator/persistence/store.h"

namespace kiln::orchestrator {

namespace limits {
inline constexpr int32_t kDefaultListPageSize = 100;
inline constexpr int32_t kMaxListPageSize = 1'000;
// Visibility entries examined by one List call before it returns a page token.
inline constexpr size_t kMaxListScan = 10'000;
// One answer's entries together: a page ends early (with a page token) once it reaches this,
// well below gRPC's default 4 MiB receive limit of every client, whatever the memos hold.
inline constexpr size_t kMaxListAnswerBytes = 2 << 20;
}  // namespace limits

// Which runs a caller may see, by the run's task queue (the frontend's Authorizer decides);
// empty: every run. Applied during the scan like the query, so pages and counts stay consistent.
using TaskQueueFilter = std::function<bool(std::string_view task_queue)>;

// One page of the runs of namespace `ns` (already resolved: the request's own is not read)
// that match `request`. The page token of the table's own order (start time, newest first) is
// the next key to read; that of any other ORDER BY is an offset into one bounded scan sorted in
// memory. kInvalidArgument for a bad query or a token of another list; kDataLoss for a corrupt
// record. Runs `visible` refuses are skipped as if they did not match.
absl::StatusOr<kiln::api::v1::ListWorkflowExecutionsResponse> ListRuns(
    Store& store, const std::string& ns,
    const kiln::api::v1::ListWorkflowExecutionsRequest& request,
    const TaskQueueFilter& visible = {});

// How many runs of namespace `ns` match `request`'s query: every page of ListRuns, counted.
absl::StatusOr<kiln::api::v1::CountWorkflowExecutionsResponse> CountRuns(
    Store& store, const std::string& ns,
    const kiln::api::v1::CountWorkflowExecutionsRequest& request,
    const TaskQueueFilter& visible = {});

}  // namespace kiln::orchestrator
