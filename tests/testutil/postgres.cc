#include "tests/testutil/postgres.h"

#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace kiln::testutil {
namespace {

// Debian's postgresql-15 puts the server tools here (only a few wrappers go on PATH).
constexpr const char* kPostgresBinDir = "/usr/lib/postgresql/15/bin";
constexpr const char* kRunUser = "/usr/sbin/runuser";
constexpr const char* kSuperuser = "kiln";

std::string Tool(const std::string& name) { return absl::StrCat(kPostgresBinDir, "/", name); }

}  // namespace

absl::StatusOr<std::unique_ptr<PostgresCluster>> PostgresCluster::Start(bool durable) {
  if (::access(Tool("initdb").c_str(), X_OK) != 0 || ::access(Tool("pg_ctl").c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "PostgreSQL 15 is not installed (no ", kPostgresBinDir, "/initdb): make deps installs it"));
  }
  std::unique_ptr<PostgresCluster> cluster(new PostgresCluster());
  cluster->durable_ = durable;
  cluster->dir_ = std::make_unique<TempDir>();
  if (::geteuid() == 0) {
    // initdb and postgres refuse root; the directory goes to an ordinary user instead.
    struct passwd* user = ::getpwnam("postgres");
    if (user == nullptr) {
      return absl::FailedPreconditionError(
          "running as root and there is no `postgres` system user to run PostgreSQL as");
    }
    if (::access(kRunUser, X_OK) != 0) {
      return absl::FailedPreconditionError(absl::StrCat("running as root and no ", kRunUser));
    }
    if (::chown(cluster->dir_->path().c_str(), user->pw_uid, user->pw_gid) != 0) {
      return absl::InternalError(absl::StrCat("chown ", cluster->dir_->path(), " failed"));
    }
    cluster->run_as_ = "postgres";
  }
  absl::Status init =
      cluster->RunTool("initdb", {"-D", cluster->dir_->path() + "/data", "-U", kSuperuser,
                                  "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync"});
  if (!init.ok()) return init;
  cluster->port_ = FreePort();
  if (absl::Status started = cluster->StartServer(); !started.ok()) return started;
  return cluster;
}

PostgresCluster::~PostgresCluster() {
  if (kept_) {
    (void)dir_.release();  // Its destructor would remove the cluster's directory.
    return;
  }
  if (running_ && !Kill().ok()) {
    // pg_ctl could not stop it: end the postmaster (ours: its PID file is in our directory).
    std::string pid_file = ReadFile(dir_->path() + "/data/postmaster.pid");
    int pid = 0;
    if (absl::SimpleAtoi(pid_file.substr(0, pid_file.find('\n')), &pid) && pid > 0) {
      ::kill(pid, SIGKILL);
    }
  }
}

std::string PostgresCluster::ConnInfo(const std::string& database) const {
  return absl::StrCat("host=127.0.0.1 port=", port_, " user=", kSuperuser, " dbname=", database,
                      " connect_timeout=5");
}

absl::StatusOr<std::string> PostgresCluster::CreateDatabase(const std::string& name) {
  absl::Status created =
      RunTool("createdb", {"-h", "127.0.0.1", "-p", absl::StrCat(port_), "-U", kSuperuser, name});
  if (!created.ok()) return created;
  return ConnInfo(name);
}

absl::Status PostgresCluster::Kill() {
  absl::Status stopped = RunTool(
      "pg_ctl", {"stop", "-D", dir_->path() + "/data", "-m", "immediate", "-w", "-t", "60"});
  if (stopped.ok()) running_ = false;
  return stopped;
}

absl::Status PostgresCluster::Stop() {
  absl::Status stopped =
      RunTool("pg_ctl", {"stop", "-D", dir_->path() + "/data", "-m", "fast", "-w", "-t", "60"});
  if (stopped.ok()) running_ = false;
  return stopped;
}

absl::Status PostgresCluster::Restart() { return StartServer(); }

pid_t PostgresCluster::postmaster_pid() const {
  if (!running_) return 0;
  std::string pid_file = ReadFile(dir_->path() + "/data/postmaster.pid");
  int pid = 0;
  if (!absl::SimpleAtoi(pid_file.substr(0, pid_file.find('\n')), &pid)) return 0;
  return pid;
}

std::string PostgresCluster::Keep() {
  kept_ = true;
  return dir_->path();
}

std::string PostgresCluster::Log() const { return ReadFile(dir_->path() + "/server.log"); }

absl::Status PostgresCluster::StartServer() {
  // -w: pg_ctl itself polls until the server accepts connections, up to -t seconds.
  absl::Status started =
      RunTool("pg_ctl", {"start", "-D", dir_->path() + "/data", "-l", dir_->path() + "/server.log",
                         "-w", "-t", "60", "-o",
                         absl::StrCat("-p ", port_, " -k ", dir_->path(),
                                      " -c listen_addresses=127.0.0.1 -c max_connections=200",
                                      durable_ ? "" : " -c fsync=off -c full_page_writes=off")});
  if (!started.ok()) return absl::InternalError(absl::StrCat(started.message(), "\n", Log()));
  running_ = true;
  return absl::OkStatus();
}

absl::Status PostgresCluster::RunTool(const std::string& tool, const std::vector<std::string>& args,
                                      absl::Duration timeout) const {
  std::string binary = Tool(tool);
  std::vector<std::string> argv = args;
  if (!run_as_.empty()) {
    argv = {"-u", run_as_, "--", binary};
    argv.insert(argv.end(), args.begin(), args.end());
    binary = kRunUser;
  }
  std::string output;
  absl::StatusOr<int> code = RunCommand(binary, argv, &output, timeout);
  if (!code.ok()) return code.status();
  if (*code != 0) {
    return absl::InternalError(
        absl::StrCat(tool, " ", absl::StrJoin(args, " "), " exited ", *code, ": ", output));
  }
  return absl::OkStatus();
}

namespace {

const char* TestStore() {
  const char* store = std::getenv("KILN_TEST_STORE");
  return store == nullptr ? "" : store;
}

bool SharedClusterWanted() { return std::string(TestStore()) == "postgres-shared"; }

// The state file's lines: `port=N`, `dir=PATH`, `run_as=USER` of a running cluster, or
// `skip=REASON` where PostgreSQL cannot run here.
absl::flat_hash_map<std::string, std::string> ReadState(const std::string& state_file) {
  absl::flat_hash_map<std::string, std::string> state;
  for (absl::string_view line : absl::StrSplit(ReadFile(state_file), '\n')) {
    size_t eq = line.find('=');
    if (eq != absl::string_view::npos) {
      state[std::string(line.substr(0, eq))] = std::string(line.substr(eq + 1));
    }
  }
  return state;
}

absl::Status WriteState(const std::string& state_file, const std::string& content) {
  const std::string temporary = state_file + ".tmp";
  {
    std::ofstream out(temporary, std::ios::trunc);
    out << content;
    if (!out.flush()) return absl::InternalError(absl::StrCat("cannot write ", temporary));
  }
  if (::rename(temporary.c_str(), state_file.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot rename ", temporary, " to ", state_file));
  }
  return absl::OkStatus();
}

}  // namespace

bool TestStoreIsPostgres() {
  return std::string(TestStore()) == "postgres" || SharedClusterWanted();
}

absl::Status StartSharedCluster(const std::string& state_file) {
  (void)StopSharedCluster(state_file);  // One a killed run left behind.
  absl::StatusOr<std::unique_ptr<PostgresCluster>> started =
      PostgresCluster::Start(/*durable=*/false);
  if (absl::IsFailedPrecondition(started.status())) {
    return WriteState(state_file, absl::StrCat("skip=", started.status().message(), "\n"));
  }
  if (!started.ok()) return started.status();
  PostgresCluster& cluster = **started;
  const std::string dir = cluster.Keep();
  return WriteState(state_file, absl::StrCat("port=", cluster.port(), "\ndir=", dir, "\n"));
}

absl::Status StopSharedCluster(const std::string& state_file) {
  auto state = ReadState(state_file);
  std::filesystem::remove(state_file);
  if (!state.contains("dir")) return absl::OkStatus();
  const std::string dir = state["dir"];
  std::vector<std::string> args = {"stop", "-D", dir + "/data", "-m", "immediate", "-w"};
  std::string binary = Tool("pg_ctl");
  if (::geteuid() == 0) {
    args.insert(args.begin(), {"-u", "postgres", "--", binary});
    binary = kRunUser;
  }
  std::string output;
  absl::StatusOr<int> code = RunCommand(binary, args, &output, absl::Seconds(60));
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
  if (!code.ok()) return code.status();
  if (*code != 0) return absl::InternalError(absl::StrCat("pg_ctl stop: ", output));
  return absl::OkStatus();
}

namespace {
std::unique_ptr<PostgresCluster>& TestCluster() {
  static std::unique_ptr<PostgresCluster> cluster;
  return cluster;
}
}  // namespace

pid_t TestClusterPostmaster() {
  return TestCluster() == nullptr ? 0 : TestCluster()->postmaster_pid();
}

bool PostgresRequired() {
  const char* require = std::getenv("KILN_REQUIRE_POSTGRES");
  return require != nullptr && std::string(require) == "1";
}

namespace {

[[noreturn]] void SkipOrAbort(absl::string_view reason) {
  if (PostgresRequired()) {
    std::cerr << "KILN_REQUIRE_POSTGRES=1 and " << reason << std::endl;
    std::abort();
  }
  std::cout << "SKIPPED: PostgreSQL cannot run here: " << reason << std::endl;
  std::exit(kSkipExitCode);
}

// A database of this process's own on the run's shared cluster.
std::string SharedClusterDatabase() {
  auto state = ReadState(KILN_SHARED_POSTGRES_STATE);
  if (state.contains("skip")) SkipOrAbort(state["skip"]);
  if (!state.contains("port")) {
    std::cerr << "KILN_TEST_STORE=postgres-shared and no cluster is described in "
              << KILN_SHARED_POSTGRES_STATE << " (ctest's fixture `postgres_cluster_start` "
              << "starts it; run the binary with KILN_TEST_STORE=postgres instead)" << std::endl;
    std::abort();
  }
  static int databases = 0;
  const std::string name = absl::StrCat("kiln_test_", ::getpid(), "_", ++databases);
  std::string output;
  absl::StatusOr<int> code =
      RunCommand(Tool("createdb"), {"-h", "127.0.0.1", "-p", state["port"], "-U", kSuperuser, name},
                 &output, absl::Seconds(60));
  if (!code.ok() || *code != 0) {
    std::cerr << "cannot create a PostgreSQL database on the shared cluster: "
              << (code.ok() ? output : code.status().ToString()) << std::endl;
    std::abort();
  }
  return absl::StrCat("postgres://", kSuperuser, "@127.0.0.1:", state["port"], "/", name);
}

}  // namespace

std::string TestDatabaseOrSkip() {
  if (SharedClusterWanted()) return SharedClusterDatabase();
  std::unique_ptr<PostgresCluster>& cluster = TestCluster();
  static int databases = 0;
  if (cluster == nullptr) {
    absl::StatusOr<std::unique_ptr<PostgresCluster>> started = PostgresCluster::Start();
    if (absl::IsFailedPrecondition(started.status())) SkipOrAbort(started.status().message());
    if (!started.ok()) {
      std::cerr << "cannot start a PostgreSQL cluster: " << started.status() << std::endl;
      std::abort();
    }
    cluster = std::move(*started);
  }
  std::string name = absl::StrCat("kiln_test_", ++databases);
  if (absl::StatusOr<std::string> created = cluster->CreateDatabase(name); !created.ok()) {
    std::cerr << "cannot create a PostgreSQL database: " << created.status() << std::endl;
    std::abort();
  }
  return absl::StrCat("postgres://", kSuperuser, "@127.0.0.1:", cluster->port(), "/", name);
}

}  // namespace kiln::testutil
