// toml++'s compiled part, built into `provisr` itself: the config loader's objects are compiled
// against Debian's libtomlplusplus.so (TOML_HEADER_ONLY=0), and defining its symbols here lets the
// CLI link without that shared library, and so without the shared libstdc++ it pulls in
// (cli/CMakeLists.txt links libstdc++ statically and drops unneeded libraries with --as-needed).
#define TOML_IMPLEMENTATION 1
#include <toml++/toml.h>
