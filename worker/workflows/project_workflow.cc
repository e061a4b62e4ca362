#include "worker/workflows/project_workflow.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "sdk/converter.h"
#include "worker/workflows/platform.h"

namespace kiln::worker {
namespace {

using api::Payloads;
using sdk::FromPayloadAt;
using sdk::ToPayloads;

// The deployment running now: its child workflow's futures.
struct Active {
  std::string id;
  std::string branch;
  bool rollback = false;
  sdk::ChildWorkflow child;
};

template <class T>
void Prepend(google::protobuf::RepeatedPtrField<T>* list, T item, int limit) {
  list->Add(std::move(item));
  std::rotate(list->rbegin(), list->rbegin() + 1, list->rend());
  while (list->size() > limit) list->RemoveLast();
}

class Project {
 public:
  Project(sdk::WorkflowContext& ctx, pb::ProjectState state) : ctx_(ctx), state_(std::move(state)) {
    *state_.mutable_config() = WithDefaults(state_.config());
  }

  pb::ProjectState& state() { return state_; }
  std::optional<Active>& active() { return active_; }

  void UpsertAttributes() {
    api::SearchAttributes attributes;
    (*attributes.mutable_indexed_fields())[kAttrProjectId] = Keyword(state_.config().id());
    (*attributes.mutable_indexed_fields())[kAttrRepository] =
        Keyword(state_.config().repository_url());
    ctx_.UpsertSearchAttributes(attributes);
  }

  bool Known(const std::string& deployment_id) const {
    if (state_.active().id() == deployment_id) return true;
    for (const auto& push : state_.queue()) {
      if (push.deployment_id() == deployment_id) return true;
    }
    for (const auto& rollback : state_.rollbacks()) {
      if (rollback.deployment_id() == deployment_id) return true;
    }
    for (const auto& d : state_.recent()) {
      if (d.id() == deployment_id) return true;
    }
    return false;
  }

  // Records a deployment that ended (or never started) in the recent list.
  void Record(pb::Deployment deployment) {
    Prepend(state_.mutable_recent(), std::move(deployment), kMaxRecentDeployments);
  }

  void SupersedeActive(const std::string& by, const std::string& reason) {
    if (!active_ || state_.active().superseded_by() != "") return;
    state_.mutable_active()->set_superseded_by(by);
    ctx_.Log(LogLevel::kInfo, "project.supersede",
             {{"project", state_.config().id()}, {"deployment", active_->id}, {"by", by}});
    // The deployment reads who replaced it from the cancel's reason (and from the signal, which
    // runs that began before the reason existed rely on).
    const std::string replaced_by = by.empty() ? reason : by;
    (void)ctx_.SignalExternalWorkflow(DeploymentWorkflowId(active_->id), "", kSupersededSignal,
                                      ToPayloads(replaced_by));
    (void)ctx_.RequestCancelExternalWorkflow(DeploymentWorkflowId(active_->id), "",
                                             absl::StrCat(kSupersededCause, replaced_by));
  }

  void OnPush(const pb::PushRequest& push) {
    if (Known(push.deployment_id())) return;  // A signal delivered twice, or a redelivery.
    if (!BuildsBranch(state_.config(), push.branch())) {
      ctx_.Log(LogLevel::kInfo, "project.push_ignored",
               {{"project", state_.config().id()}, {"branch", push.branch()}});
      return;
    }
    // A push waiting on the same branch is replaced: it never starts.
    auto* queue = state_.mutable_queue();
    for (int i = 0; i < queue->size();) {
      if (queue->Get(i).branch() == push.branch()) {
        pb::Deployment dropped = FromPush(queue->Get(i));
        dropped.set_state(pb::DEPLOYMENT_STATE_CANCELED);
        dropped.set_superseded_by(push.deployment_id());
        dropped.set_error(absl::StrCat("superseded by ", push.deployment_id()));
        *dropped.mutable_finished_time() = TimestampOf(ctx_.Now());
        Record(std::move(dropped));
        queue->DeleteSubrange(i, 1);
      } else {
        ++i;
      }
    }
    if (active_ && active_->branch == push.branch() && !active_->rollback) {
      SupersedeActive(push.deployment_id(), "");
    }
    if (queue->size() >= kMaxQueuedPushes) {
      pb::Deployment dropped = FromPush(push);
      dropped.set_state(pb::DEPLOYMENT_STATE_FAILED);
      dropped.set_error(absl::StrCat("the project has ", kMaxQueuedPushes, " pushes waiting"));
      Record(std::move(dropped));
      return;
    }
    *queue->Add() = push;
  }

  void OnRollback(const pb::RollbackRequest& rollback) {
    if (Known(rollback.deployment_id())) return;
    if (state_.rollbacks_size() >= kMaxQueuedPushes) return;
    *state_.add_rollbacks() = rollback;
  }

  sdk::Task<void> OnDeleteBranch(const std::string& branch) {
    auto* queue = state_.mutable_queue();
    for (int i = 0; i < queue->size();) {
      if (queue->Get(i).branch() == branch) {
        queue->DeleteSubrange(i, 1);
      } else {
        ++i;
      }
    }
    if (active_ && active_->branch == branch) SupersedeActive("", "branch deleted");
    auto preview = state_.previews().find(branch);
    if (preview != state_.previews().end() && branch != state_.config().production_branch()) {
      co_await StopSlot(preview->second.slot());
      state_.mutable_previews()->erase(branch);
    }
  }

  void OnCancel(const pb::CancelDeploymentRequest& cancel) {
    auto* queue = state_.mutable_queue();
    for (int i = 0; i < queue->size(); ++i) {
      if (queue->Get(i).deployment_id() == cancel.deployment_id()) {
        pb::Deployment dropped = FromPush(queue->Get(i));
        dropped.set_state(pb::DEPLOYMENT_STATE_CANCELED);
        dropped.set_error(cancel.reason().empty() ? "canceled" : cancel.reason());
        Record(std::move(dropped));
        queue->DeleteSubrange(i, 1);
        return;
      }
    }
    if (active_ && active_->id == cancel.deployment_id()) {
      (void)ctx_.RequestCancelExternalWorkflow(DeploymentWorkflowId(active_->id), "");
    }
  }

  sdk::Task<void> StopSlot(const std::string& slot) {
    if (state_.config().deploy_target() == "none") co_return;
    pb::StopSlotInput input;
    input.set_project_id(state_.config().id());
    input.set_slot(slot);
    input.set_target(state_.config().deploy_target());
    sdk::ActivityOptions options;
    options.task_queue = kPlatformTaskQueue;
    options.start_to_close_timeout = absl::Minutes(1);
    options.retry_policy.set_maximum_attempts(5);
    auto stopped = co_await ctx_.ExecuteActivity(kStopSlotActivity, ToPayloads(input), options);
    if (!stopped.ok()) {
      ctx_.Log(LogLevel::kWarn, "project.stop_slot_failed",
               {{"project", state_.config().id()}, {"slot", slot}, {"status", stopped.status()}});
    }
  }

  // Starts the next deployment in line, if any and none runs.
  void StartNext() {
    if (active_ || state_.deleted()) return;
    pb::DeploymentRequest request;
    *request.mutable_config() = state_.config();
    bool rollback = false;
    if (!state_.rollbacks().empty()) {
      const pb::RollbackRequest& r = state_.rollbacks(0);
      request.set_deployment_id(r.deployment_id());
      request.set_branch(r.branch());
      request.set_commit_sha(r.commit_sha());
      request.set_trigger("rollback");
      request.set_image_digest(r.image_digest());
      request.set_image_reference(r.image_reference());
      request.set_rollback_of(r.target_deployment_id());
      *request.mutable_received_time() = r.received_time();
      state_.mutable_rollbacks()->DeleteSubrange(0, 1);
      rollback = true;
    } else if (!state_.queue().empty()) {
      const pb::PushRequest& p = state_.queue(0);
      request.set_deployment_id(p.deployment_id());
      request.set_branch(p.branch());
      request.set_commit_sha(p.commit_sha());
      request.set_trigger(p.trigger());
      request.set_message(p.message());
      *request.mutable_received_time() = p.received_time();
      state_.mutable_queue()->DeleteSubrange(0, 1);
    } else {
      return;
    }
    request.set_slot(SlotFor(state_.config(), request.branch()));
    if (request.slot() == kProductionSlot) {
      request.set_public_port(state_.config().port());
    } else {
      auto preview = state_.previews().find(request.branch());
      if (preview != state_.previews().end()) request.set_public_port(preview->second.port());
    }
    *request.mutable_known_builds() = state_.known_builds();

    pb::Deployment& active = *state_.mutable_active();
    active.Clear();
    active.set_id(request.deployment_id());
    active.set_project_id(state_.config().id());
    active.set_branch(request.branch());
    active.set_commit_sha(request.commit_sha());
    active.set_trigger(request.trigger());
    active.set_message(request.message());
    active.set_slot(request.slot());
    active.set_rollback_of(request.rollback_of());
    active.set_state(pb::DEPLOYMENT_STATE_QUEUED);
    active.set_workflow_id(DeploymentWorkflowId(request.deployment_id()));
    *active.mutable_created_time() = TimestampOf(ctx_.Now());
    *active.mutable_received_time() = request.received_time();
    state_.set_deployments_started(state_.deployments_started() + 1);

    sdk::ChildWorkflowOptions options;
    options.workflow_id = DeploymentWorkflowId(request.deployment_id());
    options.task_queue = kPlatformTaskQueue;
    options.parent_close_policy = api::PARENT_CLOSE_POLICY_REQUEST_CANCEL;
    active_ = Active{
        .id = request.deployment_id(),
        .branch = request.branch(),
        .rollback = rollback,
        .child = ctx_.ExecuteChildWorkflow(kDeploymentWorkflowType, ToPayloads(request), options)};
  }

  // The running deployment closed with `result`.
  void Finished(const absl::StatusOr<Payloads>& result) {
    pb::Deployment done = state_.active();
    active_.reset();
    state_.clear_active();
    *done.mutable_finished_time() = TimestampOf(ctx_.Now());
    if (result.ok()) {
      auto deployment = FromPayloadAt<pb::Deployment>(*result, 0);
      if (deployment.ok()) done = *deployment;
      done.set_state(pb::DEPLOYMENT_STATE_SUCCEEDED);
      if (!done.build_key().empty() && !done.image_digest().empty()) {
        pb::KnownBuild known;
        known.set_build_key(done.build_key());
        known.set_commit_sha(done.commit_sha());
        known.set_image_digest(done.image_digest());
        known.set_image_reference(done.image_reference());
        known.set_deployment_id(done.id());
        known.set_config_key(ConfigKey(state_.config()));
        auto* builds = state_.mutable_known_builds();
        for (int i = 0; i < builds->size(); ++i) {
          if (builds->Get(i).build_key() == known.build_key() &&
              builds->Get(i).commit_sha() == known.commit_sha()) {
            builds->DeleteSubrange(i, 1);
            break;
          }
        }
        Prepend(builds, std::move(known), kMaxKnownBuilds);
      }
      if (done.slot() == kProductionSlot) {
        *state_.mutable_production() = done;
      } else if (state_.config().deploy_target() != "none") {
        pb::Preview preview;
        preview.set_branch(done.branch());
        preview.set_slot(done.slot());
        preview.set_url(done.url());
        preview.set_deployment_id(done.id());
        int port = 0;
        if (auto colon = done.url().rfind(':'); colon != std::string::npos) {
          port = std::atoi(done.url().c_str() + colon + 1);
        }
        preview.set_port(port);
        if (state_.previews_size() < kMaxPreviews || state_.previews().contains(done.branch())) {
          (*state_.mutable_previews())[done.branch()] = preview;
        }
      }
    } else if (absl::IsCancelled(result.status())) {
      done.set_state(pb::DEPLOYMENT_STATE_CANCELED);
      done.set_error(done.superseded_by().empty()
                         ? std::string(result.status().message())
                         : absl::StrCat("superseded by ", done.superseded_by()));
    } else {
      done.set_state(pb::DEPLOYMENT_STATE_FAILED);
      done.set_error(std::string(result.status().message()));
    }
    ctx_.Log(LogLevel::kInfo, "project.deployment_finished",
             {{"project", state_.config().id()},
              {"deployment", done.id()},
              {"state", StateWord(done.state())}});
    Record(std::move(done));
  }

  sdk::Task<void> DeleteEverything() {
    state_.set_deleted(true);
    state_.clear_queue();
    state_.clear_rollbacks();
    if (active_) SupersedeActive("", "project deleted");
    if (!state_.production().id().empty()) co_await StopSlot(kProductionSlot);
    for (const auto& [branch, preview] : state_.previews()) co_await StopSlot(preview.slot());
    state_.clear_previews();
  }

 private:
  pb::Deployment FromPush(const pb::PushRequest& push) {
    pb::Deployment d;
    d.set_id(push.deployment_id());
    d.set_project_id(state_.config().id());
    d.set_branch(push.branch());
    d.set_commit_sha(push.commit_sha());
    d.set_trigger(push.trigger());
    d.set_message(push.message());
    d.set_workflow_id(DeploymentWorkflowId(push.deployment_id()));
    *d.mutable_received_time() = push.received_time();
    *d.mutable_created_time() = TimestampOf(ctx_.Now());
    return d;
  }

  sdk::WorkflowContext& ctx_;
  pb::ProjectState state_;
  std::optional<Active> active_;
};

}  // namespace

sdk::Task<absl::StatusOr<Payloads>> ProjectWorkflow(sdk::WorkflowContext& ctx, Payloads input) {
  auto initial = FromPayloadAt<pb::ProjectState>(input, 0);
  if (!initial.ok()) co_return initial.status();
  // Shared with the query handlers, which may answer after the coroutine has finished.
  auto project = std::make_shared<Project>(ctx, *std::move(initial));
  Project* p = project.get();
  if (!IsSet(p->state().created_time())) {
    *p->state().mutable_created_time() = TimestampOf(ctx.Now());
  }
  ctx.SetQueryHandler(kStateQuery, [project](const Payloads&) -> absl::StatusOr<Payloads> {
    return ToPayloads(project->state());
  });
  ctx.SetQueryHandler(kConfigQuery, [project](const Payloads&) -> absl::StatusOr<Payloads> {
    return ToPayloads(project->state().config());
  });
  p->UpsertAttributes();

  sdk::SignalChannel& events = ctx.GetSignalChannel(kProjectEventSignal);
  sdk::Future<Payloads> next_event = events.Receive();
  // Awaited in place of a child's result while no deployment runs: it never resolves.
  auto never_state = std::make_shared<sdk::Future<absl::StatusOr<Payloads>>::State>();
  never_state->scheduler = next_event.state()->scheduler;
  const sdk::Future<absl::StatusOr<Payloads>> never(never_state);
  int handled = 0;

  while (true) {
    p->StartNext();
    if (p->state().deleted() && !p->active()) co_return ToPayloads(p->state());
    if (!p->active() && handled >= kProjectEventsPerRun && !next_event.ready() &&
        events.pending() == 0) {
      co_return ctx.ContinueAsNew(ToPayloads(p->state()));
    }
    sdk::Future<absl::StatusOr<Payloads>> child = p->active() ? p->active()->child.result : never;
    size_t first = co_await sdk::WhenAny(next_event, child);
    if (first == 1 || (child.ready() && p->active())) {
      p->Finished(child.value());
      continue;
    }
    Payloads payload = next_event.value();
    next_event = events.Receive();
    ++handled;
    auto event = FromPayloadAt<pb::ProjectEvent>(payload, 0);
    if (!event.ok()) {
      ctx.Log(LogLevel::kWarn, "project.bad_event", {{"status", event.status()}});
      continue;
    }
    switch (event->event_case()) {
      case pb::ProjectEvent::kPush:
        p->OnPush(event->push());
        break;
      case pb::ProjectEvent::kUpdateConfig: {
        pb::ProjectConfig config = WithDefaults(event->update_config());
        config.set_id(p->state().config().id());
        *p->state().mutable_config() = config;
        p->UpsertAttributes();
        break;
      }
      case pb::ProjectEvent::kDeleteBranch:
        co_await p->OnDeleteBranch(event->delete_branch());
        break;
      case pb::ProjectEvent::kRollback:
        p->OnRollback(event->rollback());
        break;
      case pb::ProjectEvent::kCancel:
        p->OnCancel(event->cancel());
        break;
      case pb::ProjectEvent::kDeleteProject:
        co_await p->DeleteEverything();
        break;
      case pb::ProjectEvent::EVENT_NOT_SET:
        break;
    }
  }
}

}  // namespace kiln::worker
