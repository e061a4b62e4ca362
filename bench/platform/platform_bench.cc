// The build platform's benchmark: what a user of Kiln waits for, every part real — a signed
// GitHub push to kiln-worker, the DeploymentWorkflow on kiln-orchestrator, kiln-builder-agent
// woken by the process provider, podman build and push to docker-registry on 127.0.0.1, the
// podman deploy target behind its TCP proxy — timed phase by phase (the Deployment's steps and
// the run's history events), next to the same git fetch, podman build, push and run done by hand
// on a warm cache. Prints one table and its method. See docs/benchmarks.md.
//
//   kiln-platform-bench [--runs 12] [--warm-per-run 3] [--idle-grace 3] [--verbose]
//
// One round, in order (each deployment ends before the next push, so nothing queues):
//   asleep  wait until the agent has exited, push a one-file change: webhook -> FetchSource
//           started (the machine woken), and on to the new content served;
//   warm    --warm-per-run one-file changes pushed back to back (machine awake, cache warm):
//           webhook -> new content served on the project's port, by phase;
//   by hand the same change fetched, built, pushed, pulled, run and health-checked by hand;
//   skip    the same tree on another branch (build skipped) -> healthy;
//   rollback to the asleep deployment -> its content served on the project's port;
//   log     a RUN prints a clock mark: printed -> seen by a BuildService.FollowLog follower;
//   cancel  that RUN then sleeps; a newer push -> the sleep process gone from /proc.
#include <sys/mount.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/create_channel.h>
#include <CLI/CLI.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "builder-agent/git/smart_http_server.h"
#include "builder-agent/podman/podman.h"
#include "common/logging.h"
#include "common/proto_time.h"
#include "kiln/platform/v1/build_service.grpc.pb.h"
#include "sdk/client.h"
#include "tests/testutil/github_push.h"
#include "tests/testutil/http.h"
#include "tests/testutil/orchestrator.h"
#include "tests/testutil/process.h"
#include "tests/testutil/registry.h"
#include "worker/workflows/platform.h"

namespace kiln::bench {
namespace {

namespace api = ::kiln::api::v1;
namespace pb = ::kiln::platform::v1;
namespace fs = std::filesystem;

constexpr char kProject[] = "benchweb";
constexpr char kSecret[] = "bench-webhook-secret-4Rk";
constexpr char kGitToken[] = "bench-git-token";
constexpr char kGit[] = "/usr/bin/git";
constexpr char kPodman[] = "/usr/bin/podman";
// The canceled build's RUN sleeps this many seconds: a number no other test's sleep uses, so
// /proc finds this one.
constexpr char kSleepSeconds[] = "6007";
constexpr absl::Duration kDeployTimeout = absl::Minutes(3);
constexpr absl::Duration kAsleepTimeout = absl::Seconds(60);
// How often the client looks: the port, GetDeployment, /proc. Small against every target.
constexpr absl::Duration kPollEvery = absl::Milliseconds(2);
constexpr absl::Duration kStatePollEvery = absl::Milliseconds(10);

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "kiln-platform-bench: %s\n", what.c_str());
  std::exit(1);
}

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

// CLOCK_BOOTTIME: what /proc/uptime shows, in a container as on the host.
absl::Duration Boottime() {
  timespec ts;
  ::clock_gettime(CLOCK_BOOTTIME, &ts);
  return absl::DurationFromTimespec(ts);
}

std::string Git(const std::string& repo, const std::vector<std::string>& args) {
  absl::StatusOr<std::string> out = testutil::Git(args, repo);
  if (!out.ok()) Die(std::string(out.status().message()));
  return std::string(absl::StripTrailingAsciiWhitespace(*out));
}

// Runs a command by hand; returns its wall time.
absl::Duration Timed(const std::string& binary, const std::vector<std::string>& args,
                     std::string* output = nullptr) {
  std::string out;
  absl::Time began = absl::Now();
  auto code = testutil::RunCommand(binary, args, &out, absl::Minutes(5));
  absl::Duration took = absl::Now() - began;
  if (!code.ok() || *code != 0) Die(binary + " " + absl::StrJoin(args, " ") + " failed: " + out);
  if (output != nullptr) *output = std::string(absl::StripTrailingAsciiWhitespace(out));
  return took;
}

// Nearest-rank percentile.
double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(v.size())));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

// Samples of one row of the table.
struct Row {
  std::string name;
  std::string target;
  std::vector<double> ms;
};

class Table {
 public:
  Row& operator[](const std::string& name) {
    for (Row& r : rows_) {
      if (r.name == name) return r;
    }
    rows_.push_back({name, "", {}});
    return rows_.back();
  }
  void Add(const std::string& name, double ms, const std::string& target = "") {
    Row& r = (*this)[name];
    r.ms.push_back(ms);
    if (!target.empty()) r.target = target;
  }
  void Print() const {
    std::printf("| measurement | n | p50 | p90 | p99 | max | target |\n");
    std::printf("| --- | --- | --- | --- | --- | --- | --- |\n");
    for (const Row& r : rows_) {
      if (r.ms.empty()) {
        std::printf("| %s | 0 | | | | | %s |\n", r.name.c_str(), r.target.c_str());
        continue;
      }
      std::printf("| %s | %zu | %.0f ms | %.0f ms | %.0f ms | %.0f ms | %s |\n", r.name.c_str(),
                  r.ms.size(), Percentile(r.ms, 0.5), Percentile(r.ms, 0.9), Percentile(r.ms, 0.99),
                  Percentile(r.ms, 1.0), r.target.c_str());
    }
  }

 private:
  std::vector<Row> rows_;
};

// When each activity of a run was scheduled, started and closed (the first attempt's schedule,
// the last attempt's start and close), from the run's history.
struct ActivityTimes {
  absl::Time scheduled, started, closed;
};
struct RunTimes {
  absl::Time started;
  std::map<std::string, ActivityTimes> activities;
};

bool verbose = false;

RunTimes TimesOf(sdk::Client& client, const std::string& workflow_id, absl::Time sent) {
  auto history = client.GetHistory({.workflow_id = workflow_id});
  if (!history.ok()) Die(history.status().ToString());
  RunTimes times;
  std::map<int64_t, std::string> by_scheduled;
  if (verbose) std::fprintf(stderr, "%s:\n", workflow_id.c_str());
  for (const api::HistoryEvent& e : history->events()) {
    absl::Time t = FromProto(e.event_time());
    if (verbose) {
      std::fprintf(stderr, "  %3lld %+8.1f ms %s %s\n", static_cast<long long>(e.event_id()),
                   Ms(t - sent), api::EventType_Name(e.event_type()).c_str(),
                   e.activity_task_scheduled_event_attributes().activity_type().name().c_str());
    }
    switch (e.event_type()) {
      case api::EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
        times.started = t;
        break;
      case api::EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: {
        const std::string& type =
            e.activity_task_scheduled_event_attributes().activity_type().name();
        // The first scheduling only: a step scheduled again (a re-wake) is a later story.
        if (times.activities.count(type) == 0) {
          by_scheduled[e.event_id()] = type;
          times.activities[type].scheduled = t;
        }
        break;
      }
      case api::EVENT_TYPE_ACTIVITY_TASK_STARTED: {
        auto it =
            by_scheduled.find(e.activity_task_started_event_attributes().scheduled_event_id());
        if (it != by_scheduled.end()) times.activities[it->second].started = t;
        break;
      }
      case api::EVENT_TYPE_ACTIVITY_TASK_COMPLETED: {
        auto it =
            by_scheduled.find(e.activity_task_completed_event_attributes().scheduled_event_id());
        if (it != by_scheduled.end()) times.activities[it->second].closed = t;
        break;
      }
      default:
        break;
    }
  }
  return times;
}

// The pids of processes whose command line is exactly `argv` (NUL-separated in /proc).
std::vector<pid_t> ProcessesWithArgv(const std::vector<std::string>& argv) {
  std::string want;
  for (const auto& a : argv) absl::StrAppend(&want, a, std::string(1, '\0'));
  std::vector<pid_t> pids;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    int pid = 0;
    if (!absl::SimpleAtoi(entry.path().filename().string(), &pid)) continue;
    if (testutil::ReadFile(entry.path().string() + "/cmdline") == want) pids.push_back(pid);
  }
  return pids;
}

bool AnyProcessWithArgvAndPrefix(const std::string& binary_suffix, const std::string& arg_prefix) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    int pid = 0;
    if (!absl::SimpleAtoi(entry.path().filename().string(), &pid)) continue;
    std::vector<std::string> argv =
        absl::StrSplit(testutil::ReadFile(entry.path().string() + "/cmdline"), '\0');
    if (argv.empty() || !absl::EndsWith(argv[0], binary_suffix)) continue;
    for (const auto& a : argv) {
      if (absl::StartsWith(a, arg_prefix)) return true;
    }
  }
  return false;
}

class Bench {
 public:
  // `microvm_image` empty: the process machine provider; else the microvm provider booting it.
  Bench(int idle_grace_s, std::string microvm_image)
      : idle_grace_s_(idle_grace_s), microvm_image_(std::move(microvm_image)) {}
  bool microvm() const { return !microvm_image_.empty(); }
  ~Bench() { Stop(); }

  void Setup();
  void Round(int round, int warm_per_run);
  void Stop();
  Table& table() { return table_; }
  std::string base() const { return base_; }

 private:
  struct Sent {
    std::string id;
    absl::Time at;
  };
  Sent Push(const std::string& branch, const std::string& before);
  pb::Deployment Get(const std::string& id);
  pb::Deployment WaitEnded(const std::string& id);
  // Waits until GET / on `port` answers `body`; returns when the client first saw it.
  absl::Time WaitServed(int port, const std::string& body);
  void WaitAsleep();
  // A one-file change on main; returns the new content.
  std::string Change(const std::string& note);
  void WriteContainerfile(const std::string& run_line);
  void Warm(bool asleep, const std::string& label);
  void ByHand();
  void Skip();
  void Rollback();
  void LogAndCancel(int round);

  int idle_grace_s_;
  std::string microvm_image_;
  // The repository as the platform fetches it: repo_ itself, or (microvm) its URL on a git
  // server on 127.0.0.1 forwarded into the machines.
  std::string repo_url_;
  std::unique_ptr<builder::testing::SmartHttpServer> git_server_;
  bool stopped_ = false;
  testutil::TempDir dir_;
  std::unique_ptr<testutil::RegistryProcess> registry_;
  std::unique_ptr<testutil::OrchestratorProcess> orchestrator_;
  std::unique_ptr<testutil::Process> worker_;
  std::unique_ptr<sdk::Client> client_;
  std::unique_ptr<pb::BuildService::Stub> stub_;
  std::string base_, repo_, hand_mirror_, hand_tree_;
  std::vector<std::string> hand_build_args_, hand_deploy_args_, hand_ulimits_, hand_run_ulimits_;
  std::string hand_container_;
  int http_port_ = 0, app_port_ = 0, serial_ = 0;
  std::string head_;               // main's head as the platform last saw it
  std::string asleep_deployment_;  // rolled back to
  std::string asleep_content_;
  Table table_;
};

void Bench::Setup() {
  {
    builder::PodmanOptions options;
    options.volume = dir_.path() + "/probe";
    auto podman = builder::Podman::Create(options);
    if (!podman.ok()) Die("podman cannot run here: " + podman.status().ToString());
  }
  fs::create_directories(dir_.path() + "/registry");
  auto registry = testutil::RegistryProcess::Start(dir_.path() + "/registry");
  if (!registry.ok()) Die("cannot start docker-registry: " + registry.status().ToString());
  registry_ = *std::move(registry);
  base_ = registry_->address() + "/kiln/busybox:latest";
  {
    auto podman = testutil::PlainPodman({"--root", dir_.path() + "/base/root", "--runroot",
                                         dir_.path() + "/base/run", "--storage-driver", "vfs"});
    absl::Status s = testutil::ImportBusyboxImage(podman, base_, dir_.path() + "/base");
    if (s.ok()) s = podman({"push", "--quiet", "--tls-verify=false", base_});
    if (!s.ok()) Die(s.ToString());
  }
  orchestrator_ = std::make_unique<testutil::OrchestratorProcess>(dir_.path() + "/orchestrator");
  if (absl::Status s = orchestrator_->Start(); !s.ok()) Die(s.ToString());
  const int grpc_port = testutil::FreePort();
  http_port_ = testutil::FreePort();
  app_port_ = testutil::FreePort();
  std::vector<std::string> worker_args = {"--orchestrator",
                                          orchestrator_->address(),
                                          "--data-dir",
                                          dir_.path() + "/worker",
                                          "--listen",
                                          absl::StrCat("127.0.0.1:", grpc_port),
                                          "--http",
                                          absl::StrCat("127.0.0.1:", http_port_),
                                          "--registry",
                                          registry_->address(),
                                          "--auth-key-file",
                                          dir_.path() + "/orchestrator/auth.key",
                                          "--agent-idle-grace",
                                          absl::StrCat(idle_grace_s_)};
  repo_ = dir_.path() + "/repos/web";
  repo_url_ = repo_;
  if (microvm()) {
    // The machines reach a git server on 127.0.0.1 through a forward, with a token from the
    // worker's secrets file.
    fs::create_directories(repo_);
    auto git = builder::testing::SmartHttpServer::Start(dir_.path() + "/repos", kGitToken);
    if (!git.ok()) Die("git server: " + git.status().ToString());
    git_server_ = *std::move(git);
    repo_url_ = git_server_->Url("web");
    testutil::WriteFile(dir_.path() + "/agent-secrets", absl::StrCat("GIT=", kGitToken, "\n"));
    worker_args.insert(
        worker_args.end(),
        {"--microvm-image", microvm_image_, "--microvm-forward",
         repo_url_.substr(repo_url_.rfind(':') + 1,
                          repo_url_.rfind('/') - repo_url_.rfind(':') - 1),  // http://h:PORT/web
         "--agent-secrets-file", dir_.path() + "/agent-secrets"});
  }
  auto worker = testutil::Process::Start(testutil::BinaryPath("kiln-worker"), worker_args,
                                         dir_.path() + "/worker.log");
  if (!worker.ok()) Die(worker.status().ToString());
  worker_ = *std::move(worker);
  client_ = std::make_unique<sdk::Client>(orchestrator_->connection());
  // BuildService takes the same admin token as the orchestrator.
  auto channel = sdk::Connection(absl::StrCat("127.0.0.1:", grpc_port),
                                 {.token = orchestrator_->admin_token()})
                     .channel();
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(30))) {
    Die("kiln-worker did not listen:\n" + worker_->Output());
  }
  stub_ = pb::BuildService::NewStub(channel);

  // The e2e test's app: busybox httpd serving www/ on the port the platform gives it.
  WriteContainerfile("");
  testutil::WriteFile(repo_ + "/www/index.html", "v0\n");
  testutil::WriteFile(repo_ + "/www/health", "ok\n");
  Git(repo_, {"init", "-q", "-b", "main"});
  Git(repo_, {"add", "-A"});
  Git(repo_, {"commit", "-q", "-m", "v0"});
  {
    grpc::ClientContext context;
    pb::CreateProjectRequest request;
    pb::ProjectConfig* config = request.mutable_config();
    config->set_id(kProject);
    config->set_repository_url(repo_url_);
    if (microvm()) {
      config->set_machine_provider("microvm");
      config->set_git_token_secret("GIT");
    }
    config->set_production_branch("main");
    config->set_port(app_port_);
    config->set_health_path("/health");
    request.set_webhook_secret(kSecret);
    pb::CreateProjectResponse response;
    grpc::Status status = stub_->CreateProject(&context, request, &response);
    if (!status.ok()) Die("CreateProject: " + status.error_message());
  }
  // The first (cold) deployment fills the caches; not measured.
  head_ = std::string(40, '0');
  Sent first = Push("main", head_);
  pb::Deployment d = WaitEnded(first.id);
  if (d.state() != pb::DEPLOYMENT_STATE_SUCCEEDED) Die("first deployment: " + d.DebugString());
  WaitServed(app_port_, "v0\n");
  std::printf("cold first deployment: webhook to served %.0f ms\n",
              Ms(FromProto(d.healthy_time()) - first.at));
  if (microvm()) return;  // The by-hand path compares with the host's own podman.

  // By hand: a mirror and work tree, build storage (the agent's podman flags), and deploy
  // storage (the deploy target's) of their own; one warm-up build so the cache is warm.
  const std::string hand = dir_.path() + "/hand";
  hand_mirror_ = hand + "/mirror.git";
  hand_tree_ = hand + "/tree";
  fs::create_directories(hand_tree_);
  Timed(kGit, {"clone", "-q", "--bare", repo_, hand_mirror_});
  auto build_podman = builder::Podman::Create({.volume = hand + "/build"});
  if (!build_podman.ok()) Die(build_podman.status().ToString());
  hand_build_args_ = (*build_podman)->GlobalArgs();
  for (const auto& u : (*build_podman)->profile().ulimits) {
    hand_ulimits_.insert(hand_ulimits_.end(), {"--ulimit", u});
  }
  builder::PodmanOptions deploy_options;
  deploy_options.volume = hand + "/deploy";
  deploy_options.isolate_commands = false;
  auto deploy_podman = builder::Podman::Create(deploy_options);
  if (!deploy_podman.ok()) Die(deploy_podman.status().ToString());
  hand_deploy_args_ = (*deploy_podman)->GlobalArgs();
  for (const auto& u : (*deploy_podman)->profile().ulimits) {
    hand_run_ulimits_.insert(hand_run_ulimits_.end(), {"--ulimit", u});
  }
  ByHand();
  table_["by hand: fetch+checkout"].ms.clear();
  for (const char* row : {"by hand: build", "by hand: push", "by hand: pull+run", "by hand: health",
                          "by hand: total"}) {
    table_[row].ms.clear();
  }
}

void Bench::Stop() {
  if (stopped_) return;
  stopped_ = true;
  if (stub_) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    pb::DeleteProjectRequest request;
    request.set_id(kProject);
    pb::DeleteProjectResponse response;
    (void)stub_->DeleteProject(&context, request, &response);  // Best effort: ending anyway.
    testutil::WaitFor([&] { return !testutil::HttpGet("127.0.0.1", app_port_, "/").ok(); },
                      absl::Seconds(60));
    stub_.reset();
  }
  if (worker_) {
    worker_->Signal(SIGTERM);
    if (!worker_->Wait(absl::Seconds(30)).ok()) worker_->Signal(SIGKILL);
    worker_.reset();
  }
  orchestrator_.reset();
  registry_.reset();
  // Every container this run started (the worker's previews stop in the background, the hand
  // path's), then the overlay mounts that podman without isolation leaves in the host's
  // namespace (this run's storage only), so the temporary directory can go.
  builder::PodmanOptions worker_deploy;
  worker_deploy.volume = dir_.path() + "/worker/deploy";
  worker_deploy.isolate_commands = false;
  auto worker_podman = builder::Podman::Create(worker_deploy);
  for (std::vector<std::string> args :
       {hand_deploy_args_,
        worker_podman.ok() ? (*worker_podman)->GlobalArgs() : std::vector<std::string>{}}) {
    if (args.empty()) continue;
    args.insert(args.end(), {"rm", "--all", "--force", "--time", "0"});
    std::string out;
    (void)testutil::RunCommand(kPodman, args, &out, absl::Minutes(1));  // Best effort.
  }
  hand_container_.clear();
  for (const std::string& overlay : {dir_.path() + "/worker/deploy/podman/storage/overlay",
                                     dir_.path() + "/hand/deploy/podman/storage/overlay"}) {
    // Mounted once per podman process that found it unmounted: maybe more than once.
    for (int i = 0; i < 16 && ::umount2(overlay.c_str(), MNT_DETACH) == 0; ++i) {
    }
  }
}

Bench::Sent Bench::Push(const std::string& branch, const std::string& before) {
  const std::string after = Git(repo_, {"rev-parse", "HEAD"});
  const std::string tree = Git(repo_, {"rev-parse", "HEAD^{tree}"});
  std::string payload =
      testutil::GithubPushPayload(repo_url_, branch, before, after, tree, "bench");
  Sent sent;
  sent.at = absl::Now();
  auto reply = testutil::DeliverGithubEvent(http_port_, "push", absl::StrCat("bench-", ++serial_),
                                            payload, kSecret);
  if (!reply.ok() || reply->status != 202) {
    Die("delivery refused: " + (reply.ok() ? reply->body : reply.status().ToString()));
  }
  sent.id = testutil::DeploymentIdIn(reply->body);
  if (branch == "main") head_ = after;
  return sent;
}

pb::Deployment Bench::Get(const std::string& id) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  pb::GetDeploymentRequest request;
  request.set_deployment_id(id);
  pb::Deployment d;
  grpc::Status status = stub_->GetDeployment(&context, request, &d);
  if (!status.ok()) d.set_error(status.error_message());
  return d;
}

pb::Deployment Bench::WaitEnded(const std::string& id) {
  pb::Deployment last;
  bool ended = testutil::WaitFor(
      [&] {
        last = Get(id);
        // Ended, and its workflow closed (housekeeping done): the next push does not queue.
        return (last.state() == pb::DEPLOYMENT_STATE_SUCCEEDED ||
                last.state() == pb::DEPLOYMENT_STATE_FAILED ||
                last.state() == pb::DEPLOYMENT_STATE_CANCELED) &&
               std::all_of(last.steps().begin(), last.steps().end(),
                           [](const pb::DeploymentStep& s) { return s.status() != "running"; });
      },
      kDeployTimeout);
  if (!ended) Die("deployment " + id + " did not end: " + last.DebugString());
  return last;
}

absl::Time Bench::WaitServed(int port, const std::string& body) {
  absl::Time seen;
  bool ok = testutil::WaitFor(
      [&] {
        auto got = testutil::HttpGet("127.0.0.1", port, "/");
        if (got.ok() && *got == body) {
          seen = absl::Now();
          return true;
        }
        absl::SleepFor(kPollEvery);
        return false;
      },
      kDeployTimeout);
  if (!ok) Die(absl::StrCat("port ", port, " never served ", body));
  return seen;
}

void Bench::WaitAsleep() {
  const std::string machines =
      dir_.path() + (microvm() ? "/worker/microvms/" : "/worker/machines/");
  const std::string log = machines + kProject + "/agent.log";
  bool asleep = testutil::WaitFor(
      [&] {
        std::string text(absl::StripTrailingAsciiWhitespace(testutil::ReadFile(log)));
        std::string last_line = text.substr(text.rfind('\n') + 1);
        if (!absl::StrContains(last_line, "exited with code")) {
          absl::SleepFor(absl::Milliseconds(20));
          return false;
        }
        return microvm() ? !AnyProcessWithArgvAndPrefix("qemu-system-x86_64", "file=" + machines)
                         : !AnyProcessWithArgvAndPrefix("kiln-builder-agent", machines);
      },
      kAsleepTimeout);
  if (!asleep) Die("the agent did not exit");
}

std::string Bench::Change(const std::string& note) {
  std::string content = absl::StrCat("v", ++serial_, " ", note, "\n");
  testutil::WriteFile(repo_ + "/www/index.html", content);
  Git(repo_, {"commit", "-q", "-am", note});
  return content;
}

void Bench::WriteContainerfile(const std::string& run_line) {
  testutil::WriteFile(repo_ + "/Containerfile",
                      absl::StrCat("FROM ", base_, "\n", run_line, run_line.empty() ? "" : "\n",
                                   "COPY www /www\n"
                                   "CMD [\"sh\", \"-c\", \"exec httpd -f -p ${PORT} -h /www\"]\n"));
}

// One one-file change to served, by phase.
void Bench::Warm(bool asleep, const std::string& label) {
  const std::string content = Change(label);
  const std::string before = head_;
  Sent sent = Push("main", before);
  absl::Time served = WaitServed(app_port_, content);
  pb::Deployment d = WaitEnded(sent.id);
  if (d.state() != pb::DEPLOYMENT_STATE_SUCCEEDED) Die("deployment: " + d.DebugString());
  RunTimes t = TimesOf(*client_, d.workflow_id(), sent.at);
  const auto& wake = t.activities[worker::kWakeMachineActivity];
  const auto& fetch = t.activities["kiln.builder.FetchSource"];
  const auto& build = t.activities["kiln.builder.BuildImage"];
  const auto& push = t.activities["kiln.builder.PushImage"];
  const auto& deploy = t.activities[worker::kDeployActivity];
  const std::string p = asleep ? "asleep: " : "warm: ";
  if (asleep) {
    table_.Add("asleep: webhook -> FetchSource started", Ms(fetch.started - sent.at), "< 300 ms");
    table_.Add("asleep: commit -> new content served", Ms(served - sent.at));
    asleep_deployment_ = sent.id;
    asleep_content_ = content;
    return;
  }
  table_.Add(p + "webhook -> deployment started", Ms(t.started - sent.at));
  table_.Add(p + "  -> machine awake (WakeMachine done)", Ms(wake.closed - t.started));
  table_.Add(p + "  -> fetch started (agent picked it up)", Ms(fetch.started - wake.closed));
  table_.Add(p + "  -> fetch done", Ms(fetch.closed - fetch.started));
  table_.Add(p + "  -> build done", Ms(build.closed - fetch.closed));
  table_.Add(p + "  -> push done", Ms(push.closed - build.closed));
  table_.Add(p + "  -> deploy started", Ms(deploy.started - push.closed));
  table_.Add(p + "  -> new content served (client)", Ms(served - deploy.started));
  table_.Add(p + "commit -> new content served", Ms(served - sent.at), "p50 < 1.5 s, p99 < 3 s");
  table_.Add(p + "(webhook -> the Deployment's healthy_time)",
             Ms(FromProto(d.healthy_time()) - sent.at));
  table_.Add(p + "(build activity itself)", Ms(build.closed - build.started));
  table_.Add(p + "(deploy activity, incl. stopping the old container)",
             Ms(deploy.closed - deploy.started));
}

// The same change by hand, warm: git fetch + checkout, podman build, push, pull by digest,
// run, health until the content answers.
void Bench::ByHand() {
  const std::string content = testutil::ReadFile(repo_ + "/www/index.html");
  absl::Duration fetch =
      Timed(kGit, {"--git-dir", hand_mirror_, "fetch", "-q", repo_, "+refs/heads/*:refs/heads/*"});
  fetch += Timed(
      kGit, {"--git-dir", hand_mirror_, "--work-tree", hand_tree_, "checkout", "-q", "-f", "main"});
  std::string sha;
  Timed(kGit, {"--git-dir", hand_mirror_, "rev-parse", "main"}, &sha);
  std::vector<std::string> build = hand_build_args_;
  build.insert(build.end(), {"build", "--layers", "--tls-verify=false"});
  build.insert(build.end(), hand_ulimits_.begin(), hand_ulimits_.end());
  build.insert(build.end(), {"-t", "hand/app:" + sha, hand_tree_});
  absl::Duration built = Timed(kPodman, build);
  const std::string dest = absl::StrCat(registry_->address(), "/hand/app:", sha);
  const std::string digest_file = dir_.path() + "/hand/digest";
  std::vector<std::string> push = hand_build_args_;
  push.insert(push.end(), {"push", "--quiet", "--tls-verify=false", "--digestfile", digest_file,
                           "hand/app:" + sha, dest});
  absl::Duration pushed = Timed(kPodman, push);
  const std::string image =
      absl::StrCat(registry_->address(), "/hand/app@",
                   absl::StripTrailingAsciiWhitespace(testutil::ReadFile(digest_file)));
  std::vector<std::string> pull = hand_deploy_args_;
  pull.insert(pull.end(), {"pull", "--quiet", "--tls-verify=false", image});
  absl::Duration ran = Timed(kPodman, pull);
  const int port = testutil::FreePort();
  const std::string name = absl::StrCat("kiln-bench-hand-", serial_);
  std::vector<std::string> run = hand_deploy_args_;
  run.insert(run.end(), {"run", "-d", "--network=host", "--pull=never", "--name", name, "--env",
                         absl::StrCat("PORT=", port)});
  run.insert(run.end(), hand_run_ulimits_.begin(), hand_run_ulimits_.end());
  run.push_back(image);
  ran += Timed(kPodman, run);
  absl::Time health_began = absl::Now();
  WaitServed(port, content);
  absl::Duration health = absl::Now() - health_began;
  if (!hand_container_.empty()) {
    std::vector<std::string> rm = hand_deploy_args_;
    rm.insert(rm.end(), {"rm", "--force", "--time", "0", hand_container_});
    Timed(kPodman, rm);
  }
  hand_container_ = name;
  table_.Add("by hand: fetch+checkout", Ms(fetch));
  table_.Add("by hand: build", Ms(built));
  table_.Add("by hand: push", Ms(pushed));
  table_.Add("by hand: pull+run", Ms(ran));
  table_.Add("by hand: health", Ms(health));
  table_.Add("by hand: total", Ms(fetch + built + pushed + ran + health));
}

// The same tree on another branch: fetch, the build skipped, a preview deployed.
void Bench::Skip() {
  Git(repo_, {"checkout", "-q", "-B", "feature"});
  Git(repo_, {"commit", "-q", "--allow-empty", "-m", "same tree"});
  Sent sent = Push("feature", std::string(40, '0'));
  absl::Time healthy;
  pb::Deployment d;
  bool ok = testutil::WaitFor(
      [&] {
        d = Get(sent.id);
        if (d.has_healthy_time() || d.state() == pb::DEPLOYMENT_STATE_FAILED) {
          healthy = absl::Now();
          return true;
        }
        absl::SleepFor(kStatePollEvery);
        return false;
      },
      kDeployTimeout);
  if (!ok || !d.build_skipped()) Die("same-tree deployment: " + d.DebugString());
  table_.Add("skip: same tree, other branch -> healthy (GetDeployment)", Ms(healthy - sent.at),
             "< 1 s");
  WaitEnded(sent.id);
  Git(repo_, {"checkout", "-q", "main"});
}

void Bench::Rollback() {
  grpc::ClientContext context;
  pb::RollbackRpcRequest request;
  request.set_project_id(kProject);
  request.set_target_deployment_id(asleep_deployment_);
  pb::RollbackResponse response;
  absl::Time began = absl::Now();
  grpc::Status status = stub_->Rollback(&context, request, &response);
  if (!status.ok()) Die("Rollback: " + status.error_message());
  absl::Time served = WaitServed(app_port_, asleep_content_);
  table_.Add("rollback: Rollback call -> old content served", Ms(served - began), "< 1 s");
  WaitEnded(response.deployment_id());
}

// A build whose RUN prints a clock mark and then sleeps; a follower times the mark; a newer
// push cancels the build; /proc times the sleep's end.
void Bench::LogAndCancel(int round) {
  // The mark: spin until /proc/uptime (CLOCK_BOOTTIME, 10 ms steps) ticks, then print it: the
  // line is written within a shell loop's turn of that edge.
  WriteContainerfile(absl::StrCat(
      "RUN read a _ </proc/uptime; while read b _ </proc/uptime; [ \"$b\" = \"$a\" ]; do :; "
      "done; echo \"kiln-bench-mark $b ",
      round, "\"; exec sleep ", kSleepSeconds));
  Change("slow");
  Sent slow = Push("main", head_);

  absl::Mutex mu;
  std::optional<absl::Duration> mark_seen_after;
  grpc::ClientContext follow_context;
  std::thread follower([&] {
    pb::FollowLogRequest request;
    request.set_deployment_id(slow.id);
    request.set_follow(true);
    auto reader = stub_->FollowLog(&follow_context, request);
    pb::LogChunk chunk;
    std::string text;
    bool found = false;
    while (!found && reader->Read(&chunk)) {
      absl::Duration now = Boottime();
      text += chunk.data();
      // Whole lines only; buildah's "STEP n/m: RUN ..." line holds the mark's text unexpanded.
      size_t end;
      while (!found && (end = text.find('\n')) != std::string::npos) {
        std::string line = text.substr(0, end);
        text.erase(0, end + 1);
        std::vector<std::string> words = absl::StrSplit(line, ' ');
        double printed_s = 0;
        if (words.size() == 3 && words[0] == "kiln-bench-mark" && words[2] == absl::StrCat(round) &&
            absl::SimpleAtod(words[1], &printed_s)) {
          absl::MutexLock lock(&mu);
          mark_seen_after = now - absl::Seconds(printed_s);
          found = true;
        }
      }
    }
    (void)reader->Finish();  // Canceled by the bench, or the run ended.
  });
  const std::vector<std::string> sleep_argv = {"sleep", kSleepSeconds};
  bool sleeping = testutil::WaitFor(
      [&] {
        absl::SleepFor(kPollEvery);
        return !ProcessesWithArgv(sleep_argv).empty();
      },
      kDeployTimeout);
  if (!sleeping) Die("the slow build's sleep never started: " + Get(slow.id).DebugString());
  bool marked = testutil::WaitFor(
      [&] {
        absl::MutexLock lock(&mu);
        return mark_seen_after.has_value();
      },
      absl::Seconds(30));
  follow_context.TryCancel();
  follower.join();
  if (marked) {
    table_.Add("log: line printed by RUN -> seen by FollowLog", Ms(*mark_seen_after), "< 100 ms");
  } else {
    std::fprintf(stderr, "kiln-platform-bench: the mark never reached the follower\n");
  }

  WriteContainerfile("");
  const std::string content = Change("after cancel");
  Sent newer = Push("main", head_);
  bool gone = testutil::WaitFor(
      [&] {
        if (ProcessesWithArgv(sleep_argv).empty()) return true;
        absl::SleepFor(absl::Milliseconds(1));
        return false;
      },
      absl::Seconds(60));
  absl::Time stopped = absl::Now();
  if (!gone) Die("the superseded build's sleep still runs after 60 s");
  table_.Add("cancel: newer push -> old build's process gone", Ms(stopped - newer.at), "< 500 ms");
  pb::Deployment old = WaitEnded(slow.id);
  if (old.state() != pb::DEPLOYMENT_STATE_CANCELED) Die("not canceled: " + old.DebugString());
  table_.Add("cancel: newer push -> old deployment CANCELED (GetDeployment)",
             Ms(FromProto(old.finished_time()) - newer.at));
  WaitServed(app_port_, content);
  WaitEnded(newer.id);
}

void Bench::Round(int round, int warm_per_run) {
  WaitAsleep();
  Warm(/*asleep=*/true, absl::StrCat("asleep ", round));
  for (int i = 0; i < warm_per_run; ++i) {
    Warm(/*asleep=*/false, absl::StrCat("warm ", round, ".", i));
    if (!microvm()) ByHand();
  }
  if (microvm()) return;  // Under TCG the rest adds minutes and nothing microVM-specific.
  Skip();
  Rollback();
  LogAndCancel(round);
}

}  // namespace
}  // namespace kiln::bench

int main(int argc, char** argv) {
  kiln::testutil::CleanUpOnInterrupt();  // Ctrl-C leaves no data or process behind
  using kiln::bench::Bench;
  CLI::App app{"kiln-platform-bench: commit to healthy through the whole platform, by phase"};
  int runs = 12, warm_per_run = 3, idle_grace_s = 3;
  app.add_option("--runs", runs, "Rounds (each: asleep, warm x N, skip, rollback, log, cancel)")
      ->check(CLI::Range(1, 500));
  app.add_option("--warm-per-run", warm_per_run, "Warm commit-to-healthy samples per round")
      ->check(CLI::Range(1, 20));
  app.add_option("--idle-grace", idle_grace_s, "The worker's --agent-idle-grace (seconds)")
      ->check(CLI::Range(1, 60));
  app.add_flag("--verbose", kiln::bench::verbose, "Print each measured run's history");
  std::string microvm_image;
  app.add_option("--microvm-image", microvm_image,
                 "Run the project on the microvm machine provider with this builder image "
                 "(make builder-image); rounds are then asleep + warm only");
  CLI11_PARSE(app, argc, argv);
  kiln::ConfigureDefaultLogger(kiln::LogFormat::kText, kiln::LogLevel::kWarn);

  absl::Time began = absl::Now();
  Bench bench(idle_grace_s, microvm_image);
  bench.Setup();
  for (int round = 1; round <= runs; ++round) {
    bench.Round(round, warm_per_run);
    std::fprintf(stderr, "round %d of %d done (%.0f s)\n", round, runs,
                 absl::ToDoubleSeconds(absl::Now() - began));
  }
  bench.Stop();
  bench.table().Print();
  {
    kiln::bench::Table& t = bench.table();
    double platform = kiln::bench::Percentile(t["warm: commit -> new content served"].ms, 0.5);
    double hand = kiln::bench::Percentile(t["by hand: total"].ms, 0.5);
    if (hand > 0)
      std::printf(
          "\nplatform overhead, warm: commit -> served p50 %.0f ms - by hand p50 %.0f ms = %+.0f "
          "ms "
          "(%+.0f %%)\n",
          platform, hand, platform - hand, 100.0 * (platform - hand) / hand);
  }
  std::printf(
      "\nMachines: %s.\n"
      "\nMethod: kiln-orchestrator, kiln-worker (the machine provider above, podman deploy "
      "target,\n--agent-idle-grace %d), docker-registry on 127.0.0.1 and a git repository with "
      "the e2e test's app\n(busybox httpd serving www/, base image pushed to the registry). "
      "Deliveries are signed GitHub\npush events to the worker's HTTP port; 'served' is when "
      "this process, polling GET / on the\nproject's port every 2 ms, first reads the new "
      "content. Phases come from the deployment run's\nhistory (WorkflowExecutionStarted, each "
      "activity's ActivityTaskStarted and Completed event times)\nand this process's clock. "
      "%d rounds, each: wait until the agent has exited (asleep), one-file\nchange; %d one-file "
      "changes back to back (warm), each followed by the same change by hand (git\nfetch + "
      "checkout -f, podman build --layers and push with the agent's storage flags, podman "
      "pull\nby digest + run -d --network=host with the deploy target's, GET until the content "
      "answers);\nthe same tree on another branch (build skipped; to healthy_time seen by "
      "polling GetDeployment\nevery 10 ms); a rollback to the asleep deployment; a RUN that "
      "prints a CLOCK_BOOTTIME mark (taken\nat a /proc/uptime 10 ms edge) and sleeps %s s, "
      "followed through BuildService.FollowLog, then\ncanceled by a newer push (until no "
      "'sleep %s' is left in /proc, polled every 1 ms).\nPercentiles are nearest-rank over "
      "the samples (n); with n <= 100 the p99 is the largest sample. Total %.0f s.\n",
      microvm_image.empty()
          ? "process provider"
          : "microvm provider (QEMU; the repository on a git server on 127.0.0.1 forwarded into "
            "the machine; rounds are asleep + warm only, no by-hand path)",
      idle_grace_s, runs, warm_per_run, kiln::bench::kSleepSeconds, kiln::bench::kSleepSeconds,
      absl::ToDoubleSeconds(absl::Now() - began));
  return 0;
}
