#pragma once
// Small text helpers of the POP3 plug-in: reply-line hygiene, XCLIENT value
// checks (the shared helpers live in core/text.hpp).

#include <string>
#include <string_view>

#include "core/text.hpp"

namespace portier::protocols::pop3 {

/// `s` made safe for one reply or log line: control bytes (CR, LF, NUL, ...)
/// become spaces, and it is cut to `max` bytes.
inline std::string one_line(std::string_view s, size_t max = 512) {
  return core::one_line(s, max);
}

/// True when `v` can be an XCLIENT value as is: non-empty, printable ASCII,
/// no space (the receiver splits the line on spaces).
bool xclient_value_ok(std::string_view v);

}  // namespace portier::protocols::pop3
