#include "common/logging.h"

#include <cstdio>
#include <iostream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/json_scalar.h"

namespace kiln {
namespace {

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "DEBUG";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kWarn:
      return "WARN";
    case LogLevel::kError:
      return "ERROR";
  }
  return "?";
}

const char* LevelJsonName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "?";
}

// Text values are quoted when they hold spaces, quotes or '=' so that lines stay parseable.
std::string TextValue(const std::string& v) {
  bool needs_quotes = v.empty();
  for (char c : v) {
    if (c == ' ' || c == '"' || c == '=' || c == '\n' || c == '\t') needs_quotes = true;
  }
  if (!needs_quotes) return v;
  return absl::StrCat("\"", JsonEscape(v), "\"");
}

std::unique_ptr<Logger>& DefaultLoggerSlot() {
  static auto* slot = new std::unique_ptr<Logger>(
      std::make_unique<Logger>(&std::cerr, LogFormat::kText, LogLevel::kInfo));
  return *slot;
}

}  // namespace

LogField::LogField(std::string_view k, double v) : key(k), raw(true) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  value = buf;
}

LogField::LogField(std::string_view k, absl::Duration v) : key(k), value(absl::FormatDuration(v)) {}

LogField::LogField(std::string_view k, const absl::Status& v) : key(k), value(v.ToString()) {}

std::string JsonEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  json::AppendJsonEscaped(s, &out);
  return out;
}

std::string Logger::Format(absl::Time time, LogLevel level, std::string_view event,
                           std::initializer_list<LogField> fields) const {
  std::string ts = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", time, absl::UTCTimeZone());
  std::string line;
  if (format_ == LogFormat::kJson) {
    absl::StrAppend(&line, "{\"ts\":\"", ts, "\",\"level\":\"", LevelJsonName(level),
                    "\",\"event\":\"", JsonEscape(event), "\"");
    for (const LogField& f : fields) {
      absl::StrAppend(&line, ",\"", JsonEscape(f.key), "\":");
      if (f.raw) {
        absl::StrAppend(&line, f.value);
      } else {
        absl::StrAppend(&line, "\"", JsonEscape(f.value), "\"");
      }
    }
    line += "}";
  } else {
    absl::StrAppend(&line, ts, " ", LevelName(level), " ", std::string(event));
    for (const LogField& f : fields) {
      absl::StrAppend(&line, " ", f.key, "=", TextValue(f.value));
    }
  }
  return line;
}

void Logger::Log(LogLevel level, std::string_view event, std::initializer_list<LogField> fields) {
  if (!Enabled(level)) return;
  std::string line = Format(absl::Now(), level, event, fields);
  line += '\n';
  absl::MutexLock lock(&mu_);
  out_->write(line.data(), static_cast<std::streamsize>(line.size()));
  out_->flush();
}

Logger& DefaultLogger() { return *DefaultLoggerSlot(); }

void ConfigureDefaultLogger(LogFormat format, LogLevel min_level) {
  // Replaced once, at start-up, before any thread logs.
  DefaultLoggerSlot() = std::make_unique<Logger>(&std::cerr, format, min_level);
}

}  // namespace kiln
