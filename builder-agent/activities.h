// The builder agent's activities, served on project/<id> (inputs and results in
// proto/kiln/platform/v1/builder.proto):
//
//   kiln.builder.FetchSource   libgit2 mirror on the volume, incremental fetch, checkout
//   kiln.builder.BuildImage    podman build, storage root on the volume, layer cache on
//   kiln.builder.RunInImage    a private step: a command run in the built image with secrets
//   kiln.builder.PushImage     push by digest to the agent's registry, reusing blobs
//   kiln.builder.Housekeeping  prune the project's old images, reset storage past 75 % full
//
// Every step writes its public output line by line to the run's log stream "build" (secrets
// redacted), heartbeats its progress (BuildProgress) at least every 500 ms so that a cancel
// requested by the workflow stops it (the step's process group is killed) and the activity is
// reported canceled within 2 s. Errors a retry cannot cure (a missing commit, a Containerfile
// error, an unknown secret) are non-retryable ApplicationErrors with the reason; the others
// are retried by the engine's policy. Step durations, cache hits and bytes pushed are both
// exported as metrics and summarised in the results.
#pragma once

#include <memory>
#include <string>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "builder-agent/agent.h"
#include "builder-agent/git/source_cache.h"
#include "builder-agent/podman/podman.h"
#include "builder-agent/secrets.h"
#include "kiln/platform/v1/builder.pb.h"
#include "sdk/activity.h"
#include "sdk/activity_worker.h"

namespace kiln::builder {

namespace pb = ::kiln::platform::v1;

inline constexpr char kFetchSourceActivity[] = "kiln.builder.FetchSource";
inline constexpr char kBuildImageActivity[] = "kiln.builder.BuildImage";
inline constexpr char kRunInImageActivity[] = "kiln.builder.RunInImage";
inline constexpr char kPushImageActivity[] = "kiln.builder.PushImage";
inline constexpr char kHousekeepingActivity[] = "kiln.builder.Housekeeping";

struct ActivitiesOptions {
  // host[:port] images are pushed to; empty: PushImage fails (non-retryable).
  std::string registry;
  bool registry_tls_verify = true;
  // Images of the project that housekeeping keeps.
  int keep_last = 5;
  SecretStore secrets;
};

class BuilderActivities {
 public:
  // Sets up the source cache (<volume>/git) and podman (<volume>/containers).
  static absl::StatusOr<std::unique_ptr<BuilderActivities>> Create(Agent& agent,
                                                                   ActivitiesOptions options);
  ~BuilderActivities();

  absl::Status Register(sdk::ActivityWorker& worker);

  absl::StatusOr<pb::FetchSourceResult> FetchSource(sdk::ActivityContext& ctx,
                                                    const pb::FetchSourceInput& input);
  absl::StatusOr<pb::BuildImageResult> BuildImage(sdk::ActivityContext& ctx,
                                                  const pb::BuildImageInput& input);
  absl::StatusOr<pb::RunInImageResult> RunInImage(sdk::ActivityContext& ctx,
                                                  const pb::RunInImageInput& input);
  absl::StatusOr<pb::PushImageResult> PushImage(sdk::ActivityContext& ctx,
                                                const pb::PushImageInput& input);
  absl::StatusOr<pb::HousekeepingResult> Housekeeping(sdk::ActivityContext& ctx,
                                                      const pb::HousekeepingInput& input);

 private:
  struct Metrics;

  BuilderActivities(Agent& agent, ActivitiesOptions options);
  // kInvalidArgument (non-retryable) when the input names another project.
  absl::Status CheckProject(const std::string& project_id) const;
  // The error an activity reports for a failed step: canceled when the workflow asked,
  // otherwise an ApplicationError of `type`, its message redacted.
  absl::Status StepError(sdk::ActivityContext& ctx, const std::string& type,
                         const absl::Status& status, bool retryable) const;
  // Podman for the volume, set up at its first use (the host probe is cached on the volume):
  // an agent woken for nothing need not wait for it. A non-retryable "PodmanUnavailable"
  // when podman cannot run containers here.
  absl::StatusOr<Podman*> GetPodman(const LineSink& sink);
  // The repository images of this project are tagged with locally: "kiln/<project>".
  std::string LocalRepository() const;

  Agent& agent_;
  ActivitiesOptions options_;
  std::unique_ptr<SourceCache> sources_;
  std::unique_ptr<Metrics> metrics_;
  absl::Mutex podman_mu_;
  std::unique_ptr<Podman> podman_ ABSL_GUARDED_BY(podman_mu_);
};

}  // namespace kiln::builder
