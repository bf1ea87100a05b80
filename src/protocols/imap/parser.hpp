#pragma once
// Incremental, bounded IMAP command parser for the pre-login dialogue.
//
// Grammar accepted (RFC 3501 §9, lenient where Dovecot is lenient):
//   command  = tag SP name *(SP arg) CRLF        (bare LF accepted; runs of SP accepted)
//   arg      = atom | NIL | quoted | literal | "(" [arg *(SP arg)] ")"
//   quoted   = DQUOTE *(char | "\" DQUOTE | "\\") DQUOTE
//   literal  = "{" number ["+"] "}" CRLF *OCTET   (synchronizing, or LITERAL+)
//
// The parser is a byte-at-a-time state machine: parse() consumes as many
// bytes as it can and stops at a command boundary, so feeding a transcript
// byte by byte yields exactly the same results as feeding it at once.
// Limits: every non-literal byte of one command counts against
// max_line_length; each literal against max_literal_size; and every byte of
// the command, literals included, against max_command_size (one budget per
// command, login::CommandBudget). A literal announcement that would exceed
// the remaining budget is refused before any of its bytes is read, and is
// fatal (LineTooLong): a `{n+}` literal is already on its way, and a client
// that sends a whole command over budget is not a login client. NUL bytes
// are rejected everywhere (pre-login IMAP has no literal8).
//
// ID is parsed as a stream, like Dovecot's imap-login (list -> key -> value):
// its items are not kept in args; the line limit applies to each item
// instead of the whole line and the command budget does not apply, so an ID
// far longer than the line limit is accepted. Only the first kMaxIdPairs
// `x-*` pairs are kept (values truncated to kMaxIdValue bytes), in
// Command::id; everything else is validated and dropped.
//
// Errors: a syntax error is reported when its line ends (the rest of the
// line is skipped, so the next command starts clean). A synchronizing
// literal that is too large is reported at once (the client is waiting for
// "+" and sends nothing more on that line). An over-long line and a
// non-synchronizing literal that is too large are fatal: the byte stream can
// no longer be re-synchronised.
//
// Threading: one parser per client connection; not thread-safe.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "login/command_budget.hpp"

namespace portier::protocols::imap {

/// One parsed argument.
struct Arg {
  enum class Type { Atom, String, Nil, List };
  Type type = Type::Atom;
  std::string value;      ///< Atom text or String contents (unescaped / literal bytes)
  std::vector<Arg> list;  ///< List items

  /// IMAP astring: an atom or a string (quoted or literal).
  bool is_astring() const { return type == Type::Atom || type == Type::String; }
  /// IMAP nstring-ish: astring or NIL.
  bool is_nstring() const { return is_astring() || type == Type::Nil; }
};

/// One key/value pair of a streamed ID command.
struct IdPair {
  std::string key;
  std::string value;       ///< at most kMaxIdValue bytes
  bool nil = false;        ///< the value was NIL
  bool truncated = false;  ///< the value was longer than kMaxIdValue
};

/// A streamed ID command's parameters (Dovecot's list -> key -> value).
struct IdParams {
  bool valid = true;  ///< false: Dovecot's "BAD Invalid ID parameters"
  bool nil = false;   ///< `ID NIL`
  size_t pairs_seen = 0;
  std::vector<IdPair> pairs;  ///< the first kMaxIdPairs pairs whose key starts with "x-"
};

/// ID keys longer than this make the whole ID invalid (Dovecot: 30).
inline constexpr size_t kMaxIdKey = 30;
/// Bytes of an ID value that are kept (the rest is read and dropped).
inline constexpr size_t kMaxIdValue = 256;
/// `x-*` pairs kept per ID command.
inline constexpr size_t kMaxIdPairs = 16;

/// One complete command.
struct Command {
  std::string tag;
  std::string name;  ///< as sent; compare case-insensitively
  std::vector<Arg> args;     ///< empty for a streamed ID
  std::optional<IdParams> id;  ///< set when the command was `ID` with arguments
};

enum class ParseError {
  None,
  Syntax,           ///< malformed command; the line was skipped
  LineTooLong,      ///< fatal
  LiteralTooLarge,  ///< fatal when non-synchronizing; else the line is over
};

class CommandParser {
 public:
  struct Limits {
    size_t max_line_length = 8192;
    size_t max_literal_size = 65536;
    size_t max_command_size = 16384;  ///< all bytes of one command (not ID)
    /// AUTHENTICATE and SASL responses: line, literal and command limit (0 = none larger).
    size_t max_sasl_line = 0;
  };

  enum class Result {
    NeedMore,      ///< all bytes consumed; command incomplete
    Continuation,  ///< a synchronizing literal header was read: send "+ OK", then parse on
    Command,       ///< command() is complete; parser already reset for the next one
    EmptyLine,     ///< a bare CRLF; ignore
    Error,         ///< see error(), error_tag(), fatal()
  };

  static constexpr size_t kMaxListDepth = 8;

  explicit CommandParser(Limits limits) : limits_(limits), budget_(limits.max_command_size) {}

  /// Consumes bytes from `in` (stops right after a command's line end, an
  /// error, or a literal continuation point); `consumed` is set to the number
  /// of bytes taken. Bytes not consumed must be passed again.
  Result parse(std::string_view in, size_t& consumed);

  /// After Result::Command: the command (valid until the next parse()).
  Command& command() { return done_; }
  /// After Result::Error.
  ParseError error() const { return error_; }
  /// After Result::Error: the tag if one was read and valid, else empty.
  const std::string& error_tag() const { return error_tag_; }
  /// After Result::Error: the connection must be closed.
  bool fatal() const { return fatal_; }
  /// True while in the middle of a command (some bytes of it consumed).
  bool in_command() const { return state_ != State::TagStart; }

  /// Forget any partial command.
  void reset();

 private:
  enum class State : uint8_t {
    TagStart,
    Tag,
    NameStart,
    Name,
    ArgSep,  // between arguments
    Atom,
    Quoted,
    QuotedEsc,
    LitSize,
    LitClose,  // after '+': expect '}'
    LitEol,    // after '}': expect CR or LF
    LitLf,     // after '}' CR: expect LF
    LitBody,
    EolLf,     // CR seen at line end: expect LF
    SkipLine,  // after a syntax error: discard to LF
  };

  Result finish_command();
  void fail_line();                 // syntax error: skip to end of line
  Result fail_fatal(ParseError e);  // fatal
  void begin_arg(Arg::Type t);
  void end_arg();
  void put(char c) { put(std::string_view(&c, 1)); }
  void put(std::string_view bytes);
  void id_item(Arg& a);
  void id_open_list();
  void id_close_list();
  std::vector<Arg>& current_list();

  enum class IdState : uint8_t { Start, Key, Value, After, Invalid };

  void widen_for_sasl();  // AUTHENTICATE <OAuth mech>: Limits::max_sasl_line for this command

  Limits limits_;
  login::CommandBudget budget_;
  State state_ = State::TagStart;
  size_t line_bytes_ = 0;
  size_t line_max_ = limits_.max_line_length;  // this command's line limit
  size_t arg_len_ = 0;     // bytes of the current argument (also those not kept)
  uint64_t lit_got_ = 0;   // literal bytes read so far
  bool id_mode_ = false;   // streaming an ID command
  IdState id_state_ = IdState::Start;
  std::string id_key_;
  Command cur_;
  Command done_;
  std::vector<Arg> stack_;  // open lists (innermost last)
  Arg arg_;                 // argument being read (Atom/Quoted/Literal)
  uint64_t lit_size_ = 0;
  bool lit_too_large_ = false;
  bool lit_nonsync_ = false;
  bool lit_has_digits_ = false;
  bool lit_nul_ = false;
  bool tag_valid_ = true;
  ParseError pending_error_ = ParseError::None;
  ParseError error_ = ParseError::None;
  std::string error_tag_;
  bool fatal_ = false;
};

/// ASCII case-insensitive comparison helper used by the dispatcher.
bool command_is(const Command& c, std::string_view name);

}  // namespace portier::protocols::imap
