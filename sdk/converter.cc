#include "sdk/converter.h"

#include <charconv>
#include <cmath>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"

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
  if (!converter_internal::IsValidUtf8(absl::string_view(value.data(), value.size()))) {
    // JSON strings are Unicode: raw bytes would be mangled, so they travel as they are.
    return WithEncoding(kEncodingBinary, std::string(value));
  }
  return WithEncoding(kEncodingJson, converter_internal::StringJson(value));
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
  if (std::optional<std::string> text = converter_internal::ParseStringJson(payload.data())) {
    return *std::move(text);
  }
  // Not a plain string literal: the JSON library tells what it holds instead.
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

std::string StringJson(std::string_view utf8) {
  static constexpr char kHex[] = "0123456789abcdef";
  auto plain = [](char ch) {
    auto c = static_cast<unsigned char>(ch);
    return c >= 0x20 && c != '"' && c != '\\';  // UTF-8 passes through: JSON text is UTF-8.
  };
  std::string json;
  json.reserve(utf8.size() + 2);
  json.push_back('"');
  size_t i = 0;
  while (i < utf8.size()) {
    size_t run = i;
    while (run < utf8.size() && plain(utf8[run])) ++run;
    json.append(utf8.data() + i, run - i);
    if (run == utf8.size()) break;
    auto c = static_cast<unsigned char>(utf8[run]);
    switch (c) {
      case '"':
        json += "\\\"";
        break;
      case '\\':
        json += "\\\\";
        break;
      case '\b':
        json += "\\b";
        break;
      case '\f':
        json += "\\f";
        break;
      case '\n':
        json += "\\n";
        break;
      case '\r':
        json += "\\r";
        break;
      case '\t':
        json += "\\t";
        break;
      default:
        json += "\\u00";
        json.push_back(kHex[c >> 4]);
        json.push_back(kHex[c & 0xF]);
    }
    i = run + 1;
  }
  json.push_back('"');
  return json;
}

namespace {

bool IsJsonSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Four hex digits at `s[i]`, or -1.
int32_t Hex4(std::string_view s, size_t i) {
  if (i + 4 > s.size()) return -1;
  int32_t v = 0;
  for (size_t k = i; k < i + 4; ++k) {
    char c = s[k];
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

void AppendUtf8(uint32_t code, std::string* out) {
  if (code < 0x80) {
    out->push_back(static_cast<char>(code));
  } else if (code < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (code >> 6)));
    out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
  } else if (code < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (code >> 12)));
    out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (code >> 18)));
    out->push_back(static_cast<char>(0x80 | ((code >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
  }
}

}  // namespace

std::optional<std::string> ParseStringJson(std::string_view json) {
  size_t begin = 0, end = json.size();
  while (begin < end && IsJsonSpace(json[begin])) ++begin;
  while (end > begin && IsJsonSpace(json[end - 1])) --end;
  if (end - begin < 2 || json[begin] != '"' || json[end - 1] != '"') return std::nullopt;
  std::string_view body = json.substr(begin + 1, end - begin - 2);
  if (!IsValidUtf8(absl::string_view(body.data(), body.size()))) return std::nullopt;
  std::string out;
  out.reserve(body.size());
  for (size_t i = 0; i < body.size(); ++i) {
    size_t run = i;
    while (run < body.size() && static_cast<unsigned char>(body[run]) >= 0x20 && body[run] != '"' &&
           body[run] != '\\') {
      ++run;
    }
    out.append(body.data() + i, run - i);
    if (run == body.size()) break;
    i = run;
    if (body[i] != '\\') return std::nullopt;  // A control character or a bare quote.
    if (++i == body.size()) return std::nullopt;
    switch (body[i]) {
      case '"':
      case '\\':
      case '/':
        out.push_back(body[i]);
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'u': {
        int32_t code = Hex4(body, i + 1);
        if (code < 0) return std::nullopt;
        i += 4;
        if (code >= 0xDC00 && code <= 0xDFFF) return std::nullopt;  // A lone low surrogate.
        if (code >= 0xD800 && code <= 0xDBFF) {
          // A high surrogate: only with the low one right after it.
          if (i + 2 >= body.size() || body[i + 1] != '\\' || body[i + 2] != 'u') {
            return std::nullopt;
          }
          int32_t low = Hex4(body, i + 3);
          if (low < 0xDC00 || low > 0xDFFF) return std::nullopt;
          i += 6;
          code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
        }
        AppendUtf8(static_cast<uint32_t>(code), &out);
        break;
      }
      default:
        return std::nullopt;
    }
  }
  return out;
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

bool IsValidUtf8(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t extra;
    uint32_t code;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1;
      code = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      code = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      code = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= s.size()) return false;  // Truncated sequence.
    for (size_t k = 1; k <= extra; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      code = (code << 6) | (cc & 0x3F);
    }
    // Overlong forms, UTF-16 surrogates and code points past U+10FFFF are not UTF-8.
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (code < kMin[extra] || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}

}  // namespace converter_internal
}  // namespace kiln::sdk
