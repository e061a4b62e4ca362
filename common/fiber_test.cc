#include "common/fiber.h"

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "absl/synchronization/notification.h"

namespace kiln::fiber {
namespace {

constexpr absl::Duration kDeadline = absl::Seconds(10);

TEST_CASE("A fiber parked on a Waiter leaves its thread to the next fiber") {
  absl::Mutex mu;
  Waiter waiter;
  absl::Notification first_done;
  std::thread::id first_thread;
  std::thread::id second_thread;
  {
    Pool pool(/*threads=*/1, /*fibers=*/4, /*max_queued=*/16);
    REQUIRE(pool.TrySubmit([&] {
      first_thread = std::this_thread::get_id();
      {
        ParkScope park;
        absl::MutexLock lock(&mu);
        waiter.Wait(&mu);
      }
      first_done.Notify();
    }));
    // Runs only if the first fiber parked: the pool has one thread.
    REQUIRE(pool.TrySubmit([&] {
      second_thread = std::this_thread::get_id();
      absl::MutexLock lock(&mu);
      waiter.Notify();
    }));
    const bool done = first_done.WaitForNotificationWithTimeout(kDeadline);
    if (!done) {
      absl::MutexLock lock(&mu);  // Rescue the blocked thread so that the pool can stop.
      if (!waiter.notified()) waiter.Notify();
    }
    CHECK(done);
  }
  CHECK(first_thread == second_thread);
}

TEST_CASE("CanPark holds on a fiber inside a ParkScope and nowhere else") {
  CHECK_FALSE(CanPark());
  {
    ParkScope park;  // On a plain thread a scope changes nothing.
    CHECK_FALSE(CanPark());
  }
  std::atomic<int> outside{-1};
  std::atomic<int> inside{-1};
  std::atomic<int> after{-1};
  {
    Pool pool(/*threads=*/1, /*fibers=*/1, /*max_queued=*/4);
    REQUIRE(pool.TrySubmit([&] {
      outside = CanPark();
      {
        ParkScope park;
        inside = CanPark();
      }
      after = CanPark();
    }));
  }
  CHECK(outside == 0);
  CHECK(inside == 1);
  CHECK(after == 0);
}

TEST_CASE("A fiber::Mutex held by a parked fiber parks the next fiber, then hands it over") {
  Mutex run_lock;
  absl::Mutex mu;
  Waiter commit;
  std::vector<std::string> order;  // guarded by mu
  absl::Notification all_done;
  std::atomic<int> done{0};
  auto note = [&](const std::string& what) {
    absl::MutexLock lock(&mu);
    order.push_back(what);
  };
  auto finished = [&] {
    if (++done == 3) all_done.Notify();
  };
  {
    Pool pool(/*threads=*/1, /*fibers=*/4, /*max_queued=*/16);
    REQUIRE(pool.TrySubmit([&] {
      MutexLock lock(&run_lock);
      note("holder locked");
      {
        ParkScope park;  // As a transition's commit does, with its run locked.
        absl::MutexLock l(&mu);
        commit.Wait(&mu);
      }
      note("holder unlocks");
      finished();
    }));
    REQUIRE(pool.TrySubmit([&] {
      note("second waits");
      MutexLock lock(&run_lock);
      note("second locked");
      finished();
    }));
    REQUIRE(pool.TrySubmit([&] {
      note("commit done");
      absl::MutexLock l(&mu);
      commit.Notify();
      finished();
    }));
    const bool completed = all_done.WaitForNotificationWithTimeout(kDeadline);
    if (!completed) {
      absl::MutexLock l(&mu);
      if (!commit.notified()) commit.Notify();
    }
    REQUIRE(completed);
  }
  absl::MutexLock lock(&mu);
  CHECK(order == std::vector<std::string>{"holder locked", "second waits", "commit done",
                                          "holder unlocks", "second locked"});
}

TEST_CASE("A fiber::Mutex excludes fibers and plain threads alike") {
  Mutex counter_lock;
  int64_t counter = 0;
  constexpr int kWorkers = 16;
  constexpr int kIncrements = 2'000;
  {
    Pool pool(/*threads=*/2, /*fibers=*/8, /*max_queued=*/64);
    for (int w = 0; w < kWorkers; ++w) {
      REQUIRE(pool.TrySubmit([&] {
        for (int i = 0; i < kIncrements; ++i) {
          MutexLock lock(&counter_lock);
          counter = counter + 1;
        }
      }));
    }
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < kIncrements; ++i) {
          MutexLock lock(&counter_lock);
          counter = counter + 1;
        }
      });
    }
    for (auto& thread : threads) thread.join();
  }  // The pool runs everything queued before it goes.
  MutexLock lock(&counter_lock);
  CHECK(counter == int64_t{kWorkers + 2} * kIncrements);
}

TEST_CASE("A fiber Pool refuses work past its bound and runs what it queued before stopping") {
  absl::Notification started;
  absl::Notification release;
  std::atomic<int> ran{0};
  {
    Pool pool(/*threads=*/1, /*fibers=*/1, /*max_queued=*/2);
    REQUIRE(pool.TrySubmit([&] {
      started.Notify();
      release.WaitForNotification();  // Blocks the only thread (no ParkScope).
      ++ran;
    }));
    REQUIRE(started.WaitForNotificationWithTimeout(kDeadline));
    CHECK(pool.TrySubmit([&] { ++ran; }));
    CHECK(pool.TrySubmit([&] { ++ran; }));
    CHECK(pool.queued() == 2);
    CHECK_FALSE(pool.TrySubmit([&] { ++ran; }));
    release.Notify();
  }
  CHECK(ran == 3);
}

}  // namespace
}  // namespace kiln::fiber
