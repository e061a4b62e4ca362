// ListRuns and CountRuns over visibility records written straight into an in-memory store: the
// filters, both orders and their page tokens, and the errors.
#include "orchestrator/visibility/visibility_list.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "common/proto_time.h"
#include "kiln/internal/v1/persistence.pb.h"
#include "orchestrator/persistence/keys.h"
#include "orchestrator/persistence/memory_store.h"

namespace kiln::orchestrator {
namespace {

namespace api = ::kiln::api::v1;
namespace internal = ::kiln::internal::v1;

const absl::Time kEpoch = absl::FromUnixSeconds(1'800'000'000);

// Runs r0..r(n-1) of namespace "ns", r(i) started i seconds after kEpoch; odd ones of type
// "odd" and closed, even ones of type "even" and running; multiples of 3 on task queue "q-three",
// the others on "q-other". One run of namespace "other".
void WriteRuns(Store& store, int n) {
  WriteBatch batch;
  auto put = [&](const std::string& ns, int i) {
    internal::VisibilityRecord record;
    record.set_namespace_(ns);
    record.set_workflow_id("w" + std::to_string(i));
    record.set_run_id("r" + std::to_string(i));
    record.set_workflow_type(i % 2 == 0 ? "even" : "odd");
    record.set_status(i % 2 == 0 ? api::WORKFLOW_EXECUTION_STATUS_RUNNING
                                 : api::WORKFLOW_EXECUTION_STATUS_COMPLETED);
    const absl::Time start = kEpoch + absl::Seconds(i);
    ToProto(start, record.mutable_start_time());
    record.set_history_length(i);
    record.set_task_queue(i % 3 == 0 ? "q-three" : "q-other");
    batch.Put(Table::kVisibility, keys::Visibility(ns, start, record.run_id()),
              record.SerializeAsString());
  };
  for (int i = 0; i < n; ++i) put("ns", i);
  put("other", 0);
  REQUIRE(store.Commit(batch).ok());
}

std::vector<std::string> RunIds(const api::ListWorkflowExecutionsResponse& page) {
  std::vector<std::string> ids;
  for (const auto& info : page.executions()) ids.push_back(info.execution().run_id());
  return ids;
}

TEST_CASE("ListRuns pages newest first and filters by the request's fields and query") {
  MemoryStore store;
  WriteRuns(store, 5);
  api::ListWorkflowExecutionsRequest request;
  request.set_page_size(2);
  auto first = ListRuns(store, "ns", request).value();
  REQUIRE(RunIds(first) == std::vector<std::string>{"r4", "r3"});
  REQUIRE(!first.next_page_token().empty());
  CHECK(first.executions(0).history_length() == 4);
  CHECK(first.executions(0).type().name() == "even");
  request.set_next_page_token(first.next_page_token());
  auto second = ListRuns(store, "ns", request).value();
  REQUIRE(RunIds(second) == std::vector<std::string>{"r2", "r1"});
  request.set_next_page_token(second.next_page_token());
  auto third = ListRuns(store, "ns", request).value();
  REQUIRE(RunIds(third) == std::vector<std::string>{"r0"});
  CHECK(third.next_page_token().empty());

  api::ListWorkflowExecutionsRequest odd;
  odd.set_workflow_type("odd");
  CHECK(RunIds(ListRuns(store, "ns", odd).value()) == std::vector<std::string>{"r3", "r1"});
  api::ListWorkflowExecutionsRequest running;
  running.set_query("ExecutionStatus = 'Running'");
  CHECK(RunIds(ListRuns(store, "ns", running).value()) ==
        std::vector<std::string>{"r4", "r2", "r0"});
  api::ListWorkflowExecutionsRequest window;
  ToProto(kEpoch + absl::Seconds(1), window.mutable_earliest_start_time());
  ToProto(kEpoch + absl::Seconds(3), window.mutable_latest_start_time());
  CHECK(RunIds(ListRuns(store, "ns", window).value()) ==
        std::vector<std::string>{"r3", "r2", "r1"});
  CHECK(RunIds(ListRuns(store, "other", {}).value()) == std::vector<std::string>{"r0"});
}

TEST_CASE("ListRuns and CountRuns leave out the runs the visibility filter refuses") {
  MemoryStore store;
  WriteRuns(store, 7);
  const TaskQueueFilter three = [](std::string_view queue) { return queue == "q-three"; };
  api::ListWorkflowExecutionsRequest request;
  request.set_page_size(1);
  auto first = ListRuns(store, "ns", request, three).value();
  CHECK(RunIds(first) == std::vector<std::string>{"r6"});
  request.set_next_page_token(first.next_page_token());
  auto second = ListRuns(store, "ns", request, three).value();
  CHECK(RunIds(second) == std::vector<std::string>{"r3"});
  // The query cannot widen what the filter lets through.
  api::ListWorkflowExecutionsRequest other;
  other.set_query("TaskQueue = 'q-other'");
  CHECK(RunIds(ListRuns(store, "ns", other, three).value()).empty());
  api::CountWorkflowExecutionsRequest count;
  CHECK(CountRuns(store, "ns", count, three).value().count() == 3);
  CHECK(CountRuns(store, "ns", count).value().count() == 7);
}

TEST_CASE("ListRuns in another order pages by offset, tokens of another list are refused") {
  MemoryStore store;
  WriteRuns(store, 5);
  api::ListWorkflowExecutionsRequest request;
  request.set_query("ORDER BY StartTime ASC");
  request.set_page_size(3);
  auto first = ListRuns(store, "ns", request).value();
  REQUIRE(RunIds(first) == std::vector<std::string>{"r0", "r1", "r2"});
  REQUIRE(first.next_page_token() == "o:3");
  request.set_next_page_token(first.next_page_token());
  auto second = ListRuns(store, "ns", request).value();
  REQUIRE(RunIds(second) == std::vector<std::string>{"r3", "r4"});
  CHECK(second.next_page_token().empty());

  api::ListWorkflowExecutionsRequest newest;
  newest.set_next_page_token("o:3");
  CHECK(absl::IsInvalidArgument(ListRuns(store, "ns", newest).status()));
  request.set_next_page_token("garbage");
  CHECK(absl::IsInvalidArgument(ListRuns(store, "ns", request).status()));
  api::ListWorkflowExecutionsRequest bad_query;
  bad_query.set_query("NoSuchField = 1 AND");
  CHECK(absl::IsInvalidArgument(ListRuns(store, "ns", bad_query).status()));
}

TEST_CASE("ListRuns ends a page early when its answer would outgrow the byte bound") {
  MemoryStore store;
  WriteBatch batch;
  constexpr int kRuns = 100;
  for (int i = 0; i < kRuns; ++i) {
    internal::VisibilityRecord record;
    record.set_namespace_("ns");
    record.set_workflow_id("w" + std::to_string(i));
    record.set_run_id("r" + std::to_string(i));
    (*record.mutable_memo()->mutable_fields())["m"].set_data(std::string(30 << 10, 'm'));
    const absl::Time start = kEpoch + absl::Seconds(i);
    ToProto(start, record.mutable_start_time());
    batch.Put(Table::kVisibility, keys::Visibility("ns", start, record.run_id()),
              record.SerializeAsString());
  }
  REQUIRE(store.Commit(batch).ok());
  for (const char* query : {"", "ORDER BY WorkflowId"}) {
    INFO(query);
    api::ListWorkflowExecutionsRequest request;
    request.set_page_size(kRuns);
    request.set_query(query);
    int listed = 0;
    int pages = 0;
    do {
      auto page = ListRuns(store, "ns", request).value();
      CHECK(page.ByteSizeLong() < limits::kMaxListAnswerBytes + (64 << 10));
      listed += page.executions_size();
      ++pages;
      request.set_next_page_token(page.next_page_token());
    } while (!request.next_page_token().empty());
    CHECK(listed == kRuns);  // every run, over more than one page
    CHECK(pages >= 2);
  }
}

TEST_CASE("CountRuns counts every page's matches") {
  MemoryStore store;
  WriteRuns(store, static_cast<int>(limits::kMaxListPageSize) + 5);
  api::CountWorkflowExecutionsRequest all;
  CHECK(CountRuns(store, "ns", all).value().count() == limits::kMaxListPageSize + 5);
  api::CountWorkflowExecutionsRequest closed;
  closed.set_query("ExecutionStatus = 'Completed'");
  CHECK(CountRuns(store, "ns", closed).value().count() == (limits::kMaxListPageSize + 5) / 2);
  CHECK(CountRuns(store, "other", all).value().count() == 1);
}

TEST_CASE("ListRuns reports a corrupt record as data loss") {
  MemoryStore store;
  WriteBatch batch;
  batch.Put(Table::kVisibility, keys::Visibility("ns", kEpoch, "r"), "\xff\xff not a record");
  REQUIRE(store.Commit(batch).ok());
  CHECK(absl::IsDataLoss(ListRuns(store, "ns", {}).status()));
}

}  // namespace
}  // namespace kiln::orchestrator
