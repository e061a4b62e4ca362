// The translations between Temporal's messages and the engine's that the frontend applies to
// every request and answer: CopyByName with the message types both sides encode alike, and
// the fields Temporal's side expects that the engine's lacks (a task queue's kind).
#pragma once

#include <string>

#include <google/protobuf/message.h>

#include "absl/status/status.h"

// The messages of the translations below; their headers are the frontend's own includes.
namespace kiln::api::v1 {
class ResetWorkflowExecutionRequest;
class DescribeTaskQueueRequest;
class DescribeTaskQueueResponse;
}  // namespace kiln::api::v1
namespace temporal::api::workflowservice::v1 {
class ResetWorkflowExecutionRequest;
class DescribeTaskQueueRequest;
class DescribeTaskQueueResponse;
}  // namespace temporal::api::workflowservice::v1

namespace kiln::orchestrator {

// Temporal's request (or any message) into the engine's.
absl::Status ToKiln(const google::protobuf::Message& temporal, google::protobuf::Message* kiln);
// The engine's answer (or any message) into Temporal's.
absl::Status ToTemporal(const google::protobuf::Message& kiln, google::protobuf::Message* temporal);

// What a request carries beyond what ToKiln copies by name, and the answer fields Temporal's
// side expects that the engine names otherwise. UNIMPLEMENTED names what Kiln lacks.
absl::Status ResetToKiln(
    const ::temporal::api::workflowservice::v1::ResetWorkflowExecutionRequest& t,
    ::kiln::api::v1::ResetWorkflowExecutionRequest& k);
absl::Status DescribeTaskQueueToKiln(
    const ::temporal::api::workflowservice::v1::DescribeTaskQueueRequest& t,
    ::kiln::api::v1::DescribeTaskQueueRequest& k);
void DescribeTaskQueueToTemporal(
    const ::temporal::api::workflowservice::v1::DescribeTaskQueueRequest& t,
    const ::kiln::api::v1::DescribeTaskQueueResponse& k,
    ::temporal::api::workflowservice::v1::DescribeTaskQueueResponse& response);

}  // namespace kiln::orchestrator
