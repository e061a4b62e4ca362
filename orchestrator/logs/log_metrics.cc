#include "orchestrator/logs/log_metrics.h"

namespace kiln::orchestrator {

LogMetrics::LogMetrics(prometheus::Registry* registry) {
  if (registry == nullptr) return;
  bytes_ = &prometheus::BuildCounter()
                .Name("kiln_log_appended_bytes_total")
                .Help("Bytes appended to log streams")
                .Register(*registry)
                .Add({});
  auto& appends = prometheus::BuildCounter()
                      .Name("kiln_log_appends_total")
                      .Help("AppendLog calls that wrote a chunk or were retries of a stored one")
                      .Register(*registry);
  written_ = &appends.Add({{"result", "written"}});
  duplicates_ = &appends.Add({{"result", "duplicate"}});
  followers_ = &prometheus::BuildGauge()
                    .Name("kiln_log_followers")
                    .Help("ReadLog calls following a stream now")
                    .Register(*registry)
                    .Add({});
}

void LogMetrics::Written(size_t bytes) {
  if (bytes_ == nullptr) return;
  bytes_->Increment(static_cast<double>(bytes));
  written_->Increment();
}

void LogMetrics::Duplicate() {
  if (duplicates_ != nullptr) duplicates_->Increment();
}

void LogMetrics::FollowerStarted() {
  if (followers_ != nullptr) followers_->Increment();
}

void LogMetrics::FollowerEnded() {
  if (followers_ != nullptr) followers_->Decrement();
}

}  // namespace kiln::orchestrator
