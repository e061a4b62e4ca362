#include "builder-agent/podman/host_profile.h"

#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status.h"

namespace kiln::builder {
namespace {

constexpr const char* kProfileFormat = "v1";
constexpr absl::Duration kProbeTimeout = absl::Seconds(60);
constexpr size_t kMaxProfileBytes = 4096;
constexpr long kCgroup2Magic = 0x63677270;

bool OnPath(const std::string& name) {
  if (name.find('/') != std::string::npos) return ::access(name.c_str(), X_OK) == 0;
  const char* path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path ? path : "/usr/bin:/bin", ':')) {
    if (!dir.empty() && ::access(absl::StrCat(dir, "/", name).c_str(), X_OK) == 0) return true;
  }
  return false;
}

// Our own hard limits: podman's defaults for a root process (nofile 1048576) exceed them when
// the agent lacks CAP_SYS_RESOURCE, and then every container fails to start.
std::vector<std::string> OwnHardLimits() {
  std::vector<std::string> out;
  auto add = [&](const char* name, int resource) {
    rlimit lim{};
    if (::getrlimit(resource, &lim) != 0 || lim.rlim_max == RLIM_INFINITY) return;
    out.push_back(absl::StrCat(name, "=", lim.rlim_max, ":", lim.rlim_max));
  };
  add("nofile", RLIMIT_NOFILE);
  add("nproc", RLIMIT_NPROC);
  return out;
}

constexpr const char* kFallbackNproc = "nproc=4096:4096";

struct ProbeOutcome {
  bool ok = false;
  std::string output;
};

ProbeOutcome Probe(const ProbeOptions& options, const HostProfile& candidate) {
  CommandSpec spec;
  spec.name = "podman probe";
  spec.argv.push_back(options.podman_binary);
  spec.argv.insert(spec.argv.end(), options.storage_args.begin(), options.storage_args.end());
  spec.argv.insert(spec.argv.end(), {"--runtime", candidate.runtime, "--cgroup-manager",
                                     candidate.cgroup_manager, "run", "--rm", "--network", "none"});
  for (const std::string& u : candidate.ulimits) spec.argv.insert(spec.argv.end(), {"--ulimit", u});
  // No image needed: the host's own root, read-only below a throwaway overlay.
  spec.argv.insert(spec.argv.end(), {"--rootfs", "/:O", "true"});
  spec.env = options.env;
  spec.timeout = kProbeTimeout;
  spec.isolate = candidate.isolate;
  if (candidate.isolate) spec.bind_mounts = options.bind_mounts;
  ProbeOutcome outcome;
  auto result = RunCommand(
      spec, [&](std::string_view line) { outcome.output.append(line).append("\n"); },
      options.cancelled);
  if (!result.ok()) {
    outcome.output = std::string(result.status().message());
    return outcome;
  }
  outcome.ok = result->exit_code == 0;
  return outcome;
}

}  // namespace

std::string HostProfile::Serialize() const {
  return absl::StrCat("key=", key, "\nruntime=", runtime, "\ncgroup_manager=", cgroup_manager,
                      "\nulimits=", absl::StrJoin(ulimits, ","), "\nisolate=", isolate ? 1 : 0,
                      "\n");
}

absl::StatusOr<HostProfile> HostProfile::Parse(std::string_view text) {
  HostProfile p;
  bool has_key = false;
  for (absl::string_view line :
       absl::StrSplit(absl::string_view(text.data(), text.size()), '\n', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits('=', 1));
    if (kv.first == "key") {
      p.key = kv.second;
      has_key = true;
    } else if (kv.first == "runtime") {
      p.runtime = kv.second;
    } else if (kv.first == "cgroup_manager") {
      p.cgroup_manager = kv.second;
    } else if (kv.first == "ulimits") {
      p.ulimits = absl::StrSplit(kv.second, ',', absl::SkipEmpty());
    } else if (kv.first == "isolate") {
      p.isolate = kv.second == "1";
    }
  }
  if (!has_key || p.runtime.empty() || p.cgroup_manager.empty()) {
    return absl::InvalidArgumentError("incomplete host profile");
  }
  return p;
}

absl::StatusOr<std::string> PodmanVersion(const std::string& podman_binary,
                                          const std::function<bool()>& cancelled) {
  CommandSpec spec;
  spec.name = "podman version";
  spec.argv = {podman_binary, "version", "--format", "{{.Client.Version}}"};
  spec.timeout = absl::Seconds(30);
  std::string out;
  auto result = RunCommand(
      spec, [&](std::string_view line) { out.append(line).append("\n"); }, cancelled);
  if (absl::IsCancelled(result.status())) return result.status();
  if (!result.ok()) {
    return absl::UnavailableError(absl::StrCat("podman cannot run: ", result.status().message()));
  }
  if (result->exit_code != 0) {
    return absl::UnavailableError(absl::StrCat("podman version failed (exit ", result->exit_code,
                                               "): ", absl::StripAsciiWhitespace(out)));
  }
  std::string version(absl::StripAsciiWhitespace(out));
  if (version.empty() || version.size() > 64 || version.find('\n') != std::string::npos) {
    return absl::UnavailableError(absl::StrCat("unexpected podman version output: ", version));
  }
  return version;
}

absl::StatusOr<HostProfile> DetectHostProfile(const ProbeOptions& options, const LineSink& sink) {
  auto say = [&](const std::string& line) {
    if (sink) sink(line);
  };
  absl::StatusOr<std::string> version = PodmanVersion(options.podman_binary, options.cancelled);
  if (!version.ok()) return version.status();
  // A new machine image may bring another kernel or cgroup layout with the same podman.
  utsname uts{};
  std::string kernel = ::uname(&uts) == 0 ? uts.release : "unknown";
  struct statfs cgroup_fs {};
  std::string cgroups = ::statfs("/sys/fs/cgroup", &cgroup_fs) != 0 ? "none"
                        : cgroup_fs.f_type == kCgroup2Magic         ? "v2"
                                                                    : "v1";
  const std::string key =
      absl::StrCat(kProfileFormat, " podman ", *version, " kernel ", kernel, " cgroup ", cgroups);

  if (!options.cache_file.empty()) {
    std::ifstream in(options.cache_file);
    if (in) {
      std::string text(kMaxProfileBytes, '\0');
      in.read(text.data(), static_cast<std::streamsize>(text.size()));
      text.resize(static_cast<size_t>(in.gcount()));
      absl::StatusOr<HostProfile> cached = HostProfile::Parse(text);
      if (cached.ok() && cached->key == key && OnPath(cached->runtime) &&
          (!cached->isolate || (options.allow_isolation && CanIsolate()))) {
        cached->from_cache = true;
        return cached;
      }
    }
  }

  std::vector<std::string> runtimes;
  for (const std::string& r : options.runtimes) {
    if (OnPath(r)) runtimes.push_back(r);
  }
  if (runtimes.empty()) {
    return absl::UnavailableError(
        absl::StrCat("no OCI runtime found (tried ", absl::StrJoin(options.runtimes, ", "), ")"));
  }
  // systemd can manage cgroups only where it runs as init.
  std::vector<std::string> managers;
  if (std::filesystem::exists("/run/systemd/system")) managers.push_back("systemd");
  managers.push_back("cgroupfs");

  // Isolated first (clean kills, blob-info cache on the volume); without it only when podman
  // fails inside its own namespaces (e.g. where /proc may not be mounted).
  std::vector<bool> isolation = {options.allow_isolation && CanIsolate()};
  if (isolation[0]) isolation.push_back(false);
  std::vector<std::string> failures;
  auto stopped = [&] { return options.cancelled && options.cancelled(); };
  for (bool isolate : isolation) {
    if (options.prepare) RETURN_IF_ERROR(options.prepare(isolate));
    for (const std::string& runtime : runtimes) {
      for (const std::string& manager : managers) {
        HostProfile candidate;
        candidate.key = key;
        candidate.runtime = runtime;
        candidate.cgroup_manager = manager;
        candidate.isolate = isolate;
        ProbeOutcome outcome = Probe(options, candidate);
        if (stopped()) return absl::CancelledError("host profile detection cancelled");
        if (!outcome.ok && absl::StrContains(outcome.output, "rlimit")) {
          candidate.ulimits = OwnHardLimits();
          outcome = Probe(options, candidate);
        }
        if (!outcome.ok && absl::StrContains(outcome.output, "rlimit")) {
          // Outside a PID namespace runc here cannot raise nproc to our hard limit (it can to
          // a few thousand): keep nofile, cap nproc.
          candidate.ulimits = OwnHardLimits();
          for (std::string& u : candidate.ulimits) {
            if (absl::StartsWith(u, "nproc=")) u = kFallbackNproc;
          }
          outcome = Probe(options, candidate);
        }
        if (outcome.ok) {
          say(absl::StrCat("[podman] host profile: runtime ", runtime, ", cgroup manager ", manager,
                           candidate.ulimits.empty() ? "" : ", ulimits ",
                           absl::StrJoin(candidate.ulimits, " "),
                           isolate ? ", own PID+mount namespace per command" : ""));
          if (!options.cache_file.empty()) {
            std::string tmp = options.cache_file + ".tmp";
            {
              std::ofstream out(tmp, std::ios::trunc);
              out << candidate.Serialize();
              if (!out) return absl::InternalError("cannot write the host profile");
            }
            std::error_code ec;
            std::filesystem::rename(tmp, options.cache_file, ec);
            if (ec) return absl::InternalError("cannot write the host profile: " + ec.message());
          }
          return candidate;
        }
        std::string why(absl::StripAsciiWhitespace(outcome.output));
        if (why.size() > 400) why = why.substr(why.size() - 400);
        std::string what = absl::StrCat(runtime, "/", manager, isolate ? " (isolated)" : "");
        failures.push_back(absl::StrCat(what, ": ", why));
        say(absl::StrCat("[podman] probe ", what, " failed: ", why));
      }
    }
  }
  return absl::UnavailableError(
      absl::StrCat("podman cannot run a container on this host: ", absl::StrJoin(failures, "; ")));
}

}  // namespace kiln::builder
