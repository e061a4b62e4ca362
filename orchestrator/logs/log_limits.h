// Limits of the log streams attached to workflow runs. Each is checked where data enters and
// named in the error when exceeded (kInvalidArgument for a bad request, kResourceExhausted for a
// full stream or server), so nothing grows without bound: not a stream, not a follower's queue,
// not the number of followers.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/time/time.h"

namespace kiln::orchestrator::log_limits {

// A stream name is part of every key of the stream.
inline constexpr size_t kMaxStreamNameBytes = 200;
// One AppendLog: one stored chunk, well under the server's 8 MiB message limit.
inline constexpr size_t kMaxChunkBytes = 1 << 20;  // 1 MiB
// All the bytes of one stream; appends beyond it are refused, not truncated.
inline constexpr int64_t kMaxStreamBytes = int64_t{256} << 20;  // 256 MiB

// One store read of a reader: at most this many chunks, stopping once this many bytes are read
// (a chunk is never split by the budget), so a reader holds about one read in memory.
inline constexpr size_t kReadChunks = 16;
inline constexpr size_t kReadBytes = 1 << 20;

// Live chunks a follower may hold while its client reads slowly; past it the follower drops
// them and reads them back from the store when the client catches up.
inline constexpr size_t kDefaultFollowerQueueBytes = 4 << 20;
// A follow that sent no data for this long ends (OK); the client may follow again from its
// offset. The engine cannot cheaply see a run close from here, so this is what ends follows
// of finished runs whose clients stay connected.
inline constexpr absl::Duration kDefaultFollowIdleLimit = absl::Minutes(10);
// ReadLog calls open at once (each holds up to a read and a queue in memory).
inline constexpr size_t kDefaultMaxReaders = 10'000;

// DeleteRunLogs removes a run's keys this many at a time (one synced batch each).
inline constexpr size_t kDeleteBatchKeys = 1'000;

}  // namespace kiln::orchestrator::log_limits
