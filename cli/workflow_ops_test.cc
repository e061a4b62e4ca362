// The text `kiln workflow stack` prints for each kind of await (FormatStackTrace), without a
// server; the commands themselves are tested in tests/integration/cli_workflow_ops_test.cc.
#include <catch2/catch.hpp>

#include "cli/workflow_ops.h"
#include "common/proto_time.h"

namespace kiln::cli {
namespace {

namespace api = ::kiln::api::v1;

api::PendingAwait* Add(api::WorkflowStackTrace& trace, api::AwaitKind kind, bool awaited,
                       int line = 0) {
  api::PendingAwait* p = trace.add_pending();
  p->set_kind(kind);
  p->set_awaited(awaited);
  if (line > 0) {
    p->mutable_location()->set_file("wf.cc");
    p->mutable_location()->set_line(line);
    p->mutable_location()->set_function("Build");
  }
  return p;
}

TEST_CASE("The stack trace text lists what is awaited then what is only started") {
  api::WorkflowStackTrace trace;
  trace.set_workflow_id("build-42");
  trace.set_run_id("r1");
  trace.set_workflow_type("Build");
  auto* timer = Add(trace, api::AWAIT_KIND_TIMER, true, 10);
  timer->set_timer_id("3");
  ToProto(absl::Minutes(5), timer->mutable_timer_duration());
  ToProto(absl::FromUnixSeconds(1'800'000'000), timer->mutable_fire_time());
  auto* child = Add(trace, api::AWAIT_KIND_CHILD_WORKFLOW, true, 12);
  child->set_workflow_id("build-42/child-4");
  child->set_workflow_type("Push");
  child->set_child_started(true);
  Add(trace, api::AWAIT_KIND_CONDITION, true, 14);
  auto* out = Add(trace, api::AWAIT_KIND_EXTERNAL_SIGNAL, false);
  out->set_workflow_id("other");
  out->set_signal_name("done");
  CHECK(FormatStackTrace(trace) ==
        "Workflow build-42 (type Build, run r1)\n"
        "Waiting on (3):\n"
        "  KIND       DETAILS                                                WHERE\n"
        "  timer      timer_id=3 duration=5m fires=2027-01-15T08:00:00.000Z  wf.cc:10 in Build\n"
        "  child      workflow_id=build-42/child-4 type=Push state=running   wf.cc:12 in Build\n"
        "  condition                                                         wf.cc:14 in Build\n"
        "Started, not awaited now (1):\n"
        "  KIND        DETAILS                        WHERE\n"
        "  signal-out  workflow_id=other signal=done  -\n");
}

TEST_CASE("The stack trace text of a workflow waiting on nothing says so") {
  api::WorkflowStackTrace trace;
  trace.set_workflow_id("w");
  trace.set_run_id("r");
  trace.set_workflow_type("T");
  CHECK(FormatStackTrace(trace) ==
        "Workflow w (type T, run r)\n"
        "Waiting on nothing: no coroutine of the workflow is suspended on an SDK await (it has "
        "returned, or its code waits on something only it knows).\n");
}

}  // namespace
}  // namespace kiln::cli
