// How the CLI turns a --input value into the payload a workflow receives: valid JSON is sent
// as "json/plain", anything else as "text/plain", the data being the text as typed.
#pragma once

#include "absl/strings/string_view.h"
#include "kiln/api/v1/common.pb.h"

namespace kiln::cli {

api::v1::Payloads EncodeInput(absl::string_view text);

}  // namespace kiln::cli
