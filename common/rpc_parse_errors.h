// A request that cannot be parsed (a proto3 string field that is not valid UTF-8, or bytes that
// are not the method's message) gets INVALID_ARGUMENT saying so, instead of what gRPC 1.51's
// callback API answers: UNIMPLEMENTED with no message, as if the method did not exist. And
// protobuf's log line for each such request (an attacker's way to fill the log) is counted and
// written at most once a minute.
#pragma once

#include <grpcpp/server_builder.h>

namespace kiln {

// Adds the interceptor to `builder`; call once per server before BuildAndStart.
void AnswerUnparsableRequests(grpc::ServerBuilder& builder);

// Routes protobuf's own log lines through common/logging, rate-limited (idempotent).
void RateLimitProtobufLogs();

}  // namespace kiln
