#include "common/status.h"

#include <catch2/catch.hpp>

#include "common/rpc_status.h"

namespace kiln {
namespace {

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError("odd");
  return x / 2;
}

absl::StatusOr<int> Quarter(int x) {
  ASSIGN_OR_RETURN(int half, Half(x));
  ASSIGN_OR_RETURN(int quarter, Half(half));
  return quarter;
}

absl::Status CheckEven(int x) {
  RETURN_IF_ERROR(Half(x).status());
  return absl::OkStatus();
}

TEST_CASE("ASSIGN_OR_RETURN passes values and returns the first error") {
  REQUIRE(Quarter(8).value() == 2);
  auto odd = Quarter(6);
  REQUIRE(odd.status().code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(CheckEven(3).code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(CheckEven(4).ok());
}

TEST_CASE("Annotate keeps the code and prefixes the message") {
  absl::Status s = Annotate(absl::NotFoundError("no such run"), "describe");
  REQUIRE(s.code() == absl::StatusCode::kNotFound);
  REQUIRE(s.message() == "describe: no such run");
  REQUIRE(Annotate(absl::OkStatus(), "x").ok());
}

TEST_CASE("gRPC and absl status codes map both ways") {
  grpc::Status g = ToGrpc(absl::FailedPreconditionError("stale task"));
  REQUIRE(g.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
  REQUIRE(g.error_message() == "stale task");
  absl::Status a = FromGrpc(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "limit"));
  REQUIRE(a.code() == absl::StatusCode::kResourceExhausted);
  REQUIRE(FromGrpc(grpc::Status::OK).ok());
}

}  // namespace
}  // namespace kiln
