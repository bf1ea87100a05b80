// POP3 plug-in text helpers.

#include "protocols/pop3/text.hpp"

namespace portier::protocols::pop3 {

std::string one_line(std::string_view s, size_t max) {
  if (s.size() > max) s = s.substr(0, max);
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    out.push_back(c < 0x20 || c == 0x7f ? ' ' : ch);
  }
  return out;
}

bool xclient_value_ok(std::string_view v) {
  if (v.empty()) return false;
  for (char ch : v) {
    auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

void append_tabescaped(std::string& out, std::string_view s) {
  for (char c : s) {
    switch (c) {
      case '\001': out += "\001" "1"; break;
      case '\t': out += "\001t"; break;
      case '\r': out += "\001r"; break;
      case '\n': out += "\001n"; break;
      default: out.push_back(c);
    }
  }
}

}  // namespace portier::protocols::pop3
