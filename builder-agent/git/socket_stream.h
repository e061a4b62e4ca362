// libgit2's TCP connections, made interruptible. libgit2 1.5 connects, reads and writes with
// blocking calls and no timeouts, so a remote that stops answering would hold a fetch (and
// the repository's lock) forever, and a cancel would wait for the next byte. This registers a
// socket stream for GIT_STREAM_STANDARD — which libgit2's TLS stream also runs on, so https
// is covered — that waits in short polls: between polls it checks the calling thread's
// cancellation and its connect and idle deadlines.
#pragma once

#include <functional>

#include "absl/time/time.h"

namespace kiln::builder {

struct StreamLimits {
  absl::Duration connect_timeout = absl::Seconds(30);
  // The longest wait for the next byte (either way) before the connection is given up.
  absl::Duration idle_timeout = absl::Seconds(120);
  // Polled while waiting; returning true aborts the operation.
  std::function<bool()> cancelled;
};

// Registers the stream with libgit2 (process-wide; call once, after git_libgit2_init).
void RegisterInterruptibleSocketStream();

// While alive, connections opened on this thread follow `limits` (which must outlive it).
// Without one, the defaults apply and nothing cancels.
class ScopedStreamLimits {
 public:
  explicit ScopedStreamLimits(const StreamLimits* limits);
  ~ScopedStreamLimits();
  ScopedStreamLimits(const ScopedStreamLimits&) = delete;
  ScopedStreamLimits& operator=(const ScopedStreamLimits&) = delete;

 private:
  const StreamLimits* previous_;
};

}  // namespace kiln::builder
