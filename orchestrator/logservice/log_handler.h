// kiln.api.v1.LogService: log streams attached to a workflow run. A stream is an append-only
// run of bytes (a build's output, line by line) named by the run and a stream name; readers
// read it from any byte offset and may follow it live, resuming after a broken connection from
// the offset after the last byte they received.
//
// AppendLog stores one chunk per call (at most 1 MiB; a stream at most 256 MiB), synced, and
// answers the chunk's offset. The writer's sequence number makes a retried append safe: the
// exact rule is AppendLogChunk's, in log_store.h. ReadLog streams chunks from from_offset and,
// with follow, the chunks appended after; log_reader.h says how a follow ends (client cancel,
// server shutdown, 10 minutes without data). The run must exist (an empty run id means the
// workflow's current run); a stream that was never written reads as empty.
//
// Store reads and commits run on the engine's executor, never on gRPC's threads, and a waiting
// follower holds no thread.
#pragma once

#include <memory>
#include <string>

#include <prometheus/registry.h>

#include "absl/time/time.h"
#include "common/clock.h"
#include "common/executor.h"
#include "kiln/api/v1/log_service.grpc.pb.h"
#include "orchestrator/logs/log_limits.h"
#include "orchestrator/logs/log_metrics.h"
#include "orchestrator/logs/log_streams.h"
#include "orchestrator/logservice/log_reader.h"
#include "orchestrator/logservice/log_reader_registry.h"
#include "orchestrator/persistence/store.h"
#include "orchestrator/rpc/authorizer.h"
#include "orchestrator/rpc/rpc_metrics.h"

namespace kiln::orchestrator {

struct LogDeps {
  Store* store;
  Clock* clock;
  Executor* executor;
  // May be null (no metrics).
  prometheus::Registry* registry;
  // For requests that name none.
  std::string default_namespace = "default";
  // Who may call what (authorizer.h); null: everyone may call everything.
  Authorizer* authorizer = nullptr;
};

struct LogOptions {
  absl::Duration follow_idle_limit = log_limits::kDefaultFollowIdleLimit;
  size_t follower_queue_bytes = log_limits::kDefaultFollowerQueueBytes;
  size_t max_readers = log_limits::kDefaultMaxReaders;
};

class LogHandler final : public kiln::api::v1::LogService::CallbackService {
 public:
  explicit LogHandler(LogDeps deps, LogOptions options = {});
  // Ends the follows and waits until every ReadLog call is gone; the gRPC server must have
  // been shut down first (it releases the calls), and the executor must outlive this.
  ~LogHandler() override;
  LogHandler(const LogHandler&) = delete;
  LogHandler& operator=(const LogHandler&) = delete;

  // At the server's shutdown, before the gRPC server's own: ends every follow (kUnavailable)
  // and refuses new reads, so the server drains at once rather than after its grace period.
  void Shutdown();

  grpc::ServerUnaryReactor* AppendLog(grpc::CallbackServerContext* ctx,
                                      const kiln::api::v1::AppendLogRequest* request,
                                      kiln::api::v1::AppendLogResponse* response) override;
  grpc::ServerWriteReactor<kiln::api::v1::ReadLogResponse>* ReadLog(
      grpc::CallbackServerContext* ctx, const kiln::api::v1::ReadLogRequest* request) override;

  // ReadLog calls open now, and streams in use (for tests).
  size_t open_reads() { return readers_.size(); }
  size_t active_streams() { return streams_.active_streams(); }

 private:
  const std::string& Namespace(const std::string& ns) const {
    return ns.empty() ? deps_.default_namespace : ns;
  }

  const LogDeps deps_;
  const LogOptions options_;
  RpcMetrics rpc_metrics_;
  LogMetrics metrics_;
  LogStreams streams_;
  LogReaderRegistry readers_;
};

}  // namespace kiln::orchestrator
