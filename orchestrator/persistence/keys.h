// Key layouts of the engine's tables. Fixed-width integers are big-endian so that byte order
// is numeric order. Names (namespaces, workflow ids, queues) never contain NUL: the frontend
// refuses them, which keeps the NUL separators unambiguous.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/time/time.h"

namespace kiln::orchestrator::keys {

void AppendBigEndian64(std::string* out, uint64_t value);
uint64_t ReadBigEndian64(std::string_view bytes);

// The smallest key greater than every key starting with `prefix`, for scan bounds.
std::string PrefixEnd(std::string_view prefix);

// Microseconds since the Unix epoch, clamped at 0, as stored in keys.
uint64_t TimeKey(absl::Time t);
absl::Time FromTimeKey(uint64_t micros);

// kExecutions: run id.
std::string Execution(std::string_view run_id);

// kMeta: the request ids of the signals a run received ("sigreq/" run id NUL request id), so a
// retried signal is delivered once. Kept apart from the run's state, which every transition
// rewrites; deleted with the run.
std::string SignalRequestPrefix(std::string_view run_id);
std::string SignalRequest(std::string_view run_id, std::string_view request_id);
// kMeta: the resets of a run by request id ("resetreq/" run id NUL request id), whose value is
// the new run's id, so a retried reset answers with the run it created. Deleted with the run.
std::string ResetRequestPrefix(std::string_view run_id);
std::string ResetRequest(std::string_view run_id, std::string_view request_id);

// kMeta: a record written only to make the writes before it durable (a synced commit syncs the
// log as a whole); its value means nothing.
inline constexpr char kSyncBarrier[] = "sync-barrier";

// kMeta: revoked bearer tokens ("revoked/" token id), kept until the token would expire.
std::string RevokedTokenPrefix();
std::string RevokedToken(std::string_view token_id);

// kHistory: run id + event id.
std::string HistoryPrefix(std::string_view run_id);
std::string HistoryEvent(std::string_view run_id, int64_t event_id);
int64_t HistoryEventId(std::string_view key);

// kCurrent: namespace NUL workflow id.
std::string Current(std::string_view ns, std::string_view workflow_id);

// kTasks: kind byte ('w' workflow, 'a' activity) + namespace NUL queue NUL + task id.
enum class TaskKind : char { kWorkflow = 'w', kActivity = 'a' };
std::string TaskQueuePrefix(TaskKind kind, std::string_view ns, std::string_view queue);
std::string Task(TaskKind kind, std::string_view ns, std::string_view queue, int64_t task_id);
int64_t TaskIdOf(std::string_view task_key);

// kTimers, and kRetention (the timers that delete closed runs, kept apart because they fire
// days after they are written: in one table with timeouts of seconds, every flushed file would
// span that whole range and compaction would rewrite every file between): fire time (µs) +
// task id.
std::string Timer(absl::Time fire_time, int64_t task_id);
absl::Time TimerFireTime(std::string_view key);

// kVisibility: namespace NUL + inverted start time (newest first) + run id.
std::string VisibilityPrefix(std::string_view ns);
std::string Visibility(std::string_view ns, absl::Time start_time, std::string_view run_id);

}  // namespace kiln::orchestrator::keys
