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
// max_line_length; each literal against max_literal_size. NUL bytes are
// rejected everywhere (pre-login IMAP has no literal8).
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
#include <string>
#include <string_view>
#include <vector>

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

/// One complete command.
struct Command {
  std::string tag;
  std::string name;  ///< as sent; compare case-insensitively
  std::vector<Arg> args;
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
  };

  enum class Result {
    NeedMore,      ///< all bytes consumed; command incomplete
    Continuation,  ///< a synchronizing literal header was read: send "+ OK", then parse on
    Command,       ///< command() is complete; parser already reset for the next one
    EmptyLine,     ///< a bare CRLF; ignore
    Error,         ///< see error(), error_tag(), fatal()
  };

  static constexpr size_t kMaxListDepth = 8;

  explicit CommandParser(Limits limits) : limits_(limits) {}

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
  std::vector<Arg>& current_list();

  Limits limits_;
  State state_ = State::TagStart;
  size_t line_bytes_ = 0;
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
