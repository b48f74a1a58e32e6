// The provisr version string, set by the build.
#include "common/util/version.hpp"

namespace provisr {
std::string_view version() { return PROVISR_VERSION; }
}  // namespace provisr
