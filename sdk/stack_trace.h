// The built-in "__stack_trace" query's answer (api::v1::WorkflowStackTrace; kStackTraceQuery in
// workflow.h) as it travels: one "json/plain" payload in protobuf's JSON mapping, so a script
// reads it with any JSON tool and the CLI reads it back into the message.
// WorkflowInstance::StackTrace, which builds it, is defined in stack_trace.cc too.
#pragma once

#include "absl/status/statusor.h"
#include "kiln/api/v1/common.pb.h"
#include "kiln/api/v1/stack_trace.pb.h"

namespace kiln::sdk {

::kiln::api::v1::Payloads EncodeStackTrace(const ::kiln::api::v1::WorkflowStackTrace& trace);
// kInvalidArgument when `payloads` is not one JSON payload of that message (e.g. the plain-text
// stack trace a Temporal SDK answers with).
absl::StatusOr<::kiln::api::v1::WorkflowStackTrace> DecodeStackTrace(
    const ::kiln::api::v1::Payloads& payloads);

}  // namespace kiln::sdk
