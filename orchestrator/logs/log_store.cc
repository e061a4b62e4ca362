#include "orchestrator/logs/log_store.h"

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "orchestrator/logs/log_layout.h"
#include "orchestrator/logs/log_limits.h"
#include "orchestrator/persistence/keys.h"

namespace kiln::orchestrator {
namespace {

absl::StatusOr<log_layout::StreamMeta> ReadMeta(Store& store, const std::string& run_id,
                                                const std::string& stream) {
  ASSIGN_OR_RETURN(auto stored, store.Get(Table::kLogs, log_layout::MetaKey(run_id, stream)));
  if (!stored.has_value()) return log_layout::StreamMeta{};
  absl::StatusOr<log_layout::StreamMeta> meta = log_layout::DecodeMeta(*stored);
  if (!meta.ok()) return Annotate(meta.status(), absl::StrCat("log stream '", stream, "'"));
  return meta;
}

}  // namespace

absl::StatusOr<AppendOutcome> AppendLogChunk(Store& store, const std::string& run_id,
                                             const std::string& stream, int64_t sequence,
                                             std::string_view data) {
  if (sequence < 0) {
    return absl::InvalidArgumentError(absl::StrCat("sequence: ", sequence, " is negative"));
  }
  if (data.size() > log_limits::kMaxChunkBytes) {
    return absl::InvalidArgumentError(absl::StrCat("data: ", data.size(),
                                                   " bytes is over the limit of ",
                                                   log_limits::kMaxChunkBytes, " per append"));
  }
  ASSIGN_OR_RETURN(log_layout::StreamMeta meta, ReadMeta(store, run_id, stream));
  if (sequence != 0 && sequence <= meta.last_sequence) {
    return AppendOutcome{
        sequence == meta.last_sequence ? meta.last_sequence_offset : meta.next_offset, false};
  }
  if (data.empty()) return AppendOutcome{meta.next_offset, false};
  const auto size = static_cast<int64_t>(data.size());
  if (meta.next_offset + size > log_limits::kMaxStreamBytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("log stream '", stream, "' holds ", meta.next_offset, " bytes: appending ",
                     size, " more would pass the limit of ", log_limits::kMaxStreamBytes,
                     " bytes (256 MiB) a stream"));
  }
  log_layout::StreamMeta next = meta;
  next.next_offset = meta.next_offset + size;
  if (sequence != 0) {
    next.last_sequence = sequence;
    next.last_sequence_offset = meta.next_offset;
  }
  WriteBatch batch;
  batch.Put(Table::kLogs, log_layout::ChunkKey(run_id, stream, meta.next_offset),
            std::string(data));
  batch.Put(Table::kLogs, log_layout::MetaKey(run_id, stream), log_layout::EncodeMeta(next));
  RETURN_IF_ERROR(store.Commit(batch));
  return AppendOutcome{meta.next_offset, true};
}

absl::StatusOr<LogPage> ReadLogChunks(Store& store, const std::string& run_id,
                                      const std::string& stream, int64_t from_offset,
                                      size_t max_chunks, size_t max_bytes) {
  if (from_offset < 0) {
    return absl::InvalidArgumentError(absl::StrCat("from_offset: ", from_offset, " is negative"));
  }
  if (max_chunks == 0) max_chunks = 1;  // 0 would mean "no limit" to Scan.
  LogPage page;
  if (from_offset >= log_limits::kMaxStreamBytes) {
    page.reached_end = true;
    return page;
  }
  const std::string prefix = log_layout::StreamPrefix(run_id, stream);
  const std::string end = log_layout::ChunksEnd(run_id, stream);
  absl::Status bad = absl::OkStatus();
  size_t bytes = 0;
  int64_t expected = from_offset;
  bool stopped = false;
  // Takes one stored chunk; false stops the scan.
  auto take = [&](std::string_view key, std::string_view value) {
    absl::StatusOr<int64_t> offset = log_layout::ChunkOffset(prefix, key);
    if (!offset.ok()) {
      bad = offset.status();
      return false;
    }
    const int64_t chunk_end = *offset + static_cast<int64_t>(value.size());
    if (value.empty() || *offset > expected || chunk_end <= expected) {
      bad = absl::DataLossError(absl::StrCat("log stream '", stream,
                                             "' has a gap or overlap at offset ", expected,
                                             " (chunk at ", *offset, ")"));
      return false;
    }
    const size_t skip = static_cast<size_t>(expected - *offset);
    page.chunks.push_back({expected, std::make_shared<const std::string>(value.substr(skip))});
    bytes += value.size() - skip;
    expected = chunk_end;
    if (page.chunks.size() >= max_chunks || bytes >= max_bytes) {
      stopped = true;
      return false;
    }
    return true;
  };

  // The chunk holding from_offset starts at or before it: the last chunk key <= its key.
  std::string scan_from = log_layout::ChunkKey(run_id, stream, from_offset);
  if (from_offset > 0) {
    std::string holder_end = log_layout::ChunkKey(run_id, stream, from_offset + 1);
    bool holds = false;
    RETURN_IF_ERROR(store.ReverseScan(
        Table::kLogs, prefix, holder_end, 1, [&](std::string_view key, std::string_view value) {
          absl::StatusOr<int64_t> offset = log_layout::ChunkOffset(prefix, key);
          if (!offset.ok()) {
            bad = offset.status();
          } else if (*offset + static_cast<int64_t>(value.size()) > from_offset) {
            holds = true;
            take(key, value);
          }
          return false;
        }));
    RETURN_IF_ERROR(bad);
    if (holds) scan_from = std::move(holder_end);
    if (stopped) return page;
  }
  size_t limit = max_chunks - page.chunks.size();
  size_t seen = 0;
  RETURN_IF_ERROR(store.Scan(Table::kLogs, scan_from, end, limit,
                             [&](std::string_view key, std::string_view value) {
                               ++seen;
                               return take(key, value);
                             }));
  RETURN_IF_ERROR(bad);
  page.reached_end = !stopped && seen < limit;
  return page;
}

absl::Status DeleteRunLogs(Store& store, const std::string& run_id) {
  const std::string prefix = log_layout::RunPrefix(run_id);
  const std::string end = keys::PrefixEnd(prefix);
  for (;;) {
    WriteBatch batch;
    RETURN_IF_ERROR(store.Scan(Table::kLogs, prefix, end, log_limits::kDeleteBatchKeys,
                               [&](std::string_view key, std::string_view) {
                                 batch.Delete(Table::kLogs, std::string(key));
                                 return true;
                               }));
    if (batch.empty()) return absl::OkStatus();
    RETURN_IF_ERROR(store.Commit(batch));
    if (batch.size() < log_limits::kDeleteBatchKeys) return absl::OkStatus();
  }
}

}  // namespace kiln::orchestrator
