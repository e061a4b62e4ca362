// A commit held for its workflow task's answer (EngineOptions::hold_for_answer): when the
// answer comes in time, one write commits both transitions; when it does not, the commit goes
// alone and the answer after it; a failed write fails both.
#include <algorithm>
#include <atomic>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/ids.h"
#include "orchestrator/history/engine_harness.h"
#include "orchestrator/history/engine_listener.h"
#include "orchestrator/history/history_engine.h"
#include "orchestrator/persistence/fault_injecting_store.h"
#include "orchestrator/persistence/memory_store.h"

namespace kiln::orchestrator {
namespace {

using testing::EngineHarness;
using testing::Text;

// What the store and the worker saw, in order (written from several threads).
class Log {
 public:
  void Add(std::string line) {
    absl::MutexLock lock(&mu_);
    lines_.push_back(std::move(line));
  }
  std::vector<std::string> lines() {
    absl::MutexLock lock(&mu_);
    return lines_;
  }
  void Clear() {
    absl::MutexLock lock(&mu_);
    lines_.clear();
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> lines_ ABSL_GUARDED_BY(mu_);
};

// Plays matching with a worker always polling: each task handed out is answered, on a thread of
// its own as a worker in another process would, by `answer` (when set).
class AnsweringWorker final : public EngineListener {
 public:
  using Answer = std::function<void(const QueuedTask&)>;
  explicit AnsweringWorker(Log* log) : log_(log) {}
  ~AnsweringWorker() override { Join(); }

  void TaskAdded(QueuedTask task) override {}
  void TimerAdded(Table table, const std::string& key, absl::Time) override {
    absl::MutexLock lock(&mu_);
    if (table == Table::kTimers) timers_.push_back(key);
  }
  void RunChanged(const std::string&, bool, const api::HistoryEvent*) override {}
  std::optional<TaskReservation> ReservePoller(const QueuedTask& task) override {
    return TaskReservation{.poll_id = ++next_poll_,
                           .identity = "worker",
                           .worker_instance_id = "worker-1",
                           .kind = task.kind,
                           .ns = task.ns,
                           .queue = task.queue};
  }
  void FulfilReservation(const TaskReservation& reservation, QueuedTask task) override {
    log_->Add(task.kind == keys::TaskKind::kWorkflow ? "workflow task" : "activity task");
    absl::MutexLock lock(&mu_);
    handed.push_back(task);
    if (answer) threads_.emplace_back([this, task] { answer(task); });
  }
  void ReleaseReservation(const TaskReservation& reservation) override {}
  // Joins the answering threads, those they started included.
  void Join() {
    for (;;) {
      std::vector<std::thread> threads;
      {
        absl::MutexLock lock(&mu_);
        threads.swap(threads_);
      }
      if (threads.empty()) return;
      for (std::thread& t : threads) t.join();
    }
  }
  QueuedTask Handed(size_t i) {
    absl::MutexLock lock(&mu_);
    return handed.at(i);
  }
  std::vector<std::string> Timers() {
    absl::MutexLock lock(&mu_);
    return timers_;
  }
  QueuedTask LastHanded() {
    absl::MutexLock lock(&mu_);
    return handed.back();
  }

  // Set before the tasks it answers are handed out.
  Answer answer;

 private:
  absl::Mutex mu_;
  Log* log_;
  std::vector<QueuedTask> handed ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> timers_ ABSL_GUARDED_BY(mu_);  // keys, as added
  uint64_t next_poll_ = 0;
};

struct Engine {
  explicit Engine(absl::Duration hold) {
    store.SetCommitFaultPolicy([this](const WriteBatch& batch) {
      log.Add("commit");
      return std::optional<FaultInjectingStore::CommitFault>();
    });
    EngineOptions options;
    options.hold_for_answer = hold;
    engine = HistoryEngine::Create(&store, &clock, &ids, &worker, options).value();
    log.Clear();  // The task id allocator's first block.
  }
  ~Engine() { worker.Join(); }
  absl::StatusOr<std::string> Start(const std::string& id) {
    api::StartWorkflowExecutionRequest request;
    request.set_workflow_id(id);
    request.mutable_workflow_type()->set_name("wf");
    request.mutable_task_queue()->set_name("q");
    auto started = engine->StartWorkflowExecution(request);
    if (!started.ok()) return started.status();
    return started->run_id();
  }
  absl::StatusOr<api::RespondWorkflowTaskCompletedResponse> Complete(const QueuedTask& task,
                                                                     api::Command command) {
    REQUIRE(task.answer != nullptr);
    api::RespondWorkflowTaskCompletedRequest request;
    request.set_task_token(task.answer->task_token());
    request.set_sticky_worker("worker-1");
    *request.add_commands() = std::move(command);
    return engine->RespondWorkflowTaskCompleted(request);
  }
  absl::Status CompleteActivity(const QueuedTask& task) {
    REQUIRE(task.activity_answer != nullptr);
    api::RespondActivityTaskCompletedRequest request;
    request.set_task_token(task.activity_answer->task_token());
    *request.mutable_result() = Text("\"done\"");
    return engine->RespondActivityTaskCompleted(request).status();
  }
  std::vector<api::EventType> History(const std::string& run_id) {
    api::GetWorkflowExecutionHistoryRequest read;
    read.mutable_execution()->set_run_id(run_id);
    const HistoryRead history = engine->ReadHistory(read).value();
    std::vector<api::EventType> types;
    for (const auto& event : history.response.history().events()) {
      types.push_back(event.event_type());
    }
    return types;
  }

  Log log;
  MemoryStore base;
  FaultInjectingStore store{base};
  FakeClock clock;
  RandomIdGenerator ids{12};
  AnsweringWorker worker{&log};
  std::unique_ptr<HistoryEngine> engine;
};

// The answers of a one-activity workflow's tasks, as its workers would give them.
struct Answers {
  absl::Mutex mu;
  std::vector<absl::Status> workflow ABSL_GUARDED_BY(mu);
  std::vector<absl::Status> activity ABSL_GUARDED_BY(mu);
};

void AnswerOneActivityWorkflow(Engine& e, Answers& answers) {
  e.worker.answer = [&e, &answers](const QueuedTask& task) {
    if (task.kind == keys::TaskKind::kActivity) {
      absl::Status done = e.CompleteActivity(task);
      absl::MutexLock lock(&answers.mu);
      answers.activity.push_back(done);
      return;
    }
    // The first task schedules the activity, the second (after it) completes the workflow.
    const bool first = task.record.scheduled_event_id() == 2;
    auto done =
        e.Complete(task, first ? EngineHarness::ScheduleActivity("a1", "act", absl::Seconds(10))
                               : EngineHarness::CompleteWorkflow("\"ok\""));
    absl::MutexLock lock(&answers.mu);
    answers.workflow.push_back(done.status());
  };
}

TEST_CASE("A commit held for its workflow task's answer commits both in one write") {
  // A long hold: the answer always comes in time here.
  Engine e(absl::Seconds(30));
  Answers answers;
  AnswerOneActivityWorkflow(e, answers);
  const absl::StatusOr<std::string> run = e.Start("held");
  REQUIRE(run.ok());
  // The start returned once its commit, with the first task's answer, landed: the activity went
  // out after it. The activity's answer holds its commit for the second task's answer, which
  // closes the run.
  e.worker.Join();
  CHECK(e.log.lines() == std::vector<std::string>{"workflow task", "commit", "activity task",
                                                  "workflow task", "commit"});
  CHECK(e.engine->holds_joined() == 2);
  CHECK(e.engine->holds_missed() == 0);
  {
    absl::MutexLock lock(&answers.mu);
    CHECK(answers.workflow == std::vector<absl::Status>{absl::OkStatus(), absl::OkStatus()});
    CHECK(answers.activity == std::vector<absl::Status>{absl::OkStatus()});
  }
  CHECK(e.History(*run) == std::vector<api::EventType>{
                               api::EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
                               api::EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
                               api::EVENT_TYPE_WORKFLOW_TASK_STARTED,
                               api::EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
                               api::EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
                               api::EVENT_TYPE_ACTIVITY_TASK_STARTED,
                               api::EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
                               api::EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
                               api::EVENT_TYPE_WORKFLOW_TASK_STARTED,
                               api::EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
                               api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
                           });
}

TEST_CASE("A fired timer's commit is held for the workflow task it schedules") {
  Engine e(absl::Seconds(30));
  std::atomic<int> answered{0};
  e.worker.answer = [&](const QueuedTask& task) {
    const bool first = task.record.scheduled_event_id() == 2;
    auto done = e.Complete(task, first ? EngineHarness::StartTimer("t", absl::Seconds(5))
                                       : EngineHarness::CompleteWorkflow("\"ok\""));
    if (done.ok()) ++answered;
  };
  const absl::StatusOr<std::string> run = e.Start("timer");
  REQUIRE(run.ok());
  e.worker.Join();
  REQUIRE(answered == 1);
  // The user timer's record, as the timer queue would find it due.
  std::optional<std::pair<std::string, internal::TimerTask>> timer;
  for (const std::string& key : e.worker.Timers()) {
    auto stored = e.base.Get(Table::kTimers, key);
    if (!stored.ok() || !stored->has_value()) continue;
    internal::TimerTask task;
    REQUIRE(task.ParseFromString(**stored));
    if (task.type() == internal::TIMER_TASK_TYPE_USER_TIMER) timer.emplace(key, task);
  }
  REQUIRE(timer.has_value());
  e.log.Clear();
  REQUIRE(e.engine->FireTimer(timer->first, timer->second).ok());
  e.worker.Join();
  CHECK(answered == 2);
  // The timer's transition and the task's answer that closes the run: one write.
  CHECK(e.log.lines() == std::vector<std::string>{"workflow task", "commit"});
  CHECK(e.engine->holds_joined() == 2);
  const std::vector<api::EventType> history = e.History(*run);
  REQUIRE(history.size() >= 3);
  CHECK(history[history.size() - 3] == api::EVENT_TYPE_WORKFLOW_TASK_STARTED);
  CHECK(history.back() == api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED);
  CHECK(std::count(history.begin(), history.end(), api::EVENT_TYPE_TIMER_FIRED) == 1);
}

TEST_CASE("Off, or with no answer in time, a held commit goes alone and its answer after it") {
  for (const absl::Duration hold : {absl::ZeroDuration(), absl::Milliseconds(20)}) {
    INFO("hold_for_answer=" << hold);
    Engine e(hold);
    // Nobody answers while the start holds.
    const absl::StatusOr<std::string> run = e.Start("alone");
    REQUIRE(run.ok());
    CHECK(e.log.lines() == std::vector<std::string>{"workflow task", "commit"});
    CHECK(e.engine->holds_missed() == (hold > absl::ZeroDuration() ? 1 : 0));
    CHECK(e.engine->holds_joined() == 0);
    // The answer, late, commits on its own.
    REQUIRE(e.Complete(e.worker.Handed(0), EngineHarness::CompleteWorkflow("\"ok\"")).ok());
    CHECK(e.log.lines() == std::vector<std::string>{"workflow task", "commit", "commit"});
    CHECK(e.History(*run).back() == api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED);
  }
}

TEST_CASE("A held commit and its answer fail together when their write fails") {
  Engine e(absl::Seconds(30));
  absl::Mutex mu;
  std::vector<absl::Status> answered;
  e.worker.answer = [&](const QueuedTask& task) {
    auto done = e.Complete(task, EngineHarness::CompleteWorkflow("\"ok\""));
    absl::MutexLock lock(&mu);
    answered.push_back(done.status());
  };
  e.store.FailNextCommits(1, FaultInjectingStore::CommitFaultMode::kBeforeApply,
                          absl::InternalError("disk said no"));
  const absl::StatusOr<std::string> run = e.Start("failed");
  e.worker.Join();
  // Both callers hear it: the start's and the task's.
  CHECK(run.status().message() == "disk said no");
  {
    absl::MutexLock lock(&mu);
    REQUIRE(answered.size() == 1);
    CHECK(answered[0].message() == "disk said no");
  }
  CHECK(e.engine->holds_joined() == 1);
  // Nothing of either was written: the start retried makes a new run, which completes.
  api::DescribeWorkflowExecutionRequest describe;
  describe.mutable_execution()->set_workflow_id("failed");
  CHECK(absl::IsNotFound(e.engine->DescribeWorkflowExecution(describe).status()));
  const absl::StatusOr<std::string> again = e.Start("failed");
  REQUIRE(again.ok());
  e.worker.Join();
  CHECK(e.engine->holds_joined() == 2);
  CHECK(e.History(*again).back() == api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED);
}

TEST_CASE("An answer refused before its commit leaves the held commit to go alone") {
  Engine e(absl::Seconds(30));
  absl::Status answered;
  e.worker.answer = [&](const QueuedTask& task) {
    // The task's token, but of another poll's start: the held commit takes it (same run and
    // task), and the completion's check refuses it before it writes anything.
    internal::TaskToken token = e.engine->task_tokens().Decode(task.answer->task_token()).value();
    token.set_poll_request_id("another-poll");
    api::RespondWorkflowTaskCompletedRequest request;
    request.set_task_token(e.engine->task_tokens().Encode(token));
    *request.add_commands() = EngineHarness::CompleteWorkflow("\"ok\"");
    answered = e.engine->RespondWorkflowTaskCompleted(request).status();
  };
  const absl::StatusOr<std::string> run = e.Start("refused");
  REQUIRE(run.ok());
  e.worker.Join();
  INFO(answered);
  CHECK(absl::IsFailedPrecondition(answered));
  CHECK(e.engine->holds_joined() == 1);
  CHECK(e.log.lines() == std::vector<std::string>{"workflow task", "commit"});
  // The start landed; the real answer completes the run.
  e.worker.answer = nullptr;
  REQUIRE(e.Complete(e.worker.Handed(0), EngineHarness::CompleteWorkflow("\"ok\"")).ok());
  CHECK(e.History(*run).back() == api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED);
}

TEST_CASE("A refused command's task failure commits with the held commit") {
  Engine e(absl::Seconds(30));
  absl::Status answered;
  std::atomic<bool> once{false};
  e.worker.answer = [&](const QueuedTask& task) {
    if (once.exchange(true)) return;  // the task's retry is left alone
    // A command the engine refuses fails the task: that transition carries the held commit.
    api::Command bad;
    bad.set_command_type(api::COMMAND_TYPE_SCHEDULE_ACTIVITY_TASK);
    answered = e.Complete(task, bad).status();
  };
  const absl::StatusOr<std::string> run = e.Start("bad-command");
  REQUIRE(run.ok());
  e.worker.Join();
  INFO(answered);
  CHECK(absl::IsInvalidArgument(answered));
  CHECK(e.engine->holds_joined() == 1);
  std::vector<std::string> commits;
  for (const std::string& line : e.log.lines()) {
    if (line == "commit") commits.push_back(line);
  }
  CHECK(commits.size() == 1);
  const std::vector<api::EventType> history = e.History(*run);
  REQUIRE(history.size() >= 4);
  CHECK(history[3] == api::EVENT_TYPE_WORKFLOW_TASK_FAILED);
}

}  // namespace
}  // namespace kiln::orchestrator
