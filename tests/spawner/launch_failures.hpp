// The failures a child reports by stage and errno, whichever path launched it (in process or
// through the fork server): a file that is not executable, and a cwd that is missing.
#pragma once

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <fstream>
#include <string>

#include "spawner/launcher.hpp"
#include "tests/spawner/test_support.hpp"

namespace provisr::spawner::test {

inline void checkStageFailures(const TempDir& dir, LaunchFailure& why) {
  SECTION("not executable") {
    const std::string f = dir.str("plain.txt");
    std::ofstream(f) << "hello\n";
    ::chmod(f.c_str(), 0644);
    LaunchRequest req;
    req.argv = {f};
    req.env = baseEnv();
    auto r = launch(req, &why);
    REQUIRE_FALSE(r.ok());
    CHECK(why.stage == "exec");
    CHECK(why.sysErrno == EACCES);
    CHECK(r.error().message.find("errno 13") != std::string::npos);
  }
  SECTION("missing cwd") {
    LaunchRequest req;
    req.argv = {helper("sleeper"), "0"};
    req.env = baseEnv();
    req.cwd = dir.str("missing");
    auto r = launch(req, &why);
    REQUIRE_FALSE(r.ok());
    CHECK(why.stage == "chdir");
    CHECK(why.sysErrno == ENOENT);
    CHECK(r.error().message.find(dir.str("missing")) != std::string::npos);
  }
}

}  // namespace provisr::spawner::test
