// The podman deploy target with real podman and a real registry (Debian's docker-registry on
// 127.0.0.1). App images are built FROM a busybox image in a builder storage of their own,
// pushed, and deployed by digest into the target's storage, as in production. Skipped, with a
// message saying why, only where podman cannot run containers (a failure instead with
// KILN_REQUIRE_PODMAN=1). Every container a test starts is removed by label, in that test's
// storage only.
#include "worker/deploy/podman_target.h"

#include <signal.h>
#include <sys/mount.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tests/testutil/http.h"
#include "tests/testutil/process.h"
#include "tests/testutil/registry.h"

namespace kiln::worker {
namespace {

namespace fs = std::filesystem;

constexpr const char* kPodman = "/usr/bin/podman";
constexpr const char* kBase = "localhost/kiln-busybox:latest";

struct Log {
  std::vector<std::string> lines;
  DeployLogSink Sink() {
    return [this](std::string_view line) { lines.emplace_back(line); };
  }
  bool Has(std::string_view needle) const {
    for (const auto& l : lines) {
      if (absl::StrContains(l, absl::string_view(needle.data(), needle.size()))) return true;
    }
    return false;
  }
  std::string All() const { return absl::StrJoin(lines, "\n"); }
};

std::vector<std::string> Lines(builder::Podman& podman, const std::vector<std::string>& args) {
  std::vector<std::string> lines;
  auto run = podman.Run(
      args, [&](std::string_view l) { lines.emplace_back(l); }, {}, absl::Seconds(60));
  REQUIRE(run.ok());
  return lines;
}

struct Fixture {
  testutil::TempDir dir;
  std::string state_dir;
  std::unique_ptr<builder::Podman> builder;   // Builds and pushes the app images.
  std::unique_ptr<builder::Podman> deployed;  // The target's storage, for checks and cleanup.
  std::unique_ptr<testutil::RegistryProcess> registry;
  std::string skip_reason;

  Fixture() : state_dir(dir.path() + "/state") {
    if (!testutil::Installed(kPodman)) {
      skip_reason = "podman is not installed";
      return;
    }
    auto created = builder::Podman::Create({.volume = dir.path() + "/builder"});
    if (absl::IsUnavailable(created.status())) {
      skip_reason = absl::StrCat("podman cannot run containers here: ", created.status().message());
      return;
    }
    REQUIRE(created.ok());
    builder = std::move(*created);
    builder::PodmanOptions target_storage;
    target_storage.volume = state_dir;
    target_storage.isolate_commands = false;
    auto storage = builder::Podman::Create(target_storage);
    REQUIRE(storage.ok());
    deployed = std::move(*storage);
    REQUIRE(testutil::ImportBusyboxImage(
                [this](const std::vector<std::string>& args) -> absl::Status {
                  std::string out;
                  auto run = builder->Run(
                      args, [&](std::string_view l) { out.append(l).append("\n"); }, {},
                      absl::Minutes(2));
                  if (!run.ok()) return run.status();
                  if (run->exit_code != 0) return absl::InternalError("podman failed: " + out);
                  return absl::OkStatus();
                },
                kBase, dir.path())
                .ok());
    REQUIRE(testutil::Installed(testutil::kRegistryBinary));
    fs::create_directories(dir.path() + "/registry");
    auto started = testutil::RegistryProcess::Start(dir.path() + "/registry");
    REQUIRE(started.ok());
    registry = std::move(*started);
  }

  ~Fixture() {
    if (!deployed) return;
    // Every container this test started, by label, in this test's storage only.
    std::vector<std::string> ids;
    auto ps = deployed->Run(
        {"ps", "--all", "--quiet", "--filter", "label=kiln.managed=true"},
        [&](std::string_view l) { ids.emplace_back(l); }, {}, absl::Seconds(60));
    if (ps.ok() && !ids.empty()) {
      std::vector<std::string> rm = {"rm", "--force", "--time", "0"};
      rm.insert(rm.end(), ids.begin(), ids.end());
      (void)deployed->Run(rm, {}, {}, absl::Seconds(60));  // Best effort in a destructor.
    }
    // A removed container's conmon runs `podman container cleanup` on this storage after rm has
    // returned; run after the directory is gone, it would make the storage again and leave its
    // overlay directory mounted in /tmp. Wait for every process naming the storage to end.
    (void)testutil::WaitFor([&] { return testutil::ProcessesNaming(state_dir).empty(); },
                            absl::Seconds(30));
    // Without isolation podman's overlay driver mounts its directory in the host's namespace:
    // unmount it (this test's storage only) so the temporary directory can go.
    // (Mounted once per podman process that found it unmounted: maybe more than once.)
    for (int i = 0; i < 16; ++i) {
      if (::umount2((state_dir + "/podman/storage/overlay").c_str(), MNT_DETACH) != 0) break;
    }
  }

  bool Skip() const {
    if (skip_reason.empty()) return false;
    if (std::getenv("KILN_REQUIRE_PODMAN")) FAIL("podman required: " << skip_reason);
    WARN("SKIPPED: " << skip_reason);
    return true;
  }

  absl::StatusOr<std::unique_ptr<PodmanDeployTarget>> Target(Log* log = nullptr) {
    PodmanDeployOptions options;
    options.state_dir = state_dir;
    options.registry_tls_verify = false;
    options.stop_timeout_seconds = 1;  // busybox httpd as PID 1 ignores SIGTERM.
    return PodmanDeployTarget::Create(options, log ? log->Sink() : DeployLogSink{});
  }

  // Builds an app image whose index.html says `version`, pushes it, returns <repo>@<digest>.
  // `cmd` replaces the httpd command line; `health` false leaves /www/health out.
  std::string App(const std::string& version, bool health = true,
                  const std::string& cmd = "httpd -f -p ${PORT} -h /www") {
    std::string ctx = dir.path() + "/app-" + version;
    testutil::WriteFile(ctx + "/www/index.html", "app " + version + "\n");
    if (health) testutil::WriteFile(ctx + "/www/health", "ok\n");
    testutil::WriteFile(ctx + "/Containerfile",
                        absl::StrCat("FROM ", kBase, "\nCOPY www/ /www/\nCMD ", cmd, "\n"));
    builder::BuildRequest build;
    build.context_dir = ctx;
    build.repository = registry->address() + "/kiln/app";
    build.project = "app";
    build.build_id = "b-" + version;
    build.commit = version;
    auto built = builder->Build(build, {}, {});
    REQUIRE(built.ok());
    builder::PushRequest push;
    push.image = built->image_id;
    push.destination = built->tag;
    push.tls_verify = false;
    auto pushed = builder->Push(push, {}, {});
    REQUIRE(pushed.ok());
    return pushed->reference;
  }

  std::vector<std::string> Containers() {
    return Lines(*deployed, {"ps", "--all", "--format", "{{.Names}}"});
  }
  bool HasContainer(const std::string& name) {
    auto names = Containers();
    return std::find(names.begin(), names.end(), name) != names.end();
  }
};

DeployRequest Request(const std::string& id, const std::string& image, const std::string& slot,
                      int public_port = 0) {
  DeployRequest r;
  r.project = "app";
  r.deployment_id = id;
  r.slot = slot;
  r.image = image;
  r.public_port = public_port;
  r.health_path = "/health";
  r.health_timeout = absl::Seconds(20);
  return r;
}

std::string Get(int port) {
  auto body = testutil::HttpGet("127.0.0.1", port, "/");
  return body.ok() ? *body : body.status().ToString();
}

TEST_CASE("podman target: deploy, replace, failed health checks, previews, restart",
          "[podman][deploy]") {
  Fixture f;
  if (f.Skip()) return;
  std::string v1 = f.App("v1");
  std::string v2 = f.App("v2");
  std::string v3 = f.App("v3", /*health=*/false);
  std::string v4 = f.App("v4", true, "exit 3");
  std::string p1 = f.App("p1");

  Log create_log;
  auto created = f.Target(&create_log);
  INFO(create_log.All());
  REQUIRE(created.ok());
  std::unique_ptr<PodmanDeployTarget> target = std::move(*created);
  const int prod_port = testutil::FreePort();

  // v1 into production, on the project's port.
  Log log1;
  auto d1 = target->Deploy(Request("dep-v1", v1, kProductionSlot, prod_port), log1.Sink(), {});
  INFO(log1.All());
  REQUIRE(d1.ok());
  CHECK(d1->public_port == prod_port);
  CHECK(d1->url == absl::StrCat("http://127.0.0.1:", prod_port, "/"));
  CHECK(d1->container == "kiln-app-production-dep-v1");
  CHECK(d1->previous_container.empty());
  CHECK(Get(prod_port) == "app v1\n");
  CHECK(log1.Has("[deploy] pulling " + v1));
  CHECK(log1.Has("[deploy] healthy after "));
  std::printf("deploy v1: pull %lld ms, start %lld ms, healthy %lld ms\n",
              static_cast<long long>(absl::ToInt64Milliseconds(d1->pull_duration)),
              static_cast<long long>(absl::ToInt64Milliseconds(d1->start_duration)),
              static_cast<long long>(absl::ToInt64Milliseconds(d1->health_duration)));

  // v2 replaces it: same port, the v1 container is gone.
  Log log2;
  auto d2 = target->Deploy(Request("dep-v2", v2, kProductionSlot), log2.Sink(), {});
  INFO(log2.All());
  REQUIRE(d2.ok());
  CHECK(d2->public_port == prod_port);
  CHECK(d2->previous_container == d1->container);
  CHECK(Get(prod_port) == "app v2\n");
  // The previous container is stopped in the background, once the new one serves.
  CHECK(testutil::WaitFor([&] { return !f.HasContainer(d1->container); }, absl::Seconds(30)));
  CHECK(f.HasContainer(d2->container));

  // v3 never answers its health path: refused, v2 keeps serving, no v3 container left.
  Log log3;
  DeployRequest r3 = Request("dep-v3", v3, kProductionSlot);
  r3.health_timeout = absl::Seconds(2);
  auto d3 = target->Deploy(r3, log3.Sink(), {});
  INFO(log3.All());
  CHECK(absl::IsFailedPrecondition(d3.status()));
  CHECK(log3.Has("not healthy after 2000 ms: "));
  CHECK(Get(prod_port) == "app v2\n");
  CHECK_FALSE(f.HasContainer("kiln-app-production-dep-v3"));

  // v4 exits at once: found out well before its health timeout.
  Log log4;
  absl::Time t4 = absl::Now();
  auto d4 = target->Deploy(Request("dep-v4", v4, kProductionSlot), log4.Sink(), {});
  INFO(log4.All());
  CHECK(absl::IsFailedPrecondition(d4.status()));
  CHECK(absl::Now() - t4 < absl::Seconds(15));
  CHECK(log4.Has("exited before it was healthy"));
  CHECK(Get(prod_port) == "app v2\n");
  CHECK_FALSE(f.HasContainer("kiln-app-production-dep-v4"));

  // A preview gets a port of its own.
  const std::string preview = PreviewSlot("feature/login");
  Log logp;
  auto dp = target->Deploy(Request("dep-p1", p1, preview), logp.Sink(), {});
  INFO(logp.All());
  REQUIRE(dp.ok());
  CHECK(dp->public_port != prod_port);
  CHECK(dp->public_port != 0);
  CHECK(Get(dp->public_port) == "app p1\n");
  CHECK(Get(prod_port) == "app v2\n");
  auto listed = target->List("app");
  REQUIRE(listed.ok());
  CHECK(listed->size() == 2);

  // The worker restarts: the ports close with the target and come back from the labels.
  target.reset();
  CHECK(absl::IsUnavailable(testutil::HttpGet("127.0.0.1", prod_port, "/").status()));
  Log restore_log;
  auto again = f.Target(&restore_log);
  INFO(restore_log.All());
  REQUIRE(again.ok());
  target = std::move(*again);
  CHECK(Get(prod_port) == "app v2\n");
  CHECK(Get(dp->public_port) == "app p1\n");
  listed = target->List("");
  REQUIRE(listed.ok());
  REQUIRE(listed->size() == 2);
  for (const SlotInfo& s : *listed) {
    if (s.slot == kProductionSlot) {
      CHECK(s.deployment_id == "dep-v2");
      CHECK(s.image == v2);
      CHECK(s.public_port == prod_port);
    } else {
      CHECK(s.slot == preview);
      CHECK(s.container == dp->container);
    }
  }

  // Stopping the preview closes its port and removes its container; production stays.
  REQUIRE(target->StopSlot("app", preview).ok());
  CHECK(absl::IsUnavailable(testutil::HttpGet("127.0.0.1", dp->public_port, "/").status()));
  CHECK_FALSE(f.HasContainer(dp->container));
  CHECK(Get(prod_port) == "app v2\n");
  CHECK(target->StopSlot("app", preview).ok());  // Already gone: fine.
  listed = target->List("app");
  REQUIRE(listed.ok());
  CHECK(listed->size() == 1);
}

TEST_CASE(
    "podman target: a restart keeps the newest of two containers in a slot and removes "
    "exited ones",
    "[podman][deploy]") {
  Fixture f;
  if (f.Skip()) return;
  std::string v1 = f.App("v1");
  std::string v2 = f.App("v2");
  auto created = f.Target();
  REQUIRE(created.ok());
  const int port = testutil::FreePort();
  auto d1 = (*created)->Deploy(Request("old", v1, kProductionSlot, port), {}, {});
  REQUIRE(d1.ok());
  created->reset();

  // As if a worker had died between starting a new container and removing the old one: a
  // second, newer container labelled for the same slot (started here by hand), and an exited one.
  auto start = [&](const std::string& name, const std::string& image, const std::string& cmd,
                   int private_port) {
    std::vector<std::string> args = {
        "run",    "-d", "--network=host", "--pull=never",
        "--name", name, "--env",          absl::StrCat("PORT=", private_port)};
    for (const auto& label :
         std::vector<std::string>{"kiln.managed=true", "kiln.project=app", "kiln.slot=production",
                                  "kiln.deployment=" + name, "kiln.image=" + image,
                                  absl::StrCat("kiln.public-port=", port),
                                  absl::StrCat("kiln.private-port=", private_port),
                                  absl::StrCat("kiln.created=", absl::ToUnixNanos(absl::Now()))}) {
      args.insert(args.end(), {"--label", label});
    }
    for (const auto& u : f.deployed->profile().ulimits) args.insert(args.end(), {"--ulimit", u});
    args.push_back(image);
    if (!cmd.empty()) args.insert(args.end(), {"sh", "-c", cmd});
    auto run = f.deployed->Run(args, {}, {}, absl::Seconds(60));
    REQUIRE(run.ok());
    REQUIRE(run->exit_code == 0);
  };
  REQUIRE(Lines(*f.deployed, {"pull", "--tls-verify=false", v2}).size() >= 1);
  int newer_port = testutil::FreePort();
  start("newer", v2, "", newer_port);
  start("exited", v2, "exit 0", testutil::FreePort());
  REQUIRE(testutil::WaitFor(
      [&] {
        return Lines(*f.deployed, {"ps", "--all", "--filter", "name=^exited$", "--filter",
                                   "status=exited", "--quiet"})
                   .size() == 1;
      },
      absl::Seconds(20)));
  // The newer one must be up before the target decides (it only reads labels, not health).
  REQUIRE(
      testutil::WaitFor([&] { return testutil::HttpGet("127.0.0.1", newer_port, "/health").ok(); },
                        absl::Seconds(20)));

  Log log;
  auto again = f.Target(&log);
  INFO(log.All());
  REQUIRE(again.ok());
  CHECK(Get(port) == "app v2\n");
  CHECK_FALSE(f.HasContainer(d1->container));
  CHECK_FALSE(f.HasContainer("exited"));
  CHECK(f.HasContainer("newer"));
  auto listed = (*again)->List("app");
  REQUIRE(listed.ok());
  REQUIRE(listed->size() == 1);
  CHECK((*listed)[0].container == "newer");
}

TEST_CASE("podman target: a setup stuck in podman ends at once when cancelled", "[deploy]") {
  // A fake podman: `version` answers, the host probe's `run` succeeds, and `ps` hangs as a real
  // one does while a build holds the storage lock. Create must stop it when asked, not wait for
  // the command's minute.
  testutil::TempDir dir;
  const std::string script = dir.path() + "/podman";
  const std::string pid_file = dir.path() + "/ps.pid";
  {
    std::ofstream out(script);
    out << "#!/bin/sh\n"
        << "for a in \"$@\"; do\n"
        << "  case \"$a\" in\n"
        << "    version) echo 4.3.1; exit 0 ;;\n"
        << "    run) exit 0 ;;\n"
        << "    ps) echo $$ > " << pid_file << ".tmp && mv " << pid_file << ".tmp " << pid_file
        << "; exec sleep 600 ;;\n"
        << "  esac\n"
        << "done\n"
        << "exit 1\n";
  }
  fs::permissions(script, fs::perms::owner_all);
  PodmanDeployOptions options;
  options.state_dir = dir.path() + "/state";
  options.podman_binary = script;
  std::atomic<bool> cancel{false};
  std::thread canceller([&] {
    // Cancels once the fake `ps` runs (or gives up after the deadline, failing below).
    testutil::WaitFor([&] { return fs::exists(pid_file); }, absl::Seconds(30));
    cancel = true;
  });
  const absl::Time began = absl::Now();
  auto created = PodmanDeployTarget::Create(options, {}, [&] { return cancel.load(); });
  const absl::Duration took = absl::Now() - began;
  canceller.join();
  REQUIRE(fs::exists(pid_file));
  CHECK(absl::IsCancelled(created.status()));
  CHECK(took < absl::Seconds(30));  // The command's own timeout is a minute.
  std::ifstream in(pid_file);
  pid_t pid = 0;
  in >> pid;
  REQUIRE(pid > 0);
  CHECK(testutil::WaitFor([&] { return ::kill(pid, 0) != 0; }, absl::Seconds(10)));
}

}  // namespace
}  // namespace kiln::worker
