#include "orchestrator/temporal/proto_copy.h"

#include <memory>
#include <tuple>
#include <utility>
#include <vector>

#include <google/protobuf/descriptor.h>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace kiln::orchestrator {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumDescriptor;
using google::protobuf::EnumValueDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// Where a field is in the message being copied ("commands[0].command_type"), spelled out only
// for an error: building the text for every field copied cost more than the copy.
struct Path {
  const Path* parent = nullptr;
  const FieldDescriptor* field = nullptr;
  int index = -1;  // an element of a repeated field

  std::string ToString() const {
    std::string text = parent == nullptr ? "" : parent->ToString();
    if (field != nullptr) absl::StrAppend(&text, text.empty() ? "" : ".", field->name());
    if (index >= 0) absl::StrAppend(&text, "[", index, "]");
    return text;
  }
};

// What copying one message type into another takes, worked out once per pair of types (and
// set of wire-compatible types) and kept per thread: descriptors live as long as the process.
struct TypePlan {
  // For each field of the source type (by index), the target's field of the same name and
  // kind, or nullptr when the target lacks it or has it as another kind (skipped).
  std::vector<const FieldDescriptor*> targets;
  // Copied through their encoding (CopyOptions::wire_compatible).
  bool wire_compatible = false;
};

const TypePlan& PlanFor(const Descriptor* from, const Descriptor* to,
                        const absl::flat_hash_set<std::string>* wire_compatible) {
  using Key = std::tuple<const Descriptor*, const Descriptor*, const void*>;
  // Plans by pointer: a copy holds its plan while nested copies add theirs.
  thread_local absl::flat_hash_map<Key, std::unique_ptr<TypePlan>> plans;
  std::unique_ptr<TypePlan>& slot = plans[Key{from, to, wire_compatible}];
  if (slot != nullptr) return *slot;
  slot = std::make_unique<TypePlan>();
  TypePlan& plan = *slot;
  plan.wire_compatible =
      wire_compatible != nullptr &&
      (wire_compatible->contains(from->full_name()) || wire_compatible->contains(to->full_name()));
  plan.targets.resize(from->field_count(), nullptr);
  for (int i = 0; i < from->field_count(); ++i) {
    const FieldDescriptor* source = from->field(i);
    const FieldDescriptor* target = to->FindFieldByName(source->name());
    if (target == nullptr || source->cpp_type() != target->cpp_type() ||
        source->is_repeated() != target->is_repeated()) {
      continue;
    }
    plan.targets[i] = target;
  }
  return plan;
}

absl::Status CopyMessage(const Message& from, Message* to, const CopyOptions& options,
                         const Path& path);

absl::StatusOr<const EnumValueDescriptor*> MapEnum(const EnumValueDescriptor* value,
                                                   const FieldDescriptor* target,
                                                   const Path& path) {
  // By name, remembered per thread (a lookup by name searches the whole descriptor pool).
  thread_local absl::flat_hash_map<std::pair<const EnumValueDescriptor*, const EnumDescriptor*>,
                                   const EnumValueDescriptor*>
      mapped_values;
  auto [it, inserted] = mapped_values.try_emplace({value, target->enum_type()}, nullptr);
  if (inserted) it->second = target->enum_type()->FindValueByName(value->name());
  const EnumValueDescriptor* mapped = it->second;
  if (mapped == nullptr) {
    // An unset enum (0) may be spelled differently; it means the same on both sides.
    if (value->number() == 0) return target->enum_type()->FindValueByNumber(0);
    return absl::UnimplementedError(
        absl::StrCat(path.ToString(), ": ", value->name(), " is not supported by Kiln yet"));
  }
  return mapped;
}

absl::Status CopySubMessage(const Message& from, Message* to, const CopyOptions& options,
                            const Path& path) {
  if (from.GetDescriptor() == to->GetDescriptor()) {  // well-known types: Duration, Timestamp
    to->CopyFrom(from);
    return absl::OkStatus();
  }
  if (PlanFor(from.GetDescriptor(), to->GetDescriptor(), options.wire_compatible).wire_compatible) {
    if (!to->ParseFromString(from.SerializeAsString())) {
      return absl::InternalError(
          absl::StrCat(path.ToString(), ": does not parse as ", to->GetTypeName()));
    }
    if (options.fixup) options.fixup(*to);
    return absl::OkStatus();
  }
  return CopyMessage(from, to, options, path);
}

// `target` is of the same kind as `source` (TypePlan).
absl::Status CopyField(const Message& from, const FieldDescriptor* source, Message* to,
                       const FieldDescriptor* target, const CopyOptions& options,
                       const Path& path) {
  const Reflection* in = from.GetReflection();
  const Reflection* out = to->GetReflection();
  if (source->is_repeated()) {
    const int n = in->FieldSize(from, source);
    for (int i = 0; i < n; ++i) {
      const Path item{.parent = path.parent, .field = path.field, .index = i};
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
                         const Path& path) {
  const TypePlan& plan = PlanFor(from.GetDescriptor(), to->GetDescriptor(), nullptr);
  std::vector<const FieldDescriptor*> fields;
  from.GetReflection()->ListFields(from, &fields);
  for (const FieldDescriptor* source : fields) {
    if (source->is_extension()) continue;
    const FieldDescriptor* target = plan.targets[source->index()];
    if (target == nullptr) continue;
    absl::Status copied =
        CopyField(from, source, to, target, options, Path{.parent = &path, .field = source});
    if (!copied.ok()) return copied;
  }
  if (options.fixup) options.fixup(*to);
  return absl::OkStatus();
}

}  // namespace

absl::Status CopyByName(const Message& from, Message* to, const CopyOptions& options) {
  return CopyMessage(from, to, options, Path{});
}

}  // namespace kiln::orchestrator
