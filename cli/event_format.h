// History events as one line of text each, the way `kiln workflow history` prints them:
//     5  2026-11-27T14:00:00.123Z  ActivityTaskScheduled  activity_id=a type=greet input=x
// Names are Temporal's CamelCase event names; the attributes are the few that matter for each
// kind of event, as key=value with payload data cut short.
#pragma once

#include <string>

#include "kiln/api/v1/history.pb.h"

namespace kiln::cli {

// "ActivityTaskScheduled"; "EventType(99)" for a type this build does not know.
std::string EventTypeName(api::v1::EventType type);

// The event's key attributes, "activity_id=a type=greet"; empty when it has none.
std::string EventAttributesSummary(const api::v1::HistoryEvent& event);

// The whole line, without a trailing newline.
std::string FormatEventLine(const api::v1::HistoryEvent& event);

}  // namespace kiln::cli
