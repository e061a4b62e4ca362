#include "worker/deploy/deferred_target.h"

#include <atomic>
#include <thread>

#include <catch2/catch.hpp>

#include "absl/strings/match.h"
#include "absl/synchronization/notification.h"

namespace kiln::worker {
namespace {

// Records what reaches it.
class RecordingTarget : public DeployTarget {
 public:
  absl::StatusOr<DeployResult> Deploy(const DeployRequest& request, const DeployLogSink& log,
                                      const std::function<bool()>& cancelled) override {
    (void)log;
    (void)cancelled;
    deployed = request.deployment_id;
    DeployResult result;
    result.container = "c-" + request.deployment_id;
    return result;
  }
  absl::Status StopSlot(const std::string& project, const std::string& slot) override {
    stopped = project + "/" + slot;
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<SlotInfo>> List(const std::string& project) override {
    SlotInfo slot;
    slot.project = project;
    return std::vector<SlotInfo>{slot};
  }
  std::string deployed;
  std::string stopped;
};

constexpr absl::Duration kDeadline = absl::Seconds(30);

TEST_CASE("A deferred target is made off the caller's thread and calls wait for it", "[deploy]") {
  absl::Notification release;
  RecordingTarget* made = nullptr;
  // Were the target made on the constructing thread, the constructor would not return before
  // `release`, which this thread notifies only after it.
  DeferredDeployTarget target("fake",
                              [&](const auto&) -> absl::StatusOr<std::unique_ptr<DeployTarget>> {
                                release.WaitForNotification();
                                auto t = std::make_unique<RecordingTarget>();
                                made = t.get();
                                return t;
                              });
  CHECK(!target.WaitReady(absl::ZeroDuration()).has_value());

  std::vector<std::string> lines;
  absl::StatusOr<DeployResult> result = absl::UnknownError("not run");
  std::thread deploy([&] {
    DeployRequest request;
    request.deployment_id = "d1";
    result = target.Deploy(
        request, [&](std::string_view l) { lines.emplace_back(l); }, [] { return false; });
  });
  release.Notify();
  deploy.join();
  REQUIRE(result.ok());
  CHECK(result->container == "c-d1");
  REQUIRE(made != nullptr);
  CHECK(made->deployed == "d1");
  std::optional<absl::Status> ready = target.WaitReady(kDeadline);
  REQUIRE(ready.has_value());
  CHECK(ready->ok());
  CHECK(target.StopSlot("app", "production").ok());
  CHECK(made->stopped == "app/production");
  absl::StatusOr<std::vector<SlotInfo>> list = target.List("app");
  REQUIRE(list.ok());
  REQUIRE(list->size() == 1);
  CHECK((*list)[0].project == "app");
}

TEST_CASE("A deferred target that could not be made fails deploys with the reason", "[deploy]") {
  DeferredDeployTarget target("podman",
                              [](const auto&) -> absl::StatusOr<std::unique_ptr<DeployTarget>> {
                                return absl::UnavailableError("podman: command not found");
                              });
  std::optional<absl::Status> ready = target.WaitReady(kDeadline);
  REQUIRE(ready.has_value());
  CHECK(absl::IsUnavailable(*ready));

  absl::StatusOr<DeployResult> result = target.Deploy(DeployRequest{}, {}, [] { return false; });
  REQUIRE(absl::IsFailedPrecondition(result.status()));
  CHECK(absl::StrContains(result.status().message(), "podman deploy target is unavailable"));
  CHECK(absl::StrContains(result.status().message(), "command not found"));
  // Nothing of it runs here: stopping a slot has nothing to do.
  CHECK(target.StopSlot("app", "production").ok());
  CHECK(absl::IsFailedPrecondition(target.List("").status()));
}

TEST_CASE("A deploy cancelled while its deferred target gets ready ends cancelled", "[deploy]") {
  absl::Notification release;
  DeferredDeployTarget target(
      "fake",
      [&](const auto&) -> absl::StatusOr<std::unique_ptr<DeployTarget>> {
        release.WaitForNotification();
        return std::make_unique<RecordingTarget>();
      },
      /*check_every=*/absl::Milliseconds(10));
  std::atomic<int> asked{0};
  std::vector<std::string> lines;
  absl::StatusOr<DeployResult> result = target.Deploy(
      DeployRequest{}, [&](std::string_view l) { lines.emplace_back(l); },
      [&] { return asked.fetch_add(1) >= 1; });
  CHECK(absl::IsCancelled(result.status()));
  CHECK(asked.load() == 2);
  REQUIRE(!lines.empty());
  CHECK(absl::StrContains(lines[0], "waiting for the fake target"));
  release.Notify();  // The maker ends; the destructor joins it.
}

TEST_CASE("A deferred target destroyed while it is made tells its factory to give up", "[deploy]") {
  absl::Notification started;
  std::atomic<bool> saw_cancel{false};
  {
    // Without the signal this factory would wait for ever (podman waiting for its storage
    // lock), and the destructor with it.
    DeferredDeployTarget target("fake",
                                [&](const std::function<bool()>& cancelled)
                                    -> absl::StatusOr<std::unique_ptr<DeployTarget>> {
                                  started.Notify();
                                  while (!cancelled()) absl::SleepFor(absl::Milliseconds(1));
                                  saw_cancel = true;
                                  return absl::CancelledError("gave up");
                                });
    started.WaitForNotification();
    CHECK(!target.WaitReady(absl::ZeroDuration()).has_value());
  }
  CHECK(saw_cancel.load());
}

}  // namespace
}  // namespace kiln::worker
