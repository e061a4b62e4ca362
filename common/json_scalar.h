// The few JSON scalars that are hand-written rather than read and printed through
// google.protobuf.Value: a string, an integer, true or false. The Value route turns every number
// into a double (no int64 beyond 2^53), and its descriptor-driven printer and parser cost
// ~100x more per short string (kiln-converter-bench). Search attribute values and the SDK's
// string payloads use these.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace kiln::json {

// Appends `value` escaped for the inside of a JSON string: `"`, `\` and the control characters
// (\n, \r, \t, the rest as \u00XX); every other byte as it is.
void AppendJsonEscaped(std::string_view value, std::string* out);

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

}  // namespace kiln::json
