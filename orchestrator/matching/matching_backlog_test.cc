// Matching and the store: overflow beyond the buffer read back in task-id order, restart over
// an existing backlog, Return, Done against what the store still holds, store read failures,
// Describe's counts, and unloading idle queues.
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "orchestrator/matching/matching.h"
#include "orchestrator/matching/matching_test_util.h"
#include "orchestrator/persistence/fault_injecting_store.h"

namespace kiln::orchestrator {
namespace {

using testing::MakeTask;
using testing::MatchingHarness;
using testing::StartedPoll;
using testing::WriteEntry;

TEST_CASE("tasks beyond the buffer are read back in task-id order", "[matching][backlog]") {
  MatchingOptions options;
  options.max_buffered_tasks_per_queue = 3;
  MatchingHarness h(options);
  for (int64_t id = 1; id <= 10; ++id) h.Add(id);

  SECTION("finishing each task as it comes") {
    std::vector<int64_t> got;
    for (int i = 0; i < 10; ++i) got.push_back(h.TakeAndFinish());
    CHECK(got == std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
  }
  SECTION("holding every task in flight") {
    // In-flight tasks still have their entries: reading the store must skip them.
    std::vector<int64_t> got;
    for (int i = 0; i < 10; ++i) {
      StartedPoll poll = h.Poll();
      REQUIRE(poll.answer->got_task());
      got.push_back(poll.answer->task_id());
    }
    CHECK(got == std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
  }
  // Nothing more: the next poll waits.
  StartedPoll last = h.Poll(absl::Seconds(5));
  CHECK_FALSE(last.answer->answered());
  h.clock().Advance(absl::Seconds(5));
  CHECK(last.answer->calls == 1);
  CHECK_FALSE(last.answer->task.has_value());
}

TEST_CASE("a fresh queue reads its backlog a buffer at a time", "[matching][backlog]") {
  MatchingOptions options;
  options.max_buffered_tasks_per_queue = 2;
  MatchingHarness h(options);
  for (int64_t id = 1; id <= 6; ++id) WriteEntry(h.store(), h.Task(id));
  // A fresh queue reads its backlog on the first poll: tasks 1..3 (2 buffered + 1 for the
  // poll), then the buffer serves the next two polls.
  std::vector<int64_t> got;
  for (int i = 0; i < 6; ++i) got.push_back(h.TakeAndFinish());
  CHECK(got == std::vector<int64_t>{1, 2, 3, 4, 5, 6});
}

TEST_CASE("after a restart every backlog task is delivered exactly once", "[matching][backlog]") {
  MatchingOptions options;
  options.max_buffered_tasks_per_queue = 4;
  MatchingHarness h(options);
  for (int64_t id = 1; id <= 9; ++id) h.Add(id);
  // Two tasks handed out but never started: their entries remain.
  StartedPoll in_flight1 = h.Poll();
  StartedPoll in_flight2 = h.Poll();
  REQUIRE(in_flight1.answer->task_id() == 1);
  REQUIRE(in_flight2.answer->task_id() == 2);

  h.Restart();
  // A task added after the restart, before any poll, is among them too.
  h.Add(10);
  std::multiset<int64_t> got;
  for (int i = 0; i < 10; ++i) got.insert(h.TakeAndFinish());
  std::multiset<int64_t> want;
  for (int64_t id = 1; id <= 10; ++id) want.insert(id);
  CHECK(got == want);
  StartedPoll empty = h.Poll(absl::Seconds(1));
  h.clock().Advance(absl::Seconds(1));
  CHECK(empty.answer->calls == 1);
  CHECK_FALSE(empty.answer->task.has_value());
}

TEST_CASE("a fresh Matching over an existing backlog reads it in order", "[matching][backlog]") {
  MatchingHarness h;
  for (int64_t id : {5, 3, 9, 1}) WriteEntry(h.store(), h.Task(id));
  WriteEntry(h.store(), h.Task(2, "another"));
  std::vector<int64_t> got;
  for (int i = 0; i < 4; ++i) got.push_back(h.TakeAndFinish());
  CHECK(got == std::vector<int64_t>{1, 3, 5, 9});
  CHECK(h.TakeAndFinish("another") == 2);
}

TEST_CASE("Return makes a task available again, first in line", "[matching][backlog]") {
  MatchingHarness h;
  h.Add(1);
  h.Add(2);
  StartedPoll first = h.Poll();
  REQUIRE(first.answer->task_id() == 1);
  h.matching().Return(*first.answer->task);
  CHECK(h.Poll().answer->task_id() == 1);
  CHECK(h.Poll().answer->task_id() == 2);

  // With a poll waiting, a returned task goes straight to it.
  StartedPoll waiting = h.Poll();
  REQUIRE_FALSE(waiting.answer->answered());
  h.matching().Return(*first.answer->task);
  CHECK(waiting.answer->task_id() == 1);
}

TEST_CASE("Return into a full buffer pushes its last task back to the store",
          "[matching][backlog]") {
  MatchingOptions options;
  options.max_buffered_tasks_per_queue = 2;
  MatchingHarness h(options);
  h.Add(1);
  StartedPoll one = h.Poll();
  REQUIRE(one.answer->task_id() == 1);
  h.Add(2);
  h.Add(3);  // The buffer is full now.
  h.matching().Return(*one.answer->task);
  std::vector<int64_t> got;
  for (int i = 0; i < 3; ++i) got.push_back(h.TakeAndFinish());
  CHECK(got == std::vector<int64_t>{1, 2, 3});
}

TEST_CASE("Done forgets a task, the store decides whether it comes back", "[matching][backlog]") {
  MatchingOptions options;
  options.max_buffered_tasks_per_queue = 1;
  MatchingHarness h(options);
  for (int64_t id = 1; id <= 3; ++id) WriteEntry(h.store(), h.Task(id));
  // The first read brings 1 (to the poll) and 2 (buffered); 3 stays in the store.
  StartedPoll first = h.Poll();
  REQUIRE(first.answer->task_id() == 1);

  SECTION("its entry deleted: never delivered again") {
    testing::DeleteEntry(h.store(), *first.answer->task);
    h.matching().Done(*first.answer->task);
    CHECK(h.TakeAndFinish() == 2);
    CHECK(h.TakeAndFinish() == 3);
    StartedPoll empty = h.Poll(absl::Seconds(1));
    CHECK_FALSE(empty.answer->answered());
  }
  SECTION("its entry still there: the next read delivers it again") {
    h.matching().Done(*first.answer->task);
    CHECK(h.TakeAndFinish() == 2);
    CHECK(h.TakeAndFinish() == 1);
    CHECK(h.TakeAndFinish() == 3);
  }
}

TEST_CASE("a late TaskAdded for a task already read, started and done is ignored",
          "[matching][backlog]") {
  MatchingHarness h;
  QueuedTask task = h.Task(1);
  WriteEntry(h.store(), task);
  // The first poll reads the entry before the history service's TaskAdded arrives.
  CHECK(h.TakeAndFinish() == 1);
  h.matching().TaskAdded(task);
  StartedPoll poll = h.Poll(absl::Seconds(1));
  CHECK_FALSE(poll.answer->answered());
}

TEST_CASE("a task id already known is not added twice", "[matching][backlog]") {
  MatchingHarness h;
  QueuedTask task = h.Add(1);
  h.matching().TaskAdded(task);
  CHECK(h.Poll().answer->task_id() == 1);
  h.matching().TaskAdded(task);  // In flight now.
  StartedPoll poll = h.Poll(absl::Seconds(1));
  CHECK_FALSE(poll.answer->answered());
}

TEST_CASE("a failed store read fails the poll and is retried by the next", "[matching][backlog]") {
  FakeClock clock;
  MemoryStore base;
  FaultInjectingStore store(base);
  Matching matching(&store, &clock, nullptr);
  WriteEntry(base, MakeTask(1, clock.Now()));

  store.FailNextReads(1);
  StartedPoll failed = testing::StartPoll(matching, clock.Now() + absl::Seconds(60));
  CHECK(failed.id.status().code() == absl::StatusCode::kUnavailable);
  CHECK_FALSE(failed.answer->answered());

  StartedPoll retried = testing::StartPoll(matching, clock.Now() + absl::Seconds(60));
  REQUIRE(retried.id.ok());
  CHECK(retried.answer->task_id() == 1);
}

// A MemoryStore whose next Scan runs `hook` once its snapshot is taken, at the first entry it
// visits: what other threads do while matching reads the store outside its lock.
class HookedStore final : public Store {
 public:
  void RunDuringNextScan(std::function<void()> hook) { hook_ = std::move(hook); }

  absl::Status Commit(const WriteBatch& batch) override { return base_.Commit(batch); }
  absl::StatusOr<std::optional<std::string>> Get(Table table, std::string_view key) override {
    return base_.Get(table, key);
  }
  absl::Status Scan(Table table, std::string_view start, std::string_view end, size_t limit,
                    const ScanVisitor& visit) override {
    std::function<void()> hook = std::move(hook_);
    hook_ = nullptr;
    return base_.Scan(table, start, end, limit, [&](std::string_view key, std::string_view value) {
      if (hook) std::exchange(hook, nullptr)();
      return visit(key, value);
    });
  }
  absl::Status ReverseScan(Table table, std::string_view start, std::string_view end, size_t limit,
                           const ScanVisitor& visit) override {
    return base_.ReverseScan(table, start, end, limit, visit);
  }
  uint64_t ApproximateSize() override { return base_.ApproximateSize(); }

 private:
  MemoryStore base_;
  std::function<void()> hook_;
};

TEST_CASE("polls arriving during a store read are served by it", "[matching][backlog]") {
  FakeClock clock;
  HookedStore store;
  MatchingOptions options;
  options.max_buffered_tasks_per_queue = 2;
  Matching matching(&store, &clock, nullptr, options);
  for (int64_t id = 1; id <= 8; ++id) WriteEntry(store, MakeTask(id, clock.Now()));

  std::vector<StartedPoll> during;
  store.RunDuringNextScan([&] {
    for (int i = 0; i < 4; ++i) {
      during.push_back(testing::StartPoll(matching, clock.Now() + absl::Seconds(60)));
    }
  });
  StartedPoll first = testing::StartPoll(matching, clock.Now() + absl::Seconds(60));
  REQUIRE(first.id.ok());
  REQUIRE(during.size() == 4);
  // The first read brought 3 (the buffer's 2 plus the one poll it knew of); with polls still
  // waiting it read again rather than leave them waiting on a non-empty store.
  std::vector<int64_t> got = {first.answer->task_id()};
  for (const StartedPoll& poll : during) {
    REQUIRE(poll.id.ok());
    got.push_back(poll.answer->task_id());
  }
  CHECK(got == std::vector<int64_t>{1, 2, 3, 4, 5});
  for (int64_t want = 6; want <= 8; ++want) {
    CHECK(testing::StartPoll(matching, clock.Now() + absl::Seconds(60)).answer->task_id() == want);
  }
}

TEST_CASE("a task dropped from a full buffer during a store read is not lost",
          "[matching][backlog]") {
  FakeClock clock;
  HookedStore store;
  MatchingOptions options;
  options.max_buffered_tasks_per_queue = 1;
  Matching matching(&store, &clock, nullptr, options);
  WriteEntry(store, MakeTask(1, clock.Now()));
  auto poll = [&] { return testing::StartPoll(matching, clock.Now() + absl::Seconds(60)); };

  // While the first poll's read runs (its snapshot holds only task 1): task 2 goes to that
  // poll, 3 fills the buffer, 4 is dropped from memory, and a second poll takes 3. The read
  // then finds room for 1 and reaches the end of its snapshot, but must not conclude that the
  // store holds nothing more: 4 is there.
  StartedPoll during;
  store.RunDuringNextScan([&] {
    for (int64_t id : {2, 3, 4}) {
      QueuedTask task = MakeTask(id, clock.Now());
      WriteEntry(store, task);
      matching.TaskAdded(task);
    }
    during = poll();
  });
  StartedPoll first = poll();
  CHECK(first.answer->task_id() == 2);
  CHECK(during.answer->task_id() == 3);
  CHECK(poll().answer->task_id() == 1);
  CHECK(poll().answer->task_id() == 4);
}

TEST_CASE("a task finished during a store read is not delivered again from its snapshot",
          "[matching][backlog]") {
  FakeClock clock;
  HookedStore store;
  Matching matching(&store, &clock, nullptr);
  QueuedTask task = MakeTask(1, clock.Now());
  WriteEntry(store, task);

  // The read's snapshot holds task 1; meanwhile TaskAdded hands it to the waiting poll, and
  // it is started (entry deleted) and done before the read merges what it found.
  StartedPoll poll;
  store.RunDuringNextScan([&] {
    matching.TaskAdded(task);
    REQUIRE(poll.answer->task_id() == 1);
    testing::DeleteEntry(store, task);
    matching.Done(task);
  });
  poll.answer = std::make_shared<testing::PollAnswer>();
  std::shared_ptr<testing::PollAnswer> answer = poll.answer;
  poll.id = matching.Poll(keys::TaskKind::kWorkflow, "default", "q", "w",
                          clock.Now() + absl::Seconds(60), [answer](std::optional<QueuedTask> t) {
                            ++answer->calls;
                            answer->task = std::move(t);
                          });
  REQUIRE(poll.id.ok());
  CHECK(answer->calls == 1);
  StartedPoll next = testing::StartPoll(matching, clock.Now() + absl::Seconds(60));
  CHECK_FALSE(next.answer->answered());
}

TEST_CASE("Describe counts the backlog and finds its oldest task", "[matching][backlog]") {
  MatchingOptions options;
  options.max_describe_scan = 4;
  MatchingHarness h(options);

  auto empty = h.matching().Describe(keys::TaskKind::kWorkflow, "default", "q");
  REQUIRE(empty.ok());
  CHECK(empty->backlog_count == 0);
  CHECK_FALSE(empty->backlog_count_capped);
  CHECK(empty->oldest_task_created == absl::InfinitePast());
  CHECK(empty->pollers.empty());

  const absl::Time start = h.clock().Now();
  for (int64_t id = 1; id <= 3; ++id) {
    h.Add(id);
    h.clock().Advance(absl::Seconds(1));
  }
  StartedPoll in_flight = h.Poll();  // Handed out, not started: still in the backlog.
  REQUIRE(in_flight.answer->task_id() == 1);
  auto three = h.matching().Describe(keys::TaskKind::kWorkflow, "default", "q");
  REQUIRE(three.ok());
  CHECK(three->backlog_count == 3);
  CHECK_FALSE(three->backlog_count_capped);
  CHECK(three->oldest_task_created == start);
  REQUIRE(three->pollers.size() == 1);
  CHECK(three->pollers[0].identity == "worker-1");

  for (int64_t id = 4; id <= 6; ++id) h.Add(id);
  auto capped = h.matching().Describe(keys::TaskKind::kWorkflow, "default", "q");
  REQUIRE(capped.ok());
  CHECK(capped->backlog_count == 4);
  CHECK(capped->backlog_count_capped);

  auto other_kind = h.matching().Describe(keys::TaskKind::kActivity, "default", "q");
  REQUIRE(other_kind.ok());
  CHECK(other_kind->backlog_count == 0);
}

TEST_CASE("an idle queue is forgotten and reads the store again on next use",
          "[matching][backlog]") {
  MatchingOptions options;
  options.idle_queue_unload = absl::Minutes(5);
  MatchingHarness h(options);
  CHECK(h.Poll(absl::ZeroDuration()).answer->calls == 1);  // Reads the empty store.

  // An entry matching was never told about: a loaded queue does not look for it...
  WriteEntry(h.store(), h.Task(1));
  StartedPoll before = h.Poll(absl::Seconds(10));
  h.clock().Advance(absl::Seconds(10));
  CHECK(before.answer->calls == 1);
  CHECK_FALSE(before.answer->task.has_value());

  // ...a forgotten one does, since it starts with "the store may hold more".
  h.clock().Advance(absl::Minutes(5));
  CHECK(h.clock().PendingAlarms() == 0);
  CHECK(h.TakeAndFinish() == 1);
}

TEST_CASE("a queue with a task in flight or a poll waiting is not forgotten",
          "[matching][backlog]") {
  MatchingOptions options;
  options.idle_queue_unload = absl::Minutes(1);
  MatchingHarness h(options);
  h.Add(1);
  StartedPoll taken = h.Poll();
  REQUIRE(taken.answer->task_id() == 1);
  StartedPoll waiting = h.Poll(absl::Minutes(10), "waited-on");
  h.clock().Advance(absl::Minutes(5));

  // Were the queue forgotten, a fresh poll would read task 1's entry again.
  StartedPoll again = h.Poll(absl::Seconds(1));
  h.clock().Advance(absl::Seconds(1));
  CHECK(again.answer->calls == 1);
  CHECK_FALSE(again.answer->task.has_value());
  CHECK_FALSE(waiting.answer->answered());
  // The waited-on queue still holds its poll: a task reaches it.
  h.Add(2, "waited-on");
  CHECK(waiting.answer->task_id() == 2);

  // Once done with, the queue unloads after the idle time and nothing is left behind.
  testing::DeleteEntry(h.store(), *taken.answer->task);
  h.matching().Done(*taken.answer->task);
  testing::DeleteEntry(h.store(), *waiting.answer->task);
  h.matching().Done(*waiting.answer->task);
  h.clock().Advance(absl::Minutes(2));
  CHECK(h.clock().PendingAlarms() == 0);
}

}  // namespace
}  // namespace kiln::orchestrator
