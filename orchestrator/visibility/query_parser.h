// The recursive-descent parser of the visibility query language (grammar in
// visibility_query.h). Recursion is bounded by the nesting limit; AND and OR chains are read
// in loops, so their length costs no stack.
#pragma once

#include <optional>
#include <string_view>

#include "absl/status/statusor.h"
#include "orchestrator/visibility/query_expr.h"

namespace kiln::orchestrator::query {

struct ParsedQuery {
  // Unset: the query has no filter.
  std::optional<Expr> filter;
  // Unset: no ORDER BY clause.
  std::optional<FieldRef> order_field;
  bool ascending = false;
};

absl::StatusOr<ParsedQuery> Parse(std::string_view text);

}  // namespace kiln::orchestrator::query
