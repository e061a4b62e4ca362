#include "orchestrator/history/run_cache.h"

#include <atomic>
#include <thread>

#include <catch2/catch.hpp>

#include "orchestrator/history/run_watchers.h"

namespace kiln::orchestrator {
namespace {

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

}  // namespace
}  // namespace kiln::orchestrator
