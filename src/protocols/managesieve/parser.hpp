#pragma once
// ManageSieve (RFC 5804 §4) syntax, sans-I/O and bounded:
//  - CommandParser: client commands `NAME *(SP arg) CRLF`, where an argument
//    is an atom/number, a quoted string or a literal `{n}` / `{n+}` (both are
//    taken as non-synchronizing: ManageSieve has no continuation requests);
//    also a line holding exactly one string (SASL responses).
//  - parse_response(): a complete backend response (`OK`/`NO`/`BYE`
//    [SP "(" resp-code ")"] [SP string]), a capability line (`"NAME" ["value"]`)
//    or a SASL challenge (a lone string).
//  - append_quoted()/append_string(): strings for the wire.
//
// The parser is stateless between calls: parse() looks at the unconsumed
// input from its start each time and reports how much a complete command
// used. Limits bound the non-literal bytes of one command and each literal.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace portier::protocols::managesieve {

struct Arg {
  enum class Type { Atom, String };
  Type type = Type::Atom;
  std::string value;     // unescaped for strings
  bool literal = false;  // the string came as a literal
};

struct Command {
  std::string name;  // as sent (compare case-insensitively)
  std::vector<Arg> args;
};

enum class ParseError { None, Syntax, LineTooLong, LiteralTooLarge };

class CommandParser {
 public:
  struct Limits {
    size_t max_line_length = 8192;   // non-literal bytes of one command
    size_t max_literal_size = 65536; // bytes of one literal
  };
  enum class Result { NeedMore, Command, EmptyLine, Error };

  explicit CommandParser(Limits limits) : limits_(limits) {}

  /// Parses one command from `in`. `used` is set to the bytes consumed
  /// (a whole command, an empty line, or for Syntax errors the rest of the
  /// bad line); 0 with NeedMore. LineTooLong / LiteralTooLarge are fatal.
  Result parse(std::string_view in, size_t& used);
  /// Parses a line that holds exactly one string (quoted or literal).
  Result parse_string_line(std::string_view in, size_t& used);

  Command& command() { return cmd_; }
  ParseError error() const { return error_; }
  /// A short description of the syntax error (no client data in it).
  const std::string& error_text() const { return error_text_; }

 private:
  Limits limits_;
  Command cmd_;
  ParseError error_ = ParseError::None;
  std::string error_text_;
};

/// A parsed backend response line (literals already inlined).
struct Response {
  /// Strings: a capability line (`"NAME" ["value"]`) or a SASL challenge,
  /// depending on where it arrives.
  enum class Kind { Ok, No, Bye, Strings, Invalid };
  Kind kind = Kind::Invalid;
  std::string code;      // resp-code inside the parentheses, e.g. "TRYLATER/NORETRY"
  std::string text;      // the human-readable string of Ok/No/Bye
  bool has_text = false;
  std::vector<std::string> strings;  // Strings: the unescaped strings
  std::string error;     // why it is Invalid (for logs; no data in it)
};

/// Parses one logical backend response. `raw` may contain literals
/// (`{n}` CRLF n-bytes) already joined by the caller.
Response parse_response(std::string_view raw);

/// The first word of a resp-code: "TRYLATER/NORETRY" for "TRYLATER/NORETRY",
/// "REFERRAL" for "REFERRAL sieve://host".
std::string_view code_name(std::string_view code);

/// Whether `line` (without CRLF) ends with a literal marker `{n}` or `{n+}`;
/// sets `n` when it does.
bool ends_with_literal(std::string_view line, size_t& n);

/// `"..."` with `\` and `"` escaped. The caller ensures no CR, LF or NUL.
void append_quoted(std::string& out, std::string_view s);
/// A quoted string, or a literal when `s` contains CR, LF or NUL (or is
/// long): `{n}` CRLF data for server-to-client, `{n+}` for client-to-server.
void append_string(std::string& out, std::string_view s, bool to_server = false);

/// Whether `c` may appear in an atom (RFC 5804 ATOM-CHAR).
bool is_atom_char(char c);

}  // namespace portier::protocols::managesieve
