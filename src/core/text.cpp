#include "core/text.hpp"

namespace portier::core {

bool printable_ascii(std::string_view s) noexcept {
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c >= 0x7f) return false;
  }
  return true;
}

bool no_control_chars(std::string_view s) noexcept {
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

bool visible_ascii(std::string_view s) noexcept {
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

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

std::string sanitize_for_log(std::string_view s, size_t max) {
  std::string out;
  bool cut = s.size() > max;
  if (cut) s = s.substr(0, max);
  out.reserve(s.size() + 3);
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    out.push_back(c < 0x20 || c == 0x7f ? '?' : ch);
  }
  if (cut) out.append("...");
  return out;
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

}  // namespace portier::core
