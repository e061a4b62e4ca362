#include "sdk/internal/worker_stream.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "common/hop_trace.h"
#include "common/logging.h"
#include "common/rpc_status.h"

namespace kiln::sdk::internal {
namespace {

constexpr absl::Duration kBackoffInitial = absl::Milliseconds(100);
constexpr absl::Duration kBackoffMax = absl::Seconds(5);
// A stream that lived this long was healthy: the next break starts the backoff afresh.
constexpr absl::Duration kHealthyStream = absl::Seconds(10);

bool HasContent(const api::WorkerStreamRequest& request) {
  return request.has_open() || request.credits() != 0 || request.completions_size() > 0;
}

// Asking again will not cure these: the orchestrator has no stream, or none for this worker
// now (RESOURCE_EXHAUSTED: it holds its most streams, in all or on this queue; the worker polls
// instead, its polls bounded per queue), refuses the open request, or refuses this worker.
bool IsFinal(const grpc::Status& status, bool exclusive) {
  return status.error_code() == grpc::StatusCode::UNIMPLEMENTED ||
         status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED ||
         status.error_code() == grpc::StatusCode::INVALID_ARGUMENT ||
         RefusesWorker(status, exclusive);
}

}  // namespace

bool RefusesWorker(const grpc::Status& status, bool exclusive) {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
      return true;
    case grpc::StatusCode::FAILED_PRECONDITION:
      return exclusive;
    default:
      return false;
  }
}

int CreditsToLend(int target, int lent, int free) {
  if (lent > target) return target - lent;
  const int batch = std::max(1, target / 4);
  const int grant = std::min(free, target - lent);
  if (grant <= 0) return 0;
  if (grant < batch && lent >= batch) return 0;
  return grant;
}

WorkerStream::WorkerStream(Connection& connection, api::WorkerStreamOpen open, Handlers handlers)
    : connection_(connection), open_(std::move(open)), handlers_(std::move(handlers)) {}

WorkerStream::~WorkerStream() { Stop(); }

void WorkerStream::Start() {
  reader_ = std::thread([this] { Run(); });
}

void WorkerStream::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (context_ != nullptr) context_->TryCancel();
  }
  if (reader_.joinable()) reader_.join();
  FailWaiting();
}

int WorkerStream::outstanding_credits() {
  absl::MutexLock lock(&mu_);
  return outstanding_;
}

void WorkerStream::Grant(int credits) {
  if (credits == 0) return;
  Send([&](api::WorkerStreamRequest& next) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    outstanding_ += credits;
    next.set_credits(next.credits() + credits);
  });
}

void WorkerStream::Complete(api::WorkerStreamCompletion completion, Done done) {
  bool refused = false;
  Send([&](api::WorkerStreamRequest& next) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (stream_ == nullptr || stopping_) {
      refused = true;
      return;
    }
    completion.set_seq(++next_seq_);
    waiting_.emplace(completion.seq(), std::move(done));
    *next.add_completions() = std::move(completion);
  });
  if (refused) done(absl::UnavailableError("worker stream not connected"));
}

absl::StatusOr<api::WorkerStreamAnswer> WorkerStream::CompleteAndWait(
    api::WorkerStreamCompletion completion) {
  absl::Mutex mu;
  std::optional<absl::StatusOr<api::WorkerStreamAnswer>> result;
  Complete(std::move(completion), [&](absl::StatusOr<api::WorkerStreamAnswer> answer) {
    absl::MutexLock lock(&mu);
    result = std::move(answer);
  });
  absl::MutexLock lock(&mu);
  mu.Await(absl::Condition(
      +[](std::optional<absl::StatusOr<api::WorkerStreamAnswer>>* r) { return r->has_value(); },
      &result));
  if (!result->ok()) return result->status();
  api::WorkerStreamAnswer& answer = **result;
  if (answer.code() != 0) {
    return absl::Status(static_cast<absl::StatusCode>(answer.code()), answer.message());
  }
  return std::move(answer);
}

void WorkerStream::Send(const std::function<void(api::WorkerStreamRequest&)>& fill) {
  absl::MutexLock lock(&mu_);
  fill(pending_);
  if (sending_ || stream_ == nullptr) return;
  sending_ = true;
  while (HasContent(pending_)) {
    api::WorkerStreamRequest request;
    request.Swap(&pending_);
    Rw* stream = stream_;
    mu_.Unlock();
    // The reader waits for sending_ to clear before it finishes the stream: `stream` lives.
    hoptrace::Mark("w.write");
    bool ok = stream->Write(request);
    hoptrace::Mark("w.written");
    mu_.Lock();
    if (!ok) break;  // Broken: the reader sees it, fails the waiting and opens a new one.
  }
  sending_ = false;
}

void WorkerStream::FailWaiting() {
  absl::flat_hash_map<uint64_t, Done> waiting;
  {
    absl::MutexLock lock(&mu_);
    waiting.swap(waiting_);
  }
  for (auto& [seq, done] : waiting) done(absl::UnavailableError("worker stream broke"));
}

void WorkerStream::Run() {
  absl::Duration backoff = kBackoffInitial;
  for (;;) {
    absl::Time began = absl::Now();
    grpc::Status status = RunOnce();
    FailWaiting();
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    if (IsFinal(status, open_.exclusive())) {
      mu_.Unlock();
      LogWarn("sdk.worker_stream_stopped",
              {{"queue", open_.task_queue().name()}, {"status", FromGrpc(status)}});
      if (handlers_.stopped) handlers_.stopped(FromGrpc(status));
      mu_.Lock();
      return;
    }
    if (absl::Now() - began > kHealthyStream) backoff = kBackoffInitial;
    LogDebug("sdk.worker_stream_broke",
             {{"queue", open_.task_queue().name()}, {"status", FromGrpc(status)}});
    auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
    mu_.AwaitWithTimeout(absl::Condition(&stopping), backoff);
    if (stopping_) return;
    backoff = std::min(backoff * 2, kBackoffMax);
  }
}

grpc::Status WorkerStream::RunOnce() {
  grpc::ClientContext context;
  std::unique_ptr<Rw> stream;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return grpc::Status::CANCELLED;
    context_ = &context;
  }
  stream = connection_.workflow_service().WorkerStream(&context);
  {
    absl::MutexLock lock(&mu_);
    // The open goes first, with every credit no task has used (those granted to a broken
    // stream included); what was pending went with that stream.
    pending_.Clear();
    *pending_.mutable_open() = open_;
    pending_.set_credits(std::max(0, outstanding_));
    stream_ = stream.get();
  }
  Send([](api::WorkerStreamRequest&) {});

  api::WorkerStreamResponse response;
  while (stream->Read(&response)) {
    hoptrace::Mark("w.read");
    if (response.workflow_tasks_size() + response.activity_tasks_size() > 0) {
      absl::MutexLock lock(&mu_);
      outstanding_ -= response.workflow_tasks_size() + response.activity_tasks_size();
    }
    // Answers first: a workflow task's answer puts its run back in the worker's cache, and the
    // run's next task may come in the same message (the engine sends a workflow task before
    // the commit that made it has synced); handled after, it finds the run there.
    for (auto& answer : *response.mutable_answers()) {
      Done done;
      {
        absl::MutexLock lock(&mu_);
        auto it = waiting_.find(answer.seq());
        if (it == waiting_.end()) continue;
        done = std::move(it->second);
        waiting_.erase(it);
      }
      done(std::move(answer));
    }
    const bool alone = response.workflow_tasks_size() + response.activity_tasks_size() == 1;
    for (auto& task : *response.mutable_workflow_tasks()) {
      if (handlers_.workflow_task) handlers_.workflow_task(std::move(task), alone);
    }
    for (auto& task : *response.mutable_activity_tasks()) {
      if (handlers_.activity_task) handlers_.activity_task(std::move(task));
    }
    response.Clear();
  }
  {
    absl::MutexLock lock(&mu_);
    stream_ = nullptr;
    context_ = nullptr;
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !sending_; };
    mu_.Await(absl::Condition(&idle));
  }
  return stream->Finish();
}

}  // namespace kiln::sdk::internal
