// Matching: exclusive task queues. The lease is taken by an exclusive poll, lives while its
// holder polls and for MatchingOptions::exclusive_lease after, refuses other identities' polls
// while it lives, and shows in Describe. Threads racing for a lease are in
// matching_concurrency_test.cc.
#include <string>

#include <catch2/catch.hpp>

#include "orchestrator/matching/matching.h"
#include "orchestrator/matching/matching_test_util.h"

namespace kiln::orchestrator {
namespace {

using testing::MatchingHarness;
using testing::StartedPoll;

// The harness's FakeClock starts at 2023-11-14T22:13:20Z.
constexpr char kStartPlus10s[] = "2023-11-14T22:13:30Z";

QueueDescription DescribeQueue(MatchingHarness& h, const std::string& queue = "q",
                               keys::TaskKind kind = keys::TaskKind::kWorkflow) {
  auto description = h.matching().Describe(kind, "default", queue);
  REQUIRE(description.ok());
  return *description;
}

// `poll` was refused because `holder` holds the queue.
void CheckRefused(const StartedPoll& poll, const std::string& holder) {
  REQUIRE(poll.id.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(poll.id.status().message()),
             Catch::Contains("held exclusively by \"" + holder + "\" until "));
  CHECK_FALSE(poll.answer->answered());
}

TEST_CASE("another identity's poll is refused, naming the holder and the lease's end",
          "[matching][exclusive]") {
  MatchingHarness h;
  StartedPoll holder = h.ExclusivePoll("agent-a", absl::Seconds(60), "project/web");
  REQUIRE(holder.id.ok());
  CHECK_FALSE(holder.answer->answered());

  StartedPoll plain = h.Poll(absl::Seconds(60), "project/web", "agent-b");
  REQUIRE(plain.id.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK(plain.id.status().message() ==
        absl::StrCat("workflow task queue \"project/web\" in namespace \"default\" is held "
                     "exclusively by \"agent-a\" until ",
                     kStartPlus10s));
  CheckRefused(h.ExclusivePoll("agent-b", absl::Seconds(60), "project/web"), "agent-a");

  // The holder's tasks go to the holder.
  h.Add(1, "project/web");
  CHECK(holder.answer->task_id() == 1);
  CHECK_FALSE(plain.answer->answered());
}

TEST_CASE("a refused poll never receives a task and leaves no waiter behind",
          "[matching][exclusive]") {
  MatchingHarness h;
  StartedPoll holder = h.ExclusivePoll("agent-a");
  REQUIRE(holder.id.ok());
  const size_t alarms = h.clock().PendingAlarms();

  StartedPoll refused = h.Poll(absl::Seconds(30), "q", "agent-b");
  CheckRefused(refused, "agent-a");
  StartedPoll refused_exclusive = h.ExclusivePoll("agent-b", absl::Seconds(30));
  CheckRefused(refused_exclusive, "agent-a");
  // No deadline alarm, and no poller entry for Describe.
  CHECK(h.clock().PendingAlarms() == alarms);
  QueueDescription description = DescribeQueue(h);
  REQUIRE(description.pollers.size() == 1);
  CHECK(description.pollers[0].identity == "agent-a");

  // Were a refused poll waiting, it would be next in line for task 2.
  h.Add(1);
  h.Add(2);
  CHECK(holder.answer->task_id() == 1);
  StartedPoll again = h.ExclusivePoll("agent-a");
  CHECK(again.answer->task_id() == 2);
  h.clock().Advance(absl::Minutes(2));
  CHECK_FALSE(refused.answer->answered());
  CHECK_FALSE(refused_exclusive.answer->answered());
}

TEST_CASE("the holder's waiting poll keeps the lease past the lease duration",
          "[matching][exclusive]") {
  MatchingHarness h;
  const absl::Time start = h.clock().Now();
  StartedPoll holder = h.ExclusivePoll("agent-a", absl::Seconds(60));
  REQUIRE(holder.id.ok());

  h.clock().Advance(absl::Seconds(30));
  StartedPoll refused = h.Poll(absl::Seconds(60), "q", "agent-b");
  CheckRefused(refused, "agent-a");
  // While a poll waits, the lease lapses a lease duration after that poll ends, at the earliest.
  CHECK_THAT(std::string(refused.id.status().message()),
             Catch::EndsWith("until 2023-11-14T22:14:00Z"));
  QueueDescription description = DescribeQueue(h);
  CHECK(description.exclusive_holder == "agent-a");
  CHECK(description.exclusive_lease_expiry == start + absl::Seconds(40));

  // The poll times out at start + 60 s; the lease lives 10 s more.
  h.clock().Advance(absl::Seconds(30));
  REQUIRE(holder.answer->calls == 1);
  CHECK(DescribeQueue(h).exclusive_lease_expiry == start + absl::Seconds(70));
  h.clock().Advance(absl::Seconds(9));
  CheckRefused(h.ExclusivePoll("agent-b"), "agent-a");
  h.clock().Advance(absl::Seconds(1));
  CHECK(h.ExclusivePoll("agent-b").id.ok());
}

TEST_CASE("the lease lives until the last of the holder's waiting polls ends",
          "[matching][exclusive]") {
  MatchingHarness h;
  StartedPoll short_poll = h.ExclusivePoll("agent-a", absl::Seconds(20));
  StartedPoll long_poll = h.Poll(absl::Seconds(40), "q", "agent-a");  // Not exclusive: still its.
  REQUIRE(short_poll.id.ok());
  REQUIRE(long_poll.id.ok());

  h.clock().Advance(absl::Seconds(35));
  REQUIRE(short_poll.answer->answered());
  CheckRefused(h.Poll(absl::Seconds(1), "q", "agent-b"), "agent-a");
  h.clock().Advance(absl::Seconds(5));  // The long poll ends at 40 s.
  REQUIRE(long_poll.answer->answered());
  h.clock().Advance(absl::Seconds(9));
  CheckRefused(h.Poll(absl::Seconds(1), "q", "agent-b"), "agent-a");
  h.clock().Advance(absl::Seconds(1));
  CHECK(h.Poll(absl::Seconds(1), "q", "agent-b").id.ok());
}

TEST_CASE("once the holder stops polling and the lease lapses, another identity takes it",
          "[matching][exclusive]") {
  MatchingHarness h;
  h.Add(1);
  // Answered at once from the buffer: the holder's last poll ended now.
  StartedPoll first = h.ExclusivePoll("agent-a");
  REQUIRE(first.answer->task_id() == 1);

  h.clock().Advance(absl::Milliseconds(9999));
  CheckRefused(h.ExclusivePoll("agent-b"), "agent-a");
  h.clock().Advance(absl::Milliseconds(1));
  StartedPoll taken = h.ExclusivePoll("agent-b");
  REQUIRE(taken.id.ok());
  CHECK(DescribeQueue(h).exclusive_holder == "agent-b");

  // Now the first identity is refused, exclusive or not, and nothing reaches it.
  CheckRefused(h.ExclusivePoll("agent-a"), "agent-b");
  StartedPoll plain = h.Poll(absl::Seconds(60), "q", "agent-a");
  CheckRefused(plain, "agent-b");
  h.Add(2);
  CHECK(taken.answer->task_id() == 2);
  CHECK_FALSE(plain.answer->answered());
}

TEST_CASE("a task handed to the holder renews the lease", "[matching][exclusive]") {
  MatchingHarness h;
  StartedPoll holder = h.ExclusivePoll("agent-a", absl::Seconds(60));
  h.clock().Advance(absl::Seconds(8));
  h.Add(1);
  REQUIRE(holder.answer->task_id() == 1);
  h.clock().Advance(absl::Seconds(9));  // 17 s: 10 s after the hand-out at 8 s is 18 s.
  CheckRefused(h.Poll(absl::Seconds(1), "q", "agent-b"), "agent-a");
  h.clock().Advance(absl::Seconds(1));
  CHECK(h.Poll(absl::Seconds(1), "q", "agent-b").id.ok());
}

TEST_CASE("non-exclusive polls behave as before with no lease and are refused while one lives",
          "[matching][exclusive]") {
  MatchingHarness h;
  StartedPoll b = h.Poll(absl::Seconds(60), "q", "agent-b");
  StartedPoll c = h.Poll(absl::Seconds(60), "q", "agent-c");
  REQUIRE(b.id.ok());
  REQUIRE(c.id.ok());
  CHECK(DescribeQueue(h).exclusive_holder.empty());

  // Taking the lease ends the other identities' waiting polls, empty-handed.
  StartedPoll a = h.ExclusivePoll("agent-a");
  REQUIRE(a.id.ok());
  CHECK(b.answer->calls == 1);
  CHECK_FALSE(b.answer->task.has_value());
  CHECK(c.answer->calls == 1);
  CHECK_FALSE(c.answer->task.has_value());
  CHECK_FALSE(a.answer->answered());

  CheckRefused(h.Poll(absl::Seconds(60), "q", "agent-b"), "agent-a");
  CheckRefused(h.Poll(absl::Seconds(60), "q", "agent-c"), "agent-a");
  // The holder's own non-exclusive poll is accepted.
  StartedPoll own = h.Poll(absl::Seconds(60), "q", "agent-a");
  REQUIRE(own.id.ok());
  h.Add(1);
  h.Add(2);
  CHECK(a.answer->task_id() == 1);
  CHECK(own.answer->task_id() == 2);
}

TEST_CASE("the holder's waiting polls stay when it takes the lease", "[matching][exclusive]") {
  MatchingHarness h;
  StartedPoll plain = h.Poll(absl::Seconds(60), "q", "agent-a");
  StartedPoll exclusive = h.ExclusivePoll("agent-a", absl::Seconds(20));
  REQUIRE(exclusive.id.ok());
  CHECK_FALSE(plain.answer->answered());
  // The earlier poll counts for the lease too: it waits until 60 s.
  h.clock().Advance(absl::Seconds(50));
  REQUIRE(exclusive.answer->answered());
  CheckRefused(h.Poll(absl::Seconds(1), "q", "agent-b"), "agent-a");
  h.Add(1);
  CHECK(plain.answer->task_id() == 1);
}

TEST_CASE("a former holder's poll after the lease lapsed does not revive it",
          "[matching][exclusive]") {
  MatchingHarness h;
  REQUIRE(h.ExclusivePoll("agent-a", absl::ZeroDuration()).answer->answered());
  h.clock().Advance(absl::Seconds(10));
  CHECK(DescribeQueue(h).exclusive_holder.empty());

  StartedPoll former = h.Poll(absl::Seconds(60), "q", "agent-a");
  REQUIRE(former.id.ok());
  CHECK(DescribeQueue(h).exclusive_holder.empty());
  StartedPoll other = h.Poll(absl::Seconds(60), "q", "agent-b");
  REQUIRE(other.id.ok());
  StartedPoll taker = h.ExclusivePoll("agent-b");
  REQUIRE(taker.id.ok());
  CHECK(former.answer->calls == 1);
  CHECK_FALSE(former.answer->task.has_value());
  CHECK_FALSE(other.answer->answered());
}

TEST_CASE("Describe reports the holder and when the lease lapses", "[matching][exclusive]") {
  MatchingHarness h;
  const absl::Time start = h.clock().Now();
  QueueDescription none = DescribeQueue(h);
  CHECK(none.exclusive_holder.empty());
  CHECK(none.exclusive_lease_expiry == absl::InfinitePast());

  REQUIRE(h.ExclusivePoll("agent-a", absl::ZeroDuration()).answer->answered());
  QueueDescription held = DescribeQueue(h);
  CHECK(held.exclusive_holder == "agent-a");
  CHECK(held.exclusive_lease_expiry == start + absl::Seconds(10));

  // Any poll of the holder renews it.
  h.clock().Advance(absl::Seconds(4));
  REQUIRE(h.Poll(absl::ZeroDuration(), "q", "agent-a").answer->answered());
  held = DescribeQueue(h);
  CHECK(held.exclusive_holder == "agent-a");
  CHECK(held.exclusive_lease_expiry == start + absl::Seconds(14));

  // Another kind or queue of the same name is not held.
  CHECK(DescribeQueue(h, "q", keys::TaskKind::kActivity).exclusive_holder.empty());
  CHECK(DescribeQueue(h, "other").exclusive_holder.empty());

  h.clock().Advance(absl::Seconds(10));
  QueueDescription lapsed = DescribeQueue(h);
  CHECK(lapsed.exclusive_holder.empty());
  CHECK(lapsed.exclusive_lease_expiry == absl::InfinitePast());
}

TEST_CASE("leases are per queue: kind, namespace and name", "[matching][exclusive]") {
  MatchingHarness h;
  REQUIRE(h.ExclusivePoll("agent-a").id.ok());
  CHECK(h.Poll(absl::Seconds(60), "q", "agent-b", keys::TaskKind::kActivity).id.ok());
  CHECK(h.Poll(absl::Seconds(60), "other", "agent-b").id.ok());
  CHECK(testing::StartPoll(h.matching(), h.clock().Now() + absl::Seconds(60), "q", "agent-b",
                           keys::TaskKind::kWorkflow, "another-namespace")
            .id.ok());
  CheckRefused(h.Poll(absl::Seconds(60), "q", "agent-b"), "agent-a");
}

TEST_CASE("MatchingOptions::exclusive_lease sets the lease duration", "[matching][exclusive]") {
  MatchingOptions options;
  options.exclusive_lease = absl::Minutes(2);
  MatchingHarness h(options);
  REQUIRE(h.ExclusivePoll("agent-a", absl::ZeroDuration()).answer->answered());
  h.clock().Advance(absl::Seconds(119));
  CheckRefused(h.ExclusivePoll("agent-b"), "agent-a");
  h.clock().Advance(absl::Seconds(1));
  CHECK(h.ExclusivePoll("agent-b").id.ok());
}

TEST_CASE("the refusal rounds the lease's end up to the second", "[matching][exclusive]") {
  MatchingOptions options;
  options.exclusive_lease = absl::Milliseconds(2500);
  MatchingHarness h(options);
  REQUIRE(h.ExclusivePoll("agent-a", absl::ZeroDuration()).answer->answered());
  StartedPoll refused = h.ExclusivePoll("agent-b");
  CheckRefused(refused, "agent-a");
  // Lapses at 22:13:22.5: a retry at 22:13:23 finds it lapsed.
  CHECK_THAT(std::string(refused.id.status().message()),
             Catch::EndsWith("until 2023-11-14T22:13:23Z"));
}

TEST_CASE("an exclusive poll needs an identity", "[matching][exclusive]") {
  MatchingHarness h;
  StartedPoll anonymous = h.ExclusivePoll("");
  CHECK(anonymous.id.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_FALSE(anonymous.answer->answered());
  CHECK(DescribeQueue(h).exclusive_holder.empty());
  // A non-exclusive anonymous poll is still fine, and so is a lease taken after it.
  CHECK(h.Poll(absl::Seconds(60), "q", "").id.ok());
  REQUIRE(h.ExclusivePoll("agent-a").id.ok());
  CheckRefused(h.Poll(absl::Seconds(60), "q", ""), "agent-a");
}

TEST_CASE("a held queue is not unloaded while its lease lives", "[matching][exclusive]") {
  MatchingOptions options;
  options.idle_queue_unload = absl::Seconds(1);  // Shorter than the lease.
  MatchingHarness h(options);
  REQUIRE(h.ExclusivePoll("agent-a", absl::ZeroDuration()).answer->answered());
  h.clock().Advance(absl::Seconds(5));
  // Unloaded, the queue would have forgotten its lease.
  CheckRefused(h.ExclusivePoll("agent-b"), "agent-a");
  h.clock().Advance(absl::Seconds(5));
  CHECK(h.clock().PendingAlarms() == 0);  // Lapsed, then unloaded.
  CHECK(h.ExclusivePoll("agent-b").id.ok());
}

TEST_CASE("the lease is in memory only: after a restart the first exclusive poll takes it",
          "[matching][exclusive]") {
  MatchingHarness h;
  REQUIRE(h.ExclusivePoll("agent-a").id.ok());
  h.Restart();
  CHECK(DescribeQueue(h).exclusive_holder.empty());
  REQUIRE(h.ExclusivePoll("agent-b").id.ok());
  CheckRefused(h.ExclusivePoll("agent-a"), "agent-b");
}

}  // namespace
}  // namespace kiln::orchestrator
