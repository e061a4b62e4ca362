#include "orchestrator/temporal/temporal_translate.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/json_scalar.h"
#include "common/status.h"
#include "kiln/api/v1/common.pb.h"
#include "kiln/api/v1/workflow_service.pb.h"
#include "orchestrator/temporal/proto_copy.h"
#include "temporal/api/taskqueue/v1/message.pb.h"
#include "temporal/api/workflowservice/v1/request_response.pb.h"

namespace kiln::orchestrator {
namespace {

// Encoded alike on both sides (the engine's are subsets, same numbers, same enum numbers):
// copied through their bytes, so what only Temporal's side has (Failure.encoded_attributes,
// a child workflow's or Nexus failure info, Payload.external_payloads) survives the engine.
const absl::flat_hash_set<std::string>& WireCompatible() {
  static const auto* types = new absl::flat_hash_set<std::string>{
      "temporal.api.common.v1.Payload",
      "temporal.api.common.v1.Payloads",
      "temporal.api.common.v1.Header",
      "temporal.api.common.v1.Memo",
      "temporal.api.common.v1.SearchAttributes",
      "temporal.api.common.v1.RetryPolicy",
      "temporal.api.failure.v1.Failure",
      "kiln.api.v1.Payload",
      "kiln.api.v1.Payloads",
      "kiln.api.v1.Header",
      "kiln.api.v1.Memo",
      "kiln.api.v1.SearchAttributes",
      "kiln.api.v1.RetryPolicy",
      "kiln.api.v1.Failure",
  };
  return *types;
}

// The value of a search attribute an SDK sent untyped (its deprecated `searchAttributes`
// option: a JSON array, no metadata "type"), typed as Temporal's server would from its schema,
// which Kiln has none of: from the one value the array holds (a string is a Keyword, an
// integer an Int, true or false a Bool). Anything else is left as it is, for the engine to
// refuse naming the attribute.
void TypeUntypedSearchAttribute(::kiln::api::v1::Payload& payload) {
  if (payload.metadata().contains("type")) return;
  absl::string_view value = absl::StripAsciiWhitespace(payload.data());
  if (value.size() >= 2 && value.front() == '[' && value.back() == ']') {
    value = absl::StripAsciiWhitespace(value.substr(1, value.size() - 2));
  }
  const std::string_view json(value.data(), value.size());
  const char* type = nullptr;
  if (json::ParseString(json).ok()) {
    type = "Keyword";
  } else if (json::ParseInt(json).ok()) {
    type = "Int";
  } else if (json::ParseBool(json).ok()) {
    type = "Bool";
  }
  if (type == nullptr) return;
  payload.set_data(std::string(json));
  (*payload.mutable_metadata())["type"] = type;
}

void FillKilnDefaults(google::protobuf::Message& message) {
  if (auto* attributes = dynamic_cast<::kiln::api::v1::SearchAttributes*>(&message)) {
    for (auto& [name, value] : *attributes->mutable_indexed_fields()) {
      TypeUntypedSearchAttribute(value);
    }
  }
}

// The engine's task queues have only a name: every one it reports is a normal queue.
void FillTemporalDefaults(google::protobuf::Message& message) {
  if (auto* queue = dynamic_cast<::temporal::api::taskqueue::v1::TaskQueue*>(&message)) {
    if (!queue->name().empty() &&
        queue->kind() == ::temporal::api::enums::v1::TASK_QUEUE_KIND_UNSPECIFIED) {
      queue->set_kind(::temporal::api::enums::v1::TASK_QUEUE_KIND_NORMAL);
    }
  }
}

absl::Status Unsupported(bool used, const char* what) {
  if (!used) return absl::OkStatus();
  return absl::UnimplementedError(absl::StrCat(what, " is not supported by Kiln yet"));
}

}  // namespace

absl::Status ResetToKiln(
    const ::temporal::api::workflowservice::v1::ResetWorkflowExecutionRequest& t,
    ::kiln::api::v1::ResetWorkflowExecutionRequest& k) {
  namespace tenums = ::temporal::api::enums::v1;
  RETURN_IF_ERROR(Unsupported(t.post_reset_operations_size() > 0, "post_reset_operations"));
  // Signals are what Kiln's reset reapplies (Temporal's SIGNAL and ALL_ELIGIBLE alike: Kiln has
  // no updates); NONE or an exclusion of signals leaves them out.
  // reset_reapply_type is deprecated for the exclude types, but older clients send only it.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  bool exclude = t.reset_reapply_type() == tenums::RESET_REAPPLY_TYPE_NONE;
#pragma GCC diagnostic pop
  for (int type : t.reset_reapply_exclude_types()) {
    if (type == tenums::RESET_REAPPLY_EXCLUDE_TYPE_SIGNAL) exclude = true;
  }
  k.set_exclude_signals(exclude);
  // Temporal's point is the event id alone.
  k.set_reset_point(::kiln::api::v1::RESET_POINT_UNSPECIFIED);
  return absl::OkStatus();
}

absl::Status DescribeTaskQueueToKiln(
    const ::temporal::api::workflowservice::v1::DescribeTaskQueueRequest& t,
    ::kiln::api::v1::DescribeTaskQueueRequest& k) {
  namespace tenums = ::temporal::api::enums::v1;
  RETURN_IF_ERROR(Unsupported(t.task_queue_type() == tenums::TASK_QUEUE_TYPE_NEXUS,
                              "task_queue_type TASK_QUEUE_TYPE_NEXUS"));
  // A sticky queue is no queue in Kiln: its worker polls the normal one (temporal-api.md).
  RETURN_IF_ERROR(Unsupported(t.task_queue().kind() == tenums::TASK_QUEUE_KIND_STICKY,
                              "describing a sticky task queue"));
  k.set_activity(t.task_queue_type() == tenums::TASK_QUEUE_TYPE_ACTIVITY);
  return absl::OkStatus();
}

void DescribeTaskQueueToTemporal(
    const ::temporal::api::workflowservice::v1::DescribeTaskQueueRequest& t,
    const ::kiln::api::v1::DescribeTaskQueueResponse& k,
    ::temporal::api::workflowservice::v1::DescribeTaskQueueResponse& response) {
  if (t.report_stats()) {
    auto* stats = response.mutable_stats();
    stats->set_approximate_backlog_count(k.backlog_count());
    stats->mutable_approximate_backlog_age()->set_seconds(k.oldest_task_age().seconds());
    stats->mutable_approximate_backlog_age()->set_nanos(k.oldest_task_age().nanos());
  }
}

absl::Status ToKiln(const google::protobuf::Message& temporal, google::protobuf::Message* kiln) {
  return CopyByName(temporal, kiln,
                    CopyOptions{.wire_compatible = &WireCompatible(), .fixup = FillKilnDefaults});
}

absl::Status ToTemporal(const google::protobuf::Message& kiln,
                        google::protobuf::Message* temporal) {
  return CopyByName(
      kiln, temporal,
      CopyOptions{.wire_compatible = &WireCompatible(), .fixup = FillTemporalDefaults});
}

}  // namespace kiln::orchestrator
