// Copies one protobuf message into another of a different type, field by field by name (not by
// number): Temporal's API and the engine's name their fields alike but number some of them
// differently (HistoryEvent, commands, most request envelopes). Enums map by value name.
//
// - A field the target lacks is skipped (the translator checks the ones that matter itself).
// - Message types in `wire_compatible` (the same fields under the same numbers, e.g. Payloads,
//   Failure) are copied through their encoding instead, so fields only one side knows travel
//   as unknown fields and come back intact (Failure.encoded_attributes, a child workflow's
//   failure info).
// - An enum value the target does not have is an error (UNIMPLEMENTED: Kiln lacks it), naming
//   the field path and the value.
// - Fields of the same name but another kind (a string against a message) are skipped.
#pragma once

#include <functional>
#include <string>

#include <google/protobuf/message.h>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"

namespace kiln::orchestrator {

struct CopyOptions {
  // Full names of the source's message types that are copied through their encoding.
  const absl::flat_hash_set<std::string>* wire_compatible = nullptr;
  // Called on every target message after it was filled (fills defaults the target's side
  // expects, e.g. a task queue's kind).
  std::function<void(google::protobuf::Message&)> fixup;
};

absl::Status CopyByName(const google::protobuf::Message& from, google::protobuf::Message* to,
                        const CopyOptions& options);

}  // namespace kiln::orchestrator
