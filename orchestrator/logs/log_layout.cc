#include "orchestrator/logs/log_layout.h"

#include "absl/strings/str_cat.h"
#include "orchestrator/logs/log_limits.h"
#include "orchestrator/persistence/keys.h"

namespace kiln::orchestrator::log_layout {
namespace {

constexpr char kMetaVersion = 1;
constexpr size_t kMetaBytes = 1 + 3 * 8;
constexpr char kMetaMarker[] =
    "\xff"
    "meta";

}  // namespace

std::string RunPrefix(std::string_view run_id) {
  std::string prefix(run_id);
  prefix.push_back('\0');
  return prefix;
}

std::string StreamPrefix(std::string_view run_id, std::string_view stream) {
  std::string prefix = RunPrefix(run_id);
  prefix.append(stream);
  prefix.push_back('\0');
  return prefix;
}

std::string ChunkKey(std::string_view run_id, std::string_view stream, int64_t offset) {
  std::string key = StreamPrefix(run_id, stream);
  keys::AppendBigEndian64(&key, static_cast<uint64_t>(offset));
  return key;
}

std::string ChunksEnd(std::string_view run_id, std::string_view stream) {
  return StreamPrefix(run_id, stream) + '\xff';
}

std::string MetaKey(std::string_view run_id, std::string_view stream) {
  return StreamPrefix(run_id, stream) + kMetaMarker;
}

absl::StatusOr<int64_t> ChunkOffset(std::string_view stream_prefix, std::string_view key) {
  if (key.size() != stream_prefix.size() + 8 ||
      key.substr(0, stream_prefix.size()) != stream_prefix) {
    return absl::DataLossError("log chunk key has the wrong shape");
  }
  uint64_t offset = keys::ReadBigEndian64(key.substr(stream_prefix.size()));
  if (offset >= static_cast<uint64_t>(log_limits::kMaxStreamBytes)) {
    return absl::DataLossError(
        absl::StrCat("log chunk key names offset ", offset, ", beyond the stream limit"));
  }
  return static_cast<int64_t>(offset);
}

std::string EncodeMeta(const StreamMeta& meta) {
  std::string value(1, kMetaVersion);
  keys::AppendBigEndian64(&value, static_cast<uint64_t>(meta.next_offset));
  keys::AppendBigEndian64(&value, static_cast<uint64_t>(meta.last_sequence));
  keys::AppendBigEndian64(&value, static_cast<uint64_t>(meta.last_sequence_offset));
  return value;
}

absl::StatusOr<StreamMeta> DecodeMeta(std::string_view value) {
  if (value.size() != kMetaBytes || value[0] != kMetaVersion) {
    return absl::DataLossError(
        absl::StrCat("log stream metadata is corrupt (", value.size(), " bytes)"));
  }
  StreamMeta meta;
  meta.next_offset = static_cast<int64_t>(keys::ReadBigEndian64(value.substr(1)));
  meta.last_sequence = static_cast<int64_t>(keys::ReadBigEndian64(value.substr(9)));
  meta.last_sequence_offset = static_cast<int64_t>(keys::ReadBigEndian64(value.substr(17)));
  if (meta.next_offset < 0 || meta.next_offset > log_limits::kMaxStreamBytes ||
      meta.last_sequence < 0 || meta.last_sequence_offset < 0 ||
      meta.last_sequence_offset > meta.next_offset) {
    return absl::DataLossError("log stream metadata is inconsistent");
  }
  return meta;
}

}  // namespace kiln::orchestrator::log_layout
