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

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "kiln-podman-bench: %s\n", what.c_str());
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
  ByHand(const std::string& volume, std::string registry) : registry_(std::move(registry)) {
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
    Podman({"build", "--layers", "--network", "none", "--tag", tag, context});
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
  const std::string reg = (*registry)->address();

  // One pair of volumes per cold round; the last pair is reused for the warm rounds.
  std::unique_ptr<builder::Podman> podman;
  std::unique_ptr<ByHand> hand;
  std::string ours_ctx, hand_ctx;
  double create_cold_ms = 0, create_warm_ms = 0;
  std::vector<double> cb, cp, ct, hcb, hcp, hct;
  int reused = 0, pushed = 0;
  for (int round = 0; round < cold_runs; ++round) {
    std::string base = absl::StrCat(dir.path(), "/round", round);
    builder::PodmanOptions options;
    options.volume = base + "/kiln-volume";
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
      auto run = p->Run(args, {}, {}, absl::Minutes(2));
      if (!run.ok()) return run.status();
      return run->exit_code == 0 ? absl::OkStatus() : absl::InternalError("podman failed");
    };
    if (!testutil::ImportBusyboxImage(ours_runner, kBase, base).ok()) Die("import (kiln)");
    hand = std::make_unique<ByHand>(base + "/hand-volume", reg);
    // By hand, a person on this host passes what the host needs too (HOST-NOTES.md).
    hand->AddGlobal({"--runtime", podman->profile().runtime, "--cgroup-manager",
                     podman->profile().cgroup_manager});
    if (!testutil::ImportBusyboxImage(testutil::PlainPodman(hand->Global()), kBase, base).ok()) {
      Die("import (hand)");
    }
    ours_ctx = base + "/app-kiln";
    hand_ctx = base + "/app-hand";
    MakeApp(ours_ctx);
    MakeApp(hand_ctx);
    Sample o, h;
    if (round % 2 == 0) {
      o = OursBuildAndPush(*podman, ours_ctx, reg, 0, &reused, &pushed);
      h = hand->BuildAndPush(hand_ctx, 0);
    } else {
      h = hand->BuildAndPush(hand_ctx, 0);
      o = OursBuildAndPush(*podman, ours_ctx, reg, 0, &reused, &pushed);
    }
    cb.push_back(o.build_ms);
    cp.push_back(o.push_ms);
    ct.push_back(o.total());
    hcb.push_back(h.build_ms);
    hcp.push_back(h.push_ms);
    hct.push_back(h.total());
  }

  std::vector<double> ob, op, ot, hb, hp, ht;
  for (int i = 1; i <= runs; ++i) {
    ChangeSource(ours_ctx, i);
    ChangeSource(hand_ctx, i);
    Sample o, h;
    if (i % 2 == 0) {
      o = OursBuildAndPush(*podman, ours_ctx, reg, i, &reused, &pushed);
      h = hand->BuildAndPush(hand_ctx, i);
    } else {
      h = hand->BuildAndPush(hand_ctx, i);
      o = OursBuildAndPush(*podman, ours_ctx, reg, i, &reused, &pushed);
    }
    ob.push_back(o.build_ms);
    op.push_back(o.push_ms);
    ot.push_back(o.total());
    hb.push_back(h.build_ms);
    hp.push_back(h.push_ms);
    ht.push_back(h.total());
  }

  std::printf("%-34s %12s %12s %10s\n", "step (ms)", "kiln", "by hand", "delta");
  auto row = [](const char* name, double ours, double by_hand) {
    std::printf("%-34s %12.0f %12.0f %+10.0f\n", name, ours, by_hand, ours - by_hand);
  };
  row("cold build (median)", Median(cb), Median(hcb));
  row("cold push (median)", Median(cp), Median(hcp));
  row("cold build + push (median)", Median(ct), Median(hct));
  row("warm build (median)", Median(ob), Median(hb));
  row("warm push (median)", Median(op), Median(hp));
  row("warm build + push (median)", Median(ot), Median(ht));
  std::printf("\nwarm rebuild: %d of 5 steps from the layer cache, %d layer(s) uploaded\n", reused,
              pushed);
  std::printf("Podman::Create: %.0f ms probing the host, %.0f ms with the profile cached\n",
              create_cold_ms, create_warm_ms);
  std::printf(
      "\nMethod: %d cold builds each on fresh volumes (busybox base imported), then %d warm "
      "rebuilds each after\na one-line change to src/main.txt; kiln and by hand alternate "
      "(order swapped every round), on\nseparate volumes under %s, pushing to one "
      "docker-registry on 127.0.0.1. By hand: podman build --layers\n--network none, podman "
      "push --tls-verify=false, with --root/--runroot/--runtime/--cgroup-manager.\n",
      cold_runs, runs, std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp");
  return 0;
}

}  // namespace
}  // namespace kiln::bench

int main(int argc, char** argv) { return kiln::bench::Main(argc, argv); }
