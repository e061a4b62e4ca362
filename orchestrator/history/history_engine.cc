#include "orchestrator/history/history_engine.h"

#include <algorithm>

#include "absl/cleanup/cleanup.h"
#include "absl/hash/hash.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "common/status.h"
#include "orchestrator/history/limits.h"
#include "orchestrator/persistence/keys.h"
#include "orchestrator/visibility/visibility_list.h"

namespace kiln::orchestrator {
std::string HistoryPageToken(int64_t next_event_id, int64_t transient_started_event_id) {
  if (transient_started_event_id == 0) return absl::StrCat("h1:", next_event_id);
  return absl::StrCat("h1:", next_event_id, ":t", transient_started_event_id);
}

namespace {

// The moving average of commits that found others in flight (HistoryEngine::busy_commits_):
// its scale (a commit that did counts this much), its window (about this many commits), and
// the level below which a workflow task may go out before its commit syncs.
constexpr int kBusyScale = 1024;
constexpr int kBusyWindow = 16;
constexpr int kQuietBelow = kBusyScale / 4;
// Commits are held for their workflow task's answer while fewer than half the holds lately
// missed it (HistoryEngine::hold_misses_, on kBusyScale), else one in kHoldProbeEvery.
constexpr int kHoldMissesBelow = kBusyScale / 2;
constexpr uint32_t kHoldProbeEvery = 16;

struct HistoryPagePosition {
  int64_t next = 0;
  int64_t transient_started_event_id = 0;  // 0: an ordinary read
};

absl::StatusOr<HistoryPagePosition> ParseHistoryPageToken(const std::string& token) {
  const absl::Status bad = absl::InvalidArgumentError("next_page_token: not a history page token");
  if (token.rfind("h1:", 0) != 0) return bad;
  absl::string_view rest = absl::string_view(token).substr(3);
  HistoryPagePosition position;
  if (size_t mark = rest.find(":t"); mark != absl::string_view::npos) {
    if (!absl::SimpleAtoi(rest.substr(mark + 2), &position.transient_started_event_id) ||
        position.transient_started_event_id < 1) {
      return bad;
    }
    rest = rest.substr(0, mark);
  }
  if (!absl::SimpleAtoi(rest, &position.next) || position.next < 1) return bad;
  return position;
}

}  // namespace

absl::StatusOr<std::unique_ptr<HistoryEngine>> HistoryEngine::Create(Store* store, Clock* clock,
                                                                     IdGenerator* ids,
                                                                     EngineListener* listener,
                                                                     EngineOptions options) {
  ASSIGN_OR_RETURN(auto task_ids, TaskIdAllocator::Create(store));
  return std::unique_ptr<HistoryEngine>(
      new HistoryEngine(store, clock, ids, listener, std::move(task_ids), std::move(options)));
}

HistoryEngine::HistoryEngine(Store* store, Clock* clock, IdGenerator* ids, EngineListener* listener,
                             std::unique_ptr<TaskIdAllocator> task_ids, EngineOptions options)
    : store_(store),
      clock_(clock),
      ids_(ids),
      listener_(listener),
      task_ids_(std::move(task_ids)),
      options_(std::move(options)),
      task_tokens_(options_.task_token_key ? TaskTokenCodec(*options_.task_token_key)
                                           : TaskTokenCodec::WithRandomKey()),
      cache_(options_.run_cache_capacity) {
  if (options_.hold_for_answer > absl::ZeroDuration()) {
    holds_ = std::make_unique<AnswerHolds>(options_.registry);
  }
}

std::string HistoryEngine::Namespace(const std::string& ns) const {
  return ns.empty() ? options_.default_namespace : ns;
}

absl::StatusOr<std::unique_ptr<RunCache::Handle>> HistoryEngine::LoadRun(
    const std::string& run_id) {
  auto handle = cache_.Acquire(run_id);
  if (!(*handle)->state.has_value()) {
    // The engine is entered holding no absl::Mutex (its commits park too) and this holds only
    // the run's lock, a fiber::Mutex: a read from a fiber may park (PostgresStore's do).
    fiber::ParkScope park;
    ASSIGN_OR_RETURN(auto stored, store_->Get(Table::kExecutions, keys::Execution(run_id)));
    if (!stored.has_value()) {
      return absl::NotFoundError(absl::StrCat("workflow run ", run_id, " not found"));
    }
    internal::ExecutionState state;
    if (!state.ParseFromString(*stored) || state.run_id() != run_id) {
      return absl::DataLossError(absl::StrCat("state of run ", run_id, " is corrupt"));
    }
    (*handle)->state = std::move(state);
  }
  return handle;
}

absl::StatusOr<std::string> HistoryEngine::CurrentRunId(const std::string& ns,
                                                        const std::string& workflow_id) {
  // Callers hold at most fiber::Mutexes (a run's lock, a start stripe): the read may park.
  fiber::ParkScope park;
  ASSIGN_OR_RETURN(auto stored, store_->Get(Table::kCurrent, keys::Current(ns, workflow_id)));
  if (!stored.has_value()) {
    return absl::NotFoundError(absl::StrCat("workflow ", workflow_id, " not found"));
  }
  internal::CurrentRun current;
  if (!current.ParseFromString(*stored)) {
    return absl::DataLossError(absl::StrCat("current run of ", workflow_id, " is corrupt"));
  }
  return current.run_id();
}

absl::StatusOr<std::unique_ptr<RunCache::Handle>> HistoryEngine::LoadExecution(
    const std::string& ns, const api::WorkflowExecution& execution) {
  std::string run_id = execution.run_id();
  if (run_id.empty()) {
    ASSIGN_OR_RETURN(run_id, CurrentRunId(ns, execution.workflow_id()));
  }
  ASSIGN_OR_RETURN(auto handle, LoadRun(run_id));
  const auto& state = *(*handle)->state;
  if (state.namespace_() != ns ||
      (!execution.workflow_id().empty() && state.workflow_id() != execution.workflow_id())) {
    return absl::NotFoundError(
        absl::StrCat("workflow run ", run_id, " not found in workflow ", execution.workflow_id()));
  }
  return handle;
}

absl::Status HistoryEngine::StartNewTask(Mutation& m, QueuedTask& task,
                                         const std::string& identity) {
  std::string request_id = ids_->NewUuid();
  if (task.kind == keys::TaskKind::kWorkflow) {
    const auto& wt = m.state().workflow_task();
    if (wt.scheduled_event_id() != task.record.scheduled_event_id() || wt.started_event_id() != 0) {
      return absl::InternalError("a new workflow task is not the run's pending one");
    }
    RETURN_IF_ERROR(ApplyWorkflowTaskStarted(m, 0, task.queue, identity, request_id));
  } else {
    auto it = m.state().activities().find(task.record.scheduled_event_id());
    if (it == m.state().activities().end() || IsSet(it->second.started_time())) {
      return absl::InternalError("a new activity task is not a pending activity");
    }
    RETURN_IF_ERROR(ApplyActivityTaskStarted(m, task.record.scheduled_event_id(), 0, task.queue,
                                             identity, request_id));
  }
  task.started_request_id = std::move(request_id);
  return absl::OkStatus();
}

QueuedTask* HistoryEngine::NewPendingWorkflowTask(Mutation& m) {
  if (!m.IsOpen()) return nullptr;
  for (QueuedTask& task : m.new_tasks()) {
    if (task.kind == keys::TaskKind::kWorkflow && task.started_request_id.empty() &&
        task.record.query_id().empty() &&
        task.record.scheduled_event_id() == m.state().workflow_task().scheduled_event_id()) {
      return &task;
    }
  }
  return nullptr;
}

absl::Status HistoryEngine::StartForWaitingPollers(Mutation& m,
                                                   std::vector<StartedInline>* started) {
  if (!m.IsOpen()) return absl::OkStatus();
  for (QueuedTask& task : m.new_tasks()) {
    // Queries never start; a task started already (eager dispatch) is its worker's.
    if (!task.record.query_id().empty() || !task.started_request_id.empty()) continue;
    // A workflow task goes to the worker holding the run, when it has a poll waiting.
    if (task.kind == keys::TaskKind::kWorkflow) {
      task.preferred_worker_instance = m.state().sticky_worker();
    }
    std::optional<TaskReservation> reservation = listener_->ReservePoller(task);
    if (!reservation.has_value()) continue;
    // Added before the start is applied, so a failure below still releases the poller.
    started->push_back({*reservation, QueuedTask{}});
    RETURN_IF_ERROR(StartNewTask(m, task, reservation->identity));
    started->back().task = task;
  }
  return absl::OkStatus();
}

bool HistoryEngine::HoldAllowed() {
  if (hold_misses_.load(std::memory_order_relaxed) < kHoldMissesBelow) return true;
  return hold_probes_.fetch_add(1, std::memory_order_relaxed) % kHoldProbeEvery == 0;
}

absl::Status HistoryEngine::Commit(Handle& handle, Mutation& mutation, WriteBatch* extra,
                                   Mutation* second_run, bool may_hold) {
  std::vector<StartedInline> started;
  // Every reserved poller ends once, with its task or empty.
  auto release = [&] {
    for (const StartedInline& s : started) {
      if (!s.handed_out) listener_->ReleaseReservation(s.reservation);
    }
  };
  size_t started_here = 0;  // started[0, started_here) are tasks of `mutation`'s run
  absl::StatusOr<WriteBatch> batch = [&]() -> absl::StatusOr<WriteBatch> {
    RETURN_IF_ERROR(mutation.Finalize());
    if (mutation.closed_now()) {
      RETURN_IF_ERROR(mutation
                          .AddTimer(internal::TIMER_TASK_TYPE_DELETE_HISTORY,
                                    mutation.now() + options_.retention, 0, 0)
                          .status());
    }
    RETURN_IF_ERROR(StartForWaitingPollers(mutation, &started));
    started_here = started.size();
    ASSIGN_OR_RETURN(WriteBatch batch, mutation.Build());
    if (second_run != nullptr) {
      RETURN_IF_ERROR(second_run->Finalize());
      RETURN_IF_ERROR(StartForWaitingPollers(*second_run, &started));
      ASSIGN_OR_RETURN(WriteBatch second, second_run->Build());
      batch.Append(std::move(second));
    }
    if (extra != nullptr) batch.Append(std::move(*extra));
    return batch;
  }();
  if (!batch.ok()) {
    release();
    return batch.status();
  }
  // A commit of this run held for its workflow task's answer, this transition being the
  // answer's (running on the run the holder lends it, below): its batch goes first, in the
  // same write.
  HeldCommit* held = handle->held;
  if (held != nullptr) {
    handle->held = nullptr;
    WriteBatch both = std::move(*held->batch);
    both.Append(std::move(*batch));
    *batch = std::move(both);
    held->written = true;
  }
  // Before the sync: a workflow task started here for a waiting poller goes out now, so the
  // worker's work and the hop to it overlap the commit's fsync. Safe for workflow tasks alone:
  // the task's only effect is its completion, a transition of this run, which waits for the
  // run's lock (held until this commit has ended) and is refused if this commit did not land
  // (its token names a start the store does not hold). An activity may have effects outside
  // and waits for the sync. Not for a second run (continue-as-new): its lock is not held.
  // Only when no other transition is committing, and few were lately: then this fsync is on
  // the run's critical path. Under load the writer is busy and syncs for many; a task sent
  // early would come back while this commit still waits, and its completion would hold an
  // engine fiber parked on the run's lock (measured: fewer workflows/s at 64 callers, with
  // only the first condition too). A held commit's answer counts as that commit (its holder
  // counted it), and is as quiet as it.
  bool quiet = false;
  if (held != nullptr) {
    quiet = held->quiet;
  } else {
    const bool alone = commits_in_flight_.fetch_add(1, std::memory_order_relaxed) == 0;
    const int busy = busy_commits_.load(std::memory_order_relaxed);
    busy_commits_.store(busy + ((alone ? 0 : kBusyScale) - busy) / kBusyWindow,
                        std::memory_order_relaxed);
    quiet = alone && busy < kQuietBelow;
  }
  absl::Cleanup committed = [this, counted = held == nullptr] {
    if (counted) commits_in_flight_.fetch_sub(1, std::memory_order_relaxed);
  };
  for (size_t i = 0; i < started_here; ++i) {
    // Every task started here gets its answer now, so that its poll need not take the run's
    // lock again to build it (no query is started at schedule: StartForWaitingPollers).
    StartedInline& s = started[i];
    if (s.task.kind == keys::TaskKind::kActivity) {
      s.task.activity_answer = std::make_shared<api::PollActivityTaskQueueResponse>(
          BuildActivityTask(mutation.state(), s.task.record.scheduled_event_id()));
      continue;
    }
    s.task.answer = AnswerBeforeCommit(handle, mutation, s.reservation);
  }
  // A workflow task to hand out while the commit syncs (its answer built above).
  auto goes_early = [](const StartedInline& s) {
    return s.task.kind == keys::TaskKind::kWorkflow && s.task.answer != nullptr;
  };
  const auto early_task = std::find_if(
      started.begin(), started.begin() + static_cast<ptrdiff_t>(started_here), goes_early);
  const bool early_work = options_.workflow_tasks_before_sync && quiet &&
                          early_task != started.begin() + static_cast<ptrdiff_t>(started_here);
  // Handed out once the batch is queued for its write (the hand-out's own work then overlaps
  // the sync as well, instead of delaying the write).
  auto hand_out_early = [&] {
    if (!early_work) return;
    for (size_t i = 0; i < started_here; ++i) {
      StartedInline& s = started[i];
      if (!goes_early(s) || s.handed_out) continue;
      s.handed_out = true;
      listener_->FulfilReservation(s.reservation, std::move(s.task));
    }
  };
  // The tasks that wait in the backlog (not started here) and the timers `m` adds, told to
  // matching and the timer queue.
  auto offer_new = [&](Mutation* m) {
    if (m == nullptr) return;
    for (QueuedTask& task : m->new_tasks()) {
      if (task.started_request_id.empty()) listener_->TaskAdded(std::move(task));
    }
    for (const NewTimer& timer : m->new_timers()) {
      listener_->TimerAdded(timer.table, timer.key, timer.fire_time);
    }
  };
  // A failed commit, this transition's or (held) its answer's, which carried this batch.
  auto failed = [&](const absl::Status& status) {
    // The cached state may no longer match the store (an unknown outcome): reload next time.
    handle->state.reset();
    cache_.Forget(*handle);
    release();
    if (absl::IsUnavailable(status)) {
      // The outcome may be unknown (a connection lost once COMMIT was sent): the batch may
      // have landed, its tasks in the backlog, and nothing else would hand them out. Offered
      // anyway: whoever takes one checks it against the store (a task whose event is not there
      // is dropped as stale, a timer whose key is not there does nothing).
      offer_new(&mutation);
      offer_new(second_run);
    }
    return status;
  };
  const std::string run_id = mutation.state().run_id();
  // The committed state and events become the cache's.
  auto cache_committed = [&] {
    handle->state = std::move(mutation.state());
    if (mutation.closed_now()) {
      cache_.Forget(*handle);
    } else {
      cache_.Remember(*handle, std::move(mutation.committed_events()),
                      handle->state->last_completed_workflow_task_started_event_id());
    }
  };
  // What the commit tells matching, the timers and the run's watchers.
  auto tell_listener = [&] {
    for (Mutation* m : {&mutation, second_run}) {
      if (m == nullptr) continue;
      offer_new(m);
      for (const std::string& key : m->removed_timers()) listener_->TimerRemoved(key);
    }
    for (StartedInline& s : started) {
      if (!s.handed_out) listener_->FulfilReservation(s.reservation, std::move(s.task));
    }
    if (!mutation.new_events().empty()) {
      listener_->RunChanged(run_id, mutation.closed_now(), mutation.close_event());
    }
    if (second_run != nullptr) {
      listener_->RunChanged(second_run->state().run_id(), second_run->closed_now(),
                            second_run->close_event());
    }
  };

  // Held for the answer: a start, an activity's answer or a timer whose workflow task goes out
  // early (quiet, so this fsync is on the run's path) waits, holding the run's lock, for the task's
  // completion before writing anything. When it comes in time its transition runs at once, on its
  // own fiber, on this run (this fiber, parked, lends it the lock) and this transition's state,
  // and one synced write commits both: of a one-activity
  // workflow's four commits in a row, two. Each is still all or nothing: a failed write fails
  // both, answered to both callers. The wait is bounded (hold_for_answer); an answer that
  // misses it waits for the run's lock as without the hold. Only where the caller reads nothing
  // of the run after the commit (`may_hold`), since the state it would read is the answer's.
  // While most holds miss (slow workflow code), only a few probe.
  if (may_hold && held == nullptr && holds_ != nullptr && early_work && second_run == nullptr &&
      HoldAllowed()) {
    AnswerHolds::Holder holder;
    const bool opened =
        holds_->Open(&holder, run_id, early_task->task.record.scheduled_event_id(), &handle);
    hand_out_early();  // before the write: nothing to overlap yet
    // The answer's transition starts from this one's state and events, as if committed (its
    // commit makes them so, or, failed, empties the cache), and carries this batch. Set up
    // while the task travels: an answer that comes back sooner waits for Wait to take the run.
    handle->state = std::move(mutation.state());
    cache_.Remember(*handle, std::move(mutation.committed_events()),
                    handle->state->last_completed_workflow_task_started_event_id());
    HeldCommit hold{.batch = &*batch,
                    .quiet = quiet,
                    .committed = tell_listener,
                    .written = false,
                    .status = {}};
    handle->held = &hold;
    // The answer, when it comes in time, runs on its own fiber on this run (this fiber parked,
    // lending it the lock), and this wakes when it is done.
    const bool joined = opened && holds_->Wait(&holder, absl::Now() + options_.hold_for_answer);
    const int misses = hold_misses_.load(std::memory_order_relaxed);
    hold_misses_.store(misses + ((joined ? 0 : kBusyScale) - misses) / kBusyWindow,
                       std::memory_order_relaxed);
    handle->held = nullptr;
    if (hold.written) return hold.status.ok() ? absl::OkStatus() : failed(hold.status);
    // No answer in time, or one refused before its commit: this commit goes alone.
    absl::Status status;
    {
      fiber::ParkScope park;  // the task is out: nothing to do while the fsync runs
      status = options_.quiet_commits_on_caller ? store_->CommitOnCaller(*batch)
                                                : store_->CommitOverlapped(*batch, [] {});
    }
    if (!status.ok()) return failed(status);
    tell_listener();
    return absl::OkStatus();
  }

  // Quiet, with nothing to hand out while the fsync runs: this fiber would only wait for it,
  // so its thread writes and syncs the batch itself, sparing the writer's wake-up and its own
  // after the sync (two thread switches, ~35 us each on this VM). That blocks the thread for
  // the write, which is why only when quiet: no other engine work is then waiting for it.
  const bool on_caller = options_.quiet_commits_on_caller && quiet && !early_work;
  absl::Status status;
  {
    // Only run locks (fiber::Mutex) are held here: the commit may park this fiber.
    fiber::ParkScope park;
    status = on_caller ? store_->CommitOnCaller(*batch)
                       : store_->CommitOverlapped(*batch, hand_out_early);
  }
  if (held != nullptr) held->status = status;
  if (!status.ok()) return failed(status);
  if (held != nullptr) held->committed();  // the held transition's effects come first
  cache_committed();
  tell_listener();
  return absl::OkStatus();
}

absl::Status HistoryEngine::TerminateWorkflowExecution(
    const api::TerminateWorkflowExecutionRequest& request) {
  ASSIGN_OR_RETURN(auto handle,
                   LoadExecution(Namespace(request.namespace_()), request.workflow_execution()));
  const internal::ExecutionState& state = *(*handle)->state;
  if (state.status() != api::WORKFLOW_EXECUTION_STATUS_RUNNING) {
    return absl::FailedPreconditionError(
        absl::StrCat("workflow run ", state.run_id(), " is already closed"));
  }
  Mutation m(state, clock_->Now(), task_ids_.get());
  m.FlushBuffered();
  auto* attrs = m.Append(api::EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED)
                    ->mutable_workflow_execution_terminated_event_attributes();
  attrs->set_reason(request.reason());
  *attrs->mutable_details() = request.details();
  attrs->set_identity(request.identity());
  RETURN_IF_ERROR(m.Close(api::WORKFLOW_EXECUTION_STATUS_TERMINATED));
  return Commit(*handle, m);
}

absl::StatusOr<api::DescribeWorkflowExecutionResponse> HistoryEngine::DescribeWorkflowExecution(
    const api::DescribeWorkflowExecutionRequest& request) {
  ASSIGN_OR_RETURN(auto handle,
                   LoadExecution(Namespace(request.namespace_()), request.execution()));
  const internal::ExecutionState& state = *(*handle)->state;
  api::DescribeWorkflowExecutionResponse response;
  auto* info = response.mutable_workflow_execution_info();
  info->mutable_execution()->set_workflow_id(state.workflow_id());
  info->mutable_execution()->set_run_id(state.run_id());
  info->mutable_type()->set_name(state.workflow_type());
  *info->mutable_start_time() = state.start_time();
  *info->mutable_close_time() = state.close_time();
  *info->mutable_execution_time() = state.start_time();
  info->set_status(state.status());
  info->set_history_length(state.next_event_id() - 1);
  *info->mutable_memo() = state.memo();
  *info->mutable_search_attributes() = state.search_attributes();
  info->set_task_queue(state.task_queue());
  info->set_first_run_id(state.first_run_id());
  for (const auto& [id, a] : state.activities()) {
    auto* p = response.add_pending_activities();
    p->set_activity_id(a.activity_id());
    p->mutable_activity_type()->set_name(a.activity_type());
    p->set_state(a.cancel_requested()      ? api::PENDING_ACTIVITY_STATE_CANCEL_REQUESTED
                 : IsSet(a.started_time()) ? api::PENDING_ACTIVITY_STATE_STARTED
                                           : api::PENDING_ACTIVITY_STATE_SCHEDULED);
    *p->mutable_heartbeat_details() = a.heartbeat_details();
    *p->mutable_last_heartbeat_time() = a.last_heartbeat_time();
    *p->mutable_last_started_time() = a.started_time();
    p->set_attempt(a.attempt());
    p->set_maximum_attempts(a.retry_policy().maximum_attempts());
    *p->mutable_scheduled_time() = a.scheduled_time();
    if (FromProto(a.schedule_to_close_timeout()) > absl::ZeroDuration()) {
      ToProto(FromProto(a.scheduled_time()) + FromProto(a.schedule_to_close_timeout()),
              p->mutable_expiration_time());
    }
    *p->mutable_last_failure() = a.last_failure();
    p->set_last_worker_identity(a.last_worker_identity());
    p->set_scheduled_event_id(a.scheduled_event_id());
  }
  for (const auto& [id, t] : state.timers()) {
    auto* p = response.add_pending_timers();
    p->set_timer_id(t.timer_id());
    p->set_started_event_id(t.started_event_id());
    *p->mutable_fire_time() = t.fire_time();
  }
  for (const auto& [initiated, c] : state.children()) {
    auto* p = response.add_pending_children();
    p->set_namespace_(c.namespace_());
    p->set_workflow_id(c.workflow_id());
    p->set_run_id(c.run_id());
    p->set_workflow_type_name(c.workflow_type());
    p->set_initiated_event_id(c.initiated_event_id());
    p->set_started_event_id(c.started_event_id());
    p->set_parent_close_policy(c.parent_close_policy());
  }
  if (state.workflow_task().scheduled_event_id() != 0) {
    const auto& wt = state.workflow_task();
    auto* p = response.mutable_pending_workflow_task();
    p->set_scheduled_event_id(wt.scheduled_event_id());
    p->set_started_event_id(wt.started_event_id());
    *p->mutable_scheduled_time() = wt.scheduled_time();
    *p->mutable_started_time() = wt.started_time();
    p->set_attempt(wt.attempt());
  }
  return response;
}

absl::StatusOr<api::History> HistoryEngine::ReadEvents(const std::string& run_id,
                                                       int64_t from_event_id, int64_t to_event_id,
                                                       size_t limit) {
  // Callers hold at most fiber::Mutexes (run locks): the reads may park.
  fiber::ParkScope park;
  api::History history;
  if (from_event_id == to_event_id && limit > 0) {
    // One event (a close event for a waiting caller): a point lookup, which the bloom filters
    // answer without positioning an iterator in every file of every level.
    ASSIGN_OR_RETURN(std::optional<std::string> stored,
                     store_->Get(Table::kHistory, keys::HistoryEvent(run_id, from_event_id)));
    if (!stored.has_value()) return history;
    api::HistoryEvent* event = history.add_events();
    if (!event->ParseFromString(*stored) || event->event_id() != from_event_id) {
      return absl::DataLossError(
          absl::StrCat("history event ", from_event_id, " of run ", run_id, " is corrupt"));
    }
    return history;
  }
  absl::Status parse_error;
  std::string end = to_event_id > 0 ? keys::HistoryEvent(run_id, to_event_id + 1)
                                    : keys::PrefixEnd(keys::HistoryPrefix(run_id));
  RETURN_IF_ERROR(store_->Scan(
      Table::kHistory, keys::HistoryEvent(run_id, from_event_id), end, limit,
      [&](std::string_view key, std::string_view value) {
        api::HistoryEvent* event = history.add_events();
        if (!event->ParseFromArray(value.data(), static_cast<int>(value.size())) ||
            event->event_id() != keys::HistoryEventId(key)) {
          parse_error = absl::DataLossError(absl::StrCat(
              "history event ", keys::HistoryEventId(key), " of run ", run_id, " is corrupt"));
          return false;
        }
        return true;
      }));
  RETURN_IF_ERROR(parse_error);
  // Check the history read back: ids must run without gaps from the first one asked for.
  int64_t expected = from_event_id;
  for (const auto& event : history.events()) {
    if (event.event_id() != expected++) {
      return absl::DataLossError(
          absl::StrCat("history of run ", run_id, " has a gap before event ", event.event_id()));
    }
  }
  return history;
}

absl::StatusOr<HistoryRead> HistoryEngine::ReadHistory(
    const api::GetWorkflowExecutionHistoryRequest& request) {
  const std::string ns = Namespace(request.namespace_());
  HistoryRead read;
  bool open;
  int64_t last_event_id;
  int64_t close_event_id;
  HistoryPagePosition position{.next = 1};
  if (!request.next_page_token().empty()) {
    ASSIGN_OR_RETURN(position, ParseHistoryPageToken(request.next_page_token()));
  }
  // The next pages of a workflow task's history whose task is transient: they end with its
  // events, unless the task ended meanwhile (the worker's completion is then refused anyway).
  std::vector<api::HistoryEvent> transient;
  {
    // Only what the read needs: this runs for every waiting client, so no copy of the state.
    ASSIGN_OR_RETURN(auto handle, LoadExecution(ns, request.execution()));
    const internal::ExecutionState& state = *(*handle)->state;
    read.run_id = state.run_id();
    open = state.status() == api::WORKFLOW_EXECUTION_STATUS_RUNNING;
    last_event_id = state.next_event_id() - 1;
    close_event_id = state.close_event_id();
    if (position.transient_started_event_id != 0 &&
        state.workflow_task().started_event_id() == position.transient_started_event_id) {
      transient = TransientWorkflowTaskEvents(state);
    }
  }

  if (request.history_event_filter_type() == api::HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT) {
    if (open) {
      read.wait = request.wait_new_event();
      return read;
    }
    ASSIGN_OR_RETURN(api::History history,
                     ReadEvents(read.run_id, close_event_id, close_event_id, 1));
    *read.response.mutable_history() = std::move(history);
    return read;
  }

  const int64_t from = position.next;
  int32_t page_size = request.maximum_page_size();
  if (page_size <= 0) page_size = limits::kDefaultHistoryPageSize;
  page_size = std::min(page_size, limits::kMaxHistoryPageSize);
  if (from > last_event_id) {
    // Nothing new yet. A closed run has nothing more to come.
    read.wait = open && request.wait_new_event();
    return read;
  }
  ASSIGN_OR_RETURN(api::History history,
                   ReadEvents(read.run_id, from, last_event_id, static_cast<size_t>(page_size)));
  int64_t next = from + history.events_size();
  *read.response.mutable_history() = std::move(history);
  if (!transient.empty()) {
    if (next <= last_event_id) {
      read.response.set_next_page_token(
          HistoryPageToken(next, position.transient_started_event_id));
    } else {
      for (api::HistoryEvent& event : transient) {
        *read.response.mutable_history()->add_events() = std::move(event);
      }
    }
    return read;
  }
  // A page token when more events exist, or when the run is open and the caller waits for new
  // ones (it polls again with the token).
  if (next <= last_event_id || (open && request.wait_new_event())) {
    read.response.set_next_page_token(HistoryPageToken(next));
  }
  return read;
}

absl::StatusOr<api::ListWorkflowExecutionsResponse> HistoryEngine::ListWorkflowExecutions(
    const api::ListWorkflowExecutionsRequest& request, const TaskQueueFilter& visible) {
  fiber::ParkScope park;  // No lock held: the visibility scan may park.
  return ListRuns(*store_, Namespace(request.namespace_()), request, visible);
}

absl::StatusOr<api::CountWorkflowExecutionsResponse> HistoryEngine::CountWorkflowExecutions(
    const api::CountWorkflowExecutionsRequest& request, const TaskQueueFilter& visible) {
  fiber::ParkScope park;  // No lock held: the visibility scan may park.
  return CountRuns(*store_, Namespace(request.namespace_()), request, visible);
}

absl::Status HistoryEngine::DropStaleTask(const QueuedTask& task) {
  if (task.task_id <= 0) return absl::OkStatus();  // A query task: never stored.
  WriteBatch batch;
  batch.Delete(Table::kTasks, task.Key());
  return store_->Commit(batch);
}

}  // namespace kiln::orchestrator
