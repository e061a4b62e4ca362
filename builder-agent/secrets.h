// The agent's secrets: values the machine's metadata gives the agent (environment variables
// KILN_SECRET_<NAME>, or a secrets file of NAME=value lines), looked up by NAME. Activity
// inputs live in the workflow history, so they only ever name a secret; its value goes to a
// private step (as an environment variable) or to libgit2's credentials callback, and is
// redacted from every message the agent sends or logs.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kiln::builder {

inline constexpr size_t kMaxSecretCount = 64;
inline constexpr size_t kMaxSecretNameLength = 64;
inline constexpr size_t kMaxSecretValueBytes = 4096;
inline constexpr size_t kMaxSecretsFileBytes = 1 << 20;
inline constexpr char kSecretEnvPrefix[] = "KILN_SECRET_";

class SecretStore {
 public:
  SecretStore() = default;

  // Reads KILN_SECRET_<NAME> variables from `environ` (and, with `unset_env`, removes them
  // from this process's environment so that no child inherits them), then the file at
  // `secrets_file` if not empty (a line "NAME=value"; blank lines and lines starting with '#'
  // are skipped; the file wins over the environment). Names are [A-Z0-9_]+.
  static absl::StatusOr<SecretStore> Load(char** environ, const std::string& secrets_file,
                                          bool unset_env);

  // kInvalidArgument for a bad name or value, kResourceExhausted past kMaxSecretCount.
  absl::Status Add(const std::string& name, std::string value);
  // A value to redact that no activity may ask for by name (the orchestrator token).
  void AlsoRedact(std::string value);
  // kNotFound naming the secret (never a value) when it is not configured.
  absl::StatusOr<std::string> Get(const std::string& name) const;
  bool Has(const std::string& name) const { return values_.contains(name); }

  // Every value to redact: the configured ones and AlsoRedact's (for the command runner).
  std::vector<std::string> Values() const;
  // `text` with every configured value replaced.
  std::string Redact(std::string_view text) const;
  size_t size() const { return values_.size(); }

  static absl::Status ValidateName(std::string_view name);

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> redact_only_;
};

}  // namespace kiln::builder
