#include "orchestrator/logservice/log_reader.h"

#include "absl/strings/str_cat.h"
#include "common/fiber.h"
#include "common/rpc_status.h"
#include "orchestrator/logs/log_limits.h"
#include "orchestrator/logs/log_store.h"
#include "orchestrator/logs/run_lookup.h"
#include "orchestrator/logservice/log_reader_registry.h"

namespace kiln::orchestrator {

LogReader::LogReader(const LogReaderEnv& env, std::string ns,
                     const kiln::api::v1::ReadLogRequest& request,
                     std::function<absl::Status()> admit)
    : env_(env),
      ns_(std::move(ns)),
      execution_(request.execution()),
      admit_(std::move(admit)),
      stream_(request.stream()),
      follow_(request.follow()),
      began_(env.clock->Now()),
      next_(request.from_offset()),
      last_data_(began_) {}

void LogReader::Begin() {
  refs_.Ref();  // For the task.
  if (!env_.executor->TrySubmit([this] {
        Start();
        Unref();
      })) {
    Unref();
    End(absl::ResourceExhaustedError("orchestrator is overloaded: work queue full"));
  }
}

void LogReader::End(const absl::Status& status) {
  Step step;
  {
    absl::MutexLock lock(&mu_);
    RequestFinish(status);
    step = NextStep();
  }
  Perform(step);
}

bool LogReader::TryRef() { return refs_.TryRef(); }

void LogReader::Unref() {
  if (refs_.Unref()) {
    env_.readers->Remove(this);
    delete this;
  }
}

void LogReader::Start() {
  if (admit_) {
    if (absl::Status admitted = admit_(); !admitted.ok()) return End(admitted);
  }
  absl::StatusOr<std::string> run;
  {
    fiber::ParkScope park;  // On the executor, holding no lock: the reads may park.
    run = ResolveLogRun(*env_.store, ns_, execution_);
  }
  if (!run.ok()) return End(run.status());
  run_id_ = *run;
  if (follow_) {
    {
      absl::MutexLock lock(&mu_);
      if (finish_requested_) return;  // Cancelled before it began.
    }
    env_.streams->Follow(run_id_, stream_, this);
    env_.metrics->FollowerStarted();
    bool gone;
    {
      absl::MutexLock lock(&mu_);
      gone = done_;
      registered_ = !done_;
    }
    if (gone) {
      env_.streams->Unfollow(run_id_, stream_, this);
      env_.metrics->FollowerEnded();
      return;
    }
  }
  Step step;
  {
    absl::MutexLock lock(&mu_);
    started_ = true;
    if (follow_ && !finish_requested_) ScheduleIdleAlarm(last_data_ + env_.idle_limit);
    step = NextStep();
  }
  Perform(step);
}

void LogReader::ReadMore() {
  int64_t from;
  {
    absl::MutexLock lock(&mu_);
    from = next_;
  }
  absl::StatusOr<LogPage> page;
  {
    fiber::ParkScope park;  // On the executor, holding no lock: the read may park.
    page = ReadLogChunks(*env_.store, run_id_, stream_, from, log_limits::kReadChunks,
                         log_limits::kReadBytes);
  }
  Step step;
  {
    absl::MutexLock lock(&mu_);
    reading_ = false;
    if (!page.ok()) {
      RequestFinish(page.status());
    } else {
      for (LogChunk& chunk : page->chunks) stored_.push_back(std::move(chunk));
      store_current_ = page->reached_end && read_epoch_ == epoch_;
    }
    step = NextStep();
  }
  Perform(step);
}

LogReader::Step LogReader::NextStep() {
  if (finish_requested_) {
    if (writing_ || finish_called_) return Step::kNone;  // Finish follows the write in flight.
    finish_called_ = true;
    return Step::kFinish;
  }
  if (!started_ || writing_ || reading_) return Step::kNone;
  while (!stored_.empty() && stored_.front().end() <= next_) stored_.pop_front();
  while (!live_.empty() && live_.front().end() <= next_) {
    live_bytes_ -= live_.front().data->size();
    live_.pop_front();
  }
  const LogChunk* chunk = nullptr;
  if (!stored_.empty() && stored_.front().offset <= next_) {
    chunk = &stored_.front();
  } else if (!live_.empty() && live_.front().offset <= next_) {
    chunk = &live_.front();
  }
  if (chunk != nullptr) {
    // A chunk may start before next_ (it holds the requested offset, or overlaps what the store
    // gave): send from next_ on, so every offset goes out exactly once.
    const auto skip = static_cast<size_t>(next_ - chunk->offset);
    response_.set_offset(next_);
    response_.set_data(chunk->data->data() + skip, chunk->data->size() - skip);
    next_ = chunk->end();
    writing_ = true;
    last_data_ = env_.clock->Now();
    return Step::kWrite;
  }
  if (!store_current_) {
    reading_ = true;
    read_epoch_ = epoch_;
    stored_.clear();
    return Step::kRead;
  }
  if (!stored_.empty() || !live_.empty()) {
    // A read that reached the end left a hole before the next chunk: registering before reading
    // rules that out, so this is a bug, not a state to wait in.
    RequestFinish(absl::InternalError(
        absl::StrCat("log reader lost its place at offset ", next_, "; read again from there")));
    return NextStep();
  }
  if (!follow_) {
    RequestFinish(absl::OkStatus());
    return NextStep();
  }
  return Step::kNone;  // Following: wait for an append.
}

void LogReader::Perform(Step step) {
  switch (step) {
    case Step::kNone:
      return;
    case Step::kWrite:
      StartWrite(&response_);
      return;
    case Step::kRead: {
      refs_.Ref();  // For the task.
      if (env_.executor->TrySubmit([this] {
            ReadMore();
            Unref();
          })) {
        return;
      }
      Unref();  // Never the last: whoever called Perform holds a reference.
      Step next;
      {
        absl::MutexLock lock(&mu_);
        reading_ = false;
        RequestFinish(absl::ResourceExhaustedError("orchestrator is overloaded: work queue full"));
        next = NextStep();
      }
      return Perform(next);
    }
    case Step::kFinish: {
      CancelIdleAlarm();
      absl::Status status;
      {
        absl::MutexLock lock(&mu_);
        status = finish_status_;
      }
      env_.rpc->Record("ReadLog", status, env_.clock->Now() - began_);
      Finish(ToGrpc(status));
      return;
    }
  }
}

void LogReader::RequestFinish(const absl::Status& status) {
  if (finish_requested_) return;
  finish_requested_ = true;
  finish_status_ = status;
}

void LogReader::ScheduleIdleAlarm(absl::Time when) {
  refs_.Ref();  // For the alarm.
  alarm_ = env_.clock->ScheduleAlarm(when, [this] { OnIdleAlarm(); });
}

void LogReader::CancelIdleAlarm() {
  AlarmId alarm;
  {
    absl::MutexLock lock(&mu_);
    alarm = alarm_;
    alarm_ = 0;
  }
  // When the cancel fails the alarm is running, and drops its own reference.
  if (alarm != 0 && env_.clock->CancelAlarm(alarm)) Unref();
}

void LogReader::OnIdleAlarm() {
  Step step;
  {
    absl::MutexLock lock(&mu_);
    alarm_ = 0;
    if (!finish_requested_) {
      const absl::Time due = last_data_ + env_.idle_limit;
      if (env_.clock->Now() >= due) {
        RequestFinish(absl::OkStatus());
      } else {
        ScheduleIdleAlarm(due);
      }
    }
    step = NextStep();
  }
  Perform(step);
  Unref();
}

void LogReader::OnAppended(const LogChunk& chunk) {
  Step step;
  {
    absl::MutexLock lock(&mu_);
    if (finish_requested_ || chunk.end() <= next_) return;
    if (live_bytes_ + chunk.data->size() > env_.queue_bytes) {
      // The client reads slower than the stream grows: drop, and read it back from the store.
      ++epoch_;
      store_current_ = false;
    } else {
      live_.push_back(chunk);
      live_bytes_ += chunk.data->size();
    }
    step = NextStep();
  }
  Perform(step);
}

void LogReader::OnStoreChanged() {
  Step step;
  {
    absl::MutexLock lock(&mu_);
    if (finish_requested_) return;
    ++epoch_;
    store_current_ = false;
    step = NextStep();
  }
  Perform(step);
}

void LogReader::OnWriteDone(bool ok) {
  Step step;
  {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) RequestFinish(absl::CancelledError("the client stopped reading"));
    step = NextStep();
  }
  Perform(step);
}

void LogReader::OnCancel() { End(absl::CancelledError("ReadLog cancelled")); }

void LogReader::OnDone() {
  bool unfollow;
  {
    absl::MutexLock lock(&mu_);
    done_ = true;
    unfollow = registered_;
    registered_ = false;
  }
  if (unfollow) {
    env_.streams->Unfollow(run_id_, stream_, this);
    env_.metrics->FollowerEnded();
  }
  CancelIdleAlarm();
  Unref();
}

}  // namespace kiln::orchestrator
