#include "sdk/converter.h"

#include <charconv>
#include <cmath>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "common/json_scalar.h"

namespace kiln::sdk {
namespace {

api::Payload WithEncoding(absl::string_view encoding, std::string data) {
  api::Payload payload;
  (*payload.mutable_metadata())[kMetadataEncoding] = std::string(encoding);
  payload.set_data(std::move(data));
  return payload;
}

// Quoted so that an empty or odd encoding is visible in the message.
absl::Status CannotDecode(const api::Payload& payload, absl::string_view expected) {
  std::string encoding = PayloadEncoding(payload);
  if (encoding == kEncodingNull) {
    return absl::InvalidArgumentError(
        absl::StrCat("payload is null (", kEncodingNull, "), expected ", expected));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("payload with encoding '", encoding, "' cannot be decoded as ", expected));
}

std::string MessageTypeOf(const api::Payload& payload) {
  auto it = payload.metadata().find(kMetadataMessageType);
  return it == payload.metadata().end() ? "" : it->second;
}

const char* KindName(const google::protobuf::Value& value) {
  switch (value.kind_case()) {
    case google::protobuf::Value::kNullValue:
      return "null";
    case google::protobuf::Value::kNumberValue:
      return "a number";
    case google::protobuf::Value::kStringValue:
      return "a string";
    case google::protobuf::Value::kBoolValue:
      return "a boolean";
    case google::protobuf::Value::kStructValue:
      return "an object";
    case google::protobuf::Value::kListValue:
      return "a list";
    case google::protobuf::Value::KIND_NOT_SET:
      break;
  }
  return "nothing";
}

}  // namespace

std::string PayloadEncoding(const api::Payload& payload) {
  auto it = payload.metadata().find(kMetadataEncoding);
  return it == payload.metadata().end() ? "" : it->second;
}

api::Payload DefaultPayloadConverter::EncodeNull() const { return WithEncoding(kEncodingNull, ""); }

api::Payload DefaultPayloadConverter::EncodeString(std::string_view value) const {
  if (!json::IsValidUtf8(value)) {
    // JSON strings are Unicode: raw bytes would be mangled, so they travel as they are.
    return WithEncoding(kEncodingBinary, std::string(value));
  }
  return WithEncoding(kEncodingJson, json::EncodeString(value));
}

api::Payload DefaultPayloadConverter::EncodeJson(std::string json) const {
  return WithEncoding(kEncodingJson, std::move(json));
}

api::Payload DefaultPayloadConverter::EncodeMessage(
    const google::protobuf::Message& message) const {
  api::Payload payload;
  if (messages_ == MessageEncoding::kBinary) {
    payload = WithEncoding(kEncodingProtoBinary, message.SerializeAsString());
  } else {
    std::string json;
    auto status = google::protobuf::util::MessageToJsonString(message, &json);
    if (status.ok()) {
      payload = WithEncoding(kEncodingProtoJson, std::move(json));
    } else {
      // Only an Any holding an unknown type fails to print; binary always works.
      payload = WithEncoding(kEncodingProtoBinary, message.SerializeAsString());
    }
  }
  (*payload.mutable_metadata())[kMetadataMessageType] = message.GetDescriptor()->full_name();
  return payload;
}

absl::Status DefaultPayloadConverter::DecodeNull(const api::Payload& payload) const {
  if (PayloadEncoding(payload) == kEncodingNull) return absl::OkStatus();
  return CannotDecode(payload, "null");
}

absl::StatusOr<std::string> DefaultPayloadConverter::DecodeString(
    const api::Payload& payload) const {
  std::string encoding = PayloadEncoding(payload);
  if (encoding == kEncodingBinary) return payload.data();
  if (encoding != kEncodingJson) return CannotDecode(payload, "a string");
  absl::StatusOr<std::string> text = json::ParseString(payload.data());
  if (text.ok()) return text;
  // Not a string literal: the JSON library tells what the payload holds instead.
  auto value = converter_internal::JsonToValue(payload.data());
  if (!value.ok()) return value.status();
  return converter_internal::ValueToString(*value);
}

absl::StatusOr<std::string> DefaultPayloadConverter::DecodeJson(const api::Payload& payload) const {
  if (PayloadEncoding(payload) != kEncodingJson) return CannotDecode(payload, "JSON");
  return payload.data();
}

absl::Status DefaultPayloadConverter::DecodeMessage(const api::Payload& payload,
                                                    google::protobuf::Message* out) const {
  const std::string& expected = out->GetDescriptor()->full_name();
  std::string encoding = PayloadEncoding(payload);
  if (encoding != kEncodingProtoJson && encoding != kEncodingProtoBinary) {
    return CannotDecode(payload, expected);
  }
  std::string actual = MessageTypeOf(payload);
  if (!actual.empty() && actual != expected) {
    return absl::InvalidArgumentError(
        absl::StrCat("payload holds a ", actual, ", not the expected ", expected));
  }
  if (encoding == kEncodingProtoBinary) {
    if (!out->ParseFromString(payload.data())) {
      return absl::InvalidArgumentError(absl::StrCat("payload is not a valid binary ", expected));
    }
    return absl::OkStatus();
  }
  google::protobuf::util::JsonParseOptions options;
  // A newer sender may add fields: ignore them, as binary parsing would.
  options.ignore_unknown_fields = true;
  auto status = google::protobuf::util::JsonStringToMessage(payload.data(), out, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("payload is not a valid JSON ", expected, ": ",
                                                   std::string(status.message())));
  }
  return absl::OkStatus();
}

const PayloadConverter& DefaultConverter() {
  static const auto* converter = new DefaultPayloadConverter();
  return *converter;
}

namespace converter_internal {

std::string ValueToJson(const google::protobuf::Value& value) {
  // An empty Value (no kind) prints as nothing; JSON needs a token.
  if (value.kind_case() == google::protobuf::Value::KIND_NOT_SET) return "null";
  std::string json;
  auto status = google::protobuf::util::MessageToJsonString(value, &json);
  // Printing a Value cannot fail: every kind has a JSON form.
  if (!status.ok()) return "null";
  return json;
}

absl::StatusOr<google::protobuf::Value> JsonToValue(absl::string_view json) {
  google::protobuf::Value value;
  auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), &value);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("payload is not valid JSON: ", std::string(status.message())));
  }
  return value;
}

std::string IntegerJson(int64_t value) { return absl::StrCat(value); }
std::string UnsignedJson(uint64_t value) { return absl::StrCat(value); }

std::string DoubleJson(double value) {
  if (std::isnan(value)) return "\"NaN\"";
  if (std::isinf(value)) return value > 0 ? "\"Infinity\"" : "\"-Infinity\"";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value);
  // 64 bytes hold any double's shortest form.
  if (ec != std::errc()) return "null";
  return std::string(buf, end);
}

namespace {

// A JSON number that is whole, for texts like "1e3" or "7.0" that the exact integer parse
// refused. Range checks compare as long double, which holds every int64 and uint64 exactly.
absl::StatusOr<long double> WholeNumber(absl::string_view json, absl::string_view type_name) {
  auto value = JsonToValue(json);
  if (!value.ok()) return value.status();
  if (value->kind_case() != google::protobuf::Value::kNumberValue) {
    return WrongJsonKind(*value, type_name);
  }
  double d = value->number_value();
  if (std::trunc(d) != d) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected ", type_name, ", got the fraction ", json));
  }
  return static_cast<long double>(d);
}

absl::Status OutOfRange(absl::string_view json, absl::string_view type_name) {
  return absl::InvalidArgumentError(
      absl::StrCat("expected ", type_name, ", got ", json, " which is out of range"));
}

}  // namespace

absl::StatusOr<int64_t> ParseInteger(absl::string_view json, int64_t min, int64_t max,
                                     absl::string_view type_name) {
  absl::string_view text = absl::StripAsciiWhitespace(json);
  int64_t n = 0;
  if (absl::SimpleAtoi(text, &n)) {
    if (n < min || n > max) {
      return absl::InvalidArgumentError(
          absl::StrCat("expected ", type_name, " in [", min, ", ", max, "], got ", n));
    }
    return n;
  }
  auto d = WholeNumber(text, type_name);
  if (!d.ok()) return d.status();
  if (*d < static_cast<long double>(min) || *d > static_cast<long double>(max)) {
    return OutOfRange(text, type_name);
  }
  return static_cast<int64_t>(*d);
}

absl::StatusOr<uint64_t> ParseUnsigned(absl::string_view json, uint64_t max,
                                       absl::string_view type_name) {
  absl::string_view text = absl::StripAsciiWhitespace(json);
  uint64_t n = 0;
  if (!text.empty() && text[0] != '-' && absl::SimpleAtoi(text, &n)) {
    if (n > max) {
      return absl::InvalidArgumentError(
          absl::StrCat("expected ", type_name, " up to ", max, ", got ", n));
    }
    return n;
  }
  auto d = WholeNumber(text, type_name);
  if (!d.ok()) return d.status();
  if (*d < 0 || *d > static_cast<long double>(max)) return OutOfRange(text, type_name);
  return static_cast<uint64_t>(*d);
}

absl::StatusOr<double> ValueToDouble(const google::protobuf::Value& value) {
  if (value.kind_case() == google::protobuf::Value::kNumberValue) return value.number_value();
  if (value.kind_case() == google::protobuf::Value::kStringValue) {
    const std::string& s = value.string_value();
    if (s == "NaN") return std::nan("");
    if (s == "Infinity") return std::numeric_limits<double>::infinity();
    if (s == "-Infinity") return -std::numeric_limits<double>::infinity();
  }
  return WrongJsonKind(value, "a number");
}

absl::StatusOr<bool> ValueToBool(const google::protobuf::Value& value) {
  if (value.kind_case() != google::protobuf::Value::kBoolValue) {
    return WrongJsonKind(value, "a boolean");
  }
  return value.bool_value();
}

absl::StatusOr<std::string> ValueToString(const google::protobuf::Value& value) {
  if (value.kind_case() != google::protobuf::Value::kStringValue) {
    return WrongJsonKind(value, "a string");
  }
  return value.string_value();
}

absl::Status WrongJsonKind(const google::protobuf::Value& value, absl::string_view expected) {
  return absl::InvalidArgumentError(
      absl::StrCat("expected ", expected, ", payload holds ", KindName(value)));
}

}  // namespace converter_internal
}  // namespace kiln::sdk
