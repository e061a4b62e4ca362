// Log streams in the store (Table::kLogs, laid out as log_layout.h says): appending a chunk
// with the writer's sequence number and the limits, reading chunks from a byte offset, and
// deleting a run's logs. Stateless functions over a Store: they may wait on a synced commit, so
// they run on the engine's executor, and appends to one stream must be serialised by the caller
// (LogStreams holds a lock per stream).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "orchestrator/persistence/store.h"

namespace kiln::orchestrator {

// A run of bytes of a stream, starting at `offset`. The bytes are shared, so one appended chunk
// reaches every follower without a copy each.
struct LogChunk {
  int64_t offset = 0;
  std::shared_ptr<const std::string> data;

  int64_t end() const { return offset + static_cast<int64_t>(data->size()); }
};

struct AppendOutcome {
  // Where the chunk starts (or started, for a retry); see AppendLogChunk.
  int64_t offset = 0;
  // False when nothing was written: a retry, or empty data.
  bool written = false;
};

// Appends `data` to the stream as one chunk, with the stream's metadata in the same synced
// batch. The writer's `sequence` makes retries safe:
//   - 0: no deduplication; the data is appended.
//   - above the largest sequence stored for the stream: appended, and recorded as the largest.
//   - equal to the largest stored: a retry of the last append; nothing is written and the
//     answer is the offset that chunk was written at.
//   - below it: an older retry; nothing is written and the answer is the stream's current end
//     (older offsets are not kept).
// Sequence numbers need not be consecutive, only increasing, and are per stream: one writer
// per stream. Empty data writes nothing and answers the current end. Errors: kInvalidArgument
// (negative sequence, chunk over 1 MiB), kResourceExhausted (the stream would pass 256 MiB),
// or the store's error (kUnavailable: the outcome is unknown; a retry with the same sequence
// settles it).
absl::StatusOr<AppendOutcome> AppendLogChunk(Store& store, const std::string& run_id,
                                             const std::string& stream, int64_t sequence,
                                             std::string_view data);

struct LogPage {
  // Contiguous, the first starting exactly at the requested offset (a stored chunk that holds
  // the offset is cut to start there).
  std::vector<LogChunk> chunks;
  // True when the read saw the stream's end (at the time of the read).
  bool reached_end = false;
};

// Reads up to `max_chunks` chunks from `from_offset`, stopping once `max_bytes` are read (at
// least one chunk is returned when there is data). An offset at or past the end reads nothing.
// kDataLoss when the stored chunks are not contiguous.
absl::StatusOr<LogPage> ReadLogChunks(Store& store, const std::string& run_id,
                                      const std::string& stream, int64_t from_offset,
                                      size_t max_chunks, size_t max_bytes);

// Deletes every log stream of the run, in batches of log_limits::kDeleteBatchKeys keys, so the
// work per commit is bounded however long the logs. For retention, once the run is closed:
// an append racing with the delete may leave a partial stream behind.
absl::Status DeleteRunLogs(Store& store, const std::string& run_id);

}  // namespace kiln::orchestrator
