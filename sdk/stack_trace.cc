// The stack trace: what a WorkflowInstance's code waits on, read from the bookkeeping its awaits
// already keep (nothing is recorded for it on the way), and its JSON encoding.
#include "sdk/stack_trace.h"

#include <string>
#include <string_view>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "sdk/workflow_instance.h"

namespace kiln::sdk {
namespace {

// What the compiler put before "sdk/stack_trace.cc" in this file's name ("../../" in a build
// directory two levels down, or an absolute path): workflow code built in the same tree has the
// same in front of its files, and its locations are shown relative to the tree without it.
std::string_view SourceRoot() {
  static const std::string_view root = [] {
    constexpr std::string_view kSelf = "sdk/stack_trace.cc";
    std::string_view file = __FILE__;
    return file.ends_with(kSelf) ? file.substr(0, file.size() - kSelf.size()) : std::string_view();
  }();
  return root;
}

api::PendingAwait* Add(api::WorkflowStackTrace& trace, api::AwaitKind kind, bool awaited,
                       const SourceLocation& where) {
  api::PendingAwait* pending = trace.add_pending();
  pending->set_kind(kind);
  pending->set_awaited(awaited);
  if (where.line > 0) {
    std::string_view file = where.file;
    if (!SourceRoot().empty() && file.starts_with(SourceRoot())) {
      file.remove_prefix(SourceRoot().size());
    }
    pending->mutable_location()->set_file(std::string(file));
    pending->mutable_location()->set_line(where.line);
    pending->mutable_location()->set_function(where.function);
  }
  return pending;
}

}  // namespace

api::WorkflowStackTrace WorkflowInstance::StackTrace() const {
  api::WorkflowStackTrace trace;
  trace.set_workflow_id(info_.workflow_id);
  trace.set_run_id(info_.run_id);
  trace.set_workflow_type(info_.workflow_type);
  if (completed_) return trace;  // The code returned: it waits on nothing.
  for (const auto& [id, activity] : activities_) {
    auto* p = Add(trace, api::AWAIT_KIND_ACTIVITY, activity.future.awaited(), activity.where);
    p->set_activity_id(id);
    p->set_activity_type(activity.type);
  }
  for (const auto& [id, timer] : timers_) {
    auto* p = Add(trace, api::AWAIT_KIND_TIMER, timer.future.awaited(), timer.where);
    p->set_timer_id(id);
    ToProto(timer.duration, p->mutable_timer_duration());
    ToProto(timer.fire_time, p->mutable_fire_time());
  }
  for (const auto& [id, child] : children_) {
    const bool awaited = child.futures.result.awaited() || child.futures.started.awaited();
    auto* p = Add(trace, api::AWAIT_KIND_CHILD_WORKFLOW, awaited, child.where);
    p->set_workflow_id(child.workflow_id);
    p->set_workflow_type(child.type);
    p->set_child_started(child.futures.started.ready() && child.futures.started.value().ok());
  }
  for (const auto& [seq, external] : externals_) {
    auto* p = Add(trace,
                  external.signal_name.empty() ? api::AWAIT_KIND_EXTERNAL_CANCEL
                                               : api::AWAIT_KIND_EXTERNAL_SIGNAL,
                  external.future.awaited(), external.where);
    p->set_workflow_id(external.workflow_id);
    p->set_signal_name(external.signal_name);
  }
  for (const auto& [name, channel] : channels_) {
    for (const SignalChannel::Waiting& waiting : channel->waiting_) {
      auto* p = Add(trace, api::AWAIT_KIND_SIGNAL, waiting.future.awaited(), waiting.where);
      p->set_signal_name(name);
    }
  }
  for (const PendingCondition& condition : conditions_) {
    Add(trace, api::AWAIT_KIND_CONDITION, condition.future.awaited(), condition.where);
  }
  if (cancellation_.has_value() && !cancellation_->ready()) {
    Add(trace, api::AWAIT_KIND_CANCELLATION, cancellation_->awaited(), cancellation_where_);
  }
  return trace;
}

api::Payloads EncodeStackTrace(const api::WorkflowStackTrace& trace) {
  std::string json;
  // Only a message holding an Any of an unknown type fails to print; this one has none.
  (void)google::protobuf::util::MessageToJsonString(trace, &json);
  api::Payloads payloads;
  api::Payload* payload = payloads.add_payloads();
  (*payload->mutable_metadata())["encoding"] = "json/plain";
  payload->set_data(std::move(json));
  return payloads;
}

absl::StatusOr<api::WorkflowStackTrace> DecodeStackTrace(const api::Payloads& payloads) {
  if (payloads.payloads_size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("a stack trace is one payload; the answer has ", payloads.payloads_size()));
  }
  api::WorkflowStackTrace trace;
  google::protobuf::util::JsonParseOptions options;
  // A newer SDK may add fields: what this build knows is still worth showing.
  options.ignore_unknown_fields = true;
  auto status =
      google::protobuf::util::JsonStringToMessage(payloads.payloads(0).data(), &trace, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the answer is not a Kiln stack trace: ", status.ToString()));
  }
  return trace;
}

}  // namespace kiln::sdk
