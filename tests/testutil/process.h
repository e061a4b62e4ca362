// Child processes for integration tests: start a Kiln binary, wait on conditions with a
// deadline (never a bare sleep), and end exactly the processes the test started, by PID.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kiln::testutil {

// Benchmarks are run by hand and interrupted (Ctrl-C, kill). Once this is called (early in
// main), SIGINT or SIGTERM kills (SIGKILL) and reaps the children started through Process or
// named to TrackChild, removes every TempDir still in place (unless KILN_TEST_KEEP_DIRS=1), says
// so on stderr and exits with 128 + the signal, instead of leaving the data behind. A second
// signal exits at once.
void CleanUpOnInterrupt();
// A child started otherwise than through Process, for CleanUpOnInterrupt; untracked once reaped.
void TrackChild(pid_t pid);
void UntrackChild(pid_t pid);

// The directory holding the built binaries: $KILN_BINARY_DIR if set, else build/bin.
std::string BinaryDir();
std::string BinaryPath(const std::string& name);

// A fresh directory under $TMPDIR, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A child process whose stdout and stderr go to one log file. The destructor kills it
// (SIGKILL) if it still runs and reaps it.
class Process {
 public:
  static absl::StatusOr<std::unique_ptr<Process>> Start(const std::string& binary,
                                                        const std::vector<std::string>& args,
                                                        const std::string& log_path,
                                                        const std::vector<std::string>& env = {});
  ~Process();

  pid_t pid() const { return pid_; }
  // Sends a signal to this process only.
  void Signal(int signo);
  // Waits for exit; returns the exit code (128+signal when killed), or DeadlineExceeded.
  absl::StatusOr<int> Wait(absl::Duration timeout);
  bool Running();
  std::string Output() const;

 private:
  Process(pid_t pid, std::string log_path) : pid_(pid), log_path_(std::move(log_path)) {}
  pid_t pid_;
  std::string log_path_;
  bool reaped_ = false;
  int exit_code_ = -1;
};

// Runs a command to completion, capturing its output. Returns the exit code.
absl::StatusOr<int> RunCommand(const std::string& binary, const std::vector<std::string>& args,
                               std::string* output, absl::Duration timeout = absl::Seconds(60));

// Polls `condition` every few milliseconds until it holds or `timeout` passes.
bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout);

// A TCP port on 127.0.0.1 that was free a moment ago.
int FreePort();

std::string ReadFile(const std::string& path);
// Processes other than this one whose command line (its arguments joined by spaces) contains
// `text`, with that command line.
std::vector<std::pair<pid_t, std::string>> ProcessesNaming(const std::string& text);
// Writes `content` to `path` (replacing it), creating its parent directories.
void WriteFile(const std::string& path, const std::string& content);

// Runs the git CLI (/usr/bin/git) as a fixed test author, commit and tag signing off, in
// `repo` when given. Returns the output, trimmed; a failed run's error carries its output.
absl::StatusOr<std::string> Git(const std::vector<std::string>& args, const std::string& repo = "");

}  // namespace kiln::testutil
