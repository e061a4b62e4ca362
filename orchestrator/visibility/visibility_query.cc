// A parsed visibility query: matching, ordering and printing. The parsing itself is in
// query_parser.cc.
#include "orchestrator/visibility/visibility_query.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "orchestrator/visibility/query_expr.h"
#include "orchestrator/visibility/query_parser.h"

namespace kiln::orchestrator {
namespace {

namespace internal = ::kiln::internal::v1;

// The visibility table's own order: StartTime descending, then RunId.
bool TableOrderBefore(const internal::VisibilityRecord& a, const internal::VisibilityRecord& b) {
  const auto& ta = a.start_time();
  const auto& tb = b.start_time();
  if (ta.seconds() != tb.seconds()) return ta.seconds() > tb.seconds();
  if (ta.nanos() != tb.nanos()) return ta.nanos() > tb.nanos();
  return a.run_id() < b.run_id();
}

}  // namespace

VisibilityQuery::VisibilityQuery()
    : order_field_(std::make_shared<const query::FieldRef>(
          query::FieldRef{VisibilityField::kStartTime, "StartTime"})) {}

bool VisibilityQuery::Matches(const internal::VisibilityRecord& record) const {
  return filter_ == nullptr || query::Evaluate(*filter_, record);
}

bool VisibilityQuery::OrderIsStartTimeDesc() const {
  return order_field_->builtin == VisibilityField::kStartTime && !order_by_.ascending;
}

bool VisibilityQuery::OrderedBefore(const internal::VisibilityRecord& a,
                                    const internal::VisibilityRecord& b) const {
  std::optional<SearchAttributeValue> va = query::ReadField(*order_field_, a);
  std::optional<SearchAttributeValue> vb = query::ReadField(*order_field_, b);
  if (va.has_value() != vb.has_value()) return va.has_value();  // NULL last.
  if (va.has_value()) {
    int order = query::CompareValues(*va, *vb);
    if (order != 0) return order_by_.ascending ? order < 0 : order > 0;
  }
  return TableOrderBefore(a, b);
}

std::string VisibilityQuery::ToString() const {
  std::string text = filter_ != nullptr ? query::ToString(*filter_) : "";
  if (!OrderIsStartTimeDesc()) {
    absl::StrAppend(&text, text.empty() ? "" : " ", "ORDER BY ",
                    query::FieldToString(*order_field_), order_by_.ascending ? " ASC" : " DESC");
  }
  return text;
}

absl::StatusOr<VisibilityQuery> ParseVisibilityQuery(std::string_view text) {
  absl::StatusOr<query::ParsedQuery> parsed = query::Parse(text);
  if (!parsed.ok()) return parsed.status();
  VisibilityQuery result;
  if (parsed->filter) {
    result.filter_ = std::make_shared<const query::Expr>(*std::move(parsed->filter));
  }
  if (parsed->order_field) {
    result.order_by_.field = parsed->order_field->name;
    result.order_by_.ascending = parsed->ascending;
    result.order_field_ = std::make_shared<const query::FieldRef>(*std::move(parsed->order_field));
  }
  return result;
}

}  // namespace kiln::orchestrator
