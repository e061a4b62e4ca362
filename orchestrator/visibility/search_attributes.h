// Typed search attributes: the custom, indexed fields of a run that visibility queries filter
// on. A value is a kiln.api.v1.Payload in Temporal's shape: metadata["type"] names the type
// ("Keyword", "Int", "Datetime", "Bool"), metadata["encoding"] is "json/plain", and data is the
// value as JSON (a string, an integer, an RFC 3339 string, true/false). The type travels with
// each value because Kiln has no per-namespace attribute schema.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "kiln/api/v1/common.pb.h"

namespace kiln::orchestrator {

namespace api = ::kiln::api::v1;

inline constexpr size_t kMaxSearchAttributes = 100;
inline constexpr size_t kMaxSearchAttributeNameBytes = 100;
// Counts the JSON data only, as Temporal does; the metadata is checked to be what it must be.
inline constexpr size_t kMaxSearchAttributeValueBytes = 2 << 10;

enum class SearchAttributeType { kKeyword, kInt, kDatetime, kBool };

// A decoded value; the alternative held says the type (std::string is a Keyword).
using SearchAttributeValue = std::variant<std::string, int64_t, absl::Time, bool>;

api::Payload KeywordAttribute(std::string_view value);
api::Payload IntAttribute(int64_t value);
// Written in UTC with as many fractional digits as needed, e.g. "2024-05-01T12:00:00.5Z". A
// time outside the years 0000..9999 (an infinite one included) has no RFC 3339 form: the
// payload it gives fails DecodeSearchAttribute.
api::Payload DatetimeAttribute(absl::Time value);
api::Payload BoolAttribute(bool value);

// The value of one attribute; kInvalidArgument when the metadata or data is not as above.
absl::StatusOr<SearchAttributeValue> DecodeSearchAttribute(const api::Payload& payload);

// Checks a run's attributes before they are stored: names 1..100 bytes of [A-Za-z0-9_] and not
// a built-in field's name in any case (a query could not reach them), at most 100
// attributes, each value's data at most 2 KiB and decodable. Attributes are checked in name
// order so the error (kInvalidArgument, naming the attribute) is the same on every call.
absl::Status ValidateSearchAttributes(const api::SearchAttributes& attributes);

// Temporal's way to remove an attribute in an upsert: a value with no metadata "type" whose
// data is the JSON null (or empty).
bool IsSearchAttributeRemoval(const api::Payload& payload);
// ValidateSearchAttributes for an upsert: removals pass (their names are still checked).
absl::Status ValidateSearchAttributeUpsert(const api::SearchAttributes& upsert);
// Applies an upsert to a run's attributes: each value set, each removal erased.
void ApplySearchAttributeUpsert(const api::SearchAttributes& upsert, api::SearchAttributes* run);

// RFC 3339, strictly: "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+hh:mm|-hh:mm)" ('t' and 'z' allowed in
// lower case), nothing before or after.
absl::StatusOr<absl::Time> ParseRfc3339(std::string_view text);
std::string FormatRfc3339(absl::Time time);

// "Keyword", "Int", "Datetime" or "Bool".
std::string_view SearchAttributeTypeName(SearchAttributeType type);
SearchAttributeType TypeOf(const SearchAttributeValue& value);

}  // namespace kiln::orchestrator
