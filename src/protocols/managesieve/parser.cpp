// ManageSieve syntax (RFC 5804 §4): commands from clients, responses from
// backends, and string quoting.
//
//   C: AUTHENTICATE "PLAIN" "AHVzZXIzAHBhc3M="      -> name + 2 strings
//   C: PUTSCRIPT "s" {12+}\r\nkeep;\r\nstop;        -> literal inlined
//   C: "dXNlcjM="                                    -> a SASL response line
//   B: "SASL" "PLAIN LOGIN"                          -> Strings [SASL, PLAIN LOGIN]
//   B: NO (TRYLATER) "Try again later."              -> No, code TRYLATER
//   B: OK (SASL "cnNwYXV0aD0=") "Logged in."         -> Ok, code SASL "cnNwYXV0aD0="

#include "protocols/managesieve/parser.hpp"

#include <algorithm>

#include "core/strings.hpp"
#include "sasl/oauth.hpp"

namespace portier::protocols::managesieve {

namespace {

enum class St { Ok, NeedMore, Syntax, TooLarge };

// Literal sizes beyond this many digits cannot be valid anywhere.
constexpr size_t kMaxLiteralDigits = 10;

struct Scan {
  std::string_view in;
  size_t pos = 0;
  size_t literal_bytes = 0;        // literal data fully consumed so far
  size_t literal_start = std::string_view::npos;  // set while waiting for literal data
  size_t max_literal = static_cast<size_t>(-1);

  bool at_end() const { return pos >= in.size(); }
  char peek() const { return in[pos]; }

  St quoted(std::string& out) {
    ++pos;  // opening quote
    for (;;) {
      if (at_end()) return St::NeedMore;
      char c = in[pos];
      if (c == '"') {
        ++pos;
        return St::Ok;
      }
      if (c == '\\') {
        if (pos + 1 >= in.size()) return St::NeedMore;
        char n = in[pos + 1];
        if (n != '"' && n != '\\') return St::Syntax;
        out.push_back(n);
        pos += 2;
        continue;
      }
      if (c == '\r' || c == '\n' || c == '\0') return St::Syntax;
      out.push_back(c);
      ++pos;
    }
  }

  St literal(std::string& out) {
    ++pos;  // '{'
    size_t start = pos;
    unsigned long long n = 0;
    while (!at_end() && in[pos] >= '0' && in[pos] <= '9') {
      if (pos - start >= kMaxLiteralDigits) return St::Syntax;
      n = n * 10 + static_cast<unsigned>(in[pos] - '0');
      ++pos;
    }
    if (at_end()) return St::NeedMore;
    if (pos == start) return St::Syntax;
    if (in[pos] == '+') {
      ++pos;
      if (at_end()) return St::NeedMore;
    }
    if (in[pos] != '}') return St::Syntax;
    ++pos;
    if (at_end()) return St::NeedMore;
    if (in[pos] == '\r') {
      ++pos;
      if (at_end()) return St::NeedMore;
    }
    if (in[pos] != '\n') return St::Syntax;
    ++pos;
    if (n > max_literal) return St::TooLarge;
    if (in.size() - pos < n) {
      literal_start = pos;
      return St::NeedMore;
    }
    out.assign(in.substr(pos, static_cast<size_t>(n)));
    pos += static_cast<size_t>(n);
    literal_bytes += static_cast<size_t>(n);
    return St::Ok;
  }

  St string(Arg& arg) {
    arg.type = Arg::Type::String;
    if (peek() == '"') return quoted(arg.value);
    arg.literal = true;
    return literal(arg.value);
  }

  St atom(std::string& out) {
    size_t start = pos;
    while (!at_end() && is_atom_char(in[pos])) ++pos;
    if (at_end()) return St::NeedMore;  // the atom may continue
    out.assign(in.substr(start, pos - start));
    return out.empty() ? St::Syntax : St::Ok;
  }

  // At CRLF / LF: consume it and return Ok; at SP: Syntax is not an option
  // for the caller, so report "not at end" through `eol`.
  St end_of_line(bool& eol) {
    eol = false;
    if (at_end()) return St::NeedMore;
    if (in[pos] == '\n') {
      ++pos;
      eol = true;
      return St::Ok;
    }
    if (in[pos] == '\r') {
      if (pos + 1 >= in.size()) return St::NeedMore;
      if (in[pos + 1] != '\n') return St::Syntax;
      pos += 2;
      eol = true;
      return St::Ok;
    }
    return St::Ok;
  }
};

}  // namespace

bool is_atom_char(char ch) {
  auto c = static_cast<unsigned char>(ch);
  if (c <= 0x20 || c == 0x7f) return false;
  switch (c) {
    case '(': case ')': case '{': case '%': case '*': case '"': case '\\': case ']':
      return false;
    default:
      return true;
  }
}

void CommandParser::reset() {
  state_ = State::Start;
  line_bytes_ = 0;
  budget_.reset();
  budget_.set_limit(limits_.max_command_size);
  line_max_ = limits_.max_line_length;
  literal_max_ = limits_.max_literal_size;
  cur_ = Command{};
  arg_ = Arg{};
  lit_size_ = 0;
  lit_digits_ = 0;
  what_ = {};
}

void CommandParser::widen_for_sasl() {
  // A SASL message (initial response or response) may carry a 64 KiB OAuth
  // token, as a quoted string or a literal.
  line_max_ = std::max(line_max_, limits_.max_sasl_line);
  literal_max_ = std::max(literal_max_, limits_.max_sasl_line);
  budget_.set_limit(std::max(limits_.max_command_size, limits_.max_sasl_line));
}

void CommandParser::syntax(std::string_view what) {
  what_ = what;
  state_ = State::SkipLine;
}

void CommandParser::end_arg() {
  cur_.args.push_back(std::move(arg_));
  // AUTHENTICATE "OAUTHBEARER"/"XOAUTH2" <initial response>: a 64 KiB token.
  if (!string_line_ && cur_.args.size() == 1 && core::iequals(cur_.name, "AUTHENTICATE") &&
      sasl::is_oauth_mech(cur_.args[0].value))
    widen_for_sasl();
  arg_ = Arg{};
  state_ = State::AfterItem;
}

CommandParser::Result CommandParser::finish(size_t i, size_t& used) {
  used = i;
  cmd_ = std::move(cur_);
  reset();
  return Result::Command;
}

CommandParser::Result CommandParser::fatal(ParseError e, size_t i, size_t& used) {
  used = i;
  error_ = e;
  reset();
  return Result::Error;
}

CommandParser::Result CommandParser::run(std::string_view in, size_t& used, bool string_line) {
  used = 0;
  error_ = ParseError::None;
  error_text_.clear();
  if (state_ == State::Start) {
    string_line_ = string_line;
    if (string_line_ && wide_string_line_) widen_for_sasl();
  }

  size_t i = 0;
  while (i < in.size()) {
    if (state_ == State::LitBody) {
      // Literal bytes in bulk: they count against the command budget only
      // (already reserved at the header, so take() cannot fail).
      const size_t take =
          std::min(static_cast<size_t>(lit_size_) - arg_.value.size(), in.size() - i);
      if (!budget_.take(take)) return fatal(ParseError::LineTooLong, i, used);
      arg_.value.append(in.substr(i, take));
      i += take;
      if (arg_.value.size() == lit_size_) end_arg();
      continue;
    }

    const char ch = in[i++];
    if (++line_bytes_ > line_max_ || !budget_.take(1))
      return fatal(ParseError::LineTooLong, i, used);
    // Hand the byte back and look at it again in the new state.
    auto again = [&] {
      --i;
      --line_bytes_;
      budget_.give_back(1);
    };

    switch (state_) {
      case State::Start:
        if (string_line_) {
          if (ch == '"' || ch == '{') {
            what_ = "Expected a string";
            arg_ = Arg{};
            arg_.type = Arg::Type::String;
            arg_.literal = ch == '{';
            lit_size_ = 0;
            lit_digits_ = 0;
            state_ = ch == '"' ? State::Quoted : State::LitSize;
          } else {
            syntax("Expected a string");
            again();
          }
        } else if (ch == '\n') {
          used = i;
          reset();
          return Result::EmptyLine;
        } else if (ch == '\r') {
          state_ = State::StartLf;
        } else if (is_atom_char(ch)) {
          cur_.name.push_back(ch);
          what_ = "Invalid command name";
          state_ = State::Name;
        } else {
          syntax("Invalid command name");
          again();
        }
        break;

      case State::StartLf:
        if (ch == '\n') {
          used = i;
          reset();
          return Result::EmptyLine;
        }
        syntax("Invalid command name");
        again();
        break;

      case State::Name:
        if (is_atom_char(ch)) {
          cur_.name.push_back(ch);
        } else {
          state_ = State::AfterItem;
          again();
        }
        break;

      case State::AfterItem:
        if (ch == '\n') return finish(i, used);
        if (ch == '\r') {
          state_ = State::EolLf;
        } else if (ch == ' ' && !string_line_) {
          state_ = State::ArgStart;
        } else {
          syntax(string_line_ ? what_ : "Expected space between arguments");
          again();
        }
        break;

      case State::EolLf:
        if (ch == '\n') return finish(i, used);
        syntax(what_);
        again();
        break;

      case State::ArgStart:
        arg_ = Arg{};
        if (ch == '"' || ch == '{') {
          what_ = "Invalid string argument";
          arg_.type = Arg::Type::String;
          arg_.literal = ch == '{';
          lit_size_ = 0;
          lit_digits_ = 0;
          state_ = ch == '"' ? State::Quoted : State::LitSize;
        } else if (is_atom_char(ch)) {
          arg_.value.push_back(ch);
          state_ = State::Atom;
        } else {
          syntax("Invalid argument");
          again();
        }
        break;

      case State::Atom:
        if (is_atom_char(ch)) {
          arg_.value.push_back(ch);
        } else {
          end_arg();
          again();
        }
        break;

      case State::Quoted:
        if (ch == '"') {
          end_arg();
        } else if (ch == '\\') {
          state_ = State::QuotedEsc;
        } else if (ch == '\r' || ch == '\n' || ch == '\0') {
          syntax(what_);
          again();
        } else {
          arg_.value.push_back(ch);
        }
        break;

      case State::QuotedEsc:
        if (ch == '"' || ch == '\\') {
          arg_.value.push_back(ch);
          state_ = State::Quoted;
        } else {
          syntax(what_);
          again();
        }
        break;

      case State::LitSize:
        if (ch >= '0' && ch <= '9') {
          if (lit_digits_ >= kMaxLiteralDigits) {
            syntax(what_);
            again();
            break;
          }
          lit_size_ = lit_size_ * 10 + static_cast<unsigned>(ch - '0');
          ++lit_digits_;
        } else if ((ch == '+' || ch == '}') && lit_digits_ > 0) {
          state_ = ch == '+' ? State::LitClose : State::LitEol;
        } else {
          syntax(what_);
          again();
        }
        break;

      case State::LitClose:
        if (ch == '}') {
          state_ = State::LitEol;
        } else {
          syntax(what_);
          again();
        }
        break;

      case State::LitEol:
      case State::LitLf:
        if (ch == '\r' && state_ == State::LitEol) {
          state_ = State::LitLf;
          break;
        }
        if (ch != '\n') {
          syntax(what_);
          again();
          break;
        }
        // The literal is announced: check it before reading any of it.
        if (lit_size_ > literal_max_)
          return fatal(ParseError::LiteralTooLarge, i, used);
        if (!budget_.fits(static_cast<size_t>(lit_size_)))
          return fatal(ParseError::LineTooLong, i, used);
        lit_digits_ = 0;
        if (lit_size_ == 0) {
          end_arg();
        } else {
          arg_.value.reserve(static_cast<size_t>(lit_size_));
          state_ = State::LitBody;
        }
        break;

      case State::SkipLine:
        if (ch == '\n') {
          used = i;
          error_ = ParseError::Syntax;
          error_text_.assign(what_);
          reset();
          return Result::Error;
        }
        break;

      case State::LitBody:
        break;  // handled above
    }
  }
  used = i;
  return Result::NeedMore;
}

bool ends_with_literal(std::string_view line, size_t& n) {
  if (line.size() < 3 || line.back() != '}') return false;
  size_t open = line.rfind('{');
  if (open == std::string_view::npos) return false;
  std::string_view digits = line.substr(open + 1, line.size() - open - 2);
  if (!digits.empty() && digits.back() == '+') digits.remove_suffix(1);
  if (digits.empty() || digits.size() > kMaxLiteralDigits) return false;
  auto v = core::parse_uint(digits);
  if (!v) return false;
  n = static_cast<size_t>(*v);
  return true;
}

Response parse_response(std::string_view raw) {
  Response r;
  Scan s{raw};
  auto string_at = [&](std::string& out) -> bool {
    Arg a;
    return s.string(a) == St::Ok && (out = std::move(a.value), true);
  };
  auto invalid = [&](std::string why) {
    r.kind = Response::Kind::Invalid;
    r.error = std::move(why);
    return r;
  };
  if (raw.empty()) return invalid("empty line");

  if (raw[0] == '"' || raw[0] == '{') {
    std::string first;
    if (!string_at(first)) return invalid("bad string");
    r.kind = Response::Kind::Strings;
    r.strings.push_back(std::move(first));
    while (!s.at_end()) {
      if (s.peek() != ' ' || s.pos + 1 >= raw.size()) return invalid("expected space");
      ++s.pos;
      const char c = s.peek();
      if (c != '"' && c != '{') return invalid("expected a string");
      std::string next;
      if (!string_at(next)) return invalid("bad string");
      r.strings.push_back(std::move(next));
    }
    return r;
  }

  std::string word;
  while (!s.at_end() && s.peek() != ' ') word.push_back(raw[s.pos++]);
  if (core::iequals(word, "OK")) {
    r.kind = Response::Kind::Ok;
  } else if (core::iequals(word, "NO")) {
    r.kind = Response::Kind::No;
  } else if (core::iequals(word, "BYE")) {
    r.kind = Response::Kind::Bye;
  } else {
    return invalid("unknown response");
  }
  if (s.at_end()) return r;
  ++s.pos;  // SP
  if (!s.at_end() && s.peek() == '(') {
    // resp-code: up to the matching ')' outside quoted strings.
    size_t start = ++s.pos;
    bool in_quote = false;
    for (;;) {
      if (s.at_end()) return invalid("unterminated response code");
      char c = raw[s.pos];
      if (in_quote && c == '\\' && s.pos + 1 < raw.size()) {
        s.pos += 2;
        continue;
      }
      if (c == '"') in_quote = !in_quote;
      if (c == ')' && !in_quote) break;
      ++s.pos;
    }
    r.code.assign(raw.substr(start, s.pos - start));
    ++s.pos;
    if (s.at_end()) return r;
    if (s.peek() != ' ') return invalid("expected space after response code");
    ++s.pos;
  }
  if (s.at_end()) return invalid("expected a string");
  const char c = s.peek();
  if (c != '"' && c != '{') return invalid("expected a string");
  if (!string_at(r.text)) return invalid("bad string");
  r.has_text = true;
  if (!s.at_end()) return invalid("trailing data");
  return r;
}

std::string_view code_name(std::string_view code) {
  size_t end = code.find(' ');
  return end == std::string_view::npos ? code : code.substr(0, end);
}

void append_quoted(std::string& out, std::string_view s) {
  out.push_back('"');
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
}

void append_string(std::string& out, std::string_view s, bool to_server) {
  if (s.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos) {
    append_quoted(out, s);
    return;
  }
  out.push_back('{');
  out += std::to_string(s.size());
  if (to_server) out.push_back('+');
  out += "}\r\n";
  out.append(s);
}

}  // namespace portier::protocols::managesieve
