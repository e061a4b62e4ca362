// The web console as kiln-worker serves it, in the test process: the real PlatformApi,
// workflows and activities on a real kiln-orchestrator (fake_platform.h fakes the builder agent,
// machines and deploy target), with the console mounted on a real WebhookServer (its front and
// connection cap included), and tokens minted with the orchestrator's key, which
// BuildServiceAuth verifies as in kiln-worker.
// Test-only: uses Catch2's REQUIRE.
#pragma once

#include <catch2/catch.hpp>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "common/auth/token.h"
#include "google/protobuf/util/json_util.h"
#include "sdk/log_writer.h"
#include "tests/testutil/fake_platform.h"
#include "tests/testutil/http.h"
#include "tests/testutil/test_worker.h"
#include "worker/api/build_service_auth.h"
#include "worker/console/console.h"
#include "worker/http/webhook_server.h"

namespace kiln::worker::console {

inline std::string MintToken(const auth::TokenKey& key, auth::Scope scope) {
  auth::Claims claims;
  claims.scope = scope;
  claims.subject = "console_test";
  claims.issued = absl::Now();
  claims.expiry = claims.issued + absl::Hours(1);
  if (scope == auth::Scope::kWorker) claims.queues = {"kiln-platform"};
  auto token = key.Mint(claims);
  REQUIRE(token.ok());
  return *token;
}

struct ConsoleHarness {
  explicit ConsoleHarness(absl::Duration log_stream_slice = absl::Seconds(5),
                          int max_log_streams = 2)
      // The orchestrator's key, which kiln-worker holds too (--auth-key-file).
      : key(*auth::TokenKey::Load(p.orchestrator.key_file())),
        auth(key),
        // As kiln-worker: engine calls carry the caller's token on a channel without one.
        engine_as_caller(p.orchestrator.address()),
        console({.api = p.api.get(),
                 .engine = &engine_as_caller,
                 .auth = &auth,
                 .machines = {{"process", &p.machines}},
                 .max_log_streams = max_log_streams,
                 .log_stream_slice = log_stream_slice}) {
    WebhookServerOptions options;
    options.threads = 6;
    options.probe_interval = absl::ZeroDuration();
    auto started = WebhookServer::Start(options, p.api.get());
    REQUIRE(started.ok());
    server = *std::move(started);
    console.Mount(*server->http());
    admin = MintToken(key, auth::Scope::kAdmin);
    read_only = MintToken(key, auth::Scope::kReadOnly);
    p.agent.SetRevision("main", {fakes::Hex40("commit-1"), fakes::Hex40("tree-1")});
    auto created = p.api->CreateProject([&] {
      pb::CreateProjectRequest request;
      *request.mutable_config() = p.Config();
      return request;
    }());
    REQUIRE(created.ok());
  }
  ~ConsoleHarness() {
    console.Stop();
    server.reset();
  }

  int port() const { return server->port(); }

  // `method path` with `token` as the bearer (none when empty).
  testutil::HttpReply Call(const std::string& method, const std::string& path,
                           const std::string& token, const std::string& body = "") {
    testutil::HttpCallOptions options;
    if (!token.empty()) options.headers.push_back({"Authorization", "Bearer " + token});
    options.body = body;
    auto reply = testutil::HttpCall(port(), method, path, options);
    REQUIRE(reply.ok());
    return *reply;
  }

  // Appends `text` to deployment `id`'s build log the way the builder agent writes its output
  // (a LogWriter of its own, taking the stream over).
  void AppendBuildLog(const std::string& id, const std::string& text) {
    api::WorkflowExecution run;
    run.set_workflow_id(DeploymentWorkflowId(id));
    sdk::LogWriter log(p.orchestrator.connection(), run, "build");
    REQUIRE(log.Append(text).ok());
    REQUIRE(log.Flush().ok());
  }

  // Starts `n` more runs (type bench.Sleep on a queue nobody serves: they stay running), from
  // 8 threads; about 4 s for 10,000 on 2 cores.
  void StartIdleWorkflows(int n, const std::string& prefix) {
    constexpr int kThreads = 8;
    std::vector<std::thread> threads;
    std::atomic<int> failed{0};
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = t; i < n; i += kThreads) {
          if (!testutil::StartWorkflow(p.orchestrator.connection().workflow_service(),
                                       absl::StrCat(prefix, i), "bench.Sleep", "bench-queue", "")
                   .ok()) {
            failed.fetch_add(1);
          }
        }
      });
    }
    for (auto& thread : threads) thread.join();
    REQUIRE(failed.load() == 0);
  }

  fakes::InProcessPlatform p;
  auth::TokenKey key;
  BuildServiceAuth auth;
  sdk::Connection engine_as_caller;
  Console console;
  std::unique_ptr<WebhookServer> server;
  std::string admin;
  std::string read_only;
};

template <typename Message>
Message ParseJson(const std::string& json) {
  Message message;
  auto status = google::protobuf::util::JsonStringToMessage(json, &message);
  INFO(json);
  REQUIRE(status.ok());
  return message;
}

}  // namespace kiln::worker::console
