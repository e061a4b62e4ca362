#include "worker/deploy/deploy_target.h"

#include <catch2/catch.hpp>

#include "absl/strings/match.h"
#include "worker/deploy/none_target.h"

namespace kiln::worker {
namespace {

TEST_CASE("PreviewSlot keeps a clean branch and marks a changed or long one", "[deploy]") {
  CHECK(PreviewSlot("feature-x") == "preview-feature-x");
  CHECK(PreviewSlot("fix-42") == "preview-fix-42");

  std::string changed = PreviewSlot("Feature/Login_Page");
  CHECK(absl::StartsWith(changed, "preview-feature-login-page-"));
  CHECK(changed.size() == std::string("preview-feature-login-page-").size() + 8);
  // Two branches that clean up alike stay apart.
  CHECK(PreviewSlot("feature/login") != PreviewSlot("feature-login"));
  CHECK(PreviewSlot("Feature/Login") != PreviewSlot("feature/login"));
  // Stable: a restarted worker finds the same slot.
  CHECK(PreviewSlot("Feature/Login_Page") == changed);

  std::string long_branch(100, 'a');
  std::string slot = PreviewSlot(long_branch);
  CHECK(slot.size() == 40);
  CHECK(PreviewSlot(long_branch + "b") != slot);

  for (const std::string& branch : {std::string("///"), std::string(""), std::string("--a--"),
                                    std::string("ü-ber"), std::string(60, '/') + "x"}) {
    std::string s = PreviewSlot(branch);
    INFO(branch << " -> " << s);
    CHECK(s.size() <= 40);
    CHECK(absl::StartsWith(s, "preview-"));
    CHECK(s.back() != '-');
    for (char c : s) CHECK(((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'));
    CHECK(s.find("--") == std::string::npos);
  }
}

TEST_CASE("the none target runs nothing and answers at once", "[deploy]") {
  NoneDeployTarget target;
  DeployRequest r;
  r.project = "app";
  r.slot = kProductionSlot;
  r.image = "127.0.0.1:5000/app@sha256:00";
  std::vector<std::string> lines;
  auto result = target.Deploy(r, [&](std::string_view l) { lines.emplace_back(l); }, {});
  REQUIRE(result.ok());
  CHECK(result->container.empty());
  CHECK(result->public_port == 0);
  CHECK(lines.size() == 1);
  CHECK(target.StopSlot("app", kProductionSlot).ok());
  auto list = target.List("");
  REQUIRE(list.ok());
  CHECK(list->empty());
}

}  // namespace
}  // namespace kiln::worker
