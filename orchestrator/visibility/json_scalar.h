// The few JSON scalars a search attribute value can be: a string, an integer, true or false.
// Hand-written rather than going through google.protobuf.Value, which turns every number into
// a double and so cannot carry an int64 beyond 2^53 exactly.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace kiln::orchestrator::json {

// `value` as a JSON string literal, quotes included. Bytes are passed through as they are, so
// only valid UTF-8 input gives valid JSON.
std::string EncodeString(std::string_view value);

// Each parses one whole JSON text (surrounding JSON whitespace allowed) that must be exactly
// one value of that kind. Text that is not UTF-8, or is any other JSON, is kInvalidArgument.
absl::StatusOr<std::string> ParseString(std::string_view text);
absl::StatusOr<int64_t> ParseInt(std::string_view text);
absl::StatusOr<bool> ParseBool(std::string_view text);

// Well-formed UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
bool IsValidUtf8(std::string_view text);

}  // namespace kiln::orchestrator::json
