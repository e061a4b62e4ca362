#include "tests/simulation/engine_simulation.h"

#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/clock.h"
#include "common/ids.h"
#include "common/proto_time.h"
#include "orchestrator/history/engine_harness.h"
#include "orchestrator/history/history_engine.h"
#include "orchestrator/persistence/fault_injecting_store.h"
#include "orchestrator/persistence/keys.h"
#include "orchestrator/persistence/memory_store.h"

namespace kiln::orchestrator::simulation {
namespace {

constexpr char kQueue[] = "sim";
constexpr char kNamespace[] = "default";
constexpr int kDrainRounds = 400;

api::Payloads Text(const std::string& s) {
  api::Payloads payloads;
  payloads.add_payloads()->set_data(s);
  return payloads;
}

std::string TextOf(const api::Payloads& payloads) {
  return payloads.payloads_size() > 0 ? payloads.payloads(0).data() : "";
}

// The workflow every simulated worker runs: `steps` activities one after the other (a failed or
// timed-out one is scheduled again under a new id), then a 3 s timer, then it completes with
// "done <steps> <signals it has seen>". Decided from the history alone, as an SDK replays.
std::vector<api::Command> Decide(const api::History& history) {
  int steps = 0;
  int completed = 0;
  int scheduled = 0;
  int signals = 0;
  bool timer_started = false;
  bool timer_fired = false;
  std::map<int64_t, bool> open;  // scheduled event id -> still open
  for (const api::HistoryEvent& e : history.events()) {
    switch (e.event_type()) {
      case api::EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
        steps = std::stoi(TextOf(e.workflow_execution_started_event_attributes().input()));
        break;
      case api::EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
        ++scheduled;
        open[e.event_id()] = true;
        break;
      case api::EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
        ++completed;
        open.erase(e.activity_task_completed_event_attributes().scheduled_event_id());
        break;
      case api::EVENT_TYPE_ACTIVITY_TASK_FAILED:
        open.erase(e.activity_task_failed_event_attributes().scheduled_event_id());
        break;
      case api::EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
        open.erase(e.activity_task_timed_out_event_attributes().scheduled_event_id());
        break;
      case api::EVENT_TYPE_TIMER_STARTED:
        timer_started = true;
        break;
      case api::EVENT_TYPE_TIMER_FIRED:
        timer_fired = true;
        break;
      case api::EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
        ++signals;
        break;
      default:
        break;
    }
  }
  api::Command command;
  if (!open.empty()) return {};
  if (completed < steps) {
    command.set_command_type(api::COMMAND_TYPE_SCHEDULE_ACTIVITY_TASK);
    auto* a = command.mutable_schedule_activity_task_command_attributes();
    a->set_activity_id(absl::StrCat("a", scheduled));
    a->mutable_activity_type()->set_name("work");
    ToProto(absl::Seconds(5), a->mutable_start_to_close_timeout());
    a->mutable_retry_policy()->set_maximum_attempts(2);
    ToProto(absl::Seconds(1), a->mutable_retry_policy()->mutable_initial_interval());
    return {command};
  }
  if (!timer_started) {
    command.set_command_type(api::COMMAND_TYPE_START_TIMER);
    command.mutable_start_timer_command_attributes()->set_timer_id("t");
    ToProto(absl::Seconds(3),
            command.mutable_start_timer_command_attributes()->mutable_start_to_fire_timeout());
    return {command};
  }
  if (!timer_fired) return {};
  command.set_command_type(api::COMMAND_TYPE_COMPLETE_WORKFLOW_EXECUTION);
  *command.mutable_complete_workflow_execution_command_attributes()->mutable_result() =
      Text(absl::StrCat("done ", steps, " ", signals));
  return {command};
}

class World final : public EngineListener {
 public:
  World(uint64_t seed, const SimulationOptions& options)
      : options_(options), rng_(seed), engine_ids_(seed), client_ids_(seed ^ 0x5eed) {
    store_.SetCommitFaultPolicy(
        [this](const WriteBatch&) -> std::optional<FaultInjectingStore::CommitFault> {
          if (!chaos_ || !Chance(options_.commit_fault_rate)) return std::nullopt;
          FaultInjectingStore::CommitFault fault;
          fault.mode = Chance(0.5) ? FaultInjectingStore::CommitFaultMode::kBeforeApply
                                   : FaultInjectingStore::CommitFaultMode::kAfterApply;
          return fault;
        });
    store_.TrackUnsyncedWrites();
    store_.IgnoreSync(options_.store_ignores_sync);
    for (int i = 0; i < options_.workflows; ++i) {
      Workflow& w = workflows_.emplace_back();
      w.id = absl::StrCat("wf-", i);
      w.steps = 1 + static_cast<int>(rng_() % 4);
    }
  }

  // EngineListener: the simulation plays matching and the timer queue from the store itself.
  void TaskAdded(QueuedTask) override {}
  void TimerAdded(Table, const std::string&, absl::Time) override {}
  void RunChanged(const std::string&, bool, const kiln::api::v1::HistoryEvent*) override {}

  SimulationResult Run() {
    if (!Restart(/*count=*/false)) return result_;
    for (int step = 0; step < options_.chaos_steps && result_.violation.empty(); ++step) {
      ++result_.steps;
      if (Chance(options_.read_fault_rate)) store_.FailNextReads(1);
      if (Chance(options_.restart_rate) && !Restart(true)) break;
      if (Chance(options_.power_cut_rate) && !CutPower()) break;
      Act();
    }
    chaos_ = false;
    store_.ClearFaults();
    if (result_.violation.empty()) Drain();
    if (result_.violation.empty()) Check();
    result_.commit_faults = store_.injected_commit_faults();
    result_.read_faults = store_.injected_read_faults();
    result_.power_cuts = store_.power_cuts();
    result_.writes_lost = store_.batches_lost();
    return result_;
  }

 private:
  struct Workflow {
    std::string id;
    int steps = 0;
    std::string run_id;  // set once a start was answered
    bool closed = false;
  };
  struct Signal {
    size_t workflow = 0;
    std::string request_id;
    std::string payload;
    bool acked = false;
    bool given_up = false;
  };

  bool Chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  size_t Pick(size_t n) { return static_cast<size_t>(rng_() % n); }

  void Violation(const std::string& what) {
    if (result_.violation.empty()) {
      result_.violation = absl::StrCat("step ", result_.steps, ": ", what);
    }
  }

  // An engine error is expected under faults; one that says the engine's own data is wrong is
  // not.
  void Note(const absl::Status& status, const char* call) {
    if (status.ok()) return;
    ++result_.engine_errors;
    if (absl::IsInternal(status) || absl::IsDataLoss(status)) {
      Violation(absl::StrCat(call, " answered ", status.ToString()));
    }
  }

  // A power cut: the store keeps a seeded prefix of its unsynced writes, the engine restarts on
  // what is left. The workers are other machines: they keep the tasks they hold and answer them
  // later, with tokens of transitions that may be gone.
  bool CutPower() {
    engine_.reset();
    const size_t keep = Pick(store_.unsynced_batches() + 1);
    absl::StatusOr<size_t> lost = store_.CutPower(keep);
    if (!lost.ok()) {
      Violation(absl::StrCat("the power cut failed: ", lost.status().ToString()));
      return false;
    }
    return Restart(/*count=*/false, /*workers_keep_tasks=*/true);
  }

  bool Restart(bool count, bool workers_keep_tasks = false) {
    engine_.reset();
    if (!workers_keep_tasks) {
      held_workflow_tasks_.clear();
      held_activity_tasks_.clear();
    }
    // Creating the engine reads the store: while the chaos lasts it may fail, and is retried.
    for (int attempt = 0; attempt < 100; ++attempt) {
      auto engine = HistoryEngine::Create(&store_, &clock_, &engine_ids_, this);
      if (engine.ok()) {
        engine_ = std::move(*engine);
        if (count) ++result_.restarts;
        return true;
      }
      Note(engine.status(), "Create");
    }
    Violation("the engine could not be created in 100 attempts");
    return false;
  }

  void Act() {
    switch (Pick(10)) {
      case 0:
        StartSome();
        break;
      case 1:
      case 2:
      case 3:
        PollWorkflowTask(/*draining=*/false);
        break;
      case 4:
      case 5:
      case 6:
        PollActivityTask(/*draining=*/false);
        break;
      case 7:
        AnswerHeld();
        break;
      case 8:
        SignalSome();
        break;
      default:
        Advance(absl::Milliseconds(static_cast<int64_t>(Pick(3000))));
        break;
    }
  }

  void StartSome() {
    for (Workflow& w : workflows_) {
      if (!w.run_id.empty()) continue;
      api::StartWorkflowExecutionRequest request;
      request.set_workflow_id(w.id);
      request.mutable_workflow_type()->set_name("sim");
      request.mutable_task_queue()->set_name(kQueue);
      *request.mutable_input() = Text(absl::StrCat(w.steps));
      request.set_request_id("start-" + w.id);  // a retry after an unknown outcome is the same
      auto started = engine_->StartWorkflowExecution(request);
      Note(started.status(), "Start");
      if (started.ok()) w.run_id = started->run_id();
      return;  // one start per step
    }
  }

  // The live backlog tasks of the queue, oldest first (the harness's matching).
  std::vector<QueuedTask> Backlog(keys::TaskKind kind) {
    std::vector<QueuedTask> tasks;
    std::string prefix = keys::TaskQueuePrefix(kind, kNamespace, kQueue);
    absl::Status status =
        store_.Scan(Table::kTasks, prefix, keys::PrefixEnd(prefix), 0,
                    [&](std::string_view key, std::string_view value) {
                      QueuedTask& task = tasks.emplace_back();
                      task.kind = kind;
                      task.ns = kNamespace;
                      task.queue = kQueue;
                      task.task_id = keys::TaskIdOf(key);
                      task.record.ParseFromArray(value.data(), static_cast<int>(value.size()));
                      return true;
                    });
    if (!status.ok()) tasks.clear();
    return tasks;
  }

  void PollWorkflowTask(bool draining) {
    for (const QueuedTask& task : Backlog(keys::TaskKind::kWorkflow)) {
      auto started = engine_->RecordWorkflowTaskStarted(task, "sim-worker", client_ids_.NewUuid());
      if (!started.ok()) {
        Note(started.status(), "RecordWorkflowTaskStarted");
        if (absl::IsNotFound(started.status()) || absl::IsFailedPrecondition(started.status())) {
          (void)engine_->DropStaleTask(task);  // as the frontend does
        }
        continue;
      }
      if (draining || Chance(0.8)) {
        AnswerWorkflowTask(*started);
      } else if (Chance(0.3)) {
        api::RespondWorkflowTaskFailedRequest failed;
        failed.set_task_token(started->task_token());
        failed.set_cause(api::WORKFLOW_TASK_FAILED_CAUSE_WORKFLOW_WORKER_UNHANDLED_FAILURE);
        failed.mutable_failure()->set_message("simulated worker panic");
        Note(engine_->RespondWorkflowTaskFailed(failed), "RespondWorkflowTaskFailed");
      } else {
        held_workflow_tasks_.push_back(*started);  // answered late, or never (it times out)
      }
      return;
    }
  }

  void AnswerWorkflowTask(const api::PollWorkflowTaskQueueResponse& task) {
    api::RespondWorkflowTaskCompletedRequest request;
    request.set_task_token(task.task_token());
    request.set_identity("sim-worker");
    for (api::Command& c : Decide(task.history())) *request.add_commands() = std::move(c);
    absl::Status status = engine_->RespondWorkflowTaskCompleted(request).status();
    Note(status, "RespondWorkflowTaskCompleted");
    if (status.ok()) {
      acked_workflow_tasks_.insert({task.workflow_execution().run_id(), task.started_event_id()});
    }
  }

  void PollActivityTask(bool draining) {
    for (const QueuedTask& task : Backlog(keys::TaskKind::kActivity)) {
      auto started = engine_->RecordActivityTaskStarted(task, "sim-worker", client_ids_.NewUuid());
      if (!started.ok()) {
        Note(started.status(), "RecordActivityTaskStarted");
        if (absl::IsNotFound(started.status()) || absl::IsFailedPrecondition(started.status())) {
          (void)engine_->DropStaleTask(task);
        }
        continue;
      }
      const double roll = draining ? 0 : std::uniform_real_distribution<double>(0, 1)(rng_);
      if (roll < 0.7) {
        CompleteActivity(*started);
      } else if (roll < 0.85) {
        api::RespondActivityTaskFailedRequest failed;
        failed.set_task_token(started->task_token());
        failed.mutable_failure()->set_message("simulated failure");
        failed.mutable_failure()->mutable_application_failure_info()->set_type("Flaky");
        Note(engine_->RespondActivityTaskFailed(failed), "RespondActivityTaskFailed");
      } else {
        held_activity_tasks_.push_back(*started);
      }
      return;
    }
  }

  void CompleteActivity(const api::PollActivityTaskQueueResponse& task) {
    api::RespondActivityTaskCompletedRequest done;
    done.set_task_token(task.task_token());
    *done.mutable_result() = Text("ok");
    done.set_identity("sim-worker");
    absl::Status status = engine_->RespondActivityTaskCompleted(done).status();
    Note(status, "RespondActivityTaskCompleted");
    if (status.ok()) {
      acked_activities_.insert({task.workflow_execution().run_id(), task.activity_id()});
    }
  }

  // A task answered after others moved on: the engine must refuse it or apply it cleanly.
  void AnswerHeld() {
    if (!held_workflow_tasks_.empty() && (held_activity_tasks_.empty() || Chance(0.5))) {
      size_t i = Pick(held_workflow_tasks_.size());
      auto task = held_workflow_tasks_[i];
      held_workflow_tasks_.erase(held_workflow_tasks_.begin() + static_cast<ptrdiff_t>(i));
      AnswerWorkflowTask(task);
    } else if (!held_activity_tasks_.empty()) {
      size_t i = Pick(held_activity_tasks_.size());
      api::PollActivityTaskQueueResponse task = held_activity_tasks_[i];
      held_activity_tasks_.erase(held_activity_tasks_.begin() + static_cast<ptrdiff_t>(i));
      CompleteActivity(task);
    }
  }

  void SignalSome() {
    // Retry an unanswered signal first, with its request id, as a client does.
    for (Signal& s : signals_) {
      if (!s.acked && !s.given_up) return Send(s);
    }
    std::vector<size_t> started;
    for (size_t i = 0; i < workflows_.size(); ++i) {
      if (!workflows_[i].run_id.empty()) started.push_back(i);
    }
    if (started.empty()) return;
    Signal& s = signals_.emplace_back();
    s.workflow = started[Pick(started.size())];
    s.request_id = absl::StrCat("sig-req-", signals_.size());
    s.payload = absl::StrCat("sig-", signals_.size());
    Send(s);
  }

  void Send(Signal& s) {
    api::SignalWorkflowExecutionRequest request;
    request.mutable_workflow_execution()->set_workflow_id(workflows_[s.workflow].id);
    request.set_signal_name("poke");
    *request.mutable_input() = Text(s.payload);
    request.set_request_id(s.request_id);
    absl::Status status = engine_->SignalWorkflowExecution(request);
    if (status.ok()) {
      s.acked = true;
      ++result_.signals_delivered;
    } else if (absl::IsFailedPrecondition(status)) {
      s.given_up = true;  // the run closed: the signal may or may not be in it
    } else {
      Note(status, "Signal");
    }
  }

  // Moves the clock to `d` from now, firing every due timer and transfer on the way, as the
  // timer queue would. A timer whose firing fails stays for a later turn.
  void Advance(absl::Duration d) {
    Note(testing::FireDueTimers(store_, *engine_, clock_, clock_.Now() + d, 1'000), "FireTimer");
  }

  // No more faults: every worker answers everything until each workflow closes.
  void Drain() {
    held_workflow_tasks_.clear();  // their tasks time out and come back
    held_activity_tasks_.clear();
    for (int round = 0; round < kDrainRounds; ++round) {
      StartSome();
      for (Signal& s : signals_) {
        if (!s.acked && !s.given_up) Send(s);
      }
      for (int i = 0; i < 20; ++i) PollWorkflowTask(true);
      for (int i = 0; i < 20; ++i) PollActivityTask(true);
      bool all_closed = true;
      for (Workflow& w : workflows_) {
        if (w.run_id.empty()) {
          all_closed = false;
          continue;
        }
        api::DescribeWorkflowExecutionRequest describe;
        describe.mutable_execution()->set_workflow_id(w.id);
        describe.mutable_execution()->set_run_id(w.run_id);
        auto described = engine_->DescribeWorkflowExecution(describe);
        if (!described.ok()) {
          Violation(absl::StrCat("describe ", w.id, ": ", described.status().ToString()));
          return;
        }
        w.closed =
            described->workflow_execution_info().status() != api::WORKFLOW_EXECUTION_STATUS_RUNNING;
        all_closed = all_closed && w.closed;
      }
      if (all_closed && Backlog(keys::TaskKind::kWorkflow).empty() &&
          Backlog(keys::TaskKind::kActivity).empty()) {
        return;
      }
      Advance(absl::Seconds(1));
    }
    for (const Workflow& w : workflows_) {
      if (!w.closed) Violation(absl::StrCat(w.id, " is still open after the drain (stuck)"));
    }
  }

  api::History History(const std::string& run_id) {
    api::GetWorkflowExecutionHistoryRequest request;
    request.mutable_execution()->set_run_id(run_id);
    request.set_maximum_page_size(10'000);
    auto read = engine_->ReadHistory(request);
    if (!read.ok()) {
      Violation(absl::StrCat("history of ", run_id, ": ", read.status().ToString()));
      return {};
    }
    return read->response.history();
  }

  void Check() {
    // A fresh engine, so what is checked is what the store holds, not a cache.
    if (!Restart(false)) return;
    for (const Workflow& w : workflows_) {
      const api::History history = History(w.run_id);
      if (!result_.violation.empty()) return;
      const std::string who = absl::StrCat(w.id, " (run ", w.run_id, ")");
      int closes = 0;
      int signals = 0;
      std::map<std::string, int> payloads;
      std::map<int64_t, std::string> activity_of;  // scheduled event id -> activity id
      std::set<std::string> activities_completed;
      std::set<int64_t> workflow_tasks_answered;  // by started event id
      for (int i = 0; i < history.events_size(); ++i) {
        const api::HistoryEvent& e = history.events(i);
        if (e.event_id() != i + 1) {
          return Violation(absl::StrCat(who, ": event ", i + 1, " has id ", e.event_id()));
        }
        switch (e.event_type()) {
          case api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
          case api::EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
          case api::EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
          case api::EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
          case api::EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
          case api::EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            ++closes;
            break;
          case api::EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            ++signals;
            ++payloads[TextOf(e.workflow_execution_signaled_event_attributes().input())];
            break;
          case api::EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            activity_of[e.event_id()] = e.activity_task_scheduled_event_attributes().activity_id();
            break;
          case api::EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            activities_completed.insert(
                activity_of[e.activity_task_completed_event_attributes().scheduled_event_id()]);
            break;
          case api::EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            workflow_tasks_answered.insert(
                e.workflow_task_completed_event_attributes().started_event_id());
            break;
          case api::EVENT_TYPE_WORKFLOW_TASK_FAILED:
            // A completion the engine accepted and then failed (its commands met events that
            // arrived meanwhile): answered OK, recorded as a failure.
            workflow_tasks_answered.insert(
                e.workflow_task_failed_event_attributes().started_event_id());
            break;
          default:
            break;
        }
      }
      for (const auto& [run, activity] : acked_activities_) {
        if (run == w.run_id && !activities_completed.contains(activity)) {
          return Violation(absl::StrCat(who, ": the acknowledged completion of activity ", activity,
                                        " is missing"));
        }
      }
      for (const auto& [run, started] : acked_workflow_tasks_) {
        if (run == w.run_id && !workflow_tasks_answered.contains(started)) {
          return Violation(absl::StrCat(who, ": the acknowledged answer to the workflow task ",
                                        "started at event ", started, " is missing"));
        }
      }
      if (history.events_size() == 0 ||
          history.events(0).event_type() != api::EVENT_TYPE_WORKFLOW_EXECUTION_STARTED) {
        return Violation(absl::StrCat(who, ": the history does not begin with its start"));
      }
      const api::HistoryEvent& last = history.events(history.events_size() - 1);
      if (closes != 1 || last.event_type() != api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED) {
        return Violation(absl::StrCat(who, ": ", closes, " close events, the last event is ",
                                      api::EventType_Name(last.event_type())));
      }
      const std::string result =
          TextOf(last.workflow_execution_completed_event_attributes().result());
      const std::string expected = absl::StrCat("done ", w.steps, " ", signals);
      if (result != expected) {
        return Violation(absl::StrCat(who, ": result \"", result, "\", expected \"", expected,
                                      "\" from its history"));
      }
      for (const auto& [payload, count] : payloads) {
        if (count != 1) return Violation(absl::StrCat(who, ": signal ", payload, " x", count));
      }
      for (const Signal& s : signals_) {
        if (s.acked && &workflows_[s.workflow] == &w && payloads[s.payload] != 1) {
          return Violation(absl::StrCat(who, ": acknowledged signal ", s.payload, " is missing"));
        }
      }
      api::DescribeWorkflowExecutionRequest describe;
      describe.mutable_execution()->set_workflow_id(w.id);
      describe.mutable_execution()->set_run_id(w.run_id);
      auto described = engine_->DescribeWorkflowExecution(describe);
      if (!described.ok() ||
          described->workflow_execution_info().status() !=
              api::WORKFLOW_EXECUTION_STATUS_COMPLETED ||
          described->workflow_execution_info().history_length() != history.events_size()) {
        return Violation(absl::StrCat(who, ": described otherwise than its history says"));
      }
      ++result_.workflows_completed;
    }
    // Nothing left behind: no task in a backlog, no timer or transfer (retention timers stay).
    for (Table table : {Table::kTasks, Table::kTimers}) {
      int left = 0;
      (void)store_.Scan(table, "", "", 0, [&](std::string_view, std::string_view) {
        ++left;
        return true;
      });
      if (left > 0) return Violation(absl::StrCat(left, " keys left in ", TableName(table)));
    }
  }

  const SimulationOptions options_;
  std::mt19937_64 rng_;
  FakeClock clock_;
  RandomIdGenerator engine_ids_;
  RandomIdGenerator client_ids_;
  MemoryStore base_;
  FaultInjectingStore store_{base_};
  std::unique_ptr<HistoryEngine> engine_;
  bool chaos_ = true;
  std::vector<Workflow> workflows_;
  std::vector<Signal> signals_;
  std::vector<api::PollWorkflowTaskQueueResponse> held_workflow_tasks_;
  std::vector<api::PollActivityTaskQueueResponse> held_activity_tasks_;
  // What the engine answered OK, so must survive any power cut: activity completions by run and
  // activity id, workflow task completions by run and started event id.
  std::set<std::pair<std::string, std::string>> acked_activities_;
  std::set<std::pair<std::string, int64_t>> acked_workflow_tasks_;
  SimulationResult result_;
};

}  // namespace

SimulationResult RunSimulation(uint64_t seed, const SimulationOptions& options) {
  World world(seed, options);
  return world.Run();
}

}  // namespace kiln::orchestrator::simulation
