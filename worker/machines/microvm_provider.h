// The `microvm` machine provider: a project's builder machine is a QEMU microVM (`-M microvm`)
// booting the builder image (`make builder-image`: a Debian cloud kernel and an initramfs with
// kiln-builder-agent, deploy/builder-image/). It is the process provider (process_provider.h:
// one machine per project, wake lock, state records, adoption, exit monitor) with a QEMU
// launcher; docs/machines.md has the whole picture.
//
// Per project, under `<machines_dir>/<project>/`, besides the process provider's files:
//   volume.img   the persistent volume: a raw ext4 image (virtio-blk), made at the first wake;
//                QEMU's image lock refuses a second VM on it
//   config.sock  QEMU's end of the guest's config port (virtio-serial `kiln.config`)
// and `<machines_dir>/.snapshots/` holds the saved idle machines of each size.
//
// The guest's network is QEMU user networking with `restrict=on`: no packet leaves QEMU except
// through `guestfwd` rules, one per forwarded port, each connecting to 127.0.0.1 of the host
// (`<forward_helper> nc 127.0.0.1 PORT` per connection). Inside, the guest's init listens on
// 127.0.0.1:PORT for each, so the agent uses the same addresses as on the host.
//
// The wake's token, the project and the agent's flags reach the guest over the config port,
// never the kernel command line (readable by every host user in /proc) nor the volume.
// Protocol, one line each way ("key=value"): the guest's init starts the forwards (the ports
// are on the kernel command line, `kiln.ports=`) and the agent, which waits for its arguments
// on a pipe (`--args-from`), then says `ready`; the provider sends `time=`, `seed=` (mixed into
// the guest's entropy: snapshot clones must not share random numbers), `project=`, `token=`,
// `arg=` (each agent flag), `env=`, `file=NAME:BASE64` (TLS material the flags name as
// /run/kiln/NAME: the guest writes it to its tmpfs, mode 0600), then `end`; the guest mounts the
// volume, hands the agent its arguments and answers `configured`. Later the provider may send
// `stop` (the agent gets SIGTERM). When the agent exits the guest prints `kiln-vm: agent exited
// with code N` on its console (agent.log) and powers off; QEMU exits.
//
// Fast wake: a cold boot that finds no snapshot of its size saves one in the background: a
// template VM on a blank volume of the same size boots to `ready` and is migrated to
// `.snapshots/<size>.vmstate` (`migrate exec:cat`). A wake restores it (`-incoming`), which
// skips the kernel's boot and the agent's start (it is saved loaded, waiting for its
// arguments); the guest, restored inside its wait for the config, proceeds as after a cold boot
// (it flushes the volume's block cache before mounting). A snapshot whose
// stamp (QEMU, kernel, initramfs, memory, CPUs, volume size, accelerator) differs, or whose
// restore does not answer, is removed and the wake boots cold.
// Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "worker/machines/process_provider.h"

namespace kiln::worker {

inline constexpr int64_t kMinMicrovmVolumeBytes = 64 << 20;
inline constexpr int64_t kMaxMicrovmVolumeBytes = int64_t{1} << 40;
inline constexpr size_t kMaxMicrovmForwards = 16;

struct MicrovmOptions {
  std::string machines_dir;
  // Holds vmlinuz and initrd.cpio (`make builder-image` writes build/builder-image).
  std::string image_dir;
  // Absolute; empty: qemu-system-x86_64 found on PATH.
  std::string qemu_binary;
  // The host side of each forwarded connection runs `<forward_helper> nc 127.0.0.1 PORT`
  // (busybox-static's busybox).
  std::string forward_helper = "/bin/busybox";
  // "auto" (KVM when the host has hardware virtualisation KVM can use, else TCG), "kvm", "tcg".
  std::string accel = "auto";
  std::string orchestrator;  // 127.0.0.1:PORT (or localhost:PORT): forwarded into the guest.
  std::string registry;      // Empty, or 127.0.0.1:PORT / localhost:PORT: forwarded too.
  bool registry_tls_verify = true;
  // More host ports on 127.0.0.1 the guest reaches as 127.0.0.1:PORT (a git server, say).
  std::vector<int> forward_ports;
  int64_t volume_bytes = int64_t{4} << 30;
  bool snapshots = true;
  absl::Duration idle_grace = absl::Seconds(30);
  int max_machines = 4;
  // How long a cold boot may take to reach the guest's `ready` (TCG on a busy host is slow).
  absl::Duration boot_timeout = absl::Seconds(90);
  // Agent flags added to the guest's command line. File paths of the host mean nothing in the
  // guest, so TLS material is not passed this way (see the tls_* fields).
  std::vector<std::string> extra_agent_args;
  // TLS to the orchestrator, as the agent's --tls, --tls-ca, --tls-cert and --tls-key: the
  // files are read on the host at each wake and their contents sent over the config port; the
  // guest keeps them in its memory (/run/kiln, mode 0600), never on the volume or in a snapshot.
  bool tls = false;  // TLS with the system's roots (implied by tls_ca_file)
  std::string tls_ca_file;
  std::string tls_cert_file;  // with tls_key_file: a client certificate for mutual TLS
  std::string tls_key_file;
  std::vector<std::string> agent_env;  // NAME=value, in the agent's environment.
  // A file of NAME=value lines (blank and '#' lines skipped), read at each wake and handed to
  // the agent as its KILN_SECRET_<NAME> secrets (the host's file is not in the guest). Empty:
  // none.
  std::string secrets_file;
};

// The secrets file's lines as KILN_SECRET_<NAME>=value entries. kInvalidArgument for a line
// without '=' or a name not [A-Z0-9_]+, kFailedPrecondition when it cannot be read.
absl::StatusOr<std::vector<std::string>> ReadAgentSecrets(const std::string& path);

// "kvm" or "tcg": what `accel = auto` picks on this host.
std::string DetectAccelerator();

class MicrovmLauncher;

class MicrovmMachineProvider : public ProcessMachineProvider {
 public:
  // kInvalidArgument for bad options; kFailedPrecondition when QEMU, the image or the forward
  // helper is missing (the message says what to install or build).
  static absl::StatusOr<std::unique_ptr<MicrovmMachineProvider>> Create(MicrovmOptions options);
  ~MicrovmMachineProvider() override;

  // Saves the idle machine of `size` now (a cold boot of a template VM, then migration to a
  // file). Done in the background after a cold wake when missing; tests and benchmarks call it.
  absl::Status PrepareSnapshot(const std::string& size);
  // Whether a wake of `size` would restore a snapshot (present, stamp current).
  bool SnapshotUsable(const std::string& size);
  // The accelerator in use: "kvm" or "tcg".
  std::string accelerator() const;

 private:
  MicrovmMachineProvider(ProcessProviderOptions options, std::shared_ptr<MicrovmLauncher> vm);
  std::shared_ptr<MicrovmLauncher> vm_;
};

}  // namespace kiln::worker
