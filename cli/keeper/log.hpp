// The keeper's own log lines: `<RFC 3339 UTC ms> provisr-keeper[pid]: message` on stderr.
#pragma once

#include <string>
#include <string_view>

#include "common/util/clock.hpp"

namespace provisr::keeper {

// "2026-11-27T15:04:05.123Z".
std::string rfc3339Ms(WallTime t);

// Milliseconds since the Unix epoch.
std::int64_t unixMs(WallTime t);

// Writes one whole line to stderr with one write(2), so lines of several processes never mix.
void logLine(std::string_view message);

}  // namespace provisr::keeper
