// The calls a gRPC server has in flight, so that stopping it waits for exactly those.
//
// grpc::Server::Shutdown(deadline) sends GOAWAY and returns once every call has finished AND
// every client connection has closed. A client holding an open channel with no call in flight
// (an SDK client between calls, a worker that has just stopped its stream) reads the GOAWAY
// only when its channel's backup poller next runs, every 5 s in gRPC 1.51, so a shutdown with
// nothing in flight still waited out its whole grace: every orchestrator stop took 5–6 s.
// ServerCalls counts the calls (a server interceptor, made per call, freed with it), waits up
// to the grace for those, then closes what is left at once.
//
// Every Kiln gRPC server installs its interceptors through Install: the count and the answer to
// unparsable requests (common/rpc_parse_errors.h).
#pragma once

#include <cstdint>

#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace kiln {

class ServerCalls {
 public:
  // Adds the interceptors to `builder`; once per server, before BuildAndStart. This object must
  // outlive the server.
  void Install(grpc::ServerBuilder& builder);

  // Stops `server`: no new calls (GOAWAY), the calls in flight get up to `grace` to finish,
  // then whatever is still running is cancelled and every connection, idle or not, is closed.
  // Returns once the server is fully stopped.
  void Shutdown(grpc::Server& server, absl::Duration grace);

  int64_t in_flight() const;
  // Waits until at most `calls` are in flight, up to `timeout`; returns how many are. (A call's
  // end is counted once the server is done with it, which may be after its client has its
  // answer.)
  int64_t AwaitInFlightAtMost(int64_t calls, absl::Duration timeout) const;

  // Called by the interceptor at a call's start and end.
  void Begin();
  void End();

 private:
  mutable absl::Mutex mu_;
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace kiln
