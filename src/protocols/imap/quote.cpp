// IMAP string quoting for the backend leg (Dovecot's imap_append_string rule).
//
//   alice            -> "alice"
//   pa"ss\           -> "pa\"ss\\"
//   a"b"c"d"e        -> {9}\r\na"b"c"d"e      (five specials: literal)
//   pässword         -> {9}\r\npässword       (8-bit: literal)

#include "protocols/imap/quote.hpp"

namespace portier::protocols::imap {

namespace {
constexpr int kMaxQuotedEscapes = 4;
}

bool needs_literal(std::string_view s) {
  int escapes = 0;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\r' || c == '\n' || c == '\0' || c >= 0x80) return true;
    if ((c == '"' || c == '\\') && ++escapes > kMaxQuotedEscapes) return true;
  }
  return false;
}

void append_quoted(std::string& out, std::string_view s) {
  out.reserve(out.size() + s.size() + 2);
  out.push_back('"');
  for (char c : s) {
    if (c == '\r' || c == '\n' || c == '\0') continue;
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
}

void append_string(std::string& out, std::string_view s) {
  if (!needs_literal(s)) {
    append_quoted(out, s);
    return;
  }
  out.push_back('{');
  out.append(std::to_string(s.size()));
  out.append("}\r\n");
  out.append(s);
}

std::string quote_string(std::string_view s) {
  std::string out;
  append_string(out, s);
  return out;
}

}  // namespace portier::protocols::imap
