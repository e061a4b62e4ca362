// AbslView: std::string_view to absl::string_view. This Abseil build has its own absl::string_view
// class rather than an alias of std::string_view (ABSL_OPTION_USE_STD_STRING_VIEW is 0 in
// absl/base/options.h), and the two do not convert. Kiln's interfaces take std::string_view; this
// converts one where it is handed to Abseil.
#pragma once

#include <string_view>

#include "absl/strings/string_view.h"

namespace kiln {

inline absl::string_view AbslView(std::string_view text) {
  return absl::string_view(text.data(), text.size());
}

}  // namespace kiln
