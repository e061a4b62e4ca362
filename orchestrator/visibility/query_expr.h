// The parsed form of a visibility query's filter, and how it is evaluated against a record.
// Built by the parser (visibility_query.cc), which has already checked everything that can be
// checked without a record: built-in fields get literals of their own type.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "kiln/internal/v1/persistence.pb.h"
#include "orchestrator/visibility/search_attributes.h"
#include "orchestrator/visibility/visibility_fields.h"

namespace kiln::orchestrator::query {

struct FieldRef {
  // Unset: a custom search attribute.
  std::optional<VisibilityField> builtin;
  // The canonical built-in name, or the attribute's name as written.
  std::string name;
};

// The field's value in `record`; nullopt is NULL: a built-in at its proto default, or a custom
// attribute that is absent or cannot be decoded.
std::optional<SearchAttributeValue> ReadField(const FieldRef& field,
                                              const kiln::internal::v1::VisibilityRecord& record);

struct Literal {
  // A string, integer or bool as written; an absl::Time once the parser has read a string as
  // the time a Datetime built-in needs.
  SearchAttributeValue value;
  // For a string that reads as RFC 3339: the time, for comparing with a custom Datetime.
  std::optional<absl::Time> as_time;
};

enum class CompareOp { kEq, kNe, kLt, kLe, kGt, kGe, kStartsWith };

struct Expr {
  enum class Kind { kAnd, kOr, kNot, kCompare, kIn, kBetween, kIsNull, kIsNotNull };
  Kind kind = Kind::kAnd;
  // kAnd, kOr: two or more; kNot: one.
  std::vector<Expr> children;
  // The rest: comparisons.
  FieldRef field;
  CompareOp op = CompareOp::kEq;
  // kCompare: one; kIn: one or more; kBetween: low, high.
  std::vector<Literal> values;
};

// Comparisons with NULL, and between a value and a literal of another type, are false, for
// every operator (so `A != 1` does not match a record without A, but `NOT A = 1` does).
bool Evaluate(const Expr& expr, const kiln::internal::v1::VisibilityRecord& record);

// Orders two field values: -1, 0, 1; values of different types order by type, so sorting is
// total even when runs give one attribute different types.
int CompareValues(const SearchAttributeValue& a, const SearchAttributeValue& b);

// The filter in canonical form: every AND/OR chain but the outermost in parentheses,
// canonical field names and keywords. Parsing it again gives the same filter.
std::string ToString(const Expr& expr, bool outermost = true);
// A field name as the query language writes it: in backticks when it is a reserved word.
std::string FieldToString(const FieldRef& field);

}  // namespace kiln::orchestrator::query
