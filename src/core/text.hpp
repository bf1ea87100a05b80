#pragma once
// Small text helpers the protocol plug-ins share (each existed once per
// protocol before issue 9): printable-ASCII checks, one-line reply hygiene,
// log sanitizing and Dovecot's tab escaping.
//
// Owns: nothing (pure functions). Uses: std only.

#include <cstddef>
#include <string>
#include <string_view>

namespace portier::core {

/// Every byte is printable ASCII, space included (0x20..0x7e): the rule for
/// session ids from a trusted upstream. Empty is printable.
bool printable_ascii(std::string_view s) noexcept;

/// No control byte (C0 or DEL); 8-bit bytes (UTF-8) are allowed: the rule
/// for free text that goes into a quoted string (IMAP ID x-forward-* values).
bool no_control_chars(std::string_view s) noexcept;

/// Every byte is visible ASCII: printable without the space (0x21..0x7e);
/// what fits in one space-separated token (XCLIENT values, EHLO domains).
bool visible_ascii(std::string_view s) noexcept;

/// `s` made safe for one reply line: control bytes (CR, LF, NUL, DEL, ...)
/// become spaces; cut to `max` bytes.
std::string one_line(std::string_view s, size_t max = std::string_view::npos);

/// `s` made safe for a log reason: control bytes become '?', and it is cut
/// to `max` bytes with "..." appended.
std::string sanitize_for_log(std::string_view s, size_t max);

/// Dovecot's str_append_tabescaped: \001 -> \0011, TAB -> \001t, CR -> \001r, LF -> \001n.
void append_tabescaped(std::string& out, std::string_view s);

}  // namespace portier::core
