// The worker's cache of running workflows: one entry per run, bounded, least recently used
// evicted first, and the instance further along kept when a run comes back twice.
#include "sdk/instance_cache.h"

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "common/proto_time.h"

namespace kiln::sdk {
namespace {

Task<absl::StatusOr<api::Payloads>> Sleeps(WorkflowContext& ctx, api::Payloads input) {
  absl::Status slept = co_await ctx.Sleep(absl::Hours(1));
  if (!slept.ok()) co_return slept;
  co_return input;
}

// A new instance of `run_id`: no task run yet (last started event 0).
std::unique_ptr<WorkflowInstance> Fresh(const std::string& run_id) {
  WorkflowInfo info;
  info.workflow_id = "wf-" + run_id;
  info.run_id = run_id;
  return std::make_unique<WorkflowInstance>(Sleeps, std::move(info));
}

// An instance of `run_id` that ran its first task (started event 3), waiting on its timer.
std::unique_ptr<WorkflowInstance> AfterFirstTask(const std::string& run_id) {
  auto instance = Fresh(run_id);
  api::History history;
  auto add = [&](api::EventType type) {
    api::HistoryEvent* event = history.add_events();
    event->set_event_id(history.events_size());
    event->set_event_type(type);
    ToProto(absl::FromUnixSeconds(1'800'000'000), event->mutable_event_time());
    return event;
  };
  add(api::EVENT_TYPE_WORKFLOW_EXECUTION_STARTED);
  add(api::EVENT_TYPE_WORKFLOW_TASK_SCHEDULED);
  add(api::EVENT_TYPE_WORKFLOW_TASK_STARTED)
      ->mutable_workflow_task_started_event_attributes()
      ->set_scheduled_event_id(2);
  auto commands = instance->ProcessWorkflowTask(history);
  REQUIRE(commands.ok());
  REQUIRE(commands->size() == 1);  // StartTimer
  REQUIRE(instance->last_started_event_id() == 3);
  return instance;
}

TEST_CASE("The instance cache evicts the least recently used run past its capacity") {
  InstanceCache cache(2);
  CHECK(cache.Put("a", Fresh("a")).empty());
  CHECK(cache.Put("b", Fresh("b")).empty());
  // "a" used again: "b" is now the least recently used.
  auto a = cache.Checkout("a");
  REQUIRE(a != nullptr);
  CHECK(cache.Checkout("a") == nullptr);  // out while its task runs
  CHECK(cache.Put("a", std::move(a)).empty());
  auto left = cache.Put("c", Fresh("c"));
  REQUIRE(left.size() == 1);
  CHECK(left[0]->info().run_id == "b");
  CHECK(cache.size() == 2);
  CHECK(cache.Contains("a"));
  CHECK(cache.Contains("c"));
  CHECK_FALSE(cache.Contains("b"));
}

TEST_CASE("A run put back while the cache holds it keeps one entry, further along wins") {
  // Two tasks of one run can end on two instances: the next task can come to another poller
  // (a full replay on a fresh instance) before the task that answered first puts its instance
  // back. The cache must then hold one of them, once: a second LRU node for the run would be
  // evicted later as a run the cache no longer has.
  const bool newer_first = GENERATE(true, false);
  CAPTURE(newer_first);
  InstanceCache cache(3);
  std::vector<std::unique_ptr<WorkflowInstance>> left;
  if (newer_first) {
    CHECK(cache.Put("r", AfterFirstTask("r")).empty());
    left = cache.Put("r", Fresh("r"));
  } else {
    CHECK(cache.Put("r", Fresh("r")).empty());
    left = cache.Put("r", AfterFirstTask("r"));
  }
  REQUIRE(left.size() == 1);
  CHECK(left[0]->last_started_event_id() == 0);  // the one behind goes
  CHECK(cache.size() == 1);

  // Many more runs than the capacity: every eviction names a run the cache holds.
  int evicted = 0;
  for (int i = 0; i < 10; ++i) {
    for (auto& gone : cache.Put(absl::StrCat("s", i), Fresh(absl::StrCat("s", i)))) {
      CHECK(gone != nullptr);
      ++evicted;
    }
    CHECK(cache.size() == std::min<size_t>(3, i + 2));
  }
  CHECK(evicted == 8);
  CHECK_FALSE(cache.Contains("r"));
  CHECK(cache.Checkout("r") == nullptr);

  // Put back again after eviction, the run is held afresh.
  CHECK(cache.Put("r", AfterFirstTask("r")).size() == 1);  // evicts s7
  auto r = cache.Checkout("r");
  REQUIRE(r != nullptr);
  CHECK(r->last_started_event_id() == 3);
}

TEST_CASE("The instance cache with capacity zero holds nothing") {
  InstanceCache cache(0);
  auto left = cache.Put("a", Fresh("a"));
  REQUIRE(left.size() == 1);
  CHECK(cache.size() == 0);
  CHECK(cache.Checkout("a") == nullptr);
}

}  // namespace
}  // namespace kiln::sdk
