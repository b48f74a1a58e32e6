// Result<T> and the error-code names.
#include <catch2/catch.hpp>

#include "common/util/clock.hpp"
#include "common/util/result.hpp"

using namespace provisr;

TEST_CASE("Result carries a value or an error", "[common]") {
  Result<int> good = 42;
  REQUIRE(good.ok());
  CHECK(*good == 42);
  Result<int> bad = makeError(ErrorCode::kNotFound, "no such program: web");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == ErrorCode::kNotFound);
  CHECK(bad.error().message == "no such program: web");
  CHECK(errorCodeName(bad.error().code) == "not_found");
  Status s;
  CHECK(s.ok());
  Status f = makeError(ErrorCode::kConflict, "provisioned");
  CHECK_FALSE(f.ok());
}

TEST_CASE("FakeClock moves only when told", "[common]") {
  FakeClock c;
  auto t0 = c.now();
  auto w0 = c.wallNow();
  CHECK(c.now() == t0);
  c.advance(std::chrono::milliseconds(1500));
  CHECK(c.now() - t0 == std::chrono::milliseconds(1500));
  CHECK(c.wallNow() - w0 == std::chrono::milliseconds(1500));
}
