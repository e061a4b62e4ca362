// Payload conversion: how C++ values become kiln.api.v1.Payload and back, with Temporal's
// encodings so that histories read the same as Temporal's and other SDKs can decode them:
//
//   binary/null      an absent value (std::monostate, std::nullopt, nullptr)
//   json/plain       std::string (as a JSON string), bool, integers, floating point,
//                    google.protobuf.Value / Struct / ListValue, std::vector and
//                    std::map<std::string, _> of those
//   binary/plain     a std::string that is not valid UTF-8 (JSON cannot carry it)
//   json/protobuf    protobuf messages (the default), metadata["messageType"] = full name
//   binary/protobuf  protobuf messages, when the converter is told to use it
//
//   Payload p = ToPayload(std::string("hello"));
//   absl::StatusOr<std::string> s = FromPayload<std::string>(p);
//   Payloads args = ToPayloads(std::string("repo"), 42);
//   auto decoded = FromPayloads<std::string, int>(args);   // StatusOr<std::tuple<...>>
//
// The templates map a C++ type to one of a few kinds (null, string, JSON, message) and leave
// the bytes to a PayloadConverter, so an application can swap the encoding of a kind (e.g.
// binary protobuf) without touching call sites.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <google/protobuf/message.h>
#include <google/protobuf/struct.pb.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "kiln/api/v1/common.pb.h"

namespace kiln::sdk {

namespace api = ::kiln::api::v1;

inline constexpr char kMetadataEncoding[] = "encoding";
inline constexpr char kMetadataMessageType[] = "messageType";
inline constexpr char kEncodingNull[] = "binary/null";
inline constexpr char kEncodingBinary[] = "binary/plain";
inline constexpr char kEncodingJson[] = "json/plain";
inline constexpr char kEncodingProtoJson[] = "json/protobuf";
inline constexpr char kEncodingProtoBinary[] = "binary/protobuf";

// The encoding named in a payload's metadata ("" when absent).
std::string PayloadEncoding(const api::Payload& payload);

// The bytes of each kind of value. Encoding never fails (the templates only hand over values
// that have an encoding); decoding fails with kInvalidArgument, naming the encoding found and
// the kind expected, when a payload cannot become the requested kind.
class PayloadConverter {
 public:
  virtual ~PayloadConverter() = default;

  virtual api::Payload EncodeNull() const = 0;
  virtual api::Payload EncodeString(std::string_view value) const = 0;
  // `json` is well-formed JSON text written by the templates (integers keep all their digits).
  virtual api::Payload EncodeJson(std::string json) const = 0;
  virtual api::Payload EncodeMessage(const google::protobuf::Message& message) const = 0;

  // OK when the payload holds the absent value.
  virtual absl::Status DecodeNull(const api::Payload& payload) const = 0;
  virtual absl::StatusOr<std::string> DecodeString(const api::Payload& payload) const = 0;
  // The JSON text of a JSON payload.
  virtual absl::StatusOr<std::string> DecodeJson(const api::Payload& payload) const = 0;
  // Fills `out`; checks metadata["messageType"] against out's type when the payload names one.
  virtual absl::Status DecodeMessage(const api::Payload& payload,
                                     google::protobuf::Message* out) const = 0;
};

// Temporal's default converter.
class DefaultPayloadConverter : public PayloadConverter {
 public:
  enum class MessageEncoding { kJson, kBinary };
  explicit DefaultPayloadConverter(MessageEncoding messages = MessageEncoding::kJson)
      : messages_(messages) {}

  api::Payload EncodeNull() const override;
  api::Payload EncodeString(std::string_view value) const override;
  api::Payload EncodeJson(std::string json) const override;
  api::Payload EncodeMessage(const google::protobuf::Message& message) const override;

  absl::Status DecodeNull(const api::Payload& payload) const override;
  absl::StatusOr<std::string> DecodeString(const api::Payload& payload) const override;
  absl::StatusOr<std::string> DecodeJson(const api::Payload& payload) const override;
  // Accepts both protobuf encodings, whichever this converter writes.
  absl::Status DecodeMessage(const api::Payload& payload,
                             google::protobuf::Message* out) const override;

 private:
  MessageEncoding messages_;
};

// The process-wide default (JSON for messages), used when no converter is passed.
const PayloadConverter& DefaultConverter();

namespace converter_internal {

// JSON text <-> google.protobuf.Value (the protobuf JSON library, so escaping is right).
std::string ValueToJson(const google::protobuf::Value& value);
absl::StatusOr<google::protobuf::Value> JsonToValue(absl::string_view json);

// Scalars travel as exact JSON text: int64 values past 2^53 keep every digit, and doubles
// print the shortest text that reads back to the same bits (NaN and ±infinity as the strings
// "NaN", "Infinity", "-Infinity", as proto3's JSON mapping does).
std::string IntegerJson(int64_t value);
std::string UnsignedJson(uint64_t value);
std::string DoubleJson(double value);
absl::StatusOr<int64_t> ParseInteger(absl::string_view json, int64_t min, int64_t max,
                                     absl::string_view type_name);
absl::StatusOr<uint64_t> ParseUnsigned(absl::string_view json, uint64_t max,
                                       absl::string_view type_name);
absl::StatusOr<double> ValueToDouble(const google::protobuf::Value& value);
absl::StatusOr<bool> ValueToBool(const google::protobuf::Value& value);
absl::StatusOr<std::string> ValueToString(const google::protobuf::Value& value);
absl::Status WrongJsonKind(const google::protobuf::Value& value, absl::string_view expected);

template <class T>
struct IsOptional : std::false_type {};
template <class T>
struct IsOptional<std::optional<T>> : std::true_type {};
template <class T>
struct IsVector : std::false_type {};
template <class T, class A>
struct IsVector<std::vector<T, A>> : std::true_type {};
template <class T>
struct IsStringMap : std::false_type {};
template <class T, class C, class A>
struct IsStringMap<std::map<std::string, T, C, A>> : std::true_type {};

template <class T>
inline constexpr bool kIsNull =
    std::is_same_v<T, std::monostate> || std::is_same_v<T, std::nullptr_t>;
template <class T>
inline constexpr bool kIsJsonMessage =
    std::is_same_v<T, google::protobuf::Value> || std::is_same_v<T, google::protobuf::Struct> ||
    std::is_same_v<T, google::protobuf::ListValue>;
template <class T>
inline constexpr bool kIsInteger = std::is_integral_v<T> && !std::is_same_v<T, bool>;

// Values inside lists and maps go through google.protobuf.Value, whose numbers are doubles:
// integers there are exact only up to 2^53 (decoding checks that a number is whole and in
// range), and strings there must be UTF-8 (the JSON writer drops invalid bytes).
template <class T>
google::protobuf::Value ToJsonValue(const T& v) {
  google::protobuf::Value out;
  if constexpr (kIsNull<T>) {
    out.set_null_value(google::protobuf::NULL_VALUE);
  } else if constexpr (IsOptional<T>::value) {
    if (!v.has_value()) {
      out.set_null_value(google::protobuf::NULL_VALUE);
    } else {
      out = ToJsonValue(*v);
    }
  } else if constexpr (std::is_same_v<T, bool>) {
    out.set_bool_value(v);
  } else if constexpr (std::is_arithmetic_v<T>) {
    out.set_number_value(static_cast<double>(v));
  } else if constexpr (std::is_convertible_v<const T&, std::string_view>) {
    out.set_string_value(std::string(std::string_view(v)));
  } else if constexpr (std::is_same_v<T, google::protobuf::Value>) {
    out = v;
  } else if constexpr (std::is_same_v<T, google::protobuf::Struct>) {
    *out.mutable_struct_value() = v;
  } else if constexpr (std::is_same_v<T, google::protobuf::ListValue>) {
    *out.mutable_list_value() = v;
  } else if constexpr (IsVector<T>::value) {
    auto* list = out.mutable_list_value();
    for (const auto& e : v) {
      *list->add_values() = ToJsonValue(static_cast<const typename T::value_type&>(e));
    }
  } else if constexpr (IsStringMap<T>::value) {
    auto* fields = out.mutable_struct_value()->mutable_fields();
    for (const auto& [key, e] : v) (*fields)[key] = ToJsonValue(e);
  } else {
    static_assert(sizeof(T) == 0, "no JSON encoding for this type");
  }
  return out;
}

template <class T>
absl::StatusOr<T> FromJsonValue(const google::protobuf::Value& v) {
  if constexpr (kIsNull<T>) {
    if (v.kind_case() != google::protobuf::Value::kNullValue) return WrongJsonKind(v, "null");
    return T{};
  } else if constexpr (IsOptional<T>::value) {
    if (v.kind_case() == google::protobuf::Value::kNullValue) return T{};
    auto inner = FromJsonValue<typename T::value_type>(v);
    if (!inner.ok()) return inner.status();
    return T(std::move(*inner));
  } else if constexpr (std::is_same_v<T, bool>) {
    return ValueToBool(v);
  } else if constexpr (kIsInteger<T>) {
    if (v.kind_case() != google::protobuf::Value::kNumberValue) return WrongJsonKind(v, "integer");
    // Parse the number's text so that one code path checks wholeness and range.
    if constexpr (std::is_signed_v<T>) {
      auto n = ParseInteger(DoubleJson(v.number_value()), std::numeric_limits<T>::min(),
                            std::numeric_limits<T>::max(), "integer");
      if (!n.ok()) return n.status();
      return static_cast<T>(*n);
    } else {
      auto n = ParseUnsigned(DoubleJson(v.number_value()), std::numeric_limits<T>::max(),
                             "unsigned integer");
      if (!n.ok()) return n.status();
      return static_cast<T>(*n);
    }
  } else if constexpr (std::is_floating_point_v<T>) {
    auto d = ValueToDouble(v);
    if (!d.ok()) return d.status();
    return static_cast<T>(*d);
  } else if constexpr (std::is_same_v<T, std::string>) {
    return ValueToString(v);
  } else if constexpr (std::is_same_v<T, google::protobuf::Value>) {
    return v;
  } else if constexpr (std::is_same_v<T, google::protobuf::Struct>) {
    if (v.kind_case() != google::protobuf::Value::kStructValue) return WrongJsonKind(v, "object");
    return v.struct_value();
  } else if constexpr (std::is_same_v<T, google::protobuf::ListValue>) {
    if (v.kind_case() != google::protobuf::Value::kListValue) return WrongJsonKind(v, "list");
    return v.list_value();
  } else if constexpr (IsVector<T>::value) {
    if (v.kind_case() != google::protobuf::Value::kListValue) return WrongJsonKind(v, "list");
    T out;
    out.reserve(static_cast<size_t>(v.list_value().values_size()));
    for (int i = 0; i < v.list_value().values_size(); ++i) {
      auto e = FromJsonValue<typename T::value_type>(v.list_value().values(i));
      if (!e.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("[", i, "]: ", e.status().message()));
      }
      out.push_back(std::move(*e));
    }
    return out;
  } else if constexpr (IsStringMap<T>::value) {
    if (v.kind_case() != google::protobuf::Value::kStructValue) return WrongJsonKind(v, "object");
    T out;
    for (const auto& [key, field] : v.struct_value().fields()) {
      auto e = FromJsonValue<typename T::mapped_type>(field);
      if (!e.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(".", key, ": ", e.status().message()));
      }
      out.emplace(key, std::move(*e));
    }
    return out;
  } else {
    static_assert(sizeof(T) == 0, "no JSON decoding for this type");
  }
}

}  // namespace converter_internal

// Encodes one value. Supported: see the top of this file; any other type fails to compile.
template <class T>
api::Payload ToPayload(const T& value, const PayloadConverter& converter = DefaultConverter()) {
  namespace ci = converter_internal;
  if constexpr (std::is_same_v<T, api::Payload>) {
    return value;  // Already encoded.
  } else if constexpr (ci::kIsNull<T>) {
    return converter.EncodeNull();
  } else if constexpr (ci::IsOptional<T>::value) {
    return value.has_value() ? ToPayload(*value, converter) : converter.EncodeNull();
  } else if constexpr (std::is_convertible_v<const T&, std::string_view>) {
    return converter.EncodeString(std::string_view(value));
  } else if constexpr (std::is_same_v<T, bool>) {
    return converter.EncodeJson(value ? "true" : "false");
  } else if constexpr (ci::kIsInteger<T> && std::is_signed_v<T>) {
    return converter.EncodeJson(ci::IntegerJson(value));
  } else if constexpr (ci::kIsInteger<T>) {
    return converter.EncodeJson(ci::UnsignedJson(value));
  } else if constexpr (std::is_floating_point_v<T>) {
    return converter.EncodeJson(ci::DoubleJson(static_cast<double>(value)));
  } else if constexpr (ci::kIsJsonMessage<T> || ci::IsVector<T>::value ||
                       ci::IsStringMap<T>::value) {
    return converter.EncodeJson(ci::ValueToJson(ci::ToJsonValue(value)));
  } else if constexpr (std::is_base_of_v<google::protobuf::Message, T>) {
    return converter.EncodeMessage(value);
  } else {
    static_assert(sizeof(T) == 0, "no payload encoding for this type");
  }
}

// Decodes one value, failing with kInvalidArgument when the payload holds something else.
template <class T>
absl::StatusOr<T> FromPayload(const api::Payload& payload,
                              const PayloadConverter& converter = DefaultConverter()) {
  namespace ci = converter_internal;
  if constexpr (std::is_same_v<T, api::Payload>) {
    return payload;
  } else if constexpr (ci::kIsNull<T>) {
    absl::Status status = converter.DecodeNull(payload);
    if (!status.ok()) return status;
    return T{};
  } else if constexpr (ci::IsOptional<T>::value) {
    if (converter.DecodeNull(payload).ok()) return T{};
    auto inner = FromPayload<typename T::value_type>(payload, converter);
    if (!inner.ok()) return inner.status();
    return T(std::move(*inner));
  } else if constexpr (std::is_same_v<T, std::string>) {
    return converter.DecodeString(payload);
  } else if constexpr (ci::kIsInteger<T>) {
    auto json = converter.DecodeJson(payload);
    if (!json.ok()) return json.status();
    if constexpr (std::is_signed_v<T>) {
      auto n = ci::ParseInteger(*json, std::numeric_limits<T>::min(), std::numeric_limits<T>::max(),
                                "integer");
      if (!n.ok()) return n.status();
      return static_cast<T>(*n);
    } else {
      auto n = ci::ParseUnsigned(*json, std::numeric_limits<T>::max(), "unsigned integer");
      if (!n.ok()) return n.status();
      return static_cast<T>(*n);
    }
  } else if constexpr (std::is_same_v<T, bool> || std::is_floating_point_v<T> ||
                       ci::kIsJsonMessage<T> || ci::IsVector<T>::value ||
                       ci::IsStringMap<T>::value) {
    auto json = converter.DecodeJson(payload);
    if (!json.ok()) return json.status();
    auto value = ci::JsonToValue(*json);
    if (!value.ok()) return value.status();
    return ci::FromJsonValue<T>(*value);
  } else if constexpr (std::is_base_of_v<google::protobuf::Message, T>) {
    T message;
    absl::Status status = converter.DecodeMessage(payload, &message);
    if (!status.ok()) return status;
    return message;
  } else {
    static_assert(sizeof(T) == 0, "no payload decoding for this type");
  }
}

// An argument list: one payload per value, in order.
template <class... Args>
api::Payloads ToPayloads(const Args&... args) {
  api::Payloads out;
  (void)std::initializer_list<int>{(*out.add_payloads() = ToPayload(args), 0)...};
  return out;
}

template <class... Args>
api::Payloads ToPayloadsWith(const PayloadConverter& converter, const Args&... args) {
  api::Payloads out;
  (void)std::initializer_list<int>{(*out.add_payloads() = ToPayload(args, converter), 0)...};
  return out;
}

// The value at `index`. A missing payload reads as null, so an optional or std::monostate
// parameter may be left off the end; anything else missing is kInvalidArgument.
template <class T>
absl::StatusOr<T> FromPayloadAt(const api::Payloads& payloads, int index,
                                const PayloadConverter& converter = DefaultConverter()) {
  if (index < 0 || index >= payloads.payloads_size()) {
    if constexpr (converter_internal::kIsNull<T> || converter_internal::IsOptional<T>::value) {
      return T{};
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("argument ", index, " is missing (", payloads.payloads_size(), " given)"));
    }
  }
  auto value = FromPayload<T>(payloads.payloads(index), converter);
  if (!value.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("argument ", index, ": ", value.status().message()));
  }
  return value;
}

namespace converter_internal {
template <class Tuple, size_t... I>
absl::Status DecodeAll(const api::Payloads& payloads, const PayloadConverter& converter, Tuple* out,
                       std::index_sequence<I...>) {
  absl::Status status;
  auto one = [&](auto& slot, int index) {
    if (!status.ok()) return;
    auto value = FromPayloadAt<std::decay_t<decltype(slot)>>(payloads, index, converter);
    if (!value.ok()) {
      status = value.status();
      return;
    }
    slot = std::move(*value);
  };
  (one(std::get<I>(*out), static_cast<int>(I)), ...);
  (void)one;  // Unused for an empty argument list.
  (void)out;
  return status;
}
}  // namespace converter_internal

// Decodes an argument list. More payloads than Args is an error (a caller and a callee that
// disagree on the signature should hear about it); fewer is an error unless the missing ones
// are optional.
template <class... Args>
absl::StatusOr<std::tuple<Args...>> FromPayloads(
    const api::Payloads& payloads, const PayloadConverter& converter = DefaultConverter()) {
  static_assert((std::is_default_constructible_v<Args> && ...),
                "argument types must be default-constructible");
  if (payloads.payloads_size() > static_cast<int>(sizeof...(Args))) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected ", sizeof...(Args), " arguments, got ", payloads.payloads_size()));
  }
  std::tuple<Args...> out;
  absl::Status status =
      converter_internal::DecodeAll(payloads, converter, &out, std::index_sequence_for<Args...>{});
  if (!status.ok()) return status;
  return out;
}

}  // namespace kiln::sdk
