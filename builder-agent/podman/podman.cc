#include "builder-agent/podman/podman.h"

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "builder-agent/podman/output_parse.h"
#include "builder-agent/podman/registry_client.h"
#include "common/status.h"

namespace kiln::builder {
namespace {

namespace fs = std::filesystem;

constexpr long kOverlayFsMagic = 0x794c7630;
// Where podman 4.3 keeps its blob-info cache when running as root (not configurable there).
constexpr const char* kSystemBlobInfoCacheDir = "/var/lib/containers/cache";
constexpr absl::Duration kQuickTimeout = absl::Seconds(60);
constexpr absl::Duration kCleanupTimeout = absl::Seconds(10);

std::string ReadSmallFile(const std::string& path) {
  std::ifstream in(path);
  std::string text(4096, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(std::max<std::streamsize>(0, in.gcount())));
  return text;
}

absl::Status WriteSmallFile(const std::string& path, const std::string& content, int mode) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << content;
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", tmp));
  }
  ::chmod(tmp.c_str(), static_cast<mode_t>(mode));
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot write ", path, ": ", ec.message()));
  return absl::OkStatus();
}

// Empties a directory but keeps it.
absl::Status ClearDir(const std::string& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    fs::create_directories(dir, ec);
    return ec ? absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()))
              : absl::OkStatus();
  }
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::error_code rm_ec;
    fs::remove_all(entry.path(), rm_ec);
    if (rm_ec) {
      return absl::InternalError(absl::StrCat("cannot clear ", dir, ": ", rm_ec.message()));
    }
  }
  return ec ? absl::InternalError(absl::StrCat("cannot list ", dir, ": ", ec.message()))
            : absl::OkStatus();
}

bool ValidLabelValue(const std::string& v) {
  if (v.empty() || v.size() > kMaxLabelValueBytes) return false;
  return std::all_of(v.begin(), v.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

// registry host of "host[:port]/path[:tag]".
std::string RegistryHost(const std::string& destination) {
  return destination.substr(0, destination.find('/'));
}

// "host/repo:tag" or "host/repo@sha256:..." without the tag or digest.
std::string RepositoryOf(const std::string& reference) {
  std::string repo = reference.substr(0, reference.find('@'));
  size_t slash = repo.rfind('/');
  size_t colon = repo.rfind(':');
  if (colon != std::string::npos && (slash == std::string::npos || colon > slash)) {
    repo.resize(colon);
  }
  return repo;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Podman>> Podman::Create(PodmanOptions options, const LineSink& sink,
                                                       const std::function<bool()>& cancelled) {
  if (options.volume.empty() || options.volume[0] != '/') {
    return absl::InvalidArgumentError("the volume must be an absolute path");
  }
  if (options.reset_threshold < 0 || options.reset_threshold > 1) {
    return absl::InvalidArgumentError("reset threshold must be within [0, 1]");
  }
  std::unique_ptr<Podman> podman(new Podman(std::move(options)));
  RETURN_IF_ERROR(podman->PrepareDirs());

  ProbeOptions probe;
  probe.podman_binary = podman->options_.podman_binary;
  probe.storage_args = podman->GlobalArgs();
  probe.env = {{"TMPDIR", podman->tmp_}};
  probe.runtimes = podman->options_.runtimes;
  probe.bind_mounts = podman->IsolatedMounts();
  Podman* self = podman.get();
  probe.prepare = [self](bool isolate) { return self->PrepareShortRunRoot(isolate); };
  probe.cache_file = podman->base_ + "/host-profile";
  probe.allow_isolation = podman->options_.isolate_commands;
  probe.cancelled = cancelled;
  ASSIGN_OR_RETURN(podman->profile_, DetectHostProfile(probe, sink));
  if (!podman->options_.isolate_commands) podman->profile_.isolate = false;
  RETURN_IF_ERROR(podman->PrepareShortRunRoot(podman->profile_.isolate));
  return podman;
}

absl::Status Podman::PrepareDirs() {
  base_ = options_.volume + "/podman";
  storage_root_ = base_ + "/storage";
  run_root_ = base_ + "/run";
  libpod_tmp_ = base_ + "/libpod-tmp";
  tmp_ = base_ + "/tmp";
  blob_cache_ = base_ + "/blob-info-cache";
  std::error_code ec;
  for (const std::string& dir : {base_, storage_root_, run_root_, libpod_tmp_, tmp_, blob_cache_}) {
    fs::create_directories(dir, ec);
    if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  }
  // The bind mount target must exist; podman itself creates it on first use anyway. Where it
  // cannot be made, podman keeps its blob-info cache there (or in memory) as usual.
  fs::create_directories(kSystemBlobInfoCacheDir, ec);
  blob_cache_bound_ = fs::is_directory(kSystemBlobInfoCacheDir, ec);

  RETURN_IF_ERROR(ShortenRunRoot());

  // Native overlay cannot stack its upper layers on overlayfs.
  struct statfs sfs {};
  if (::statfs(storage_root_.c_str(), &sfs) == 0 && sfs.f_type == kOverlayFsMagic) {
    return absl::FailedPreconditionError(absl::StrCat("the volume ", options_.volume,
                                                      " is on overlayfs; podman's storage root "
                                                      "needs a plain filesystem"));
  }

  // run/ and the temp dirs hold state that is only valid until the machine reboots (podman
  // expects them on tmpfs); here they are on the volume, so a new boot empties them.
  std::string boot_id(absl::StripAsciiWhitespace(ReadSmallFile("/proc/sys/kernel/random/boot_id")));
  std::string boot_file = base_ + "/boot-id";
  if (!boot_id.empty() && absl::StripAsciiWhitespace(ReadSmallFile(boot_file)) != boot_id) {
    for (const std::string& dir : {run_root_, libpod_tmp_, tmp_}) RETURN_IF_ERROR(ClearDir(dir));
    RETURN_IF_ERROR(WriteSmallFile(boot_file, boot_id + "\n", 0644));
  }
  return absl::OkStatus();
}

absl::Status Podman::ShortenRunRoot() {
  run_root_arg_ = run_root_;
  if (run_root_.size() <= kMaxRunRootChars) return absl::OkStatus();
  // Podman refuses a run root longer than 50 characters (its sockets live there, and a socket
  // path is short). The state stays on the volume, seen by podman at a short path.
  uint64_t hash = 14695981039346656037ull;  // FNV-1a: stable across builds and restarts.
  for (unsigned char c : run_root_) hash = (hash ^ c) * 1099511628211ull;
  std::error_code ec;
  for (const char* parent : {"/run/kiln-podman", "/tmp/kiln-podman"}) {
    fs::create_directories(parent, ec);
    if (ec) continue;
    ::chmod(parent, 0700);
    run_root_arg_ = absl::StrCat(parent, "/", absl::Hex(hash, absl::kZeroPad16));
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(
      absl::StrCat("podman's run root ", run_root_,
                   " is longer than 50 characters and no short path for it could be made in /run "
                   "or /tmp"));
}

absl::Status Podman::PrepareShortRunRoot(bool isolate) const {
  if (run_root_arg_ == run_root_) return absl::OkStatus();
  // Isolated commands get the volume's run/ bind-mounted there (runc refuses a container root
  // reached through a symlink, as `--rootfs` puts it in the run root); others follow a symlink.
  std::error_code ec;
  bool is_link = fs::is_symlink(run_root_arg_, ec);
  if (isolate) {
    if (is_link) fs::remove(run_root_arg_, ec);
    fs::create_directories(run_root_arg_, ec);
    if (!fs::is_directory(run_root_arg_, ec) || fs::is_symlink(run_root_arg_, ec)) {
      return absl::InternalError(absl::StrCat("cannot create ", run_root_arg_));
    }
    return absl::OkStatus();
  }
  if (is_link && fs::read_symlink(run_root_arg_, ec) == run_root_) return absl::OkStatus();
  fs::remove(run_root_arg_, ec);  // An empty directory or a stale link.
  fs::create_directory_symlink(run_root_, run_root_arg_, ec);
  if (ec)
    return absl::InternalError(absl::StrCat("cannot link ", run_root_arg_, ": ", ec.message()));
  return absl::OkStatus();
}

std::vector<BindMount> Podman::IsolatedMounts() const {
  std::vector<BindMount> mounts;
  if (blob_cache_bound_) mounts.push_back({blob_cache_, kSystemBlobInfoCacheDir});
  if (run_root_arg_ != run_root_) mounts.push_back({run_root_, run_root_arg_});
  return mounts;
}

std::vector<std::string> Podman::GlobalArgs() const {
  std::vector<std::string> args = {
      "--root",    storage_root_,      "--runroot", run_root_arg_,      "--tmpdir",
      libpod_tmp_, "--storage-driver", "overlay",   "--events-backend", "none"};
  if (!profile_.runtime.empty()) {
    args.insert(args.end(),
                {"--runtime", profile_.runtime, "--cgroup-manager", profile_.cgroup_manager});
  }
  return args;
}

CommandSpec Podman::Spec(const std::vector<std::string>& args, absl::Duration timeout) const {
  CommandSpec spec;
  spec.name = args.empty() ? "podman" : absl::StrCat("podman ", args[0]);
  spec.argv.push_back(options_.podman_binary);
  std::vector<std::string> global = GlobalArgs();
  spec.argv.insert(spec.argv.end(), global.begin(), global.end());
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  spec.env = {{"TMPDIR", tmp_}};
  spec.timeout = timeout;
  spec.kill_grace = absl::Milliseconds(300);
  spec.isolate = profile_.isolate;
  if (spec.isolate) spec.bind_mounts = IsolatedMounts();
  return spec;
}

absl::StatusOr<CommandResult> Podman::Run(const std::vector<std::string>& args,
                                          const LineSink& sink,
                                          const std::function<bool()>& cancelled,
                                          absl::Duration timeout,
                                          const std::vector<std::string>& secrets,
                                          const std::string& stdin_data) {
  CommandSpec spec = Spec(args, timeout);
  spec.secrets = secrets;
  spec.stdin_data = stdin_data;
  return RunCommand(spec, sink, cancelled);
}

absl::StatusOr<CommandResult> Podman::RunInImage(const RunInImageRequest& request,
                                                 const LineSink& sink,
                                                 const std::function<bool()>& cancelled) {
  if (request.image.empty() || request.argv.empty()) {
    return absl::InvalidArgumentError("run in image needs an image and a command");
  }
  if (request.network != "none" && request.network != "host") {
    return absl::InvalidArgumentError("network must be none or host");
  }
  if (request.env.size() > kMaxRunEnv) return absl::InvalidArgumentError("too many variables");
  static std::atomic<int> counter{0};
  const std::string container = absl::StrCat("kiln-run-", ::getpid(), "-", counter++);
  std::vector<std::string> args = {"run",           "--rm",   "--pull=never", "--network",
                                   request.network, "--name", container};
  for (const std::string& u : profile_.ulimits) args.insert(args.end(), {"--ulimit", u});
  for (const auto& [k, v] : request.env) {
    if (k.empty() || k.find('=') != std::string::npos || k == "TMPDIR" || k == "PATH") {
      return absl::InvalidArgumentError(absl::StrCat("bad variable name: ", k));
    }
    // `--env NAME` copies the value from podman's own environment: never on a command line.
    args.insert(args.end(), {"--env", k});
  }
  args.push_back(request.image);
  args.insert(args.end(), request.argv.begin(), request.argv.end());
  CommandSpec spec = Spec(args, request.timeout);
  spec.name = request.name.empty() ? "run in image" : request.name;
  spec.is_private = request.is_private;
  spec.secrets = request.secrets;
  for (const auto& kv : request.env) spec.env.push_back(kv);
  absl::StatusOr<CommandResult> result = RunCommand(spec, sink, cancelled);
  if (!result.ok()) {
    // podman was killed before it could remove the container.
    absl::StatusOr<CommandResult> rm =
        Run({"rm", "--force", "--ignore", "--time", "0", container}, {}, {}, kCleanupTimeout);
    if ((!rm.ok() || rm->exit_code != 0) && sink) {
      sink(absl::StrCat("[podman] could not remove container ", container));
    }
  }
  return result;
}

absl::StatusOr<std::vector<std::string>> Podman::Lines(const std::vector<std::string>& args) {
  std::vector<std::string> lines;
  ASSIGN_OR_RETURN(
      CommandResult result,
      Run(
          args, [&](std::string_view line) { lines.emplace_back(line); }, {}, kQuickTimeout));
  if (result.exit_code != 0) {
    return absl::InternalError(absl::StrCat("podman ", args.empty() ? "" : args[0],
                                            " failed (exit ", result.exit_code,
                                            "): ", result.output_tail));
  }
  return lines;
}

absl::StatusOr<BuildResult> Podman::Build(const BuildRequest& request, const LineSink& sink,
                                          const std::function<bool()>& cancelled) {
  if (request.network != "none" && request.network != "host") {
    return absl::InvalidArgumentError("build network must be none or host");
  }
  if (!ValidLabelValue(request.project) || !ValidLabelValue(request.build_id) ||
      !ValidLabelValue(request.commit)) {
    return absl::InvalidArgumentError(
        "project, build id and commit must be non-empty [A-Za-z0-9._-] (at most 256 bytes)");
  }
  if (request.repository.empty() ||
      request.repository.find_first_of(" \t\n@") != std::string::npos) {
    return absl::InvalidArgumentError("bad repository name");
  }
  if (request.build_args.size() > kMaxBuildArgs) {
    return absl::InvalidArgumentError("too many build args");
  }
  if (!fs::is_directory(request.context_dir)) {
    return absl::InvalidArgumentError(absl::StrCat("no build context at ", request.context_dir));
  }

  // The labels go in one LABEL step appended to a copy of the Containerfile: podman turns each
  // --label into a step of its own, each committing an image.
  std::string containerfile =
      request.containerfile.empty() ? "" : request.context_dir + "/" + request.containerfile;
  if (containerfile.empty()) {
    for (const char* name : {"Containerfile", "Dockerfile"}) {
      if (fs::exists(request.context_dir + "/" + name)) {
        containerfile = request.context_dir + "/" + name;
        break;
      }
    }
  }
  std::error_code ec;
  if (containerfile.empty() || !fs::is_regular_file(containerfile, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat("no Containerfile or Dockerfile in ", request.context_dir));
  }
  if (fs::file_size(containerfile, ec) > kMaxContainerfileBytes) {
    return absl::InvalidArgumentError("the Containerfile is too large");
  }
  std::string labelled;
  {
    std::ifstream in(containerfile);
    std::stringstream content;
    content << in.rdbuf();
    labelled = content.str();
  }
  absl::StrAppend(&labelled, "\n", kKilnLabelStepPrefix, "\"", request.project, "\" kiln.build=\"",
                  request.build_id, "\" kiln.commit=\"", request.commit, "\"\n");
  std::string generated = absl::StrCat(tmp_, "/", request.build_id, ".Containerfile");
  RETURN_IF_ERROR(WriteSmallFile(generated, labelled, 0644));

  BuildResult result;
  result.tag = absl::StrCat(request.repository, ":", request.commit);
  std::string iidfile = absl::StrCat(tmp_, "/", request.build_id, ".iid");
  std::vector<std::string> args = {"build",   "--layers", "--network", request.network, "--file",
                                   generated, "--tag",    result.tag,  "--iidfile",     iidfile};
  for (const std::string& u : profile_.ulimits) args.insert(args.end(), {"--ulimit", u});
  if (!request.tls_verify) args.push_back("--tls-verify=false");
  for (const auto& [k, v] : request.build_args) {
    args.insert(args.end(), {"--build-arg", absl::StrCat(k, "=", v)});
  }
  args.push_back(request.context_dir);

  BuildOutputParser parser;
  absl::Time start = absl::Now();
  absl::StatusOr<CommandResult> run = Run(
      args,
      [&](std::string_view line) {
        parser.Feed(line);
        if (sink) sink(line);
      },
      cancelled, request.timeout, request.secrets);
  result.duration = absl::Now() - start;
  fs::remove(generated, ec);
  if (!run.ok()) {
    // A killed build leaves its working container in the storage; remove it now.
    absl::StatusOr<int> removed = RemoveLeftoverContainers();
    if (!removed.ok() && sink) {
      sink(absl::StrCat("[podman] could not remove the build's containers: ",
                        removed.status().message()));
    }
    return run.status();
  }
  if (run->exit_code != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("podman build failed (exit ", run->exit_code, ")"));
  }
  result.image_id = std::string(absl::StripAsciiWhitespace(ReadSmallFile(iidfile)));
  fs::remove(iidfile, ec);
  if (!absl::StartsWith(result.image_id, "sha256:")) {
    return absl::InternalError("podman build wrote no image id");
  }
  result.layers_total = parser.steps_total();
  result.layers_reused = parser.steps_reused();
  return result;
}

absl::StatusOr<PushResult> Podman::Push(const PushRequest& request, const LineSink& sink,
                                        const std::function<bool()>& cancelled) {
  if (request.image.empty() || request.destination.empty() ||
      request.destination.find_first_of(" \t\n") != std::string::npos) {
    return absl::InvalidArgumentError("push needs an image and a destination");
  }
  PushResult result;
  static std::atomic<int> counter{0};
  std::string stem = absl::StrCat(tmp_, "/push-", ::getpid(), "-", counter++);
  std::string digestfile = stem + ".digest";
  std::string authfile = stem + ".auth.json";
  std::vector<std::string> secrets;
  // podman 4.3 prints whether a blob was skipped only in its debug log.
  std::vector<std::string> args = {"--log-level=debug", "push",
                                   absl::StrCat("--tls-verify=", request.tls_verify),
                                   "--digestfile", digestfile};
  if (!request.username.empty()) {
    // Credentials go in a file of our own, not on the command line where any process sees them.
    std::string auth = absl::Base64Escape(absl::StrCat(request.username, ":", request.password));
    secrets = {request.password, auth};
    RETURN_IF_ERROR(WriteSmallFile(authfile,
                                   absl::StrCat("{\"auths\":{\"", RegistryHost(request.destination),
                                                "\":{\"auth\":\"", auth, "\"}}}\n"),
                                   0600));
    args.insert(args.end(), {"--authfile", authfile});
  }
  args.insert(args.end(), {request.image, request.destination});

  PushOutputParser parser;
  absl::Time start = absl::Now();
  absl::StatusOr<CommandResult> run = Run(
      args,
      [&](std::string_view line) {
        std::string shown = parser.Feed(line);
        if (!shown.empty() && sink) sink(shown);
      },
      cancelled, request.timeout, secrets);
  result.duration = absl::Now() - start;
  std::error_code ec;
  fs::remove(authfile, ec);
  std::string digest(absl::StripAsciiWhitespace(ReadSmallFile(digestfile)));
  fs::remove(digestfile, ec);
  if (!run.ok()) return run.status();
  if (run->exit_code != 0) {
    return absl::UnavailableError(absl::StrCat("podman push failed (exit ", run->exit_code, ")"));
  }
  if (!absl::StartsWith(digest, "sha256:")) {
    return absl::InternalError("podman push wrote no digest");
  }
  result.digest = digest;
  result.reference = absl::StrCat(RepositoryOf(request.destination), "@", digest);
  result.blobs_pushed = parser.blobs_pushed();
  result.blobs_reused = parser.blobs_reused();
  result.config_pushed = parser.config_pushed();
  result.uploaded.assign(parser.uploaded().begin(), parser.uploaded().end());
  if (!request.tls_verify) {
    absl::StatusOr<std::map<std::string, int64_t>> sizes =
        ManifestBlobSizes(RepositoryOf(request.destination), digest, absl::Seconds(5));
    if (sizes.ok()) {
      result.bytes_pushed = 0;
      for (const std::string& d : result.uploaded) {
        auto it = sizes->find(d);
        if (it == sizes->end()) {
          result.bytes_pushed = -1;
          break;
        }
        result.bytes_pushed += it->second;
      }
    }
  }
  result.duration = absl::Now() - start;
  return result;
}

absl::StatusOr<int> Podman::RemoveLeftoverContainers() {
  // Build containers are "external" to podman (buildah's); a finished build leaves none.
  ASSIGN_OR_RETURN(std::vector<std::string> ids,
                   Lines({"ps", "--all", "--external", "--quiet", "--no-trunc"}));
  if (ids.empty()) return 0;
  std::vector<std::string> args = {"rm", "--force"};
  args.insert(args.end(), ids.begin(), ids.end());
  ASSIGN_OR_RETURN(CommandResult rm, Run(args, {}, {}, kCleanupTimeout));
  if (rm.exit_code != 0) {
    return absl::InternalError(absl::StrCat("podman rm failed: ", rm.output_tail));
  }
  return static_cast<int>(ids.size());
}

absl::StatusOr<double> Podman::VolumeUsed() const {
  struct statvfs st {};
  if (::statvfs(options_.volume.c_str(), &st) != 0) {
    return absl::InternalError(absl::StrCat("statvfs ", options_.volume, " failed"));
  }
  // As df computes it: used / (used + available to unprivileged users).
  double used = static_cast<double>(st.f_blocks - st.f_bfree);
  double total = used + static_cast<double>(st.f_bavail);
  return total > 0 ? used / total : 0.0;
}

absl::StatusOr<HousekeepResult> Podman::Housekeep(const std::string& project, int keep_last,
                                                  const LineSink& sink) {
  if (!ValidLabelValue(project)) return absl::InvalidArgumentError("bad project");
  if (keep_last < 0 || keep_last > kMaxKeepLast) {
    return absl::InvalidArgumentError("keep_last out of range");
  }
  auto say = [&](const std::string& line) {
    if (sink) sink(line);
  };
  HousekeepResult result;
  ASSIGN_OR_RETURN(result.containers_removed, RemoveLeftoverContainers());

  ASSIGN_OR_RETURN(
      std::vector<std::string> ids,
      Lines({"images", "--quiet", "--no-trunc", "--filter", "label=kiln.project=" + project}));
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  std::vector<std::pair<int64_t, std::string>> images;  // (created ns, id)
  if (!ids.empty()) {
    std::vector<std::string> args = {"image", "inspect", "--format",
                                     "{{.Id}} {{.Created.UnixNano}}"};
    args.insert(args.end(), ids.begin(), ids.end());
    ASSIGN_OR_RETURN(std::vector<std::string> lines, Lines(args));
    for (const std::string& line : lines) {
      std::vector<std::string> parts = absl::StrSplit(line, ' ', absl::SkipEmpty());
      int64_t created = 0;
      if (parts.size() != 2 || !absl::SimpleAtoi(parts[1], &created)) {
        return absl::InternalError(absl::StrCat("unexpected podman image inspect line: ", line));
      }
      images.emplace_back(created, parts[0]);
    }
  }
  std::sort(images.begin(), images.end(), std::greater<>());  // Newest first.
  std::vector<std::string> doomed;
  for (size_t i = static_cast<size_t>(keep_last); i < images.size(); ++i) {
    doomed.push_back(images[i].second);
  }
  result.images_kept = static_cast<int>(images.size() - doomed.size());
  if (!doomed.empty()) {
    std::vector<std::string> args = {"rmi", "--force"};
    args.insert(args.end(), doomed.begin(), doomed.end());
    ASSIGN_OR_RETURN(CommandResult rmi, Run(args, {}, {}, kQuickTimeout));
    if (rmi.exit_code != 0) {
      return absl::InternalError(absl::StrCat("podman rmi failed: ", rmi.output_tail));
    }
    result.images_removed = static_cast<int>(doomed.size());
  }
  say(absl::StrCat("[housekeeping] ", project, ": removed ", result.images_removed,
                   " older image(s), kept ", result.images_kept));

  ASSIGN_OR_RETURN(result.volume_used, VolumeUsed());
  if (result.volume_used > options_.reset_threshold) {
    say(absl::StrCat("[housekeeping] volume ", static_cast<int>(result.volume_used * 100),
                     "% full (threshold ", static_cast<int>(options_.reset_threshold * 100),
                     "%): resetting the container storage (podman system reset -f) and the "
                     "temporary dirs"));
    ASSIGN_OR_RETURN(CommandResult reset,
                     Run({"system", "reset", "--force"}, sink, {}, options_.command_timeout));
    if (reset.exit_code != 0) {
      return absl::InternalError(absl::StrCat("podman system reset failed: ", reset.output_tail));
    }
    for (const std::string& dir : {tmp_, libpod_tmp_}) RETURN_IF_ERROR(ClearDir(dir));
    RETURN_IF_ERROR(PrepareDirs());
    result.reset = true;
    ASSIGN_OR_RETURN(result.volume_used, VolumeUsed());
    say(absl::StrCat("[housekeeping] storage reset; volume now ",
                     static_cast<int>(result.volume_used * 100), "% full"));
  }
  return result;
}

}  // namespace kiln::builder
