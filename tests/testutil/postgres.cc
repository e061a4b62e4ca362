#include "tests/testutil/postgres.h"

#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kiln::testutil {
namespace {

// Debian's postgresql-15 puts the server tools here (only a few wrappers go on PATH).
constexpr const char* kPostgresBinDir = "/usr/lib/postgresql/15/bin";
constexpr const char* kRunUser = "/usr/sbin/runuser";
constexpr const char* kSuperuser = "kiln";

std::string Tool(const std::string& name) { return absl::StrCat(kPostgresBinDir, "/", name); }

}  // namespace

absl::StatusOr<std::unique_ptr<PostgresCluster>> PostgresCluster::Start() {
  if (::access(Tool("initdb").c_str(), X_OK) != 0 || ::access(Tool("pg_ctl").c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "PostgreSQL 15 is not installed (no ", kPostgresBinDir, "/initdb): make deps installs it"));
  }
  std::unique_ptr<PostgresCluster> cluster(new PostgresCluster());
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

std::string PostgresCluster::Log() const { return ReadFile(dir_->path() + "/server.log"); }

absl::Status PostgresCluster::StartServer() {
  // -w: pg_ctl itself polls until the server accepts connections, up to -t seconds.
  absl::Status started =
      RunTool("pg_ctl", {"start", "-D", dir_->path() + "/data", "-l", dir_->path() + "/server.log",
                         "-w", "-t", "60", "-o",
                         absl::StrCat("-p ", port_, " -k ", dir_->path(),
                                      " -c listen_addresses=127.0.0.1 -c max_connections=100")});
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

bool TestStoreIsPostgres() {
  const char* store = std::getenv("KILN_TEST_STORE");
  return store != nullptr && std::string(store) == "postgres";
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

std::string TestDatabaseOrSkip() {
  std::unique_ptr<PostgresCluster>& cluster = TestCluster();
  static int databases = 0;
  if (cluster == nullptr) {
    absl::StatusOr<std::unique_ptr<PostgresCluster>> started = PostgresCluster::Start();
    if (absl::IsFailedPrecondition(started.status())) {
      if (PostgresRequired()) {
        std::cerr << "KILN_REQUIRE_POSTGRES=1 and " << started.status().message() << std::endl;
        std::abort();
      }
      std::cout << "SKIPPED: PostgreSQL cannot run here: " << started.status().message()
                << std::endl;
      std::exit(kSkipExitCode);
    }
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
