// The visibility query tokenizer.
#include "orchestrator/visibility/query_lexer.h"

#include <array>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/absl_view.h"

namespace kiln::orchestrator::query {
namespace {

constexpr std::array<std::string_view, 14> kReservedWords = {
    "AND",   "OR", "NOT", "IN",   "BETWEEN",     "IS",   "NULL",
    "ORDER", "BY", "ASC", "DESC", "STARTS_WITH", "TRUE", "FALSE",
};

bool IsWordChar(char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_'; }

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// Bytes as they can be shown in an error message.
std::string Printable(std::string_view text) {
  std::string out;
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte < 0x7F) {
      out.push_back(c);
    } else {
      absl::StrAppendFormat(&out, "\\x%02x", byte);
    }
  }
  return out;
}

class Lexer {
 public:
  explicit Lexer(std::string_view query) : query_(query) {}

  absl::StatusOr<std::vector<Token>> Run() {
    std::vector<Token> tokens;
    while (true) {
      while (i_ < query_.size() && IsSpace(query_[i_])) ++i_;
      Token token;
      token.pos = i_;
      if (i_ == query_.size()) {
        tokens.push_back(std::move(token));
        return tokens;
      }
      absl::Status status = Next(&token);
      if (!status.ok()) return status;
      token.text = query_.substr(token.pos, i_ - token.pos);
      tokens.push_back(std::move(token));
    }
  }

 private:
  absl::Status Next(Token* token) {
    const char c = query_[i_];
    if (IsWordChar(c)) return Word(token);
    if (c == '-' && i_ + 1 < query_.size() &&
        absl::ascii_isdigit(static_cast<unsigned char>(query_[i_ + 1]))) {
      ++i_;
      // "-5abc" is no integer, and a minus sign is nothing else.
      absl::Status status = Word(token);
      if (status.ok() && token->kind != TokenKind::kInteger) return Unexpected(token->pos);
      return status;
    }
    if (c == '"' || c == '\'') return String(token);
    if (c == '`') return QuotedName(token);
    ++i_;
    switch (c) {
      case '(':
        token->kind = TokenKind::kLeftParen;
        return absl::OkStatus();
      case ')':
        token->kind = TokenKind::kRightParen;
        return absl::OkStatus();
      case ',':
        token->kind = TokenKind::kComma;
        return absl::OkStatus();
      case '=':
        return Operator(token, "=");
      case '!':
        if (Take('=')) return Operator(token, "!=");
        return Unexpected(token->pos);
      case '<':
        if (Take('=')) return Operator(token, "<=");
        if (Take('>')) return Operator(token, "!=");
        return Operator(token, "<");
      case '>':
        if (Take('=')) return Operator(token, ">=");
        return Operator(token, ">");
      default:
        return Unexpected(token->pos);
    }
  }

  // A word, or an integer when all digits. Reads from i_, which may be just past a minus sign.
  absl::Status Word(Token* token) {
    bool all_digits = true;
    while (i_ < query_.size() && IsWordChar(query_[i_])) {
      all_digits = all_digits && absl::ascii_isdigit(static_cast<unsigned char>(query_[i_]));
      ++i_;
    }
    if (!all_digits) {
      token->kind = TokenKind::kWord;
      return absl::OkStatus();
    }
    token->kind = TokenKind::kInteger;
    // From token->pos, so a minus sign is included.
    if (!absl::SimpleAtoi(AbslView(query_.substr(token->pos, i_ - token->pos)), &token->integer)) {
      return QueryError(token->pos, "integer out of the int64 range");
    }
    return absl::OkStatus();
  }

  absl::Status String(Token* token) {
    const char quote = query_[i_++];
    token->kind = TokenKind::kString;
    while (i_ < query_.size()) {
      const char c = query_[i_];
      if (c == quote) {
        ++i_;
        return absl::OkStatus();
      }
      if (c != '\\') {
        token->value.push_back(c);
        ++i_;
        continue;
      }
      if (i_ + 1 == query_.size()) break;
      const char e = query_[i_ + 1];
      switch (e) {
        case '\\':
        case '\'':
        case '"':
          token->value.push_back(e);
          break;
        case 'n':
          token->value.push_back('\n');
          break;
        case 't':
          token->value.push_back('\t');
          break;
        case 'r':
          token->value.push_back('\r');
          break;
        default:
          return QueryError(i_,
                            absl::StrCat("invalid escape '\\", Printable(std::string_view(&e, 1)),
                                         "' in a string (use \\\\, \\', \\\", \\n, \\t or \\r)"));
      }
      i_ += 2;
    }
    return QueryError(token->pos, "unterminated string");
  }

  absl::Status QuotedName(Token* token) {
    ++i_;
    token->kind = TokenKind::kQuotedName;
    const size_t end = query_.find('`', i_);
    if (end == std::string_view::npos) return QueryError(token->pos, "unterminated `name`");
    token->value = std::string(query_.substr(i_, end - i_));
    i_ = end + 1;
    if (token->value.empty()) return QueryError(token->pos, "empty `name`");
    for (char c : token->value) {
      if (!IsWordChar(c)) {
        return QueryError(token->pos, "a field name may hold only letters, digits and '_'");
      }
    }
    return absl::OkStatus();
  }

  absl::Status Operator(Token* token, std::string_view op) {
    token->kind = TokenKind::kOperator;
    token->value = std::string(op);
    return absl::OkStatus();
  }

  bool Take(char c) {
    if (i_ < query_.size() && query_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }

  absl::Status Unexpected(size_t pos) {
    return QueryError(
        pos, absl::StrCat("unexpected character '", Printable(query_.substr(pos, 1)), "'"));
  }

  std::string_view query_;
  size_t i_ = 0;
};

}  // namespace

absl::StatusOr<std::vector<Token>> Tokenize(std::string_view query) { return Lexer(query).Run(); }

absl::Status QueryError(size_t pos, std::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat("query: at ", pos, ": ", AbslView(message)));
}

std::string Describe(const Token& token) {
  if (token.kind == TokenKind::kEnd) return "end of query";
  constexpr size_t kShown = 40;
  std::string shown = Printable(token.text.substr(0, kShown));
  // A string literal keeps its own quotes (a second pair would read as an empty string).
  if (token.kind == TokenKind::kString) {
    return absl::StrCat("the string ", shown, token.text.size() > kShown ? "..." : "");
  }
  return absl::StrCat("'", shown, token.text.size() > kShown ? "...'" : "'");
}

bool IsKeyword(const Token& token, std::string_view keyword) {
  return token.kind == TokenKind::kWord &&
         absl::EqualsIgnoreCase(AbslView(token.text), AbslView(keyword));
}

bool IsReservedWord(std::string_view word) {
  for (std::string_view reserved : kReservedWords) {
    if (absl::EqualsIgnoreCase(AbslView(reserved), AbslView(word))) return true;
  }
  return false;
}

}  // namespace kiln::orchestrator::query
