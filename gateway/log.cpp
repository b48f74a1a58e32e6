// stderr log lines with the component's prefix.
#include "gateway/log.hpp"

#include <unistd.h>

#include <chrono>
#include <string>

#include "gateway/translate.hpp"

namespace provisr::gateway {

void logLine(std::string_view message) {
  const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  std::string line = rfc3339Ms(now) + " provisr-gateway[" + std::to_string(::getpid()) + "]: ";
  line.append(message);
  line.push_back('\n');
  [[maybe_unused]] auto n = ::write(2, line.data(), line.size());
}

}  // namespace provisr::gateway
