#include "orchestrator/history/run_cache.h"

#include <atomic>
#include <thread>

#include <catch2/catch.hpp>

#include "orchestrator/history/run_watchers.h"

namespace kiln::orchestrator {
namespace {

namespace api = ::kiln::api::v1;

TEST_CASE("The run cache stays bounded and never evicts a run someone holds") {
  RunCache cache(2);
  auto held = cache.Acquire("a");
  (*held)->state.emplace().set_run_id("a");
  for (int i = 0; i < 10; ++i) cache.Acquire("r" + std::to_string(i));
  REQUIRE(cache.size() <= 3);  // the held one may exceed the bound by itself
  // "a" is still the same entry: its state survived.
  held.reset();
  auto again = cache.Acquire("a");
  REQUIRE((*again)->state.has_value());
}

std::deque<api::HistoryEvent> Events(int64_t from, int64_t to, size_t payload = 10) {
  std::deque<api::HistoryEvent> events;
  for (int64_t id = from; id <= to; ++id) {
    api::HistoryEvent event;
    event.set_event_id(id);
    event.mutable_marker_recorded_event_attributes()->set_marker_name(std::string(payload, 'm'));
    events.push_back(std::move(event));
  }
  return events;
}

TEST_CASE("The recent tail holds the events after the last completed task, contiguous") {
  RunCache cache(4);
  {
    auto run = cache.Acquire("a");
    cache.Remember(**run, Events(1, 3), /*after=*/0);
    REQUIRE(cache.Recent(**run, 1, 3).has_value());
    CHECK(cache.Recent(**run, 1, 3)->events_size() == 3);
    // The first task completed (started event 3): events up to 3 go.
    cache.Remember(**run, Events(4, 6), /*after=*/3);
    CHECK_FALSE(cache.Recent(**run, 1, 6).has_value());
    auto partial = cache.Recent(**run, 4, 6);
    REQUIRE(partial.has_value());
    CHECK(partial->events(0).event_id() == 4);
    CHECK_FALSE(cache.Recent(**run, 4, 7).has_value());  // not there yet
    // A gap (a commit this cache did not see) empties the tail rather than lie.
    cache.Remember(**run, Events(9, 9), /*after=*/3);
    CHECK_FALSE(cache.Recent(**run, 4, 6).has_value());
    CHECK(cache.recent_bytes() == 0);
    // It starts again with the next completed task.
    cache.Remember(**run, Events(10, 11), /*after=*/9);
    CHECK(cache.Recent(**run, 10, 11).has_value());
    CHECK(cache.recent_bytes() > 0);
  }
  {
    // A run's tail is bounded: past it, the tail is dropped (the store answers).
    auto big = cache.Acquire("b");
    cache.Remember(**big, Events(1, 3, RunCache::kMaxRecentBytesPerRun / 2), /*after=*/0);
    CHECK_FALSE(cache.Recent(**big, 1, 3).has_value());
    CHECK((*big)->recent_bytes == 0);
  }
  // Evicted entries give their bytes back.
  for (int i = 0; i < 10; ++i) cache.Acquire("r" + std::to_string(i));
  CHECK(cache.recent_bytes() == 0);
}

TEST_CASE("Transitions on one run are serialised by its lock") {
  RunCache cache(100);
  int counter = 0;  // guarded by the run's lock, not by an atomic
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        auto handle = cache.Acquire("run");
        ++counter;
      }
    });
  }
  for (auto& t : threads) t.join();
  REQUIRE(counter == 4000);
}

TEST_CASE("Run watchers fire once per notify and can be cancelled") {
  RunWatchers watchers(2);
  int a = 0, b = 0;
  uint64_t first = watchers.Watch("run", [&] { ++a; }).value();
  uint64_t second = watchers.Watch("run", [&] { ++b; }).value();
  REQUIRE(absl::IsResourceExhausted(watchers.Watch("other", [] {}).status()));
  REQUIRE(watchers.Cancel(second));
  REQUIRE_FALSE(watchers.Cancel(second));
  watchers.Notify("other");
  REQUIRE(a == 0);
  watchers.Notify("run");
  watchers.Notify("run");
  REQUIRE(a == 1);
  REQUIRE(b == 0);
  REQUIRE_FALSE(watchers.Cancel(first));
  REQUIRE(watchers.size() == 0);
}

TEST_CASE("Close-only run watchers sleep through transitions that leave the run open") {
  RunWatchers watchers;
  int any = 0, close = 0;
  (void)watchers.Watch("run", [&] { ++any; }).value();
  uint64_t closing = watchers
                         .Watch(
                             "run", [&] { ++close; }, /*close_only=*/true)
                         .value();
  watchers.Notify("run", /*closed=*/false);
  REQUIRE(any == 1);
  REQUIRE(close == 0);
  REQUIRE(watchers.size() == 1);
  watchers.Notify("run", /*closed=*/true);
  REQUIRE(close == 1);
  REQUIRE(watchers.size() == 0);
  REQUIRE_FALSE(watchers.Cancel(closing));
}

TEST_CASE("Close watchers get the close event that closed the run and null at shutdown") {
  RunWatchers watchers;
  std::vector<std::string> seen;
  auto record = [&](const api::HistoryEvent* close) {
    seen.push_back(close == nullptr ? "null" : api::EventType_Name(close->event_type()));
  };
  (void)watchers.WatchClose("run", record).value();
  (void)watchers.WatchClose("other", record).value();
  api::HistoryEvent completed;
  completed.set_event_type(api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED);
  watchers.Notify("run", /*closed=*/false, nullptr);
  REQUIRE(seen.empty());
  watchers.Notify("run", /*closed=*/true, &completed);
  REQUIRE(seen == std::vector<std::string>{"EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED"});
  watchers.Shutdown();
  REQUIRE(seen.size() == 2);
  REQUIRE(seen[1] == "null");
  REQUIRE(absl::IsUnavailable(watchers.WatchClose("run", record).status()));
}

TEST_CASE("Run watchers at shutdown wake every waiter and refuse new waits") {
  RunWatchers watchers;
  int woken = 0;
  // A woken waiter reads again and would wait again: that Watch must be refused.
  absl::Status again;
  (void)watchers.Watch("run", [&] {
    ++woken;
    again = watchers.Watch("run", [&] { ++woken; }).status();
  });
  watchers.Shutdown();
  REQUIRE(woken == 1);
  REQUIRE(absl::IsUnavailable(again));
  REQUIRE(watchers.size() == 0);
}

}  // namespace
}  // namespace kiln::orchestrator
