// Future and WhenAny below the workflow context: what a long-pending future keeps.
#include <catch2/catch.hpp>

#include <memory>

#include "sdk/coroutine.h"
#include "sdk/workflow.h"

namespace kiln::sdk {
namespace {

template <typename T>
Future<T> Pending(Scheduler* scheduler) {
  auto state = std::make_shared<typename Future<T>::State>();
  state->scheduler = scheduler;
  return Future<T>(std::move(state));
}

TEST_CASE("A future pending across many WhenAny calls keeps a bounded number of callbacks") {
  Scheduler scheduler;
  Future<int> event = Pending<int>(&scheduler);
  // As a workflow loop does: the first of the long-pending event and something that resolves
  // now, every iteration; each result is dropped once read.
  for (int i = 0; i < 10'000; ++i) {
    Future<size_t> first = WhenAny(event, Future<int>::Ready(&scheduler, i));
    REQUIRE(first.ready());
    REQUIRE(first.value() == 1);
  }
  CHECK(event.pending_callbacks() <= 32);

  // A result still held is resolved by the event; dropped ones are not run.
  Future<size_t> held = WhenAny(event, Pending<int>(&scheduler));
  event.Resolve(7);
  REQUIRE(held.ready());
  CHECK(held.value() == 0);
  CHECK(event.pending_callbacks() == 0);
}

TEST_CASE("A callback with a live owner runs and one whose owner is gone does not") {
  Scheduler scheduler;
  Future<int> future = Pending<int>(&scheduler);
  auto alive = std::make_shared<int>(0);
  auto gone = std::make_shared<int>(0);
  int ran_alive = 0, ran_gone = 0, ran_plain = 0;
  future.OnReadyWhileAlive(alive, [&] { ++ran_alive; });
  future.OnReadyWhileAlive(gone, [&] { ++ran_gone; });
  future.OnReady([&] { ++ran_plain; });
  gone.reset();
  future.Resolve(1);
  CHECK(ran_alive == 1);
  CHECK(ran_gone == 0);
  CHECK(ran_plain == 1);
}

}  // namespace
}  // namespace kiln::sdk
