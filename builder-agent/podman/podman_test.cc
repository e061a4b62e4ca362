// Real podman, real registry (Debian's docker-registry on 127.0.0.1), a busybox base image made
// here with `podman import`. Skips with a message only where podman cannot run at all.
#include "builder-agent/podman/podman.h"

#include <dirent.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tests/testutil/process.h"
#include "tests/testutil/registry.h"

namespace kiln::builder {
namespace {

namespace fs = std::filesystem;

constexpr const char* kPodman = "/usr/bin/podman";
constexpr const char* kBase = "localhost/kiln-busybox:latest";

using testutil::WriteFile;

struct Log {
  std::vector<std::string> lines;
  LineSink Sink() {
    return [this](std::string_view line) { lines.emplace_back(line); };
  }
  bool Has(std::string_view needle) const {
    for (const auto& l : lines) {
      if (absl::StrContains(l, absl::string_view(needle.data(), needle.size()))) return true;
    }
    return false;
  }
};

// A volume with podman ready on it, the base image imported, and a registry.
struct Fixture {
  testutil::TempDir dir;
  std::unique_ptr<Podman> podman;
  std::unique_ptr<testutil::RegistryProcess> registry;
  std::string skip_reason;

  explicit Fixture(bool with_registry = false, const std::string& volume_name = "volume") {
    if (!testutil::Installed(kPodman)) {
      skip_reason = "podman is not installed";
      return;
    }
    PodmanOptions options;
    options.volume = dir.path() + "/" + volume_name;
    auto created = Podman::Create(options);
    if (absl::IsUnavailable(created.status())) {
      skip_reason = absl::StrCat("podman cannot run here: ", created.status().message());
      return;
    }
    REQUIRE(created.ok());
    podman = std::move(*created);
    REQUIRE(testutil::ImportBusyboxImage(Runner(), kBase, dir.path()).ok());
    if (with_registry) {
      REQUIRE(testutil::Installed(testutil::kRegistryBinary));
      fs::create_directories(dir.path() + "/registry");
      auto started = testutil::RegistryProcess::Start(dir.path() + "/registry");
      REQUIRE(started.ok());
      registry = std::move(*started);
    }
  }

  // podman through the library (its namespaces and bind mounts), for testutil.
  testutil::PodmanRunner Runner() {
    return [this](const std::vector<std::string>& args) -> absl::Status {
      std::string out;
      auto run = podman->Run(
          args, [&](std::string_view l) { out.append(l).append("\n"); }, {}, absl::Minutes(2));
      if (!run.ok()) return run.status();
      if (run->exit_code != 0) return absl::InternalError("podman failed: " + out);
      return absl::OkStatus();
    };
  }

  // KILN_REQUIRE_PODMAN=1 turns a skip into a failure, for hosts where podman must run (so a
  // bug that makes podman look unusable cannot hide as a skip).
  bool Skip() const {
    if (skip_reason.empty()) return false;
    if (std::getenv("KILN_REQUIRE_PODMAN")) FAIL("podman required: " << skip_reason);
    WARN("SKIPPED: " << skip_reason);
    return true;
  }

  std::string Context(const std::string& name) { return dir.path() + "/" + name; }

  BuildRequest Request(const std::string& context, const std::string& build_id,
                       const std::string& commit) {
    BuildRequest r;
    r.context_dir = context;
    r.repository = registry ? registry->address() + "/kiln/app" : "localhost/kiln/app";
    r.project = "app";
    r.build_id = build_id;
    r.commit = commit;
    return r;
  }

  std::vector<std::string> Lines(const std::vector<std::string>& args) {
    std::vector<std::string> lines;
    auto run = podman->Run(
        args, [&](std::string_view l) { lines.emplace_back(l); }, {}, absl::Seconds(60));
    REQUIRE(run.ok());
    return lines;
  }
};

// Processes whose command line contains `needle` (other than this test).
std::vector<std::string> ProcessesMatching(const std::string& needle) {
  std::vector<std::string> found;
  DIR* proc = ::opendir("/proc");
  if (!proc) return found;
  while (dirent* e = ::readdir(proc)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::string cmdline = testutil::ReadFile(absl::StrCat("/proc/", e->d_name, "/cmdline"));
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (absl::StrContains(cmdline, needle) && std::stoi(e->d_name) != ::getpid()) {
      found.push_back(absl::StrCat(e->d_name, ": ", cmdline));
    }
  }
  ::closedir(proc);
  return found;
}

TEST_CASE("cold build, warm rebuild after a one-file change, push uploads only that layer",
          "[podman]") {
  Fixture f(/*with_registry=*/true);
  if (f.Skip()) return;
  CHECK(fs::exists(f.dir.path() + "/volume/podman/host-profile"));
  // A second start on the same volume reads the host profile back instead of probing.
  PodmanOptions again;
  again.volume = f.dir.path() + "/volume";
  auto second = Podman::Create(again);
  REQUIRE(second.ok());
  CHECK((*second)->profile().from_cache);
  CHECK((*second)->profile().runtime == f.podman->profile().runtime);

  std::string ctx = f.Context("app");
  WriteFile(ctx + "/Containerfile", absl::StrCat("FROM ", kBase,
                                                 "\n"
                                                 "COPY deps.lock /app/deps.lock\n"
                                                 "RUN mkdir -p /app/deps && "
                                                 "cp /app/deps.lock /app/deps/installed\n"
                                                 "COPY src/ /app/src/\n"
                                                 "CMD [\"cat\", \"/app/src/main.txt\"]\n"));
  WriteFile(ctx + "/deps.lock", "dep-a 1.0\ndep-b 2.0\n");
  WriteFile(ctx + "/src/main.txt", "version 1\n");

  Log log;
  absl::Time t0 = absl::Now();
  auto cold = f.podman->Build(f.Request(ctx, "b1", "c0ffee01"), log.Sink(), {});
  REQUIRE(cold.ok());
  absl::Time t1 = absl::Now();
  CHECK(absl::StartsWith(cold->image_id, "sha256:"));
  CHECK(cold->tag == f.registry->address() + "/kiln/app:c0ffee01");
  CHECK(cold->layers_total == 4);  // COPY, RUN, COPY, CMD
  CHECK(cold->layers_reused == 0);
  CHECK(log.Has("STEP 3/6: RUN mkdir"));  // 6: with the label step.

  PushRequest push;
  push.image = cold->image_id;
  push.destination = cold->tag;
  push.tls_verify = false;
  auto cold_push = f.podman->Push(push, log.Sink(), {});
  REQUIRE(cold_push.ok());
  absl::Time t2 = absl::Now();
  CHECK(absl::StartsWith(cold_push->digest, "sha256:"));
  CHECK(cold_push->reference == f.registry->address() + "/kiln/app@" + cold_push->digest);
  CHECK(cold_push->blobs_pushed == 4);  // base, COPY, RUN, COPY
  CHECK(cold_push->blobs_reused == 0);
  CHECK(cold_push->config_pushed);
  CHECK(f.registry->BlobUploads() == 5);
  for (const auto& digest : cold_push->uploaded) CHECK(f.registry->HasBlob(digest));
  // The blob-info cache is on the volume, not in the host's /var/lib/containers.
  CHECK(fs::exists(f.dir.path() + "/volume/podman/blob-info-cache/blob-info-cache-v1.boltdb"));

  WriteFile(ctx + "/src/main.txt", "version 2\n");
  absl::Time t3 = absl::Now();
  auto warm = f.podman->Build(f.Request(ctx, "b2", "c0ffee02"), log.Sink(), {});
  REQUIRE(warm.ok());
  absl::Time t4 = absl::Now();
  CHECK(warm->image_id != cold->image_id);
  CHECK(warm->layers_total == 4);
  CHECK(warm->layers_reused == 2);  // COPY deps.lock and the RUN that "installs" them.

  push.image = warm->image_id;
  push.destination = warm->tag;
  int uploads_before = f.registry->BlobUploads();
  auto warm_push = f.podman->Push(push, log.Sink(), {});
  REQUIRE(warm_push.ok());
  absl::Time t5 = absl::Now();
  CHECK(warm_push->blobs_pushed == 1);  // Only the changed source layer.
  CHECK(warm_push->blobs_reused == 3);
  CHECK(warm_push->digest != cold_push->digest);
  CHECK(f.registry->BlobUploads() - uploads_before == 2);  // That layer and the config.
  CHECK(cold_push->bytes_pushed > 700 * 1000);             // busybox, compressed
  CHECK(warm_push->bytes_pushed > 0);
  CHECK(warm_push->bytes_pushed < 2000);  // A one-line file and a config.

  auto labels = f.Lines({"image", "inspect", "--format",
                         "{{index .Labels \"kiln.project\"}} {{index .Labels \"kiln.build\"}} "
                         "{{index .Labels \"kiln.commit\"}}",
                         warm->image_id});
  CHECK(labels == std::vector<std::string>{"app b2 c0ffee02"});
  std::printf(
      "podman timings: cold build %.0f ms, cold push %.0f ms, warm build %.0f ms, "
      "warm push %.0f ms\n",
      absl::ToDoubleMilliseconds(t1 - t0), absl::ToDoubleMilliseconds(t2 - t1),
      absl::ToDoubleMilliseconds(t4 - t3), absl::ToDoubleMilliseconds(t5 - t4));
}

TEST_CASE("a volume path too long for podman's run root still works", "[podman]") {
  Fixture f(false, "a-directory-name-long-enough-to-pass-fifty-characters/volume");
  if (f.Skip()) return;
  std::string run_root = f.dir.path() + "/" +
                         "a-directory-name-long-enough-to-pass-fifty-characters/volume/podman/run";
  REQUIRE(run_root.size() > kMaxRunRootChars);
  std::string ctx = f.Context("long");
  WriteFile(ctx + "/Containerfile", absl::StrCat("FROM ", kBase, "\nRUN echo ok > /ok\n"));
  REQUIRE(f.podman->Build(f.Request(ctx, "b1", "c1"), {}, {}).ok());
  // The runtime state is on the volume, reached through a short link.
  CHECK(fs::exists(run_root + "/overlay-layers"));
  auto args = f.podman->GlobalArgs();
  auto it = std::find(args.begin(), args.end(), "--runroot");
  REQUIRE(it != args.end());
  CHECK((it + 1)->size() <= kMaxRunRootChars);
  CHECK(fs::is_directory(*(it + 1)));
  fs::remove(*(it + 1));  // The short path podman saw.
}

TEST_CASE("RUN --mount=type=cache keeps its cache across builds", "[podman]") {
  Fixture f;
  if (f.Skip()) return;
  std::string ctx = f.Context("cache");
  WriteFile(ctx + "/Containerfile", absl::StrCat("FROM ", kBase,
                                                 "\n"
                                                 "ARG RUN_ID\n"
                                                 "RUN --mount=type=cache,target=/var/cache/kiln "
                                                 "echo run-$RUN_ID >> /var/cache/kiln/runs && "
                                                 "echo cached: $(cat /var/cache/kiln/runs)\n"));
  Log first, second;
  BuildRequest r = f.Request(ctx, "b1", "aaa1");
  r.build_args = {{"RUN_ID", "1"}};
  REQUIRE(f.podman->Build(r, first.Sink(), {}).ok());
  CHECK(first.Has("cached: run-1"));
  r.build_id = "b2";
  r.build_args = {{"RUN_ID", "2"}};
  REQUIRE(f.podman->Build(r, second.Sink(), {}).ok());
  CHECK(second.Has("cached: run-1 run-2"));
}

TEST_CASE("cancel in the middle of a RUN ends the build and all its processes within 2 s",
          "[podman]") {
  Fixture f;
  if (f.Skip()) return;
  // A sleep length nobody else on the machine is likely to use, to find leftovers by.
  std::string marker = absl::StrCat(1000 + ::getpid() % 8000);
  std::string ctx = f.Context("sleepy");
  WriteFile(ctx + "/Containerfile",
            absl::StrCat("FROM ", kBase, "\nRUN echo started-sleeping && sleep ", marker, "\n"));
  Log log;
  absl::Time cancel_at = absl::InfiniteFuture();
  auto cancelled = [&] {
    if (cancel_at == absl::InfiniteFuture() && log.Has("started-sleeping")) {
      cancel_at = absl::Now() + absl::Milliseconds(200);
    }
    return absl::Now() >= cancel_at;
  };
  auto result = f.podman->Build(f.Request(ctx, "b1", "dead01"), log.Sink(), cancelled);
  absl::Duration took = absl::Now() - cancel_at;
  CHECK(absl::IsCancelled(result.status()));
  CHECK(took < absl::Seconds(2));
  std::printf("podman build cancel: returned %.0f ms after cancel\n",
              absl::ToDoubleMilliseconds(took));
  CHECK(ProcessesMatching(" " + marker + " ").empty());
  CHECK(ProcessesMatching(absl::StrCat("sleep ", marker)).empty());
  CHECK(ProcessesMatching(f.dir.path()).empty());
  // The build's working container is gone too, and the next build works.
  CHECK(f.Lines({"ps", "--all", "--external", "--quiet"}).empty());
  WriteFile(ctx + "/Containerfile", absl::StrCat("FROM ", kBase, "\nRUN echo fine\n"));
  CHECK(f.podman->Build(f.Request(ctx, "b2", "dead02"), log.Sink(), {}).ok());
}

TEST_CASE("a command in the built image: secrets by environment, private output, cancel",
          "[podman]") {
  Fixture f;
  if (f.Skip()) return;
  const std::string secret = "tok-3xq9-SECRET";
  RunInImageRequest run;
  run.name = "migrate";
  run.image = kBase;
  run.argv = {"sh", "-c", "echo token=$DEPLOY_TOKEN; echo done"};
  run.env = {{"DEPLOY_TOKEN", secret}};
  run.secrets = {secret};
  run.is_private = false;
  Log visible;
  auto result = f.podman->RunInImage(run, visible.Sink(), {});
  REQUIRE(result.ok());
  CHECK(result->exit_code == 0);
  CHECK(visible.Has("token=***"));
  CHECK(visible.Has("done"));
  CHECK_FALSE(visible.Has(secret));

  Log hidden;
  run.is_private = true;
  run.argv = {"sh", "-c", "echo token=$DEPLOY_TOKEN; exit 3"};
  result = f.podman->RunInImage(run, hidden.Sink(), {});
  REQUIRE(result.ok());
  CHECK(result->exit_code == 3);
  CHECK(hidden.lines == std::vector<std::string>{"[private step: migrate] failed (exit 3)"});

  std::string marker = absl::StrCat(1000 + (::getpid() + 1) % 8000);
  Log sleepy;
  run.is_private = false;
  run.argv = {"sh", "-c", "echo sleeping; sleep " + marker};
  absl::Time cancel_at = absl::InfiniteFuture();
  auto cancelled = [&] {
    if (cancel_at == absl::InfiniteFuture() && sleepy.Has("sleeping")) cancel_at = absl::Now();
    return absl::Now() >= cancel_at;
  };
  result = f.podman->RunInImage(run, sleepy.Sink(), cancelled);
  CHECK(absl::IsCancelled(result.status()));
  CHECK(absl::Now() - cancel_at < absl::Seconds(2));
  CHECK(ProcessesMatching(absl::StrCat("sleep ", marker)).empty());
  CHECK(ProcessesMatching(f.dir.path()).empty());
  CHECK(f.Lines({"ps", "--all", "--quiet"}).empty());  // No container left behind either.
}

TEST_CASE("housekeeping keeps the project's last N images, base images and the cache", "[podman]") {
  Fixture f;
  if (f.Skip()) return;
  std::string ctx = f.Context("hk");
  WriteFile(ctx + "/Containerfile", absl::StrCat("FROM ", kBase, "\nRUN echo layer > /f\n"));
  std::vector<std::string> ids;
  for (int i = 1; i <= 3; ++i) {
    auto built =
        f.podman->Build(f.Request(ctx, absl::StrCat("b", i), absl::StrCat("c", i)), {}, {});
    REQUIRE(built.ok());
    ids.push_back(built->image_id);
  }
  BuildRequest other = f.Request(ctx, "x1", "x1");
  other.project = "other";
  other.repository = "localhost/kiln/other";
  auto other_image = f.podman->Build(other, {}, {});
  REQUIRE(other_image.ok());

  Log log;
  auto kept = f.podman->Housekeep("app", 2, log.Sink());
  REQUIRE(kept.ok());
  CHECK(kept->images_removed == 1);
  CHECK(kept->images_kept == 2);
  CHECK_FALSE(kept->reset);
  CHECK(log.Has("removed 1 older image(s), kept 2"));
  auto remaining = f.Lines({"images", "--quiet", "--no-trunc"});
  auto has = [&](const std::string& id) {
    return std::find(remaining.begin(), remaining.end(), id) != remaining.end();
  };
  CHECK_FALSE(has(ids[0]));
  CHECK(has(ids[1]));
  CHECK(has(ids[2]));
  CHECK(has(other_image->image_id));
  CHECK(f.Lines({"images", "--quiet", kBase}).size() == 1);
  // The layer cache survived: a rebuild takes every step from it.
  auto rebuilt = f.podman->Build(f.Request(ctx, "b4", "c4"), {}, {});
  REQUIRE(rebuilt.ok());
  CHECK(rebuilt->layers_reused == 1);
}

TEST_CASE("past the threshold housekeeping resets the storage and says so", "[podman]") {
  Fixture f;
  if (f.Skip()) return;
  std::string ctx = f.Context("reset");
  WriteFile(ctx + "/Containerfile", absl::StrCat("FROM ", kBase, "\nRUN echo x > /x\n"));
  REQUIRE(f.podman->Build(f.Request(ctx, "b1", "c1"), {}, {}).ok());
  WriteFile(f.dir.path() + "/volume/podman/tmp/leftover", "x");
  f.podman->set_reset_threshold(0.0);  // Any use at all is "too full".
  Log log;
  auto reset = f.podman->Housekeep("app", 5, log.Sink());
  REQUIRE(reset.ok());
  CHECK(reset->reset);
  CHECK(log.Has("resetting the container storage (podman system reset -f)"));
  CHECK(f.Lines({"images", "--quiet"}).empty());
  CHECK_FALSE(fs::exists(f.dir.path() + "/volume/podman/tmp/leftover"));
  // The volume is usable again right away.
  REQUIRE(testutil::ImportBusyboxImage(f.Runner(), kBase, f.dir.path()).ok());
  CHECK(f.podman->Build(f.Request(ctx, "b2", "c2"), {}, {}).ok());
}

}  // namespace
}  // namespace kiln::builder
