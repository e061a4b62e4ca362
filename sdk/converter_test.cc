// Payload conversion: round trips of every supported kind, Temporal's encodings on the wire,
// and clear errors when a payload holds something else than asked for.
#include "sdk/converter.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>

#include "common/json_scalar.h"
#include "kiln/api/v1/common.pb.h"

namespace kiln::sdk {
namespace {

std::string Encoding(const api::Payload& p) { return PayloadEncoding(p); }

template <class T>
T RoundTrip(const T& value) {
  auto decoded = FromPayload<T>(ToPayload(value));
  INFO(decoded.status().ToString());
  REQUIRE(decoded.ok());
  return *decoded;
}

// The string a JSON text holds when it is a string literal (json::ParseString), else nullopt.
std::optional<std::string> Parsed(std::string_view json_text) {
  absl::StatusOr<std::string> text = json::ParseString(json_text);
  if (!text.ok()) return std::nullopt;
  return *std::move(text);
}

bool Contains(const absl::Status& status, const std::string& text) {
  return std::string(status.message()).find(text) != std::string::npos;
}

TEST_CASE("Null values are binary/null") {
  api::Payload p = ToPayload(std::monostate{});
  REQUIRE(Encoding(p) == kEncodingNull);
  REQUIRE(p.data().empty());
  REQUIRE(FromPayload<std::monostate>(p).ok());
  REQUIRE(Encoding(ToPayload(nullptr)) == kEncodingNull);
  auto as_int = FromPayload<int>(p);
  REQUIRE(as_int.status().code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(Contains(as_int.status(), "payload is null (binary/null)"));
  REQUIRE_FALSE(FromPayload<std::monostate>(ToPayload(1)).ok());
}

TEST_CASE("Strings are JSON strings, or binary/plain when not UTF-8") {
  api::Payload p = ToPayload(std::string("hello"));
  REQUIRE(Encoding(p) == kEncodingJson);
  REQUIRE(p.data() == "\"hello\"");
  REQUIRE(RoundTrip(std::string("quote \" back\\slash\nnew line, h\xc3\xa9 \xf0\x9f\x94\xa5")) ==
          "quote \" back\\slash\nnew line, h\xc3\xa9 \xf0\x9f\x94\xa5");
  REQUIRE(RoundTrip(std::string()).empty());
  REQUIRE(ToPayload("literal").data() == "\"literal\"");
  REQUIRE(ToPayload(std::string_view("view")).data() == "\"view\"");

  std::string bytes("a\xff\xfe\0b", 5);
  api::Payload raw = ToPayload(bytes);
  REQUIRE(Encoding(raw) == kEncodingBinary);
  REQUIRE(raw.data() == bytes);
  REQUIRE(RoundTrip(bytes) == bytes);
  // Overlong and surrogate forms are not UTF-8 either.
  REQUIRE(Encoding(ToPayload(std::string("\xc0\xaf"))) == kEncodingBinary);
  REQUIRE(Encoding(ToPayload(std::string("\xed\xa0\x80"))) == kEncodingBinary);
  REQUIRE(Encoding(ToPayload(std::string("trunc\xe2\x82"))) == kEncodingBinary);
}

TEST_CASE("String JSON is written and read directly, and agrees with the JSON library") {
  namespace ci = converter_internal;
  static constexpr char kControls[] = "controls \b\f\n\r\t \x01 \x1f \0 end";
  const std::string tricky[] = {
      "",
      "plain",
      "quote \" back\\slash / slash",
      std::string(kControls, sizeof(kControls) - 1),  // The embedded NUL, not the terminator.
      "h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\xa5 \xe2\x80\xa8",
      "<script>&amp;</script> \x7f",
  };
  for (const std::string& text : tricky) {
    INFO(text);
    std::string literal = json::EncodeString(text);
    // What we write, the JSON library reads back to the same string...
    auto parsed = ci::JsonToValue(literal);
    REQUIRE(parsed.ok());
    REQUIRE(parsed->string_value() == text);
    // ...and what the library writes (payloads recorded before), we read.
    google::protobuf::Value v;
    v.set_string_value(text);
    REQUIRE(Parsed(ci::ValueToJson(v)) == text);
    REQUIRE(Parsed(literal) == text);
  }
  REQUIRE(json::EncodeString(std::string("a\x01\"", 3)) == "\"a\\u0001\\\"\"");

  // Escapes JSON allows, surrogate pairs, whitespace around the literal.
  REQUIRE(Parsed(" \"\\u00e9\\/\\ud83d\\ude00\\u20AC\" \n") ==
          "\xc3\xa9/\xf0\x9f\x98\x80\xe2\x82\xac");
  // Anything else is not a plain literal: the JSON library's path names the problem.
  for (const char* other : {"42", "\"open", "\"a\"b\"", "\"\\x41\"", "\"\\ud83d\"", "\"\\ude00\"",
                            "\"\\u12\"", "\"tab\there\"", "[\"a\"]", "\"\\\""}) {
    INFO(other);
    REQUIRE_FALSE(Parsed(other).has_value());
  }
  api::Payload number = ToPayload(42);
  auto as_string = FromPayload<std::string>(number);
  REQUIRE_FALSE(as_string.ok());
  REQUIRE(Contains(as_string.status(), "expected a string, payload holds a number"));
}

TEST_CASE("String JSON agrees with the JSON library on random strings and random literals") {
  namespace ci = converter_internal;
  std::mt19937 rng(20261128);
  auto code_point = [&]() -> uint32_t {
    switch (rng() % 6) {
      case 0:
        return rng() % 0x20;  // Controls.
      case 1:
        return std::string_view("\"\\/ u")[rng() % 5];
      case 2:
        return 0x20 + rng() % 0x60;
      case 3:
        return 0x80 + rng() % 0x780;  // Two bytes.
      case 4: {
        uint32_t c = 0x800 + rng() % 0xF800;  // Three bytes, not a surrogate.
        return c >= 0xD800 && c <= 0xDFFF ? 0x2028 : c;
      }
      default:
        return 0x10000 + rng() % 0x100000;  // Four bytes.
    }
  };
  auto utf8 = [](uint32_t c) {
    std::string out;
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else if (c < 0x800) {
      out += static_cast<char>(0xC0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      out += static_cast<char>(0xE0 | (c >> 12));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (c & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (c >> 18));
      out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (c & 0x3F));
    }
    return out;
  };
  for (int i = 0; i < 2000; ++i) {
    std::string text;
    for (size_t n = rng() % 24; n > 0; --n) text += utf8(code_point());
    INFO(text);
    auto library = ci::JsonToValue(json::EncodeString(text));
    REQUIRE(library.ok());
    REQUIRE(library->string_value() == text);
    google::protobuf::Value v;
    v.set_string_value(text);
    REQUIRE(Parsed(ci::ValueToJson(v)) == text);
  }
  // Random literals built from escapes, stray quotes and bytes: whatever our reader accepts,
  // the library reads as the same string. (What it refuses goes to the library anyway.)
  const std::string pieces[] = {"a",        "\\\"",    "\\\\", "\\n",   "\\u00e9", "\\ud83d\\ude00",
                                "\\ud83d",  "\\ude00", "\\x",  "\\u12", "\"",      "\t",
                                "\xc3\xa9", "\xff",    "\\/",  " "};
  int accepted = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string literal = "\"";
    for (size_t n = rng() % 6; n > 0; --n) literal += pieces[rng() % std::size(pieces)];
    literal += "\"";
    INFO(literal);
    std::optional<std::string> ours = Parsed(literal);
    if (!ours.has_value()) continue;
    ++accepted;
    auto library = ci::JsonToValue(literal);
    REQUIRE(library.ok());
    REQUIRE(library->string_value() == *ours);
  }
  REQUIRE(accepted > 100);
}

TEST_CASE("Booleans and integers are exact JSON") {
  REQUIRE(ToPayload(true).data() == "true");
  REQUIRE(RoundTrip(false) == false);
  REQUIRE(ToPayload(42).data() == "42");
  REQUIRE(RoundTrip(-7) == -7);
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  REQUIRE(ToPayload(kMax).data() == "9223372036854775807");
  REQUIRE(RoundTrip(kMax) == kMax);
  REQUIRE(RoundTrip(kMin) == kMin);
  REQUIRE(RoundTrip(int64_t{9007199254740993}) == 9007199254740993);  // 2^53 + 1
  constexpr uint64_t kUMax = std::numeric_limits<uint64_t>::max();
  REQUIRE(RoundTrip(kUMax) == kUMax);
  REQUIRE(RoundTrip(uint8_t{255}) == 255);

  // Range and kind are checked.
  auto too_big = FromPayload<int32_t>(ToPayload(int64_t{1} << 40));
  REQUIRE(too_big.status().code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(Contains(too_big.status(), "1099511627776"));
  REQUIRE_FALSE(FromPayload<uint32_t>(ToPayload(-1)).ok());
  REQUIRE_FALSE(FromPayload<int>(ToPayload(2.5)).ok());
  REQUIRE(Contains(FromPayload<int>(ToPayload(std::string("7"))).status(),
                   "expected integer, payload holds a string"));
  // Whole numbers written another way still read as integers.
  api::Payload exponent = ToPayload(1e3);
  REQUIRE(FromPayload<int>(exponent).value() == 1000);
  REQUIRE_FALSE(FromPayload<int64_t>(ToPayload(1e19)).ok());
  REQUIRE(FromPayload<bool>(ToPayload(1)).status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("Floating point keeps its bits, including NaN and infinities") {
  REQUIRE(ToPayload(0.1).data() == "0.1");
  REQUIRE(RoundTrip(0.1) == 0.1);
  REQUIRE(RoundTrip(1e300) == 1e300);
  REQUIRE(RoundTrip(5e-324) == 5e-324);
  REQUIRE(RoundTrip(2.5f) == 2.5f);
  REQUIRE(std::isnan(RoundTrip(std::nan(""))));
  REQUIRE(ToPayload(std::numeric_limits<double>::infinity()).data() == "\"Infinity\"");
  REQUIRE(RoundTrip(-std::numeric_limits<double>::infinity()) ==
          -std::numeric_limits<double>::infinity());
  REQUIRE(RoundTrip(3.0) == 3.0);
  REQUIRE(FromPayload<double>(ToPayload(7)).value() == 7.0);
  REQUIRE_FALSE(FromPayload<double>(ToPayload(std::string("x"))).ok());
}

TEST_CASE("JSON values, lists and maps") {
  google::protobuf::Struct s;
  (*s.mutable_fields())["name"].set_string_value("kiln");
  (*s.mutable_fields())["n"].set_number_value(3);
  api::Payload p = ToPayload(s);
  REQUIRE(Encoding(p) == kEncodingJson);
  REQUIRE(RoundTrip(s).fields().at("name").string_value() == "kiln");
  google::protobuf::Value v;
  v.mutable_list_value()->add_values()->set_bool_value(true);
  REQUIRE(RoundTrip(v).list_value().values(0).bool_value());
  REQUIRE(ToPayload(google::protobuf::Value()).data() == "null");
  REQUIRE(Contains(FromPayload<google::protobuf::Struct>(ToPayload(v)).status(),
                   "expected object, payload holds a list"));

  std::vector<std::string> tags = {"a", "b\"", ""};
  REQUIRE(ToPayload(tags).data() == "[\"a\",\"b\\\"\",\"\"]");
  REQUIRE(RoundTrip(tags) == tags);
  std::map<std::string, int> counts = {{"x", 1}, {"y", -2}};
  REQUIRE(RoundTrip(counts) == counts);
  std::vector<std::optional<int>> holes = {1, std::nullopt, 3};
  REQUIRE(RoundTrip(holes) == holes);
  std::map<std::string, std::vector<double>> nested = {{"k", {0.5, 1.5}}};
  REQUIRE(RoundTrip(nested) == nested);
  std::vector<bool> flags = {true, false};
  REQUIRE(RoundTrip(flags) == flags);

  auto wrong = FromPayload<std::vector<int>>(ToPayload(std::vector<std::string>{"1", "x"}));
  REQUIRE(Contains(wrong.status(), "[0]: expected integer"));
  auto bad_field =
      FromPayload<std::map<std::string, int>>(ToPayload(std::map<std::string, double>{{"f", 0.5}}));
  REQUIRE(Contains(bad_field.status(), ".f: expected integer"));
}

TEST_CASE("Optionals are null or their value") {
  REQUIRE(Encoding(ToPayload(std::optional<std::string>())) == kEncodingNull);
  REQUIRE(RoundTrip(std::optional<std::string>("x")) == std::optional<std::string>("x"));
  REQUIRE(RoundTrip(std::optional<int>()) == std::nullopt);
  REQUIRE_FALSE(FromPayload<std::optional<int>>(ToPayload(std::string("x"))).ok());
}

TEST_CASE("Protobuf messages carry their type, in JSON by default or binary") {
  api::WorkflowExecution execution;
  execution.set_workflow_id("w");
  execution.set_run_id("r");
  api::Payload p = ToPayload(execution);
  REQUIRE(Encoding(p) == kEncodingProtoJson);
  REQUIRE(p.metadata().at(kMetadataMessageType) == "kiln.api.v1.WorkflowExecution");
  REQUIRE(p.data() == "{\"workflowId\":\"w\",\"runId\":\"r\"}");
  REQUIRE(RoundTrip(execution).run_id() == "r");

  auto wrong = FromPayload<api::ActivityType>(p);
  REQUIRE(wrong.status().code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(
      std::string(wrong.status().message()) ==
      "payload holds a kiln.api.v1.WorkflowExecution, not the expected kiln.api.v1.ActivityType");
  REQUIRE(Contains(FromPayload<api::WorkflowExecution>(ToPayload(std::string("x"))).status(),
                   "encoding 'json/plain' cannot be decoded as kiln.api.v1.WorkflowExecution"));
  REQUIRE(Contains(FromPayload<std::string>(p).status(),
                   "encoding 'json/protobuf' cannot be decoded as a string"));

  DefaultPayloadConverter binary(DefaultPayloadConverter::MessageEncoding::kBinary);
  api::Payload b = ToPayload(execution, binary);
  REQUIRE(Encoding(b) == kEncodingProtoBinary);
  REQUIRE(b.metadata().at(kMetadataMessageType) == "kiln.api.v1.WorkflowExecution");
  // Either converter reads either encoding.
  REQUIRE(FromPayload<api::WorkflowExecution>(b).value().workflow_id() == "w");
  REQUIRE(FromPayload<api::WorkflowExecution>(p, binary).value().workflow_id() == "w");
  b.set_data("\xff\xff\xff");
  REQUIRE(Contains(FromPayload<api::WorkflowExecution>(b).status(), "not a valid binary"));

  // Fields a newer sender added are ignored; a missing messageType is accepted.
  api::Payload newer = p;
  newer.set_data("{\"workflowId\":\"w\",\"futureField\":1}");
  newer.mutable_metadata()->erase(kMetadataMessageType);
  REQUIRE(FromPayload<api::WorkflowExecution>(newer).value().workflow_id() == "w");
}

TEST_CASE("Argument lists") {
  api::Payloads args = ToPayloads(std::string("repo"), 42, true);
  REQUIRE(args.payloads_size() == 3);
  auto decoded = FromPayloads<std::string, int, bool>(args);
  REQUIRE(decoded.ok());
  REQUIRE(std::get<0>(*decoded) == "repo");
  REQUIRE(std::get<1>(*decoded) == 42);
  REQUIRE(std::get<2>(*decoded));
  REQUIRE(ToPayloads().payloads_size() == 0);
  REQUIRE(FromPayloads<>(ToPayloads()).ok());

  auto too_many = FromPayloads<std::string>(args);
  REQUIRE(std::string(too_many.status().message()) == "expected 1 arguments, got 3");
  auto missing = FromPayloads<std::string, int, bool, int>(args);
  REQUIRE(std::string(missing.status().message()) == "argument 3 is missing (3 given)");
  auto optional_tail = FromPayloads<std::string, int, bool, std::optional<int>>(args);
  REQUIRE(optional_tail.ok());
  REQUIRE_FALSE(std::get<3>(*optional_tail).has_value());
  auto wrong = FromPayloads<std::string, std::string>(ToPayloads(std::string("a"), 1));
  REQUIRE(Contains(wrong.status(), "argument 1: expected a string"));
  REQUIRE(FromPayloadAt<int>(args, 1).value() == 42);
}

// A converter can change one kind's encoding and keep the rest.
class TaggingConverter : public DefaultPayloadConverter {
 public:
  api::Payload EncodeString(std::string_view value) const override {
    api::Payload p = DefaultPayloadConverter::EncodeString(value);
    (*p.mutable_metadata())["tag"] = "mine";
    return p;
  }
};

TEST_CASE("A custom converter is used where passed") {
  TaggingConverter converter;
  api::Payload p = ToPayload(std::string("x"), converter);
  REQUIRE(p.metadata().at("tag") == "mine");
  REQUIRE(FromPayload<std::string>(p, converter).value() == "x");
  api::Payloads both = ToPayloadsWith(converter, std::string("a"), 1);
  REQUIRE(both.payloads(0).metadata().contains("tag"));
  REQUIRE_FALSE(both.payloads(1).metadata().contains("tag"));
  REQUIRE(ToPayload(both.payloads(0)).metadata().contains("tag"));  // Payloads pass through.
}

}  // namespace
}  // namespace kiln::sdk
