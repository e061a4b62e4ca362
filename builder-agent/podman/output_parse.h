// Reading podman 4.3's output: which build steps came from the layer cache, and which blobs a
// push uploaded or found already in the registry. Kept apart from the process handling so it can
// be tested on recorded output.
//
// Push counts come from podman's debug log ("Skipping blob ... (already present)", "Upload of
// layer ... complete"): without a terminal podman prints the same "Copying blob" line for a
// skipped blob as for an uploaded one.
#pragma once

#include <set>
#include <string>
#include <string_view>

namespace kiln::builder {

// The one step Podman::Build appends to a Containerfile to label the image.
inline constexpr const char* kKilnLabelStepPrefix = "LABEL kiln.project=";

class BuildOutputParser {
 public:
  void Feed(std::string_view line);
  // The Containerfile's steps that commit an image (all but FROM, with --layers; not counting
  // the label step Build appends), and how many of them came from the layer cache.
  int steps_total() const { return steps_total_; }
  int steps_reused() const { return reused_; }

 private:
  int steps_total_ = 0;
  int reused_ = 0;
  bool current_counts_ = false;
  std::set<int> seen_steps_;
};

class PushOutputParser {
 public:
  // Returns the line to show in the build log, or an empty string for debug chatter. Debug lines
  // of level warning or error are shown (their message only).
  std::string Feed(std::string_view line);
  int blobs_pushed() const;
  int blobs_reused() const;
  const std::set<std::string>& uploaded() const { return uploaded_; }
  bool config_pushed() const { return uploaded_.count(config_) > 0; }

 private:
  std::string config_;
  std::set<std::string> uploaded_;
  std::set<std::string> skipped_;
};

}  // namespace kiln::builder
