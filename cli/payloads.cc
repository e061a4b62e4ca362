// --input to payload encoding; see payloads.h.
#include "cli/payloads.h"

#include <string>

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

namespace kiln::cli {

api::v1::Payloads EncodeInput(absl::string_view text) {
  // google.protobuf.Value takes any JSON value, so this is a JSON syntax check.
  google::protobuf::Value parsed;
  bool is_json = google::protobuf::util::JsonStringToMessage(std::string(text), &parsed).ok();
  api::v1::Payloads payloads;
  auto* payload = payloads.add_payloads();
  (*payload->mutable_metadata())["encoding"] = is_json ? "json/plain" : "text/plain";
  payload->set_data(std::string(text));
  return payloads;
}

}  // namespace kiln::cli
