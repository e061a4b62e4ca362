// Matching: handing tasks to polls (sync match, buffer), deadlines, cancellation, FIFO order,
// poller limits, shutdown, Describe's pollers and the metrics. Backlog reading from the store
// is in matching_backlog_test.cc, threads in matching_concurrency_test.cc.
#include <map>
#include <string>

#include <prometheus/registry.h>
#include <catch2/catch.hpp>

#include "orchestrator/matching/matching.h"
#include "orchestrator/matching/matching_test_util.h"

namespace kiln::orchestrator {
namespace {

using testing::MatchingHarness;
using testing::StartedPoll;

TEST_CASE("a waiting poll gets a new task handed over", "[matching]") {
  MatchingHarness h;
  StartedPoll poll = h.Poll();
  REQUIRE(poll.id.ok());
  CHECK_FALSE(poll.answer->answered());

  h.Add(7);
  CHECK(poll.answer->calls == 1);
  REQUIRE(poll.answer->got_task());
  CHECK(poll.answer->task->task_id == 7);
  CHECK(poll.answer->task->queue == "q");
  CHECK(poll.answer->task->record.run_id() == "run-7");

  // Answered: the deadline passing later does nothing more.
  h.clock().Advance(absl::Minutes(2));
  CHECK(poll.answer->calls == 1);
}

TEST_CASE("a task added with no poll waiting is answered on the next poll", "[matching]") {
  MatchingHarness h;
  h.Add(1);
  h.Add(2);
  StartedPoll first = h.Poll();
  StartedPoll second = h.Poll();
  CHECK(first.answer->task_id() == 1);
  CHECK(second.answer->task_id() == 2);
  StartedPoll third = h.Poll();
  CHECK_FALSE(third.answer->answered());
}

TEST_CASE("a poll times out at its deadline and not before", "[matching]") {
  MatchingHarness h;
  StartedPoll poll = h.Poll(absl::Seconds(10));
  REQUIRE(poll.id.ok());
  h.clock().Advance(absl::Seconds(9));
  CHECK_FALSE(poll.answer->answered());
  h.clock().Advance(absl::Milliseconds(999));
  CHECK_FALSE(poll.answer->answered());
  h.clock().Advance(absl::Milliseconds(1));
  CHECK(poll.answer->calls == 1);
  CHECK_FALSE(poll.answer->task.has_value());

  // A task added afterwards waits for the next poll, not the one that timed out.
  h.Add(1);
  CHECK(poll.answer->calls == 1);
  CHECK(h.Poll().answer->task_id() == 1);
}

TEST_CASE("a poll whose deadline has passed is answered at once", "[matching]") {
  MatchingHarness h;
  StartedPoll poll = h.Poll(absl::ZeroDuration());
  REQUIRE(poll.id.ok());
  CHECK(poll.answer->calls == 1);
  CHECK_FALSE(poll.answer->task.has_value());
  CHECK(h.clock().PendingAlarms() <= 1);  // At most the queue's unload alarm.
}

TEST_CASE("CancelPoll answers nullopt exactly once", "[matching]") {
  MatchingHarness h;
  StartedPoll poll = h.Poll(absl::Seconds(10));
  REQUIRE(poll.id.ok());
  h.matching().CancelPoll(*poll.id);
  CHECK(poll.answer->calls == 1);
  CHECK_FALSE(poll.answer->task.has_value());

  h.matching().CancelPoll(*poll.id);
  h.clock().Advance(absl::Seconds(20));
  h.Add(1);
  CHECK(poll.answer->calls == 1);
  // The task was not lost on the cancelled poll.
  CHECK(h.Poll().answer->task_id() == 1);
}

TEST_CASE("waiting polls are served first come first served", "[matching]") {
  MatchingHarness h;
  StartedPoll a = h.Poll(absl::Seconds(60), "q", "a");
  StartedPoll b = h.Poll(absl::Seconds(60), "q", "b");
  StartedPoll c = h.Poll(absl::Seconds(60), "q", "c");
  StartedPoll d = h.Poll(absl::Seconds(60), "q", "d");
  h.matching().CancelPoll(*b.id);

  h.Add(1);
  h.Add(2);
  CHECK(a.answer->task_id() == 1);
  CHECK(c.answer->task_id() == 2);
  CHECK_FALSE(d.answer->answered());
  h.Add(3);
  CHECK(d.answer->task_id() == 3);
}

TEST_CASE("queues are kept apart by kind, namespace and name", "[matching]") {
  MatchingHarness h;
  StartedPoll workflow = h.Poll(absl::Seconds(60), "q", "w", keys::TaskKind::kWorkflow);
  StartedPoll other_queue = h.Poll(absl::Seconds(60), "other", "w");
  h.Add(1, "q", keys::TaskKind::kActivity);
  CHECK_FALSE(workflow.answer->answered());
  CHECK_FALSE(other_queue.answer->answered());
  StartedPoll activity = h.Poll(absl::Seconds(60), "q", "w", keys::TaskKind::kActivity);
  CHECK(activity.answer->task_id() == 1);
  CHECK(activity.answer->task->kind == keys::TaskKind::kActivity);
}

TEST_CASE("poller limits refuse polls with kResourceExhausted", "[matching]") {
  MatchingOptions options;
  options.max_pollers_per_queue = 2;
  options.max_pollers_total = 3;
  MatchingHarness h(options);

  StartedPoll a1 = h.Poll(absl::Seconds(60), "a");
  StartedPoll a2 = h.Poll(absl::Seconds(60), "a");
  REQUIRE(a1.id.ok());
  REQUIRE(a2.id.ok());
  StartedPoll a3 = h.Poll(absl::Seconds(60), "a");
  REQUIRE(a3.id.status().code() == absl::StatusCode::kResourceExhausted);
  CHECK_THAT(std::string(a3.id.status().message()),
             Catch::Contains("\"a\"") && Catch::Contains("max_pollers_per_queue = 2"));
  CHECK_FALSE(a3.answer->answered());

  StartedPoll b1 = h.Poll(absl::Seconds(60), "b");
  REQUIRE(b1.id.ok());
  StartedPoll b2 = h.Poll(absl::Seconds(60), "b");
  REQUIRE(b2.id.status().code() == absl::StatusCode::kResourceExhausted);
  CHECK_THAT(std::string(b2.id.status().message()),
             Catch::Contains("\"b\"") && Catch::Contains("max_pollers_total = 3"));

  // A poll answered frees its place.
  h.Add(1, "a");
  CHECK(a1.answer->task_id() == 1);
  CHECK(h.Poll(absl::Seconds(60), "b").id.ok());
}

TEST_CASE("a poll answered from the buffer does not count against the limits", "[matching]") {
  MatchingOptions options;
  options.max_pollers_per_queue = 1;
  MatchingHarness h(options);
  StartedPoll waiting = h.Poll(absl::Seconds(60), "other");
  h.Add(1);
  h.Add(2);
  CHECK(h.Poll().answer->task_id() == 1);
  CHECK(h.Poll().answer->task_id() == 2);
  CHECK(h.Poll().id.ok());
  CHECK(h.Poll().id.status().code() == absl::StatusCode::kResourceExhausted);
}

TEST_CASE("Shutdown answers every waiting poll and refuses new ones", "[matching]") {
  MatchingHarness h;
  StartedPoll a = h.Poll(absl::Seconds(60), "a");
  StartedPoll b = h.Poll(absl::Seconds(60), "b");
  StartedPoll forever = h.Poll(absl::InfiniteDuration(), "c");
  h.matching().Shutdown();
  for (const StartedPoll* poll : {&a, &b, &forever}) {
    CHECK(poll->answer->calls == 1);
    CHECK_FALSE(poll->answer->task.has_value());
  }
  CHECK(h.clock().PendingAlarms() == 0);

  StartedPoll late = h.Poll();
  CHECK(late.id.status().code() == absl::StatusCode::kUnavailable);
  CHECK_FALSE(late.answer->answered());
  h.Add(1);  // Ignored, and harmless.
  h.matching().Shutdown();
  CHECK(a.answer->calls == 1);
}

TEST_CASE("destroying Matching answers waiting polls and leaves no alarm", "[matching]") {
  MatchingHarness h;
  StartedPoll a = h.Poll(absl::Seconds(60));
  h.Destroy();
  CHECK(a.answer->calls == 1);
  CHECK_FALSE(a.answer->task.has_value());
  CHECK(h.clock().PendingAlarms() == 0);
  h.clock().Advance(absl::Minutes(10));
  CHECK(a.answer->calls == 1);
}

TEST_CASE("a callback may call back into Matching", "[matching]") {
  MatchingHarness h;
  std::optional<absl::StatusOr<Matching::PollId>> second;
  auto first =
      h.matching().Poll(keys::TaskKind::kWorkflow, "default", "q", "w",
                        h.clock().Now() + absl::Seconds(60), [&](std::optional<QueuedTask> task) {
                          REQUIRE(task.has_value());
                          h.matching().Done(*task);
                          second = h.matching().Poll(keys::TaskKind::kWorkflow, "default", "q", "w",
                                                     h.clock().Now() + absl::Seconds(60),
                                                     [](const std::optional<QueuedTask>&) {});
                        });
  REQUIRE(first.ok());
  h.Add(1);
  REQUIRE(second.has_value());
  CHECK(second->ok());
}

TEST_CASE("Describe lists the pollers seen within poller_expiry", "[matching]") {
  MatchingOptions options;
  options.poller_expiry = absl::Minutes(1);
  options.idle_queue_unload = absl::Hours(1);
  MatchingHarness h(options);
  StartedPoll a = h.Poll(absl::Seconds(10), "q", "alpha");
  h.clock().Advance(absl::Seconds(30));  // alpha's poll timed out 20 s ago.
  StartedPoll b = h.Poll(absl::Minutes(5), "q", "beta");

  auto description = h.matching().Describe(keys::TaskKind::kWorkflow, "default", "q");
  REQUIRE(description.ok());
  REQUIRE(description->pollers.size() == 2);
  CHECK(description->pollers[0].identity == "alpha");
  CHECK(description->pollers[0].last_seen == h.clock().Now() - absl::Seconds(30));
  CHECK(description->pollers[0].waiting == 0);  // its poll ended
  CHECK(description->pollers[1].identity == "beta");
  CHECK(description->pollers[1].waiting == 1);

  // Past the expiry alpha is gone; beta still waits, so it is present.
  h.clock().Advance(absl::Minutes(2));
  description = h.matching().Describe(keys::TaskKind::kWorkflow, "default", "q");
  REQUIRE(description.ok());
  REQUIRE(description->pollers.size() == 1);
  CHECK(description->pollers[0].identity == "beta");
  CHECK(description->pollers[0].last_seen == h.clock().Now());

  // Two more polls of beta's wait beside the first: each counts.
  StartedPoll b2 = h.Poll(absl::Minutes(5), "q", "beta");
  StartedPoll b3 = h.Poll(absl::Minutes(5), "q", "beta");
  description = h.matching().Describe(keys::TaskKind::kWorkflow, "default", "q");
  REQUIRE(description.ok());
  REQUIRE(description->pollers.size() == 1);
  CHECK(description->pollers[0].waiting == 3);
}

TEST_CASE("Describe tells a worker stream's credits from long polls", "[matching]") {
  MatchingOptions options;
  options.poller_expiry = absl::Minutes(1);
  options.idle_queue_unload = absl::Hours(1);
  MatchingHarness h(options);
  const PollOptions stream{.exclusive = false, .worker_instance_id = {}, .stream = true};
  StartedPoll polled = h.Poll(absl::Minutes(5), "q", "poller");
  StartedPoll credit = h.Poll(absl::Minutes(5), "q", "streamer", keys::TaskKind::kWorkflow, stream);
  auto description = h.matching().Describe(keys::TaskKind::kWorkflow, "default", "q");
  REQUIRE(description.ok());
  REQUIRE(description->pollers.size() == 2);
  CHECK(description->pollers[0].identity == "poller");
  CHECK_FALSE(description->pollers[0].stream);
  CHECK(description->pollers[1].identity == "streamer");
  CHECK(description->pollers[1].stream);

  // Once its credit is taken, the stream's worker is still known as one (its last poll was).
  h.Add(1);
  h.Add(2);
  REQUIRE(polled.answer->got_task());
  REQUIRE(credit.answer->got_task());
  description = h.matching().Describe(keys::TaskKind::kWorkflow, "default", "q");
  REQUIRE(description.ok());
  REQUIRE(description->pollers.size() == 2);
  CHECK(description->pollers[1].waiting == 0);
  CHECK(description->pollers[1].stream);
}

// The value of one series: a counter's or gauge's value, a histogram's sample count.
double MetricValue(prometheus::Registry& registry, const std::string& name,
                   const std::map<std::string, std::string>& labels) {
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const prometheus::ClientMetric& metric : family.metric) {
      std::map<std::string, std::string> have;
      for (const auto& label : metric.label) have[label.name] = label.value;
      if (have != labels) continue;
      switch (family.type) {
        case prometheus::MetricType::Counter:
          return metric.counter.value;
        case prometheus::MetricType::Gauge:
          return metric.gauge.value;
        case prometheus::MetricType::Histogram:
          return static_cast<double>(metric.histogram.sample_count);
        default:
          return -1;
      }
    }
  }
  return -1;
}

TEST_CASE("metrics count poll results, waiting polls and buffered tasks", "[matching]") {
  prometheus::Registry registry;
  MatchingHarness h({}, &registry);
  auto results = [&](const char* kind, const char* result) {
    return MetricValue(registry, "kiln_matching_poll_results_total",
                       {{"kind", kind}, {"result", result}});
  };
  auto waiting = [&](const char* kind) {
    return MetricValue(registry, "kiln_matching_waiting_polls", {{"kind", kind}});
  };
  auto buffered = [&] { return MetricValue(registry, "kiln_matching_buffered_tasks", {}); };

  StartedPoll sync = h.Poll();
  CHECK(waiting("workflow") == 1);
  h.clock().Advance(absl::Seconds(1));
  h.Add(1);
  CHECK(results("workflow", "sync_match") == 1);
  CHECK(waiting("workflow") == 0);

  h.Add(2, "q", keys::TaskKind::kActivity);
  h.Add(3, "q", keys::TaskKind::kActivity);
  CHECK(buffered() == 2);
  h.Poll(absl::Seconds(60), "q", "w", keys::TaskKind::kActivity);
  CHECK(results("activity", "backlog") == 1);
  CHECK(buffered() == 1);

  h.Poll(absl::Seconds(5));
  h.clock().Advance(absl::Seconds(5));
  CHECK(results("workflow", "timeout") == 1);
  StartedPoll cancelled = h.Poll();
  h.matching().CancelPoll(*cancelled.id);
  CHECK(results("workflow", "cancelled") == 1);

  CHECK(MetricValue(registry, "kiln_matching_schedule_to_start_seconds", {{"kind", "workflow"}}) ==
        1);
  CHECK(MetricValue(registry, "kiln_matching_schedule_to_start_seconds", {{"kind", "activity"}}) ==
        1);

  // Destroying Matching takes what it held off the gauges.
  h.Poll(absl::Seconds(60), "other");
  CHECK(waiting("workflow") == 1);
  h.Destroy();
  CHECK(waiting("workflow") == 0);
  CHECK(buffered() == 0);
}

TEST_CASE("Reserve takes the first waiting poll and Fulfil hands it the started task",
          "[matching][reserve]") {
  MatchingHarness h;
  CHECK_FALSE(h.matching().Reserve(keys::TaskKind::kWorkflow, "default", "q").has_value());
  StartedPoll first = h.Poll(absl::Seconds(10), "q", "worker-1");
  StartedPoll second = h.Poll(absl::Seconds(10), "q", "worker-2");
  auto reservation = h.matching().Reserve(keys::TaskKind::kWorkflow, "default", "q");
  REQUIRE(reservation.has_value());
  CHECK(reservation->identity == "worker-1");
  // Reserved: a new task goes to the next poll, and the deadline no longer ends the first.
  h.Add(1);
  CHECK(second.answer->task_id() == 1);
  h.clock().Advance(absl::Seconds(11));
  CHECK_FALSE(first.answer->answered());

  QueuedTask task = h.Task(2);
  task.started_request_id = "req-2";
  h.matching().Fulfil(*reservation, task);
  CHECK(first.answer->calls == 1);
  REQUIRE(first.answer->got_task());
  CHECK(first.answer->task->task_id == 2);
  CHECK(first.answer->task->started_request_id == "req-2");
  // A second Fulfil or Release of the same reservation does nothing.
  h.matching().Fulfil(*reservation, h.Task(3));
  h.matching().Release(*reservation);
  CHECK(first.answer->calls == 1);
  h.matching().Done(*first.answer->task);
}

TEST_CASE("Reserve prefers the poll of the worker instance that holds the run",
          "[matching][reserve]") {
  MatchingHarness h;
  auto instance = [](const char* id) {
    return PollOptions{.exclusive = false, .worker_instance_id = id};
  };
  StartedPoll other =
      h.Poll(absl::Seconds(10), "q", "w", keys::TaskKind::kWorkflow, instance("other"));
  StartedPoll plain = h.Poll(absl::Seconds(10), "q", "w");
  StartedPoll holder =
      h.Poll(absl::Seconds(10), "q", "w", keys::TaskKind::kWorkflow, instance("holder"));
  auto reserved = h.matching().Reserve(keys::TaskKind::kWorkflow, "default", "q", "holder");
  REQUIRE(reserved.has_value());
  CHECK(reserved->worker_instance_id == "holder");
  h.matching().Release(*reserved);
  CHECK(holder.answer->answered());
  // No poll of that instance: the longest waiting one, as without a preference.
  reserved = h.matching().Reserve(keys::TaskKind::kWorkflow, "default", "q", "gone");
  REQUIRE(reserved.has_value());
  CHECK(reserved->worker_instance_id == "other");
  h.matching().Release(*reserved);
  CHECK(other.answer->answered());
  CHECK_FALSE(plain.answer->answered());
}

TEST_CASE("Release ends a reserved poll empty", "[matching][reserve]") {
  MatchingHarness h;
  StartedPoll poll = h.Poll();
  auto reservation = h.matching().Reserve(keys::TaskKind::kWorkflow, "default", "q");
  REQUIRE(reservation.has_value());
  CHECK_FALSE(poll.answer->answered());
  h.matching().Release(*reservation);
  CHECK(poll.answer->calls == 1);
  CHECK_FALSE(poll.answer->task.has_value());
}

TEST_CASE("Reserve refuses while older tasks wait or a poll is cancelled", "[matching][reserve]") {
  MatchingHarness h;
  // Another kind or queue has nobody waiting.
  StartedPoll poll = h.Poll();
  CHECK_FALSE(h.matching().Reserve(keys::TaskKind::kActivity, "default", "q").has_value());
  CHECK_FALSE(h.matching().Reserve(keys::TaskKind::kWorkflow, "default", "other").has_value());
  // A cancelled poll is no longer waiting.
  h.matching().CancelPoll(*poll.id);
  CHECK_FALSE(h.matching().Reserve(keys::TaskKind::kWorkflow, "default", "q").has_value());
  // Buffered tasks go first: no poll waits while any is buffered, so nothing to reserve.
  h.Add(1);
  h.Add(2);
  CHECK_FALSE(h.matching().Reserve(keys::TaskKind::kWorkflow, "default", "q").has_value());
}

TEST_CASE("Shutdown answers reserved polls, and Fulfil after it does nothing more",
          "[matching][reserve]") {
  MatchingHarness h;
  StartedPoll poll = h.Poll();
  auto reservation = h.matching().Reserve(keys::TaskKind::kWorkflow, "default", "q");
  REQUIRE(reservation.has_value());
  h.matching().Shutdown();
  CHECK(poll.answer->calls == 1);
  CHECK_FALSE(poll.answer->task.has_value());
  h.matching().Fulfil(*reservation, h.Task(1));
  CHECK(poll.answer->calls == 1);
  CHECK_FALSE(h.matching().Reserve(keys::TaskKind::kWorkflow, "default", "q").has_value());
}

}  // namespace
}  // namespace kiln::orchestrator
