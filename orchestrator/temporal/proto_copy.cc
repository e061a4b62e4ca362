#include "orchestrator/temporal/proto_copy.h"

#include <vector>

#include <google/protobuf/descriptor.h>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace kiln::orchestrator {
namespace {

using google::protobuf::EnumValueDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

absl::Status CopyMessage(const Message& from, Message* to, const CopyOptions& options,
                         const std::string& path);

absl::StatusOr<const EnumValueDescriptor*> MapEnum(const EnumValueDescriptor* value,
                                                   const FieldDescriptor* target,
                                                   const std::string& path) {
  const EnumValueDescriptor* mapped = target->enum_type()->FindValueByName(value->name());
  if (mapped == nullptr) {
    // An unset enum (0) may be spelled differently; it means the same on both sides.
    if (value->number() == 0) return target->enum_type()->FindValueByNumber(0);
    return absl::UnimplementedError(
        absl::StrCat(path, ": ", value->name(), " is not supported by Kiln yet"));
  }
  return mapped;
}

absl::Status CopySubMessage(const Message& from, Message* to, const CopyOptions& options,
                            const std::string& path) {
  if (from.GetDescriptor() == to->GetDescriptor()) {  // well-known types: Duration, Timestamp
    to->CopyFrom(from);
    return absl::OkStatus();
  }
  if (options.wire_compatible != nullptr &&
      (options.wire_compatible->contains(from.GetDescriptor()->full_name()) ||
       options.wire_compatible->contains(to->GetDescriptor()->full_name()))) {
    if (!to->ParseFromString(from.SerializeAsString())) {
      return absl::InternalError(absl::StrCat(path, ": does not parse as ", to->GetTypeName()));
    }
    if (options.fixup) options.fixup(*to);
    return absl::OkStatus();
  }
  return CopyMessage(from, to, options, path);
}

absl::Status CopyField(const Message& from, const FieldDescriptor* source, Message* to,
                       const FieldDescriptor* target, const CopyOptions& options,
                       const std::string& path) {
  const Reflection* in = from.GetReflection();
  const Reflection* out = to->GetReflection();
  if (source->cpp_type() != target->cpp_type()) return absl::OkStatus();  // another kind
  if (source->is_repeated() != target->is_repeated()) return absl::OkStatus();
  if (source->is_repeated()) {
    const int n = in->FieldSize(from, source);
    for (int i = 0; i < n; ++i) {
      const std::string item = absl::StrCat(path, "[", i, "]");
      switch (source->cpp_type()) {
        case FieldDescriptor::CPPTYPE_MESSAGE: {
          absl::Status s = CopySubMessage(in->GetRepeatedMessage(from, source, i),
                                          out->AddMessage(to, target), options, item);
          if (!s.ok()) return s;
          break;
        }
        case FieldDescriptor::CPPTYPE_ENUM: {
          auto mapped = MapEnum(in->GetRepeatedEnum(from, source, i), target, item);
          if (!mapped.ok()) return mapped.status();
          out->AddEnum(to, target, *mapped);
          break;
        }
        case FieldDescriptor::CPPTYPE_STRING:
          out->AddString(to, target, in->GetRepeatedString(from, source, i));
          break;
        case FieldDescriptor::CPPTYPE_INT32:
          out->AddInt32(to, target, in->GetRepeatedInt32(from, source, i));
          break;
        case FieldDescriptor::CPPTYPE_INT64:
          out->AddInt64(to, target, in->GetRepeatedInt64(from, source, i));
          break;
        case FieldDescriptor::CPPTYPE_UINT32:
          out->AddUInt32(to, target, in->GetRepeatedUInt32(from, source, i));
          break;
        case FieldDescriptor::CPPTYPE_UINT64:
          out->AddUInt64(to, target, in->GetRepeatedUInt64(from, source, i));
          break;
        case FieldDescriptor::CPPTYPE_DOUBLE:
          out->AddDouble(to, target, in->GetRepeatedDouble(from, source, i));
          break;
        case FieldDescriptor::CPPTYPE_FLOAT:
          out->AddFloat(to, target, in->GetRepeatedFloat(from, source, i));
          break;
        case FieldDescriptor::CPPTYPE_BOOL:
          out->AddBool(to, target, in->GetRepeatedBool(from, source, i));
          break;
      }
    }
    return absl::OkStatus();
  }
  switch (source->cpp_type()) {
    case FieldDescriptor::CPPTYPE_MESSAGE:
      return CopySubMessage(in->GetMessage(from, source), out->MutableMessage(to, target), options,
                            path);
    case FieldDescriptor::CPPTYPE_ENUM: {
      auto mapped = MapEnum(in->GetEnum(from, source), target, path);
      if (!mapped.ok()) return mapped.status();
      out->SetEnum(to, target, *mapped);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_STRING:
      out->SetString(to, target, in->GetString(from, source));
      return absl::OkStatus();
    case FieldDescriptor::CPPTYPE_INT32:
      out->SetInt32(to, target, in->GetInt32(from, source));
      return absl::OkStatus();
    case FieldDescriptor::CPPTYPE_INT64:
      out->SetInt64(to, target, in->GetInt64(from, source));
      return absl::OkStatus();
    case FieldDescriptor::CPPTYPE_UINT32:
      out->SetUInt32(to, target, in->GetUInt32(from, source));
      return absl::OkStatus();
    case FieldDescriptor::CPPTYPE_UINT64:
      out->SetUInt64(to, target, in->GetUInt64(from, source));
      return absl::OkStatus();
    case FieldDescriptor::CPPTYPE_DOUBLE:
      out->SetDouble(to, target, in->GetDouble(from, source));
      return absl::OkStatus();
    case FieldDescriptor::CPPTYPE_FLOAT:
      out->SetFloat(to, target, in->GetFloat(from, source));
      return absl::OkStatus();
    case FieldDescriptor::CPPTYPE_BOOL:
      out->SetBool(to, target, in->GetBool(from, source));
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

absl::Status CopyMessage(const Message& from, Message* to, const CopyOptions& options,
                         const std::string& path) {
  std::vector<const FieldDescriptor*> fields;
  from.GetReflection()->ListFields(from, &fields);
  for (const FieldDescriptor* source : fields) {
    const FieldDescriptor* target = to->GetDescriptor()->FindFieldByName(source->name());
    if (target == nullptr) continue;
    const std::string field_path =
        path.empty() ? source->name() : absl::StrCat(path, ".", source->name());
    absl::Status copied = CopyField(from, source, to, target, options, field_path);
    if (!copied.ok()) return copied;
  }
  if (options.fixup) options.fixup(*to);
  return absl::OkStatus();
}

}  // namespace

absl::Status CopyByName(const Message& from, Message* to, const CopyOptions& options) {
  return CopyMessage(from, to, options, "");
}

}  // namespace kiln::orchestrator
