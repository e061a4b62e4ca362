// Podman on a builder machine's persistent volume: builds with the layer cache, pushes by digest,
// and keeps the volume from filling up. Everything podman keeps lives under <volume>/podman:
//
//   storage/          --root: images, layers, the layer cache (native overlay driver)
//   run/ libpod-tmp/  --runroot, --tmpdir: runtime state, emptied when the machine rebooted
//                     (podman wants a run root of at most 50 characters: a longer one is
//                     seen by podman at /run/kiln-podman/<hash of the path>, bind-mounted
//                     there in each command's own mount namespace, or a symlink)
//   tmp/              TMPDIR: build contexts and image copies in flight
//   blob-info-cache/  podman's blob-info cache (which compressed blob the registry has for each
//                     layer). Podman 4.3 hard-codes /var/lib/containers/cache for root, with no
//                     flag or config; each podman command runs in its own mount namespace with
//                     this directory bound there (see HostProfile::isolate).
//   host-profile      what this host's podman needs (see host_profile.h)
//
// Every podman command goes through the command runner: output streamed, secrets redacted,
// cancellation kills the whole podman process tree (its own PID namespace when possible, so RUN
// containers die with it).
//
// One volume is one build cache: call Build, Push, RunInImage and Housekeep one at a time (the
// agent runs one activity at a time); Housekeep during a Build could remove what it builds on.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "builder-agent/command/command.h"
#include "builder-agent/podman/host_profile.h"

namespace kiln::builder {

inline constexpr int kMaxKeepLast = 1000;
inline constexpr size_t kMaxBuildArgs = 64;
inline constexpr size_t kMaxRunEnv = 64;
inline constexpr size_t kMaxRunRootChars = 50;  // podman's limit
inline constexpr size_t kMaxLabelValueBytes = 256;
inline constexpr uintmax_t kMaxContainerfileBytes = 1 << 20;

struct PodmanOptions {
  std::string volume;  // The machine's persistent volume (must not be on overlayfs).
  std::string podman_binary = "podman";
  std::vector<std::string> runtimes = {"crun", "runc"};  // Probed in this order.
  // Housekeeping resets the container storage past this fraction of the volume in use.
  double reset_threshold = 0.75;
  absl::Duration command_timeout = absl::Minutes(30);
  // false: every command runs in the host's namespaces, as a plain podman would, even where the
  // host allows isolation. A deploy host needs this: a `run -d` container must outlive the
  // podman command, and in its own PID namespace it would die with it. All commands of one
  // storage must agree (their mounts and the run root's path must look the same to each).
  bool isolate_commands = true;
};

struct BuildRequest {
  std::string context_dir;
  std::string containerfile;  // Relative to context_dir; empty: podman's default lookup.
  std::string repository;     // The image is tagged <repository>:<commit>.
  std::string project;        // Labels kiln.project, kiln.build, kiln.commit.
  std::string build_id;
  std::string commit;
  // "none" (default: a build sees only its context and base image, so it is reproducible and
  // cannot leak anything) or "host" (opt-in, e.g. to fetch dependencies); never a bridge.
  std::string network = "none";
  std::vector<std::pair<std::string, std::string>> build_args;
  std::vector<std::string> secrets;  // Redacted from the log and errors.
  absl::Duration timeout = absl::Minutes(30);
  // false: base images may be pulled from a registry without TLS (the agent's own, on loopback).
  bool tls_verify = true;
};

struct BuildResult {
  std::string image_id;   // sha256:...
  std::string tag;        // <repository>:<commit>
  int layers_total = 0;   // Steps committing a layer (all but FROM).
  int layers_reused = 0;  // Of those, taken from the layer cache.
  absl::Duration duration;
};

struct PushRequest {
  std::string image;        // Local image id or name.
  std::string destination;  // repository[:tag] in the registry.
  bool tls_verify = true;   // false for a plain-HTTP registry on 127.0.0.1.
  std::string username;     // Optional registry credentials (passed on stdin? no: --creds).
  std::string password;     // Redacted from everything.
  absl::Duration timeout = absl::Minutes(30);
};

struct PushResult {
  std::string digest;     // sha256:... of the manifest pushed.
  std::string reference;  // <destination repository>@<digest>
  int blobs_pushed = 0;   // Layers uploaded.
  int blobs_reused = 0;   // Layers the registry already had.
  bool config_pushed = false;
  // Compressed bytes uploaded (layers and config), or -1 when unknown: read back from the
  // manifest, which only a plain-HTTP loopback registry (tls_verify false) is asked for.
  int64_t bytes_pushed = -1;
  std::vector<std::string> uploaded;  // Digests of what was uploaded (config included).
  absl::Duration duration;
};

struct RunInImageRequest {
  std::string name;  // Shown in "[private step: NAME] ok".
  std::string image;
  std::vector<std::string> argv;
  // Set in the container. Values (secrets, typically) travel through podman's environment,
  // never its command line, where any process on the machine could read them.
  std::vector<std::pair<std::string, std::string>> env;
  std::vector<std::string> secrets;  // Redacted from output and errors.
  bool is_private = true;            // Output stays on the machine (see command.h).
  std::string network = "none";      // or "host"
  absl::Duration timeout = absl::Minutes(30);
};

struct HousekeepResult {
  int images_removed = 0;
  int images_kept = 0;
  int containers_removed = 0;  // Leftovers of cancelled or crashed builds.
  double volume_used = 0;      // Fraction, after housekeeping.
  bool reset = false;          // The storage was reset.
};

class Podman {
 public:
  // Prepares the volume's directories and finds (or reads back) the host profile. Unavailable
  // when podman cannot run containers here. `sink` gets what detection found; `cancelled`
  // (may be empty), asked while detection's commands run, ends it Cancelled.
  static absl::StatusOr<std::unique_ptr<Podman>> Create(
      PodmanOptions options, const LineSink& sink = {},
      const std::function<bool()>& cancelled = {});

  const HostProfile& profile() const { return profile_; }
  const std::string& storage_root() const { return storage_root_; }
  // podman's global flags for this volume and host. Commands must run through Run(): with a
  // long volume path the run root they name is only right inside Run()'s mount namespace.
  std::vector<std::string> GlobalArgs() const;

  absl::StatusOr<BuildResult> Build(const BuildRequest& request, const LineSink& sink,
                                    const std::function<bool()>& cancelled);
  absl::StatusOr<PushResult> Push(const PushRequest& request, const LineSink& sink,
                                  const std::function<bool()>& cancelled);
  // Removes this project's images but the newest `keep_last` (by creation time; base images
  // and the layer cache are never labelled, so never touched) and leftover build containers;
  // then, past the reset threshold, resets the whole storage and the temporary dirs.
  absl::StatusOr<HousekeepResult> Housekeep(const std::string& project, int keep_last,
                                            const LineSink& sink);

  // `podman run --rm` of a command in a local image, e.g. a private step with secrets. The exit
  // code is in the result; errors as RunCommand's.
  absl::StatusOr<CommandResult> RunInImage(const RunInImageRequest& request, const LineSink& sink,
                                           const std::function<bool()>& cancelled);

  // Runs `podman <global flags> args...` through the command runner.
  absl::StatusOr<CommandResult> Run(const std::vector<std::string>& args, const LineSink& sink,
                                    const std::function<bool()>& cancelled, absl::Duration timeout,
                                    const std::vector<std::string>& secrets = {},
                                    const std::string& stdin_data = "");

  // Fraction of the volume's filesystem in use (as df computes it).
  absl::StatusOr<double> VolumeUsed() const;
  void set_reset_threshold(double threshold) { options_.reset_threshold = threshold; }

 private:
  Podman(PodmanOptions options) : options_(std::move(options)) {}
  absl::Status PrepareDirs();
  absl::StatusOr<std::vector<std::string>> Lines(const std::vector<std::string>& args);
  absl::StatusOr<int> RemoveLeftoverContainers();
  std::vector<BindMount> IsolatedMounts() const;
  absl::Status ShortenRunRoot();
  absl::Status PrepareShortRunRoot(bool isolate) const;
  CommandSpec Spec(const std::vector<std::string>& args, absl::Duration timeout) const;

  PodmanOptions options_;
  HostProfile profile_;
  std::string base_;  // <volume>/podman
  std::string storage_root_;
  std::string run_root_;
  std::string run_root_arg_;  // run_root_, or a short path showing it (see ShortenRunRoot).
  std::string libpod_tmp_;
  std::string tmp_;
  std::string blob_cache_;
  bool blob_cache_bound_ = false;
};

}  // namespace kiln::builder
