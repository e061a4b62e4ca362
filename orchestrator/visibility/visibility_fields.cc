// The built-in visibility fields: names, types and how each reads from a record.
#include "orchestrator/visibility/visibility_fields.h"

#include <array>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "common/absl_view.h"
#include "common/proto_time.h"

namespace kiln::orchestrator {
namespace {

struct FieldInfo {
  std::string_view name;
  VisibilityField field;
  SearchAttributeType type;
};

constexpr std::array<FieldInfo, 9> kFields = {{
    {"WorkflowId", VisibilityField::kWorkflowId, SearchAttributeType::kKeyword},
    {"RunId", VisibilityField::kRunId, SearchAttributeType::kKeyword},
    {"WorkflowType", VisibilityField::kWorkflowType, SearchAttributeType::kKeyword},
    {"ExecutionStatus", VisibilityField::kExecutionStatus, SearchAttributeType::kKeyword},
    {"StartTime", VisibilityField::kStartTime, SearchAttributeType::kDatetime},
    {"CloseTime", VisibilityField::kCloseTime, SearchAttributeType::kDatetime},
    {"TaskQueue", VisibilityField::kTaskQueue, SearchAttributeType::kKeyword},
    {"HistoryLength", VisibilityField::kHistoryLength, SearchAttributeType::kInt},
    // Last, so the canonical name of ExecutionStatus is found first.
    {"Status", VisibilityField::kExecutionStatus, SearchAttributeType::kKeyword},
}};

constexpr std::array<std::pair<api::WorkflowExecutionStatus, std::string_view>, 7> kStatuses = {{
    {api::WORKFLOW_EXECUTION_STATUS_RUNNING, "Running"},
    {api::WORKFLOW_EXECUTION_STATUS_COMPLETED, "Completed"},
    {api::WORKFLOW_EXECUTION_STATUS_FAILED, "Failed"},
    {api::WORKFLOW_EXECUTION_STATUS_CANCELED, "Canceled"},
    {api::WORKFLOW_EXECUTION_STATUS_TERMINATED, "Terminated"},
    {api::WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW, "ContinuedAsNew"},
    {api::WORKFLOW_EXECUTION_STATUS_TIMED_OUT, "TimedOut"},
}};

const FieldInfo& Info(VisibilityField field) {
  for (const FieldInfo& info : kFields) {
    if (info.field == field) return info;
  }
  return kFields.front();  // Unreachable: every enumerator has an entry.
}

std::optional<SearchAttributeValue> NonEmpty(const std::string& value) {
  if (value.empty()) return std::nullopt;
  return SearchAttributeValue(value);
}

std::optional<SearchAttributeValue> SetTime(const google::protobuf::Timestamp& time) {
  if (!IsSet(time)) return std::nullopt;
  return SearchAttributeValue(FromProto(time));
}

}  // namespace

std::optional<VisibilityField> LookupVisibilityField(std::string_view name) {
  for (const FieldInfo& info : kFields) {
    if (absl::EqualsIgnoreCase(AbslView(info.name), AbslView(name))) return info.field;
  }
  return std::nullopt;
}

std::string_view VisibilityFieldName(VisibilityField field) { return Info(field).name; }

SearchAttributeType VisibilityFieldType(VisibilityField field) { return Info(field).type; }

std::optional<SearchAttributeValue> VisibilityFieldValue(
    VisibilityField field, const kiln::internal::v1::VisibilityRecord& record) {
  switch (field) {
    case VisibilityField::kWorkflowId:
      return NonEmpty(record.workflow_id());
    case VisibilityField::kRunId:
      return NonEmpty(record.run_id());
    case VisibilityField::kWorkflowType:
      return NonEmpty(record.workflow_type());
    case VisibilityField::kTaskQueue:
      return NonEmpty(record.task_queue());
    case VisibilityField::kExecutionStatus: {
      std::optional<std::string_view> name = StatusName(record.status());
      if (!name) return std::nullopt;
      return SearchAttributeValue(std::string(*name));
    }
    case VisibilityField::kStartTime:
      return SetTime(record.start_time());
    case VisibilityField::kCloseTime:
      return SetTime(record.close_time());
    case VisibilityField::kHistoryLength:
      if (record.history_length() == 0) return std::nullopt;
      return SearchAttributeValue(record.history_length());
  }
  return std::nullopt;
}

std::optional<std::string_view> CanonicalStatusName(std::string_view name) {
  for (const auto& [status, canonical] : kStatuses) {
    if (absl::EqualsIgnoreCase(AbslView(canonical), AbslView(name))) return canonical;
  }
  return std::nullopt;
}

std::optional<std::string_view> StatusName(api::WorkflowExecutionStatus status) {
  for (const auto& [known, name] : kStatuses) {
    if (known == status) return name;
  }
  return std::nullopt;
}

}  // namespace kiln::orchestrator
