#include "orchestrator/visibility/visibility_list.h"

#include <algorithm>
#include <string_view>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "common/status.h"
#include "kiln/internal/v1/persistence.pb.h"
#include "orchestrator/persistence/keys.h"
#include "orchestrator/visibility/visibility_query.h"

namespace kiln::orchestrator {

namespace api = ::kiln::api::v1;
namespace internal = ::kiln::internal::v1;

namespace {

void ToInfo(const internal::VisibilityRecord& record, api::WorkflowExecutionInfo* info) {
  info->mutable_execution()->set_workflow_id(record.workflow_id());
  info->mutable_execution()->set_run_id(record.run_id());
  info->mutable_type()->set_name(record.workflow_type());
  *info->mutable_start_time() = record.start_time();
  *info->mutable_close_time() = record.close_time();
  *info->mutable_execution_time() = record.start_time();
  info->set_status(record.status());
  info->set_history_length(record.history_length());
  info->set_task_queue(record.task_queue());
  *info->mutable_search_attributes() = record.search_attributes();
  *info->mutable_memo() = record.memo();
  info->set_first_run_id(record.first_run_id());
}

}  // namespace

absl::StatusOr<api::ListWorkflowExecutionsResponse> ListRuns(
    Store& store, const std::string& ns, const api::ListWorkflowExecutionsRequest& request,
    const TaskQueueFilter& visible) {
  int32_t page_size = request.page_size();
  if (page_size <= 0) page_size = limits::kDefaultListPageSize;
  page_size = std::min(page_size, limits::kMaxListPageSize);
  ASSIGN_OR_RETURN(VisibilityQuery query, ParseVisibilityQuery(request.query()));
  // The table's own order is newest first; any other order sorts one bounded scan in memory
  // and pages through it by offset.
  const bool sorted = !query.OrderIsStartTimeDesc();
  std::string prefix = keys::VisibilityPrefix(ns);
  std::string start = prefix;
  size_t offset = 0;
  if (!request.next_page_token().empty()) {
    const std::string& token = request.next_page_token();
    if (sorted) {
      if (token.rfind("o:", 0) != 0 || !absl::SimpleAtoi(token.substr(2), &offset)) {
        return absl::InvalidArgumentError("next_page_token: not a token of this ordered list");
      }
    } else if (token.rfind(prefix, 0) != 0) {
      return absl::InvalidArgumentError("next_page_token: not a list token of this namespace");
    } else {
      start = token;
    }
  }
  absl::Time earliest = IsSet(request.earliest_start_time())
                            ? FromProto(request.earliest_start_time())
                            : absl::InfinitePast();
  absl::Time latest = IsSet(request.latest_start_time()) ? FromProto(request.latest_start_time())
                                                         : absl::InfiniteFuture();
  // Newest first: a later start time sorts earlier, so the time bounds are key bounds too.
  if (latest != absl::InfiniteFuture()) {
    std::string bound = keys::Visibility(ns, latest, "");
    if (bound > start) start = bound;
  }
  std::string end = earliest != absl::InfinitePast()
                        ? keys::PrefixEnd(keys::Visibility(ns, earliest, ""))
                        : keys::PrefixEnd(prefix);

  api::ListWorkflowExecutionsResponse response;
  std::vector<internal::VisibilityRecord> matched;
  absl::Status parse_error;
  size_t examined = 0;
  size_t answer_bytes = 0;
  std::string last_key;
  bool more = false;
  auto add = [&](const internal::VisibilityRecord& record) {
    auto* info = response.add_executions();
    ToInfo(record, info);
    answer_bytes += info->ByteSizeLong();
  };
  RETURN_IF_ERROR(store.Scan(
      Table::kVisibility, start, end, 0, [&](std::string_view key, std::string_view value) {
        if ((!sorted && (response.executions_size() >= page_size ||
                         answer_bytes >= limits::kMaxListAnswerBytes)) ||
            examined >= limits::kMaxListScan) {
          more = true;
          return false;
        }
        ++examined;
        last_key = std::string(key);
        internal::VisibilityRecord record;
        if (!record.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
          parse_error = absl::DataLossError("visibility record is corrupt");
          return false;
        }
        if (!request.workflow_type().empty() && record.workflow_type() != request.workflow_type())
          return true;
        if (request.status() != api::WORKFLOW_EXECUTION_STATUS_UNSPECIFIED &&
            record.status() != request.status())
          return true;
        if (!request.workflow_id().empty() && record.workflow_id() != request.workflow_id())
          return true;
        if (visible && !visible(record.task_queue())) return true;
        if (!query.Matches(record)) return true;
        if (sorted) {
          matched.push_back(std::move(record));
        } else {
          add(record);
        }
        return true;
      }));
  RETURN_IF_ERROR(parse_error);
  if (!sorted) {
    if (more) response.set_next_page_token(last_key + '\0');
    return response;
  }
  std::stable_sort(matched.begin(), matched.end(),
                   [&](const auto& a, const auto& b) { return query.OrderedBefore(a, b); });
  for (size_t i = offset; i < matched.size() && response.executions_size() < page_size &&
                          answer_bytes < limits::kMaxListAnswerBytes;
       ++i) {
    add(matched[i]);
  }
  if (offset + static_cast<size_t>(response.executions_size()) < matched.size()) {
    response.set_next_page_token(
        absl::StrCat("o:", offset + static_cast<size_t>(response.executions_size())));
  }
  return response;
}

absl::StatusOr<api::CountWorkflowExecutionsResponse> CountRuns(
    Store& store, const std::string& ns, const api::CountWorkflowExecutionsRequest& request,
    const TaskQueueFilter& visible) {
  api::CountWorkflowExecutionsResponse response;
  api::ListWorkflowExecutionsRequest list;
  list.set_query(request.query());
  list.set_page_size(limits::kMaxListPageSize);
  do {
    ASSIGN_OR_RETURN(auto page, ListRuns(store, ns, list, visible));
    response.set_count(response.count() + page.executions_size());
    list.set_next_page_token(page.next_page_token());
  } while (!list.next_page_token().empty());
  return response;
}

}  // namespace kiln::orchestrator
