// Structured logging: one line per event, an event name plus key=value fields. Text for a
// terminal ("2026-11-27T14:00:00.123Z INFO orchestrator.started listen=127.0.0.1:7233"), or one
// JSON object per line with --log-format=json for log collectors.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace kiln {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };
enum class LogFormat { kText, kJson };

// One key=value pair. Numbers and booleans stay unquoted in JSON.
struct LogField {
  LogField(std::string_view k, std::string_view v) : key(k), value(v) {}
  LogField(std::string_view k, const std::string& v) : key(k), value(v) {}
  LogField(std::string_view k, const char* v) : key(k), value(v) {}
  LogField(std::string_view k, bool v) : key(k), value(v ? "true" : "false"), raw(true) {}
  LogField(std::string_view k, int v) : key(k), value(std::to_string(v)), raw(true) {}
  LogField(std::string_view k, long v) : key(k), value(std::to_string(v)), raw(true) {}
  LogField(std::string_view k, long long v) : key(k), value(std::to_string(v)), raw(true) {}
  LogField(std::string_view k, unsigned v) : key(k), value(std::to_string(v)), raw(true) {}
  LogField(std::string_view k, unsigned long v) : key(k), value(std::to_string(v)), raw(true) {}
  LogField(std::string_view k, unsigned long long v)
      : key(k), value(std::to_string(v)), raw(true) {}
  LogField(std::string_view k, double v);
  LogField(std::string_view k, absl::Duration v);
  LogField(std::string_view k, const absl::Status& v);

  std::string key;
  std::string value;
  bool raw = false;  // Emit unquoted in JSON.
};

class Logger {
 public:
  Logger(std::ostream* out, LogFormat format, LogLevel min_level)
      : out_(out), format_(format), min_level_(min_level) {}

  void Log(LogLevel level, std::string_view event, std::initializer_list<LogField> fields);
  bool Enabled(LogLevel level) const { return level >= min_level_; }

  // Formats a line without writing it (exposed for tests).
  std::string Format(absl::Time time, LogLevel level, std::string_view event,
                     std::initializer_list<LogField> fields) const;

 private:
  absl::Mutex mu_;
  std::ostream* out_;
  LogFormat format_;
  LogLevel min_level_;
};

// The process's logger (stderr, text, info until configured by main()).
Logger& DefaultLogger();
void ConfigureDefaultLogger(LogFormat format, LogLevel min_level);

inline void LogDebug(std::string_view event, std::initializer_list<LogField> fields = {}) {
  DefaultLogger().Log(LogLevel::kDebug, event, fields);
}
inline void LogInfo(std::string_view event, std::initializer_list<LogField> fields = {}) {
  DefaultLogger().Log(LogLevel::kInfo, event, fields);
}
inline void LogWarn(std::string_view event, std::initializer_list<LogField> fields = {}) {
  DefaultLogger().Log(LogLevel::kWarn, event, fields);
}
inline void LogError(std::string_view event, std::initializer_list<LogField> fields = {}) {
  DefaultLogger().Log(LogLevel::kError, event, fields);
}

// Escapes a string for inclusion in a JSON string literal (without the quotes).
std::string JsonEscape(std::string_view s);

}  // namespace kiln
