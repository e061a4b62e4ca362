// The console's live build log: the orchestrator's LogService ReadLog, followed the way
// BuildService's FollowLog follows it, as server-sent events (see console.h).
#include <grpcpp/client_context.h>

#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "worker/console/console.h"
#include "worker/console/console_internal.h"
#include "worker/workflows/platform.h"

namespace kiln::worker::console {
namespace {

using internal::ErrorResponse;
using internal::QueryParam;
using internal::ToJsonLine;

// How long one ReadLog waits for more output before the stream checks on the run (and on the
// client, with a comment line) again.
constexpr absl::Duration kFollowSlice = absl::Milliseconds(500);
// A queued deployment has no run yet: how often to look for it.
constexpr absl::Duration kQueuedPoll = absl::Milliseconds(200);
// What the browser waits before reconnecting after a stream ends.
constexpr int kRetryMs = 500;

// Gives back a stream slot when the response (and the stream it holds) is destroyed, whether the
// stream ran or not.
struct StreamSlot {
  std::shared_ptr<std::atomic<int>> count;
  ~StreamSlot() { count->fetch_sub(1); }
};

}  // namespace

HttpResponse Console::FollowLog(const std::string& id, const HttpRequest& request) {
  if (ProjectOfDeployment(id).empty()) return JsonError(400, "not a deployment id");
  int64_t offset = 0;
  const std::string* last_event_id = request.Header("Last-Event-ID");
  std::string from =
      last_event_id != nullptr ? *last_event_id : QueryParam(request.query, "offset").value_or("0");
  if (from.empty()) from = "0";
  if (!absl::SimpleAtoi(from, &offset) || offset < 0) {
    return JsonError(400, "offset (Last-Event-ID) must be a non-negative number");
  }
  // The deployment must exist (a clear 404 rather than a stream that never says anything).
  absl::StatusOr<pb::Deployment> deployment = options_.api->GetDeployment(id);
  if (!deployment.ok()) return ErrorResponse(deployment.status());

  if (stopping_->load()) return JsonError(503, "kiln-worker is stopping");
  if (log_streams_->fetch_add(1) >= options_.max_log_streams) {
    log_streams_->fetch_sub(1);
    HttpResponse busy = JsonError(
        503, absl::StrCat("at most ", options_.max_log_streams, " logs are followed at once"));
    busy.headers.push_back({"Retry-After", "2"});
    return busy;
  }
  auto slot = std::shared_ptr<StreamSlot>(new StreamSlot{log_streams_});

  HttpResponse response;
  response.content_type = "text/event-stream; charset=utf-8";
  response.headers.push_back({"Cache-Control", "no-cache"});
  PlatformApi* platform = options_.api;
  const absl::Duration slice = options_.log_stream_slice;
  std::shared_ptr<std::atomic<bool>> stopping = stopping_;
  response.stream = [platform, slot, stopping, id, offset,
                     slice](const HttpBodyWriter& write) mutable {
    const absl::Time until = absl::Now() + slice;
    if (!write(absl::StrCat("retry: ", kRetryMs, "\n\n"))) return;
    bool last = false;
    while (absl::Now() < until && !stopping->load()) {
      // Whether the run has closed, before reading: a read after the close gets everything.
      absl::StatusOr<PlatformApi::DeploymentRun> run = platform->DeploymentRunState(id);
      if (!run.ok()) return;  // The client reconnects and resumes from its last id.
      if (*run == PlatformApi::DeploymentRun::kQueued) {
        // The comment finds a gone client.
        if (!write(": queued\n\n")) return;
        absl::SleepFor(kQueuedPoll);
        continue;
      }
      last = *run == PlatformApi::DeploymentRun::kClosed;

      absl::StatusOr<int64_t> read = platform->ReadBuildLog(
          id, offset, !last, last ? absl::Seconds(20) : kFollowSlice,
          [&](const pb::LogChunk& chunk) {
            offset = chunk.offset() + static_cast<int64_t>(chunk.data().size());
            return write(
                absl::StrCat("id: ", offset, "\nevent: log\ndata: ", ToJsonLine(chunk), "\n\n"));
          });
      // A gone client, or an error: the client reconnects and resumes from its last id.
      if (!read.ok()) return;
      if (last) {
        absl::StatusOr<pb::Deployment> ended = platform->GetDeployment(id);
        pb::Deployment end = ended.ok() ? *ended : pb::Deployment();
        (void)write(absl::StrCat("id: ", offset, "\nevent: end\ndata: ", ToJsonLine(end), "\n\n"));
        return;
      }
      if (!write(": more\n\n")) return;
    }
  };
  return response;
}

}  // namespace kiln::worker::console
