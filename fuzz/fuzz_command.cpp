// Fuzz target: the command-line splitter (SPEC §1.5) and the duration parser, the two grammars of
// a program's command and timing fields.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/config/loader.hpp"
#include "fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  auto argv = provisr::config::commandToArgv(text);
  if (argv) {
    if (argv->empty()) provisr::fuzz::fail("an empty argv without an error");
    if (argv->size() == 3 && (*argv)[0] == "/bin/sh" && (*argv)[1] == "-c" && (*argv)[2] == text) {
      // handed to the shell as written
    } else {
      // A plain split: re-joining words with no space or quote in them splits the same way.
      bool plain = true;
      std::string joined;
      for (const auto& w : *argv) {
        if (w.empty() || w.find_first_of(" \t\n'\"\\$`|&;<>*?(){}[]~#!=") != std::string::npos) plain = false;
        joined += (joined.empty() ? "" : " ") + w;
      }
      if (plain) {
        auto again = provisr::config::commandToArgv(joined);
        if (!again || *again != *argv) provisr::fuzz::fail("a plain argv does not split back the same", joined);
      }
    }
  }

  auto d = provisr::config::parseDuration(text);
  if (d) {
    if (d->count() < 0) provisr::fuzz::fail("a parsed duration is negative", text);
    auto again = provisr::config::parseDuration(provisr::config::formatDuration(*d));
    if (!again || *again != *d) provisr::fuzz::fail("formatDuration does not parse back", text);
  }
  return 0;
}
