#include "builder-agent/podman/host_profile.h"

#include <catch2/catch.hpp>

namespace kiln::builder {
namespace {

TEST_CASE("a host profile reads back what it wrote") {
  HostProfile p;
  p.key = "v1 podman 4.3.1";
  p.runtime = "runc";
  p.cgroup_manager = "cgroupfs";
  p.ulimits = {"nofile=20000:20000", "nproc=96365:96365"};
  p.isolate = true;
  auto back = HostProfile::Parse(p.Serialize());
  REQUIRE(back.ok());
  CHECK(back->key == p.key);
  CHECK(back->runtime == "runc");
  CHECK(back->cgroup_manager == "cgroupfs");
  CHECK(back->ulimits == p.ulimits);
  CHECK(back->isolate);
  CHECK_FALSE(back->from_cache);

  p.ulimits.clear();
  p.isolate = false;
  back = HostProfile::Parse(p.Serialize());
  REQUIRE(back.ok());
  CHECK(back->ulimits.empty());
  CHECK_FALSE(back->isolate);
}

TEST_CASE("an incomplete host profile is refused, so the host is probed again") {
  CHECK_FALSE(HostProfile::Parse("").ok());
  CHECK_FALSE(HostProfile::Parse("key=v1 podman 4.3.1\nruntime=runc\n").ok());
  CHECK_FALSE(HostProfile::Parse("runtime=runc\ncgroup_manager=cgroupfs\n").ok());
}

}  // namespace
}  // namespace kiln::builder
