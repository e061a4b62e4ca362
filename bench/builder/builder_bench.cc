// The builder benchmark: commit-to-pushed-image time through the whole platform — a workflow
// runs kiln.builder.FetchSource -> BuildImage -> PushImage on a real kiln-builder-agent, against
// a real kiln-orchestrator and docker-registry on 127.0.0.1 — cold (empty volume) and warm
// (after a one-file change), broken down by step, next to the same `git fetch + podman build +
// podman push` run by hand (CLI processes, a volume and registry of their own). Prints one
// table and its method. See docs/benchmarks.md.
//
//   kiln-builder-bench [--runs 5] [--deps 40] [--files 200]
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "builder-agent/git/source_cache.h"
#include "builder-agent/podman/podman.h"
#include "common/logging.h"
#include "common/proto_time.h"
#include "kiln/platform/v1/builder.pb.h"
#include "sdk/client.h"
#include "sdk/workflow.h"
#include "sdk/workflow_worker.h"
#include "tests/testutil/orchestrator.h"
#include "tests/testutil/process.h"
#include "tests/testutil/registry.h"

namespace kiln::bench {
namespace {

namespace api = ::kiln::api::v1;
namespace pb = ::kiln::platform::v1;
namespace fs = std::filesystem;
using sdk::FromPayloadAt;
using sdk::ToPayloads;

constexpr char kProject[] = "app";
constexpr char kQueue[] = "bench-builds";
constexpr char kGit[] = "/usr/bin/git";
constexpr char kPodman[] = "/usr/bin/podman";

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "kiln-builder-bench: %s\n", what.c_str());
  std::exit(1);
}

std::string Git(const std::vector<std::string>& args) {
  absl::StatusOr<std::string> output = testutil::Git(args);
  if (!output.ok()) Die(std::string(output.status().message()));
  return *output;
}

// Runs a command by hand; returns its wall time in ms.
double Timed(const std::string& binary, const std::vector<std::string>& args) {
  std::string output;
  absl::Time began = absl::Now();
  auto code = testutil::RunCommand(binary, args, &output, absl::Minutes(10));
  double ms = absl::ToDoubleMilliseconds(absl::Now() - began);
  if (!code.ok() || *code != 0) Die(binary + " " + args[0] + " failed: " + output);
  return ms;
}

double Ms(const google::protobuf::Duration& d) { return absl::ToDoubleMilliseconds(FromProto(d)); }

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

sdk::ActivityOptions OnAgent() {
  sdk::ActivityOptions options;
  options.task_queue = absl::StrCat("project/", kProject);
  options.start_to_close_timeout = absl::Minutes(10);
  options.heartbeat_timeout = absl::Seconds(30);
  options.retry_policy.set_maximum_attempts(1);
  return options;
}

// fetch -> build -> push; returns the three results.
sdk::Task<absl::StatusOr<api::Payloads>> Deploy(sdk::WorkflowContext& ctx, api::Payloads input) {
  pb::FetchSourceInput fetch_in;
  fetch_in.set_project_id(kProject);
  fetch_in.set_repository_url(FromPayloadAt<std::string>(input, 0).value_or(""));
  fetch_in.set_revision(FromPayloadAt<std::string>(input, 1).value_or(""));
  auto f =
      co_await ctx.ExecuteActivity("kiln.builder.FetchSource", ToPayloads(fetch_in), OnAgent());
  if (!f.ok()) co_return f.status();
  auto fetched = FromPayloadAt<pb::FetchSourceResult>(*f, 0);
  if (!fetched.ok()) co_return fetched.status();
  pb::BuildImageInput build_in;
  build_in.set_project_id(kProject);
  build_in.set_build_id(ctx.info().workflow_id);
  build_in.set_commit_sha(fetched->commit_sha());
  build_in.set_context_dir(fetched->worktree_dir());
  auto b = co_await ctx.ExecuteActivity("kiln.builder.BuildImage", ToPayloads(build_in), OnAgent());
  if (!b.ok()) co_return b.status();
  auto built = FromPayloadAt<pb::BuildImageResult>(*b, 0);
  if (!built.ok()) co_return built.status();
  pb::PushImageInput push_in;
  push_in.set_project_id(kProject);
  push_in.set_image_ref(built->image_ref());
  auto p = co_await ctx.ExecuteActivity("kiln.builder.PushImage", ToPayloads(push_in), OnAgent());
  if (!p.ok()) co_return p.status();
  auto pushed = FromPayloadAt<pb::PushImageResult>(*p, 0);
  if (!pushed.ok()) co_return pushed.status();
  co_return ToPayloads(*fetched, *built, *pushed);
}

// The sample app: dependencies "installed" from a lock file in one layer, then the source.
void MakeApp(const std::string& origin, int deps, int files) {
  fs::create_directories(origin + "/src");
  std::ofstream(origin + "/Containerfile")
      << "FROM localhost/busybox:latest\n"
         "WORKDIR /app\n"
         "COPY deps.lock ./\n"
         "RUN mkdir -p deps && while read -r name version; do mkdir -p deps/$name && "
         "echo $version > deps/$name/VERSION && head -c 50000 /dev/urandom > deps/$name/lib.so; "
         "done < deps.lock\n"
         "COPY src/ ./src/\n";
  std::ofstream lock(origin + "/deps.lock");
  for (int i = 0; i < deps; ++i) lock << "dep" << i << " 1." << i << ".0\n";
  for (int i = 0; i < files; ++i) {
    std::ofstream(absl::StrCat(origin, "/src/module", i, ".js"))
        << std::string(1000 + (i * 53) % 4000, static_cast<char>('a' + i % 26)) << i << "\n";
  }
  Git({"-C", origin, "init", "-q", "-b", "main"});
  Git({"-C", origin, "add", "-A"});
  Git({"-C", origin, "commit", "-q", "-m", "app"});
}

std::string ChangeOneFile(const std::string& origin, int serial) {
  std::ofstream(origin + "/src/module0.js", std::ios::app) << "// change " << serial << "\n";
  Git({"-C", origin, "commit", "-q", "-am", absl::StrCat("change ", serial)});
  return Git({"-C", origin, "rev-parse", "HEAD"});
}

struct AgentSample {
  double total_ms = 0;                             // workflow start to result
  double fetch_ms = 0, build_ms = 0, push_ms = 0;  // as the activities report them
  int steps = 0, cached = 0, pushed = 0, reused = 0;
};

struct HandSample {
  double fetch_ms = 0, build_ms = 0, push_ms = 0;
  double total() const { return fetch_ms + build_ms + push_ms; }
};

std::vector<std::string> PodmanArgs(const builder::Podman& podman) { return podman.GlobalArgs(); }

}  // namespace
}  // namespace kiln::bench

int main(int argc, char** argv) {
  kiln::testutil::CleanUpOnInterrupt();  // Ctrl-C leaves no data or process behind
  using namespace kiln::bench;           // NOLINT
  namespace testutil = kiln::testutil;
  CLI::App app{"kiln-builder-bench: commit-to-pushed-image time, agent vs by hand"};
  int runs = 5, deps = 40, files = 200;
  app.add_option("--runs", runs, "Warm runs (medians are printed)")->check(CLI::Range(1, 50));
  app.add_option("--deps", deps, "Entries in the lock file (50 KB each)")
      ->check(CLI::Range(1, 2000));
  app.add_option("--files", files, "Source files (1-5 KB)")->check(CLI::Range(1, 20000));
  CLI11_PARSE(app, argc, argv);
  kiln::ConfigureDefaultLogger(kiln::LogFormat::kText, kiln::LogLevel::kWarn);

  testutil::TempDir work;
  const std::string origin = work.path() + "/origin";
  MakeApp(origin, deps, files);

  // Two volumes, each with its own storage and the busybox base image.
  auto prepare = [&](const std::string& volume) {
    auto podman = kiln::builder::Podman::Create({.volume = volume});
    if (!podman.ok()) Die("podman cannot run here: " + podman.status().ToString());
    std::vector<std::string> argv = {kPodman};
    for (const auto& a : (*podman)->GlobalArgs()) argv.push_back(a);
    absl::Status imported =
        testutil::ImportBusyboxImage(argv, "localhost/busybox:latest", volume + "-bb");
    if (!imported.ok()) Die(imported.ToString());
    return *std::move(podman);
  };
  const std::string agent_volume = work.path() + "/agent-volume";
  const std::string hand_volume = work.path() + "/hand-volume";
  const std::string lib_volume = work.path() + "/lib-volume";
  prepare(agent_volume);
  auto hand_podman = prepare(hand_volume);
  auto lib_podman = prepare(lib_volume);

  testutil::OrchestratorProcess orchestrator(work.path() + "/data");
  if (absl::Status s = orchestrator.Start(); !s.ok()) Die(s.ToString());
  fs::create_directories(work.path() + "/registry-agent");
  fs::create_directories(work.path() + "/registry-hand");
  fs::create_directories(work.path() + "/registry-lib");
  auto lib_registry = testutil::RegistryProcess::Start(work.path() + "/registry-lib");
  if (!lib_registry.ok()) Die("cannot start docker-registry");
  auto agent_registry = testutil::RegistryProcess::Start(work.path() + "/registry-agent");
  auto hand_registry = testutil::RegistryProcess::Start(work.path() + "/registry-hand");
  if (!agent_registry.ok() || !hand_registry.ok()) Die("cannot start docker-registry");

  auto agent = testutil::Process::Start(
      testutil::BinaryPath("kiln-builder-agent"),
      {"--orchestrator", orchestrator.address(), "--project", kProject, "--volume", agent_volume,
       "--registry", (*agent_registry)->address(), "--no-registry-tls-verify", "--idle-grace",
       "600", "--log-level", "warn", "--token", orchestrator.AgentToken(kProject)},
      work.path() + "/agent.log");
  if (!agent.ok()) Die(agent.status().ToString());
  kiln::sdk::Client client(orchestrator.connection());
  kiln::sdk::WorkflowWorker worker(orchestrator.connection(), kQueue, {});
  worker.Register("Deploy", Deploy);
  worker.Start();

  int serial = 0;
  auto run_agent = [&](const std::string& revision) {
    const std::string id = absl::StrCat("deploy-", ++serial);
    absl::Time began = absl::Now();
    auto handle = client.StartWorkflow({.id = id, .task_queue = kQueue}, "Deploy",
                                       ToPayloads(origin, revision));
    if (!handle.ok()) Die(handle.status().ToString());
    auto result = client.GetResult(*handle, absl::Minutes(10));
    AgentSample s;
    s.total_ms = absl::ToDoubleMilliseconds(absl::Now() - began);
    if (!result.ok()) Die(id + ": " + result.status().ToString() + "\n" + (*agent)->Output());
    auto decoded =
        kiln::sdk::FromPayloads<pb::FetchSourceResult, pb::BuildImageResult, pb::PushImageResult>(
            *result);
    if (!decoded.ok()) Die(decoded.status().ToString());
    auto& [f, b, p] = *decoded;
    s.fetch_ms = Ms(f.fetch_duration()) + Ms(f.checkout_duration());
    s.build_ms = Ms(b.build_duration());
    s.push_ms = Ms(p.push_duration());
    s.steps = b.steps();
    s.cached = b.steps_cached();
    s.pushed = p.blobs_pushed();
    s.reused = p.blobs_reused();
    return s;
  };

  const std::string mirror = hand_volume + "/cli.git", tree = hand_volume + "/cli-tree";
  std::vector<std::string> podman_args = PodmanArgs(*hand_podman);
  std::vector<std::string> ulimits;
  for (const auto& u : hand_podman->profile().ulimits) {
    ulimits.insert(ulimits.end(), {"--ulimit", u});
  }
  auto run_hand = [&](bool cold) {
    HandSample s;
    if (cold) {
      fs::create_directories(tree);
      s.fetch_ms = Timed(kGit, {"clone", "-q", "--bare", origin, mirror});
    } else {
      s.fetch_ms =
          Timed(kGit, {"--git-dir", mirror, "fetch", "-q", origin, "+refs/heads/*:refs/heads/*"});
    }
    s.fetch_ms +=
        Timed(kGit, {"--git-dir", mirror, "--work-tree", tree, "checkout", "-q", "-f", "main"});
    const std::string sha = Git({"--git-dir", mirror, "rev-parse", "main"});
    std::vector<std::string> build = podman_args;
    build.insert(build.end(), {"build", "--layers", "--network", "none"});
    build.insert(build.end(), ulimits.begin(), ulimits.end());
    build.insert(build.end(), {"-t", "bench/app:" + sha, tree});
    s.build_ms = Timed(kPodman, build);
    std::vector<std::string> push = podman_args;
    push.insert(push.end(), {"push", "--tls-verify=false", "bench/app:" + sha,
                             absl::StrCat((*hand_registry)->address(), "/bench/app:", sha)});
    s.push_ms = Timed(kPodman, push);
    return s;
  };

  // The agent's own libraries called directly (no orchestrator, agent process or workflow):
  // separates what the platform adds from what the libraries add over the CLI.
  auto sources = kiln::builder::SourceCache::Create(lib_volume + "/git");
  if (!sources.ok()) Die(sources.status().ToString());
  int lib_serial = 0;
  auto run_lib = [&]() {
    HandSample s;
    kiln::builder::GitFetchRequest request;
    request.repository_url = origin;
    request.revision = "main";
    auto fetched = (*sources)->Fetch(request, {}, {});
    if (!fetched.ok()) Die(fetched.status().ToString());
    s.fetch_ms = absl::ToDoubleMilliseconds(fetched->fetch_duration + fetched->checkout_duration);
    kiln::builder::BuildRequest build;
    build.context_dir = fetched->worktree_dir;
    build.repository = "lib/app";
    build.project = "lib";
    build.build_id = absl::StrCat("lib-", ++lib_serial);
    build.commit = fetched->commit_sha;
    auto built = lib_podman->Build(build, {}, {});
    if (!built.ok()) Die(built.status().ToString());
    s.build_ms = absl::ToDoubleMilliseconds(built->duration);
    kiln::builder::PushRequest push;
    push.image = built->tag;
    push.destination = absl::StrCat((*lib_registry)->address(), "/lib/app:", fetched->commit_sha);
    push.tls_verify = false;
    auto pushed = lib_podman->Push(push, {}, {});
    if (!pushed.ok()) Die(pushed.status().ToString());
    s.push_ms = absl::ToDoubleMilliseconds(pushed->duration);
    return s;
  };

  AgentSample agent_cold = run_agent("main");
  HandSample hand_cold = run_hand(true);
  HandSample lib_cold = run_lib();
  std::vector<AgentSample> agent_warm;
  std::vector<HandSample> hand_warm, lib_warm;
  for (int i = 0; i < runs; ++i) {
    const std::string sha = ChangeOneFile(origin, i);
    agent_warm.push_back(run_agent(sha));
    hand_warm.push_back(run_hand(false));
    lib_warm.push_back(run_lib());
  }
  worker.Stop();
  (*agent)->Signal(SIGTERM);
  (void)(*agent)->Wait(absl::Seconds(30));

  auto med = [](const auto& samples, auto field) {
    std::vector<double> v;
    for (const auto& s : samples) v.push_back(field(s));
    return Median(v);
  };
  std::printf(
      "| run | path | fetch+checkout | build | push | commit to pushed image |"
      " steps cached | layers uploaded / reused |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
  std::printf(
      "| cold | agent (workflow) | %.0f ms | %.0f ms | %.0f ms | %.0f ms | %d of %d | %d / %d |\n",
      agent_cold.fetch_ms, agent_cold.build_ms, agent_cold.push_ms, agent_cold.total_ms,
      agent_cold.cached, agent_cold.steps, agent_cold.pushed, agent_cold.reused);
  std::printf(
      "| cold | agent's libraries, no platform | %.0f ms | %.0f ms | %.0f ms | %.0f ms | | |\n",
      lib_cold.fetch_ms, lib_cold.build_ms, lib_cold.push_ms, lib_cold.total());
  std::printf("| cold | by hand (git, podman) | %.0f ms | %.0f ms | %.0f ms | %.0f ms | | |\n",
              hand_cold.fetch_ms, hand_cold.build_ms, hand_cold.push_ms, hand_cold.total());
  const AgentSample& last = agent_warm.back();
  double agent_total = med(agent_warm, [](const AgentSample& s) { return s.total_ms; });
  double hand_total = med(hand_warm, [](const HandSample& s) { return s.total(); });
  std::printf(
      "| warm | agent (workflow) | %.0f ms | %.0f ms | %.0f ms | %.0f ms | %d of %d | %d / %d |\n",
      med(agent_warm, [](const AgentSample& s) { return s.fetch_ms; }),
      med(agent_warm, [](const AgentSample& s) { return s.build_ms; }),
      med(agent_warm, [](const AgentSample& s) { return s.push_ms; }), agent_total, last.cached,
      last.steps, last.pushed, last.reused);
  std::printf(
      "| warm | agent's libraries, no platform | %.0f ms | %.0f ms | %.0f ms | %.0f ms | | |\n",
      med(lib_warm, [](const HandSample& s) { return s.fetch_ms; }),
      med(lib_warm, [](const HandSample& s) { return s.build_ms; }),
      med(lib_warm, [](const HandSample& s) { return s.push_ms; }),
      med(lib_warm, [](const HandSample& s) { return s.total(); }));
  std::printf("| warm | by hand (git, podman) | %.0f ms | %.0f ms | %.0f ms | %.0f ms | | |\n",
              med(hand_warm, [](const HandSample& s) { return s.fetch_ms; }),
              med(hand_warm, [](const HandSample& s) { return s.build_ms; }),
              med(hand_warm, [](const HandSample& s) { return s.push_ms; }), hand_total);
  double steps_total =
      med(agent_warm, [](const AgentSample& s) { return s.fetch_ms + s.build_ms + s.push_ms; });
  std::printf(
      "\nwarm: platform overhead (workflow tasks, dispatch, heartbeats, log writes) = "
      "commit to pushed image - steps = %.0f ms",
      agent_total - steps_total);
  std::printf(
      "\nwarm: agent %.0f ms vs by hand %.0f ms: %+.0f ms (%+.1f %%); target: within 10 %% "
      "or 150 ms, and under 2 s\n",
      agent_total, hand_total, agent_total - hand_total,
      100.0 * (agent_total - hand_total) / hand_total);
  std::printf(
      "\nMethod: a sample app — a Containerfile that installs %d dependencies from a lock file "
      "(50 KB each)\nin one RUN layer, then copies %d source files — in a local git repository. "
      "Agent path: a workflow\n(SDK worker in this process) runs FetchSource -> BuildImage -> "
      "PushImage on a kiln-builder-agent\nprocess against kiln-orchestrator and docker-registry "
      "on 127.0.0.1; 'commit to pushed image' is\nworkflow start to result; the step columns are "
      "what the activities report. By hand: git clone\n--bare / fetch + checkout -f, podman build "
      "--layers, podman push, as processes with the same podman\nstorage flags on a volume and "
      "registry of their own. The middle row calls the agent's libraries\n(SourceCache, Podman) "
      "in this process, on a third volume and registry. Cold: empty volumes (base image "
      "imported).\nWarm: one source file "
      "changed and committed, then both paths again; medians of %d runs.\n",
      deps, files, runs);
  return 0;
}
