#include "orchestrator/persistence/keys.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "orchestrator/persistence/memory_store.h"

namespace kiln::orchestrator::keys {
namespace {

using namespace std::string_literals;

bool StartsWith(const std::string& key, const std::string& prefix) {
  return key.compare(0, prefix.size(), prefix) == 0;
}

// True when the scan range [prefix, PrefixEnd(prefix)) holds `key`.
bool InPrefixRange(const std::string& key, const std::string& prefix) {
  std::string end = PrefixEnd(prefix);
  return key >= prefix && (end.empty() || key < end);
}

TEST_CASE("Big-endian integers round-trip and sort in numeric order") {
  const std::vector<uint64_t> values = {
      0,           1, 255, 256, 65535, 1ull << 32, 1ull << 63, (1ull << 63) + 1, ~uint64_t{0} - 1,
      ~uint64_t{0}};
  std::vector<std::string> encoded;
  for (uint64_t value : values) {
    std::string bytes;
    AppendBigEndian64(&bytes, value);
    REQUIRE(bytes.size() == 8);
    CHECK(ReadBigEndian64(bytes) == value);
    encoded.push_back(bytes);
  }
  CHECK(std::is_sorted(encoded.begin(), encoded.end()));
  std::string one;
  AppendBigEndian64(&one, 0x0102030405060708ull);
  CHECK(one == "\x01\x02\x03\x04\x05\x06\x07\x08"s);
}

TEST_CASE("PrefixEnd is the smallest key above every key with the prefix") {
  CHECK(PrefixEnd("abc") == "abd");
  CHECK(PrefixEnd("ab\xff"s) == "ac");
  CHECK(PrefixEnd("a\xff\xff"s) == "b");
  CHECK(PrefixEnd("a\0"s) == "a\x01"s);
  CHECK(PrefixEnd("\xff\xff"s).empty());  // no upper bound
  CHECK(PrefixEnd("").empty());

  const std::string prefix = "ab\xff"s;
  for (const std::string& key : {"ab\xff"s, "ab\xff\0"s, "ab\xff\xff\xff"s}) {
    CHECK(InPrefixRange(key, prefix));
  }
  for (const std::string& key : {"ab"s, "ab\xfe\xff"s, "ac"s, "ac\0"s}) {
    CHECK_FALSE(InPrefixRange(key, prefix));
  }
}

TEST_CASE("Time keys are microseconds, clamped at the epoch") {
  absl::Time t = absl::FromUnixMicros(1'700'000'000'123'456);
  CHECK(TimeKey(t) == 1'700'000'000'123'456u);
  CHECK(FromTimeKey(TimeKey(t)) == t);
  CHECK(TimeKey(absl::FromUnixSeconds(-5)) == 0);
}

TEST_CASE("History keys sort by event id within a run and do not mix runs") {
  std::vector<std::string> events;
  for (int64_t id : std::vector<int64_t>{1, 2, 255, 256, 1000, int64_t{1} << 40}) {
    events.push_back(HistoryEvent("run-1", id));
    CHECK(HistoryEventId(events.back()) == id);
    CHECK(StartsWith(events.back(), HistoryPrefix("run-1")));
  }
  CHECK(std::is_sorted(events.begin(), events.end()));
  // Run "run-1" is a prefix of run "run-10" as a string, not as a key prefix.
  CHECK_FALSE(InPrefixRange(HistoryEvent("run-10", 1), HistoryPrefix("run-1")));
  CHECK_FALSE(InPrefixRange(HistoryEvent("run-1", 1), HistoryPrefix("run-10")));
}

TEST_CASE("Current keys separate namespace and workflow id") {
  CHECK(Current("a", "bc") != Current("ab", "c"));
  CHECK(Current("ns", "wf") == "ns\0wf"s);
}

TEST_CASE("Task keys sort by task id within a queue and queues do not overlap") {
  using enum TaskKind;
  std::vector<std::string> tasks;
  for (int64_t id : {1, 2, 300, 70000}) {
    tasks.push_back(Task(kWorkflow, "ns", "q", id));
    CHECK(TaskIdOf(tasks.back()) == id);
  }
  CHECK(std::is_sorted(tasks.begin(), tasks.end()));

  // Queue "ab"'s range does not cover queue "a"'s tasks, nor the reverse; names hold no NUL,
  // so "a\0b" cannot exist to collide.
  CHECK_FALSE(InPrefixRange(Task(kWorkflow, "ns", "a", 1), TaskQueuePrefix(kWorkflow, "ns", "ab")));
  CHECK_FALSE(InPrefixRange(Task(kWorkflow, "ns", "ab", 1), TaskQueuePrefix(kWorkflow, "ns", "a")));
  CHECK(InPrefixRange(Task(kWorkflow, "ns", "a", 1), TaskQueuePrefix(kWorkflow, "ns", "a")));
  // Namespace and queue boundaries, and the kind, all separate.
  CHECK(TaskQueuePrefix(kWorkflow, "a", "bc") != TaskQueuePrefix(kWorkflow, "ab", "c"));
  CHECK_FALSE(InPrefixRange(Task(kActivity, "ns", "q", 1), TaskQueuePrefix(kWorkflow, "ns", "q")));
}

TEST_CASE("A prefix scan over a store returns exactly one queue's tasks") {
  using enum TaskKind;
  MemoryStore store;
  WriteBatch batch;
  for (const char* queue : {"a", "ab", "b", "a-b"}) {
    for (int64_t id : {3, 1, 2}) batch.Put(Table::kTasks, Task(kWorkflow, "ns", queue, id), queue);
  }
  batch.Put(Table::kTasks, Task(kActivity, "ns", "a", 1), "activity");
  batch.Put(Table::kTasks, Task(kWorkflow, "ns2", "a", 1), "other namespace");
  REQUIRE(store.Commit(batch).ok());

  std::string prefix = TaskQueuePrefix(kWorkflow, "ns", "a");
  std::vector<int64_t> ids;
  REQUIRE(store
              .Scan(Table::kTasks, prefix, PrefixEnd(prefix), 0,
                    [&](std::string_view key, std::string_view value) {
                      CHECK(value == "a");
                      ids.push_back(TaskIdOf(key));
                      return true;
                    })
              .ok());
  CHECK(ids == std::vector<int64_t>{1, 2, 3});
}

TEST_CASE("Timer keys sort by fire time, then task id") {
  absl::Time t0 = absl::FromUnixSeconds(1'700'000'000);
  std::vector<std::string> timers = {Timer(t0, 5), Timer(t0, 6),
                                     Timer(t0 + absl::Microseconds(1), 1),
                                     Timer(t0 + absl::Hours(24 * 365 * 50), 0)};
  CHECK(std::is_sorted(timers.begin(), timers.end()));
  CHECK(TimerFireTime(timers[2]) == t0 + absl::Microseconds(1));
  CHECK(Timer(absl::FromUnixSeconds(-1), 1) < Timer(t0, 1));  // clamped, still ordered
}

TEST_CASE("Visibility keys put the newest run first within a namespace") {
  absl::Time t0 = absl::FromUnixSeconds(1'700'000'000);
  std::string older = Visibility("ns", t0, "run-old");
  std::string newer = Visibility("ns", t0 + absl::Seconds(1), "run-new");
  std::string newest = Visibility("ns", t0 + absl::Hours(1), "run-newest");
  CHECK(newest < newer);
  CHECK(newer < older);
  // Same start time: run id breaks the tie.
  CHECK(Visibility("ns", t0, "a") < Visibility("ns", t0, "b"));
  for (const std::string& key : {older, newer, newest}) {
    CHECK(InPrefixRange(key, VisibilityPrefix("ns")));
    CHECK_FALSE(InPrefixRange(key, VisibilityPrefix("n")));
    CHECK_FALSE(InPrefixRange(key, VisibilityPrefix("ns2")));
  }
  CHECK_FALSE(InPrefixRange(Visibility("ns2", t0, "r"), VisibilityPrefix("ns")));
}

}  // namespace
}  // namespace kiln::orchestrator::keys
