// Typed search attributes: encoding, decoding and the checks made before they are stored.
#include "orchestrator/visibility/search_attributes.h"

#include <algorithm>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/absl_view.h"
#include "common/json_scalar.h"
#include "common/status.h"
#include "orchestrator/visibility/visibility_fields.h"

namespace kiln::orchestrator {
namespace {

constexpr std::string_view kEncoding = "json/plain";

api::Payload Attribute(std::string_view type, std::string data) {
  api::Payload payload;
  (*payload.mutable_metadata())["encoding"] = std::string(kEncoding);
  (*payload.mutable_metadata())["type"] = std::string(type);
  payload.set_data(std::move(data));
  return payload;
}

std::optional<SearchAttributeType> ParseTypeName(std::string_view name) {
  for (SearchAttributeType type : {SearchAttributeType::kKeyword, SearchAttributeType::kInt,
                                   SearchAttributeType::kDatetime, SearchAttributeType::kBool}) {
    if (SearchAttributeTypeName(type) == name) return type;
  }
  return std::nullopt;
}

// A name as it can be shown in an error: escaped, and cut short if long.
std::string Quoted(std::string_view name) {
  constexpr size_t kShown = 120;
  std::string shown = absl::CHexEscape(AbslView(name.substr(0, kShown)));
  return absl::StrCat("\"", shown, name.size() > kShown ? "\"..." : "\"");
}

absl::Status ValidateName(std::string_view name) {
  if (name.empty() || name.size() > kMaxSearchAttributeNameBytes) {
    return absl::InvalidArgumentError(absl::StrFormat("name must be 1 to %d bytes, it is %d",
                                                      kMaxSearchAttributeNameBytes, name.size()));
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_') {
      return absl::InvalidArgumentError("name may hold only letters, digits and '_'");
    }
  }
  if (std::optional<VisibilityField> field = LookupVisibilityField(name)) {
    return absl::InvalidArgumentError(absl::StrCat("name is taken by the built-in field ",
                                                   AbslView(VisibilityFieldName(*field))));
  }
  return absl::OkStatus();
}

// Strict shape of RFC 3339, checked before absl::ParseTime, which would also take leading
// spaces or a year of more than four digits.
bool HasRfc3339Shape(std::string_view text) {
  size_t i = 0;
  auto digits = [&](size_t n) {
    for (size_t k = 0; k < n; ++k, ++i) {
      if (i >= text.size() || !absl::ascii_isdigit(static_cast<unsigned char>(text[i]))) {
        return false;
      }
    }
    return true;
  };
  auto one_of = [&](std::string_view chars) {
    if (i >= text.size() || chars.find(text[i]) == std::string_view::npos) return false;
    ++i;
    return true;
  };
  if (!(digits(4) && one_of("-") && digits(2) && one_of("-") && digits(2) && one_of("Tt") &&
        digits(2) && one_of(":") && digits(2) && one_of(":") && digits(2))) {
    return false;
  }
  if (one_of(".")) {
    if (!digits(1)) return false;
    while (i < text.size() && absl::ascii_isdigit(static_cast<unsigned char>(text[i]))) ++i;
  }
  if (one_of("Zz")) return i == text.size();
  return one_of("+-") && digits(2) && one_of(":") && digits(2) && i == text.size();
}

}  // namespace

std::string_view SearchAttributeTypeName(SearchAttributeType type) {
  switch (type) {
    case SearchAttributeType::kKeyword:
      return "Keyword";
    case SearchAttributeType::kInt:
      return "Int";
    case SearchAttributeType::kDatetime:
      return "Datetime";
    case SearchAttributeType::kBool:
      return "Bool";
  }
  return "Keyword";
}

SearchAttributeType TypeOf(const SearchAttributeValue& value) {
  switch (value.index()) {
    case 1:
      return SearchAttributeType::kInt;
    case 2:
      return SearchAttributeType::kDatetime;
    case 3:
      return SearchAttributeType::kBool;
    default:
      return SearchAttributeType::kKeyword;
  }
}

absl::StatusOr<absl::Time> ParseRfc3339(std::string_view text) {
  absl::Time time;
  std::string error;
  if (!HasRfc3339Shape(text) ||
      !absl::ParseTime(absl::RFC3339_full, AbslView(text), &time, &error)) {
    return absl::InvalidArgumentError(
        absl::StrCat(Quoted(text), " is not an RFC 3339 time like \"2024-05-01T12:00:00Z\""));
  }
  return time;
}

std::string FormatRfc3339(absl::Time time) {
  // "Z" rather than absl's "+00:00": the form Temporal (Go's RFC3339Nano) writes. %E4Y pads
  // years before 1000 to the four digits RFC 3339 requires (%Y would write "999").
  return absl::FormatTime("%E4Y-%m-%dT%H:%M:%E*SZ", time, absl::UTCTimeZone());
}

api::Payload KeywordAttribute(std::string_view value) {
  return Attribute("Keyword", json::EncodeString(value));
}

api::Payload IntAttribute(int64_t value) { return Attribute("Int", absl::StrCat(value)); }

api::Payload DatetimeAttribute(absl::Time value) {
  return Attribute("Datetime", json::EncodeString(FormatRfc3339(value)));
}

api::Payload BoolAttribute(bool value) { return Attribute("Bool", value ? "true" : "false"); }

absl::StatusOr<SearchAttributeValue> DecodeSearchAttribute(const api::Payload& payload) {
  auto encoding = payload.metadata().find("encoding");
  if (encoding == payload.metadata().end() || encoding->second != kEncoding) {
    return absl::InvalidArgumentError("metadata \"encoding\" must be \"json/plain\"");
  }
  auto type_name = payload.metadata().find("type");
  if (type_name == payload.metadata().end()) {
    return absl::InvalidArgumentError(
        "metadata \"type\" is missing (Keyword, Int, Datetime or Bool)");
  }
  std::optional<SearchAttributeType> type = ParseTypeName(type_name->second);
  if (!type) {
    return absl::InvalidArgumentError(absl::StrCat("metadata \"type\" ", Quoted(type_name->second),
                                                   " is not Keyword, Int, Datetime or Bool"));
  }
  const std::string& data = payload.data();
  switch (*type) {
    case SearchAttributeType::kKeyword: {
      absl::StatusOr<std::string> value = json::ParseString(data);
      if (!value.ok()) return Annotate(value.status(), "Keyword data");
      return SearchAttributeValue(*std::move(value));
    }
    case SearchAttributeType::kInt: {
      absl::StatusOr<int64_t> value = json::ParseInt(data);
      if (!value.ok()) return Annotate(value.status(), "Int data");
      return SearchAttributeValue(*value);
    }
    case SearchAttributeType::kDatetime: {
      absl::StatusOr<std::string> text = json::ParseString(data);
      if (!text.ok()) return Annotate(text.status(), "Datetime data");
      absl::StatusOr<absl::Time> value = ParseRfc3339(*text);
      if (!value.ok()) return Annotate(value.status(), "Datetime data");
      return SearchAttributeValue(*value);
    }
    case SearchAttributeType::kBool: {
      absl::StatusOr<bool> value = json::ParseBool(data);
      if (!value.ok()) return Annotate(value.status(), "Bool data");
      return SearchAttributeValue(*value);
    }
  }
  return absl::InternalError("unreachable search attribute type");
}

absl::Status ValidateSearchAttributes(const api::SearchAttributes& attributes) {
  const auto& fields = attributes.indexed_fields();
  if (fields.size() > static_cast<int>(kMaxSearchAttributes)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "search attributes: at most %d allowed, got %d", kMaxSearchAttributes, fields.size()));
  }
  std::vector<std::string_view> names;
  names.reserve(fields.size());
  for (const auto& [name, value] : fields) names.push_back(name);
  std::sort(names.begin(), names.end());
  for (std::string_view name : names) {
    const std::string context = absl::StrCat("search attribute ", Quoted(name));
    RETURN_IF_ERROR(Annotate(ValidateName(name), context));
    const api::Payload& payload = fields.at(std::string(name));
    if (payload.data().size() > kMaxSearchAttributeValueBytes) {
      return absl::InvalidArgumentError(absl::StrFormat("%s: value is %d bytes, at most %d allowed",
                                                        context, payload.data().size(),
                                                        kMaxSearchAttributeValueBytes));
    }
    RETURN_IF_ERROR(Annotate(DecodeSearchAttribute(payload).status(), context));
  }
  return absl::OkStatus();
}

bool IsSearchAttributeRemoval(const api::Payload& payload) {
  if (payload.metadata().contains("type")) return false;
  absl::string_view data = absl::StripAsciiWhitespace(payload.data());
  return data.empty() || data == "null";
}

absl::Status ValidateSearchAttributeUpsert(const api::SearchAttributes& upsert) {
  api::SearchAttributes set;
  for (const auto& [name, value] : upsert.indexed_fields()) {
    if (IsSearchAttributeRemoval(value)) {
      RETURN_IF_ERROR(
          Annotate(ValidateName(name), absl::StrCat("search attribute ", Quoted(name))));
    } else {
      (*set.mutable_indexed_fields())[name] = value;
    }
  }
  return ValidateSearchAttributes(set);
}

void ApplySearchAttributeUpsert(const api::SearchAttributes& upsert, api::SearchAttributes* run) {
  auto& indexed = *run->mutable_indexed_fields();
  for (const auto& [name, value] : upsert.indexed_fields()) {
    if (IsSearchAttributeRemoval(value)) {
      indexed.erase(name);
    } else {
      indexed[name] = value;
    }
  }
}

}  // namespace kiln::orchestrator
