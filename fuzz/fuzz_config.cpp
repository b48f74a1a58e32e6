// Fuzz target: one config format (PROVISR_FUZZ_FORMAT) through the whole loader and validator —
// the input is the main config file (with a programs directory holding one valid program), then
// the same text as a program file and as a bare registered spec against a loaded config.
#include <sys/stat.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/config/loader.hpp"
#include "fuzz/fuzz_support.hpp"

namespace {

using provisr::config::LoadOptions;

// What exec and the child's environment get must be C strings: an embedded NUL would cut a word.
void checkExecStrings(const provisr::config::ProgramSpec& p) {
  if (p.argv.empty() || p.argv[0].empty()) provisr::fuzz::fail("a loaded program has no program to run", p.name);
  if (!provisr::config::isValidName(p.name)) provisr::fuzz::fail("a loaded program has a bad name", p.name);
  for (const auto& a : p.argv)
    if (a.find('\0') != std::string::npos) provisr::fuzz::fail("an argv word holds a NUL", p.name);
  for (const auto& e : p.env)
    if (e.find('\0') != std::string::npos) provisr::fuzz::fail("an env entry holds a NUL", p.name);
  if (p.work_dir.find('\0') != std::string::npos) provisr::fuzz::fail("work_dir holds a NUL", p.name);
}

struct World {
  std::string dir;
  std::string main_path;
  LoadOptions options;
  provisr::config::Config base;  // a loaded config the program-file entry points judge against
};

World makeWorld() {
  World w;
  w.dir = provisr::fuzz::scratchDir();
  w.main_path = w.dir + "/provisr." PROVISR_FUZZ_FORMAT;
  mkdir((w.dir + "/programs").c_str(), 0700);
  provisr::fuzz::writeFile(w.dir + "/programs/web.toml",
                           "type = \"process\"\n[spec]\nname = \"web\"\ncommand = \"/bin/true\"\n");
  provisr::fuzz::writeFile(w.dir + "/app.env", "A=1\nexport B=\"two words\"\n");
  w.options.os_env = std::map<std::string, std::string>{{"PATH", "/usr/bin:/bin"}, {"HOME", "/root"}, {"X", "y"}};
  w.options.euid = 1000;
  w.options.check_accounts = false;
  const std::string base_path = w.dir + "/base.toml";
  provisr::fuzz::writeFile(base_path, "env = [\"G=1\"]\n[[groups]]\nname = \"g\"\nmembers = [\"web\"]\n");
  auto r = provisr::config::loadConfig(base_path, w.options);
  if (!r.ok()) provisr::fuzz::fail("the base config does not load");
  w.base = std::move(*r.config);
  return w;
}

const World& world() {
  static const World w = makeWorld();
  return w;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const World& w = world();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  provisr::fuzz::writeFile(w.main_path, text);

  auto r = provisr::config::loadConfig(w.main_path, w.options);
  if (r.ok() && !r.errors().empty()) provisr::fuzz::fail("a config with errors loaded");
  if (!r.ok() && r.errors().empty()) provisr::fuzz::fail("a config without errors did not load");
  if (r.ok()) {
    for (const auto& p : r.config->programs) {
      checkExecStrings(p);
      (void)provisr::config::childEnvironment(*r.config, p, 1, w.options);
    }
  }
  for (bool flat : {false, true}) {
    auto p = provisr::config::loadProgramText(text, PROVISR_FUZZ_FORMAT, w.dir + "/programs/new." PROVISR_FUZZ_FORMAT,
                                              w.base, flat, w.options);
    if (p.ok()) {
      if (!p.errors().empty()) provisr::fuzz::fail("a program with errors loaded");
      checkExecStrings(*p.program);
      (void)provisr::config::childEnvironment(w.base, *p.program, 1, w.options);
    }
  }
  return 0;
}
