// Random input never crashes the parser: it parses, or fails with kInvalidArgument. Seeded,
// so a failure replays; bounded, so it stays a unit test.
#include <array>
#include <random>
#include <string>

#include <catch2/catch.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/absl_view.h"
#include "orchestrator/visibility/search_attributes.h"
#include "orchestrator/visibility/visibility_query.h"

namespace kiln::orchestrator {
namespace {

namespace internal = ::kiln::internal::v1;

internal::VisibilityRecord Record() {
  internal::VisibilityRecord record;
  record.set_workflow_id("order-17");
  record.set_status(api::WORKFLOW_EXECUTION_STATUS_RUNNING);
  record.mutable_start_time()->set_seconds(1714564800);
  record.set_history_length(12);
  auto& attributes = *record.mutable_search_attributes()->mutable_indexed_fields();
  attributes["Project"] = KeywordAttribute("web");
  attributes["Priority"] = IntAttribute(3);
  attributes["Deadline"] = DatetimeAttribute(absl::FromUnixSeconds(1717200000));
  attributes["Urgent"] = BoolAttribute(true);
  return record;
}

// Parses `text`; a query that parses is also evaluated, ordered and printed, and its printed
// form must parse back to itself. Returns whether it parsed.
bool Exercise(const std::string& text) {
  static const internal::VisibilityRecord kRecords[] = {Record(), internal::VisibilityRecord()};
  absl::StatusOr<VisibilityQuery> query = ParseVisibilityQuery(text);
  if (!query.ok()) {
    INFO(absl::CHexEscape(text) << " -> " << query.status().ToString());
    REQUIRE(query.status().code() == absl::StatusCode::kInvalidArgument);
    REQUIRE(absl::StartsWith(query.status().message(), "query: "));
    return false;
  }
  for (const auto& record : kRecords) (void)query->Matches(record);
  (void)query->OrderedBefore(kRecords[0], kRecords[1]);
  const std::string printed = query->ToString();
  absl::StatusOr<VisibilityQuery> again = ParseVisibilityQuery(printed);
  INFO(absl::CHexEscape(text) << " printed as " << absl::CHexEscape(printed));
  // Printing adds parentheses, so a query near the depth limit may not parse back; anything
  // else must, to the same text and the same verdicts.
  if (!again.ok()) {
    REQUIRE(absl::StrContains(again.status().message(), "nesting deeper"));
    return true;
  }
  REQUIRE(again->ToString() == printed);
  for (const auto& record : kRecords) REQUIRE(again->Matches(record) == query->Matches(record));
  return true;
}

TEST_CASE("Random bytes never crash the parser") {
  std::mt19937_64 random(20240501);
  for (int i = 0; i < 20'000; ++i) {
    std::string text(random() % 64, '\0');
    for (char& c : text) c = static_cast<char>(random() % 256);
    Exercise(text);
  }
}

TEST_CASE("Random token soups never crash the parser") {
  static constexpr std::array<std::string_view, 48> kTokens = {"WorkflowId",
                                                               "RunId",
                                                               "WorkflowType",
                                                               "ExecutionStatus",
                                                               "Status",
                                                               "StartTime",
                                                               "CloseTime",
                                                               "TaskQueue",
                                                               "HistoryLength",
                                                               "Project",
                                                               "Priority",
                                                               "Deadline",
                                                               "Urgent",
                                                               "`Order`",
                                                               "AND",
                                                               "OR",
                                                               "NOT",
                                                               "IN",
                                                               "BETWEEN",
                                                               "IS",
                                                               "NULL",
                                                               "ORDER",
                                                               "BY",
                                                               "ASC",
                                                               "DESC",
                                                               "STARTS_WITH",
                                                               "true",
                                                               "false",
                                                               "(",
                                                               ")",
                                                               ",",
                                                               "=",
                                                               "!=",
                                                               "<>",
                                                               "<",
                                                               "<=",
                                                               ">",
                                                               ">=",
                                                               "'web'",
                                                               "\"Running\"",
                                                               "3",
                                                               "-7",
                                                               "'2024-05-01T12:00:00Z'",
                                                               "'2024-06-01T02:00:00+02:00'",
                                                               "'x\\'y'",
                                                               "'",
                                                               "`",
                                                               "9223372036854775808"};
  std::mt19937_64 random(7);
  int parsed = 0;
  for (int i = 0; i < 50'000; ++i) {
    std::string text;
    const size_t count = random() % 24;
    for (size_t k = 0; k < count; ++k) {
      absl::StrAppend(&text, AbslView(kTokens[random() % kTokens.size()]), random() % 4 ? " " : "");
    }
    parsed += Exercise(text) ? 1 : 0;
  }
  // Some soups must form queries, or the test only ever sees the first error.
  CHECK(parsed > 500);
}

TEST_CASE("Well-formed random queries parse, evaluate and print back") {
  static constexpr std::array<std::string_view, 8> kComparisons = {
      "Project = 'web'",
      "Priority > 2",
      "Urgent = false",
      "Deadline < '2024-07-01T00:00:00Z'",
      "ExecutionStatus IN ('Running', 'Failed')",
      "HistoryLength BETWEEN 1 AND 20",
      "CloseTime IS NULL",
      "WorkflowId STARTS_WITH 'ord'"};
  std::mt19937_64 random(99);
  int parsed = 0;
  for (int i = 0; i < 5'000; ++i) {
    // expr := term (op term)*, with NOT and parentheses at random, depth kept in bounds.
    std::string text;
    int open = 0;
    const size_t terms = 1 + random() % 8;
    for (size_t k = 0; k < terms; ++k) {
      if (k > 0) text += random() % 2 ? " AND " : " OR ";
      if (random() % 4 == 0) text += "NOT ";
      if (random() % 3 == 0 && open < 8) {
        text += "(";
        ++open;
      }
      text += kComparisons[random() % kComparisons.size()];
      if (open > 0 && random() % 3 == 0) {
        text += ")";
        --open;
      }
    }
    text += std::string(open, ')');
    if (random() % 2) text += " ORDER BY Priority DESC";
    absl::StatusOr<VisibilityQuery> query = ParseVisibilityQuery(text);
    INFO(text << " -> " << query.status().ToString());
    REQUIRE(query.ok());
    parsed += Exercise(text) ? 1 : 0;
  }
  CHECK(parsed == 5'000);
}

}  // namespace
}  // namespace kiln::orchestrator
