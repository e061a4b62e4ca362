// The log store over MemoryStore: appends and reads by byte offset, the sequence rule for
// retried appends, the limits, corrupt data caught on read, run lookup and DeleteRunLogs.
#include "orchestrator/logs/log_store.h"

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "orchestrator/logs/log_layout.h"
#include "orchestrator/logs/log_limits.h"
#include "orchestrator/logs/log_test_util.h"
#include "orchestrator/logs/run_lookup.h"
#include "orchestrator/persistence/memory_store.h"

namespace kiln::orchestrator {
namespace {

using namespace std::string_literals;

// Everything from `from` on, read page by page the way a reader does.
std::string ReadAll(Store& store, const std::string& run, const std::string& stream,
                    int64_t from = 0, size_t chunks = 16, size_t bytes = 1 << 20) {
  std::string out;
  int64_t next = from;
  for (;;) {
    absl::StatusOr<LogPage> page = ReadLogChunks(store, run, stream, next, chunks, bytes);
    REQUIRE(page.ok());
    for (const LogChunk& chunk : page->chunks) {
      REQUIRE(chunk.offset == next);
      out += *chunk.data;
      next = chunk.end();
    }
    if (page->reached_end) return out;
    REQUIRE(!page->chunks.empty());
  }
}

int64_t Append(Store& store, const std::string& run, const std::string& stream, int64_t sequence,
               const std::string& data) {
  absl::StatusOr<AppendOutcome> outcome = AppendLogChunk(store, run, stream, sequence, data);
  REQUIRE(outcome.ok());
  return outcome->offset;
}

log_layout::StreamMeta Meta(Store& store, const std::string& run, const std::string& stream) {
  auto stored = store.Get(Table::kLogs, log_layout::MetaKey(run, stream));
  REQUIRE(stored.ok());
  REQUIRE(stored->has_value());
  auto meta = log_layout::DecodeMeta(**stored);
  REQUIRE(meta.ok());
  return *meta;
}

TEST_CASE("Appended chunks read back from any byte offset") {
  MemoryStore store;
  REQUIRE(Append(store, "r1", "build", 1, "hello\n") == 0);
  REQUIRE(Append(store, "r1", "build", 2, "world\n") == 6);
  REQUIRE(Append(store, "r1", "build", 3, "!") == 12);
  REQUIRE(ReadAll(store, "r1", "build") == "hello\nworld\n!");
  REQUIRE(ReadAll(store, "r1", "build", 3) == "lo\nworld\n!");  // inside the first chunk
  REQUIRE(ReadAll(store, "r1", "build", 6) == "world\n!");      // at a chunk's start
  REQUIRE(ReadAll(store, "r1", "build", 12) == "!");
  REQUIRE(ReadAll(store, "r1", "build", 13).empty());  // at the end
  REQUIRE(ReadAll(store, "r1", "build", 1000).empty());
  REQUIRE(ReadAll(store, "r1", "other").empty());                       // never written
  REQUIRE(ReadAll(store, "r1", "build", 0, 1).size() == 13);            // one chunk a page
  REQUIRE(ReadAll(store, "r1", "build", 2, 16, 1) == "llo\nworld\n!");  // one byte budget

  // Streams of a run and runs are separate, even when one name is a prefix of another.
  REQUIRE(Append(store, "r1", "buil", 0, "x") == 0);
  REQUIRE(Append(store, "r", "build", 0, "y") == 0);
  REQUIRE(ReadAll(store, "r1", "build") == "hello\nworld\n!");
  REQUIRE(ReadAll(store, "r1", "buil") == "x");
  REQUIRE(ReadAll(store, "r", "build") == "y");

  auto page = ReadLogChunks(store, "r1", "build", 0, 2, 1 << 20);
  REQUIRE(page.ok());
  REQUIRE(page->chunks.size() == 2);
  REQUIRE(!page->reached_end);
  REQUIRE(ReadLogChunks(store, "r1", "build", -1, 2, 100).status().code() ==
          absl::StatusCode::kInvalidArgument);
}

TEST_CASE("A retried append is acknowledged with its offset and written once") {
  MemoryStore store;
  REQUIRE(Append(store, "r1", "s", 10, "aaa") == 0);
  REQUIRE(Append(store, "r1", "s", 20, "bbb") == 3);
  // The last append again: its own offset, nothing written.
  auto retry = AppendLogChunk(store, "r1", "s", 20, "bbb");
  REQUIRE(retry.ok());
  REQUIRE(retry->offset == 3);
  REQUIRE(!retry->written);
  // An older one: the current end, nothing written.
  auto older = AppendLogChunk(store, "r1", "s", 10, "aaa");
  REQUIRE(older.ok());
  REQUIRE(older->offset == 6);
  REQUIRE(!older->written);
  REQUIRE(ReadAll(store, "r1", "s") == "aaabbb");
  // Sequence 0 is not deduplicated and leaves the recorded sequence alone.
  REQUIRE(Append(store, "r1", "s", 0, "c") == 6);
  REQUIRE(Append(store, "r1", "s", 0, "c") == 7);
  REQUIRE(Meta(store, "r1", "s") == log_layout::StreamMeta{8, 20, 3});
  REQUIRE(AppendLogChunk(store, "r1", "s", 20, "bbb")->offset == 3);
  // Gaps in the numbering are fine: only "greater than the last" counts.
  REQUIRE(Append(store, "r1", "s", 1000, "d") == 8);
  // Empty data writes nothing and records no sequence.
  auto empty = AppendLogChunk(store, "r1", "s", 2000, "");
  REQUIRE(empty.ok());
  REQUIRE(!empty->written);
  REQUIRE(empty->offset == 9);
  REQUIRE(Meta(store, "r1", "s").last_sequence == 1000);
  REQUIRE(ReadAll(store, "r1", "s") == "aaabbbccd");
  REQUIRE(AppendLogChunk(store, "r1", "s", -1, "x").status().code() ==
          absl::StatusCode::kInvalidArgument);
}

TEST_CASE("Chunk and stream limits are enforced with clear errors") {
  MemoryStore store;
  std::string big(log_limits::kMaxChunkBytes + 1, 'x');
  auto too_big = AppendLogChunk(store, "r1", "s", 1, big);
  REQUIRE(too_big.status().code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(std::string(too_big.status().message()).find("over the limit of 1048576") !=
          std::string::npos);
  REQUIRE(Append(store, "r1", "s", 1, std::string(log_limits::kMaxChunkBytes, 'x')) == 0);

  // A stream near its limit (its metadata says so; the bytes would cost 256 MiB of memory).
  const int64_t near = log_limits::kMaxStreamBytes - 10;
  WriteBatch batch;
  batch.Put(Table::kLogs, log_layout::MetaKey("r2", "s"),
            log_layout::EncodeMeta({near, 5, near - 1}));
  REQUIRE(store.Commit(batch).ok());
  auto full = AppendLogChunk(store, "r2", "s", 6, std::string(11, 'x'));
  REQUIRE(full.status().code() == absl::StatusCode::kResourceExhausted);
  REQUIRE(std::string(full.status().message()).find("limit of 268435456 bytes (256 MiB)") !=
          std::string::npos);
  REQUIRE(Append(store, "r2", "s", 6, std::string(10, 'x')) == near);
  REQUIRE(AppendLogChunk(store, "r2", "s", 7, "x").status().code() ==
          absl::StatusCode::kResourceExhausted);
}

TEST_CASE("Corrupt log data is reported, not served") {
  MemoryStore store;
  REQUIRE(Append(store, "r1", "s", 1, "abc") == 0);
  // A chunk missing in the middle: a gap.
  WriteBatch batch;
  batch.Put(Table::kLogs, log_layout::ChunkKey("r1", "s", 10), "late");
  REQUIRE(store.Commit(batch).ok());
  REQUIRE(ReadLogChunks(store, "r1", "s", 0, 16, 1 << 20).status().code() ==
          absl::StatusCode::kDataLoss);
  REQUIRE(ReadLogChunks(store, "r1", "s", 5, 16, 1 << 20).status().code() ==
          absl::StatusCode::kDataLoss);

  WriteBatch meta;
  meta.Put(Table::kLogs, log_layout::MetaKey("r1", "s"), "junk");
  REQUIRE(store.Commit(meta).ok());
  REQUIRE(AppendLogChunk(store, "r1", "s", 2, "d").status().code() == absl::StatusCode::kDataLoss);
  REQUIRE(log_layout::DecodeMeta(log_layout::EncodeMeta({5, 1, 6})).status().code() ==
          absl::StatusCode::kDataLoss);  // the last chunk cannot start past the end
}

TEST_CASE("DeleteRunLogs removes every stream of one run, in bounded batches") {
  MemoryStore store;
  const int chunks = static_cast<int>(log_limits::kDeleteBatchKeys) + 300;
  for (int i = 0; i < chunks; ++i) Append(store, "run-a", "big", i + 1, "x");
  Append(store, "run-a", "small", 1, "y");
  Append(store, "run-ab", "big", 1, "keep");  // a run id with run-a as its prefix
  Append(store, "run-b", "big", 1, "keep");
  REQUIRE(DeleteRunLogs(store, "run-a").ok());
  REQUIRE(ReadAll(store, "run-a", "big").empty());
  REQUIRE(ReadAll(store, "run-a", "small").empty());
  size_t left = 0;
  REQUIRE(store
              .Scan(Table::kLogs, log_layout::RunPrefix("run-a"), "run-a\x01", 0,
                    [&](std::string_view, std::string_view) {
                      ++left;
                      return true;
                    })
              .ok());
  REQUIRE(left == 0);
  REQUIRE(ReadAll(store, "run-ab", "big") == "keep");
  REQUIRE(ReadAll(store, "run-b", "big") == "keep");
  // A stream written again after the delete starts over.
  REQUIRE(Append(store, "run-a", "big", 1, "new") == 0);
  REQUIRE(DeleteRunLogs(store, "nothing-here").ok());
}

TEST_CASE("Log requests name an existing run, by id or as the workflow's current run") {
  MemoryStore store;
  REQUIRE(testing::PutRun(store, "default", "wf", "run-1").ok());
  kiln::api::v1::WorkflowExecution execution;
  execution.set_workflow_id("wf");
  REQUIRE(ResolveLogRun(store, "default", execution).value() == "run-1");
  execution.set_run_id("run-1");
  REQUIRE(ResolveLogRun(store, "default", execution).value() == "run-1");
  REQUIRE(ResolveLogRun(store, "other", execution).status().code() == absl::StatusCode::kNotFound);
  execution.set_workflow_id("another");
  auto wrong = ResolveLogRun(store, "default", execution);
  REQUIRE(wrong.status().code() == absl::StatusCode::kNotFound);
  REQUIRE(std::string(wrong.status().message()) ==
          "workflow run run-1 not found in workflow another (namespace default)");
  execution.set_run_id("run-2");
  REQUIRE(std::string(ResolveLogRun(store, "default", execution).status().message()) ==
          "workflow run run-2 not found");
  execution.set_run_id("");
  REQUIRE(std::string(ResolveLogRun(store, "default", execution).status().message()) ==
          "workflow another not found in namespace default");
}

}  // namespace
}  // namespace kiln::orchestrator
