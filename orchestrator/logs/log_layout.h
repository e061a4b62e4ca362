// How log streams are laid out in Table::kLogs.
//
//   run id NUL stream NUL <offset, 8 bytes big-endian>  ->  the chunk's bytes
//   run id NUL stream NUL 0xff "meta"                   ->  StreamMeta (EncodeMeta)
//
// Run ids and stream names hold no NUL, so the separators are unambiguous. Offsets are below
// 2^63 (a stream holds at most 256 MiB), so an offset's first byte is at most 0x7f: the meta key
// sorts after every chunk of its stream, and [StreamPrefix, ChunksEnd) holds exactly the chunks,
// in offset order. Everything of a run lies under RunPrefix, for one range delete.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace kiln::orchestrator::log_layout {

std::string RunPrefix(std::string_view run_id);
std::string StreamPrefix(std::string_view run_id, std::string_view stream);
std::string ChunkKey(std::string_view run_id, std::string_view stream, int64_t offset);
// The exclusive upper bound of the stream's chunk keys (the meta key is above it).
std::string ChunksEnd(std::string_view run_id, std::string_view stream);
std::string MetaKey(std::string_view run_id, std::string_view stream);

// The offset a chunk key names; kDataLoss when `key` is not a chunk key under `stream_prefix`.
absl::StatusOr<int64_t> ChunkOffset(std::string_view stream_prefix, std::string_view key);

// Per-stream bookkeeping, written in the same batch as every chunk.
struct StreamMeta {
  // The stream's length: the offset the next chunk gets.
  int64_t next_offset = 0;
  // The largest writer sequence number stored (0: none yet), and the offset of its chunk.
  int64_t last_sequence = 0;
  int64_t last_sequence_offset = 0;

  bool operator==(const StreamMeta&) const = default;
};

// A version byte, then the three fields as 8-byte big-endian integers. (A fixed layout rather
// than a persisted proto keeps this value independent of the engine's proto changes.)
std::string EncodeMeta(const StreamMeta& meta);
// Checks what it reads: the size, the version, and that the fields are consistent.
absl::StatusOr<StreamMeta> DecodeMeta(std::string_view value);

}  // namespace kiln::orchestrator::log_layout
