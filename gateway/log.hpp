// The gateway's own log lines on stderr: `<RFC 3339 UTC ms> provisr-gateway[pid]: message`.
#pragma once

#include <string_view>

namespace provisr::gateway {

// One write(2) per line, so lines from several threads never interleave.
void logLine(std::string_view message);

}  // namespace provisr::gateway
