// Every kind of visibility query error: kInvalidArgument, the byte offset (from 0) and what
// was expected.
#include <string>

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "orchestrator/visibility/visibility_query.h"

namespace kiln::orchestrator {
namespace {

std::string Error(std::string_view text) {
  absl::StatusOr<VisibilityQuery> query = ParseVisibilityQuery(text);
  INFO(text);
  REQUIRE_FALSE(query.ok());
  CHECK(query.status().code() == absl::StatusCode::kInvalidArgument);
  return std::string(query.status().message());
}

TEST_CASE("A missing value names the operator and the position") {
  CHECK(Error("ExecutionStatus =") == "query: at 17: expected a value after '=', got end of query");
  CHECK(Error("Project = AND x = 1") == "query: at 10: expected a value after '=', got 'AND'");
  CHECK(Error("Project STARTS_WITH )") ==
        "query: at 20: expected a value after 'STARTS_WITH', got ')'");
  CHECK(Error("Project IN (") == "query: at 12: expected a value after '(', got end of query");
  CHECK(Error("Project IN ('a',)") == "query: at 16: expected a value after ',', got ')'");
  CHECK(Error("Priority BETWEEN 1 AND") ==
        "query: at 22: expected a value after 'AND', got end of query");
  CHECK(Error("Priority between") ==
        "query: at 16: expected a value after 'between', got end of query");
  CHECK(Error("Project = web") == "query: at 10: expected a value after '=', got 'web'");
}

TEST_CASE("Structural errors say what was expected") {
  CHECK(Error("AND x = 1") == "query: at 0: expected a field name, '(' or 'NOT', got 'AND'");
  CHECK(Error("x = 1 AND") == "query: at 9: expected a field name, '(' or 'NOT', got end of query");
  CHECK(Error("'web' = Project") ==
        "query: at 0: expected a field name, '(' or 'NOT', got the string 'web'");
  CHECK(Error("Project") ==
        "query: at 7: expected an operator (=, !=, <, <=, >, >=, STARTS_WITH, IN, BETWEEN or "
        "IS) after 'Project', got end of query");
  CHECK(Error("Project LIKE 'w%'") ==
        "query: at 8: expected an operator (=, !=, <, <=, >, >=, STARTS_WITH, IN, BETWEEN or "
        "IS) after 'Project', got 'LIKE'");
  CHECK(Error("x = 1 y = 2") ==
        "query: at 6: expected 'AND', 'OR', 'ORDER BY' or end of query, got 'y'");
  CHECK(Error("x = 1)") ==
        "query: at 5: expected 'AND', 'OR', 'ORDER BY' or end of query, got ')'");
  CHECK(Error("(x = 1") == "query: at 6: expected ')' to close the '(' at 0, got end of query");
  CHECK(Error("x IN 1") == "query: at 5: expected '(' after 'IN', got '1'");
  CHECK(Error("x IN (1 2)") == "query: at 8: expected ',' or ')' in the IN list, got '2'");
  CHECK(Error("x BETWEEN 1 OR 2") ==
        "query: at 12: expected 'AND' between the BETWEEN values, got 'OR'");
  CHECK(Error("x IS 1") == "query: at 5: expected 'NULL' after 'IS', got '1'");
  CHECK(Error("x IS NOT") == "query: at 8: expected 'NULL' after 'IS NOT', got end of query");
  CHECK(Error("ORDER StartTime") == "query: at 6: expected 'BY' after 'ORDER', got 'StartTime'");
  CHECK(Error("x = 1 ORDER BY") ==
        "query: at 14: expected a field name after 'ORDER BY', got end of query");
  CHECK(Error("ORDER BY StartTime UP") ==
        "query: at 19: expected 'ASC', 'DESC' or end of query, got 'UP'");
  CHECK(Error("ORDER BY StartTime DESC, RunId") ==
        "query: at 23: expected end of query after the ORDER BY clause, got ','");
  CHECK(Error("ORDER BY StartTime DESC x = 1") ==
        "query: at 24: expected end of query after the ORDER BY clause, got 'x'");
}

TEST_CASE("Lexical errors") {
  CHECK(Error("x = 'web") == "query: at 4: unterminated string");
  CHECK(Error("x = \"web\\\"") == "query: at 4: unterminated string");
  CHECK(Error("x = 'a\\qb'") ==
        "query: at 6: invalid escape '\\q' in a string (use \\\\, \\', \\\", \\n, \\t or \\r)");
  CHECK(Error("x = 1; DROP") == "query: at 5: unexpected character ';'");
  CHECK(Error("x ! 1") == "query: at 2: unexpected character '!'");
  CHECK(Error("x = -y") == "query: at 4: unexpected character '-'");
  CHECK(Error("x = -5y") == "query: at 4: unexpected character '-'");
  CHECK(Error(std::string("x = \x01", 5)) == "query: at 4: unexpected character '\\x01'");
  CHECK(Error("x = \xc3\xa9") == "query: at 4: unexpected character '\\xc3'");
  CHECK(Error("x = 9223372036854775808") == "query: at 4: integer out of the int64 range");
  CHECK(Error("x = -9223372036854775809") == "query: at 4: integer out of the int64 range");
  CHECK(Error("`x = 1") == "query: at 0: unterminated `name`");
  CHECK(Error("`` = 1") == "query: at 0: empty `name`");
  CHECK(Error("`a-b` = 1") == "query: at 0: a field name may hold only letters, digits and '_'");
}

TEST_CASE("Literals of the wrong type for a built-in field") {
  CHECK(Error("WorkflowId = 17") == "query: at 13: WorkflowId takes a string, got '17'");
  CHECK(Error("TaskQueue IN ('a', true)") == "query: at 19: TaskQueue takes a string, got 'true'");
  CHECK(Error("HistoryLength > '5'") ==
        "query: at 16: HistoryLength takes an integer, got the string '5'");
  CHECK(Error("StartTime > 'yesterday'") ==
        "query: at 12: StartTime takes an RFC 3339 time like \"2024-05-01T12:00:00Z\", got "
        "the string 'yesterday'");
  CHECK(Error("CloseTime < 1714564800") ==
        "query: at 12: CloseTime takes an RFC 3339 time like \"2024-05-01T12:00:00Z\", got "
        "'1714564800'");
  CHECK(Error("CloseTime BETWEEN '2024-05-01T00:00:00Z' AND '2024-05-02'") ==
        "query: at 45: CloseTime takes an RFC 3339 time like \"2024-05-01T12:00:00Z\", got "
        "the string '2024-05-02'");
  CHECK(Error("ExecutionStatus = 'Done'") ==
        "query: at 18: expected an ExecutionStatus (Running, Completed, Failed, Canceled, "
        "Terminated, ContinuedAsNew or TimedOut), got the string 'Done'");
  CHECK(Error("Status IN ('Running', 1)") ==
        "query: at 22: expected an ExecutionStatus (Running, Completed, Failed, Canceled, "
        "Terminated, ContinuedAsNew or TimedOut), got '1'");
}

TEST_CASE("Operators a field or literal cannot take") {
  CHECK(Error("ExecutionStatus > 'Running'") ==
        "query: at 16: ExecutionStatus takes only =, !=, IN and IS NULL");
  CHECK(Error("Status STARTS_WITH 'Run'") ==
        "query: at 7: ExecutionStatus takes only =, !=, IN and IS NULL");
  CHECK(Error("Status BETWEEN 'Canceled' AND 'Failed'") ==
        "query: at 7: ExecutionStatus takes only =, !=, IN and IS NULL");
  CHECK(Error("StartTime STARTS_WITH '2024'") ==
        "query: at 10: STARTS_WITH takes a Keyword field; StartTime is of type Datetime");
  CHECK(Error("HistoryLength STARTS_WITH '1'") ==
        "query: at 14: STARTS_WITH takes a Keyword field; HistoryLength is of type Int");
  CHECK(Error("Project STARTS_WITH 5") == "query: at 20: STARTS_WITH takes a string, got '5'");
  CHECK(Error("Urgent < true") ==
        "query: at 9: true and false can only be compared with =, != and IN");
  CHECK(Error("Urgent BETWEEN false AND true") ==
        "query: at 15: true and false can only be compared with =, != and IN");
}

TEST_CASE("Limits: length, nesting, IN values, name length") {
  const std::string long_value(kMaxVisibilityQueryBytes, 'x');
  CHECK(Error("x = '" + long_value + "'") == "query: 4102 bytes, at most 4096 allowed");
  CHECK(ParseVisibilityQuery("x = '" + long_value.substr(6) + "'").ok());

  auto nested = [](int depth, std::string_view open) {
    std::string text;
    for (int i = 0; i < depth; ++i) text += open;
    text += "x = 1";
    if (open == "(") text += std::string(depth, ')');
    return text;
  };
  CHECK(ParseVisibilityQuery(nested(kMaxVisibilityQueryDepth, "(")).ok());
  CHECK(Error(nested(kMaxVisibilityQueryDepth + 1, "(")) ==
        "query: at 32: nesting deeper than 32 levels of parentheses and NOT");
  CHECK(ParseVisibilityQuery(nested(kMaxVisibilityQueryDepth, "NOT ")).ok());
  CHECK(Error(nested(kMaxVisibilityQueryDepth + 1, "NOT ")) ==
        "query: at 128: nesting deeper than 32 levels of parentheses and NOT");
  CHECK(ParseVisibilityQuery(nested(16, "NOT (") + std::string(16, ')')).ok());
  // Long AND/OR chains are not nesting.
  std::string chain = "x = 0";
  for (int i = 1; i < 200; ++i) absl::StrAppend(&chain, i % 2 ? " OR " : " AND ", "x = ", i);
  CHECK(ParseVisibilityQuery(chain).ok());

  std::string in = "x IN (0";
  for (size_t i = 1; i < kMaxVisibilityQueryInValues; ++i) absl::StrAppend(&in, ",", i);
  CHECK(ParseVisibilityQuery(in + ")").ok());
  CHECK(Error(in + ",100)") ==
        absl::StrCat("query: at ", in.size() + 1, ": more than 100 values in IN"));

  CHECK(ParseVisibilityQuery(std::string(100, 'n') + " = 1").ok());
  CHECK(Error(std::string(101, 'n') + " = 1") == "query: at 0: field name longer than 100 bytes");
}

}  // namespace
}  // namespace kiln::orchestrator
