// Task tokens as workers hold them: the TaskToken proto (run, scheduled event id, attempt, kind,
// and the poll that started the attempt) followed by an HMAC-SHA256 of it with the
// orchestrator's key (common/auth/token.h, domain "kiln-task-token"). Only this orchestrator can
// make one, so a hand-made or altered token is refused before anything is looked up; the engine
// then checks the attempt and the poll against the run's state, so a replayed token of an older
// attempt, or of another poll, is refused too.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "common/auth/token.h"
#include "kiln/internal/v1/persistence.pb.h"

namespace kiln::orchestrator {

namespace internal = ::kiln::internal::v1;

class TaskTokenCodec {
 public:
  explicit TaskTokenCodec(auth::TokenKey key) : key_(std::move(key)) {}
  // A codec with a random key (tests, and engines that no worker outlives).
  static TaskTokenCodec WithRandomKey();

  std::string Encode(const internal::TaskToken& token) const;
  // kInvalidArgument "task_token: malformed" for bytes that are not a task token;
  // kPermissionDenied "task_token: not signed by this orchestrator (forged or altered)" for one
  // whose signature does not match. Neither error repeats the token.
  absl::StatusOr<internal::TaskToken> Decode(const std::string& bytes) const;

 private:
  auth::TokenKey key_;
};

}  // namespace kiln::orchestrator
