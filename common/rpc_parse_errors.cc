#include "common/rpc_parse_errors.h"

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <google/protobuf/stubs/logging.h>
#include <grpcpp/support/interceptor.h>
#include <grpcpp/support/server_interceptor.h>

#include "absl/time/clock.h"
#include "common/logging.h"

namespace kiln {
namespace {

// One per call: sees whether the request message was parsed, and rewrites the answer if not.
class ParseFailureInterceptor final : public grpc::experimental::Interceptor {
 public:
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using Hook = grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(Hook::POST_RECV_MESSAGE) &&
        methods->GetRecvMessage() == nullptr) {
      unparsable_ = true;
    }
    if (unparsable_ && methods->QueryInterceptionHookPoint(Hook::PRE_SEND_STATUS) &&
        methods->GetSendStatus().error_code() == grpc::StatusCode::UNIMPLEMENTED) {
      methods->ModifySendStatus(grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          "the request could not be parsed: a string field that is not valid UTF-8, or bytes "
          "that are not this method's request message"));
    }
    methods->Proceed();
  }

 private:
  bool unparsable_ = false;
};

class ParseFailureInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo*) override {
    return new ParseFailureInterceptor();
  }
};

std::atomic<int64_t> suppressed{0};
std::atomic<int64_t> next_log_micros{0};

void ProtobufLog(google::protobuf::LogLevel level, const char* filename, int line,
                 const std::string& message) {
  const int64_t now = absl::ToUnixMicros(absl::Now());
  int64_t next = next_log_micros.load(std::memory_order_relaxed);
  if (level < google::protobuf::LOGLEVEL_FATAL &&
      (now < next || !next_log_micros.compare_exchange_strong(next, now + 60'000'000))) {
    suppressed.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  LogWarn("protobuf.log", {{"message", message},
                           {"at", std::string(filename) + ":" + std::to_string(line)},
                           {"suppressed_before", suppressed.exchange(0)}});
}

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> UnparsableRequestAnswerer() {
  return std::make_unique<ParseFailureInterceptorFactory>();
}

void RateLimitProtobufLogs() {
  static std::once_flag once;
  std::call_once(once, [] { google::protobuf::SetLogHandler(&ProtobufLog); });
}

}  // namespace kiln
