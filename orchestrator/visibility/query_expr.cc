// Evaluation and printing of a parsed visibility query filter.
#include "orchestrator/visibility/query_expr.h"

#include <variant>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/absl_view.h"
#include "orchestrator/visibility/query_lexer.h"

namespace kiln::orchestrator::query {
namespace {

template <typename T>
int Order(const T& a, const T& b) {
  if (a < b) return -1;
  if (b < a) return 1;
  return 0;
}

// The value compared with the literal, or nullopt when the two cannot be compared.
std::optional<int> CompareWithLiteral(const SearchAttributeValue& value, const Literal& literal) {
  if (const auto* time = std::get_if<absl::Time>(&value)) {
    if (const auto* literal_time = std::get_if<absl::Time>(&literal.value)) {
      return Order(*time, *literal_time);
    }
    if (literal.as_time) return Order(*time, *literal.as_time);
    return std::nullopt;
  }
  if (value.index() != literal.value.index()) return std::nullopt;
  return CompareValues(value, literal.value);
}

bool Holds(CompareOp op, int order) {
  switch (op) {
    case CompareOp::kEq:
      return order == 0;
    case CompareOp::kNe:
      return order != 0;
    case CompareOp::kLt:
      return order < 0;
    case CompareOp::kLe:
      return order <= 0;
    case CompareOp::kGt:
      return order > 0;
    case CompareOp::kGe:
      return order >= 0;
    case CompareOp::kStartsWith:
      return false;  // Not an ordering; handled by the caller.
  }
  return false;
}

bool Compare(const SearchAttributeValue& value, CompareOp op, const Literal& literal) {
  if (op == CompareOp::kStartsWith) {
    const auto* text = std::get_if<std::string>(&value);
    const auto* prefix = std::get_if<std::string>(&literal.value);
    return text != nullptr && prefix != nullptr && std::string_view(*text).starts_with(*prefix);
  }
  std::optional<int> order = CompareWithLiteral(value, literal);
  return order.has_value() && Holds(op, *order);
}

std::string_view OpName(CompareOp op) {
  switch (op) {
    case CompareOp::kEq:
      return "=";
    case CompareOp::kNe:
      return "!=";
    case CompareOp::kLt:
      return "<";
    case CompareOp::kLe:
      return "<=";
    case CompareOp::kGt:
      return ">";
    case CompareOp::kGe:
      return ">=";
    case CompareOp::kStartsWith:
      return "STARTS_WITH";
  }
  return "=";
}

std::string QuoteString(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        out.push_back(c);
    }
  }
  out.push_back('"');
  return out;
}

std::string LiteralToString(const Literal& literal) {
  struct Printer {
    std::string operator()(const std::string& text) const { return QuoteString(text); }
    std::string operator()(int64_t value) const { return absl::StrCat(value); }
    std::string operator()(absl::Time time) const { return QuoteString(FormatRfc3339(time)); }
    std::string operator()(bool value) const { return value ? "true" : "false"; }
  };
  return std::visit(Printer{}, literal.value);
}

std::string JoinLiterals(const std::vector<Literal>& values, std::string_view separator) {
  return absl::StrJoin(values, AbslView(separator), [](std::string* out, const Literal& literal) {
    out->append(LiteralToString(literal));
  });
}

}  // namespace

std::optional<SearchAttributeValue> ReadField(const FieldRef& field,
                                              const kiln::internal::v1::VisibilityRecord& record) {
  if (field.builtin) return VisibilityFieldValue(*field.builtin, record);
  const auto& attributes = record.search_attributes().indexed_fields();
  auto it = attributes.find(field.name);
  if (it == attributes.end()) return std::nullopt;
  absl::StatusOr<SearchAttributeValue> value = DecodeSearchAttribute(it->second);
  // A value that cannot be decoded was never valid (values are validated before they are
  // stored); it is treated as absent rather than failing the whole list.
  if (!value.ok()) return std::nullopt;
  return *std::move(value);
}

bool Evaluate(const Expr& expr, const kiln::internal::v1::VisibilityRecord& record) {
  switch (expr.kind) {
    case Expr::Kind::kAnd:
      for (const Expr& child : expr.children) {
        if (!Evaluate(child, record)) return false;
      }
      return true;
    case Expr::Kind::kOr:
      for (const Expr& child : expr.children) {
        if (Evaluate(child, record)) return true;
      }
      return false;
    case Expr::Kind::kNot:
      return !Evaluate(expr.children.front(), record);
    default:
      break;
  }
  std::optional<SearchAttributeValue> value = ReadField(expr.field, record);
  switch (expr.kind) {
    case Expr::Kind::kIsNull:
      return !value.has_value();
    case Expr::Kind::kIsNotNull:
      return value.has_value();
    case Expr::Kind::kCompare:
      return value.has_value() && Compare(*value, expr.op, expr.values.front());
    case Expr::Kind::kIn:
      if (!value) return false;
      for (const Literal& literal : expr.values) {
        if (Compare(*value, CompareOp::kEq, literal)) return true;
      }
      return false;
    case Expr::Kind::kBetween:
      return value.has_value() && Compare(*value, CompareOp::kGe, expr.values[0]) &&
             Compare(*value, CompareOp::kLe, expr.values[1]);
    default:
      return false;
  }
}

int CompareValues(const SearchAttributeValue& a, const SearchAttributeValue& b) {
  if (a.index() != b.index()) return Order(a.index(), b.index());
  return std::visit(
      [&b](const auto& left) {
        using T = std::decay_t<decltype(left)>;
        return Order(left, std::get<T>(b));
      },
      a);
}

std::string FieldToString(const FieldRef& field) {
  bool all_digits = !field.name.empty();
  for (char c : field.name)
    all_digits = all_digits && absl::ascii_isdigit(static_cast<unsigned char>(c));
  if (all_digits || IsReservedWord(field.name)) return absl::StrCat("`", field.name, "`");
  return field.name;
}

std::string ToString(const Expr& expr, bool outermost) {
  const std::string field = FieldToString(expr.field);
  switch (expr.kind) {
    case Expr::Kind::kAnd:
    case Expr::Kind::kOr: {
      std::string chain =
          absl::StrJoin(expr.children, expr.kind == Expr::Kind::kAnd ? " AND " : " OR ",
                        [](std::string* out, const Expr& child) {
                          out->append(ToString(child, /*outermost=*/false));
                        });
      return outermost ? chain : absl::StrCat("(", chain, ")");
    }
    case Expr::Kind::kNot:
      return absl::StrCat("NOT ", ToString(expr.children.front(), /*outermost=*/false));
    case Expr::Kind::kCompare:
      return absl::StrCat(field, " ", AbslView(OpName(expr.op)), " ",
                          LiteralToString(expr.values.front()));
    case Expr::Kind::kIn:
      return absl::StrCat(field, " IN (", JoinLiterals(expr.values, ", "), ")");
    case Expr::Kind::kBetween:
      return absl::StrCat(field, " BETWEEN ", JoinLiterals(expr.values, " AND "));
    case Expr::Kind::kIsNull:
      return absl::StrCat(field, " IS NULL");
    case Expr::Kind::kIsNotNull:
      return absl::StrCat(field, " IS NOT NULL");
  }
  return "";
}

}  // namespace kiln::orchestrator::query
