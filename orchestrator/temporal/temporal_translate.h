// The translations between Temporal's messages and the engine's that the frontend applies to
// every request and answer: CopyByName with the message types both sides encode alike, and
// the fields Temporal's side expects that the engine's lacks (a task queue's kind).
#pragma once

#include <string>

#include <google/protobuf/message.h>

#include "absl/status/status.h"

namespace kiln::orchestrator {

// Temporal's request (or any message) into the engine's.
absl::Status ToKiln(const google::protobuf::Message& temporal, google::protobuf::Message* kiln);
// The engine's answer (or any message) into Temporal's.
absl::Status ToTemporal(const google::protobuf::Message& kiln, google::protobuf::Message* temporal);

}  // namespace kiln::orchestrator
