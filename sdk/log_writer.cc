#include "sdk/log_writer.h"

#include <algorithm>

#include <grpcpp/client_context.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/rpc_status.h"
#include "common/status.h"

namespace kiln::sdk {

namespace api = ::kiln::api::v1;

LogWriter::LogWriter(Connection& connection, api::WorkflowExecution run, std::string stream,
                     LogWriterOptions options)
    : stub_(api::LogService::NewStub(connection.channel())),
      run_(std::move(run)),
      stream_(std::move(stream)),
      options_(std::move(options)),
      clock_(options_.clock != nullptr ? options_.clock : RealClock::Default()) {
  options_.chunk_bytes = std::clamp<size_t>(options_.chunk_bytes, 1, 1 << 20);
  next_sequence_ = options_.first_sequence > 0
                       ? options_.first_sequence
                       : std::max<int64_t>(1, absl::ToUnixMicros(clock_->Now()));
}

absl::Status LogWriter::Append(std::string_view data) {
  if (data.empty()) return absl::OkStatus();
  if (Pending().size() + data.size() > options_.max_buffered_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("log writer for stream '", stream_, "' holds ",
                                                     Pending().size(), " unsent bytes: appending ",
                                                     data.size(), " more would pass its limit of ",
                                                     options_.max_buffered_bytes));
  }
  if (Pending().empty()) buffered_since_ = clock_->Now();
  buffer_.append(data);
  // Whole chunks, each cut after its last newline when it has one.
  while (Pending().size() >= options_.chunk_bytes) {
    std::string_view window = Pending().substr(0, options_.chunk_bytes);
    size_t newline = window.rfind('\n');
    RETURN_IF_ERROR(Send(newline == std::string_view::npos ? window.size() : newline + 1));
  }
  // Complete lines that have waited long enough (less than a chunk is left).
  if (!Pending().empty() && clock_->Now() - buffered_since_ >= options_.max_delay) {
    size_t newline = Pending().rfind('\n');
    if (newline != std::string_view::npos) RETURN_IF_ERROR(Send(newline + 1));
  }
  return absl::OkStatus();
}

absl::Status LogWriter::Flush() {
  while (!Pending().empty()) {
    RETURN_IF_ERROR(Send(std::min(Pending().size(), options_.chunk_bytes)));
  }
  return absl::OkStatus();
}

absl::Status LogWriter::Send(size_t size) {
  api::AppendLogRequest request;
  request.set_namespace_(options_.ns);
  *request.mutable_execution() = run_;
  request.set_stream(stream_);
  request.set_sequence(next_sequence_);
  request.set_data(Pending().data(), size);
  const absl::Time give_up = clock_->Now() + options_.retry_timeout;
  absl::Duration backoff = options_.initial_backoff;
  for (;;) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         absl::ToChronoMilliseconds(options_.call_timeout));
    api::AppendLogResponse response;
    grpc::Status status = stub_->AppendLog(&context, request, &response);
    if (status.ok()) {
      offset_ = response.offset() + static_cast<int64_t>(size);
      ++next_sequence_;
      Consume(size);
      buffered_since_ = Pending().empty() ? absl::InfiniteFuture() : clock_->Now();
      return absl::OkStatus();
    }
    // An orchestrator going away or coming back: UNAVAILABLE, DEADLINE_EXCEEDED, or CANCELLED
    // (gRPC cancels calls that reach a server shutting down; this writer never cancels its
    // own). Each may hide a stored chunk whose answer was lost: the same sequence settles it.
    const bool retryable = status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                           status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
                           status.error_code() == grpc::StatusCode::CANCELLED;
    if (!retryable || clock_->Now() + backoff > give_up) {
      absl::Status error = FromGrpc(status);
      return absl::Status(error.code(),
                          absl::StrCat("AppendLog to stream '", stream_, "': ", error.message()));
    }
    ++retries_;
    Sleep(backoff);
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
}

void LogWriter::Consume(size_t size) {
  head_ += size;
  if (head_ == buffer_.size()) {
    buffer_.clear();
    head_ = 0;
  } else if (head_ >= buffer_.size() / 2) {
    // Sent bytes are dropped once they are half the buffer: linear in the bytes written, even
    // for one Append of many megabytes.
    buffer_.erase(0, head_);
    head_ = 0;
  }
}

void LogWriter::Sleep(absl::Duration d) {
  absl::Notification done;
  clock_->ScheduleAlarm(clock_->Now() + d, [&done] { done.Notify(); });
  done.WaitForNotification();
}

}  // namespace kiln::sdk
