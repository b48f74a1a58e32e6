// `provisr`: the command-line entry point; parses the verb and hands it to its handler.
#include <cstdio>
#include <string>

#include "common/util/version.hpp"

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "version") {
    std::printf("provisr %.*s\n", static_cast<int>(provisr::version().size()), provisr::version().data());
    return 0;
  }
  std::fprintf(stderr, "usage: provisr <verb> [flags]\n");
  return 2;
}
