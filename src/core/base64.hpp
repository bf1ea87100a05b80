#pragma once
// Strict RFC 4648 base64 (standard alphabet, with padding).

#include <optional>
#include <string>
#include <string_view>

namespace portier::core {

/// Encodes `data` with the standard alphabet and '=' padding.
std::string base64_encode(std::string_view data);

/// Decodes strict RFC 4648 base64: standard alphabet, mandatory padding,
/// length a multiple of 4, no whitespace, and the unused bits of the last
/// quantum must be zero. Returns std::nullopt on any violation. An empty
/// input decodes to an empty string.
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace portier::core
