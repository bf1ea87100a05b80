// SMTP syntax helpers (see smtp.hpp).
//
//   parse_reply_line("250-PIPELINING")         -> {250, more, "PIPELINING"}
//   parse_reply_line("535 5.7.8 Auth failed.")  -> {535, last, "5.7.8 Auth failed."}
//   split_enhanced_code("5.7.8 Auth failed.")   -> "Auth failed.", code "5.7.8"
//   xtext_encode("a b+c")                       -> "a+20b+2Bc"

#include "protocols/submission/smtp.hpp"

#include "core/text.hpp"

namespace portier::protocols::submission {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

bool xtext_plain(unsigned char c) { return c >= '!' && c <= '~' && c != '+' && c != '='; }

}  // namespace

std::optional<ReplyLine> parse_reply_line(std::string_view line) {
  if (line.size() < 3 || !is_digit(line[0]) || !is_digit(line[1]) || !is_digit(line[2]))
    return std::nullopt;
  ReplyLine r;
  r.status = static_cast<unsigned>((line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0'));
  if (r.status < 200 || r.status >= 560) return std::nullopt;
  if (line.size() == 3) {  // a bare code: a last line without text
    r.last = true;
    return r;
  }
  if (line[3] != ' ' && line[3] != '-') return std::nullopt;
  r.last = line[3] == ' ';
  r.text = line.substr(4);
  return r;
}

std::string_view split_enhanced_code(std::string_view text, std::string_view& code) {
  code = {};
  // class "." subject(1-3 digits) "." detail(1-3 digits) SP
  if (text.size() < 5 || (text[0] != '2' && text[0] != '4' && text[0] != '5') || text[1] != '.')
    return text;
  size_t p = 2;
  for (int part = 0; part < 2; ++part) {
    size_t digits = 0;
    while (p < text.size() && is_digit(text[p]) && digits < 3) {
      ++p;
      ++digits;
    }
    if (digits == 0) return text;
    if (part == 0) {
      if (p >= text.size() || text[p] != '.') return text;
      ++p;
    }
  }
  if (p == text.size()) {  // "2.0.0" alone
    code = text;
    return {};
  }
  if (text[p] != ' ') return text;
  code = text.substr(0, p);
  return text.substr(p + 1);
}

std::string xtext_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (xtext_plain(c)) {
      out.push_back(ch);
    } else {
      out.push_back('+');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
  }
  return out;
}

std::optional<std::string> xtext_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == '+') {
      if (i + 2 >= s.size()) return std::nullopt;
      int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c >= '!' && c <= '~' && c != '=') {
      out.push_back(static_cast<char>(c));
    } else {
      return std::nullopt;
    }
  }
  return out;
}

std::string sanitize_for_log(std::string_view s, size_t max) {
  return core::sanitize_for_log(s, max);
}

}  // namespace portier::protocols::submission
