// The build platform as text; see platform_format.h.
#include "cli/platform_format.h"

#include <algorithm>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "cli/format.h"
#include "common/proto_time.h"

namespace kiln::cli {
namespace {

namespace pb = ::kiln::platform::v1;

constexpr absl::string_view kStatePrefix = "DEPLOYMENT_STATE_";
constexpr size_t kShortCommitChars = 7;
constexpr size_t kShortDigestChars = 12;

// Wide enough for the longest label, "Production branch:", and a space.
void Field(std::ostream& out, absl::string_view label, absl::string_view value) {
  static constexpr size_t kLabelWidth = 19;
  WriteField(out, label, value.empty() ? "-" : value, kLabelWidth);
}

void FieldIfSet(std::ostream& out, absl::string_view label, absl::string_view value) {
  if (!value.empty()) Field(out, label, value);
}

std::string Or(absl::string_view value, absl::string_view fallback) {
  return std::string(value.empty() ? fallback : value);
}

// When the deployment began: its start, or (still queued) when the push was received.
const google::protobuf::Timestamp& BeganAt(const pb::Deployment& d) {
  return IsSet(d.created_time()) ? d.created_time() : d.received_time();
}

std::string Ago(const google::protobuf::Timestamp& t, absl::Time now) {
  if (!IsSet(t)) return "-";
  return absl::StrCat(FormatAge(FromProto(t), now), " ago");
}

std::string Took(const pb::Deployment& d) {
  if (!IsSet(d.finished_time()) || !IsSet(d.created_time())) return "-";
  return TookText(FromProto(d.finished_time()) - FromProto(d.created_time()));
}

std::string StepDuration(const pb::DeploymentStep& step, absl::Time now) {
  if (step.has_duration()) return TookText(FromProto(step.duration()));
  if (step.status() == "running" && IsSet(step.started_time())) {
    return absl::StrCat(TookText(now - FromProto(step.started_time())), " so far");
  }
  return "-";
}

void WriteSteps(std::ostream& out, const pb::Deployment& d, absl::Time now) {
  out << "\nSteps (" << d.steps_size() << "):\n";
  if (d.steps_size() == 0) return;
  Table table({"STEP", "STATUS", "DURATION", "DETAIL"});
  for (const auto& step : d.steps()) {
    table.AddRow({step.name(), step.status(), StepDuration(step, now), step.detail()});
  }
  table.Render(out, "  ");
}

// "web-1234567-abcdef SUCCEEDED main@1234567".
std::string DeploymentLine(const pb::Deployment& d) {
  return absl::StrCat(d.id(), " ", DeploymentStateName(d.state()), " ", d.branch(), "@",
                      ShortCommit(d.commit_sha()));
}

}  // namespace

std::string DeploymentStateName(pb::DeploymentState state) {
  std::string name = StripEnumPrefix(pb::DeploymentState_Name(state), kStatePrefix);
  if (name.empty()) return absl::StrCat("UNKNOWN(", static_cast<int>(state), ")");
  return name;
}

bool IsFinalState(pb::DeploymentState state) {
  return state == pb::DEPLOYMENT_STATE_SUCCEEDED || state == pb::DEPLOYMENT_STATE_FAILED ||
         state == pb::DEPLOYMENT_STATE_CANCELED;
}

const std::vector<std::string>& DeploymentStateFlagValues() {
  static const auto* values = [] {
    auto* out = new std::vector<std::string>;
    const auto* descriptor = pb::DeploymentState_descriptor();
    for (int i = 0; i < descriptor->value_count(); ++i) {
      auto state = static_cast<pb::DeploymentState>(descriptor->value(i)->number());
      if (state == pb::DEPLOYMENT_STATE_UNSPECIFIED) continue;
      out->push_back(absl::AsciiStrToLower(DeploymentStateName(state)));
    }
    return out;
  }();
  return *values;
}

absl::StatusOr<pb::DeploymentState> ParseDeploymentStateFlag(absl::string_view text) {
  const auto& values = DeploymentStateFlagValues();
  pb::DeploymentState state;
  if (std::find(values.begin(), values.end(), text) == values.end() ||
      !pb::DeploymentState_Parse(absl::StrCat(kStatePrefix, absl::AsciiStrToUpper(text)), &state)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' is not a deployment state (", absl::StrJoin(values, ", "), ")"));
  }
  return state;
}

std::string ShortCommit(absl::string_view sha) {
  if (sha.empty()) return "-";
  return std::string(sha.substr(0, kShortCommitChars));
}

std::string ShortDigest(absl::string_view digest) {
  if (digest.empty()) return "-";
  absl::ConsumePrefix(&digest, "sha256:");
  return std::string(digest.substr(0, kShortDigestChars));
}

std::string TookText(absl::Duration d) {
  d = std::max(d, absl::ZeroDuration());
  if (d < absl::Seconds(1)) return DurationText(absl::Trunc(d, absl::Milliseconds(1)));
  if (d < absl::Minutes(1)) return DurationText(absl::Trunc(d, absl::Milliseconds(100)));
  return DurationText(absl::Trunc(d, absl::Seconds(1)));
}

std::string FormatProgressLine(const pb::Deployment& d, absl::Time now) {
  // Whole seconds: a line redrawn every second reads best without tenths flickering.
  auto seconds = [](absl::Duration elapsed) {
    return TookText(absl::Trunc(std::max(elapsed, absl::ZeroDuration()), absl::Seconds(1)));
  };
  std::string line = absl::StrCat(d.id(), "  ", DeploymentStateName(d.state()));
  if (IsSet(BeganAt(d))) absl::StrAppend(&line, " ", seconds(now - FromProto(BeganAt(d))));
  for (auto step = d.steps().rbegin(); step != d.steps().rend(); ++step) {
    if (step->status() != "running") continue;
    absl::StrAppend(&line, " | ", step->name());
    if (IsSet(step->started_time())) {
      absl::StrAppend(&line, " ", seconds(now - FromProto(step->started_time())));
    }
    break;
  }
  if (!d.progress().empty()) absl::StrAppend(&line, " | ", d.progress());
  return line;
}

std::string FormatDeploymentList(const std::vector<pb::Deployment>& deployments, absl::Time now) {
  Table table({"ID", "BRANCH", "COMMIT", "STATE", "IMAGE", "STARTED", "TOOK"});
  for (const auto& d : deployments) {
    table.AddRow({d.id(), d.branch(), ShortCommit(d.commit_sha()), DeploymentStateName(d.state()),
                  ShortDigest(d.image_digest()), Ago(BeganAt(d), now), Took(d)});
  }
  std::ostringstream out;
  table.Render(out);
  return out.str();
}

std::string FormatDeployment(const pb::Deployment& d, absl::Time now) {
  std::ostringstream out;
  Field(out, "ID", d.id());
  Field(out, "Project", d.project_id());
  Field(out, "Branch", d.branch());
  Field(out, "Commit",
        d.message().empty() ? d.commit_sha() : absl::StrCat(d.commit_sha(), " ", d.message()));
  Field(out, "State", DeploymentStateName(d.state()));
  FieldIfSet(out, "Progress", IsFinalState(d.state()) ? "" : d.progress());
  FieldIfSet(out, "Error", d.error());
  FieldIfSet(out, "Superseded by", d.superseded_by());
  FieldIfSet(out, "Rollback of", d.rollback_of());
  Field(out, "Trigger", d.trigger());
  Field(out, "Slot", d.slot());
  Field(out, "URL", d.url());
  Field(out, "Image", Or(d.image_reference(), d.image_digest()));
  if (d.build_skipped()) Field(out, "Build", "skipped: the same content was built before");
  Field(out, "Received", FormatTimestamp(d.received_time()));
  Field(out, "Started", FormatTimestamp(d.created_time()));
  std::string finished = FormatTimestamp(d.finished_time());
  if (IsSet(d.finished_time()) && IsSet(d.created_time())) {
    absl::StrAppend(&finished, " (took ", Took(d), ")");
  }
  Field(out, "Finished", finished);
  WriteSteps(out, d, now);
  return out.str();
}

std::string FormatProjectConfig(const pb::ProjectConfig& c) {
  std::ostringstream out;
  Field(out, "ID", c.id());
  Field(out, "Repository", c.repository_url());
  Field(out, "Production branch", Or(c.production_branch(), "main"));
  Field(out, "Branches", c.branches().empty() ? "all" : absl::StrJoin(c.branches(), ", "));
  Field(out, "Context", Or(c.context(), "."));
  Field(out, "Containerfile", Or(c.containerfile(), "Containerfile"));
  // Sorted, so the same config always prints the same (a proto map has no order).
  std::vector<std::pair<std::string, std::string>> args(c.build_args().begin(),
                                                        c.build_args().end());
  std::sort(args.begin(), args.end());
  KeyValues build_args;
  for (const auto& [name, value] : args) build_args.Add(name, value);
  Field(out, "Build args", build_args.str());
  Field(out, "Build network", Or(c.build_network(), "none"));
  Field(out, "Image repository", Or(c.image_repository(), "kiln/" + c.id()));
  Field(out, "Git token secret", c.git_token_secret());
  Field(
      out, "Machine",
      absl::StrCat(Or(c.machine_provider(), "process"), " (", Or(c.machine_size(), "small"), ")"));
  Field(out, "Deploy target", Or(c.deploy_target(), "podman"));
  Field(out, "Port", c.port() == 0 ? "" : absl::StrCat(c.port()));
  Field(out, "Health path", Or(c.health_path(), "/"));
  return out.str();
}

std::string FormatCreatedProject(const pb::CreateProjectResponse& created) {
  std::ostringstream out;
  out << FormatProjectConfig(created.config()) << "\n";
  Field(out, "Webhook URL", created.webhook_url());
  Field(out, "Webhook secret", created.webhook_secret());
  out << "The webhook secret is shown only this once: give it to GitHub now.\n";
  return out.str();
}

std::string FormatProject(const pb::ProjectState& s, absl::Time now) {
  std::ostringstream out;
  out << FormatProjectConfig(s.config()) << "\n";
  const pb::Deployment& production = s.production();
  Field(out, "Production",
        production.id().empty()
            ? "none"
            : absl::StrCat(Or(production.url(), "(no url)"), "  ", DeploymentLine(production)));
  Field(out, "Active", s.active().id().empty() ? "none" : DeploymentLine(s.active()));

  out << "\nPreviews (" << s.previews_size() << "):\n";
  if (!s.previews().empty()) {
    std::vector<pb::Preview> previews;
    for (const auto& [branch, preview] : s.previews()) previews.push_back(preview);
    std::sort(previews.begin(), previews.end(),
              [](const auto& a, const auto& b) { return a.branch() < b.branch(); });
    Table table({"BRANCH", "URL", "DEPLOYMENT"});
    for (const auto& p : previews) table.AddRow({p.branch(), Or(p.url(), "-"), p.deployment_id()});
    table.Render(out, "  ");
  }

  out << "\nQueue (" << s.rollbacks_size() + s.queue_size() << "):\n";
  if (s.rollbacks_size() + s.queue_size() > 0) {
    Table table({"DEPLOYMENT", "BRANCH", "COMMIT", "KIND", "RECEIVED"});
    for (const auto& r : s.rollbacks()) {
      table.AddRow({r.deployment_id(), r.branch(), ShortCommit(r.commit_sha()),
                    absl::StrCat("rollback to ", r.target_deployment_id()),
                    Ago(r.received_time(), now)});
    }
    for (const auto& p : s.queue()) {
      table.AddRow({p.deployment_id(), p.branch(), ShortCommit(p.commit_sha()), p.trigger(),
                    Ago(p.received_time(), now)});
    }
    table.Render(out, "  ");
  }

  out << "\nRecent deployments (" << s.recent_size() << "):\n";
  if (s.recent_size() > 0) {
    std::istringstream table(FormatDeploymentList({s.recent().begin(), s.recent().end()}, now));
    for (std::string line; std::getline(table, line);) out << "  " << line << "\n";
  }
  return out.str();
}

std::string FormatProjectList(const std::vector<pb::ProjectConfig>& projects) {
  Table table({"ID", "REPOSITORY"});
  for (const auto& c : projects) table.AddRow({c.id(), c.repository_url()});
  std::ostringstream out;
  table.Render(out);
  return out.str();
}

}  // namespace kiln::cli
