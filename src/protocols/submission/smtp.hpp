#pragma once
// Small SMTP syntax helpers shared by the Submission Frontend and BackendLogin:
// reply-line parsing (RFC 5321 §4.2), enhanced status codes (RFC 3463) and
// xtext (RFC 3461 §4, used by XCLIENT). All pure functions.

#include <optional>
#include <string>
#include <string_view>

namespace portier::protocols::submission {

/// One line of an SMTP reply: `<status>-text` (more lines follow) or
/// `<status> text` / `<status>` (last line).
struct ReplyLine {
  unsigned status = 0;    ///< 200..559
  bool last = false;      ///< separator was ' ' (or the line ended after the code)
  std::string_view text;  ///< after the separator (may be empty)
};

/// Parses one reply line; nullopt when it is not `[2-5]dd[ -]...` with a
/// status in 200..559 (Dovecot's proxy accepts nothing else).
std::optional<ReplyLine> parse_reply_line(std::string_view line);

/// Splits a leading enhanced status code (`5.7.8 `) off `text`. Returns the
/// remaining text; `code` receives the code (empty when there is none).
std::string_view split_enhanced_code(std::string_view text, std::string_view& code);

/// RFC 3461 xtext: printable ASCII except '+' and '=' as is, everything
/// else as `+HH` (upper-case hex).
std::string xtext_encode(std::string_view s);
/// Decodes xtext; nullopt for a malformed `+HH` or a byte that xtext does
/// not allow unencoded.
std::optional<std::string> xtext_decode(std::string_view s);

/// A text made safe for a log reason: control bytes become '?', and it is
/// cut to `max` bytes with "..." appended (Dovecot: str_sanitize(line, 160)).
std::string sanitize_for_log(std::string_view s, size_t max = 160);

}  // namespace portier::protocols::submission
