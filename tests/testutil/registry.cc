#include "tests/testutil/registry.h"

#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "tests/testutil/http.h"

namespace kiln::testutil {

namespace fs = std::filesystem;

absl::StatusOr<std::unique_ptr<RegistryProcess>> RegistryProcess::Start(const std::string& dir) {
  std::unique_ptr<RegistryProcess> registry(new RegistryProcess());
  registry->dir_ = dir;
  registry->port_ = FreePort();
  registry->address_ = absl::StrCat("127.0.0.1:", registry->port_);
  std::string config = dir + "/registry.yml";
  {
    std::ofstream out(config);
    out << "version: 0.1\n"
           "log:\n"
           "  level: warn\n"
           "  accesslog:\n"
           "    disabled: false\n"
           "storage:\n"
           "  filesystem:\n"
           "    rootdirectory: "
        << dir
        << "/data\n"
           "  delete:\n"
           "    enabled: true\n"
           "http:\n"
           "  addr: "
        << registry->address_
        << "\n"
           "  secret: kiln-test-registry\n";
    if (!out) return absl::InternalError("cannot write the registry config");
  }
  auto process = Process::Start(kRegistryBinary, {"serve", config}, dir + "/registry.log");
  if (!process.ok()) return process.status();
  registry->process_ = std::move(*process);
  Process* p = registry->process_.get();
  int port = registry->port_;
  bool up = WaitFor([&] { return !p->Running() || HttpGet("127.0.0.1", port, "/v2/").ok(); },
                    absl::Seconds(20));
  if (!up || !p->Running()) {
    return absl::UnavailableError(
        absl::StrCat("docker-registry did not come up: ", registry->Log()));
  }
  return registry;
}

RegistryProcess::~RegistryProcess() {
  if (process_ && process_->Running()) {
    process_->Signal(SIGTERM);
    if (!process_->Wait(absl::Seconds(5)).ok()) process_->Signal(SIGKILL);
  }
  // Process's destructor reaps it.
}

std::string RegistryProcess::Log() const { return ReadFile(dir_ + "/registry.log"); }

int RegistryProcess::BlobUploads() const {
  int count = 0;
  for (absl::string_view line : absl::StrSplit(Log(), '\n')) {
    if (line.find("\"POST /v2/") != absl::string_view::npos &&
        line.find("/blobs/uploads/") != absl::string_view::npos) {
      ++count;
    }
  }
  return count;
}

bool RegistryProcess::HasBlob(const std::string& digest) const {
  std::string hex = digest.substr(digest.find(':') + 1);
  if (hex.size() < 2) return false;
  std::error_code ec;
  return fs::exists(absl::StrCat(dir_, "/data/docker/registry/v2/blobs/sha256/", hex.substr(0, 2),
                                 "/", hex, "/data"),
                    ec);
}

absl::Status ImportBusyboxImage(const PodmanRunner& podman, const std::string& name,
                                const std::string& work_dir) {
  std::string rootfs = work_dir + "/busybox-rootfs";
  std::error_code ec;
  fs::remove_all(rootfs, ec);
  fs::create_directories(rootfs + "/bin", ec);
  fs::create_directories(rootfs + "/tmp", ec);
  if (ec) return absl::InternalError("cannot create the busybox rootfs");
  fs::copy_file(kBusyboxBinary, rootfs + "/bin/busybox", ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot copy busybox: ", ec.message()));

  std::string applets;
  auto listed = RunCommand(kBusyboxBinary, {"--list"}, &applets, absl::Seconds(10));
  if (!listed.ok() || *listed != 0) return absl::InternalError("busybox --list failed");
  for (absl::string_view applet : absl::StrSplit(applets, '\n', absl::SkipWhitespace())) {
    applet = absl::StripAsciiWhitespace(applet);
    // The list includes busybox itself: linking it would replace the binary with a loop.
    if (applet == "busybox" || applet.find('/') != absl::string_view::npos) continue;
    fs::create_symlink("busybox", absl::StrCat(rootfs, "/bin/", applet), ec);
    if (ec) return absl::InternalError(absl::StrCat("cannot link ", applet));
  }
  std::string tar = work_dir + "/busybox.tar";
  std::string out;
  auto tarred = RunCommand("/bin/tar", {"-C", rootfs, "-cf", tar, "."}, &out, absl::Seconds(30));
  if (!tarred.ok() || *tarred != 0) return absl::InternalError("tar failed: " + out);

  absl::Status imported = podman({"import", "--quiet", tar, name});
  fs::remove_all(rootfs, ec);
  fs::remove(tar, ec);
  return imported;
}

absl::Status ImportBusyboxImage(const std::vector<std::string>& podman_argv,
                                const std::string& name, const std::string& work_dir) {
  if (podman_argv.empty()) return absl::InvalidArgumentError("no podman command");
  return ImportBusyboxImage(
      PlainPodman(std::vector<std::string>(podman_argv.begin() + 1, podman_argv.end())), name,
      work_dir);
}

PodmanRunner PlainPodman(std::vector<std::string> global_args) {
  return [global = std::move(global_args)](const std::vector<std::string>& args) {
    std::vector<std::string> full = global;
    full.insert(full.end(), args.begin(), args.end());
    std::string out;
    auto code = RunCommand("/usr/bin/podman", full, &out, absl::Minutes(5));
    if (!code.ok()) return code.status();
    if (*code != 0) {
      return absl::InternalError(
          absl::StrCat("podman ", args.empty() ? "" : args[0], " failed: ", out));
    }
    return absl::OkStatus();
  };
}

bool Installed(const std::string& path) { return ::access(path.c_str(), X_OK) == 0; }

}  // namespace kiln::testutil
