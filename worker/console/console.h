// kiln-worker's web console, served on its HTTP server (worker/http, behind the front that
// caps connections and terminates TLS) under "/": the static files of static/ embedded in the
// binary (static_files.h), and a JSON API under /api/v1/ over PlatformApi and the engine's
// WorkflowService, every answer printed by protobuf's JSON mapping from an API message.
//
//   GET  /api/v1/projects                      ListProjectsResponse (page_size, page_token)
//   GET  /api/v1/projects/<id>                 GetProjectResponse
//   GET  /api/v1/deployments                   ListDeploymentsResponse (project, branch,
//                                              status: "building" or DEPLOYMENT_STATE_…, paged)
//   GET  /api/v1/deployments/<id>              Deployment
//   GET  /api/v1/deployments/<id>/log          the build log as server-sent events (below)
//   POST /api/v1/deployments/<id>/cancel       CancelDeploymentResponse (body: {"reason": …})
//   POST /api/v1/deployments/<id>/redeploy     TriggerBuildResponse: the same project, branch and
//                                              commit again (body: {"requestId": …}, optional)
//   POST /api/v1/deployments/<id>/rollback     RollbackResponse: its image deployed again
//   GET  /api/v1/workflows                     ListWorkflowExecutionsResponse (query: the
//                                              visibility query language, paged)
//   GET  /api/v1/workflow?id=&run_id=          DescribeWorkflowExecutionResponse
//   GET  /api/v1/workflow/history?id=&run_id=  GetWorkflowExecutionHistoryResponse (paged)
//   POST /api/v1/workflow/cancel?id=&run_id=   RequestCancelWorkflowExecutionResponse
//   POST /api/v1/workflow/signal?id=&run_id=   SignalWorkflowExecutionResponse (body: signalName,
//                                              input, requestId of the gRPC request)
//   POST /api/v1/workflow/terminate?id=&run_id= TerminateWorkflowExecutionResponse (body: reason)
//   POST /api/v1/workflow/reset?id=&run_id=    ResetWorkflowExecutionResponse (body: resetPoint or
//                                              workflowTaskFinishEventId, reason, requestId)
//   GET  /api/v1/workflow/stack?id=&run_id=    WorkflowStackTrace (the "__stack_trace" query)
//   GET  /api/v1/workflow/log?id=&run_id=&stream=  the run's log stream as server-sent events
//   GET  /api/v1/taskqueue?name=&kind=         DescribeTaskQueueResponse (kind: workflow or
//                                              activity)
//   GET  /api/v1/machines                      ListBuilderMachinesResponse (per project, paged
//                                              as the projects)
// Workflow ids hold '/', so they travel in the query string, not the path.
//
// Auth: every API call carries `Authorization: Bearer <token>`, checked exactly as BuildService
// checks its calls (BuildServiceAuth): reads need a read-only or admin token, every POST an
// admin one; POST is the only method that changes state. The identity the engine records for an
// action is "kiln-worker web console"; callers cannot set it. The static files hold nothing secret
// and need no token. Errors are {"error": message} with the HTTP status of the gRPC code.
//
// The log streams (a deployment's build log, a run's log stream): `event: log` events whose data is
// a LogChunk (offset, base64 data) and whose id is the offset just past it, so a client that
// reconnects with Last-Event-ID (or ?offset=) resumes where it was; `event: end` (with the
// Deployment, or the run's DescribeWorkflowExecutionResponse) once the run has closed and its whole
// log is out. A stream ends after `log_stream_slice` (the client reconnects), and at most
// `max_log_streams` run at once (503 beyond): each holds one of the HTTP server's threads.
//
// Limits: list pages at most kMaxConsolePageSize (filled over at most kMaxConsoleListCalls
// orchestrator calls), query strings kMaxConsoleQueryBytes, POST
// bodies kMaxConsoleBodyBytes. Every response says nosniff and a Content-Security-Policy that
// allows only the console's own scripts and styles (no inline script).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <variant>

#include <grpcpp/client_context.h>

#include "absl/time/time.h"
#include "sdk/connection.h"
#include "worker/api/build_service_auth.h"
#include "worker/api/platform_api.h"
#include "worker/http/http_server.h"
#include "worker/machines/machine_provider.h"

namespace kiln::worker::console {

inline constexpr int32_t kDefaultConsolePageSize = 50;
inline constexpr int32_t kMaxConsolePageSize = 500;
// The orchestrator examines at most 10,000 visibility entries a List call and answers a short
// (even empty) page with a token when it stops there; the console follows the token to fill a
// page, for at most this many calls, so a list behind many non-matching runs still shows.
inline constexpr int kMaxConsoleListCalls = 10;
inline constexpr size_t kMaxConsoleQueryBytes = size_t{8} * 1024;
inline constexpr size_t kMaxConsoleBodyBytes = size_t{16} * 1024;
// Task queue names as the engine takes them; log stream names as the SDK writes them.
inline constexpr size_t kMaxConsoleNameBytes = 200;
inline constexpr size_t kMaxConsoleStreamNameBytes = 64;
inline constexpr char kContentSecurityPolicy[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

struct ConsoleOptions {
  PlatformApi* api = nullptr;  // not owned
  // A connection to the orchestrator that carries no token of its own (not owned): the console's
  // calls to the engine (workflows, task queues, run logs) go on it with the caller's token, so
  // the orchestrator judges them as it judges the caller's own calls (scope, revocation) and they
  // reach runs on every task queue. Unset: they go on `api`'s connection with the worker's token
  // (which serves only the worker's task queues).
  sdk::Connection* engine = nullptr;
  const BuildServiceAuth* auth = nullptr;  // not owned
  // The worker's machine providers by name ("process", "microvm"), for the machines list; not
  // owned. A project whose provider is not here shows with an error.
  std::map<std::string, MachineProvider*> machines;
  int max_log_streams = 4;
  absl::Duration log_stream_slice = absl::Seconds(25);
  absl::Duration rpc_timeout = absl::Seconds(10);
};

class Console {
 public:
  // Starts connecting the engine connection now, on gRPC's threads: a channel set up from an
  // HTTP server thread (civetweb gives them ~100 KB stacks) overflows its stack.
  explicit Console(ConsoleOptions options);
  Console(const Console&) = delete;
  Console& operator=(const Console&) = delete;

  // Serves the files under "/" and the API under "/api/v1/" on `http`; routes registered
  // before or after with a longer prefix or an exact path (the webhooks) keep theirs. The
  // console must outlive the server.
  void Mount(HttpServer& http);

  HttpResponse ServeStatic(const HttpRequest& request) const;
  HttpResponse ServeApi(const HttpRequest& request);

  // Ends the log streams running (within a ReadLog slice) and refuses new ones: called before
  // the server stops, which waits for its requests.
  void Stop() { stopping_->store(true); }

  // Log streams running now.
  int log_streams() const { return log_streams_->load(); }

 private:
  HttpResponse Route(const HttpRequest& request);
  HttpResponse ListProjects(const HttpRequest& request);
  HttpResponse GetProject(const std::string& id);
  HttpResponse ListDeployments(const HttpRequest& request);
  HttpResponse GetDeployment(const std::string& id);
  HttpResponse CancelDeployment(const std::string& id, const HttpRequest& request);
  HttpResponse FollowLog(const std::string& id, const HttpRequest& request);
  HttpResponse ListWorkflows(const HttpRequest& request);
  HttpResponse DescribeWorkflow(const HttpRequest& request);
  HttpResponse WorkflowHistory(const HttpRequest& request);
  HttpResponse CancelWorkflow(const HttpRequest& request);
  // console_actions.cc
  HttpResponse RedeployDeployment(const std::string& id, const HttpRequest& request);
  HttpResponse RollbackToDeployment(const std::string& id, const HttpRequest& request);
  HttpResponse SignalWorkflow(const HttpRequest& request);
  HttpResponse TerminateWorkflow(const HttpRequest& request);
  HttpResponse ResetWorkflow(const HttpRequest& request);
  // console_inspect.cc
  HttpResponse WorkflowStack(const HttpRequest& request);
  HttpResponse DescribeTaskQueue(const HttpRequest& request);
  HttpResponse ListMachines(const HttpRequest& request);
  // console_log.cc
  HttpResponse FollowWorkflowLog(const HttpRequest& request);
  // The connection engine calls go on, and a context for one (deadline `timeout`, and the
  // caller's Authorization header when that connection carries no token of its own).
  bool engine_as_caller() const { return options_.engine != nullptr; }
  sdk::Connection& EngineConnection() const {
    return options_.engine != nullptr ? *options_.engine : options_.api->connection();
  }
  api::WorkflowService::Stub& Engine() const { return EngineConnection().workflow_service(); }
  std::unique_ptr<grpc::ClientContext> EngineContext(const HttpRequest& request,
                                                     absl::Duration timeout) const;
  // A stream slot, or the 503 that says none is free.
  std::variant<std::shared_ptr<void>, HttpResponse> TakeStreamSlot();

  const ConsoleOptions options_;
  // Shared with the streams, which may outlive a handler's return (they run after it).
  std::shared_ptr<std::atomic<int>> log_streams_ = std::make_shared<std::atomic<int>>(0);
  std::shared_ptr<std::atomic<bool>> stopping_ = std::make_shared<std::atomic<bool>>(false);
};

// Adds the headers every console response carries (CSP, nosniff, ...).
void AddSecurityHeaders(HttpResponse& response);

}  // namespace kiln::worker::console
