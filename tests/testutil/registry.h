// Container image fixtures for podman tests: Debian's docker-registry (a real OCI registry)
// on 127.0.0.1 with its config and storage in a test's directory, and a tiny base image built
// from Debian's busybox-static with `podman import` (no image can be pulled on a test machine).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tests/testutil/process.h"

namespace kiln::testutil {

inline constexpr const char* kRegistryBinary = "/usr/bin/docker-registry";
inline constexpr const char* kBusyboxBinary = "/bin/busybox";

class RegistryProcess {
 public:
  // Writes `dir`/registry.yml, stores blobs under `dir`/data, listens on 127.0.0.1:<free port>
  // and returns once GET /v2/ answers.
  static absl::StatusOr<std::unique_ptr<RegistryProcess>> Start(const std::string& dir);
  ~RegistryProcess();  // Stops the process (by PID).

  const std::string& address() const { return address_; }  // "127.0.0.1:PORT"
  int port() const { return port_; }
  std::string Log() const;
  // Blob uploads the registry has started so far (POST .../blobs/uploads/ in its access log).
  int BlobUploads() const;
  // Repositories holding the blob with this digest (a directory in the registry's storage).
  bool HasBlob(const std::string& digest) const;

 private:
  RegistryProcess() = default;
  std::string dir_;
  std::string address_;
  int port_ = 0;
  std::unique_ptr<Process> process_;
};

// Runs `podman <args>` against some storage; returns an error unless podman exits 0.
using PodmanRunner = std::function<absl::Status(const std::vector<std::string>& args)>;

// Imports busybox (with a link per applet) as image `name` with `podman import`, run by
// `podman` (which knows the storage's flags). `work_dir` holds the rootfs and tar meanwhile.
absl::Status ImportBusyboxImage(const PodmanRunner& podman, const std::string& name,
                                const std::string& work_dir);

// The same with plain `podman_argv[0] podman_argv[1..] <args>`. For a kiln::builder::Podman
// storage prefer a runner calling Podman::Run (a long volume path is only right in its mount
// namespace).
absl::Status ImportBusyboxImage(const std::vector<std::string>& podman_argv,
                                const std::string& name, const std::string& work_dir);

// A PodmanRunner for plain `podman <global_args> <args>` (no namespaces, no redaction).
PodmanRunner PlainPodman(std::vector<std::string> global_args);

// Whether a binary the tests need is installed (to skip with a clear message when not).
bool Installed(const std::string& path);

}  // namespace kiln::testutil
