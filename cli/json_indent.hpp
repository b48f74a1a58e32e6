// The CLI's JSON output without a parse: the gateway's compact replies re-indented in one pass.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace provisr::cli {

// `text` written exactly as nlohmann::json::parse(text).dump(2) would write it (2-space indent,
// ": " after keys), when that can be done by copying its tokens: every object's keys already in
// sorted order without duplicates, strings in nlohmann's own escaping and valid UTF-8. nullopt
// when `text` is not such JSON (invalid, unsorted keys, other escapes, nesting deeper than 256):
// the caller then parses it and dumps the tree.
std::optional<std::string> indentJson(std::string_view text);

}  // namespace provisr::cli
