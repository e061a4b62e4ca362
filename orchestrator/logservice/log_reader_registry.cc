#include "orchestrator/logservice/log_reader_registry.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "orchestrator/logservice/log_reader.h"

namespace kiln::orchestrator {

absl::Status LogReaderRegistry::Add(LogReader* reader) {
  absl::MutexLock lock(&mu_);
  if (shutting_down_) return absl::UnavailableError("the orchestrator is shutting down");
  if (readers_.size() >= max_readers_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("too many log reads open: the limit is ", max_readers_));
  }
  readers_.insert(reader);
  return absl::OkStatus();
}

void LogReaderRegistry::Remove(LogReader* reader) {
  absl::MutexLock lock(&mu_);
  readers_.erase(reader);  // A refused reader was never added.
}

void LogReaderRegistry::Shutdown() {
  std::vector<LogReader*> follows;
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    for (LogReader* reader : readers_) {
      if (reader->follow() && reader->TryRef()) follows.push_back(reader);
    }
  }
  for (LogReader* reader : follows) {
    reader->End(absl::UnavailableError(
        "the orchestrator is shutting down: follow again from the offset after the last byte "
        "received"));
    reader->Unref();
  }
}

void LogReaderRegistry::WaitUntilEmpty() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](absl::flat_hash_set<LogReader*>* readers) { return readers->empty(); }, &readers_));
}

size_t LogReaderRegistry::size() {
  absl::MutexLock lock(&mu_);
  return readers_.size();
}

}  // namespace kiln::orchestrator
