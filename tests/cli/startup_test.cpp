// What `provisr` costs at every start: the shared libraries the dynamic loader must map and bind.
// OpenSSL, cpp-httplib and the config parsers are built in or left to provisr-tls (cli/CMakeLists.txt).
#include <unistd.h>

#include <catch2/catch.hpp>

#include "tests/support/run.hpp"

using namespace provisr::test;

TEST_CASE("provisr needs no TLS or HTTP or config-parser shared library and provisr-tls has the TLS", "[cli][startup]") {
  if (::access("/usr/bin/readelf", X_OK) != 0) {
    WARN("no /usr/bin/readelf: not checked");
    return;
  }
  auto lean = run({"/usr/bin/readelf", "-d", binPath("provisr")});
  REQUIRE(lean.exit_code == 0);
  INFO(lean.out);
  for (const char* lib : {"libssl", "libcrypto", "libcpp-httplib", "libbrotli", "libz.so", "libyaml-cpp", "libtomlplusplus", "libzmq"})
    CHECK(lean.out.find(lib) == std::string::npos);
  auto tls = run({"/usr/bin/readelf", "-d", binPath("provisr-tls")});
  REQUIRE(tls.exit_code == 0);
  CHECK(tls.out.find("libcpp-httplib") != std::string::npos);
}
