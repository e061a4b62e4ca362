#include "worker/machines/microvm_provider.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/status.h"
#include "common/tls.h"
#include "worker/machines/agent_process.h"
#include "worker/machines/launcher.h"

namespace kiln::worker {
namespace {

namespace fs = std::filesystem;

constexpr char kVolumeImage[] = "volume.img";
constexpr char kConfigSocket[] = "config.sock";
constexpr char kSnapshotsDir[] = ".snapshots";
constexpr char kKernel[] = "vmlinuz";
constexpr char kInitrd[] = "initrd.cpio";
constexpr char kRootImage[] = "root.img";
// Where the guest's init writes the config's `file=` entries (tmpfs, mode 0600).
constexpr char kGuestFilesDir[] = "/run/kiln";
// The guest's address for forwarded ports (QEMU's guestfwd rules listen there).
constexpr char kForwardAddress[] = "10.0.2.100";
// The guest says this on its console when its agent exits (deploy/builder-image/init).
constexpr char kExitLine[] = "kiln-vm: agent exited with code ";
// The provider's own line at each wake (process_provider.cc): exit lines before it are older.
constexpr char kWakeLine[] = "kiln-worker: waking ";

// A restored snapshot answers its config at once; longer means it is not the machine it was.
constexpr absl::Duration kRestoreAnswerTimeout = absl::Seconds(20);
// The guest's answer to its config (it sets the clock, mounts the volume, starts forwards).
constexpr absl::Duration kConfigureTimeout = absl::Seconds(60);
constexpr absl::Duration kSocketPoll = absl::Milliseconds(5);
constexpr absl::Duration kMigrateTimeout = absl::Seconds(120);
constexpr absl::Duration kStopConnectTimeout = absl::Seconds(2);
constexpr size_t kMaxLineBytes = 64 * 1024;
constexpr size_t kExitScanBytes = 64 * 1024;
// A unix socket path must fit sockaddr_un.sun_path.
constexpr size_t kMaxSocketPath = sizeof(sockaddr_un::sun_path) - 1;

struct Size {
  int memory_mib;
  int cpus;
};
const std::map<std::string, Size>& Sizes() {
  static const auto* sizes = new std::map<std::string, Size>{
      {"small", {512, 1}}, {"medium", {1024, 2}}, {"large", {2048, 2}}};
  return *sizes;
}

std::string ErrnoText(int err) { return std::strerror(err); }

// Paths end up in QEMU's option strings (commas separate options there) and in a shell
// command (`exec:cat PATH`): only plain characters.
bool PlainPath(absl::string_view path) {
  if (path.empty() || path[0] != '/') return false;
  for (char c : path) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '/' && c != '.' && c != '_' &&
        c != '-' && c != '+') {
      return false;
    }
  }
  return true;
}

// Size, modification time and inode of a file: changes whenever the file is rebuilt.
std::string FileStamp(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return "missing";
  return absl::StrCat(st.st_size, ":", st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec, ":", st.st_ino);
}

std::string ReadSmallFile(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  std::string content(max_bytes, '\0');
  in.read(content.data(), static_cast<std::streamsize>(max_bytes));
  content.resize(static_cast<size_t>(in.gcount()));
  return content;
}

std::string ReadTail(const std::string& path, size_t bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  struct stat st;
  std::string tail;
  if (::fstat(fd, &st) == 0) {
    off_t from =
        st.st_size > static_cast<off_t>(bytes) ? st.st_size - static_cast<off_t>(bytes) : 0;
    tail.resize(static_cast<size_t>(st.st_size - from));
    ssize_t n = ::pread(fd, tail.data(), tail.size(), from);
    tail.resize(n > 0 ? static_cast<size_t>(n) : 0);
  }
  ::close(fd);
  return tail;
}

// The last lines of the machine's console, for an error message.
std::string LogTail(const std::string& log_path) {
  std::vector<std::string> lines =
      absl::StrSplit(ReadTail(log_path, 2048), '\n', absl::SkipEmpty());
  if (lines.size() > 5) lines.erase(lines.begin(), lines.end() - 5);
  return absl::StrJoin(lines, " | ");
}

bool Exited(int pidfd) {
  pollfd p{pidfd, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

absl::Status WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::UnavailableError(absl::StrCat("write: ", ErrnoText(errno)));
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

// A unix stream socket and the bytes read past the last line taken.
class LineSocket {
 public:
  LineSocket() = default;
  ~LineSocket() { Close(); }
  LineSocket(const LineSocket&) = delete;
  LineSocket& operator=(const LineSocket&) = delete;

  // Connects to `path` (QEMU creates it shortly after it starts), giving up at `deadline` or
  // when the process behind `pidfd` (-1: none) exits.
  absl::Status Connect(const std::string& path, absl::Time deadline, int pidfd) {
    Close();
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() > kMaxSocketPath) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": a socket path this long cannot be used"));
    }
    std::memcpy(addr.sun_path, path.data(), path.size());
    while (true) {
      fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd_ < 0) return absl::InternalError(absl::StrCat("socket: ", ErrnoText(errno)));
      if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
        return absl::OkStatus();
      }
      int err = errno;
      Close();
      if (err != ENOENT && err != ECONNREFUSED && err != EAGAIN) {
        return absl::UnavailableError(absl::StrCat("connect ", path, ": ", ErrnoText(err)));
      }
      if (pidfd >= 0 && Exited(pidfd)) return absl::UnavailableError("QEMU exited");
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError(absl::StrCat("no ", path, " in time"));
      }
      absl::SleepFor(kSocketPoll);
    }
  }

  // The next line (without its newline). kDeadlineExceeded at `deadline`, kUnavailable when the
  // peer closed or the process behind `pidfd` exited.
  absl::StatusOr<std::string> ReadLine(absl::Time deadline, int pidfd) {
    while (true) {
      size_t newline = buffer_.find('\n');
      if (newline != std::string::npos) {
        std::string line = buffer_.substr(0, newline);
        buffer_.erase(0, newline + 1);
        return line;
      }
      if (buffer_.size() > kMaxLineBytes) return absl::DataLossError("a line over 64 KiB");
      absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) return absl::DeadlineExceededError("no answer in time");
      pollfd fds[2] = {{fd_, POLLIN, 0}, {pidfd, POLLIN, 0}};
      int ms = static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 1000));
      int n = ::poll(fds, pidfd >= 0 ? 2 : 1, ms);
      if (n < 0 && errno != EINTR)
        return absl::InternalError(absl::StrCat("poll: ", ErrnoText(errno)));
      if (n <= 0) continue;
      if (fds[0].revents != 0) {
        char chunk[4096];
        ssize_t got = ::recv(fd_, chunk, sizeof chunk, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return absl::UnavailableError("the connection closed");
        buffer_.append(chunk, static_cast<size_t>(got));
        continue;
      }
      if (pidfd >= 0 && fds[1].revents != 0) return absl::UnavailableError("QEMU exited");
    }
  }

  absl::Status Write(absl::string_view data) { return WriteAll(fd_, data); }
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  std::string buffer_;
};

// Runs `argv` to completion (mkfs.ext4), its output appended to `log_path`.
absl::Status RunToCompletion(const std::vector<std::string>& argv, const std::string& log_path,
                             absl::Duration timeout) {
  int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (log_fd < 0)
    return absl::InternalError(absl::StrCat("open ", log_path, ": ", ErrnoText(errno)));
  internal::SpawnSpec spec;
  spec.binary = argv[0];
  spec.argv = argv;
  spec.env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
  spec.output_fd = log_fd;
  absl::StatusOr<internal::Spawned> spawned = internal::SpawnDetached(spec);
  ::close(log_fd);
  if (!spawned.ok()) return spawned.status();
  if (spawned->exec_errno != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot run ", argv[0], ": ", ErrnoText(spawned->exec_errno)));
  }
  pollfd p{spawned->pidfd, POLLIN, 0};
  int n;
  do {
    n = ::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
  } while (n < 0 && errno == EINTR);
  if (n == 0) (void)internal::SignalPidfd(spawned->pidfd, SIGKILL).IgnoreError();
  if (n == 0) ::poll(&p, 1, -1);
  absl::StatusOr<int> code = internal::ReapPidfd(spawned->pidfd);
  ::close(spawned->pidfd);
  if (n == 0) return absl::DeadlineExceededError(absl::StrCat(argv[0], " took too long"));
  if (!code.ok()) return code.status();
  if (*code != 0) {
    return absl::InternalError(
        absl::StrCat(argv[0], " failed with code ", *code, " (see ", log_path, ")"));
  }
  return absl::OkStatus();
}

// Host port of "127.0.0.1:PORT" / "localhost:PORT"; 0 for anything else.
int LoopbackPort(absl::string_view address) {
  std::pair<absl::string_view, absl::string_view> hp =
      absl::StrSplit(address, absl::MaxSplits(':', 1));
  int port = 0;
  if ((hp.first != "127.0.0.1" && hp.first != "localhost") || !absl::SimpleAtoi(hp.second, &port) ||
      port < 1 || port > 65535) {
    return 0;
  }
  return port;
}

// The host CPU's frequency in kHz for the guest kernel's tsc_early_khz: under TCG, without it
// most boots on a busy host hang calibrating the TSC (HOST-NOTES).
int64_t HostTscKhz() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (!absl::StartsWith(line, "cpu MHz")) continue;
    size_t colon = line.find(':');
    double mhz = 0;
    if (colon != std::string::npos &&
        absl::SimpleAtod(absl::StripAsciiWhitespace(line.substr(colon + 1)), &mhz) && mhz > 0) {
      return static_cast<int64_t>(std::llround(mhz * 1000));
    }
  }
  return 0;
}

std::string RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    (void)!::read(fd, raw.data(), raw.size());
    ::close(fd);
  }
  return absl::BytesToHexString(raw);
}

// One QMP command's answer: the line holding "return" or "error" (events are skipped).
absl::StatusOr<std::string> Qmp(LineSocket& qmp, const std::string& command, int pidfd,
                                absl::Time deadline) {
  RETURN_IF_ERROR(qmp.Write(command + "\n"));
  while (true) {
    ASSIGN_OR_RETURN(std::string line, qmp.ReadLine(deadline, pidfd));
    if (absl::StrContains(line, "\"error\"")) {
      return absl::InternalError(absl::StrCat("QMP ", command, ": ", line));
    }
    if (absl::StrContains(line, "\"return\"")) return line;
  }
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ReadAgentSecrets(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::FailedPreconditionError(absl::StrCat("cannot read ", path));
  std::string content(1 << 20, '\0');
  in.read(content.data(), static_cast<std::streamsize>(content.size()));
  content.resize(static_cast<size_t>(in.gcount()));
  std::vector<std::string> entries;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(content, '\n')) {
    ++number;
    line = absl::StripTrailingAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    size_t eq = line.find('=');
    absl::string_view name = eq == absl::string_view::npos ? line : line.substr(0, eq);
    bool valid = eq != absl::string_view::npos && !name.empty() && name.size() <= 64;
    for (char c : name)
      valid &= absl::ascii_isupper(static_cast<unsigned char>(c)) ||
               absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '_';
    // The line number, never its content: a bad line may hold a secret.
    if (!valid) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, " line ", number, ": not NAME=value with NAME of A-Z, 0-9, _"));
    }
    entries.push_back(absl::StrCat("KILN_SECRET_", line));
  }
  return entries;
}

std::string DetectAccelerator() {
  // /dev/kvm alone is not enough: a nested host may offer a paravirtual KVM (kvm_pvm) that
  // ordinary guest kernels cannot run under. Hardware virtualisation modules mean it works.
  int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) return "tcg";
  ::close(fd);
  std::error_code error;
  if (fs::exists("/sys/module/kvm_intel", error) || fs::exists("/sys/module/kvm_amd", error)) {
    return "kvm";
  }
  return "tcg";
}

class MicrovmLauncher : public internal::MachineLauncher {
 public:
  MicrovmLauncher(MicrovmOptions options, std::string accel)
      : options_(std::move(options)), accel_(std::move(accel)), tsc_khz_(HostTscKhz()) {
    forward_ports_ = options_.forward_ports;
    forward_ports_.insert(forward_ports_.begin(), LoopbackPort(options_.orchestrator));
    if (!options_.registry.empty()) forward_ports_.push_back(LoopbackPort(options_.registry));
    std::sort(forward_ports_.begin(), forward_ports_.end());
    forward_ports_.erase(std::unique(forward_ports_.begin(), forward_ports_.end()),
                         forward_ports_.end());
  }
  ~MicrovmLauncher() override { Shutdown(); }

  const std::string& accel() const { return accel_; }

  void Shutdown() {
    std::thread background;
    {
      absl::MutexLock lock(&mu_);
      shutting_down_ = true;
      background = std::move(background_);
      // A template still booting would hold the worker's shutdown for its boot timeout.
      if (template_pidfd_ >= 0) (void)internal::SignalPidfd(template_pidfd_, SIGKILL).IgnoreError();
    }
    if (background.joinable()) background.join();
    absl::MutexLock lock(&mu_);
    for (auto& [dir, fd] : config_fds_) ::close(fd);
    config_fds_.clear();
  }

  std::string noun() const override { return "microVM"; }
  std::string VolumePath(const std::string& dir) const override {
    return absl::StrCat(dir, "/", kVolumeImage);
  }

  absl::Status PrepareVolume(const std::string& dir) override {
    const std::string volume = VolumePath(dir);
    std::error_code error;
    if (fs::exists(volume, error)) return absl::OkStatus();
    // Made aside and renamed: a crash during mkfs leaves no half-made volume behind.
    const std::string tmp = volume + ".making";
    fs::remove(tmp, error);
    RETURN_IF_ERROR(RunToCompletion(
        {MkfsPath(), "-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1", tmp,
         absl::StrCat(options_.volume_bytes / 1024, "k")},
        absl::StrCat(dir, "/agent.log"), absl::Minutes(5)));
    if (::rename(tmp.c_str(), volume.c_str()) != 0) {
      return absl::InternalError(absl::StrCat("rename ", tmp, ": ", ErrnoText(errno)));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<internal::SpawnSpec> Command(const internal::LaunchContext& context) override {
    const std::string& size = context.request.size;
    const std::string socket = absl::StrCat(context.dir, "/", kConfigSocket);
    if (socket.size() > kMaxSocketPath) {
      return absl::FailedPreconditionError(absl::StrCat(
          socket, " is longer than a unix socket path may be: use a shorter --data-dir"));
    }
    ::unlink(socket.c_str());
    bool restore = options_.snapshots && SnapshotUsable(size) && VolumeFitsSnapshots(context.dir);
    internal::SpawnSpec spec;
    spec.binary = options_.qemu_binary;
    spec.argv = MachineArgs(size, absl::StrCat("kiln-", context.request.project),
                            VolumePath(context.dir), context.log_path, socket);
    if (restore) {
      spec.argv.insert(spec.argv.end(),
                       {"-incoming", absl::StrCat("exec:cat ", SnapshotPath(size))});
    }
    spec.env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
    absl::MutexLock lock(&mu_);
    restoring_[context.dir] = restore;
    return spec;
  }

  absl::Status Started(const internal::LaunchContext& context, int pidfd) override {
    bool restore;
    {
      absl::MutexLock lock(&mu_);
      restore = restoring_[context.dir];
      restoring_.erase(context.dir);
    }
    const std::string size = context.request.size;
    LineSocket config;
    absl::Time deadline = absl::Now() + (restore ? kRestoreAnswerTimeout : options_.boot_timeout);
    absl::Status connected =
        config.Connect(absl::StrCat(context.dir, "/", kConfigSocket), deadline, pidfd);
    if (connected.ok() && !restore) {
      // A cold boot: the guest's init says `ready` once it waits for its config.
      absl::StatusOr<std::string> line;
      do {
        line = config.ReadLine(deadline, pidfd);
      } while (line.ok() && *line != "ready");
      connected = line.status();
    }
    if (connected.ok()) {
      absl::StatusOr<std::string> text = ConfigText(context.request);
      connected = text.ok() ? config.Write(*text) : text.status();
    }
    if (connected.ok()) {
      absl::Time answer_deadline =
          absl::Now() + (restore ? kRestoreAnswerTimeout : kConfigureTimeout);
      absl::StatusOr<std::string> line;
      do {
        line = config.ReadLine(answer_deadline, pidfd);
      } while (line.ok() && *line != "configured");
      connected = line.status();
    }
    if (!connected.ok()) {
      std::string why = absl::StrCat(restore ? "the restored snapshot" : "the cold boot",
                                     " did not take its config: ", connected.message(),
                                     "; console: ", LogTail(context.log_path));
      if (restore) {
        // Not the machine it was saved as: never restore it again.
        std::error_code ignored;  // Gone either way is what matters.
        fs::remove(SnapshotPath(size), ignored);
        LogWarn("machines.microvm.snapshot_dropped", {{"size", size}, {"why", why}});
        return absl::AbortedError(why);
      }
      return absl::UnavailableError(why);
    }
    {
      // Kept open for `stop`: while the provider holds it, the guest reads from it.
      absl::MutexLock lock(&mu_);
      auto [it, inserted] = config_fds_.try_emplace(context.dir, -1);
      if (!inserted && it->second >= 0) ::close(it->second);
      it->second = config.Release();
    }
    if (!restore && options_.snapshots && !SnapshotUsable(size)) StartBackgroundSnapshot(size);
    return absl::OkStatus();
  }

  bool Matches(const std::vector<std::string>& argv, const std::string& project,
               const std::string& dir) const override {
    if (argv.empty() || fs::path(argv[0]).filename() != fs::path(options_.qemu_binary).filename()) {
      return false;
    }
    bool named = false, volume = false;
    for (size_t i = 0; i + 1 < argv.size(); ++i) {
      if (argv[i] == "-name" && argv[i + 1] == absl::StrCat("kiln-", project)) named = true;
      if (argv[i] == "-drive" &&
          absl::StrContains(argv[i + 1], absl::StrCat("file=", VolumePath(dir), ","))) {
        volume = true;
      }
    }
    return named && volume;
  }

  absl::Status RequestStop(const std::string& dir, int pidfd) override {
    int fd = -1;
    {
      absl::MutexLock lock(&mu_);
      auto it = config_fds_.find(dir);
      if (it != config_fds_.end()) fd = ::dup(it->second);
    }
    LineSocket fresh;
    if (fd < 0 && fresh
                      .Connect(absl::StrCat(dir, "/", kConfigSocket),
                               absl::Now() + kStopConnectTimeout, pidfd)
                      .ok()) {
      // A machine this worker adopted: the guest finds the new connection within a second.
      fd = fresh.Release();
    }
    if (fd >= 0) {
      absl::Status sent = WriteAll(fd, "stop\n");
      ::close(fd);
      if (sent.ok()) return absl::OkStatus();
    }
    // No way to the guest: QEMU's own SIGTERM ends the VM at once.
    return internal::SignalPidfd(pidfd, SIGTERM);
  }

  int AgentExitCode(const std::string& dir, int process_exit_code) override {
    {
      absl::MutexLock lock(&mu_);
      auto it = config_fds_.find(dir);
      if (it != config_fds_.end()) {
        ::close(it->second);
        config_fds_.erase(it);
      }
    }
    // The guest's own report, if this wake got that far (lines of earlier wakes do not count).
    std::string tail = ReadTail(absl::StrCat(dir, "/agent.log"), kExitScanBytes);
    size_t wake = tail.rfind(kWakeLine);
    size_t exit = tail.rfind(kExitLine);
    if (exit != std::string::npos && (wake == std::string::npos || exit > wake)) {
      int code = 0;
      std::string digits = tail.substr(exit + std::strlen(kExitLine), 4);
      digits = digits.substr(0, digits.find_first_not_of("0123456789"));
      if (absl::SimpleAtoi(digits, &code)) return code;
    }
    return process_exit_code == 0 ? -1 : process_exit_code;
  }

  bool SnapshotUsable(const std::string& size) {
    std::error_code error;
    if (!fs::exists(SnapshotPath(size), error)) return false;
    return ReadSmallFile(StampPath(size), 4096) == Stamp(size);
  }

  absl::Status PrepareSnapshot(const std::string& size) {
    if (Sizes().count(size) == 0)
      return absl::InvalidArgumentError("size must be small, medium or large");
    absl::MutexLock serial(&snapshot_mu_);
    const std::string dir = absl::StrCat(options_.machines_dir, "/", kSnapshotsDir);
    std::error_code error;
    fs::create_directories(dir, error);
    if (error) return absl::InternalError(absl::StrCat("create ", dir, ": ", error.message()));
    // A blank volume of the projects' size: the guest's virtio-blk device is saved with its
    // capacity, and no project's data may end up in a machine every project restores.
    const std::string blank = absl::StrCat(dir, "/blank.img");
    {
      int fd = ::open(blank.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
      if (fd < 0 || ::ftruncate(fd, options_.volume_bytes) != 0) {
        if (fd >= 0) ::close(fd);
        return absl::InternalError(absl::StrCat("create ", blank, ": ", ErrnoText(errno)));
      }
      ::close(fd);
    }
    const std::string socket = absl::StrCat(dir, "/", size, ".config.sock");
    const std::string qmp_socket = absl::StrCat(dir, "/", size, ".qmp.sock");
    const std::string log = absl::StrCat(dir, "/", size, ".log");
    const std::string tmp = absl::StrCat(SnapshotPath(size), ".saving");
    ::unlink(socket.c_str());
    ::unlink(qmp_socket.c_str());
    ::unlink(tmp.c_str());
    int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (log_fd < 0) return absl::InternalError(absl::StrCat("open ", log, ": ", ErrnoText(errno)));
    internal::SpawnSpec spec;
    spec.binary = options_.qemu_binary;
    spec.argv = MachineArgs(size, absl::StrCat("kiln-snapshot-", size), blank, log, socket);
    spec.argv.insert(spec.argv.end(),
                     {"-qmp", absl::StrCat("unix:", qmp_socket, ",server=on,wait=off")});
    spec.env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
    spec.output_fd = log_fd;
    const std::string stamp = Stamp(size);
    absl::Time began = absl::Now();
    absl::StatusOr<internal::Spawned> spawned = internal::SpawnDetached(spec);
    ::close(log_fd);
    if (!spawned.ok()) return spawned.status();
    if (spawned->exec_errno != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot run ", spec.binary, ": ", ErrnoText(spawned->exec_errno)));
    }
    const int pidfd = spawned->pidfd;
    {
      absl::MutexLock lock(&mu_);
      template_pidfd_ = pidfd;
      if (shutting_down_) (void)internal::SignalPidfd(pidfd, SIGKILL).IgnoreError();
    }
    absl::Status saved = [&]() -> absl::Status {
      absl::Time deadline = absl::Now() + options_.boot_timeout;
      LineSocket config;
      RETURN_IF_ERROR(config.Connect(socket, deadline, pidfd));
      absl::StatusOr<std::string> line;
      do {
        line = config.ReadLine(deadline, pidfd);
      } while (line.ok() && *line != "ready");
      RETURN_IF_ERROR(line.status());
      LineSocket qmp;
      deadline = absl::Now() + kMigrateTimeout;
      RETURN_IF_ERROR(qmp.Connect(qmp_socket, deadline, pidfd));
      RETURN_IF_ERROR(qmp.ReadLine(deadline, pidfd).status());  // The greeting.
      RETURN_IF_ERROR(Qmp(qmp, R"({"execute":"qmp_capabilities"})", pidfd, deadline).status());
      RETURN_IF_ERROR(Qmp(qmp,
                          absl::StrCat(R"({"execute":"migrate","arguments":{"uri":"exec:cat > )",
                                       tmp, R"("}})"),
                          pidfd, deadline)
                          .status());
      while (true) {
        ASSIGN_OR_RETURN(std::string status,
                         Qmp(qmp, R"({"execute":"query-migrate"})", pidfd, deadline));
        if (absl::StrContains(status, "\"completed\"")) break;
        if (absl::StrContains(status, "\"failed\"") || absl::StrContains(status, "\"cancelled\"")) {
          return absl::InternalError(absl::StrCat("migration: ", status));
        }
        if (absl::Now() > deadline) return absl::DeadlineExceededError("migration took too long");
        absl::SleepFor(absl::Milliseconds(10));
      }
      (void)Qmp(qmp, R"({"execute":"quit"})", pidfd, deadline).status().IgnoreError();
      return absl::OkStatus();
    }();
    // The template is done with (or failed): it must not outlive this call.
    (void)internal::SignalPidfd(pidfd, SIGKILL).IgnoreError();  // Gone already, or now.
    pollfd p{pidfd, POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(absl::Seconds(10))));
    (void)internal::ReapPidfd(pidfd).status().IgnoreError();  // The code says nothing here.
    {
      absl::MutexLock lock(&mu_);
      template_pidfd_ = -1;
    }
    ::close(pidfd);
    ::unlink(socket.c_str());
    ::unlink(qmp_socket.c_str());
    if (saved.ok()) {
      std::error_code ignored;
      fs::remove(StampPath(size), ignored);
      std::ofstream(StampPath(size) + ".tmp", std::ios::trunc) << stamp;
      if (::rename(tmp.c_str(), SnapshotPath(size).c_str()) != 0 ||
          ::rename((StampPath(size) + ".tmp").c_str(), StampPath(size).c_str()) != 0) {
        saved =
            absl::InternalError(absl::StrCat("save ", SnapshotPath(size), ": ", ErrnoText(errno)));
      }
    }
    ::unlink(tmp.c_str());
    if (!saved.ok()) {
      saved = Annotate(saved, absl::StrCat("saving the ", size, " snapshot (", LogTail(log), ")"));
      bool abandoned;
      {
        absl::MutexLock lock(&mu_);
        abandoned = shutting_down_;
      }
      if (abandoned) {
        LogInfo("machines.microvm.snapshot_abandoned", {{"size", size}});
      } else {
        LogWarn("machines.microvm.snapshot_failed", {{"size", size}, {"status", saved}});
      }
      return saved;
    }
    LogInfo("machines.microvm.snapshot_saved",
            {{"size", size},
             {"bytes", static_cast<int64_t>(fs::file_size(SnapshotPath(size), error))},
             {"took", absl::Now() - began}});
    return absl::OkStatus();
  }

 private:
  static std::string MkfsPath() {
    std::error_code error;
    for (const char* path : {"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"}) {
      if (fs::exists(path, error)) return path;
    }
    return "/usr/sbin/mkfs.ext4";
  }

  std::string SnapshotPath(const std::string& size) const {
    return absl::StrCat(options_.machines_dir, "/", kSnapshotsDir, "/", size, ".vmstate");
  }
  std::string StampPath(const std::string& size) const {
    return absl::StrCat(options_.machines_dir, "/", kSnapshotsDir, "/", size, ".stamp");
  }

  // Everything a saved machine depends on: when any of it changes, the snapshot is stale.
  std::string Stamp(const std::string& size) const {
    const Size& s = Sizes().at(size);
    return absl::StrCat("format=1\nqemu=", FileStamp(options_.qemu_binary),
                        "\nkernel=", FileStamp(absl::StrCat(options_.image_dir, "/", kKernel)),
                        "\ninitrd=", FileStamp(absl::StrCat(options_.image_dir, "/", kInitrd)),
                        "\nroot=", FileStamp(absl::StrCat(options_.image_dir, "/", kRootImage)),
                        "\nmemory_mib=", s.memory_mib, "\ncpus=", s.cpus,
                        "\nvolume_bytes=", options_.volume_bytes, "\naccel=", accel_,
                        "\nforwards=", absl::StrJoin(forward_ports_, ","), "\n");
  }

  bool VolumeFitsSnapshots(const std::string& dir) const {
    std::error_code error;
    return static_cast<int64_t>(fs::file_size(VolumePath(dir), error)) == options_.volume_bytes &&
           !error;
  }

  void StartBackgroundSnapshot(const std::string& size) {
    absl::MutexLock lock(&mu_);
    if (shutting_down_ || snapshot_running_) return;
    if (background_.joinable()) background_.join();  // The previous one has finished.
    snapshot_running_ = true;
    background_ = std::thread([this, size] {
      (void)PrepareSnapshot(size).IgnoreError();  // Logged; the next cold wake tries again.
      absl::MutexLock done(&mu_);
      snapshot_running_ = false;
    });
  }

  // The VM's command line; identical devices for a project's machine and the snapshot
  // template, so one restores into the other.
  std::vector<std::string> MachineArgs(const std::string& size, const std::string& name,
                                       const std::string& volume, const std::string& log_path,
                                       const std::string& config_socket) const {
    const Size& s = Sizes().at(size);
    std::string append = "console=ttyS0 quiet loglevel=3 panic=-1 pci=off init_on_free=1";
    if (accel_ == "tcg" && tsc_khz_ > 0) {
      absl::StrAppend(&append, " tsc_early_khz=", tsc_khz_, " tsc=reliable");
    }
    absl::StrAppend(&append, " kiln.ports=", absl::StrJoin(forward_ports_, ","));
    std::string net = "user,id=net0,restrict=on";
    for (int port : forward_ports_) {
      absl::StrAppend(&net, ",guestfwd=tcp:", kForwardAddress, ":", port,
                      "-cmd:", options_.forward_helper, " nc 127.0.0.1 ", port);
    }
    std::vector<std::string> argv = {options_.qemu_binary, "-name",  name,  "-M",
                                     "microvm,acpi=on",    "-accel", accel_};
    if (accel_ == "kvm") argv.insert(argv.end(), {"-cpu", "host"});
    argv.insert(argv.end(),
                {"-m",
                 absl::StrCat(s.memory_mib),
                 "-smp",
                 absl::StrCat(s.cpus),
                 "-nodefaults",
                 "-no-user-config",
                 "-display",
                 "none",
                 "-no-reboot",
                 "-kernel",
                 absl::StrCat(options_.image_dir, "/", kKernel),
                 "-initrd",
                 absl::StrCat(options_.image_dir, "/", kInitrd),
                 "-append",
                 append,
                 "-chardev",
                 absl::StrCat("file,id=console,path=", log_path, ",append=on"),
                 "-serial",
                 "chardev:console",
                 "-drive",
                 absl::StrCat("file=", volume, ",format=raw,if=none,id=volume,cache=writeback"),
                 "-device",
                 "virtio-blk-device,drive=volume",
                 "-drive",
                 absl::StrCat("file=", options_.image_dir, "/", kRootImage,
                              ",format=raw,if=none,id=root,readonly=on"),
                 "-device",
                 "virtio-blk-device,drive=root",
                 "-netdev",
                 net,
                 "-device",
                 "virtio-net-device,netdev=net0",
                 "-device",
                 "virtio-rng-device",
                 "-device",
                 "virtio-serial-device",
                 "-chardev",
                 absl::StrCat("socket,id=config,path=", config_socket, ",server=on,wait=off"),
                 "-device",
                 "virtserialport,chardev=config,name=kiln.config"});
    return argv;
  }

  absl::StatusOr<std::string> ConfigText(const WakeRequest& request) const {
    std::string text = absl::StrCat(
        "time=", absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::Now(), absl::UTCTimeZone()), "\n",
        "seed=", RandomHex(32), "\n", "project=", request.project, "\n");
    if (!request.token.empty()) absl::StrAppend(&text, "token=", request.token, "\n");
    std::vector<std::string> args = {
        "--orchestrator", absl::StrCat("127.0.0.1:", LoopbackPort(options_.orchestrator)),
        "--idle-grace", absl::StrFormat("%.3f", absl::ToDoubleSeconds(options_.idle_grace))};
    if (!options_.registry.empty()) {
      args.insert(args.end(),
                  {"--registry", absl::StrCat("127.0.0.1:", LoopbackPort(options_.registry))});
    }
    if (!options_.registry_tls_verify) args.push_back("--no-registry-tls-verify");
    args.insert(args.end(), options_.extra_agent_args.begin(), options_.extra_agent_args.end());
    // TLS material as files the guest writes into its memory (base64: PEM spans lines), read
    // now so a renewed certificate takes effect at the next wake.
    ASSIGN_OR_RETURN(ClientTls tls, ReadClientTls(options_.tls_ca_file, options_.tls_cert_file,
                                                  options_.tls_key_file, "--agent-tls"));
    auto add_file = [&](const std::string& name, const std::string& content,
                        const std::string& flag) {
      absl::StrAppend(&text, "file=", name, ":", absl::Base64Escape(content), "\n");
      args.insert(args.end(), {flag, absl::StrCat(kGuestFilesDir, "/", name)});
    };
    if (!tls.root_certs.empty()) {
      add_file("tls-ca.pem", tls.root_certs, "--tls-ca");
    } else if (options_.tls || tls.enabled) {
      args.push_back("--tls");
    }
    if (!tls.cert_chain.empty()) {
      add_file("tls-cert.pem", tls.cert_chain, "--tls-cert");
      add_file("tls-key.pem", tls.private_key, "--tls-key");
    }
    for (const std::string& arg : args) absl::StrAppend(&text, "arg=", arg, "\n");
    for (const std::string& env : options_.agent_env) absl::StrAppend(&text, "env=", env, "\n");
    if (!options_.secrets_file.empty()) {
      ASSIGN_OR_RETURN(std::vector<std::string> secrets, ReadAgentSecrets(options_.secrets_file));
      for (const std::string& env : secrets) absl::StrAppend(&text, "env=", env, "\n");
    }
    absl::StrAppend(&text, "end\n");
    return text;
  }

  const MicrovmOptions options_;
  const std::string accel_;
  const int64_t tsc_khz_;
  std::vector<int> forward_ports_;

  absl::Mutex snapshot_mu_;  // One snapshot saved at a time.
  absl::Mutex mu_;
  std::map<std::string, bool> restoring_ ABSL_GUARDED_BY(mu_);
  // Per machine directory: the provider's connection to the guest's config port.
  std::map<std::string, int> config_fds_ ABSL_GUARDED_BY(mu_);
  std::thread background_ ABSL_GUARDED_BY(mu_);
  bool snapshot_running_ ABSL_GUARDED_BY(mu_) = false;
  int template_pidfd_ ABSL_GUARDED_BY(mu_) = -1;  // The snapshot template VM, while it runs.
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
};

absl::StatusOr<std::unique_ptr<MicrovmMachineProvider>> MicrovmMachineProvider::Create(
    MicrovmOptions options) {
  if (options.machines_dir.empty()) return absl::InvalidArgumentError("machines_dir is empty");
  options.machines_dir = fs::absolute(options.machines_dir).lexically_normal().string();
  if (!options.machines_dir.empty() && options.machines_dir.back() == '/') {
    options.machines_dir.pop_back();
  }
  if (!PlainPath(options.machines_dir)) {
    return absl::InvalidArgumentError(
        absl::StrCat("machines_dir ", options.machines_dir,
                     " must be an absolute path of letters, digits and /._-+"));
  }
  if (options.image_dir.empty()) {
    return absl::InvalidArgumentError("image_dir is empty (make builder-image builds one)");
  }
  options.image_dir = fs::absolute(options.image_dir).lexically_normal().string();
  if (!PlainPath(options.image_dir)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "image_dir ", options.image_dir, " must be an absolute path of letters, digits and /._-+"));
  }
  std::error_code error;
  for (const char* file : {kKernel, kInitrd, kRootImage}) {
    if (!fs::is_regular_file(absl::StrCat(options.image_dir, "/", file), error)) {
      return absl::FailedPreconditionError(absl::StrCat("no builder image in ", options.image_dir,
                                                        " (", file,
                                                        " is missing): run make builder-image"));
    }
  }
  if (options.qemu_binary.empty()) {
    for (const char* dir : {"/usr/bin", "/usr/local/bin", "/bin"}) {
      std::string candidate = absl::StrCat(dir, "/qemu-system-x86_64");
      if (::access(candidate.c_str(), X_OK) == 0) {
        options.qemu_binary = candidate;
        break;
      }
    }
  }
  if (options.qemu_binary.empty() || ::access(options.qemu_binary.c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError("no qemu-system-x86_64 (apt-get install qemu-system-x86)");
  }
  if (!PlainPath(options.forward_helper) || ::access(options.forward_helper.c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat("no forward helper ", options.forward_helper,
                                                      " (apt-get install busybox-static)"));
  }
  if (LoopbackPort(options.orchestrator) == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "orchestrator ", options.orchestrator,
        " must be 127.0.0.1:PORT or localhost:PORT: the guest reaches only the host's loopback"));
  }
  if (!options.registry.empty() && LoopbackPort(options.registry) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("registry ", options.registry, " must be 127.0.0.1:PORT or localhost:PORT"));
  }
  if (options.forward_ports.size() > kMaxMicrovmForwards) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most ", kMaxMicrovmForwards, " forwarded ports"));
  }
  for (int port : options.forward_ports) {
    if (port < 1 || port > 65535)
      return absl::InvalidArgumentError(absl::StrCat("bad port ", port));
  }
  if (options.volume_bytes < kMinMicrovmVolumeBytes ||
      options.volume_bytes > kMaxMicrovmVolumeBytes) {
    return absl::InvalidArgumentError("volume_bytes must be within [64 MiB, 1 TiB]");
  }
  for (const std::string& text : options.extra_agent_args) {
    if (text.find('\n') != std::string::npos)
      return absl::InvalidArgumentError("a newline in an agent flag");
  }
  for (const std::string& entry : options.agent_env) {
    if (entry.find('\n') != std::string::npos || entry.find('=') == std::string::npos ||
        absl::StartsWith(entry, "KILN_TOKEN=")) {
      return absl::InvalidArgumentError(
          "agent_env entries are NAME=value on one line (and never KILN_TOKEN)");
    }
  }
  // Read at each wake; checked now so a bad file stops the worker, not every wake.
  RETURN_IF_ERROR(
      ReadClientTls(options.tls_ca_file, options.tls_cert_file, options.tls_key_file, "--agent-tls")
          .status());
  std::string accel = options.accel == "auto" ? DetectAccelerator() : options.accel;
  if (accel != "kvm" && accel != "tcg") {
    return absl::InvalidArgumentError("accel must be auto, kvm or tcg");
  }
  ProcessProviderOptions process;
  process.machines_dir = options.machines_dir;
  process.orchestrator = options.orchestrator;
  process.registry = options.registry;
  process.registry_tls_verify = options.registry_tls_verify;
  process.idle_grace = options.idle_grace;
  process.max_machines = options.max_machines;
  auto vm = std::make_shared<MicrovmLauncher>(std::move(options), accel);
  process.launcher = vm;
  std::unique_ptr<MicrovmMachineProvider> provider(
      new MicrovmMachineProvider(std::move(process), vm));
  RETURN_IF_ERROR(provider->Init());
  LogInfo("machines.microvm.started", {{"accel", accel}});
  return provider;
}

MicrovmMachineProvider::MicrovmMachineProvider(ProcessProviderOptions options,
                                               std::shared_ptr<MicrovmLauncher> vm)
    : ProcessMachineProvider(std::move(options)), vm_(std::move(vm)) {}

MicrovmMachineProvider::~MicrovmMachineProvider() { vm_->Shutdown(); }

absl::Status MicrovmMachineProvider::PrepareSnapshot(const std::string& size) {
  return vm_->PrepareSnapshot(size);
}

bool MicrovmMachineProvider::SnapshotUsable(const std::string& size) {
  return Sizes().count(size) > 0 && vm_->SnapshotUsable(size);
}

std::string MicrovmMachineProvider::accelerator() const { return vm_->accel(); }

}  // namespace kiln::worker
