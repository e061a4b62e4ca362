// The built-in fields of a visibility record that a query can name, and how each one reads.
// Every other name in a query is a custom search attribute.
#pragma once

#include <optional>
#include <string_view>

#include "kiln/api/v1/common.pb.h"
#include "kiln/internal/v1/persistence.pb.h"
#include "orchestrator/visibility/search_attributes.h"

namespace kiln::orchestrator {

enum class VisibilityField {
  kWorkflowId,
  kRunId,
  kWorkflowType,
  kExecutionStatus,
  kStartTime,
  kCloseTime,
  kTaskQueue,
  kHistoryLength,
};

// Matched ignoring case, so a mistyped case does not silently become a custom attribute that
// no run has; "Status" is an alias of ExecutionStatus.
std::optional<VisibilityField> LookupVisibilityField(std::string_view name);
// The canonical spelling, e.g. "ExecutionStatus".
std::string_view VisibilityFieldName(VisibilityField field);
// The type a field is compared as; ExecutionStatus is a Keyword of the names below.
SearchAttributeType VisibilityFieldType(VisibilityField field);

// The field's value in `record`, or nullopt when it is unset (the proto default: an empty
// string, an unset time, 0, WORKFLOW_EXECUTION_STATUS_UNSPECIFIED), which a query sees as NULL.
// ExecutionStatus reads as its name, e.g. "Running".
std::optional<SearchAttributeValue> VisibilityFieldValue(
    VisibilityField field, const kiln::internal::v1::VisibilityRecord& record);

// Temporal's status names: "Running", "Completed", "Failed", "Canceled", "Terminated",
// "ContinuedAsNew", "TimedOut". Lookup ignores case and returns the canonical name.
std::optional<std::string_view> CanonicalStatusName(std::string_view name);
std::optional<std::string_view> StatusName(kiln::api::v1::WorkflowExecutionStatus status);

}  // namespace kiln::orchestrator
