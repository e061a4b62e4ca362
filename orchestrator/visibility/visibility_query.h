// The visibility query language: the SQL-like filter of ListWorkflowExecutions, in the style
// of Temporal's list filter, e.g.
//
//   Project = "web" AND ExecutionStatus = "Running" ORDER BY StartTime DESC
//
// Grammar (keywords ignore case):
//   query      := [expr] ['ORDER' 'BY' field ['ASC' | 'DESC']]   (no direction: ASC, as in SQL)
//   expr       := and ('OR' and)*
//   and        := unary ('AND' unary)*
//   unary      := 'NOT' unary | '(' expr ')' | comparison
//   comparison := field op value | field 'IN' '(' value (',' value)* ')'
//               | field 'BETWEEN' value 'AND' value | field 'IS' ['NOT'] 'NULL'
//   op         := '=' | '!=' | '<>' | '<' | '<=' | '>' | '>=' | 'STARTS_WITH'
//   value      := "string" | 'string' (escapes \\ \" \' \n \t \r) | integer | true | false
//   field      := name | `name` (backticks let a reserved word name a custom attribute)
//
// Built-in fields (names ignore case): WorkflowId, RunId, WorkflowType, TaskQueue (strings),
// ExecutionStatus or Status ("Running", "Completed", "Failed", "Canceled", "Terminated",
// "ContinuedAsNew", "TimedOut"; only =, !=, IN, IS NULL), StartTime and CloseTime (RFC 3339
// strings), HistoryLength (integer). A literal of the wrong type for a built-in is a parse
// error. Any other name is a custom search attribute, compared by the type its value carries;
// a record whose attribute is missing or of another type than the literal does not match that
// comparison (whatever the operator), though NOT of it does. A built-in at its proto default
// (e.g. CloseTime of an open run) is NULL.
//
// Errors are kInvalidArgument "query: at <byte offset, from 0>: <what was expected>, got ...".
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "kiln/internal/v1/persistence.pb.h"

namespace kiln::orchestrator {

namespace query {
struct Expr;
struct FieldRef;
}  // namespace query

inline constexpr size_t kMaxVisibilityQueryBytes = 4 << 10;
// Parentheses and NOTs around any point of the query.
inline constexpr int kMaxVisibilityQueryDepth = 32;
inline constexpr size_t kMaxVisibilityQueryInValues = 100;

class VisibilityQuery {
 public:
  struct OrderBy {
    // The canonical built-in name ("StartTime") or the custom attribute's name.
    std::string field = "StartTime";
    bool ascending = false;
  };

  // Matches every record, newest start first: the empty query.
  VisibilityQuery();

  bool Matches(const kiln::internal::v1::VisibilityRecord& record) const;

  const OrderBy& order_by() const { return order_by_; }
  // Whether the visibility table's own key order (newest start first) is the order asked for,
  // so a scan needs no sort.
  bool OrderIsStartTimeDesc() const;
  // A strict weak order for sorting records as order_by asks: NULL values last whichever the
  // direction, ties in the table's own order (StartTime descending, then RunId).
  bool OrderedBefore(const kiln::internal::v1::VisibilityRecord& a,
                     const kiln::internal::v1::VisibilityRecord& b) const;

  // Canonical text (fully parenthesized, canonical names and keywords; the ORDER BY clause
  // only when it is not the default) that parses back to the same query. For logs and tests.
  std::string ToString() const;

 private:
  friend absl::StatusOr<VisibilityQuery> ParseVisibilityQuery(std::string_view text);

  // Shared and immutable, so a query is cheap to copy. Null: no filter.
  std::shared_ptr<const query::Expr> filter_;
  std::shared_ptr<const query::FieldRef> order_field_;
  OrderBy order_by_;
};

// Parses `text` (at most 4 KiB, at most 32 levels of nesting, at most 100 IN values).
absl::StatusOr<VisibilityQuery> ParseVisibilityQuery(std::string_view text);

}  // namespace kiln::orchestrator
