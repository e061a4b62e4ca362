// A writer of one log stream of a workflow run (kiln.api.v1.LogService), for a build's output.
// Append buffers output and sends it in chunks of up to 64 KiB, cut after the last newline in
// reach when there is one, each chunk with the next sequence number. A call that fails with
// UNAVAILABLE, DEADLINE_EXCEEDED or CANCELLED (an orchestrator restarting, a connection being
// re-established) is retried with the same chunk and sequence number: the orchestrator stores
// a chunk once however often it is sent, so a restart neither loses nor duplicates output.
//
//   sdk::LogWriter log(connection, run, "build");   // run: a WorkflowExecution
//   while (read some output)     RETURN_IF_ERROR(log.Append(output));
//   when the output pauses/ends: RETURN_IF_ERROR(log.Flush());
//
// Append sends only whole chunks, plus the complete lines that have waited `max_delay`; a
// partial line, or a line written just now, waits for more output or for Flush. Call Flush
// when the output pauses (a pipe read that timed out) and at the end.
//
// Sequence numbers are per stream, so a stream has one writer at a time, and a LogWriter is
// used from one thread at a time. A writer that takes over a stream (after a crash) must use
// numbers above its predecessor's: by default they start at the clock's time in microseconds,
// which every earlier writer's numbers stay below (each append is a synced round trip, far
// longer than a microsecond) as long as the clocks agree; a writer on another machine whose
// clock may lag should pass `first_sequence`, or write a stream of its own (e.g. per attempt).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "kiln/api/v1/log_service.grpc.pb.h"
#include "sdk/connection.h"

namespace kiln::sdk {

struct LogWriterOptions {
  // Empty: the engine's default namespace.
  std::string ns{};
  // The largest chunk sent (the server takes up to 1 MiB).
  size_t chunk_bytes = 64 << 10;
  // Complete lines buffered this long go out with the next Append. Zero: at every Append.
  absl::Duration max_delay = absl::Seconds(1);
  // Unsent bytes the writer holds at most (they pile up only while sends fail): an Append that
  // would pass it is refused (kResourceExhausted) and buffers nothing.
  size_t max_buffered_bytes = 16 << 20;
  // The deadline of one AppendLog call.
  absl::Duration call_timeout = absl::Seconds(10);
  // How long one chunk is retried before Append or Flush returns the error. The chunk stays
  // buffered with its sequence number, so a later Append or Flush sends it again safely.
  absl::Duration retry_timeout = absl::Minutes(2);
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(2);
  // 0: the clock's time in microseconds (see above).
  int64_t first_sequence = 0;
  // Defaults to the real clock; it times max_delay and the retry backoff.
  Clock* clock = nullptr;
};

class LogWriter {
 public:
  // `run`: the workflow id, and the run id (empty: the workflow's current run, resolved by the
  // orchestrator at every call).
  LogWriter(Connection& connection, kiln::api::v1::WorkflowExecution run, std::string stream,
            LogWriterOptions options = {});
  LogWriter(const LogWriter&) = delete;
  LogWriter& operator=(const LogWriter&) = delete;
  // Does not flush (that may block for retry_timeout): call Flush first.
  ~LogWriter() = default;

  // Buffers `data` and sends what is due (see above). A failed send leaves the data buffered
  // (a later Append or Flush sends it with the same sequence number).
  absl::Status Append(std::string_view data);
  // Sends everything buffered.
  absl::Status Flush();

  // The stream's length as of the last acknowledged chunk (-1 before the first).
  int64_t offset() const { return offset_; }
  size_t buffered() const { return buffer_.size() - head_; }
  // Attempts that failed and were retried, since the writer was made.
  int64_t retries() const { return retries_; }

 private:
  // The bytes not yet acknowledged.
  std::string_view Pending() const { return std::string_view(buffer_).substr(head_); }
  // Sends Pending()'s first `size` bytes as one chunk, retrying what is retryable.
  absl::Status Send(size_t size);
  void Consume(size_t size);
  void Sleep(absl::Duration d);

  std::unique_ptr<kiln::api::v1::LogService::Stub> stub_;
  kiln::api::v1::WorkflowExecution run_;
  std::string stream_;
  LogWriterOptions options_;
  Clock* clock_;
  // Pending() is buffer_ from head_ on (the bytes before head_ are sent).
  std::string buffer_;
  size_t head_ = 0;
  // When the oldest byte of buffer_ was buffered.
  absl::Time buffered_since_ = absl::InfiniteFuture();
  int64_t next_sequence_;
  int64_t offset_ = -1;
  int64_t retries_ = 0;
};

}  // namespace kiln::sdk
