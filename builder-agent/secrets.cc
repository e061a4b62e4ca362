#include "builder-agent/secrets.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status.h"

namespace kiln::builder {
namespace {

constexpr char kRedactedText[] = "***";

}  // namespace

absl::Status SecretStore::ValidateName(std::string_view name) {
  if (name.empty() || name.size() > kMaxSecretNameLength) {
    return absl::InvalidArgumentError(absl::StrCat("a secret name has 1 to ", kMaxSecretNameLength,
                                                   " characters, got ", name.size()));
  }
  for (char c : name) {
    if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) {
      return absl::InvalidArgumentError(
          absl::StrCat("secret name '", std::string(name), "' may hold only A-Z, 0-9 and '_'"));
    }
  }
  return absl::OkStatus();
}

absl::Status SecretStore::Add(const std::string& name, std::string value) {
  RETURN_IF_ERROR(ValidateName(name));
  if (value.empty() || value.size() > kMaxSecretValueBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("secret ", name, " must have 1 to ", kMaxSecretValueBytes, " bytes"));
  }
  if (!values_.contains(name) && values_.size() >= kMaxSecretCount) {
    return absl::ResourceExhaustedError(
        absl::StrCat("more than ", kMaxSecretCount, " secrets configured"));
  }
  values_[name] = std::move(value);
  return absl::OkStatus();
}

absl::StatusOr<SecretStore> SecretStore::Load(char** environ, const std::string& secrets_file,
                                              bool unset_env) {
  SecretStore store;
  std::vector<std::string> loaded;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    absl::string_view entry(*e);
    if (!absl::StartsWith(entry, kSecretEnvPrefix)) continue;
    size_t eq = entry.find('=');
    if (eq == std::string_view::npos) continue;
    std::string name(
        entry.substr(sizeof(kSecretEnvPrefix) - 1, eq - (sizeof(kSecretEnvPrefix) - 1)));
    absl::Status added = store.Add(name, std::string(entry.substr(eq + 1)));
    if (!added.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("environment ", kSecretEnvPrefix, name, ": ", added.message()));
    }
    loaded.push_back(absl::StrCat(kSecretEnvPrefix, name));
  }
  // After the loop: unsetenv changes the array it walks.
  if (unset_env) {
    for (const std::string& var : loaded) unsetenv(var.c_str());
  }
  if (!secrets_file.empty()) {
    std::ifstream in(secrets_file, std::ios::binary);
    if (!in) {
      return absl::NotFoundError(absl::StrCat("cannot read the secrets file ", secrets_file));
    }
    std::stringstream buffer;
    buffer << in.rdbuf();
    std::string text = buffer.str();
    if (text.size() > kMaxSecretsFileBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the secrets file ", secrets_file, " is larger than ", kMaxSecretsFileBytes, " bytes"));
    }
    int line_number = 0;
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      ++line_number;
      absl::ConsumeSuffix(&line, "\r");
      if (line.empty() || line[0] == '#') continue;
      size_t eq = line.find('=');
      if (eq == absl::string_view::npos) {
        // The line may be a value: never echo it.
        return absl::InvalidArgumentError(absl::StrCat("the secrets file ", secrets_file, ", line ",
                                                       line_number, ": expected NAME=value"));
      }
      std::string name(line.substr(0, eq));
      absl::Status added = store.Add(name, std::string(line.substr(eq + 1)));
      if (!added.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("the secrets file ", secrets_file, ", line ",
                                                       line_number, ": ", added.message()));
      }
    }
  }
  return store;
}

absl::StatusOr<std::string> SecretStore::Get(const std::string& name) const {
  RETURN_IF_ERROR(ValidateName(name));
  auto it = values_.find(name);
  if (it == values_.end()) {
    return absl::NotFoundError(absl::StrCat("secret ", name, " is not configured on this agent (",
                                            kSecretEnvPrefix, name, " or the secrets file)"));
  }
  return it->second;
}

void SecretStore::AlsoRedact(std::string value) {
  if (!value.empty()) redact_only_.push_back(std::move(value));
}

std::vector<std::string> SecretStore::Values() const {
  std::vector<std::string> values;
  values.reserve(values_.size() + redact_only_.size());
  for (const auto& [name, value] : values_) values.push_back(value);
  values.insert(values.end(), redact_only_.begin(), redact_only_.end());
  return values;
}

std::string SecretStore::Redact(std::string_view text) const {
  std::string out(text.data(), text.size());
  // Longest first, so that a secret containing another is replaced whole.
  std::vector<std::string> values = Values();
  std::sort(values.begin(), values.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  for (const std::string& value : values) {
    for (size_t at = out.find(value); at != std::string::npos; at = out.find(value, at)) {
      out.replace(at, value.size(), kRedactedText);
      at += sizeof(kRedactedText) - 1;
    }
  }
  return out;
}

}  // namespace kiln::builder
