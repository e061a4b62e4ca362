// Matching under threads and the real clock: adders and pollers racing (sync matches, buffer
// overflow, store reads, deadline alarms firing as tasks arrive, cancellations), identities
// racing for an exclusive queue, and destruction while alarms fire. Nothing sleeps: the test
// waits on conditions with deadlines. Catch2 assertions are not thread-safe, so worker threads only
// count what went wrong.
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <prometheus/registry.h>
#include <catch2/catch.hpp>

#include "absl/synchronization/mutex.h"
#include "orchestrator/matching/matching.h"
#include "orchestrator/matching/matching_test_util.h"

namespace kiln::orchestrator {
namespace {

using testing::MakeTask;

const std::vector<std::string>& Queues() {
  static const auto* queues = new std::vector<std::string>{"alpha", "beta"};
  return *queues;
}

// Every task handed out, by id, as the pollers' callbacks report them.
class Deliveries {
 public:
  void Record(int64_t task_id) {
    absl::MutexLock lock(&mu_);
    ++counts_[task_id];
    ++total_;
  }
  // True once `want` deliveries are in, false at `deadline`.
  bool AwaitTotal(int64_t want, absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    auto reached = [this, want]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return total_ >= want; };
    return mu_.AwaitWithDeadline(absl::Condition(&reached), deadline);
  }
  std::map<int64_t, int> counts() {
    absl::MutexLock lock(&mu_);
    return counts_;
  }

 private:
  absl::Mutex mu_;
  std::map<int64_t, int> counts_ ABSL_GUARDED_BY(mu_);
  int64_t total_ ABSL_GUARDED_BY(mu_) = 0;
};

// One poll's answer, awaited by the thread that started it.
struct Slot {
  absl::Mutex mu;
  bool answered ABSL_GUARDED_BY(mu) = false;

  void Set() {
    absl::MutexLock lock(&mu);
    answered = true;
  }
  bool Await(absl::Time deadline) {
    absl::MutexLock lock(&mu);
    return mu.AwaitWithDeadline(absl::Condition(&answered), deadline);
  }
};

// kiln_matching_poll_results_total{kind="workflow", result=`result`}.
double PollResults(prometheus::Registry& registry, const std::string& result) {
  double value = 0;
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    if (family.name != "kiln_matching_poll_results_total") continue;
    for (const prometheus::ClientMetric& metric : family.metric) {
      int matched = 0;
      for (const prometheus::ClientMetric::Label& label : metric.label) {
        matched += (label.name == "result" && label.value == result) ||
                   (label.name == "kind" && label.value == "workflow");
      }
      if (matched == 2) value += metric.counter.value;
    }
  }
  return value;
}

TEST_CASE("threads adding and polling deliver every task exactly once", "[matching][concurrency]") {
  constexpr int kAdders = 3;
  constexpr int kPollersPerQueue = 2;
  constexpr int64_t kTasksPerAdder = 2000;
  constexpr int64_t kBacklogBeforeStart = 100;
  constexpr int64_t kTotal = kAdders * kTasksPerAdder + kBacklogBeforeStart;
  constexpr int64_t kLead = 40;

  RealClock clock;
  MemoryStore store;
  MatchingOptions options;
  options.max_buffered_tasks_per_queue = 8;  // Small: overflow and store reads happen often.
  // Ids 1..kBacklogBeforeStart are in the store before matching starts, as after a restart.
  for (int64_t id = 1; id <= kBacklogBeforeStart; ++id) {
    testing::WriteEntry(store, MakeTask(id, clock.Now(), Queues()[id % Queues().size()]));
  }
  prometheus::Registry registry;
  Matching matching(&store, &clock, &registry, options);
  Deliveries deliveries;
  std::atomic<int> errors{0};
  std::atomic<bool> stop{false};
  std::atomic<int64_t> issued{kBacklogBeforeStart};

  std::vector<std::thread> threads;
  for (int a = 0; a < kAdders; ++a) {
    threads.emplace_back([&, a] {
      for (int64_t i = 0; i < kTasksPerAdder; ++i) {
        // Keep adders at most kLead tasks ahead of the pollers, so that adding and polling
        // interleave (polls wait, tasks overflow the buffer) instead of running one after
        // the other.
        if (!deliveries.AwaitTotal(issued.fetch_add(1) + 1 - kLead,
                                   absl::Now() + absl::Seconds(60))) {
          ++errors;
          return;
        }
        int64_t id = kBacklogBeforeStart + 1 + a * kTasksPerAdder + i;
        QueuedTask task = MakeTask(id, clock.Now(), Queues()[id % Queues().size()]);
        WriteBatch batch;
        batch.Put(Table::kTasks, task.Key(), task.record.SerializeAsString());
        if (!store.Commit(batch).ok()) ++errors;
        matching.TaskAdded(std::move(task));
      }
    });
  }
  for (const std::string& queue : Queues()) {
    for (int p = 0; p < kPollersPerQueue; ++p) {
      threads.emplace_back([&, queue, p] {
        std::minstd_rand random(static_cast<unsigned>(p) * 7919U +
                                static_cast<unsigned>(queue.size()));
        for (int n = 0; !stop.load(); ++n) {
          auto slot = std::make_shared<Slot>();
          // Short deadlines so that alarms fire while tasks are being handed out.
          absl::Time deadline = clock.Now() + absl::Microseconds(random() % 3000);
          auto id = matching.Poll(keys::TaskKind::kWorkflow, "default", queue,
                                  absl::StrCat(queue, "-", p), deadline,
                                  [&, slot](std::optional<QueuedTask> task) {
                                    if (task.has_value()) {
                                      // What the started transition does: delete the entry, then
                                      // Done.
                                      WriteBatch batch;
                                      batch.Delete(Table::kTasks, task->Key());
                                      if (!store.Commit(batch).ok()) ++errors;
                                      matching.Done(*task);
                                      deliveries.Record(task->task_id);
                                    }
                                    slot->Set();
                                  });
          if (!id.ok()) {
            ++errors;
            return;
          }
          if (n % 5 == 0) matching.CancelPoll(*id);  // Races with a hand-out.
          if (!slot->Await(absl::Now() + absl::Seconds(30))) {
            ++errors;  // A poll was never answered.
            return;
          }
        }
      });
    }
  }

  bool all_in = deliveries.AwaitTotal(kTotal, absl::Now() + absl::Seconds(120));
  stop = true;
  for (std::thread& thread : threads) thread.join();

  CHECK(errors.load() == 0);
  CHECK(all_in);
  std::map<int64_t, int> counts = deliveries.counts();
  CHECK(static_cast<int64_t>(counts.size()) == kTotal);
  int duplicates = 0;
  for (const auto& [id, count] : counts) duplicates += count != 1;
  CHECK(duplicates == 0);
  CHECK(counts.begin()->first == 1);
  CHECK(counts.rbegin()->first == kTotal);
  // The race covered every way of answering a poll.
  for (const char* result : {"sync_match", "backlog", "timeout", "cancelled"}) {
    INFO(result);
    CHECK(PollResults(registry, result) > 0);
  }
  // Every entry was started and deleted: nothing is left in the backlog.
  for (const std::string& queue : Queues()) {
    auto description = matching.Describe(keys::TaskKind::kWorkflow, "default", queue);
    REQUIRE(description.ok());
    CHECK(description->backlog_count == 0);
  }
}

TEST_CASE("identities racing for an exclusive queue: once one holds it, only it gets tasks",
          "[matching][concurrency][exclusive]") {
  constexpr int kIdentities = 4;
  constexpr int kPlainPollsFirst = 20;
  constexpr int64_t kTasks = 1000;
  constexpr int64_t kLead = 40;

  RealClock clock;
  MemoryStore store;
  MatchingOptions options;
  options.max_buffered_tasks_per_queue = 8;
  options.exclusive_lease = absl::Hours(1);  // Never lapses here: the first taker keeps it.
  Matching matching(&store, &clock, nullptr, options);
  Deliveries deliveries;
  std::atomic<int> errors{0};
  std::atomic<int> refused{0};
  std::atomic<int> holder{-1};
  std::atomic<bool> stop{false};

  std::vector<std::thread> threads;
  threads.emplace_back([&] {
    for (int64_t id = 1; id <= kTasks; ++id) {
      if (!deliveries.AwaitTotal(id - kLead, absl::Now() + absl::Seconds(60))) {
        ++errors;
        return;
      }
      // Half the tasks only once the queue is held, so that some are served exclusively.
      if (id == kTasks / 2) {
        const absl::Time give_up = absl::Now() + absl::Seconds(60);
        while (holder.load() == -1 && absl::Now() < give_up) std::this_thread::yield();
      }
      QueuedTask task = MakeTask(id, clock.Now(), "held");
      testing::WriteEntry(store, task);
      matching.TaskAdded(std::move(task));
    }
  });
  for (int i = 0; i < kIdentities; ++i) {
    threads.emplace_back([&, i] {
      std::minstd_rand random(static_cast<unsigned>(i) * 7919U + 1U);
      for (int n = 0;; ++n) {
        // The holder stops when told; the others go on until refused, which they must be.
        if (stop.load() && (holder.load() == i || holder.load() == -1)) return;
        // Plain polls first, sharing the queue; then each asks for it.
        const bool exclusive = n >= kPlainPollsFirst;
        // A poll that starts once another identity holds the queue must be refused, and
        // whatever it would be handed would break exclusivity.
        const int held_by = holder.load();
        const bool must_be_refused = held_by != -1 && held_by != i;
        auto slot = std::make_shared<Slot>();
        auto id = matching.Poll(
            keys::TaskKind::kWorkflow, "default", "held", absl::StrCat("agent-", i),
            clock.Now() + absl::Microseconds(random() % 3000),
            [&, slot, must_be_refused](std::optional<QueuedTask> task) {
              if (task.has_value()) {
                if (must_be_refused) ++errors;
                WriteBatch batch;
                batch.Delete(Table::kTasks, task->Key());
                if (!store.Commit(batch).ok()) ++errors;
                matching.Done(*task);
                deliveries.Record(task->task_id);
              }
              slot->Set();
            },
            PollOptions{.exclusive = exclusive, .worker_instance_id = {}});
        if (!id.ok()) {
          if (id.status().code() != absl::StatusCode::kFailedPrecondition) ++errors;
          ++refused;
          return;  // Lost the queue.
        }
        if (must_be_refused) ++errors;
        if (exclusive) {
          int expected = -1;
          if (!holder.compare_exchange_strong(expected, i) && expected != i) ++errors;
        }
        // Taking the lease ends the others' waiting polls: every poll is answered.
        if (!slot->Await(absl::Now() + absl::Seconds(30))) {
          ++errors;
          return;
        }
      }
    });
  }

  bool all_in = deliveries.AwaitTotal(kTasks, absl::Now() + absl::Seconds(120));
  stop = true;
  for (std::thread& thread : threads) thread.join();

  CHECK(errors.load() == 0);
  CHECK(all_in);
  CHECK(refused.load() == kIdentities - 1);
  std::map<int64_t, int> counts = deliveries.counts();
  CHECK(static_cast<int64_t>(counts.size()) == kTasks);
  int duplicates = 0;
  for (const auto& [id, count] : counts) duplicates += count != 1;
  CHECK(duplicates == 0);
  auto description = matching.Describe(keys::TaskKind::kWorkflow, "default", "held");
  REQUIRE(description.ok());
  REQUIRE(holder.load() != -1);
  CHECK(description->exclusive_holder == absl::StrCat("agent-", holder.load()));
}

TEST_CASE("destroying Matching while deadline alarms fire answers every poll once",
          "[matching][concurrency]") {
  RealClock clock;
  MemoryStore store;
  const std::thread::id test_thread = std::this_thread::get_id();
  // Rounds until some deadline alarms have run on the clock's thread, which is the race this
  // test is about; bounded, and asserted below.
  constexpr int kPolls = 200;
  constexpr int kWantRoundsWithAlarms = 10;
  int rounds_with_alarms = 0;
  int round = 0;
  for (; round < 2000 && rounds_with_alarms < kWantRoundsWithAlarms; ++round) {
    auto calls = std::make_shared<std::atomic<int>>(0);
    auto on_alarm_thread = std::make_shared<std::atomic<int>>(0);
    int accepted = 0;
    {
      Matching matching(&store, &clock, nullptr);
      for (int i = 0; i < kPolls; ++i) {
        // Deadlines a few microseconds apart: alarms fire while polls are still being made
        // and while Matching is being destroyed.
        absl::Time deadline = clock.Now() + absl::Microseconds(i / 2);
        auto id = matching.Poll(keys::TaskKind::kWorkflow, "default", absl::StrCat("q", i % 7), "w",
                                deadline, [=](const std::optional<QueuedTask>&) {
                                  if (std::this_thread::get_id() != test_thread) {
                                    ++*on_alarm_thread;
                                  }
                                  ++*calls;
                                });
        if (id.ok()) ++accepted;
      }
    }
    // Destruction returned: every callback has run, exactly once.
    REQUIRE(accepted == kPolls);
    REQUIRE(calls->load() == accepted);
    if (on_alarm_thread->load() > 0) ++rounds_with_alarms;
  }
  INFO("rounds: " << round);
  CHECK(rounds_with_alarms == kWantRoundsWithAlarms);
}

}  // namespace
}  // namespace kiln::orchestrator
