// Shared by the matching tests: a fake clock, an in-memory store and a Matching over them, plus
// helpers that write backlog entries the way the history service does (entry committed first,
// then TaskAdded) and polls whose answers the test can inspect.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/proto_time.h"
#include "orchestrator/matching/matching.h"
#include "orchestrator/persistence/memory_store.h"

namespace kiln::orchestrator::testing {

// What a poll's callback received. Shared with the callback, which may outlive the test's
// interest in it.
struct PollAnswer {
  int calls = 0;
  std::optional<QueuedTask> task;

  bool answered() const { return calls > 0; }
  bool got_task() const { return calls > 0 && task.has_value(); }
  int64_t task_id() const { return task.has_value() ? task->task_id : -1; }
};

struct StartedPoll {
  absl::StatusOr<Matching::PollId> id;
  std::shared_ptr<PollAnswer> answer;
};

inline QueuedTask MakeTask(int64_t task_id, absl::Time created, std::string queue = "q",
                           keys::TaskKind kind = keys::TaskKind::kWorkflow,
                           std::string ns = "default") {
  QueuedTask task;
  task.kind = kind;
  task.ns = std::move(ns);
  task.queue = std::move(queue);
  task.task_id = task_id;
  task.record.set_namespace_(task.ns);
  task.record.set_workflow_id(absl::StrCat("wf-", task_id));
  task.record.set_run_id(absl::StrCat("run-", task_id));
  task.record.set_scheduled_event_id(2);
  task.record.set_attempt(1);
  ToProto(created, task.record.mutable_created_time());
  return task;
}

// Writes `task`'s backlog entry, as the transition that creates it would.
inline void WriteEntry(Store& store, const QueuedTask& task) {
  WriteBatch batch;
  batch.Put(Table::kTasks, task.Key(), task.record.SerializeAsString());
  REQUIRE(store.Commit(batch).ok());
}

// Deletes `task`'s backlog entry, as the transition that starts it would.
inline void DeleteEntry(Store& store, const QueuedTask& task) {
  WriteBatch batch;
  batch.Delete(Table::kTasks, task.Key());
  REQUIRE(store.Commit(batch).ok());
}

inline StartedPoll StartPoll(Matching& matching, absl::Time deadline,
                             const std::string& queue = "q",
                             const std::string& identity = "worker-1",
                             keys::TaskKind kind = keys::TaskKind::kWorkflow,
                             const std::string& ns = "default", PollOptions options = {}) {
  auto answer = std::make_shared<PollAnswer>();
  auto id = matching.Poll(
      kind, ns, queue, identity, deadline,
      [answer](std::optional<QueuedTask> task) {
        ++answer->calls;
        answer->task = std::move(task);
      },
      options);
  return {std::move(id), answer};
}

// A Matching over a FakeClock and a MemoryStore.
class MatchingHarness {
 public:
  explicit MatchingHarness(MatchingOptions options = {}, prometheus::Registry* registry = nullptr)
      : options_(options),
        matching_(std::make_unique<Matching>(&store_, &clock_, registry, options)) {}

  FakeClock& clock() { return clock_; }
  MemoryStore& store() { return store_; }
  Matching& matching() { return *matching_; }

  // A fresh Matching over the same store, as after a restart.
  void Restart() {
    matching_.reset();
    matching_ = std::make_unique<Matching>(&store_, &clock_, nullptr, options_);
  }
  void Destroy() { matching_.reset(); }

  QueuedTask Task(int64_t task_id, std::string queue = "q",
                  keys::TaskKind kind = keys::TaskKind::kWorkflow) {
    return MakeTask(task_id, clock_.Now(), std::move(queue), kind);
  }
  // Commits the entry, then tells matching: the order the history service keeps.
  QueuedTask Add(int64_t task_id, std::string queue = "q",
                 keys::TaskKind kind = keys::TaskKind::kWorkflow) {
    QueuedTask task = Task(task_id, std::move(queue), kind);
    WriteEntry(store_, task);
    matching_->TaskAdded(task);
    return task;
  }
  StartedPoll Poll(absl::Duration timeout = absl::Seconds(60), const std::string& queue = "q",
                   const std::string& identity = "worker-1",
                   keys::TaskKind kind = keys::TaskKind::kWorkflow, PollOptions options = {}) {
    return StartPoll(*matching_, clock_.Now() + timeout, queue, identity, kind, "default", options);
  }
  // An exclusive poll of `identity` on `queue`.
  StartedPoll ExclusivePoll(const std::string& identity, absl::Duration timeout = absl::Seconds(60),
                            const std::string& queue = "q",
                            keys::TaskKind kind = keys::TaskKind::kWorkflow) {
    return Poll(timeout, queue, identity, kind,
                PollOptions{.exclusive = true, .worker_instance_id = {}});
  }
  // Polls, expects an immediate task, and finishes it the way the started transition does.
  int64_t TakeAndFinish(const std::string& queue = "q") {
    StartedPoll poll = Poll(absl::Seconds(60), queue);
    REQUIRE(poll.id.ok());
    REQUIRE(poll.answer->got_task());
    DeleteEntry(store_, *poll.answer->task);
    matching_->Done(*poll.answer->task);
    return poll.answer->task_id();
  }

 private:
  // Declared before matching_: it must outlive it.
  FakeClock clock_;
  MemoryStore store_;
  MatchingOptions options_;
  std::unique_ptr<Matching> matching_;
};

}  // namespace kiln::orchestrator::testing
