// tls_handoff.hpp for `provisr`, which has no TLS: every TLS need is handed to provisr-tls.
#include "cli/tls_handoff.hpp"

#include <limits.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace provisr::cli {

namespace {

struct Invocation {
  int argc = 0;
  char** argv = nullptr;
};

// Set once by main() before any verb runs.
Invocation& invocation() {
  static Invocation inv;
  return inv;
}

// provisr-tls in the directory of this executable.
std::string siblingPath() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  std::string self = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
  auto slash = self.rfind('/');
  std::string dir = slash == std::string::npos ? std::string(".") : self.substr(0, slash);
  return dir + "/provisr-tls";
}

}  // namespace

void rememberInvocation(int argc, char** argv) { invocation() = Invocation{argc, argv}; }

bool tlsBuiltIn() { return false; }

void handOffToTls(const char* why) {
  const std::string path = siblingPath();
  const Invocation& inv = invocation();
  std::vector<char*> args;
  // argv[0] stays what the user typed: usage and help text name `provisr`.
  for (int i = 0; i < inv.argc; ++i) args.push_back(inv.argv[i]);
  if (args.empty()) args.push_back(const_cast<char*>("provisr"));
  args.push_back(nullptr);
  std::fflush(stdout);
  std::fflush(stderr);
  ::execv(path.c_str(), args.data());
  std::fprintf(stderr, "provisr: %s needs TLS, which provisr hands to %s: %s\nhint: provisr-tls is installed beside provisr by `cmake --install`\n",
               why, path.c_str(), std::strerror(errno));
  std::exit(1);
}

HttpResponse tlsRequest(const std::string&, const std::optional<std::string>&, const std::optional<std::string>&,
                        std::string_view, const std::string&, const std::string&,
                        const std::function<bool(std::string_view)>*) {
  handOffToTls("an https:// daemon URL");
}

bool tlsPairLoads(const std::string&, const std::string&) { handOffToTls("[server.tls]"); }

}  // namespace provisr::cli
