#pragma once
// Sans-I/O pieces of SMTP/LMTP for the LMTP proxy: command lines from the
// client, MAIL/RCPT paths and parameters, multi-line replies from backends,
// LHLO capabilities, the end of a DATA body found without touching its bytes
// (dot-stuffing passes through as it came), recipient detail handling,
// xtext, and the XCLIENT commands towards a backend (only the attributes it
// advertised, split past 512 bytes). No sockets, no clocks: unit-tested and
// fuzzed (fuzz/lmtp_smtp.cpp).
//
// Owns: nothing. May use: core.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace portier::lmtp {

/// One client command line (without CRLF): the verb upper-cased and the rest.
struct Command {
  std::string verb;  ///< "LHLO", "MAIL", "RCPT", ...; empty for an empty line
  std::string_view arg;  ///< after the verb and one space (view into the line)
};
Command parse_command(std::string_view line);

/// `MAIL FROM:<path> params` / `RCPT TO:<path> params`.
struct PathArg {
  std::string path;    ///< between < and > (may be empty: the null sender)
  std::string params;  ///< the parameters as given (replayed verbatim), "" = none
  /// ORCPT=... already present among the parameters (RCPT).
  bool has_orcpt = false;
};
/// `arg` is the text after the verb; `keyword` is "FROM:" or "TO:"
/// (case-insensitive; a space after the colon is tolerated). nullopt: syntax
/// error. Paths must be in <>; no CR, LF or NUL anywhere.
std::optional<PathArg> parse_path(std::string_view arg, std::string_view keyword);

/// A backend reply: the code of its lines, the enhanced status code of its
/// last line (if any) and the text of its last line after the codes.
struct Reply {
  int code = 0;
  std::string enhanced;  ///< "2.1.5" or ""
  std::string text;      ///< last line's text after code (and enhanced code)
  std::vector<std::string> lines;  ///< each line's text after "NNN-" / "NNN "
  /// The reply as one line for a client: `<code> <enh> <text>`.
  std::string render() const;
};

/// Accumulates backend reply lines (without CRLF). Max 100 lines per reply.
class ReplyParser {
 public:
  enum class Status { More, Done, Bad };
  Status feed(std::string_view line);
  /// The finished reply (after Done); resets for the next one.
  Reply take();

 private:
  Reply cur_;
  size_t n_ = 0;
};

/// LHLO/EHLO capabilities from the reply lines (first line is the greeting):
/// upper-cased keywords with their arguments.
struct Capabilities {
  bool xclient = false;
  std::vector<std::string> xclient_attrs;  ///< upper-case attribute names
  bool pipelining = false;
  bool xrcptforward = false;
  bool has(std::string_view kw) const;
  std::vector<std::string> keywords;
};
Capabilities parse_capabilities(const Reply& r);

/// Finds the end of a DATA body ("CRLF.CRLF", or ".CRLF" at the very start)
/// across chunk boundaries. The body bytes are never changed.
class DataScanner {
 public:
  /// Offset just past the terminating ".\r\n" within `chunk`, or npos.
  size_t feed(std::string_view chunk);
  void reset() { state_ = 2; }

 private:
  // 0: mid-line; 1: saw CR; 2: at line start; 3: saw "." at line start;
  // 4: saw ".\r" at line start.
  int state_ = 2;
};

/// Recipient detail: `user+detail@domain` → {"user@domain", "detail"} for
/// the first of `delimiters` found in the local part; no delimiter → the
/// address unchanged and an empty detail.
std::pair<std::string, std::string> split_detail(std::string_view addr, std::string_view delimiters);
/// Put `detail` back into `addr` (for a destuser): user@domain → user+detail@domain.
std::string join_detail(std::string_view addr, char delimiter, std::string_view detail);

/// RFC 3461 xtext.
std::string xtext_encode(std::string_view s);
std::string xtext_decode(std::string_view s);

/// `XCLIENT` attributes the client sent (NAME=value, xtext-decoded).
/// nullopt: syntax error.
std::optional<std::vector<std::pair<std::string, std::string>>> parse_xclient(std::string_view arg);

/// XCLIENT command lines (with CRLF) carrying `attrs` (name, raw value),
/// keeping only names in `advertised`, each line at most 512 bytes.
std::vector<std::string> xclient_lines(const std::vector<std::pair<std::string, std::string>>& attrs,
                                       const std::vector<std::string>& advertised);

/// A reply line text may hold no control characters: others become '?'.
std::string clean_text(std::string_view s);

}  // namespace portier::lmtp
