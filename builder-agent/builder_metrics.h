// The builder agent's own metrics (served on --metrics-listen while it runs): step durations,
// build steps served by the layer cache, blobs uploaded or reused by pushes, bytes fetched.
// Internal to the activities (activities.cc, image_activities.cc).
#pragma once

#include <string>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/time/time.h"
#include "builder-agent/activities.h"

namespace kiln::builder {

struct BuilderActivities::Metrics {
  // Steps run from milliseconds to the better part of an hour (a cold build).
  static prometheus::Histogram::BucketBoundaries StepBuckets() {
    return {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600};
  }

  explicit Metrics(prometheus::Registry& registry)
      : step_duration(prometheus::BuildHistogram()
                          .Name("kiln_builder_step_duration_seconds")
                          .Help("Time a build step took, by step and outcome")
                          .Register(registry)),
        layers(prometheus::BuildCounter()
                   .Name("kiln_builder_build_steps_total")
                   .Help("Build steps run, by whether the layer cache served them")
                   .Register(registry)),
        blobs(prometheus::BuildCounter()
                  .Name("kiln_builder_push_blobs_total")
                  .Help("Blobs of pushed images, by whether the registry had them already")
                  .Register(registry)),
        bytes_pushed(prometheus::BuildCounter()
                         .Name("kiln_builder_pushed_bytes_total")
                         .Help("Compressed bytes uploaded to the registry (when it says)")
                         .Register(registry)
                         .Add({})),
        bytes_fetched(prometheus::BuildCounter()
                          .Name("kiln_builder_fetched_bytes_total")
                          .Help("Bytes received by git fetches")
                          .Register(registry)
                          .Add({})) {}

  void Step(const std::string& step, absl::Duration d, bool ok) {
    step_duration.Add({{"step", step}, {"outcome", ok ? "ok" : "error"}}, StepBuckets())
        .Observe(absl::ToDoubleSeconds(d));
  }

  prometheus::Family<prometheus::Histogram>& step_duration;
  prometheus::Family<prometheus::Counter>& layers;
  prometheus::Family<prometheus::Counter>& blobs;
  prometheus::Counter& bytes_pushed;
  prometheus::Counter& bytes_fetched;
};

}  // namespace kiln::builder
