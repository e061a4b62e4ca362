#include "worker/workflows/platform.h"

#include <openssl/evp.h>

#include <algorithm>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/json_scalar.h"
#include "common/proto_time.h"

namespace kiln::worker {
namespace {

std::string Sha256Hex(const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(data.data(), data.size(), digest, &size, EVP_sha256(), nullptr);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), static_cast<size_t>(size)));
}

// Length-prefixed, so that no two different lists of fields give the same text.
void AddField(std::string* out, const std::string& field) {
  absl::StrAppend(out, field.size(), ":", field, ";");
}

}  // namespace

std::string ProjectWorkflowId(const std::string& project) {
  return absl::StrCat("project/", project);
}
std::string DeploymentWorkflowId(const std::string& deployment_id) {
  return absl::StrCat("deployment/", deployment_id);
}
std::string ProjectTaskQueue(const std::string& project) {
  return absl::StrCat("project/", project);
}

pb::ProjectConfig WithDefaults(pb::ProjectConfig config) {
  if (config.production_branch().empty()) config.set_production_branch("main");
  if (config.image_repository().empty()) config.set_image_repository("kiln/" + config.id());
  if (config.machine_provider().empty()) config.set_machine_provider("process");
  if (config.machine_size().empty()) config.set_machine_size("small");
  if (config.deploy_target().empty()) config.set_deploy_target("podman");
  if (config.health_path().empty()) config.set_health_path("/");
  if (config.build_network().empty()) config.set_build_network("none");
  return config;
}

std::string SlotFor(const pb::ProjectConfig& config, const std::string& branch) {
  if (branch == config.production_branch()) return kProductionSlot;
  return PreviewSlot(branch);
}

bool BuildsBranch(const pb::ProjectConfig& config, const std::string& branch) {
  if (config.branches().empty()) return true;
  return std::find(config.branches().begin(), config.branches().end(), branch) !=
         config.branches().end();
}

std::string ConfigKey(const pb::ProjectConfig& config) {
  std::string text = "kiln-config-v1;";
  AddField(&text, std::string(absl::StripSuffix(config.context(), "/")));
  AddField(&text, config.containerfile());
  AddField(&text, config.build_network());
  std::map<std::string, std::string> args(config.build_args().begin(), config.build_args().end());
  for (const auto& [name, value] : args) {
    AddField(&text, name);
    AddField(&text, value);
  }
  return Sha256Hex(text);
}

std::string BuildKey(const pb::ProjectConfig& config, const std::string& tree_id,
                     const std::string& containerfile_id) {
  if (tree_id.empty()) return "";
  std::string text = "kiln-build-v1;";
  AddField(&text, tree_id);
  AddField(&text, containerfile_id);
  AddField(&text, ConfigKey(config));
  return Sha256Hex(text);
}

std::string StateName(pb::DeploymentState state) {
  std::string name = pb::DeploymentState_Name(state);
  return std::string(absl::StripPrefix(name, "DEPLOYMENT_STATE_"));
}

std::string StateWord(pb::DeploymentState state) { return absl::AsciiStrToLower(StateName(state)); }

google::protobuf::Timestamp TimestampOf(absl::Time time) {
  google::protobuf::Timestamp out;
  ToProto(time, &out);
  return out;
}

google::protobuf::Duration DurationOf(absl::Duration duration) {
  google::protobuf::Duration out;
  ToProto(duration, &out);
  return out;
}

api::Payload Keyword(const std::string& value) {
  api::Payload payload;
  (*payload.mutable_metadata())["encoding"] = "json/plain";
  (*payload.mutable_metadata())["type"] = "Keyword";
  payload.set_data(json::EncodeString(value));
  return payload;
}

}  // namespace kiln::worker
