// What workflow code sees. A workflow is a C++20 coroutine:
//
//   Task<absl::StatusOr<api::Payloads>> Hello(WorkflowContext& ctx, api::Payloads input) {
//     auto greeting = co_await ctx.ExecuteActivity("greet", input, {.start_to_close_timeout =
//                                                                   absl::Seconds(10)});
//     if (!greeting.ok()) co_return greeting.status();
//     co_return *greeting;
//   }
//
// Workflow code must be deterministic: it reads time, randomness and ids only through the
// context (recorded or derived from the history), does its I/O only in activities, and waits
// only on Futures and Tasks. The SDK replays the history to rebuild a workflow's state and
// fails the workflow task (not the workflow) with a non-determinism error naming the event and
// the command when the code no longer produces what the history recorded.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "kiln/api/v1/common.pb.h"
#include "kiln/api/v1/history.pb.h"
#include "sdk/coroutine.h"
#include "sdk/source_location.h"

namespace kiln::sdk {

namespace api = ::kiln::api::v1;

struct ActivityOptions {
  // Empty: the workflow's own task queue.
  std::string task_queue;
  // One of start-to-close or schedule-to-close must be set (start-to-close defaults to 1 min).
  absl::Duration start_to_close_timeout = absl::Minutes(1);
  absl::Duration schedule_to_close_timeout = absl::ZeroDuration();
  absl::Duration schedule_to_start_timeout = absl::ZeroDuration();
  absl::Duration heartbeat_timeout = absl::ZeroDuration();
  // Unset fields take the engine's defaults (1 s, ×2, 100 × initial, unlimited attempts).
  api::RetryPolicy retry_policy;
  // Empty: a sequence number, unique within the run.
  std::string activity_id;
};

struct WorkflowInfo {
  std::string ns;
  std::string workflow_id;
  std::string run_id;
  std::string workflow_type;
  std::string task_queue;
  absl::Time start_time;
};

class WorkflowInstance;

// The query every workflow answers without its author writing a handler: what its code waits on
// now (api::v1::WorkflowStackTrace as one "json/plain" payload). A handler the workflow
// registers under this name takes precedence.
inline constexpr char kStackTraceQuery[] = "__stack_trace";

// Signals of one name, in arrival order. Owned by the workflow's instance.
class SignalChannel {
 public:
  explicit SignalChannel(Scheduler* scheduler) : scheduler_(scheduler) {}
  // The next signal's input (waits for one).
  Future<api::Payloads> Receive(SourceLocation where = SourceLocation::Current());
  std::optional<api::Payloads> TryReceive();
  size_t pending() const { return queued_.size(); }
  // For the runtime: a signal arrived.
  void Deliver(api::Payloads input);

 private:
  friend class WorkflowInstance;  // lists the waits for the stack trace
  struct Waiting {
    Future<api::Payloads> future;
    SourceLocation where;
  };
  Scheduler* scheduler_;
  std::deque<api::Payloads> queued_;
  std::deque<Waiting> waiting_;
};

// Groups activities and timers so they can be cancelled together (a superseded build).
class CancellationScope {
 public:
  bool cancelled() const { return cancelled_; }

 private:
  friend class WorkflowInstance;
  bool cancelled_ = false;
  std::vector<std::string> activities_;
  std::vector<std::string> timers_;
};

struct ChildWorkflowOptions {
  std::string workflow_id;
  // Empty: the parent's task queue.
  std::string task_queue;
  api::ParentClosePolicy parent_close_policy = api::PARENT_CLOSE_POLICY_TERMINATE;
  absl::Duration run_timeout = absl::ZeroDuration();
  absl::Duration task_timeout = absl::ZeroDuration();
};

struct ChildWorkflow {
  // Resolves once the child runs (its execution), or with kAlreadyExists if it could not start.
  Future<absl::StatusOr<api::WorkflowExecution>> started;
  // Resolves with the child's result, or an error saying how it closed.
  Future<absl::StatusOr<api::Payloads>> result;
};

using QueryHandler = std::function<absl::StatusOr<api::Payloads>(const api::Payloads& args)>;

// Every call that returns something to await takes a SourceLocation defaulted to its caller's
// line: leave it out. It is what `kiln workflow stack` shows for that await.
class WorkflowContext {
 public:
  explicit WorkflowContext(WorkflowInstance* instance) : instance_(instance) {}

  // Schedules an activity; the future resolves with its result, or with an error status:
  // kDeadlineExceeded (timed out), kCancelled (cancelled), otherwise kUnknown with the
  // activity's failure message (the failure type in brackets).
  Future<absl::StatusOr<api::Payloads>> ExecuteActivity(
      const std::string& activity_type, const api::Payloads& input, const ActivityOptions& options,
      SourceLocation where = SourceLocation::Current());
  // A durable timer: resolves OK after `duration` (at once for a non-positive one).
  Future<absl::Status> Sleep(absl::Duration duration,
                             SourceLocation where = SourceLocation::Current());
  // Resolves OK once `condition` returns true. It is evaluated now and again each time the
  // workflow's code has run and stopped (after signals, activity results, timers...), so it
  // must read only the workflow's own state and have no side effects.
  Future<absl::Status> WaitCondition(std::function<bool()> condition,
                                     SourceLocation where = SourceLocation::Current());

  // The time of the current workflow task, from the history.
  absl::Time Now() const;
  // Deterministic randomness, seeded by the run id.
  uint64_t Random();
  std::string NewUuid();
  // Runs `fn` once and records its result in the history; a replay returns the recorded value.
  api::Payloads SideEffect(const std::function<api::Payloads()>& fn);

  // Signals: `SignalChannel(name).Receive()` waits for the next one.
  SignalChannel& GetSignalChannel(const std::string& name);
  // Queries: answered from the workflow's state, without writing history.
  void SetQueryHandler(const std::string& query_type, QueryHandler handler);

  // Cancellation of this workflow: resolves when a cancel is requested. A workflow that then
  // returns absl::CancelledError is recorded as canceled.
  Future<absl::Status> CancellationRequested(SourceLocation where = SourceLocation::Current());
  bool cancel_requested() const;
  // Why: the reason the requester gave (RequestCancelExternalWorkflow's, the client's), or "".
  const std::string& cancel_cause() const;
  // Activities and timers started with a scope (see ExecuteActivityIn / SleepIn) are cancelled
  // by Cancel: their futures resolve with kCancelled (a running activity hears it through its
  // heartbeat and may clean up).
  Future<absl::StatusOr<api::Payloads>> ExecuteActivityIn(
      CancellationScope& scope, const std::string& activity_type, const api::Payloads& input,
      const ActivityOptions& options, SourceLocation where = SourceLocation::Current());
  Future<absl::Status> SleepIn(CancellationScope& scope, absl::Duration duration,
                               SourceLocation where = SourceLocation::Current());
  void Cancel(CancellationScope& scope);

  ChildWorkflow ExecuteChildWorkflow(const std::string& workflow_type, const api::Payloads& input,
                                     const ChildWorkflowOptions& options,
                                     SourceLocation where = SourceLocation::Current());
  Future<absl::Status> SignalExternalWorkflow(const std::string& workflow_id,
                                              const std::string& run_id,
                                              const std::string& signal_name,
                                              const api::Payloads& input,
                                              SourceLocation where = SourceLocation::Current());
  // `reason` reaches the target as its cancel_cause(), with the cancel itself (a signal sent
  // first may arrive after it: the engine delivers each request on its own).
  Future<absl::Status> RequestCancelExternalWorkflow(
      const std::string& workflow_id, const std::string& run_id, const std::string& reason = "",
      SourceLocation where = SourceLocation::Current());
  // Sets typed search attributes on this run (visible to List/Count queries at once).
  void UpsertSearchAttributes(const api::SearchAttributes& attributes);
  // `co_return ctx.ContinueAsNew(input);` ends this run and starts the next with a fresh history.
  absl::Status ContinueAsNew(api::Payloads input);

  const WorkflowInfo& info() const;
  bool is_replaying() const;
  // Logs through the process logger, except while replaying (no duplicates).
  void Log(LogLevel level, std::string_view event, std::initializer_list<LogField> fields = {});

 private:
  WorkflowInstance* instance_;
};

using WorkflowFn =
    std::function<Task<absl::StatusOr<api::Payloads>>(WorkflowContext&, api::Payloads input)>;

// Waits for every future; returns their values in order.
template <typename T>
Task<std::vector<T>> WhenAll(std::vector<Future<T>> futures) {
  // The ones behind the first are waited for too (the stack trace shows them awaited).
  for (const auto& future : futures) ++future.state()->waiters;
  std::vector<T> values;
  values.reserve(futures.size());
  for (auto& future : futures) values.push_back(co_await future);
  co_return values;
}

// Resolves with the index of the first of `futures` to resolve.
template <typename F0, typename... Fs>
Future<size_t> WhenAny(const F0& f0, const Fs&... rest) {
  auto state = std::make_shared<typename Future<size_t>::State>();
  state->scheduler = f0.state()->scheduler;
  Future<size_t> first(state);
  // Each is waited for until one resolves (for the stack trace); weak, so that a WhenAny that
  // never resolves holds no cycle of states.
  ++f0.state()->waiters;
  (++rest.state()->waiters, ...);
  // The inputs hold the result weakly: the awaiting coroutine holds it, and once it has moved
  // on an input that is still pending drops its callback instead of keeping one per call.
  size_t index = 0;
  std::weak_ptr<typename Future<size_t>::State> weak = state;
  auto resolve = [weak](size_t i) {
    if (auto s = weak.lock()) Future<size_t>(std::move(s)).Resolve(i);
  };
  f0.OnReadyWhileAlive(weak, [resolve, i = index++] { resolve(i); });
  (rest.OnReadyWhileAlive(weak, [resolve, i = index++] { resolve(i); }), ...);
  first.OnReady(
      [inputs = std::make_tuple(std::weak_ptr(f0.state()), std::weak_ptr(rest.state())...)] {
        std::apply(
            [](const auto&... input) {
              auto release = [](const auto& weak) {
                if (auto s = weak.lock()) --s->waiters;
              };
              (release(input), ...);
            },
            inputs);
      });
  return first;
}

}  // namespace kiln::sdk
