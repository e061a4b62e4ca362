// The visibility query language (kiln workflow list --query, ListWorkflowExecutions): any text
// parses or fails with kInvalidArgument; a query that parses prints as canonical text that
// parses back to the same canonical text (when that text is within the size limit); matching and
// ordering a record never crash.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "absl/status/status.h"
#include "orchestrator/visibility/search_attributes.h"
#include "orchestrator/visibility/visibility_query.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto query = kiln::orchestrator::ParseVisibilityQuery(text);
  if (!query.ok()) {
    if (query.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
    return 0;
  }
  // Printing escapes (CR as \r, quotes): the canonical text of a query near the size limit can
  // be longer than a query may be, and only then is it refused.
  const std::string canonical = query->ToString();
  auto again = kiln::orchestrator::ParseVisibilityQuery(canonical);
  if (canonical.size() <= kiln::orchestrator::kMaxVisibilityQueryBytes &&
      (!again.ok() || again->ToString() != canonical)) {
    std::abort();
  }

  kiln::internal::v1::VisibilityRecord a, b;
  a.set_workflow_id("order-17");
  a.set_status(kiln::api::v1::WORKFLOW_EXECUTION_STATUS_RUNNING);
  a.mutable_start_time()->set_seconds(1714564800);
  (*a.mutable_search_attributes()->mutable_indexed_fields())["Project"] =
      kiln::orchestrator::KeywordAttribute("web");
  (*a.mutable_search_attributes()->mutable_indexed_fields())["Priority"] =
      kiln::orchestrator::IntAttribute(3);
  b.set_workflow_id("order-18");
  b.set_status(kiln::api::v1::WORKFLOW_EXECUTION_STATUS_COMPLETED);
  (void)query->Matches(a);
  (void)query->Matches(b);
  // A strict weak order: never both ways.
  if (query->OrderedBefore(a, b) && query->OrderedBefore(b, a)) std::abort();
  return 0;
}
