// Test helper: writes N sequence-numbered lines "<tag> <seq> <padding>" to stdout, stderr or both,
// each line optionally in two write() calls so a partial line often sits in the pipe.
// usage: chatty N [out|err|both] [line_length] [tag] [split]
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

bool writeAll(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  long count = argc > 1 ? std::atol(argv[1]) : 10;
  std::string where = argc > 2 ? argv[2] : "out";
  std::size_t len = argc > 3 ? static_cast<std::size_t>(std::atol(argv[3])) : 40;
  std::string tag = argc > 4 ? argv[4] : "chatty";
  bool split = argc > 5 && std::strcmp(argv[5], "split") == 0;
  std::string line;
  for (long i = 0; i < count; ++i) {
    line = tag + " " + std::to_string(i) + " ";
    while (line.size() + 1 < len) line.push_back(static_cast<char>('a' + (line.size() % 26)));
    line.push_back('\n');
    for (int fd : {1, 2}) {
      if ((fd == 1 && where == "err") || (fd == 2 && where == "out")) continue;
      std::size_t half = split ? line.size() / 2 : line.size();
      if (!writeAll(fd, line.data(), half) || !writeAll(fd, line.data() + half, line.size() - half)) return 3;
    }
  }
  return 0;
}
