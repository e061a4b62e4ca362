// One ReadLog call: streams a log from an offset and, with follow=true, keeps streaming chunks
// as they are appended. It holds no thread while it waits: store reads run on the engine's
// executor, live chunks arrive from appends (LogFollower), writes complete on gRPC's threads
// and the idle limit is a clock alarm.
//
// One write is in flight at a time. A follower registers with the stream BEFORE it reads the
// stored tail, so no chunk falls between the two; where they overlap it deduplicates by offset
// (it sends each byte offset once, in order). Live chunks wait in a queue bounded in bytes; when
// it is full they are dropped and read back from the store once the client catches up, so a
// slow client costs bounded memory and still misses nothing.
//
// A follow ends when the client cancels, at the server's shutdown (kUnavailable: read again from
// the offset after the last byte received), or after the idle limit passes without data (OK;
// the client may follow again from its offset). A read without follow ends (OK) at the end of
// the stream as it was when the read got there.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <string>

#include <grpcpp/support/server_callback.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/executor.h"
#include "kiln/api/v1/log_service.pb.h"
#include "orchestrator/logs/log_metrics.h"
#include "orchestrator/logs/log_streams.h"
#include "orchestrator/persistence/store.h"
#include "orchestrator/rpc/reactor.h"
#include "orchestrator/rpc/rpc_metrics.h"

namespace kiln::orchestrator {

class LogReaderRegistry;

struct LogReaderEnv {
  Store* store;
  LogStreams* streams;
  Executor* executor;
  Clock* clock;
  LogMetrics* metrics;
  RpcMetrics* rpc;
  LogReaderRegistry* readers;
  absl::Duration idle_limit;
  size_t queue_bytes;
};

class LogReader final : public grpc::ServerWriteReactor<kiln::api::v1::ReadLogResponse>,
                        public LogFollower {
 public:
  // `request` must be valid (see log_validation.h); `ns` is the resolved namespace. `admit` (may
  // be empty) runs on the executor before the run is read: the caller's check of the run
  // (Authorizer::CheckRun); its error ends the call.
  LogReader(const LogReaderEnv& env, std::string ns, const kiln::api::v1::ReadLogRequest& request,
            std::function<absl::Status()> admit = {});

  // Resolves the run and starts reading, on the executor. Call once, after LogReaderRegistry::Add.
  void Begin();
  // Ends the call now with `status` (a refused start, the server's shutdown).
  void End(const absl::Status& status);

  bool follow() const { return follow_; }
  // A reference for a caller that found this reader in LogReaderRegistry; false when it is going.
  bool TryRef();
  void Unref();

  void OnAppended(const LogChunk& chunk) override;
  void OnStoreChanged() override;
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  enum class Step { kNone, kWrite, kRead, kFinish };

  void Start();
  void ReadMore();
  void OnIdleAlarm();
  // Decides what to do next; the caller does it with Perform, outside the lock.
  Step NextStep() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Perform(Step step);
  void RequestFinish(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ScheduleIdleAlarm(absl::Time when) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CancelIdleAlarm();

  const LogReaderEnv env_;
  const std::string ns_;
  const kiln::api::v1::WorkflowExecution execution_;
  const std::function<absl::Status()> admit_;
  const std::string stream_;
  const bool follow_;
  const absl::Time began_;
  // Set by Start before the reader registers or reads; constant after.
  std::string run_id_;
  ReactorRefs refs_;  // Shared with the unary reactors (rpc/reactor.h).

  absl::Mutex mu_;
  // The offset of the next byte to send: every byte before it is sent or being sent.
  int64_t next_ ABSL_GUARDED_BY(mu_);
  // Chunks from the last store read, and live chunks from appends (deduplicated at send).
  std::deque<LogChunk> stored_ ABSL_GUARDED_BY(mu_);
  std::deque<LogChunk> live_ ABSL_GUARDED_BY(mu_);
  size_t live_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // True when the store holds nothing from next_ on that live_ will not bring: the last read
  // reached the end and no live chunk was dropped (nor the store changed) since it began.
  bool store_current_ ABSL_GUARDED_BY(mu_) = false;
  // Bumped by every dropped live chunk and OnStoreChanged, to tell whether a read is current.
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t read_epoch_ ABSL_GUARDED_BY(mu_) = 0;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  // Finish is wanted (with finish_status_), and whether it has been called.
  bool finish_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_called_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status finish_status_ ABSL_GUARDED_BY(mu_);
  // The follower registration, settled with OnDone so exactly one side unfollows.
  bool registered_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_data_ ABSL_GUARDED_BY(mu_);
  AlarmId alarm_ ABSL_GUARDED_BY(mu_) = 0;
  // Written only while writing_ is false; gRPC reads it while a write is in flight.
  kiln::api::v1::ReadLogResponse response_;
};

}  // namespace kiln::orchestrator
