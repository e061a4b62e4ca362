// Typed search attributes: the payloads the constructors make, decoding, and validation.
#include "orchestrator/visibility/search_attributes.h"

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"

namespace kiln::orchestrator {
namespace {

absl::Time At(std::string_view text) { return ParseRfc3339(text).value(); }

api::Payload Raw(std::string type, std::string data) {
  api::Payload payload;
  (*payload.mutable_metadata())["encoding"] = "json/plain";
  (*payload.mutable_metadata())["type"] = std::move(type);
  payload.set_data(std::move(data));
  return payload;
}

TEST_CASE("Constructors make Temporal-shaped json/plain payloads") {
  api::Payload keyword = KeywordAttribute("we\"b");
  CHECK(keyword.metadata().at("encoding") == "json/plain");
  CHECK(keyword.metadata().at("type") == "Keyword");
  CHECK(keyword.data() == R"("we\"b")");
  CHECK(IntAttribute(-42).data() == "-42");
  CHECK(IntAttribute(7).metadata().at("type") == "Int");
  CHECK(BoolAttribute(true).data() == "true");
  CHECK(BoolAttribute(false).metadata().at("type") == "Bool");
  api::Payload datetime = DatetimeAttribute(absl::FromUnixSeconds(1714564800));
  CHECK(datetime.metadata().at("type") == "Datetime");
  CHECK(datetime.data() == R"("2024-05-01T12:00:00Z")");
  CHECK(DatetimeAttribute(absl::FromUnixMillis(1714564800500)).data() ==
        R"("2024-05-01T12:00:00.5Z")");
}

TEST_CASE("Every constructor's payload decodes to its value") {
  CHECK(std::get<std::string>(DecodeSearchAttribute(KeywordAttribute("web")).value()) == "web");
  CHECK(std::get<std::string>(DecodeSearchAttribute(KeywordAttribute("")).value()).empty());
  CHECK(std::get<int64_t>(DecodeSearchAttribute(IntAttribute(INT64_MIN)).value()) == INT64_MIN);
  CHECK(std::get<bool>(DecodeSearchAttribute(BoolAttribute(true)).value()));
  absl::Time t = absl::FromUnixNanos(1714564800123456789);
  CHECK(std::get<absl::Time>(DecodeSearchAttribute(DatetimeAttribute(t)).value()) == t);
  CHECK(TypeOf(DecodeSearchAttribute(DatetimeAttribute(t)).value()) ==
        SearchAttributeType::kDatetime);
}

TEST_CASE("Datetime data is any RFC 3339 time, offsets included") {
  CHECK(std::get<absl::Time>(
            DecodeSearchAttribute(Raw("Datetime", R"("2024-05-01T14:00:00+02:00")")).value()) ==
        At("2024-05-01T12:00:00Z"));
  CHECK(At("2024-05-01t12:00:00z") == absl::FromUnixSeconds(1714564800));
  CHECK(At("2024-05-01T12:00:00.25-00:30") == absl::FromUnixMillis(1714566600250));
  for (std::string_view bad :
       {"2024-05-01", "2024-05-01T12:00:00", "2024-05-01 12:00:00Z", " 2024-05-01T12:00:00Z",
        "2024-05-01T12:00:00Z ", "2024-13-01T12:00:00Z", "12024-05-01T12:00:00Z",
        "2024-05-01T12:00:00.Z", "2024-05-01T12:00:00+0200", "yesterday"}) {
    INFO(bad);
    CHECK(ParseRfc3339(bad).status().code() == absl::StatusCode::kInvalidArgument);
  }
  CHECK(ParseRfc3339("yesterday").status().message() ==
        "\"yesterday\" is not an RFC 3339 time like \"2024-05-01T12:00:00Z\"");
  // No RFC 3339 form: the payload is made, and refused when read.
  CHECK_FALSE(DecodeSearchAttribute(DatetimeAttribute(absl::InfiniteFuture())).ok());
  CHECK_FALSE(
      DecodeSearchAttribute(DatetimeAttribute(At("9999-12-31T23:59:59Z") + absl::Seconds(1))).ok());
  CHECK(DatetimeAttribute(At("0999-01-01T00:00:00Z")).data() == R"("0999-01-01T00:00:00Z")");
  CHECK(std::get<absl::Time>(
            DecodeSearchAttribute(DatetimeAttribute(At("0000-01-01T00:00:00Z"))).value()) ==
        At("0000-01-01T00:00:00Z"));
}

TEST_CASE("Decoding refuses payloads of the wrong shape, saying what is wrong") {
  auto message = [](const api::Payload& payload) {
    return std::string(DecodeSearchAttribute(payload).status().message());
  };
  api::Payload no_encoding = KeywordAttribute("web");
  no_encoding.mutable_metadata()->erase("encoding");
  CHECK(message(no_encoding) == "metadata \"encoding\" must be \"json/plain\"");
  api::Payload binary = KeywordAttribute("web");
  (*binary.mutable_metadata())["encoding"] = "binary/plain";
  CHECK(message(binary) == "metadata \"encoding\" must be \"json/plain\"");
  api::Payload no_type = KeywordAttribute("web");
  no_type.mutable_metadata()->erase("type");
  CHECK(message(no_type) == "metadata \"type\" is missing (Keyword, Int, Datetime or Bool)");
  CHECK(message(Raw("Double", "1.5")) ==
        "metadata \"type\" \"Double\" is not Keyword, Int, Datetime or Bool");
  CHECK(message(Raw("keyword", "\"web\"")) ==
        "metadata \"type\" \"keyword\" is not Keyword, Int, Datetime or Bool");
  CHECK(message(Raw("Keyword", "web")) == "Keyword data: not a JSON string");
  CHECK(message(KeywordAttribute("\xff")) == "Keyword data: not valid UTF-8");
  CHECK(message(Raw("Int", "\"5\"")) == "Int data: not a JSON integer");
  CHECK(message(Raw("Int", "99999999999999999999")) ==
        "Int data: JSON integer out of the int64 range");
  CHECK(message(Raw("Bool", "1")) == "Bool data: not a JSON boolean");
  CHECK(message(Raw("Datetime", "1714564800")) == "Datetime data: not a JSON string");
  CHECK(message(Raw("Datetime", "\"soon\"")) ==
        "Datetime data: \"soon\" is not an RFC 3339 time like \"2024-05-01T12:00:00Z\"");
  CHECK(DecodeSearchAttribute(Raw("Int", "1")).status().code() == absl::StatusCode::kOk);
}

api::SearchAttributes Attributes(std::initializer_list<std::pair<std::string, api::Payload>> all) {
  api::SearchAttributes attributes;
  for (const auto& [name, value] : all) (*attributes.mutable_indexed_fields())[name] = value;
  return attributes;
}

std::string ValidationError(const api::SearchAttributes& attributes) {
  absl::Status status = ValidateSearchAttributes(attributes);
  CHECK(status.code() == absl::StatusCode::kInvalidArgument);
  return std::string(status.message());
}

TEST_CASE("Valid search attributes pass validation") {
  CHECK(ValidateSearchAttributes(api::SearchAttributes()).ok());
  CHECK(ValidateSearchAttributes(
            Attributes(
                {{"Project", KeywordAttribute("web")},
                 {"Priority_2", IntAttribute(2)},
                 {"Deadline", DatetimeAttribute(absl::FromUnixSeconds(0))},
                 {"urgent", BoolAttribute(true)},
                 {std::string(kMaxSearchAttributeNameBytes, 'n'), IntAttribute(1)},
                 {"Big", KeywordAttribute(std::string(kMaxSearchAttributeValueBytes - 2, 'x'))}}))
            .ok());
  api::SearchAttributes hundred;
  for (size_t i = 0; i < kMaxSearchAttributes; ++i) {
    (*hundred.mutable_indexed_fields())[absl::StrCat("A", i)] = IntAttribute(1);
  }
  CHECK(ValidateSearchAttributes(hundred).ok());
}

TEST_CASE("Validation errors name the attribute and the limit") {
  api::SearchAttributes too_many;
  for (size_t i = 0; i <= kMaxSearchAttributes; ++i) {
    (*too_many.mutable_indexed_fields())[absl::StrCat("A", i)] = IntAttribute(1);
  }
  CHECK(ValidationError(too_many) == "search attributes: at most 100 allowed, got 101");
  CHECK(ValidationError(Attributes({{"", IntAttribute(1)}})) ==
        "search attribute \"\": name must be 1 to 100 bytes, it is 0");
  CHECK(ValidationError(Attributes({{std::string(101, 'n'), IntAttribute(1)}})) ==
        absl::StrCat("search attribute \"", std::string(101, 'n'),
                     "\": name must be 1 to 100 bytes, it is 101"));
  CHECK(ValidationError(Attributes({{"my-project", IntAttribute(1)}})) ==
        "search attribute \"my-project\": name may hold only letters, digits and '_'");
  CHECK(ValidationError(Attributes({{"a\nb", IntAttribute(1)}})) ==
        "search attribute \"a\\nb\": name may hold only letters, digits and '_'");
  CHECK(ValidationError(Attributes({{"status", IntAttribute(1)}})) ==
        "search attribute \"status\": name is taken by the built-in field ExecutionStatus");
  CHECK(ValidationError(Attributes({{"WorkflowId", KeywordAttribute("x")}})) ==
        "search attribute \"WorkflowId\": name is taken by the built-in field WorkflowId");
  CHECK(ValidationError(Attributes(
            {{"Big", KeywordAttribute(std::string(kMaxSearchAttributeValueBytes, 'x'))}})) ==
        "search attribute \"Big\": value is 2050 bytes, at most 2048 allowed");
  CHECK(ValidationError(Attributes({{"Count", Raw("Int", "many")}})) ==
        "search attribute \"Count\": Int data: not a JSON integer");
  CHECK(ValidationError(Attributes({{"Count", Raw("Float", "1.5")}})) ==
        "search attribute \"Count\": metadata \"type\" \"Float\" is not Keyword, Int, Datetime "
        "or Bool");
}

TEST_CASE("With several bad attributes, the first by name is reported, every time") {
  api::SearchAttributes attributes = Attributes({{"Zeta", Raw("Int", "x")},
                                                 {"Alpha", Raw("Bool", "x")},
                                                 {"Mid", Raw("Keyword", "x")},
                                                 {"Good", IntAttribute(1)}});
  for (int i = 0; i < 5; ++i) {
    CHECK(ValidationError(attributes) ==
          "search attribute \"Alpha\": Bool data: not a JSON boolean");
  }
}

TEST_CASE("An upsert's null value removes the attribute") {
  api::Payload null_value;
  (*null_value.mutable_metadata())["encoding"] = "json/plain";
  null_value.set_data("null");
  api::SearchAttributes run;
  (*run.mutable_indexed_fields())["Region"] = KeywordAttribute("eu");
  (*run.mutable_indexed_fields())["Stage"] = KeywordAttribute("packed");
  api::SearchAttributes upsert;
  (*upsert.mutable_indexed_fields())["Region"] = null_value;
  (*upsert.mutable_indexed_fields())["Stage"] = KeywordAttribute("shipped");
  REQUIRE(ValidateSearchAttributeUpsert(upsert).ok());
  ApplySearchAttributeUpsert(upsert, &run);
  CHECK(!run.indexed_fields().contains("Region"));
  CHECK(run.indexed_fields().at("Stage").data() == R"("shipped")");
  // Only in an upsert, and a typed null is no removal.
  CHECK(!ValidateSearchAttributes(upsert).ok());
  (*null_value.mutable_metadata())["type"] = "Keyword";
  (*upsert.mutable_indexed_fields())["Region"] = null_value;
  CHECK(!ValidateSearchAttributeUpsert(upsert).ok());
  // Removals' names are checked as any other.
  api::SearchAttributes bad_name;
  (*bad_name.mutable_indexed_fields())["no spaces"] = api::Payload();
  CHECK(!ValidateSearchAttributeUpsert(bad_name).ok());
}

}  // namespace
}  // namespace kiln::orchestrator
