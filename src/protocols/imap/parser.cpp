// Incremental IMAP command parser (see parser.hpp for the grammar and limits).
//
//   C: a1 LOGIN {5}\r\n          -> Continuation  (the frontend answers "+ OK")
//   C: alice "se\"cret"\r\n      -> Command{tag "a1", name "LOGIN", args [alice, se"cret]}
//   C: a2 ID ("name" NIL)\r\n    -> Command{..., args [List[String name, Nil]]}
//   C: \r\n                      -> EmptyLine
//   C: a3 LOGIN "x\r\n           -> Error Syntax, tag "a3"
//
// The machine keeps no pointer into the caller's buffer: everything it needs
// is copied into the command being built, so the caller may compact or grow
// its buffer between calls.

#include "protocols/imap/parser.hpp"

#include <algorithm>

#include "core/strings.hpp"
#include "sasl/oauth.hpp"

namespace portier::protocols::imap {

namespace {

// tag = 1*<any ASTRING-CHAR except "+">; ASTRING-CHAR excludes
// SP, CTL, "(", ")", "{", "%", "*", DQUOTE and "\" (but allows "]").
// Only 7-bit bytes: a tag is protocol syntax, never user data.
bool is_tag_char(unsigned char c) {
  if (c <= 0x20 || c >= 0x7f) return false;
  switch (c) {
    case '(':
    case ')':
    case '{':
    case '%':
    case '*':
    case '"':
    case '\\':
    case '+':
      return false;
    default:
      return true;
  }
}

// Atoms are parsed leniently (as Dovecot does): anything but SP, CTL and the
// bytes that start or end another token. 8-bit bytes are kept (UTF-8 user
// names sent as atoms).
bool is_atom_char(unsigned char c) {
  if (c <= 0x20 || c == 0x7f) return false;
  switch (c) {
    case '(':
    case ')':
    case '{':
    case '"':
      return false;
    default:
      return true;
  }
}

}  // namespace

bool command_is(const Command& c, std::string_view name) { return core::iequals(c.name, name); }

void CommandParser::widen_for_sasl() {
  // The initial response (SASL-IR) of an OAuth mechanism may carry a 64 KiB token.
  line_max_ = std::max(line_max_, limits_.max_sasl_line);
  budget_.set_limit(std::max(limits_.max_command_size, limits_.max_sasl_line));
}

void CommandParser::reset() {
  state_ = State::TagStart;
  line_bytes_ = 0;
  budget_.reset();
  budget_.set_limit(limits_.max_command_size);
  line_max_ = limits_.max_line_length;
  arg_len_ = 0;
  lit_got_ = 0;
  id_mode_ = false;
  id_state_ = IdState::Start;
  id_key_.clear();
  cur_ = Command{};
  stack_.clear();
  arg_ = Arg{};
  lit_size_ = 0;
  lit_too_large_ = false;
  lit_nonsync_ = false;
  lit_has_digits_ = false;
  lit_nul_ = false;
  tag_valid_ = true;
  pending_error_ = ParseError::None;
}

std::vector<Arg>& CommandParser::current_list() {
  return stack_.empty() ? cur_.args : stack_.back().list;
}

void CommandParser::begin_arg(Arg::Type t) {
  arg_ = Arg{};
  arg_.type = t;
  arg_len_ = 0;
}

void CommandParser::put(std::string_view bytes) {
  arg_len_ += bytes.size();
  if (id_mode_) {
    // ID items are streamed: keep only what a key or a kept value can use.
    const size_t room = kMaxIdValue + 1 > arg_.value.size() ? kMaxIdValue + 1 - arg_.value.size() : 0;
    bytes = bytes.substr(0, std::min(room, bytes.size()));
  }
  arg_.value.append(bytes);
}

void CommandParser::end_arg() {
  if (arg_.type == Arg::Type::Atom && core::iequals(arg_.value, "NIL")) {
    arg_.type = Arg::Type::Nil;
    arg_.value.clear();
  }
  if (id_mode_) {
    id_item(arg_);
    line_bytes_ = 0;  // the line limit applies per ID item
  } else {
    current_list().push_back(std::move(arg_));
    // AUTHENTICATE OAUTHBEARER/XOAUTH2 <initial response>: a 64 KiB token.
    if (stack_.empty() && cur_.args.size() == 1 && core::iequals(cur_.name, "AUTHENTICATE") &&
        sasl::is_oauth_mech(cur_.args[0].value))
      widen_for_sasl();
  }
  arg_ = Arg{};
  arg_len_ = 0;
}

// Dovecot's imap-login ID states: the first argument is NIL or a list; in
// the list, keys (strings of at most kMaxIdKey bytes) and values (strings or
// NIL) alternate; a nested list or an atom makes the ID invalid; a key
// without a value and anything after the list are ignored.
void CommandParser::id_item(Arg& a) {
  if (!cur_.id) cur_.id.emplace();
  IdParams& id = *cur_.id;
  if (id_state_ == IdState::Invalid || id_state_ == IdState::After) return;
  if (stack_.empty()) {  // a top-level argument
    if (id_state_ == IdState::Start && a.type == Arg::Type::Nil) {
      id.nil = true;
      id_state_ = IdState::After;
    } else {
      id_state_ = IdState::Invalid;
    }
    return;
  }
  if (stack_.size() > 1) return;  // inside a nested list: already invalid
  if (id_state_ == IdState::Key) {
    if (a.type != Arg::Type::String || arg_len_ > kMaxIdKey) {
      id_state_ = IdState::Invalid;
      return;
    }
    id_key_ = std::move(a.value);
    id_state_ = IdState::Value;
    return;
  }
  // IdState::Value
  if (a.type != Arg::Type::String && a.type != Arg::Type::Nil) {
    id_state_ = IdState::Invalid;
    return;
  }
  ++id.pairs_seen;
  if (id.pairs.size() < kMaxIdPairs && core::istarts_with(id_key_, "x-")) {
    IdPair p;
    p.key = std::move(id_key_);
    p.nil = a.type == Arg::Type::Nil;
    p.truncated = arg_len_ > kMaxIdValue;
    p.value = std::move(a.value);
    if (p.value.size() > kMaxIdValue) p.value.resize(kMaxIdValue);
    id.pairs.push_back(std::move(p));
  }
  id_key_.clear();
  id_state_ = IdState::Key;
}

void CommandParser::id_open_list() {
  if (!cur_.id) cur_.id.emplace();
  if (stack_.empty() && id_state_ == IdState::Start)
    id_state_ = IdState::Key;
  else if (id_state_ != IdState::After)
    id_state_ = IdState::Invalid;
  line_bytes_ = 0;
}

void CommandParser::id_close_list() {
  if (stack_.empty() && (id_state_ == IdState::Key || id_state_ == IdState::Value))
    id_state_ = IdState::After;
  line_bytes_ = 0;
}

void CommandParser::fail_line() {
  pending_error_ = ParseError::Syntax;
  state_ = State::SkipLine;
}

CommandParser::Result CommandParser::fail_fatal(ParseError e) {
  error_ = e;
  fatal_ = true;
  error_tag_ = tag_valid_ ? cur_.tag : std::string();
  reset();
  return Result::Error;
}

CommandParser::Result CommandParser::finish_command() {
  if (pending_error_ == ParseError::None) {
    if (cur_.tag.empty()) {
      reset();
      return Result::EmptyLine;
    }
    if (cur_.name.empty() || !stack_.empty()) pending_error_ = ParseError::Syntax;
  }
  if (id_mode_ && pending_error_ == ParseError::None) {
    if (!cur_.id) cur_.id.emplace();
    if (id_state_ == IdState::Start || id_state_ == IdState::Invalid) cur_.id->valid = false;
    if (!cur_.id->valid) cur_.id->pairs.clear();
  }
  if (pending_error_ != ParseError::None) {
    error_ = pending_error_;
    error_tag_ = tag_valid_ ? cur_.tag : std::string();
    reset();
    return Result::Error;
  }
  done_ = std::move(cur_);
  reset();
  return Result::Command;
}

CommandParser::Result CommandParser::parse(std::string_view in, size_t& consumed) {
  consumed = 0;
  error_ = ParseError::None;
  error_tag_.clear();
  fatal_ = false;

  size_t i = 0;
  while (i < in.size()) {
    if (state_ == State::LitBody) {
      // Literal bytes are taken in bulk and do not count as line bytes.
      size_t want = static_cast<size_t>(lit_size_ - lit_got_);
      size_t take = std::min(want, in.size() - i);
      std::string_view chunk = in.substr(i, take);
      if (chunk.find('\0') != std::string_view::npos) lit_nul_ = true;
      if (!id_mode_ && !budget_.take(take)) {  // cannot happen: checked at the header
        consumed = i;
        return fail_fatal(ParseError::LineTooLong);
      }
      put(chunk);
      lit_got_ += take;
      i += take;
      if (lit_got_ == lit_size_) {
        if (lit_nul_) pending_error_ = ParseError::Syntax;
        end_arg();
        state_ = State::ArgSep;
      }
      continue;
    }

    const unsigned char c = static_cast<unsigned char>(in[i++]);
    if (++line_bytes_ > line_max_ || (!id_mode_ && !budget_.take(1))) {
      consumed = i;
      return fail_fatal(ParseError::LineTooLong);
    }

    switch (state_) {
      case State::TagStart:
        if (c == '\n') {
          consumed = i;
          return finish_command();
        }
        if (c == '\r') {
          state_ = State::EolLf;
        } else if (is_tag_char(c)) {
          cur_.tag.push_back(static_cast<char>(c));
          state_ = State::Tag;
        } else {
          tag_valid_ = false;
          fail_line();
        }
        break;

      case State::Tag:
        if (is_tag_char(c)) {
          cur_.tag.push_back(static_cast<char>(c));
        } else if (c == ' ') {
          state_ = State::NameStart;
        } else if (c == '\r') {
          state_ = State::EolLf;  // tag without a command: error at line end
        } else if (c == '\n') {
          consumed = i;
          return finish_command();
        } else {
          tag_valid_ = false;
          fail_line();
        }
        break;

      case State::NameStart:
      case State::Name:
        if (is_atom_char(c)) {
          cur_.name.push_back(static_cast<char>(c));
          state_ = State::Name;
        } else if (c == ' ') {
          if (state_ == State::Name) {
            state_ = State::ArgSep;
            if (core::iequals(cur_.name, "ID")) id_mode_ = true;
          }
        } else if (c == '\r') {
          state_ = State::EolLf;
        } else if (c == '\n') {
          consumed = i;
          return finish_command();
        } else {
          fail_line();
        }
        break;

      case State::ArgSep:
        switch (c) {
          case ' ':
            break;
          case '\r':
            state_ = State::EolLf;
            break;
          case '\n':
            consumed = i;
            return finish_command();
          case '"':
            begin_arg(Arg::Type::String);
            state_ = State::Quoted;
            break;
          case '{':
            begin_arg(Arg::Type::String);
            lit_size_ = 0;
            lit_got_ = 0;
            lit_too_large_ = false;
            lit_nonsync_ = false;
            lit_has_digits_ = false;
            state_ = State::LitSize;
            break;
          case '(':
            if (stack_.size() >= kMaxListDepth) {
              fail_line();
            } else {
              if (id_mode_) id_open_list();
              Arg list;
              list.type = Arg::Type::List;
              stack_.push_back(std::move(list));
            }
            break;
          case ')':
            if (stack_.empty()) {
              fail_line();
            } else {
              Arg list = std::move(stack_.back());
              stack_.pop_back();
              if (id_mode_)
                id_close_list();
              else
                current_list().push_back(std::move(list));
            }
            break;
          default:
            if (is_atom_char(c)) {
              begin_arg(Arg::Type::Atom);
              put(static_cast<char>(c));
              state_ = State::Atom;
            } else {
              fail_line();
            }
        }
        break;

      case State::Atom:
        if (is_atom_char(c)) {
          put(static_cast<char>(c));
        } else if (c == ' ' || c == ')' || c == '\r' || c == '\n') {
          // Hand the delimiter back to ArgSep (before end_arg(): in ID mode
          // it starts the next item's line count).
          --i;
          --line_bytes_;
          if (!id_mode_) budget_.give_back(1);
          end_arg();
          state_ = State::ArgSep;
        } else {
          fail_line();
        }
        break;

      case State::Quoted:
        if (c == '"') {
          end_arg();
          state_ = State::ArgSep;
        } else if (c == '\\') {
          state_ = State::QuotedEsc;
        } else if (c == '\n') {
          pending_error_ = ParseError::Syntax;
          consumed = i;
          return finish_command();
        } else if (c == '\r' || c == '\0') {
          fail_line();
        } else {
          put(static_cast<char>(c));
        }
        break;

      case State::QuotedEsc:
        if (c == '"' || c == '\\') {
          put(static_cast<char>(c));
          state_ = State::Quoted;
        } else if (c == '\n') {
          pending_error_ = ParseError::Syntax;
          consumed = i;
          return finish_command();
        } else {
          fail_line();
        }
        break;

      case State::LitSize:
        if (c >= '0' && c <= '9') {
          lit_has_digits_ = true;
          // Saturate just above the limit: no overflow, still "too large".
          if (!lit_too_large_) {
            lit_size_ = lit_size_ * 10 + (c - '0');
            if (lit_size_ > limits_.max_literal_size) lit_too_large_ = true;
          }
        } else if (c == '+' && lit_has_digits_) {
          lit_nonsync_ = true;
          state_ = State::LitClose;
        } else if (c == '}' && lit_has_digits_) {
          state_ = State::LitEol;
        } else if (c == '\n') {
          pending_error_ = ParseError::Syntax;
          consumed = i;
          return finish_command();
        } else {
          fail_line();
        }
        break;

      case State::LitClose:
        if (c == '}') {
          state_ = State::LitEol;
        } else if (c == '\n') {
          pending_error_ = ParseError::Syntax;
          consumed = i;
          return finish_command();
        } else {
          fail_line();
        }
        break;

      case State::LitEol:
      case State::LitLf:
        if (c == '\r' && state_ == State::LitEol) {
          state_ = State::LitLf;
          break;
        }
        if (c != '\n') {
          fail_line();
          break;
        }
        consumed = i;
        if (lit_too_large_) {
          // LITERAL+: the bytes are on their way and cannot be skipped safely.
          if (lit_nonsync_) return fail_fatal(ParseError::LiteralTooLarge);
          // Synchronizing: the client waits for "+", so the line is over.
          error_ = ParseError::LiteralTooLarge;
          error_tag_ = tag_valid_ ? cur_.tag : std::string();
          reset();
          return Result::Error;
        }
        if (!id_mode_ && !budget_.fits(static_cast<size_t>(lit_size_))) {
          // Over the command budget: refused before a byte of it is read.
          return fail_fatal(ParseError::LineTooLong);
        }
        if (!lit_nonsync_ && pending_error_ != ParseError::None) {
          // Do not invite the literal of a command we already rejected.
          return finish_command();
        }
        if (lit_size_ == 0) {
          end_arg();
          state_ = State::ArgSep;
        } else {
          arg_.value.reserve(id_mode_ ? std::min<size_t>(static_cast<size_t>(lit_size_),
                                                         kMaxIdValue + 1)
                                      : static_cast<size_t>(lit_size_));
          state_ = State::LitBody;
        }
        if (!lit_nonsync_) return Result::Continuation;
        break;

      case State::EolLf:
        if (c == '\n') {
          consumed = i;
          return finish_command();
        }
        fail_line();  // stray CR
        break;

      case State::SkipLine:
        if (c == '\n') {
          consumed = i;
          return finish_command();
        }
        break;

      case State::LitBody:
        break;  // handled above
    }
  }
  consumed = i;
  return Result::NeedMore;
}

}  // namespace portier::protocols::imap
