// The visibility query language: parsing, precedence, every field and operator, ORDER BY.
#include "orchestrator/visibility/visibility_query.h"

#include <algorithm>
#include <optional>
#include <tuple>
#include <vector>

#include <catch2/catch.hpp>

#include "absl/strings/ascii.h"
#include "common/proto_time.h"
#include "orchestrator/visibility/search_attributes.h"

namespace kiln::orchestrator {
namespace {

namespace internal = ::kiln::internal::v1;

absl::Time At(std::string_view text) { return ParseRfc3339(text).value(); }

// An open run with one custom attribute of each type.
internal::VisibilityRecord Record() {
  internal::VisibilityRecord record;
  record.set_namespace_("default");
  record.set_workflow_id("order-17");
  record.set_run_id("run-b");
  record.set_workflow_type("Deploy");
  record.set_status(api::WORKFLOW_EXECUTION_STATUS_RUNNING);
  ToProto(At("2024-05-01T12:00:00Z"), record.mutable_start_time());
  record.set_history_length(12);
  record.set_task_queue("deploys");
  auto& attributes = *record.mutable_search_attributes()->mutable_indexed_fields();
  attributes["Project"] = KeywordAttribute("web");
  attributes["Priority"] = IntAttribute(3);
  attributes["Deadline"] = DatetimeAttribute(At("2024-06-01T00:00:00Z"));
  attributes["Urgent"] = BoolAttribute(true);
  return record;
}

VisibilityQuery Parse(std::string_view text) {
  absl::StatusOr<VisibilityQuery> query = ParseVisibilityQuery(text);
  INFO(text << " -> " << query.status().ToString());
  REQUIRE(query.ok());
  return *std::move(query);
}

bool Match(std::string_view text, const internal::VisibilityRecord& record = Record()) {
  return Parse(text).Matches(record);
}

std::string Canonical(std::string_view text) { return Parse(text).ToString(); }

TEST_CASE("An empty query matches everything, newest start first") {
  for (std::string_view text : {"", "  \t\n "}) {
    VisibilityQuery query = Parse(text);
    CHECK(query.Matches(Record()));
    CHECK(query.Matches(internal::VisibilityRecord()));
    CHECK(query.order_by().field == "StartTime");
    CHECK_FALSE(query.order_by().ascending);
    CHECK(query.OrderIsStartTimeDesc());
    CHECK(query.ToString().empty());
  }
  CHECK(VisibilityQuery().Matches(Record()));
  CHECK(VisibilityQuery().OrderIsStartTimeDesc());
}

TEST_CASE("The example query") {
  VisibilityQuery query =
      Parse(R"(Project = "web" AND ExecutionStatus = "Running" ORDER BY StartTime DESC)");
  internal::VisibilityRecord record = Record();
  CHECK(query.Matches(record));
  CHECK(query.order_by().field == "StartTime");
  CHECK_FALSE(query.order_by().ascending);
  CHECK(query.OrderIsStartTimeDesc());
  CHECK(query.ToString() == R"(Project = "web" AND ExecutionStatus = "Running")");

  record.set_status(api::WORKFLOW_EXECUTION_STATUS_COMPLETED);
  CHECK_FALSE(query.Matches(record));
  record = Record();
  (*record.mutable_search_attributes()->mutable_indexed_fields())["Project"] =
      KeywordAttribute("api");
  CHECK_FALSE(query.Matches(record));
  record.mutable_search_attributes()->mutable_indexed_fields()->erase("Project");
  CHECK_FALSE(query.Matches(record));
}

TEST_CASE("Comparison operators on integers") {
  CHECK(Match("HistoryLength = 12"));
  CHECK_FALSE(Match("HistoryLength = 13"));
  CHECK(Match("HistoryLength != 13"));
  CHECK(Match("HistoryLength <> 13"));
  CHECK_FALSE(Match("HistoryLength != 12"));
  CHECK(Match("HistoryLength < 13"));
  CHECK_FALSE(Match("HistoryLength < 12"));
  CHECK(Match("HistoryLength <= 12"));
  CHECK_FALSE(Match("HistoryLength <= 11"));
  CHECK(Match("HistoryLength > 11"));
  CHECK_FALSE(Match("HistoryLength > 12"));
  CHECK(Match("HistoryLength >= 12"));
  CHECK_FALSE(Match("HistoryLength >= 13"));
  CHECK(Match("HistoryLength > -5"));
  CHECK(Match("HistoryLength>=12"));  // No spaces needed around operators.
  CHECK(Canonical("HistoryLength <> 13") == "HistoryLength != 13");
}

TEST_CASE("Comparison operators on strings compare bytes") {
  CHECK(Match("WorkflowId = 'order-17'"));
  CHECK_FALSE(Match("WorkflowId = 'Order-17'"));
  CHECK(Match("WorkflowId != 'order-18'"));
  CHECK(Match("WorkflowId < 'order-18'"));
  CHECK(Match("WorkflowId <= 'order-17'"));
  CHECK(Match("WorkflowId > 'order-1'"));
  CHECK(Match("WorkflowId >= 'order-17'"));
  CHECK_FALSE(Match("WorkflowId > 'order-2'"));
  CHECK(Match("WorkflowId STARTS_WITH 'order-'"));
  CHECK(Match("WorkflowId starts_with ''"));
  CHECK_FALSE(Match("WorkflowId STARTS_WITH 'order-17-'"));
  CHECK_FALSE(Match("WorkflowId STARTS_WITH 'rder'"));
}

TEST_CASE("Strings take both quotes and backslash escapes") {
  internal::VisibilityRecord record = Record();
  record.set_workflow_id("it's \"quoted\" \\ \n\t\r");
  CHECK(Match(R"(WorkflowId = "it's \"quoted\" \\ \n\t\r")", record));
  CHECK(Match(R"(WorkflowId = 'it\'s "quoted" \\ \n\t\r')", record));
  CHECK(Canonical(R"(WorkflowId = 'it\'s "q" \\ \n')") == R"(WorkflowId = "it's \"q\" \\ \n")");
}

TEST_CASE("AND binds tighter than OR") {
  // false OR (true AND true) is true; (false OR true) AND false would be false.
  CHECK(Match("Project = 'api' OR Priority = 3 AND Urgent = true"));
  CHECK(Canonical("a = 1 OR b = 2 AND c = 3") == "a = 1 OR (b = 2 AND c = 3)");
  CHECK(Canonical("a = 1 AND b = 2 OR c = 3") == "(a = 1 AND b = 2) OR c = 3");
  CHECK(Canonical("a = 1 OR b = 2 OR c = 3 AND d = 4 AND e = 5") ==
        "a = 1 OR b = 2 OR (c = 3 AND d = 4 AND e = 5)");
  // true OR (... AND false) is true; with the grouping forced it is false.
  CHECK(Match("Project = 'web' OR Priority = 3 AND Urgent = false"));
  CHECK_FALSE(Match("(Project = 'web' OR Priority = 3) AND Urgent = false"));
  CHECK(Canonical("(a = 1 OR b = 2) AND c = 3") == "(a = 1 OR b = 2) AND c = 3");
}

TEST_CASE("NOT binds tighter than AND and applies to a group") {
  CHECK(Canonical("NOT a = 1 AND b = 2") == "NOT a = 1 AND b = 2");
  CHECK(Canonical("NOT (a = 1 AND b = 2)") == "NOT (a = 1 AND b = 2)");
  CHECK(Canonical("NOT NOT a = 1") == "NOT NOT a = 1");
  CHECK(Match("NOT Project = 'api'"));
  CHECK_FALSE(Match("NOT Project = 'web'"));
  CHECK(Match("NOT NOT Project = 'web'"));
  // (NOT true) AND false: false. NOT (true AND false): true.
  CHECK_FALSE(Match("NOT Project = 'web' AND Urgent = false"));
  CHECK(Match("NOT (Project = 'web' AND Urgent = false)"));
  CHECK(Match("((((Project = 'web'))))"));
  CHECK(Canonical("((((a = 1))))") == "a = 1");
}

TEST_CASE("Keywords and built-in field names ignore case") {
  CHECK(Match("Project = 'api' or Priority = 3 AnD not Urgent = FALSE"));
  CHECK(Canonical("workflowid = 'x' and STATUS in ('running') order by starttime asc") ==
        "WorkflowId = \"x\" AND ExecutionStatus IN (\"Running\") ORDER BY StartTime ASC");
  // Custom attribute names are exact: "project" is not "Project".
  CHECK_FALSE(Match("project = 'web'"));
}

TEST_CASE("Each built-in field reads its part of the record") {
  CHECK(Match("WorkflowId = 'order-17'"));
  CHECK(Match("RunId = 'run-b'"));
  CHECK(Match("WorkflowType = 'Deploy'"));
  CHECK(Match("TaskQueue = 'deploys'"));
  CHECK(Match("HistoryLength = 12"));
  CHECK(Match("StartTime = '2024-05-01T12:00:00Z'"));
  CHECK(Match("StartTime = '2024-05-01T14:00:00+02:00'"));
  CHECK(Match("StartTime > '2024-05-01T11:59:59.999999999Z'"));
  CHECK_FALSE(Match("StartTime > '2024-05-01T12:00:00Z'"));
  CHECK(Match("StartTime BETWEEN '2024-05-01T00:00:00Z' AND '2024-05-02T00:00:00Z'"));
  CHECK(Canonical("StartTime < '2024-05-01T14:00:00.5+02:00'") ==
        "StartTime < \"2024-05-01T12:00:00.5Z\"");
  CHECK_FALSE(Match("RunId = 'run-a'"));
  CHECK_FALSE(Match("WorkflowType = 'deploy'"));
  CHECK_FALSE(Match("TaskQueue = 'other'"));
}

TEST_CASE("ExecutionStatus takes every status name, any case, and Status as an alias") {
  struct Case {
    api::WorkflowExecutionStatus status;
    std::string_view name;
  };
  for (Case c : {Case{api::WORKFLOW_EXECUTION_STATUS_RUNNING, "Running"},
                 Case{api::WORKFLOW_EXECUTION_STATUS_COMPLETED, "Completed"},
                 Case{api::WORKFLOW_EXECUTION_STATUS_FAILED, "Failed"},
                 Case{api::WORKFLOW_EXECUTION_STATUS_CANCELED, "Canceled"},
                 Case{api::WORKFLOW_EXECUTION_STATUS_TERMINATED, "Terminated"},
                 Case{api::WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW, "ContinuedAsNew"},
                 Case{api::WORKFLOW_EXECUTION_STATUS_TIMED_OUT, "TimedOut"}}) {
    INFO(c.name);
    internal::VisibilityRecord record = Record();
    record.set_status(c.status);
    const std::string name(c.name);
    CHECK(Match("ExecutionStatus = '" + name + "'", record));
    CHECK(Match("Status = '" + name + "'", record));
    CHECK(Match("ExecutionStatus = '" + absl::AsciiStrToUpper(name) + "'", record));
    CHECK_FALSE(Match("ExecutionStatus != '" + name + "'", record));
    CHECK(Match("ExecutionStatus IN ('" + name + "', 'Running')", record));
    CHECK(Match("ExecutionStatus IS NOT NULL", record));
  }
  internal::VisibilityRecord unspecified = Record();
  unspecified.set_status(api::WORKFLOW_EXECUTION_STATUS_UNSPECIFIED);
  CHECK(Match("ExecutionStatus IS NULL", unspecified));
  CHECK_FALSE(Match("ExecutionStatus != 'Running'", unspecified));
}

TEST_CASE("CloseTime of an open run is NULL: no comparison matches it") {
  internal::VisibilityRecord open = Record();
  CHECK(Match("CloseTime IS NULL", open));
  CHECK_FALSE(Match("CloseTime IS NOT NULL", open));
  CHECK_FALSE(Match("CloseTime < '2030-01-01T00:00:00Z'", open));
  CHECK_FALSE(Match("CloseTime != '2030-01-01T00:00:00Z'", open));
  CHECK(Match("NOT CloseTime < '2030-01-01T00:00:00Z'", open));

  internal::VisibilityRecord closed = Record();
  closed.set_status(api::WORKFLOW_EXECUTION_STATUS_COMPLETED);
  ToProto(At("2024-05-01T12:30:00Z"), closed.mutable_close_time());
  CHECK(Match("CloseTime IS NOT NULL", closed));
  CHECK(
      Match("CloseTime >= '2024-05-01T12:30:00Z' AND CloseTime < '2024-05-01T13:00:00Z'", closed));
  CHECK(Match("CloseTime BETWEEN '2024-05-01T12:30:00Z' AND '2024-05-01T12:30:00Z'", closed));
}

TEST_CASE("Custom Keyword attributes") {
  CHECK(Match("Project = 'web'"));
  CHECK(Match("Project != 'api'"));
  CHECK(Match("Project > 'api' AND Project < 'zzz'"));
  CHECK(Match("Project STARTS_WITH 'we'"));
  CHECK(Match("Project IN ('api', 'web')"));
  CHECK(Match("Project BETWEEN 'a' AND 'x'"));
  CHECK_FALSE(Match("Project BETWEEN 'x' AND 'z'"));
  // A literal of another type never matches, whatever the operator.
  CHECK_FALSE(Match("Project = 5"));
  CHECK_FALSE(Match("Project != 5"));
  CHECK_FALSE(Match("Project = true"));
  CHECK(Match("NOT Project = 5"));
}

TEST_CASE("Custom Int attributes") {
  CHECK(Match("Priority = 3"));
  CHECK(Match("Priority != 4"));
  CHECK(Match("Priority >= 3 AND Priority <= 3"));
  CHECK(Match("Priority BETWEEN 1 AND 5"));
  CHECK(Match("Priority IN (1, 2, 3)"));
  CHECK_FALSE(Match("Priority IN (1, 2)"));
  CHECK_FALSE(Match("Priority = '3'"));
  CHECK_FALSE(Match("Priority != '3'"));
  CHECK_FALSE(Match("Priority STARTS_WITH '3'"));
  internal::VisibilityRecord record = Record();
  (*record.mutable_search_attributes()->mutable_indexed_fields())["Priority"] =
      IntAttribute(INT64_MIN);
  CHECK(Match("Priority = -9223372036854775808", record));
  CHECK(Match("Priority < -9223372036854775807", record));
}

TEST_CASE("Custom Datetime attributes compare with RFC 3339 strings") {
  CHECK(Match("Deadline = '2024-06-01T00:00:00Z'"));
  CHECK(Match("Deadline = '2024-06-01T02:00:00+02:00'"));
  CHECK(Match("Deadline > '2024-05-31T23:59:59Z'"));
  CHECK(Match("Deadline BETWEEN '2024-05-01T00:00:00Z' AND '2024-07-01T00:00:00Z'"));
  CHECK(Match("Deadline IN ('2024-01-01T00:00:00Z', '2024-06-01T00:00:00.000Z')"));
  // Not a time: not comparable with a Datetime, so no match (and no parse error, since the
  // attribute's type is known only per record).
  CHECK_FALSE(Match("Deadline = 'June'"));
  CHECK_FALSE(Match("Deadline != 'June'"));
  CHECK_FALSE(Match("Deadline < 20240601"));
  CHECK_FALSE(Match("Deadline STARTS_WITH '2024'"));
  // The same string against a Keyword attribute is a string.
  internal::VisibilityRecord record = Record();
  (*record.mutable_search_attributes()->mutable_indexed_fields())["Deadline"] =
      KeywordAttribute("2024-06-01T00:00:00Z");
  CHECK(Match("Deadline = '2024-06-01T00:00:00Z'", record));
  CHECK_FALSE(Match("Deadline = '2024-06-01T02:00:00+02:00'", record));
  CHECK(Match("Deadline STARTS_WITH '2024'", record));
}

TEST_CASE("Custom Bool attributes") {
  CHECK(Match("Urgent = true"));
  CHECK(Match("Urgent = TRUE"));
  CHECK(Match("Urgent != false"));
  CHECK(Match("Urgent IN (true)"));
  CHECK_FALSE(Match("Urgent = false"));
  CHECK_FALSE(Match("Urgent = 'true'"));
  CHECK_FALSE(Match("Urgent = 1"));
}

TEST_CASE("IS NULL: a missing or undecodable attribute is NULL") {
  CHECK(Match("Missing IS NULL"));
  CHECK_FALSE(Match("Missing IS NOT NULL"));
  CHECK(Match("Project IS NOT NULL"));
  CHECK_FALSE(Match("Project is null"));
  CHECK_FALSE(Match("Missing = 'x'"));
  CHECK_FALSE(Match("Missing != 'x'"));
  CHECK_FALSE(Match("Missing IN ('x')"));
  CHECK(Match("NOT Missing = 'x'"));
  internal::VisibilityRecord record = Record();
  api::Payload broken = IntAttribute(1);
  broken.set_data("not json");
  (*record.mutable_search_attributes()->mutable_indexed_fields())["Broken"] = broken;
  CHECK(Match("Broken IS NULL", record));
  CHECK_FALSE(Match("Broken = 1", record));
  // An empty Keyword is a value, unlike an empty built-in string.
  (*record.mutable_search_attributes()->mutable_indexed_fields())["Empty"] = KeywordAttribute("");
  CHECK(Match("Empty = ''", record));
  CHECK(Match("Empty IS NOT NULL", record));
  record.set_task_queue("");
  CHECK(Match("TaskQueue IS NULL", record));
}

TEST_CASE("IN and BETWEEN") {
  CHECK(Match("WorkflowType IN ('Build', 'Deploy')"));
  CHECK(Match("WorkflowType IN ('Deploy')"));
  CHECK_FALSE(Match("WorkflowType IN ('Build', 'Test')"));
  CHECK(Match("NOT WorkflowType IN ('Build')"));
  CHECK(Match("Priority IN ('3', 3)"));  // Mixed literals: each is compared on its own.
  CHECK(Match("HistoryLength BETWEEN 12 AND 12"));
  CHECK(Match("HistoryLength BETWEEN 1 AND 100 AND Project = 'web'"));
  CHECK_FALSE(Match("HistoryLength BETWEEN 13 AND 100"));
  CHECK_FALSE(Match("HistoryLength BETWEEN 100 AND 1"));  // Empty range.
  CHECK(Canonical("HistoryLength BETWEEN 1 AND 100 AND Project = 'web'") ==
        "HistoryLength BETWEEN 1 AND 100 AND Project = \"web\"");
  CHECK(Canonical("a in (1,2 , 'x')") == "a IN (1, 2, \"x\")");
}

TEST_CASE("Backticks let a reserved word or a digit-led name be an attribute") {
  internal::VisibilityRecord record = Record();
  auto& attributes = *record.mutable_search_attributes()->mutable_indexed_fields();
  attributes["Order"] = KeywordAttribute("o-1");
  attributes["123"] = IntAttribute(1);
  attributes["9lives"] = IntAttribute(9);
  CHECK(Match("`Order` = 'o-1' AND `123` = 1 AND 9lives = 9", record));
  CHECK(Canonical("`Order` = 'o-1' AND `123` = 1 AND 9lives = 9 ORDER BY `order` DESC") ==
        "`Order` = \"o-1\" AND `123` = 1 AND 9lives = 9 ORDER BY `order` DESC");
  CHECK(Canonical("`WorkflowId` = 'x'") == "WorkflowId = \"x\"");
}

TEST_CASE("ORDER BY gives the field and direction, ascending when none is given") {
  auto order = [](std::string_view text) {
    VisibilityQuery query = Parse(text);
    return std::make_tuple(query.order_by().field, query.order_by().ascending,
                           query.OrderIsStartTimeDesc());
  };
  CHECK(order("ORDER BY StartTime DESC") == std::make_tuple("StartTime", false, true));
  CHECK(order("order by starttime desc") == std::make_tuple("StartTime", false, true));
  CHECK(order("ORDER BY StartTime") == std::make_tuple("StartTime", true, false));
  CHECK(order("ORDER BY StartTime ASC") == std::make_tuple("StartTime", true, false));
  CHECK(order("Project = 'web' ORDER BY CloseTime DESC") ==
        std::make_tuple("CloseTime", false, false));
  CHECK(order("ORDER BY Priority") == std::make_tuple("Priority", true, false));
  CHECK(order("ORDER BY status desc") == std::make_tuple("ExecutionStatus", false, false));
  CHECK(Parse("ORDER BY Priority").Matches(internal::VisibilityRecord()));
  CHECK(Canonical("ORDER BY StartTime DESC").empty());
  CHECK(Canonical("Priority > 1 ORDER BY Priority") == "Priority > 1 ORDER BY Priority ASC");
}

std::vector<std::string> SortedRunIds(std::string_view text,
                                      std::vector<internal::VisibilityRecord> records) {
  VisibilityQuery query = Parse(text);
  std::sort(records.begin(), records.end(),
            [&query](const auto& a, const auto& b) { return query.OrderedBefore(a, b); });
  std::vector<std::string> run_ids;
  run_ids.reserve(records.size());
  for (const auto& record : records) run_ids.push_back(record.run_id());
  return run_ids;
}

TEST_CASE("OrderedBefore sorts by the field, NULLs last, ties in table order") {
  std::vector<internal::VisibilityRecord> records;
  auto add = [&](std::string run_id, std::string_view start, std::optional<int64_t> priority) {
    internal::VisibilityRecord record = Record();
    record.set_run_id(std::move(run_id));
    ToProto(At(start), record.mutable_start_time());
    auto& attributes = *record.mutable_search_attributes()->mutable_indexed_fields();
    attributes.erase("Priority");
    if (priority) attributes["Priority"] = IntAttribute(*priority);
    records.push_back(record);
  };
  add("a", "2024-05-01T10:00:00Z", 2);
  add("b", "2024-05-01T11:00:00Z", std::nullopt);
  add("c", "2024-05-01T12:00:00Z", 1);
  add("d", "2024-05-01T12:00:00Z", 2);
  add("e", "2024-05-01T09:00:00Z", std::nullopt);
  using Ids = std::vector<std::string>;
  CHECK(SortedRunIds("", records) == Ids{"c", "d", "b", "a", "e"});
  CHECK(SortedRunIds("ORDER BY StartTime ASC", records) == Ids{"e", "a", "b", "c", "d"});
  CHECK(SortedRunIds("ORDER BY Priority ASC", records) == Ids{"c", "d", "a", "b", "e"});
  CHECK(SortedRunIds("ORDER BY Priority DESC", records) == Ids{"d", "a", "c", "b", "e"});
  CHECK(SortedRunIds("ORDER BY RunId DESC", records) == Ids{"e", "d", "c", "b", "a"});
}

TEST_CASE("ToString parses back to the same query") {
  CHECK(Canonical("NOT (a = 1 OR b = 2) AND c = 3") == "NOT (a = 1 OR b = 2) AND c = 3");
  for (std::string_view text :
       {"a = 1 OR NOT (b != 'x' AND c IN (1, 2)) ORDER BY c",
        "StartTime BETWEEN '2024-01-01T00:00:00Z' AND '2024-01-02T00:00:00+05:00'",
        "x IS NULL AND y IS NOT NULL AND z STARTS_WITH 'q\\\\\"'",
        "NOT NOT ((a < -1 OR a >= 10) AND Urgent = false) ORDER BY HistoryLength DESC"}) {
    std::string once = Canonical(text);
    INFO(text << " -> " << once);
    CHECK(Canonical(once) == once);
  }
}

}  // namespace
}  // namespace kiln::orchestrator
