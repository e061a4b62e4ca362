// The web console's files and JSON API (worker/console) as kiln-worker serves them: through the
// HTTP front, over the real PlatformApi, workflows and orchestrator (console_harness.h). Covers
// the files' headers and 404s, the token check of every call, answers that are exactly
// protobuf's JSON mapping of the API's messages, the filters and limits, the log stream and its
// resumption, and cancel of a deployment and of a workflow.
#include <catch2/catch.hpp>

#include <signal.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/util/message_differencer.h"
#include "kiln/api/v1/stack_trace.pb.h"
#include "kiln/platform/v1/console.pb.h"
#include "tests/testutil/console_harness.h"
#include "tests/testutil/orchestrator.h"
#include "tests/testutil/process.h"
#include "tests/testutil/test_worker.h"
#include "worker/console/static_files.h"

namespace kiln::worker::console {
namespace {

using google::protobuf::util::MessageDifferencer;

std::string Json(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  REQUIRE(google::protobuf::util::MessageToJsonString(message, &json, options).ok());
  return json;
}

std::string Escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '/') {
      out += "%2F";
    } else if (c == ' ') {
      out += "%20";
    } else if (c == '"') {
      out += "%22";
    } else if (c == '=') {
      out += "%3D";
    } else {
      out += c;
    }
  }
  return out;
}

struct SseEvent {
  std::string type;
  std::string id;
  std::string data;
};

std::vector<SseEvent> ParseEvents(const std::string& body) {
  std::vector<SseEvent> events;
  for (absl::string_view block : absl::StrSplit(body, "\n\n", absl::SkipEmpty())) {
    SseEvent event;
    for (absl::string_view line : absl::StrSplit(block, '\n')) {
      if (absl::ConsumePrefix(&line, "event: ")) event.type = std::string(line);
      if (absl::ConsumePrefix(&line, "id: ")) event.id = std::string(line);
      if (absl::ConsumePrefix(&line, "data: ")) event.data = std::string(line);
    }
    if (!event.type.empty()) events.push_back(event);
  }
  return events;
}

// The log's text in the events, from their LogChunk data.
std::string LogText(const std::vector<SseEvent>& events) {
  std::string text;
  for (const SseEvent& event : events) {
    if (event.type == "log") text += ParseJson<pb::LogChunk>(event.data).data();
  }
  return text;
}

TEST_CASE("The console serves its embedded files with strict headers and 404 elsewhere",
          "[console]") {
  ConsoleHarness h;
  auto index = h.Call("GET", "/", "");
  CHECK(index.status == 200);
  CHECK(index.Header("Content-Type") == "text/html; charset=utf-8");
  CHECK(absl::StrContains(index.Header("Content-Security-Policy"), "script-src 'self'"));
  CHECK_FALSE(absl::StrContains(index.Header("Content-Security-Policy"), "unsafe-inline"));
  CHECK(index.Header("X-Content-Type-Options") == "nosniff");
  CHECK(index.Header("Cache-Control") == "no-cache");
  const EmbeddedFile* file = FindStaticFile("/index.html");
  REQUIRE(file != nullptr);
  CHECK(index.body == std::string(reinterpret_cast<const char*>(file->data), file->size));
  // Unchanged: 304 with no body.
  testutil::HttpCallOptions revalidate;
  revalidate.headers.push_back({"If-None-Match", index.Header("ETag")});
  auto again = testutil::HttpCall(h.port(), "GET", "/", revalidate);
  REQUIRE(again.ok());
  CHECK(again->status == 304);
  CHECK(again->body.empty());

  auto script = h.Call("GET", "/app.js", "");
  CHECK(script.status == 200);
  CHECK(script.Header("Content-Type") == "text/javascript; charset=utf-8");
  CHECK(h.Call("GET", "/style.css", "").Header("Content-Type") == "text/css; charset=utf-8");

  auto missing = h.Call("GET", "/no-such-file.js", "");
  CHECK(missing.status == 404);
  CHECK(missing.Header("X-Content-Type-Options") == "nosniff");
  CHECK(h.Call("GET", "/api/v1/nothing-here", h.admin).status == 404);
  CHECK(h.Call("POST", "/index.html", "").status == 405);
  // The webhook endpoint and the health check keep their routes.
  CHECK(h.Call("GET", "/healthz", "").body == "{\"status\":\"ok\"}");
  CHECK(h.Call("GET", "/webhooks/github", "").status == 405);
}

TEST_CASE("Every console API call needs a token that BuildService would accept", "[console]") {
  ConsoleHarness h;
  const std::string worker = MintToken(h.key, auth::Scope::kWorker);
  for (const char* path :
       {"/api/v1/projects", "/api/v1/projects/web", "/api/v1/deployments",
        "/api/v1/deployments/web-head-abcdef", "/api/v1/workflows",
        "/api/v1/workflow?id=project%2Fweb", "/api/v1/workflow/history?id=project%2Fweb",
        "/api/v1/deployments/web-head-abcdef/log", "/api/v1/workflow/stack?id=project%2Fweb",
        "/api/v1/workflow/log?id=project%2Fweb",
        "/api/v1/taskqueue?name=kiln-platform&kind=activity", "/api/v1/machines"}) {
    INFO(path);
    auto none = h.Call("GET", path, "");
    CHECK(none.status == 401);
    CHECK(none.Header("WWW-Authenticate") == "Bearer");
    CHECK(absl::StrContains(none.body, "a token is required"));
    CHECK(h.Call("GET", path, "kiln1.not.valid").status == 401);
    CHECK(h.Call("GET", path, worker).status == 403);
  }
  CHECK(h.Call("GET", "/api/v1/projects", h.read_only).status == 200);
  CHECK(h.Call("GET", "/api/v1/projects", h.admin).status == 200);
  // State changes: POST only, and an admin token only.
  for (const char* path :
       {"/api/v1/deployments/web-head-abcdef/cancel", "/api/v1/workflow/cancel?id=x",
        "/api/v1/deployments/web-head-abcdef/redeploy",
        "/api/v1/deployments/web-head-abcdef/rollback", "/api/v1/workflow/signal?id=x",
        "/api/v1/workflow/terminate?id=x", "/api/v1/workflow/reset?id=x"}) {
    INFO(path);
    CHECK(h.Call("GET", path, h.admin).status == 405);
    CHECK(h.Call("POST", path, "").status == 401);
    auto read_only = h.Call("POST", path, h.read_only);
    CHECK(read_only.status == 403);
    CHECK(absl::StrContains(read_only.body, "read-only token may not call it"));
  }
  // Engine calls carry the caller's token, which the orchestrator judges itself: once it is
  // revoked there, they are refused even where this harness's BuildServiceAuth (which does not
  // confirm tokens) would still take it.
  const std::string revoked = MintToken(h.key, auth::Scope::kAdmin);
  {
    api::RevokeTokenRequest revoke;
    revoke.set_token(revoked);
    api::RevokeTokenResponse done;
    grpc::ClientContext context;
    REQUIRE(
        h.p.orchestrator.connection().workflow_service().RevokeToken(&context, revoke, &done).ok());
  }
  CHECK(h.Call("GET", "/api/v1/workflows", revoked).status == 401);
  CHECK(h.Call("GET", "/api/v1/workflow?id=project%2Fweb", revoked).status == 401);
  CHECK(h.Call("GET", "/api/v1/workflows", h.read_only).status == 200);
  // An error never repeats the token.
  auto bad = h.Call("GET", "/api/v1/projects", h.admin + "x");
  CHECK(bad.status == 401);
  CHECK_FALSE(absl::StrContains(bad.body, h.admin));
}

TEST_CASE("The console API answers with protobuf's JSON mapping of the API's messages",
          "[console]") {
  ConsoleHarness h;
  const std::string id = h.p.Push("main", fakes::Hex40("commit-1"));
  const pb::Deployment ended = h.p.WaitEnded(id);
  REQUIRE(ended.state() == pb::DEPLOYMENT_STATE_SUCCEEDED);

  // Projects: the list and one project, exactly as PlatformApi returns them.
  auto projects = h.Call("GET", "/api/v1/projects", h.read_only);
  REQUIRE(projects.status == 200);
  CHECK(projects.Header("Content-Type") == "application/json");
  CHECK(projects.Header("Cache-Control") == "no-store");
  auto expected_projects = h.p.api->ListProjects([] {
    pb::ListProjectsRequest r;
    r.set_page_size(kDefaultConsolePageSize);
    return r;
  }());
  REQUIRE(expected_projects.ok());
  CHECK(projects.body == Json(*expected_projects));
  CHECK(absl::StrContains(projects.body, "\"repositoryUrl\":\"file:///srv/git/web.git\""));
  auto project =
      ParseJson<pb::GetProjectResponse>(h.Call("GET", "/api/v1/projects/web", h.admin).body);
  CHECK(project.state().production().id() == id);
  CHECK(h.Call("GET", "/api/v1/projects/nope", h.admin).status == 404);

  // A deployment: byte for byte the mapping of GetDeployment.
  auto deployment = h.Call("GET", "/api/v1/deployments/" + id, h.admin);
  REQUIRE(deployment.status == 200);
  auto expected = h.p.api->GetDeployment(id);
  REQUIRE(expected.ok());
  CHECK(deployment.body == Json(*expected));
  CHECK(absl::StrContains(deployment.body, "\"state\":\"DEPLOYMENT_STATE_SUCCEEDED\""));
  CHECK(absl::StrContains(deployment.body, "\"commitSha\":\"" + fakes::Hex40("commit-1") + "\""));
  CHECK(ParseJson<pb::Deployment>(deployment.body).steps_size() == ended.steps_size());

  // The list and its filters.
  auto listed = ParseJson<pb::ListDeploymentsResponse>(
      h.Call("GET", "/api/v1/deployments?project=web&branch=main&status=succeeded", h.admin).body);
  REQUIRE(listed.deployments_size() == 1);
  CHECK(listed.deployments(0).id() == id);
  CHECK(ParseJson<pb::ListDeploymentsResponse>(
            h.Call("GET", "/api/v1/deployments?status=DEPLOYMENT_STATE_FAILED", h.admin).body)
            .deployments_size() == 0);
  CHECK(ParseJson<pb::ListDeploymentsResponse>(
            h.Call("GET", "/api/v1/deployments?branch=other", h.admin).body)
            .deployments_size() == 0);
  CHECK(h.Call("GET", "/api/v1/deployments?status=done", h.admin).status == 400);
  CHECK(h.Call("GET", "/api/v1/deployments?page_size=x", h.admin).status == 400);
  CHECK(h.Call("GET", "/api/v1/deployments?page_token=%%%", h.admin).status == 400);

  // Workflows: the visibility query, a run's description and its history.
  const std::string workflow_id = DeploymentWorkflowId(id);
  auto workflows = ParseJson<api::ListWorkflowExecutionsResponse>(
      h.Call("GET", "/api/v1/workflows?query=" + Escape("WorkflowId = \"" + workflow_id + "\""),
             h.admin)
          .body);
  REQUIRE(workflows.executions_size() == 1);
  CHECK(workflows.executions(0).execution().workflow_id() == workflow_id);
  CHECK(
      h.Call("GET", "/api/v1/workflows?query=" + Escape("NoSuchField = 1 AND ("), h.admin).status ==
      400);
  auto described = ParseJson<api::DescribeWorkflowExecutionResponse>(
      h.Call("GET", "/api/v1/workflow?id=" + Escape(workflow_id), h.admin).body);
  CHECK(described.workflow_execution_info().status() == api::WORKFLOW_EXECUTION_STATUS_COMPLETED);
  const std::string run_id = described.workflow_execution_info().execution().run_id();
  auto history = h.Call(
      "GET", "/api/v1/workflow/history?id=" + Escape(workflow_id) + "&run_id=" + run_id, h.admin);
  REQUIRE(history.status == 200);
  auto expected_history =
      testutil::GetHistory(h.p.orchestrator.connection().workflow_service(), workflow_id, run_id);
  REQUIRE(expected_history.ok());
  auto page = ParseJson<api::GetWorkflowExecutionHistoryResponse>(history.body);
  CHECK(MessageDifferencer::Equals(page.history(), *expected_history));
  CHECK(page.next_page_token().empty());
  // Paged: two events a page, and the token from one page reads the next.
  auto first = ParseJson<api::GetWorkflowExecutionHistoryResponse>(
      h.Call("GET", "/api/v1/workflow/history?page_size=2&id=" + Escape(workflow_id), h.admin)
          .body);
  CHECK(first.history().events_size() == 2);
  REQUIRE_FALSE(first.next_page_token().empty());
  std::string token_json = Json(first);
  std::string token = token_json.substr(token_json.find("\"nextPageToken\":\"") + 17);
  token = token.substr(0, token.find('"'));
  std::string escaped;
  for (char c : token)
    escaped += c == '+' ? std::string("%2B") : c == '=' ? "%3D" : std::string(1, c);
  auto second = ParseJson<api::GetWorkflowExecutionHistoryResponse>(
      h.Call("GET",
             "/api/v1/workflow/history?page_size=2&id=" + Escape(workflow_id) +
                 "&run_id=" + run_id + "&page_token=" + escaped,
             h.admin)
          .body);
  REQUIRE(second.history().events_size() >= 1);
  CHECK(second.history().events(0).event_id() == 3);
  CHECK(h.Call("GET", "/api/v1/workflow?id=nope", h.admin).status == 404);
  CHECK(h.Call("GET", "/api/v1/workflow", h.admin).status == 400);

  // Limits: a page is capped, a long query string and a big body are refused.
  CHECK(h.Call("GET", "/api/v1/workflows?page_size=100000", h.admin).status == 200);
  CHECK(h.Call("GET", "/api/v1/workflows?query=" + std::string(kMaxConsoleQueryBytes, 'a'), h.admin)
            .status == 414);
  CHECK(h.Call("POST", "/api/v1/deployments/" + id + "/cancel", h.admin,
               std::string(kMaxConsoleBodyBytes + 1, ' '))
            .status == 413);
  CHECK(h.Call("POST", "/api/v1/deployments/" + id + "/cancel", h.admin, "{not json").status ==
        400);
}

TEST_CASE("The console fills a list page behind 10000 newer runs that do not match", "[console]") {
  ConsoleHarness h;
  const std::string id = h.p.Push("main", fakes::Hex40("commit-1"));
  h.p.WaitEnded(id);
  // More than the orchestrator examines in one List call (kMaxListScan), all newer.
  h.StartIdleWorkflows(10'500, "idle-");
  // The platform itself too: a webhook delivery must still find the project.
  auto hooked = h.p.api->WebhookProjects();
  REQUIRE(hooked.ok());
  REQUIRE(hooked->size() == 1);
  CHECK(hooked->front().id == "web");
  pb::ListProjectsRequest first_page;
  auto listed = h.p.api->ListProjects(first_page);
  REQUIRE(listed.ok());
  CHECK(listed->projects_size() == 1);
  auto projects =
      ParseJson<pb::ListProjectsResponse>(h.Call("GET", "/api/v1/projects", h.admin).body);
  REQUIRE(projects.projects_size() == 1);
  CHECK(projects.projects(0).id() == "web");
  auto deployments = ParseJson<pb::ListDeploymentsResponse>(
      h.Call("GET", "/api/v1/deployments?project=web", h.admin).body);
  REQUIRE(deployments.deployments_size() == 1);
  CHECK(deployments.deployments(0).id() == id);
  auto workflows = ParseJson<api::ListWorkflowExecutionsResponse>(
      h.Call("GET",
             "/api/v1/workflows?query=" + Escape("WorkflowType = \"kiln.DeploymentWorkflow\""),
             h.admin)
          .body);
  REQUIRE(workflows.executions_size() == 1);
  CHECK(workflows.executions(0).execution().workflow_id() == DeploymentWorkflowId(id));
}

TEST_CASE("The console's log stream sends the whole log and resumes from Last-Event-ID",
          "[console]") {
  ConsoleHarness h;
  h.p.agent.HoldBuilds(true);
  const std::string id = h.p.Push("main", fakes::Hex40("commit-1"));
  REQUIRE(testutil::WaitFor([&] { return h.p.agent.building(); }, fakes::kPlatformWait));
  h.AppendBuildLog(id, "step 1/2: compiling\n");
  h.AppendBuildLog(id, "step 2/2: linking\n");
  h.p.agent.HoldBuilds(false);
  h.p.WaitEnded(id);

  auto whole = h.Call("GET", "/api/v1/deployments/" + id + "/log", h.read_only);
  REQUIRE(whole.status == 200);
  CHECK(whole.Header("Content-Type") == "text/event-stream; charset=utf-8");
  std::vector<SseEvent> events = ParseEvents(whole.body);
  REQUIRE(events.size() >= 2);
  CHECK(events.back().type == "end");
  CHECK(ParseJson<pb::Deployment>(events.back().data).state() == pb::DEPLOYMENT_STATE_SUCCEEDED);
  const std::string text = LogText(events);
  CHECK(absl::StrContains(text, "step 1/2: compiling\nstep 2/2: linking\n"));
  // Each id is the offset past its chunk: resuming from the first gives the rest.
  REQUIRE(events[0].type == "log");
  int64_t first_end = 0;
  REQUIRE(absl::SimpleAtoi(events[0].id, &first_end));
  testutil::HttpCallOptions resume;
  resume.headers = {{"Authorization", "Bearer " + h.admin}, {"Last-Event-ID", events[0].id}};
  auto rest = testutil::HttpCall(h.port(), "GET", "/api/v1/deployments/" + id + "/log", resume);
  REQUIRE(rest.ok());
  CHECK(LogText(ParseEvents(rest->body)) == text.substr(static_cast<size_t>(first_end)));
  CHECK(h.Call("GET", "/api/v1/deployments/" + id + "/log?offset=-1", h.admin).status == 400);
  CHECK(h.Call("GET", "/api/v1/deployments/web-head-zzzzzz/log", h.admin).status == 404);
  CHECK(h.console.log_streams() == 0);
}

TEST_CASE("Cancel from the console cancels a deployment and a workflow", "[console]") {
  ConsoleHarness h;
  h.p.agent.HoldBuilds(true);
  const std::string id = h.p.Push("main", fakes::Hex40("commit-1"));
  REQUIRE(testutil::WaitFor([&] { return h.p.agent.building(); }, fakes::kPlatformWait));
  auto canceled = h.Call("POST", "/api/v1/deployments/" + id + "/cancel", h.admin,
                         "{\"reason\":\"from the test\"}");
  INFO(canceled.body);
  CHECK(canceled.status == 200);
  CHECK(canceled.body == "{}");
  CHECK(h.p.WaitEnded(id).state() == pb::DEPLOYMENT_STATE_CANCELED);

  // A workflow: the next deployment's run, canceled through the engine's own call.
  const std::string next = h.p.Push("main", fakes::Hex40("commit-1"));
  REQUIRE(testutil::WaitFor([&] { return h.p.agent.building(); }, fakes::kPlatformWait));
  REQUIRE(testutil::WaitFor(
      [&] {
        return h.Call("GET", "/api/v1/workflow?id=" + Escape(DeploymentWorkflowId(next)), h.admin)
                   .status == 200;
      },
      fakes::kPlatformWait));
  auto workflow =
      h.Call("POST", "/api/v1/workflow/cancel?id=" + Escape(DeploymentWorkflowId(next)), h.admin);
  INFO(workflow.body);
  CHECK(workflow.status == 200);
  CHECK(h.p.WaitEnded(next).state() == pb::DEPLOYMENT_STATE_CANCELED);
}

TEST_CASE("Redeploy and roll back from the console start deployments", "[console]") {
  ConsoleHarness h;
  const std::string id = h.p.Push("main", fakes::Hex40("commit-1"));
  const pb::Deployment first = h.p.WaitEnded(id);
  REQUIRE(first.state() == pb::DEPLOYMENT_STATE_SUCCEEDED);

  // Redeploy: the same project, branch and commit; a retried click (same request id) starts one.
  const std::string body = "{\"requestId\":\"click-1\"}";
  auto redeployed = h.Call("POST", "/api/v1/deployments/" + id + "/redeploy", h.admin, body);
  INFO(redeployed.body);
  REQUIRE(redeployed.status == 200);
  const auto started = ParseJson<pb::TriggerBuildResponse>(redeployed.body);
  CHECK(started.deployment_id() != id);
  CHECK(ParseJson<pb::TriggerBuildResponse>(
            h.Call("POST", "/api/v1/deployments/" + id + "/redeploy", h.admin, body).body)
            .deployment_id() == started.deployment_id());
  const pb::Deployment again = h.p.WaitEnded(started.deployment_id());
  CHECK(again.state() == pb::DEPLOYMENT_STATE_SUCCEEDED);
  CHECK(again.branch() == "main");
  CHECK(again.commit_sha() == first.commit_sha());
  CHECK(again.trigger() == "console");

  // Roll back to the first: its image, deployed again.
  auto rolled = h.Call("POST", "/api/v1/deployments/" + id + "/rollback", h.admin);
  INFO(rolled.body);
  REQUIRE(rolled.status == 200);
  const pb::Deployment back =
      h.p.WaitEnded(ParseJson<pb::RollbackResponse>(rolled.body).deployment_id());
  CHECK(back.state() == pb::DEPLOYMENT_STATE_SUCCEEDED);
  CHECK(back.rollback_of() == id);
  CHECK(back.image_digest() == first.image_digest());

  // What an attacker or a typo sends.
  CHECK(h.Call("POST", "/api/v1/deployments/web-head-zzzzzz/redeploy", h.admin).status == 404);
  CHECK(h.Call("POST", "/api/v1/deployments/web-head-zzzzzz/rollback", h.admin).status == 404);
  CHECK(h.Call("POST", "/api/v1/deployments/x/redeploy", h.admin).status == 400);
  CHECK(h.Call("POST", "/api/v1/deployments/" + id + "/redeploy", h.admin, "{").status == 400);
  CHECK(h.Call("POST", "/api/v1/deployments/" + id + "/redeploy", h.admin, "{\"x\":1}").status ==
        400);
  CHECK(h.Call("POST", "/api/v1/deployments/" + id + "/redeploy", h.admin,
               "{\"requestId\":\"" + std::string(300, 'r') + "\"}")
            .status == 400);
  CHECK(h.Call("POST", "/api/v1/deployments/" + id + "/rollback", h.admin,
               "{\"projectId\":\"other\"}")
            .status == 400);
  CHECK(h.Call("POST", "/api/v1/deployments/" + id + "/redeploy", h.admin,
               std::string(kMaxConsoleBodyBytes + 1, ' '))
            .status == 413);
  // A deployment that did not succeed cannot be rolled back to, even when its build pushed an
  // image before the cancel reached it (a new tree, so it is built).
  h.p.agent.SetRevision(fakes::Hex40("commit-2"),
                        {fakes::Hex40("commit-2"), fakes::Hex40("tree-2")});
  h.p.agent.HoldBuilds(true);
  const std::string canceled = h.p.Push("main", fakes::Hex40("commit-2"));
  REQUIRE(testutil::WaitFor([&] { return h.p.agent.building(); }, fakes::kPlatformWait));
  REQUIRE(h.Call("POST", "/api/v1/deployments/" + canceled + "/cancel", h.admin).status == 200);
  h.p.agent.HoldBuilds(false);
  REQUIRE(h.p.WaitEnded(canceled).state() == pb::DEPLOYMENT_STATE_CANCELED);
  auto refused = h.Call("POST", "/api/v1/deployments/" + canceled + "/rollback", h.admin);
  CHECK(refused.status == 412);
  CHECK(absl::StrContains(refused.body, "did not succeed (canceled)"));
}

TEST_CASE("Signal terminate and reset from the console act on the run", "[console]") {
  ConsoleHarness h;
  auto& engine = h.p.orchestrator.connection().workflow_service();
  // A run nobody serves: it stays running and records what is sent to it.
  REQUIRE(testutil::StartWorkflow(engine, "idle-1", "bench.Sleep", "bench-queue", "").ok());
  const std::string signal_body =
      "{\"signalName\":\"poke\",\"input\":{\"payloads\":[{\"metadata\":{\"encoding\":\"" +
      absl::Base64Escape("json/plain") + "\"},\"data\":\"" + absl::Base64Escape("{\"n\":1}") +
      "\"}]},\"requestId\":\"s-1\",\"identity\":\"someone else\"}";
  auto signaled = h.Call("POST", "/api/v1/workflow/signal?id=idle-1", h.admin, signal_body);
  INFO(signaled.body);
  REQUIRE(signaled.status == 200);
  // The same request id again is delivered once.
  REQUIRE(h.Call("POST", "/api/v1/workflow/signal?id=idle-1", h.admin, signal_body).status == 200);
  auto history = testutil::GetHistory(engine, "idle-1", "");
  REQUIRE(history.ok());
  int signals = 0;
  for (const api::HistoryEvent& event : history->events()) {
    if (event.event_type() != api::EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED) continue;
    ++signals;
    const auto& a = event.workflow_execution_signaled_event_attributes();
    CHECK(a.signal_name() == "poke");
    CHECK(a.input().payloads(0).data() == "{\"n\":1}");
    CHECK(a.identity() == "kiln-worker web console");  // not what the body said
  }
  CHECK(signals == 1);
  CHECK(h.Call("POST", "/api/v1/workflow/signal?id=idle-1", h.admin, "{}").status == 400);
  CHECK(h.Call("POST", "/api/v1/workflow/signal", h.admin, "{\"signalName\":\"x\"}").status == 400);
  CHECK(h.Call("POST", "/api/v1/workflow/signal?id=nobody", h.admin, "{\"signalName\":\"x\"}")
            .status == 404);
  CHECK(h.Call("POST", "/api/v1/workflow/signal?id=idle-1", h.admin,
               "{\"signalName\":\"x\",\"input\":\"not payloads\"}")
            .status == 400);

  // Reset needs a point, and a completed workflow task to go back to (this run has none).
  CHECK(h.Call("POST", "/api/v1/workflow/reset?id=idle-1", h.admin, "{}").status == 400);
  CHECK(h.Call("POST", "/api/v1/workflow/reset?id=idle-1", h.admin,
               "{\"resetPoint\":\"RESET_POINT_LAST_WORKFLOW_TASK\"}")
            .status == 412);
  CHECK(h.Call("POST", "/api/v1/workflow/reset?id=idle-1", h.admin,
               "{\"resetPoint\":\"NO_SUCH_POINT\"}")
            .status == 400);

  auto terminated = h.Call("POST", "/api/v1/workflow/terminate?id=idle-1", h.admin,
                           "{\"reason\":\"from the test\"}");
  INFO(terminated.body);
  REQUIRE(terminated.status == 200);
  auto described = ParseJson<api::DescribeWorkflowExecutionResponse>(
      h.Call("GET", "/api/v1/workflow?id=idle-1", h.read_only).body);
  CHECK(described.workflow_execution_info().status() == api::WORKFLOW_EXECUTION_STATUS_TERMINATED);
  CHECK(h.Call("POST", "/api/v1/workflow/terminate?id=idle-1", h.admin).status == 412);
  CHECK(h.Call("POST", "/api/v1/workflow/terminate?id=idle-1", h.admin,
               "{\"reason\":\"" + std::string(2000, 'x') + "\"}")
            .status == 400);

  // Reset a closed run to its last workflow task: a new run, which the worker completes again.
  testutil::TestWorker worker(h.p.orchestrator.connection().channel(), "steps-queue");
  worker.Start();
  auto first = testutil::StartWorkflow(engine, "steps-1", "steps", "steps-queue", "1");
  REQUIRE(first.ok());
  REQUIRE(testutil::WaitForClose(engine, "steps-1", *first, absl::Seconds(30)).ok());
  auto reset = h.Call("POST", "/api/v1/workflow/reset?id=steps-1&run_id=" + *first, h.admin,
                      "{\"resetPoint\":\"RESET_POINT_LAST_WORKFLOW_TASK\",\"requestId\":\"r-1\"}");
  INFO(reset.body);
  REQUIRE(reset.status == 200);
  const std::string new_run = ParseJson<api::ResetWorkflowExecutionResponse>(reset.body).run_id();
  CHECK(!new_run.empty());
  CHECK(new_run != *first);
  auto closed = testutil::WaitForClose(engine, "steps-1", new_run, absl::Seconds(30));
  REQUIRE(closed.ok());
  CHECK(closed->event_type() == api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED);
  // A deployment's run is its project's child, which the engine does not reset: said clearly.
  const std::string id = h.p.Push("main", fakes::Hex40("commit-1"));
  h.p.WaitEnded(id);
  auto child = h.Call("POST", "/api/v1/workflow/reset?id=" + Escape(DeploymentWorkflowId(id)),
                      h.admin, "{\"resetPoint\":\"RESET_POINT_LAST_WORKFLOW_TASK\"}");
  CHECK(child.status == 412);
  CHECK(absl::StrContains(child.body, "child"));
}

TEST_CASE("The console shows a run's stack and log stream and the task queues and machines",
          "[console]") {
  ConsoleHarness h;
  h.p.agent.HoldBuilds(true);
  const std::string id = h.p.Push("main", fakes::Hex40("commit-1"));
  REQUIRE(testutil::WaitFor([&] { return h.p.agent.building(); }, fakes::kPlatformWait));
  const std::string workflow = Escape(DeploymentWorkflowId(id));

  // Where the deployment's code waits: on its build activity.
  auto stack = h.Call("GET", "/api/v1/workflow/stack?id=" + workflow, h.read_only);
  INFO(stack.body);
  REQUIRE(stack.status == 200);
  const auto trace = ParseJson<api::WorkflowStackTrace>(stack.body);
  CHECK(trace.workflow_id() == DeploymentWorkflowId(id));
  REQUIRE(trace.pending_size() >= 1);
  CHECK(trace.pending(0).kind() == api::AWAIT_KIND_ACTIVITY);
  CHECK(stack.body == Json(trace));
  CHECK(h.Call("GET", "/api/v1/workflow/stack?id=nobody", h.admin).status == 404);

  // The builder's queue has its agent polling; the platform's queue the worker.
  auto queue = h.Call("GET", "/api/v1/taskqueue?name=project%2Fweb&kind=activity", h.read_only);
  INFO(queue.body);
  REQUIRE(queue.status == 200);
  CHECK(ParseJson<api::DescribeTaskQueueResponse>(queue.body).pollers_size() >= 1);
  auto platform = ParseJson<api::DescribeTaskQueueResponse>(
      h.Call("GET", "/api/v1/taskqueue?name=kiln-platform&kind=workflow", h.admin).body);
  CHECK(platform.pollers_size() >= 1);
  CHECK(h.Call("GET", "/api/v1/taskqueue?name=kiln-platform", h.admin).status == 400);
  CHECK(h.Call("GET", "/api/v1/taskqueue?kind=activity", h.admin).status == 400);
  CHECK(h.Call("GET", "/api/v1/taskqueue?kind=activity&name=" + std::string(300, 'q'), h.admin)
            .status == 400);

  auto machines = h.Call("GET", "/api/v1/machines", h.read_only);
  INFO(machines.body);
  REQUIRE(machines.status == 200);
  const auto listed = ParseJson<pb::ListBuilderMachinesResponse>(machines.body);
  REQUIRE(listed.machines_size() == 1);
  CHECK(listed.machines(0).project_id() == "web");
  CHECK(listed.machines(0).provider() == "process");
  CHECK(listed.machines(0).error().empty());
  CHECK(machines.body == Json(listed));

  // The run's log stream, the same bytes as the deployment's build log.
  h.AppendBuildLog(id, "step 1/2: compiling\n");
  h.p.agent.HoldBuilds(false);
  h.p.WaitEnded(id);
  auto log = h.Call("GET", "/api/v1/workflow/log?id=" + workflow + "&stream=build", h.read_only);
  REQUIRE(log.status == 200);
  std::vector<SseEvent> events = ParseEvents(log.body);
  REQUIRE(!events.empty());
  CHECK(events.back().type == "end");
  CHECK(ParseJson<api::DescribeWorkflowExecutionResponse>(events.back().data)
            .workflow_execution_info()
            .status() == api::WORKFLOW_EXECUTION_STATUS_COMPLETED);
  std::string text;
  for (const SseEvent& event : events) {
    if (event.type == "log") text += ParseJson<api::ReadLogResponse>(event.data).data();
  }
  CHECK(absl::StrContains(text, "step 1/2: compiling\n"));
  CHECK(text ==
        LogText(ParseEvents(h.Call("GET", "/api/v1/deployments/" + id + "/log", h.admin).body)));
  // A stream that does not exist ends at once, empty.
  auto none = ParseEvents(
      h.Call("GET", "/api/v1/workflow/log?id=" + workflow + "&stream=other", h.admin).body);
  REQUIRE(none.size() == 1);
  CHECK(none[0].type == "end");
  CHECK(h.Call("GET", "/api/v1/workflow/log?id=" + workflow + "&stream=..%2Fx", h.admin).status ==
        400);
  CHECK(h.Call("GET", "/api/v1/workflow/log?id=nobody", h.admin).status == 404);
  CHECK(h.Call("GET", "/api/v1/workflow/log?id=" + workflow + "&offset=x", h.admin).status == 400);
  CHECK(h.console.log_streams() == 0);
}

// The kiln-worker binary, as a person runs it: the console's first call (a token confirmed with
// the orchestrator) once crashed it (gRPC set up a channel on a civetweb thread's small stack),
// and its engine calls, made with the worker's token, reached only the worker's own queues.
TEST_CASE("kiln-worker's console answers at once and reaches runs on any task queue", "[console]") {
  testutil::TempDir dir;
  const std::string data = dir.path() + "/data";
  testutil::OrchestratorProcess orchestrator(data);
  REQUIRE(orchestrator.Start().ok());
  const std::string admin(
      absl::StripAsciiWhitespace(testutil::ReadFile(orchestrator.admin_token_file())));
  const int http = testutil::FreePort();
  auto worker =
      testutil::Process::Start(testutil::BinaryPath("kiln-worker"),
                               {"--orchestrator", orchestrator.address(), "--auth-key-file",
                                data + "/auth.key", "--data-dir", dir.path() + "/worker", "--http",
                                absl::StrCat("127.0.0.1:", http), "--metrics", "", "--listen", ""},
                               dir.path() + "/worker.log");
  REQUIRE(worker.ok());
  REQUIRE(testutil::WaitFor(
      [&] { return (*worker)->Output().find("worker.connected") != std::string::npos; },
      absl::Seconds(30)));
  REQUIRE(testutil::StartWorkflow(orchestrator.connection().workflow_service(), "elsewhere-1",
                                  "bench.Sleep", "some-other-queue", "")
              .ok());
  auto call = [&](const std::string& method, const std::string& path, const std::string& body) {
    testutil::HttpCallOptions options;
    options.headers.push_back({"Authorization", "Bearer " + admin});
    options.body = body;
    auto reply = testutil::HttpCall(http, method, path, options);
    INFO((*worker)->Output());
    REQUIRE(reply.ok());
    return *reply;
  };
  CHECK(call("GET", "/api/v1/workflow?id=elsewhere-1", "").status == 200);
  CHECK(call("GET", "/api/v1/projects", "").status == 200);
  CHECK(call("POST", "/api/v1/workflow/terminate?id=elsewhere-1", "{}").status == 200);
  CHECK(call("GET", "/api/v1/taskqueue?name=some-other-queue&kind=workflow", "").status == 200);
  CHECK((*worker)->Running());
  (*worker)->Signal(SIGTERM);
  REQUIRE((*worker)->Wait(absl::Seconds(20)).ok());
}

}  // namespace
}  // namespace kiln::worker::console

namespace kiln::worker::console {
namespace {

// The time each page's API call takes with 10,000 workflows in the visibility index (the issue
// asks under 200 ms a page). Not run by default (it starts 10,000 workflows first):
//   build/release/bin/console_api_test "[.bench]"
TEST_CASE("Console API page times with 10000 workflows", "[.bench]") {
  constexpr int kWorkflows = 10'000;
  constexpr int kRounds = 20;
  ConsoleHarness h;
  const std::string id = h.p.Push("main", fakes::Hex40("commit-1"));
  h.p.WaitEnded(id);
  const absl::Time fill_start = absl::Now();
  h.StartIdleWorkflows(kWorkflows, "bench-");
  WARN("started " << kWorkflows << " workflows in "
                  << absl::FormatDuration(absl::Now() - fill_start));

  // The first list page gives a token for a later page.
  auto first = ParseJson<api::ListWorkflowExecutionsResponse>(
      h.Call("GET", "/api/v1/workflows?page_size=50", h.admin).body);
  REQUIRE(first.executions_size() == 50);
  std::string escaped;
  absl::Base64Escape(first.next_page_token(), &escaped);
  std::string token;
  for (char c : escaped)
    token += c == '+'   ? std::string("%2B")
             : c == '=' ? "%3D"
             : c == '/' ? "%2F"
                        : std::string(1, c);
  const std::string workflow = Escape(DeploymentWorkflowId(id));
  const std::vector<std::pair<std::string, std::string>> calls = {
      {"workflows, first page of 50", "/api/v1/workflows?page_size=50"},
      {"workflows, next page", "/api/v1/workflows?page_size=50&page_token=" + token},
      {"workflows, query",
       "/api/v1/workflows?page_size=50&query=" +
           Escape("WorkflowType = \"bench.Sleep\" AND ExecutionStatus = \"Running\"")},
      {"projects", "/api/v1/projects"},
      {"project", "/api/v1/projects/web"},
      {"deployments", "/api/v1/deployments?page_size=50"},
      {"deployment", "/api/v1/deployments/" + id},
      {"workflow describe", "/api/v1/workflow?id=" + workflow},
      {"workflow history", "/api/v1/workflow/history?id=" + workflow},
      {"task queue project/web", "/api/v1/taskqueue?kind=activity&name=project%2Fweb"},
      {"machines", "/api/v1/machines"},
  };
  for (const auto& [name, path] : calls) {
    std::vector<double> ms;
    for (int i = 0; i < kRounds; ++i) {
      const absl::Time start = absl::Now();
      auto reply = h.Call("GET", path, h.admin);
      ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
      INFO(name << ": " << reply.body.substr(0, 300));
      REQUIRE(reply.status == 200);
      CHECK(reply.body.size() > 100);  // Never an empty page.
    }
    std::sort(ms.begin(), ms.end());
    WARN(name << ": median " << ms[ms.size() / 2] << " ms, max " << ms.back() << " ms over "
              << kRounds << " calls");
    CHECK(ms[ms.size() / 2] < 200);
  }
}

}  // namespace
}  // namespace kiln::worker::console
