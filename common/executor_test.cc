#include "common/executor.h"

#include <atomic>
#include <string>

#include <prometheus/registry.h>
#include <catch2/catch.hpp>

#include "absl/synchronization/notification.h"

namespace kiln {
namespace {

double Value(prometheus::Registry& registry, const std::string& name) {
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    if (family.name != name || family.metric.empty()) continue;
    const prometheus::ClientMetric& metric = family.metric.front();
    return family.type == prometheus::MetricType::Counter ? metric.counter.value
                                                          : metric.gauge.value;
  }
  return -1;
}

TEST_CASE("An executor's metrics show work queued, running and refused") {
  for (int fibers : {0, 2}) {
    CAPTURE(fibers);
    prometheus::Registry registry;
    absl::Notification started;
    absl::Notification release;
    std::atomic<int> ran{0};
    {
      Executor executor("test", /*threads=*/1, /*max_queued=*/1, fibers, &registry);
      CHECK(Value(registry, "kiln_executor_workers") == (fibers > 0 ? 2 : 1));
      CHECK(Value(registry, "kiln_executor_queue_limit") == 1);
      // Blocks its thread (no ParkScope), so nothing else starts.
      REQUIRE(executor.TrySubmit([&] {
        started.Notify();
        release.WaitForNotification();
        ++ran;
      }));
      REQUIRE(started.WaitForNotificationWithTimeout(absl::Seconds(10)));
      REQUIRE(executor.TrySubmit([&] { ++ran; }));
      CHECK(Value(registry, "kiln_executor_running") == 1);
      CHECK(Value(registry, "kiln_executor_queued") == 1);
      CHECK_FALSE(executor.TrySubmit([&] { ++ran; }));
      CHECK(Value(registry, "kiln_executor_refused_total") == 1);
      CHECK(Value(registry, "kiln_executor_queued") == 1);
      release.Notify();
    }  // Runs what is queued, then stops.
    CHECK(ran == 2);
    CHECK(Value(registry, "kiln_executor_running") == 0);
    CHECK(Value(registry, "kiln_executor_queued") == 0);
  }
}

}  // namespace
}  // namespace kiln
