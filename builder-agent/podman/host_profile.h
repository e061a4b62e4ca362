// What this host's podman needs to run build steps, found by trying instead of assumed: which
// OCI runtime works (crun fails on hybrid cgroups, runc may be the only one installed), which
// cgroup manager (systemd only when systemd runs), whether RUN steps need explicit ulimits (a
// root without CAP_SYS_RESOURCE cannot raise podman's default rlimits), and whether podman can
// run in its own PID + mount namespace (for clean kills and the blob-info cache bind mount).
//
// Probing takes about a second, so the result is kept in a file on the volume, keyed by the
// podman version, the kernel release and the cgroup version (and the profile format): later
// agent starts read it back; a new machine image probes again.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "builder-agent/command/command.h"

namespace kiln::builder {

struct HostProfile {
  // "v1 podman 4.3.1 kernel 6.1.0-26-amd64 cgroup v1": another key is probed again.
  std::string key;
  std::string runtime;
  std::string cgroup_manager;
  std::vector<std::string> ulimits;  // "nofile=20000:20000"; empty when podman's defaults work.
  bool isolate = false;
  bool from_cache = false;  // Read back from the volume rather than probed now.

  std::string Serialize() const;
  static absl::StatusOr<HostProfile> Parse(std::string_view text);
};

struct ProbeOptions {
  std::string podman_binary = "podman";
  // podman's global flags for the volume (--root, --runroot, ...), without runtime/cgroups.
  std::vector<std::string> storage_args;
  std::vector<std::pair<std::string, std::string>> env;
  std::vector<std::string> runtimes = {"crun", "runc"};  // In order of preference.
  std::vector<BindMount> bind_mounts;                    // Applied when isolating.
  // Called before probing with or without isolation (may be empty).
  std::function<absl::Status(bool isolate)> prepare;
  std::string cache_file;  // Where the profile is kept.
  // false: probe (and accept from the cache) only profiles without isolation, for callers whose
  // containers must outlive the podman command (a deploy host).
  bool allow_isolation = true;
  // Asked while each command runs (may be empty): true stops it, and detection ends Cancelled
  // (a worker stopping while podman waits for its storage lock).
  std::function<bool()> cancelled;
};

// Reads the cached profile when its key matches this podman, else probes and caches it.
// Unavailable when podman cannot run a container at all on this host (with every reason).
absl::StatusOr<HostProfile> DetectHostProfile(const ProbeOptions& options, const LineSink& sink);

// "4.3.1", from `podman version`.
absl::StatusOr<std::string> PodmanVersion(const std::string& podman_binary,
                                          const std::function<bool()>& cancelled = {});

}  // namespace kiln::builder
