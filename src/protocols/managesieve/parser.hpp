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
// CommandParser is an incremental byte-at-a-time state machine: parse()
// consumes every byte it is given (stopping only right after a command's
// line end or an error) and keeps the partial command, so no byte is ever
// examined twice, and feeding a command split anywhere gives the same
// result as feeding it at once. Limits bound the non-literal bytes of one
// command (max_line_length), each literal (max_literal_size) and every byte
// of the command, literals included (max_command_size, one
// login::CommandBudget): a literal announcement over the remaining budget is
// refused before any of its bytes is read (LineTooLong, fatal).

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "login/command_budget.hpp"

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
    size_t max_line_length = 8192;    // non-literal bytes of one command
    size_t max_literal_size = 65536;  // bytes of one literal
    size_t max_command_size = 16384;  // all bytes of one command
    /// AUTHENTICATE and SASL responses: line, literal and command limit (0 = none larger).
    size_t max_sasl_line = 0;
  };
  enum class Result { NeedMore, Command, EmptyLine, Error };

  explicit CommandParser(Limits limits) : limits_(limits), budget_(limits.max_command_size) {}

  /// Consumes bytes of one command from `in`; `used` is set to the bytes
  /// taken (all of `in` with NeedMore; through the line end of a command,
  /// an empty line or a bad line otherwise). Bytes not consumed must be
  /// passed again. LineTooLong / LiteralTooLarge are fatal.
  Result parse(std::string_view in, size_t& used) { return run(in, used, false); }
  /// The same for a line that holds exactly one string (quoted or literal).
  /// The kind of line is fixed when its first byte arrives.
  Result parse_string_line(std::string_view in, size_t& used) { return run(in, used, true); }
  /// The next string lines may hold a 64 KiB SASL message
  /// (Limits::max_sasl_line): the response of an OAuth mechanism.
  void set_wide_string_line(bool wide) { wide_string_line_ = wide; }

  Command& command() { return cmd_; }
  ParseError error() const { return error_; }
  /// A short description of the syntax error (no client data in it).
  const std::string& error_text() const { return error_text_; }
  /// True while in the middle of a command (some bytes of it consumed).
  bool in_command() const { return state_ != State::Start; }
  /// Forget any partial command.
  void reset();

 private:
  enum class State : uint8_t {
    Start,      // first byte of a line
    StartLf,    // CR at the start of a line
    Name,       // command name (atom)
    AfterItem,  // after the name or an argument: SP or line end
    EolLf,      // CR after an item: expect LF
    ArgStart,   // after SP: an argument
    Atom,
    Quoted,
    QuotedEsc,
    LitSize,
    LitClose,   // after '+': expect '}'
    LitEol,     // after '}': CR or LF
    LitLf,      // after '}' CR: LF
    LitBody,
    SkipLine,   // after a syntax error: discard to LF
  };

  Result run(std::string_view in, size_t& used, bool string_line);
  Result finish(size_t i, size_t& used);
  Result fatal(ParseError e, size_t i, size_t& used);
  void syntax(std::string_view what);
  void end_arg();
  void widen_for_sasl();  // AUTHENTICATE <OAuth mech>, OAuth responses: Limits::max_sasl_line

  Limits limits_;
  login::CommandBudget budget_;
  State state_ = State::Start;
  bool string_line_ = false;
  size_t line_bytes_ = 0;
  size_t line_max_ = limits_.max_line_length;     // this command's limits
  size_t literal_max_ = limits_.max_literal_size;
  bool wide_string_line_ = false;
  Command cur_;
  Command cmd_;
  Arg arg_;
  uint64_t lit_size_ = 0;
  size_t lit_digits_ = 0;
  bool lit_syntax_ = false;
  std::string_view what_;  // error text of the item being read (static strings)
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
