// A history as the CLI receives it (kiln workflow history): any History message, whatever its
// events hold, formats to lines without crashing, one line per event, none empty.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "cli/event_format.h"
#include "kiln/api/v1/history.pb.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kiln::api::v1::History history;
  if (!history.ParseFromArray(data, static_cast<int>(size))) return 0;
  for (const auto& event : history.events()) {
    const std::string line = kiln::cli::FormatEventLine(event);
    if (line.empty() || line.find('\n') != std::string::npos) std::abort();
  }
  return 0;
}
