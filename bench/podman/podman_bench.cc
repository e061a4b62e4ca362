// The podman benchmark: cold and warm build + push of a small sample app through
// kiln::builder::Podman (storage on the volume, host profile, isolation, labels, debug-log
// parsing, byte count), next to the same `podman build` + `podman push` run by hand on a volume
// of its own. Both push to one docker-registry on 127.0.0.1. Prints one table and its method.
//
//   kiln-podman-bench [--runs 5]
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "builder-agent/podman/podman.h"
#include "tests/testutil/process.h"
#include "tests/testutil/registry.h"

namespace kiln::bench {
namespace {

namespace fs = std::filesystem;
constexpr char kPodman[] = "/usr/bin/podman";
constexpr char kBase[] = "localhost/kiln-busybox:latest";

// What Die() must undo: std::exit runs no destructors, and the registry must not outlive us.
std::function<void()> g_cleanup;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "kiln-podman-bench: %s\n", what.c_str());
  if (g_cleanup) g_cleanup();
  std::exit(1);
}

// A sample app: dependencies "installed" from a lock file, then the source copied.
void MakeApp(const std::string& dir) {
  fs::create_directories(dir + "/src");
  std::ofstream(dir + "/Containerfile")
      << "FROM " << kBase
      << "\n"
         "WORKDIR /app\n"
         "COPY deps.lock ./\n"
         "RUN mkdir -p deps && while read name version; do "
         "echo \"$name $version\" > deps/$name; done < deps.lock\n"
         "COPY src/ ./src/\n"
         "CMD [\"cat\", \"/app/src/main.txt\"]\n";
  std::ofstream(dir + "/deps.lock") << "alpha 1.2.0\nbeta 0.9.1\ngamma 3.3.3\n";
  std::ofstream(dir + "/src/main.txt") << "version 0\n";
}

void ChangeSource(const std::string& dir, int serial) {
  std::ofstream(dir + "/src/main.txt") << "version " << serial << "\n";
}

struct Sample {
  double build_ms = 0;
  double push_ms = 0;
  double total() const { return build_ms + push_ms; }
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

class ByHand {
 public:
  ByHand(const std::string& volume, std::string registry, bool labels)
      : registry_(std::move(registry)), labels_(labels) {
    global_ = {"--root",        volume + "/storage", "--runroot",
               volume + "/run", "--storage-driver",  "overlay"};
  }
  void AddGlobal(const std::vector<std::string>& more) {
    global_.insert(global_.end(), more.begin(), more.end());
  }
  const std::vector<std::string>& Global() const { return global_; }
  Sample BuildAndPush(const std::string& context, int serial) {
    std::string tag = absl::StrCat(registry_, "/bench/by-hand:", serial);
    Sample s;
    absl::Time t0 = absl::Now();
    std::vector<std::string> build = {"build", "--layers", "--network", "none", "--tag", tag};
    if (labels_) {
      build.insert(build.end(), {"--label", "kiln.project=bench", "--label",
                                 absl::StrCat("kiln.build=b", serial), "--label",
                                 absl::StrCat("kiln.commit=c", serial)});
    }
    build.push_back(context);
    Podman(build);
    absl::Time t1 = absl::Now();
    Podman({"push", "--tls-verify=false", tag});
    absl::Time t2 = absl::Now();
    s.build_ms = absl::ToDoubleMilliseconds(t1 - t0);
    s.push_ms = absl::ToDoubleMilliseconds(t2 - t1);
    return s;
  }

 private:
  void Podman(const std::vector<std::string>& args) {
    std::vector<std::string> full = global_;
    full.insert(full.end(), args.begin(), args.end());
    std::string output;
    auto code = testutil::RunCommand(kPodman, full, &output, absl::Minutes(5));
    if (!code.ok() || *code != 0) Die(absl::StrCat("podman ", args[0], " failed: ", output));
  }
  std::string registry_;
  bool labels_;
  std::vector<std::string> global_;
};

Sample OursBuildAndPush(builder::Podman& podman, const std::string& context,
                        const std::string& registry, int serial, int* reused, int* pushed) {
  builder::BuildRequest build;
  build.context_dir = context;
  build.repository = registry + "/bench/kiln";
  build.project = "bench";
  build.build_id = absl::StrCat("b", serial);
  build.commit = absl::StrCat("c", serial);
  absl::Time t0 = absl::Now();
  auto built = podman.Build(build, {}, {});
  if (!built.ok()) Die(absl::StrCat("build: ", built.status().ToString()));
  absl::Time t1 = absl::Now();
  builder::PushRequest push;
  push.image = built->image_id;
  push.destination = built->tag;
  push.tls_verify = false;
  auto pushed_result = podman.Push(push, {}, {});
  if (!pushed_result.ok()) Die(absl::StrCat("push: ", pushed_result.status().ToString()));
  absl::Time t2 = absl::Now();
  *reused = built->layers_reused;
  *pushed = pushed_result->blobs_pushed;
  return {absl::ToDoubleMilliseconds(t1 - t0), absl::ToDoubleMilliseconds(t2 - t1)};
}

int Main(int argc, char** argv) {
  CLI::App app{"kiln-podman-bench: build + push through kiln::builder::Podman vs by hand"};
  int runs = 7;
  int cold_runs = 3;
  app.add_option("--runs", runs, "Warm rebuilds of each kind (median reported)")
      ->check(CLI::Range(1, 50));
  app.add_option("--cold-runs", cold_runs, "Cold builds of each kind, fresh volumes each")
      ->check(CLI::Range(1, 10));
  CLI11_PARSE(app, argc, argv);

  testutil::TempDir dir;
  fs::create_directories(dir.path() + "/registry");
  auto registry = testutil::RegistryProcess::Start(dir.path() + "/registry");
  if (!registry.ok()) Die(registry.status().ToString());
  g_cleanup = [&] {
    registry->reset();  // Stops the registry by PID.
    std::error_code ec;
    fs::remove_all(dir.path(), ec);
  };
  const std::string reg = (*registry)->address();

  // Three contenders, each on volumes of its own: kiln, podman by hand, and by hand with the
  // three labels a build needs (as `--label` flags). One set of volumes per cold round; the
  // last set is reused for the warm rounds. The order rotates every round.
  constexpr int kContenders = 3;
  const char* names[kContenders] = {"kiln", "by hand", "by hand+labels"};
  std::unique_ptr<builder::Podman> podman;
  std::unique_ptr<ByHand> hands[2];
  std::string ctxs[kContenders];
  double create_cold_ms = 0, create_warm_ms = 0;
  int reused = 0, pushed = 0;
  std::vector<double> cold_build[kContenders], cold_push[kContenders], cold_total[kContenders];
  std::vector<double> warm_build[kContenders], warm_push[kContenders], warm_total[kContenders];
  auto run = [&](int who, int serial) -> Sample {
    if (who == 0) return OursBuildAndPush(*podman, ctxs[0], reg, serial, &reused, &pushed);
    return hands[who - 1]->BuildAndPush(ctxs[who], serial);
  };
  for (int round = 0; round < cold_runs; ++round) {
    std::string base = absl::StrCat(dir.path(), "/r", round);  // Short: see kMaxRunRootChars.
    builder::PodmanOptions options;
    options.volume = base + "/kv";
    absl::Time c0 = absl::Now();
    auto created = builder::Podman::Create(options);
    if (!created.ok()) Die(created.status().ToString());
    create_cold_ms = absl::ToDoubleMilliseconds(absl::Now() - c0);
    c0 = absl::Now();
    if (!builder::Podman::Create(options).ok()) Die("second Create failed");
    create_warm_ms = absl::ToDoubleMilliseconds(absl::Now() - c0);
    podman = std::move(*created);

    builder::Podman* p = podman.get();
    auto ours_runner = [p](const std::vector<std::string>& args) -> absl::Status {
      auto result = p->Run(args, {}, {}, absl::Minutes(2));
      if (!result.ok()) return result.status();
      return result->exit_code == 0 ? absl::OkStatus() : absl::InternalError("podman failed");
    };
    if (!testutil::ImportBusyboxImage(ours_runner, kBase, base).ok()) Die("import (kiln)");
    for (int h = 0; h < 2; ++h) {
      hands[h] = std::make_unique<ByHand>(absl::StrCat(base, "/hand-volume", h), reg, h == 1);
      // By hand, a person on this host passes what the host needs too (HOST-NOTES.md).
      hands[h]->AddGlobal({"--runtime", podman->profile().runtime, "--cgroup-manager",
                           podman->profile().cgroup_manager});
      if (!testutil::ImportBusyboxImage(testutil::PlainPodman(hands[h]->Global()), kBase, base)
               .ok()) {
        Die("import (hand)");
      }
    }
    for (int who = 0; who < kContenders; ++who) {
      ctxs[who] = absl::StrCat(base, "/app", who);
      MakeApp(ctxs[who]);
    }
    for (int k = 0; k < kContenders; ++k) {
      int who = (round + k) % kContenders;
      Sample sample = run(who, 0);
      cold_build[who].push_back(sample.build_ms);
      cold_push[who].push_back(sample.push_ms);
      cold_total[who].push_back(sample.total());
    }
  }
  for (int i = 1; i <= runs; ++i) {
    for (int k = 0; k < kContenders; ++k) {
      int who = (i + k) % kContenders;
      ChangeSource(ctxs[who], i);
      Sample sample = run(who, i);
      warm_build[who].push_back(sample.build_ms);
      warm_push[who].push_back(sample.push_ms);
      warm_total[who].push_back(sample.total());
    }
  }

  std::printf("%-28s %10s %10s %16s\n", "median (ms)", names[0], names[1], names[2]);
  auto row = [&](const char* name, const std::vector<double>* v) {
    std::printf("%-28s %10.0f %10.0f %16.0f\n", name, Median(v[0]), Median(v[1]), Median(v[2]));
  };
  row("cold build", cold_build);
  row("cold push", cold_push);
  row("cold build + push", cold_total);
  row("warm build", warm_build);
  row("warm push", warm_push);
  row("warm build + push", warm_total);
  std::printf("\nwarm rebuild: %d of 5 steps from the layer cache, %d layer(s) uploaded\n", reused,
              pushed);
  std::printf("Podman::Create: %.0f ms probing the host, %.0f ms with the profile cached\n",
              create_cold_ms, create_warm_ms);
  std::printf(
      "\nMethod: %d cold builds each on fresh volumes (busybox base imported), then %d warm "
      "rebuilds each after\na one-line change to src/main.txt; the three take turns (order "
      "rotated every round), on\nseparate volumes under %s, pushing to one docker-registry on "
      "127.0.0.1. By hand: podman build --layers\n--network none (+labels: the three kiln.* "
      "labels as --label flags), podman push --tls-verify=false,\nwith "
      "--root/--runroot/--runtime/--cgroup-manager.\n",
      cold_runs, runs, std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp");
  return 0;
}

}  // namespace
}  // namespace kiln::bench

int main(int argc, char** argv) {
  kiln::testutil::CleanUpOnInterrupt();
  return kiln::bench::Main(argc, argv);
}
