// Agent tokens for tests that run kiln-builder-agent against a real orchestrator: the
// orchestrator refuses an agent whose token it cannot verify, so tests mint a real one with the
// orchestrator's key (<data dir>/auth.key, created here when that orchestrator has not started).
#pragma once

#include <string>

#include <catch2/catch.hpp>

#include "absl/time/clock.h"
#include "common/auth/token.h"

namespace kiln::testutil {

// An agent token of `project`, valid for an hour; REQUIREs that it could be minted.
inline std::string RequireAgentToken(const std::string& key_file, const std::string& project,
                                     const std::string& subject = "kiln-test") {
  auto key = auth::TokenKey::LoadOrCreate(key_file);
  INFO(key.status().ToString());
  REQUIRE(key.ok());
  auth::Claims claims;
  claims.scope = auth::Scope::kAgent;
  claims.project = project;
  claims.subject = subject;
  claims.issued = absl::Now();
  claims.expiry = claims.issued + absl::Hours(1);
  auto token = key->Mint(claims);
  INFO(token.status().ToString());
  REQUIRE(token.ok());
  return *token;
}

}  // namespace kiln::testutil
