// Formatting and writing the keeper's log lines.
#include "cli/keeper/log.hpp"

#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

namespace provisr::keeper {

std::int64_t unixMs(WallTime t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

std::string rfc3339Ms(WallTime t) {
  const std::int64_t ms = unixMs(t);
  const time_t secs = static_cast<time_t>(ms / 1000);
  tm parts{};
  ::gmtime_r(&secs, &parts);
  char buf[80];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", parts.tm_year + 1900, parts.tm_mon + 1,
                parts.tm_mday, parts.tm_hour, parts.tm_min, parts.tm_sec, static_cast<int>(ms % 1000));
  return buf;
}

void logLine(std::string_view message) {
  std::string line = rfc3339Ms(std::chrono::system_clock::now());
  line += " provisr-keeper[";
  line += std::to_string(::getpid());
  line += "]: ";
  line += message;
  line += '\n';
  std::size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(STDERR_FILENO, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // nowhere to log: nothing better to do
    done += static_cast<std::size_t>(n);
  }
}

}  // namespace provisr::keeper
