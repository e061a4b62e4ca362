// The orchestrator's request validation on whatever a client can send: the first byte picks
// the request type, the rest is parsed as that message (as gRPC would), and validation answers
// OK or kInvalidArgument, never crashes or hangs.
#include <cstdint>
#include <cstdlib>

#include "absl/status/status.h"
#include "orchestrator/rpc/validation.h"

namespace {

namespace api = ::kiln::api::v1;
using namespace kiln::orchestrator;  // NOLINT: the validators

template <typename Request, typename Validate>
void Check(const uint8_t* data, size_t size, Validate validate) {
  Request request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return;
  absl::Status status = validate(request);
  if (!status.ok() && status.code() != absl::StatusCode::kInvalidArgument) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t kind = data[0] % 13;
  ++data;
  --size;
  switch (kind) {
    case 0:
      Check<api::StartWorkflowExecutionRequest>(data, size,
                                                [](const auto& r) { return ValidateStart(r); });
      break;
    case 1:
      Check<api::SignalWorkflowExecutionRequest>(data, size,
                                                 [](const auto& r) { return ValidateSignal(r); });
      break;
    case 2:
      Check<api::SignalWithStartWorkflowExecutionRequest>(
          data, size, [](const auto& r) { return ValidateSignalWithStart(r); });
      break;
    case 3:
      Check<api::RequestCancelWorkflowExecutionRequest>(
          data, size, [](const auto& r) { return ValidateCancel(r); });
      break;
    case 4:
      Check<api::TerminateWorkflowExecutionRequest>(
          data, size, [](const auto& r) { return ValidateTerminate(r); });
      break;
    case 5:
      Check<api::QueryWorkflowRequest>(data, size, [](const auto& r) { return ValidateQuery(r); });
      break;
    case 6:
      Check<api::ListWorkflowExecutionsRequest>(data, size,
                                                [](const auto& r) { return ValidateList(r); });
      break;
    case 7:
      Check<api::RespondWorkflowTaskFailedRequest>(
          data, size, [](const auto& r) { return ValidateWorkflowTaskFailed(r); });
      break;
    case 8:
      Check<api::RespondQueryTaskCompletedRequest>(
          data, size, [](const auto& r) { return ValidateQueryTaskCompleted(r); });
      break;
    case 9:
      Check<api::RespondActivityTaskFailedRequest>(
          data, size, [](const auto& r) { return ValidateActivityFailed(r); });
      break;
    case 10:
      Check<api::RespondActivityTaskCompletedRequest>(
          data, size, [](const auto& r) { return ValidateActivityCompleted(r); });
      break;
    case 11:
      Check<api::ResetWorkflowExecutionRequest>(data, size,
                                                [](const auto& r) { return ValidateReset(r); });
      break;
    default:
      Check<api::RecordActivityTaskHeartbeatRequest>(
          data, size, [](const auto& r) { return ValidateHeartbeat(r); });
      break;
  }
  return 0;
}
