// The visibility query parser: tokens to an Expr, checking every limit and every literal whose
// type is known before a record is seen.
#include "orchestrator/visibility/query_parser.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/absl_view.h"
#include "common/status.h"
#include "orchestrator/visibility/query_lexer.h"
#include "orchestrator/visibility/visibility_query.h"

namespace kiln::orchestrator::query {
namespace {

bool IsOrdering(CompareOp op) {
  return op == CompareOp::kLt || op == CompareOp::kLe || op == CompareOp::kGt ||
         op == CompareOp::kGe;
}

CompareOp OpFromText(std::string_view op) {
  if (op == "!=") return CompareOp::kNe;
  if (op == "<") return CompareOp::kLt;
  if (op == "<=") return CompareOp::kLe;
  if (op == ">") return CompareOp::kGt;
  if (op == ">=") return CompareOp::kGe;
  return CompareOp::kEq;
}

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  absl::StatusOr<ParsedQuery> Run() {
    ParsedQuery parsed;
    if (Peek().kind != TokenKind::kEnd && !IsKeyword(Peek(), "ORDER")) {
      ASSIGN_OR_RETURN(parsed.filter, ParseOr(0));
    }
    if (!IsKeyword(Peek(), "ORDER")) {
      if (Peek().kind == TokenKind::kEnd) return parsed;
      return Expected("'AND', 'OR', 'ORDER BY' or end of query");
    }
    Advance();
    if (!IsKeyword(Peek(), "BY")) return Expected("'BY' after 'ORDER'");
    Advance();
    ASSIGN_OR_RETURN(parsed.order_field, ParseField("a field name after 'ORDER BY'"));
    // As in SQL, no direction is ascending.
    parsed.ascending = true;
    if (IsKeyword(Peek(), "ASC") || IsKeyword(Peek(), "DESC")) {
      parsed.ascending = IsKeyword(Advance(), "ASC");
      if (Peek().kind != TokenKind::kEnd) return Expected("end of query after the ORDER BY clause");
    } else if (Peek().kind != TokenKind::kEnd) {
      return Expected("'ASC', 'DESC' or end of query");
    }
    return parsed;
  }

 private:
  const Token& Peek() const { return tokens_[next_]; }

  const Token& Advance() {
    const Token& token = tokens_[next_];
    if (token.kind != TokenKind::kEnd) ++next_;
    return token;
  }

  // "expected <what>, got <the next token>".
  absl::Status Expected(std::string_view what) const {
    return QueryError(Peek().pos,
                      absl::StrCat("expected ", AbslView(what), ", got ", Describe(Peek())));
  }

  absl::StatusOr<Expr> ParseOr(int depth) { return ParseChain(depth, "OR", Expr::Kind::kOr); }

  absl::StatusOr<Expr> ParseAnd(int depth) { return ParseChain(depth, "AND", Expr::Kind::kAnd); }

  // operand (keyword operand)*, where operand is the next tighter level.
  absl::StatusOr<Expr> ParseChain(int depth, std::string_view keyword, Expr::Kind kind) {
    auto operand = [&]() { return kind == Expr::Kind::kOr ? ParseAnd(depth) : ParseUnary(depth); };
    ASSIGN_OR_RETURN(Expr first, operand());
    if (!IsKeyword(Peek(), keyword)) return first;
    Expr chain;
    chain.kind = kind;
    chain.children.push_back(std::move(first));
    while (IsKeyword(Peek(), keyword)) {
      Advance();
      ASSIGN_OR_RETURN(Expr next, operand());
      chain.children.push_back(std::move(next));
    }
    return chain;
  }

  absl::StatusOr<Expr> ParseUnary(int depth) {
    const Token& token = Peek();
    const bool is_not = IsKeyword(token, "NOT");
    if (!is_not && token.kind != TokenKind::kLeftParen) return ParseComparison();
    if (depth >= kMaxVisibilityQueryDepth) {
      return QueryError(token.pos, absl::StrFormat("nesting deeper than %d levels of "
                                                   "parentheses and NOT",
                                                   kMaxVisibilityQueryDepth));
    }
    Advance();
    if (is_not) {
      Expr negation;
      negation.kind = Expr::Kind::kNot;
      ASSIGN_OR_RETURN(Expr operand, ParseUnary(depth + 1));
      negation.children.push_back(std::move(operand));
      return negation;
    }
    ASSIGN_OR_RETURN(Expr inner, ParseOr(depth + 1));
    if (Peek().kind != TokenKind::kRightParen) {
      return Expected(absl::StrCat("')' to close the '(' at ", token.pos));
    }
    Advance();
    return inner;
  }

  absl::StatusOr<FieldRef> ParseField(std::string_view what) {
    const Token& token = Peek();
    std::string name;
    if (token.kind == TokenKind::kQuotedName) {
      name = token.value;
    } else if (token.kind == TokenKind::kWord && !IsReservedWord(token.text)) {
      name = std::string(token.text);
    } else {
      return Expected(what);
    }
    FieldRef field;
    if (std::optional<VisibilityField> builtin = LookupVisibilityField(name)) {
      field.builtin = *builtin;
      field.name = std::string(VisibilityFieldName(*builtin));
    } else if (name.size() > kMaxSearchAttributeNameBytes) {
      return QueryError(token.pos, absl::StrFormat("field name longer than %d bytes",
                                                   kMaxSearchAttributeNameBytes));
    } else {
      field.name = std::move(name);
    }
    Advance();
    return field;
  }

  absl::StatusOr<Expr> ParseComparison() {
    const Token& field_token = Peek();
    ASSIGN_OR_RETURN(FieldRef field, ParseField("a field name, '(' or 'NOT'"));
    Expr comparison;
    comparison.field = std::move(field);
    const Token& op = Peek();
    const std::string after = absl::StrCat("after '", AbslView(op.text), "'");
    if (op.kind == TokenKind::kOperator || IsKeyword(op, "STARTS_WITH")) {
      comparison.kind = Expr::Kind::kCompare;
      comparison.op =
          op.kind == TokenKind::kOperator ? OpFromText(op.value) : CompareOp::kStartsWith;
      RETURN_IF_ERROR(CheckOperator(comparison, op));
      Advance();
      RETURN_IF_ERROR(ParseValueInto(&comparison, after));
    } else if (IsKeyword(op, "IN")) {
      comparison.kind = Expr::Kind::kIn;
      Advance();
      if (Peek().kind != TokenKind::kLeftParen) return Expected("'(' after 'IN'");
      std::string value_after = "after '('";
      do {
        Advance();  // '(' or ','
        if (comparison.values.size() == kMaxVisibilityQueryInValues) {
          return QueryError(Peek().pos, absl::StrFormat("more than %d values in IN",
                                                        kMaxVisibilityQueryInValues));
        }
        RETURN_IF_ERROR(ParseValueInto(&comparison, value_after));
        value_after = "after ','";
      } while (Peek().kind == TokenKind::kComma);
      if (Peek().kind != TokenKind::kRightParen) return Expected("',' or ')' in the IN list");
      Advance();
    } else if (IsKeyword(op, "BETWEEN")) {
      comparison.kind = Expr::Kind::kBetween;
      comparison.op = CompareOp::kLe;  // For CheckOperator: BETWEEN orders.
      RETURN_IF_ERROR(CheckOperator(comparison, op));
      Advance();
      RETURN_IF_ERROR(ParseValueInto(&comparison, after));
      if (!IsKeyword(Peek(), "AND")) return Expected("'AND' between the BETWEEN values");
      Advance();
      RETURN_IF_ERROR(ParseValueInto(&comparison, "after 'AND'"));
    } else if (IsKeyword(op, "IS")) {
      Advance();
      comparison.kind = Expr::Kind::kIsNull;
      if (IsKeyword(Peek(), "NOT")) {
        Advance();
        comparison.kind = Expr::Kind::kIsNotNull;
      }
      if (!IsKeyword(Peek(), "NULL")) {
        return Expected(comparison.kind == Expr::Kind::kIsNull ? "'NULL' after 'IS'"
                                                               : "'NULL' after 'IS NOT'");
      }
      Advance();
    } else {
      return Expected(
          absl::StrCat("an operator (=, !=, <, <=, >, >=, STARTS_WITH, IN, BETWEEN "
                       "or IS) after '",
                       AbslView(field_token.text), "'"));
    }
    return comparison;
  }

  // Operators a built-in field cannot take are refused before its value is read.
  absl::Status CheckOperator(const Expr& comparison, const Token& op) const {
    if (!comparison.field.builtin) return absl::OkStatus();
    const VisibilityField field = *comparison.field.builtin;
    const bool orders = IsOrdering(comparison.op) || comparison.kind == Expr::Kind::kBetween;
    if (field == VisibilityField::kExecutionStatus &&
        (orders || comparison.op == CompareOp::kStartsWith)) {
      return QueryError(op.pos, "ExecutionStatus takes only =, !=, IN and IS NULL");
    }
    if (comparison.op == CompareOp::kStartsWith &&
        VisibilityFieldType(field) != SearchAttributeType::kKeyword) {
      return QueryError(
          op.pos,
          absl::StrCat("STARTS_WITH takes a Keyword field; ", comparison.field.name, " is of type ",
                       AbslView(SearchAttributeTypeName(VisibilityFieldType(field)))));
    }
    return absl::OkStatus();
  }

  // Reads one literal into comparison->values, checked against the field and operator.
  absl::Status ParseValueInto(Expr* comparison, std::string_view after) {
    const Token& token = Peek();
    Literal literal;
    if (token.kind == TokenKind::kString) {
      literal.value = token.value;
    } else if (token.kind == TokenKind::kInteger) {
      literal.value = token.integer;
    } else if (IsKeyword(token, "TRUE") || IsKeyword(token, "FALSE")) {
      literal.value = IsKeyword(token, "TRUE");
    } else {
      return Expected(absl::StrCat("a value ", AbslView(after)));
    }
    RETURN_IF_ERROR(CheckLiteral(*comparison, token, &literal));
    comparison->values.push_back(std::move(literal));
    Advance();
    return absl::OkStatus();
  }

  absl::Status CheckLiteral(const Expr& comparison, const Token& token, Literal* literal) const {
    const auto* text = std::get_if<std::string>(&literal->value);
    const bool orders = IsOrdering(comparison.op) || comparison.kind == Expr::Kind::kBetween;
    if (std::holds_alternative<bool>(literal->value) && orders) {
      return QueryError(token.pos, "true and false can only be compared with =, != and IN");
    }
    if (comparison.kind == Expr::Kind::kCompare && comparison.op == CompareOp::kStartsWith &&
        text == nullptr) {
      return QueryError(token.pos,
                        absl::StrCat("STARTS_WITH takes a string, got ", Describe(token)));
    }
    const FieldRef& field = comparison.field;
    if (!field.builtin) {
      // The attribute's type is known only per record; a string may be meant as a time.
      if (text != nullptr) {
        absl::StatusOr<absl::Time> time = ParseRfc3339(*text);
        if (time.ok()) literal->as_time = *time;
      }
      return absl::OkStatus();
    }
    if (*field.builtin == VisibilityField::kExecutionStatus) {
      std::optional<std::string_view> status =
          text != nullptr ? CanonicalStatusName(*text) : std::nullopt;
      if (!status) {
        return QueryError(token.pos, absl::StrCat("expected an ExecutionStatus (Running, "
                                                  "Completed, Failed, Canceled, Terminated, "
                                                  "ContinuedAsNew or TimedOut), got ",
                                                  Describe(token)));
      }
      literal->value = std::string(*status);
      return absl::OkStatus();
    }
    switch (VisibilityFieldType(*field.builtin)) {
      case SearchAttributeType::kKeyword:
        if (text != nullptr) return absl::OkStatus();
        return QueryError(token.pos,
                          absl::StrCat(field.name, " takes a string, got ", Describe(token)));
      case SearchAttributeType::kInt:
        if (std::holds_alternative<int64_t>(literal->value)) return absl::OkStatus();
        return QueryError(token.pos,
                          absl::StrCat(field.name, " takes an integer, got ", Describe(token)));
      case SearchAttributeType::kDatetime: {
        absl::StatusOr<absl::Time> time = absl::InvalidArgumentError("not a string");
        if (text != nullptr) time = ParseRfc3339(*text);
        if (!time.ok()) {
          return QueryError(token.pos, absl::StrCat(field.name,
                                                    " takes an RFC 3339 time like "
                                                    "\"2024-05-01T12:00:00Z\", got ",
                                                    Describe(token)));
        }
        literal->value = *time;
        return absl::OkStatus();
      }
      case SearchAttributeType::kBool:
        break;  // No built-in field is a Bool.
    }
    return absl::OkStatus();
  }

  std::vector<Token> tokens_;
  size_t next_ = 0;
};

}  // namespace

absl::StatusOr<ParsedQuery> Parse(std::string_view text) {
  if (text.size() > kMaxVisibilityQueryBytes) {
    return absl::InvalidArgumentError(absl::StrFormat("query: %d bytes, at most %d allowed",
                                                      text.size(), kMaxVisibilityQueryBytes));
  }
  ASSIGN_OR_RETURN(std::vector<Token> tokens, Tokenize(text));
  return Parser(std::move(tokens)).Run();
}

}  // namespace kiln::orchestrator::query
