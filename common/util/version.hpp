// The provisr version string, set by the build.
#pragma once

#include <string_view>

namespace provisr {
std::string_view version();
}
