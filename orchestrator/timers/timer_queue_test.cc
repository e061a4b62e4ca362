#include "orchestrator/timers/timer_queue.h"

#include <vector>

#include <catch2/catch.hpp>

#include "common/proto_time.h"
#include "orchestrator/persistence/keys.h"
#include "orchestrator/persistence/memory_store.h"
#include "tests/testutil/process.h"

namespace kiln::orchestrator {
namespace {

struct Fixture {
  FakeClock clock;
  MemoryStore store;
  Executor executor{"timers", 2, 1000};
  absl::Mutex mu;
  std::vector<std::string> fired ABSL_GUARDED_BY(mu);

  // Commits a timer as a transition would, and returns its key.
  std::string Add(TimerQueue* queue, absl::Duration after, int64_t id) {
    absl::Time when = clock.Now() + after;
    kiln::internal::v1::TimerTask task;
    task.set_timer_id(std::to_string(id));
    task.set_task_id(id);
    ToProto(when, task.mutable_fire_time());
    std::string key = keys::Timer(when, id);
    WriteBatch batch;
    batch.Put(Table::kTimers, key, task.SerializeAsString());
    REQUIRE(store.Commit(batch).ok());
    if (queue != nullptr) queue->TimerAdded(key, when);
    return key;
  }

  TimerQueue::FireFn Fire() {
    return [this](const std::string& key, const kiln::internal::v1::TimerTask& task) {
      WriteBatch batch;
      batch.Delete(Table::kTimers, key);
      absl::Status status = store.Commit(batch);
      absl::MutexLock lock(&mu);
      fired.push_back(task.timer_id());
      return status;
    };
  }

  size_t Fired() {
    absl::MutexLock lock(&mu);
    return fired.size();
  }
};

TEST_CASE("Timers fire when the clock reaches them, not before") {
  Fixture f;
  TimerQueue queue(&f.store, &f.clock, &f.executor, f.Fire(), nullptr);
  REQUIRE(queue.Start().ok());
  f.Add(&queue, absl::Seconds(10), 1);
  f.Add(&queue, absl::Seconds(5), 2);
  f.clock.Advance(absl::Seconds(4));
  REQUIRE(f.Fired() == 0);
  f.clock.Advance(absl::Seconds(1));
  REQUIRE(testutil::WaitFor([&] { return f.Fired() == 1; }, absl::Seconds(10)));
  f.clock.Advance(absl::Seconds(5));
  REQUIRE(testutil::WaitFor([&] { return f.Fired() == 2; }, absl::Seconds(10)));
  absl::MutexLock lock(&f.mu);
  REQUIRE(f.fired == std::vector<std::string>{"2", "1"});
}

TEST_CASE("Timers stored before a restart fire after it, far ones stay out of memory") {
  Fixture f;
  f.Add(nullptr, absl::Seconds(1), 1);
  f.Add(nullptr, absl::Hours(1), 2);  // beyond the window: not loaded yet
  TimerQueue queue(&f.store, &f.clock, &f.executor, f.Fire(), nullptr);
  REQUIRE(queue.Start().ok());
  REQUIRE(queue.in_memory() == 1);
  f.clock.Advance(absl::Seconds(1));
  REQUIRE(testutil::WaitFor([&] { return f.Fired() == 1; }, absl::Seconds(10)));
  // The window slides forward minute by minute until the hour timer is due.
  for (int i = 0; i < 60; ++i) f.clock.Advance(absl::Minutes(1));
  REQUIRE(testutil::WaitFor([&] { return f.Fired() == 2; }, absl::Seconds(10)));
}

TEST_CASE("Past the in-memory cap, timers wait in the store and still all fire in order") {
  Fixture f;
  TimerQueueOptions options;
  options.max_in_memory = 10;
  TimerQueue queue(&f.store, &f.clock, &f.executor, f.Fire(), nullptr, options);
  REQUIRE(queue.Start().ok());
  for (int i = 0; i < 50; ++i) f.Add(&queue, absl::Seconds(1 + i), i);
  REQUIRE(queue.in_memory() <= 10);
  f.clock.Advance(absl::Seconds(60));
  // Each advance lets the queue catch up; loads happen as memory frees.
  REQUIRE(testutil::WaitFor(
      [&] {
        f.clock.Advance(absl::Milliseconds(1));
        return f.Fired() == 50;
      },
      absl::Seconds(20)));
}

TEST_CASE("A timer removed by a commit does not fire") {
  Fixture f;
  TimerQueue queue(&f.store, &f.clock, &f.executor, f.Fire(), nullptr);
  REQUIRE(queue.Start().ok());
  std::string gone = f.Add(&queue, absl::Seconds(5), 1);
  f.Add(&queue, absl::Seconds(6), 2);
  REQUIRE(queue.in_memory() == 2);
  WriteBatch remove;
  remove.Delete(Table::kTimers, gone);
  REQUIRE(f.store.Commit(remove).ok());
  queue.TimerRemoved(gone);
  CHECK(queue.in_memory() == 1);
  f.clock.Advance(absl::Seconds(10));
  REQUIRE(testutil::WaitFor([&] { return f.Fired() == 1; }, absl::Seconds(5)));
  absl::MutexLock lock(&f.mu);
  CHECK(f.fired == std::vector<std::string>{"2"});
}

TEST_CASE("A failed fire is retried") {
  Fixture f;
  std::atomic<int> calls{0};
  TimerQueue queue(
      &f.store, &f.clock, &f.executor,
      [&](const std::string& key, const kiln::internal::v1::TimerTask& task) {
        if (calls.fetch_add(1) == 0) return absl::UnavailableError("store hiccup");
        return f.Fire()(key, task);
      },
      nullptr);
  REQUIRE(queue.Start().ok());
  f.Add(&queue, absl::Seconds(1), 1);
  f.clock.Advance(absl::Seconds(1));
  REQUIRE(testutil::WaitFor([&] { return calls.load() == 1; }, absl::Seconds(10)));
  REQUIRE(testutil::WaitFor(
      [&] {
        f.clock.Advance(absl::Milliseconds(100));
        return f.Fired() == 1;
      },
      absl::Seconds(10)));
}

}  // namespace
}  // namespace kiln::orchestrator
