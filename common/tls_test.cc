// TLS files and the listener warning (tls.h). The TLS handshakes themselves are tested against
// the real binaries (tests/integration/auth_test.cc).
#include "common/tls.h"

#include <catch2/catch.hpp>

#include <fstream>

#include "tests/testutil/process.h"

namespace kiln {
namespace {

TEST_CASE("A listener beyond loopback without TLS is warned about") {
  // Decided from the host alone (nothing here binds beyond loopback).
  CHECK_FALSE(IsLoopbackHost("0.0.0.0"));
  CHECK_FALSE(IsLoopbackHost("10.1.2.3"));
  CHECK_FALSE(IsLoopbackHost("[::]"));
  CHECK(IsLoopbackHost("127.0.0.1"));
  CHECK(IsLoopbackHost("[::1]"));
  CHECK(IsLoopbackHost("localhost"));
  CHECK(WarnIfExposedWithoutTls("kiln-test", "the listener (--listen)", "0.0.0.0", false));
  CHECK_FALSE(WarnIfExposedWithoutTls("kiln-test", "the listener (--listen)", "0.0.0.0", true));
  CHECK_FALSE(WarnIfExposedWithoutTls("kiln-test", "the listener (--listen)", "127.0.0.1", false));
}

TEST_CASE("TLS files are read or refused by the flag that names them") {
  testutil::TempDir dir;
  const std::string pem = dir.path() + "/ca.pem";
  std::ofstream(pem) << "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n";
  auto none = ReadClientTls("", "", "");
  REQUIRE(none.ok());
  CHECK_FALSE(none->enabled);
  auto ca_only = ReadClientTls(pem, "", "", "--orchestrator-tls");
  REQUIRE(ca_only.ok());
  CHECK(ca_only->enabled);
  CHECK(ca_only->root_certs.find("BEGIN CERTIFICATE") != std::string::npos);
  auto missing = ReadClientTls(dir.path() + "/nope.pem", "", "", "--orchestrator-tls");
  REQUIRE(absl::IsInvalidArgument(missing.status()));
  CHECK(missing.status().message().find("--orchestrator-tls-ca: cannot read") == 0);
  auto half = ReadClientTls("", pem, "", "--tls");
  CHECK(absl::IsInvalidArgument(half.status()));
  auto listener = ListenerCredentials(pem, "", "");
  REQUIRE(absl::IsInvalidArgument(listener.status()));
  CHECK(listener.status().message().find("--tls-cert and --tls-key") == 0);
  CHECK(ListenerCredentials("", "", "").ok());
}

}  // namespace
}  // namespace kiln
