#pragma once
// Small text helpers of the POP3 plug-in: reply-line hygiene, XCLIENT value
// checks and Dovecot's tab escaping (for FORWARD=).

#include <string>
#include <string_view>

namespace portier::protocols::pop3 {

/// `s` made safe for one reply or log line: control bytes (CR, LF, NUL, ...)
/// become spaces, and it is cut to `max` bytes.
std::string one_line(std::string_view s, size_t max = 512);

/// True when `v` can be an XCLIENT value as is: non-empty, printable ASCII,
/// no space (the receiver splits the line on spaces).
bool xclient_value_ok(std::string_view v);

/// Dovecot's str_append_tabescaped: \001 → \0011, TAB → \001t, CR → \001r, LF → \001n.
void append_tabescaped(std::string& out, std::string_view s);

}  // namespace portier::protocols::pop3
