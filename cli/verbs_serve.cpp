// `provisr serve` (validate, then exec the keeper) and `provisr completion bash`.
#include <limits.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <vector>

#include "cli/cli.hpp"
#include "cli/tls_handoff.hpp"
#include "common/config/loader.hpp"
#include "common/config/privilege.hpp"

namespace provisr::cli {

namespace fs = std::filesystem;

namespace {

// The directory holding this executable: the keeper and the trio are installed beside it.
std::string selfDir() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  return fs::path(std::string(buf, static_cast<std::size_t>(n))).parent_path().string();
}

}  // namespace

int runServe(const ServeOptions& serve) {
  config::LoadOptions opts;
  auto loaded = config::loadConfig(serve.config, opts);
  if (!loaded.ok()) {
    for (const auto& d : loaded.diagnostics) std::cerr << d.str() << "\n";
    auto n = loaded.errors().size();
    std::cerr << "provisr: " << serve.config << ": invalid configuration (" << n << (n == 1 ? " error" : " errors")
              << "); nothing was started\n";
    return kExitFailed;
  }
  const auto& cfg = *loaded.config;
  // The certificate check needs OpenSSL: provisr-tls runs this serve from the start (before
  // anything is printed, so the warnings appear once).
  if (cfg.server.tls.cert_file && cfg.server.tls.key_file && !tlsBuiltIn()) handOffToTls("serve with [server.tls]");
  for (const auto& d : loaded.diagnostics) std::cerr << d.str() << "\n";
  std::string run_dir = cfg.daemon.run_dir;
  if (const char* env = std::getenv("PROVISR_RUN_DIR"); env && *env) run_dir = env;
  if (serve.run_dir) run_dir = *serve.run_dir;
  run_dir = fs::absolute(run_dir).lexically_normal().string();

  // The certificate and key load as the gateway will load them: a bad pair is a config error
  // here, not a gateway in a crash loop.
  if (cfg.server.tls.cert_file && cfg.server.tls.key_file) {
    if (!tlsPairLoads(*cfg.server.tls.cert_file, *cfg.server.tls.key_file)) {
      std::cerr << cfg.file << ": server.tls: cannot load the certificate " << *cfg.server.tls.cert_file
                << " with the key " << *cfg.server.tls.key_file
                << " (unreadable, not PEM, or the key does not match the certificate); nothing was started\n";
      return kExitFailed;
    }
  }
  // Master and gateway drop to `[daemon] user`: give them the run_dir layout of DESIGN §2.
  auto account = config::daemonAccount(cfg.daemon.user);
  if (!account) {
    std::cerr << "provisr: daemon.user: " << account.error().message << "; nothing was started\n";
    return kExitFailed;
  }
  if (*account) {
    if (auto st = config::prepareRunDir(run_dir, **account); !st) {
      std::cerr << "provisr: run_dir " << run_dir << ": " << st.error().message << "; nothing was started\n";
      return kExitFailed;
    }
  }

  std::string keeper = selfDir() + "/provisr-keeper";
  if (::access(keeper.c_str(), X_OK) != 0) {
    std::cerr << "provisr: cannot run " << keeper << ": " << std::strerror(errno)
              << "\nhint: provisr-keeper is installed beside provisr by `cmake --install` (scripts/demo.sh does it)\n";
    return kExitFailed;
  }
  std::vector<std::string> args{keeper, "--config", cfg.file, "--run-dir", run_dir};
  if (serve.daemonize) {
    args.push_back("--daemonize");
    if (cfg.daemon.pid_file) args.insert(args.end(), {"--pid-file", *cfg.daemon.pid_file});
    if (cfg.daemon.log_file) args.insert(args.end(), {"--log-file", *cfg.daemon.log_file});
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  ::execv(keeper.c_str(), argv.data());
  std::cerr << "provisr: exec " << keeper << ": " << std::strerror(errno) << "\n";
  return kExitFailed;
}

int runCompletion(const std::string& shell) {
  if (shell != "bash") {
    std::cerr << "provisr: completion: only bash is supported\n";
    return kExitUsage;
  }
  std::cout << R"BASH(# bash completion for provisr: eval "$(provisr completion bash)"
_provisr() {
  local cur prev verbs
  cur="${COMP_WORDS[COMP_CWORD]}"
  prev="${COMP_WORDS[COMP_CWORD-1]}"
  verbs="serve validate status start stop restart scale group-start group-stop group-status logs register register-file unregister reload reopen-logs shutdown version completion help"
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "$verbs" -- "$cur")); return
  fi
  case "$prev" in
    --name|--group|logs|scale)
      COMPREPLY=($(compgen -W "$(provisr __complete 2>/dev/null)" -- "$cur")); return ;;
    --config|--file|serve|validate)
      COMPREPLY=($(compgen -f -- "$cur")); return ;;
    -o|--output)
      COMPREPLY=($(compgen -W "table json" -- "$cur")); return ;;
  esac
  local flags
  case "${COMP_WORDS[1]}" in
    serve) flags="--config --run-dir --foreground --daemonize" ;;
    status) flags="--name --group --config --api-url --token -o --watch" ;;
    start|stop|restart) flags="--name --config --api-url --token --dry-run --wait -o" ;;
    group-start|group-stop|group-status) flags="--group --config --api-url --token --wait" ;;
    logs) flags="-f -n --stderr --config --api-url --token" ;;
    register) flags="--name --command --work-dir --log-dir --auto-start --config --api-url --token" ;;
    register-file) flags="--file --config --api-url --token" ;;
    unregister) flags="--name --config --api-url --token" ;;
    reload) flags="--dry-run --config --api-url --token" ;;
    *) flags="--config --api-url --token" ;;
  esac
  COMPREPLY=($(compgen -W "$flags" -- "$cur"))
}
complete -F _provisr provisr
)BASH";
  return kExitOk;
}

}  // namespace provisr::cli
