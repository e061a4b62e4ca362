// Splits a visibility query into tokens. Keywords are not told apart from names here: a word
// is a keyword only where the parser expects one, matched ignoring case.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kiln::orchestrator::query {

enum class TokenKind {
  kEnd,         // Always the last token; its position is the query's length.
  kWord,        // [A-Za-z0-9_]+ not all digits: a keyword, a field name, true or false.
  kQuotedName,  // `name`: a field name even when it is spelled like a keyword.
  kString,      // "..." or '...', with backslash escapes.
  kInteger,     // -?[0-9]+
  kOperator,    // = != <> < <= > >=
  kLeftParen,
  kRightParen,
  kComma,
};

struct Token {
  TokenKind kind = TokenKind::kEnd;
  // Byte offset of the token's first character in the query.
  size_t pos = 0;
  // The token as written.
  std::string_view text;
  // kString: the value with escapes resolved; kQuotedName: the name; kOperator: the operator,
  // with "<>" spelled "!=".
  std::string value;
  int64_t integer = 0;
};

// The tokens of `query`, ending with one kEnd; the first lexical error otherwise.
absl::StatusOr<std::vector<Token>> Tokenize(std::string_view query);

// kInvalidArgument "query: at <pos>: <message>": every query error has this shape.
absl::Status QueryError(size_t pos, std::string_view message);

// How a token is named in an error: "end of query", a string literal as "the string" and its
// source text, any other token its text in single quotes (cut short, unprintable bytes as \xNN).
std::string Describe(const Token& token);

// A word token that is `keyword`, ignoring case.
bool IsKeyword(const Token& token, std::string_view keyword);
// Whether a word is one of the query language's reserved words (which a field name can only
// be when quoted in backticks).
bool IsReservedWord(std::string_view word);

}  // namespace kiln::orchestrator::query
