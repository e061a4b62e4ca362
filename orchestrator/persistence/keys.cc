#include "orchestrator/persistence/keys.h"

#include "absl/strings/str_cat.h"

namespace kiln::orchestrator::keys {

void AppendBigEndian64(std::string* out, uint64_t value) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((value >> shift) & 0xff));
  }
}

uint64_t ReadBigEndian64(std::string_view bytes) {
  uint64_t value = 0;
  for (size_t i = 0; i < 8 && i < bytes.size(); ++i) {
    value = (value << 8) | static_cast<uint8_t>(bytes[i]);
  }
  return value;
}

std::string PrefixEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    auto last = static_cast<uint8_t>(end.back());
    if (last != 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  return end;  // Every byte was 0xff: no upper bound.
}

uint64_t TimeKey(absl::Time t) {
  int64_t micros = absl::ToUnixMicros(t);
  return micros < 0 ? 0 : static_cast<uint64_t>(micros);
}

absl::Time FromTimeKey(uint64_t micros) {
  return absl::FromUnixMicros(static_cast<int64_t>(micros));
}

std::string Execution(std::string_view run_id) { return std::string(run_id); }

namespace {

// "<tag>/<run id>\0": the prefix of a run's request-id records of one kind, deleted with the run.
std::string RunRequestPrefix(std::string_view tag, std::string_view run_id) {
  std::string key(tag);
  key.push_back('/');
  key.append(run_id);
  key.push_back('\0');
  return key;
}

}  // namespace

std::string SignalRequestPrefix(std::string_view run_id) {
  return RunRequestPrefix("sigreq", run_id);
}

std::string SignalRequest(std::string_view run_id, std::string_view request_id) {
  return SignalRequestPrefix(run_id).append(request_id);
}

std::string RevokedTokenPrefix() { return "revoked/"; }

std::string RevokedToken(std::string_view token_id) {
  std::string key = RevokedTokenPrefix();
  key.append(token_id);
  return key;
}

std::string ResetRequestPrefix(std::string_view run_id) {
  return RunRequestPrefix("resetreq", run_id);
}

std::string ResetRequest(std::string_view run_id, std::string_view request_id) {
  return ResetRequestPrefix(run_id).append(request_id);
}

std::string HistoryPrefix(std::string_view run_id) {
  std::string key(run_id);
  key.push_back('\0');
  return key;
}

std::string HistoryEvent(std::string_view run_id, int64_t event_id) {
  std::string key = HistoryPrefix(run_id);
  AppendBigEndian64(&key, static_cast<uint64_t>(event_id));
  return key;
}

int64_t HistoryEventId(std::string_view key) {
  if (key.size() < 8) return 0;
  return static_cast<int64_t>(ReadBigEndian64(key.substr(key.size() - 8)));
}

std::string Current(std::string_view ns, std::string_view workflow_id) {
  std::string key(ns);
  key.push_back('\0');
  key.append(workflow_id);
  return key;
}

std::string TaskQueuePrefix(TaskKind kind, std::string_view ns, std::string_view queue) {
  std::string key(1, static_cast<char>(kind));
  key.append(ns);
  key.push_back('\0');
  key.append(queue);
  key.push_back('\0');
  return key;
}

std::string Task(TaskKind kind, std::string_view ns, std::string_view queue, int64_t task_id) {
  std::string key = TaskQueuePrefix(kind, ns, queue);
  AppendBigEndian64(&key, static_cast<uint64_t>(task_id));
  return key;
}

int64_t TaskIdOf(std::string_view task_key) {
  if (task_key.size() < 8) return 0;
  return static_cast<int64_t>(ReadBigEndian64(task_key.substr(task_key.size() - 8)));
}

std::string Timer(absl::Time fire_time, int64_t task_id) {
  std::string key;
  AppendBigEndian64(&key, TimeKey(fire_time));
  AppendBigEndian64(&key, static_cast<uint64_t>(task_id));
  return key;
}

absl::Time TimerFireTime(std::string_view key) { return FromTimeKey(ReadBigEndian64(key)); }

std::string VisibilityPrefix(std::string_view ns) {
  std::string key(ns);
  key.push_back('\0');
  return key;
}

std::string Visibility(std::string_view ns, absl::Time start_time, std::string_view run_id) {
  std::string key = VisibilityPrefix(ns);
  AppendBigEndian64(&key, ~TimeKey(start_time));
  key.append(run_id);
  return key;
}

}  // namespace kiln::orchestrator::keys
