#include "common/clock.h"

#include <vector>

#include <catch2/catch.hpp>

#include "absl/synchronization/notification.h"

namespace kiln {
namespace {

TEST_CASE("FakeClock runs due alarms in time order and no others") {
  FakeClock clock;
  absl::Time t0 = clock.Now();
  std::vector<int> fired;
  std::vector<absl::Time> seen;
  clock.ScheduleAlarm(t0 + absl::Seconds(3), [&] {
    fired.push_back(3);
    seen.push_back(clock.Now());
  });
  clock.ScheduleAlarm(t0 + absl::Seconds(1), [&] {
    fired.push_back(1);
    seen.push_back(clock.Now());
  });
  clock.ScheduleAlarm(t0 + absl::Seconds(10), [&] { fired.push_back(10); });

  clock.Advance(absl::Seconds(5));
  REQUIRE(fired == std::vector<int>{1, 3});
  // Each alarm saw the clock at its own time, not at the end of the advance.
  REQUIRE(seen == std::vector<absl::Time>{t0 + absl::Seconds(1), t0 + absl::Seconds(3)});
  REQUIRE(clock.Now() == t0 + absl::Seconds(5));
  REQUIRE(clock.PendingAlarms() == 1);
  REQUIRE(clock.NextAlarmTime() == t0 + absl::Seconds(10));
}

TEST_CASE("FakeClock runs alarms scheduled by alarms inside the same advance") {
  FakeClock clock;
  absl::Time t0 = clock.Now();
  std::vector<int> fired;
  clock.ScheduleAlarm(t0 + absl::Seconds(1), [&] {
    fired.push_back(1);
    clock.ScheduleAlarm(clock.Now() + absl::Seconds(1), [&] { fired.push_back(2); });
  });
  clock.Advance(absl::Seconds(2));
  REQUIRE(fired == std::vector<int>{1, 2});
}

TEST_CASE("A cancelled alarm never runs") {
  FakeClock clock;
  bool ran = false;
  AlarmId id = clock.ScheduleAlarm(clock.Now() + absl::Seconds(1), [&] { ran = true; });
  REQUIRE(clock.CancelAlarm(id));
  REQUIRE_FALSE(clock.CancelAlarm(id));
  clock.Advance(absl::Seconds(2));
  REQUIRE_FALSE(ran);
}

TEST_CASE("RealClock runs an alarm once its time comes") {
  RealClock clock;
  absl::Notification done;
  absl::Time start = clock.Now();
  absl::Time ran_at;
  clock.ScheduleAlarm(start + absl::Milliseconds(20), [&] {
    ran_at = absl::Now();
    done.Notify();
  });
  REQUIRE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  REQUIRE(ran_at >= start + absl::Milliseconds(20));

  bool cancelled_ran = false;
  AlarmId id = clock.ScheduleAlarm(clock.Now() + absl::Hours(1), [&] { cancelled_ran = true; });
  REQUIRE(clock.CancelAlarm(id));
  REQUIRE_FALSE(cancelled_ran);
}

}  // namespace
}  // namespace kiln
