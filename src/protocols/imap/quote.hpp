#pragma once
// IMAP string encoding for what the proxy sends to a backend (§3.1).

#include <string>
#include <string_view>

namespace portier::protocols::imap {

/// True when `s` cannot go out as a quoted string the way Dovecot does it:
/// it has CR, LF or NUL, a byte >= 0x80, or more than four `"`/`\` bytes.
bool needs_literal(std::string_view s);

/// Appends `s` as an IMAP string: a quoted string with `\"` and `\\` escapes,
/// or a synchronizing literal `{n}\r\n<bytes>` when needs_literal(s). The
/// literal is meant to be written at once, without waiting for "+" (Dovecot's
/// proxy does the same; the "+" that comes back is ignored).
void append_string(std::string& out, std::string_view s);

/// Appends `s` as a quoted string, always (escaping `"` and `\`). CR, LF and
/// NUL cannot be represented and are dropped; callers filter them first.
void append_quoted(std::string& out, std::string_view s);

/// Convenience: append_string into a new string.
std::string quote_string(std::string_view s);

}  // namespace portier::protocols::imap
