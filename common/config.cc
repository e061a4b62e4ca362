#include "common/config.h"

#include <charconv>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/version.h"

namespace kiln {

void AddCommonFlags(CLI::App& app, CommonFlags* flags) {
  app.set_version_flag("--version", std::string("kiln ") + kVersion);
  app.add_option("--log-format", flags->log_format, "Log line format: text or json")
      ->envname("KILN_LOG_FORMAT")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  app.add_option("--log-level", flags->log_level, "Lowest level logged: debug, info, warn, error")
      ->envname("KILN_LOG_LEVEL")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}))
      ->capture_default_str();
}

void ConfigureMutexes() {
#ifdef NDEBUG
  // Debian's abseil is built without NDEBUG, so absl::Mutex keeps its deadlock detector on: a
  // lock-order graph updated on every lock, about 3% of the orchestrator's CPU under load. Our
  // debug and sanitizer builds (no NDEBUG) keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
}

void ApplyCommonFlags(const CommonFlags& flags) {
  ConfigureMutexes();
  LogLevel level = LogLevel::kInfo;
  if (flags.log_level == "debug") level = LogLevel::kDebug;
  if (flags.log_level == "warn") level = LogLevel::kWarn;
  if (flags.log_level == "error") level = LogLevel::kError;
  ConfigureDefaultLogger(flags.log_format == "json" ? LogFormat::kJson : LogFormat::kText, level);
}

int ParseFlags(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11 signals --help and --version as "errors" with exit code 0.
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  return -1;
}

std::string HostPort::ToString() const {
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

absl::StatusOr<HostPort> ParseHostPort(const std::string& value, const std::string& what) {
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": '", value, "' ", why));
  };
  HostPort out;
  std::string port_text;
  if (!value.empty() && value.front() == '[') {
    size_t close = value.find(']');
    if (close == std::string::npos || close + 1 >= value.size() || value[close + 1] != ':') {
      return bad("is not [host]:port");
    }
    out.host = value.substr(1, close - 1);
    port_text = value.substr(close + 2);
  } else {
    size_t colon = value.rfind(':');
    if (colon == std::string::npos) return bad("is not host:port");
    out.host = value.substr(0, colon);
    port_text = value.substr(colon + 1);
    if (out.host.find(':') != std::string::npos) return bad("needs [brackets] around an IPv6 host");
  }
  if (out.host.empty()) return bad("has no host");
  int port = -1;
  auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || ptr != port_text.data() + port_text.size() || port_text.empty()) {
    return bad("has a port that is not a number");
  }
  if (port < 0 || port > 65535) return bad("has a port outside 0..65535");
  out.port = port;
  return out;
}

CLI::Validator HostPortValidator() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        auto parsed = ParseHostPort(value, "value");
        if (parsed.ok()) return {};
        return std::string(parsed.status().message());
      },
      "HOST:PORT", "host:port");
}

}  // namespace kiln
