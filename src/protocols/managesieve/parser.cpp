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

#include "core/strings.hpp"

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

namespace {

// Shared tail of both parse functions: turn a scan status into a Result.
CommandParser::Result finish(St st, const Scan& s, const CommandParser::Limits& limits,
                             size_t& used, ParseError& error, std::string& error_text,
                             std::string_view what) {
  const size_t non_literal =
      (s.literal_start != std::string_view::npos ? s.literal_start : s.in.size()) -
      s.literal_bytes;
  switch (st) {
    case St::Ok:
      if (s.pos - s.literal_bytes > limits.max_line_length) {
        error = ParseError::LineTooLong;
        return CommandParser::Result::Error;
      }
      used = s.pos;
      return CommandParser::Result::Command;
    case St::NeedMore:
      if (non_literal > limits.max_line_length) {
        error = ParseError::LineTooLong;
        return CommandParser::Result::Error;
      }
      return CommandParser::Result::NeedMore;
    case St::TooLarge:
      error = ParseError::LiteralTooLarge;
      return CommandParser::Result::Error;
    case St::Syntax: {
      // Skip the rest of the bad line (wait for its end if it is not here yet).
      size_t lf = s.in.find('\n', s.pos);
      if (lf == std::string_view::npos) {
        if (non_literal > limits.max_line_length) {
          error = ParseError::LineTooLong;
          return CommandParser::Result::Error;
        }
        return CommandParser::Result::NeedMore;
      }
      used = lf + 1;
      error = ParseError::Syntax;
      error_text.assign(what);
      return CommandParser::Result::Error;
    }
  }
  return CommandParser::Result::NeedMore;
}

}  // namespace

CommandParser::Result CommandParser::parse(std::string_view in, size_t& used) {
  used = 0;
  cmd_ = Command{};
  error_ = ParseError::None;
  error_text_.clear();
  if (in.empty()) return Result::NeedMore;
  if (in[0] == '\n' || (in.size() >= 2 && in[0] == '\r' && in[1] == '\n')) {
    used = in[0] == '\n' ? 1 : 2;
    return Result::EmptyLine;
  }

  Scan s{in};
  s.max_literal = limits_.max_literal_size;
  St st = s.atom(cmd_.name);
  std::string_view what = "Invalid command name";
  while (st == St::Ok) {
    bool eol = false;
    st = s.end_of_line(eol);
    if (st != St::Ok || eol) break;
    if (s.peek() != ' ') {
      st = St::Syntax;
      what = "Expected space between arguments";
      break;
    }
    ++s.pos;
    if (s.at_end()) {
      st = St::NeedMore;
      break;
    }
    Arg arg;
    const char c = s.peek();
    if (c == '"' || c == '{') {
      st = s.string(arg);
      what = "Invalid string argument";
    } else if (is_atom_char(c)) {
      st = s.atom(arg.value);
    } else {
      st = St::Syntax;
      what = "Invalid argument";
    }
    if (st == St::Ok) cmd_.args.push_back(std::move(arg));
  }
  return finish(st, s, limits_, used, error_, error_text_, what);
}

CommandParser::Result CommandParser::parse_string_line(std::string_view in, size_t& used) {
  used = 0;
  cmd_ = Command{};
  error_ = ParseError::None;
  error_text_.clear();
  if (in.empty()) return Result::NeedMore;
  Scan s{in};
  s.max_literal = limits_.max_literal_size;
  Arg arg;
  St st = St::Syntax;
  if (in[0] == '"' || in[0] == '{') st = s.string(arg);
  if (st == St::Ok) {
    bool eol = false;
    st = s.end_of_line(eol);
    if (st == St::Ok && !eol) st = St::Syntax;
  }
  if (st == St::Ok) cmd_.args.push_back(std::move(arg));
  return finish(st, s, limits_, used, error_, error_text_, "Expected a string");
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
