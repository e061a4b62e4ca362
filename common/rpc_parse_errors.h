// A request that cannot be parsed (a proto3 string field that is not valid UTF-8, or bytes that
// are not the method's message) gets INVALID_ARGUMENT saying so, instead of what gRPC 1.51's
// callback API answers: UNIMPLEMENTED with no message, as if the method did not exist. And
// protobuf's log line for each such request (an attacker's way to fill the log) is counted and
// written at most once a minute.
#pragma once

#include <memory>

#include <grpcpp/support/server_interceptor.h>

namespace kiln {

// The interceptor; servers install it through ServerCalls::Install (common/server_calls.h).
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> UnparsableRequestAnswerer();

// Routes protobuf's own log lines through common/logging, rate-limited (idempotent).
void RateLimitProtobufLogs();

}  // namespace kiln
