#include "lmtp/smtp.hpp"

#include <algorithm>
#include <cctype>

namespace portier::lmtp {

namespace {

char upper(char c) { return static_cast<char>(std::toupper(static_cast<unsigned char>(c))); }

bool iequals_prefix(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (upper(s[i]) != upper(prefix[i])) return false;
  return true;
}

bool has_ctl(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
}

bool is_enhanced(std::string_view t, size_t& len) {
  // [245].d{1,3}.d{1,3} followed by space or end.
  size_t i = 0;
  if (t.empty() || (t[0] != '2' && t[0] != '4' && t[0] != '5')) return false;
  i = 1;
  for (int part = 0; part < 2; ++part) {
    if (i >= t.size() || t[i] != '.') return false;
    ++i;
    size_t d = 0;
    while (i < t.size() && std::isdigit(static_cast<unsigned char>(t[i])) && d < 4) ++i, ++d;
    if (d == 0 || d > 3) return false;
  }
  if (i < t.size() && t[i] != ' ') return false;
  len = i;
  return true;
}

std::vector<std::string_view> tokens(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && s[i] == ' ') ++i;
    size_t j = i;
    while (j < s.size() && s[j] != ' ') ++j;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

std::string upper_str(std::string_view s) {
  std::string o(s);
  for (auto& c : o) c = upper(c);
  return o;
}

}  // namespace

Command parse_command(std::string_view line) {
  Command c;
  size_t sp = line.find(' ');
  c.verb = upper_str(line.substr(0, sp));
  if (sp != std::string_view::npos) c.arg = line.substr(sp + 1);
  return c;
}

std::optional<PathArg> parse_path(std::string_view arg, std::string_view keyword) {
  if (has_ctl(arg) || !iequals_prefix(arg, keyword)) return std::nullopt;
  arg.remove_prefix(keyword.size());
  while (!arg.empty() && arg.front() == ' ') arg.remove_prefix(1);
  if (arg.empty() || arg.front() != '<') return std::nullopt;
  // The path ends at the first '>' outside a quoted local part.
  bool quoted = false;
  size_t end = std::string_view::npos;
  for (size_t i = 1; i < arg.size(); ++i) {
    char c = arg[i];
    if (quoted && c == '\\') {
      ++i;
      continue;
    }
    if (c == '"') quoted = !quoted;
    else if (c == '>' && !quoted) {
      end = i;
      break;
    }
  }
  if (end == std::string_view::npos) return std::nullopt;
  PathArg p;
  p.path = std::string(arg.substr(1, end - 1));
  if (p.path.find_first_of("<> ") != std::string::npos && p.path.front() != '"') return std::nullopt;
  std::string_view rest = arg.substr(end + 1);
  if (!rest.empty() && rest.front() != ' ') return std::nullopt;
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  while (!rest.empty() && rest.back() == ' ') rest.remove_suffix(1);
  p.params = std::string(rest);
  for (auto t : tokens(rest))
    if (iequals_prefix(t, "ORCPT=")) p.has_orcpt = true;
  return p;
}

std::string Reply::render() const {
  std::string out = std::to_string(code);
  if (!enhanced.empty()) out += " " + enhanced;
  if (!text.empty()) out += " " + text;
  return out;
}

ReplyParser::Status ReplyParser::feed(std::string_view line) {
  if (line.size() < 3 || !std::isdigit(static_cast<unsigned char>(line[0])) ||
      !std::isdigit(static_cast<unsigned char>(line[1])) || !std::isdigit(static_cast<unsigned char>(line[2])) ||
      line[0] < '2' || line[0] > '5')
    return Status::Bad;
  int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  bool last = true;
  if (line.size() > 3) {
    if (line[3] == '-') last = false;
    else if (line[3] != ' ') return Status::Bad;
  }
  if (n_ > 0 && code != cur_.code) return Status::Bad;
  if (++n_ > 100) return Status::Bad;
  cur_.code = code;
  std::string_view text = line.size() > 4 ? line.substr(4) : std::string_view{};
  cur_.lines.emplace_back(text);
  if (!last) return Status::More;
  size_t len = 0;
  if (is_enhanced(text, len)) {
    cur_.enhanced = std::string(text.substr(0, len));
    text.remove_prefix(len);
    if (!text.empty()) text.remove_prefix(1);
  }
  cur_.text = std::string(text);
  return Status::Done;
}

Reply ReplyParser::take() {
  Reply r = std::move(cur_);
  cur_ = Reply{};
  n_ = 0;
  return r;
}

bool Capabilities::has(std::string_view kw) const {
  return std::find(keywords.begin(), keywords.end(), upper_str(kw)) != keywords.end();
}

Capabilities parse_capabilities(const Reply& r) {
  Capabilities c;
  for (size_t i = 1; i < r.lines.size(); ++i) {
    auto t = tokens(r.lines[i]);
    if (t.empty()) continue;
    std::string kw = upper_str(t[0]);
    if (kw == "XCLIENT") {
      c.xclient = true;
      for (size_t j = 1; j < t.size(); ++j) c.xclient_attrs.push_back(upper_str(t[j]));
    } else if (kw == "PIPELINING") {
      c.pipelining = true;
    } else if (kw == "XRCPTFORWARD") {
      c.xrcptforward = true;
    }
    c.keywords.push_back(std::move(kw));
  }
  return c;
}

size_t DataScanner::feed(std::string_view chunk) {
  for (size_t i = 0; i < chunk.size(); ++i) {
    char c = chunk[i];
    switch (state_) {
      case 0:
        state_ = c == '\r' ? 1 : 0;
        break;
      case 1:
        state_ = c == '\n' ? 2 : c == '\r' ? 1 : 0;
        break;
      case 2:
        state_ = c == '.' ? 3 : c == '\r' ? 1 : 0;
        break;
      case 3:
        state_ = c == '\r' ? 4 : 0;
        break;
      case 4:
        if (c == '\n') {
          state_ = 2;
          return i + 1;
        }
        state_ = c == '\r' ? 1 : 0;
        break;
    }
  }
  return std::string_view::npos;
}

std::pair<std::string, std::string> split_detail(std::string_view addr, std::string_view delimiters) {
  size_t at = addr.rfind('@');
  std::string_view local = addr.substr(0, at);
  size_t d = delimiters.empty() ? std::string_view::npos : local.find_first_of(delimiters);
  if (d == std::string_view::npos || d == 0) return {std::string(addr), ""};
  std::string user(local.substr(0, d));
  if (at != std::string_view::npos) user += addr.substr(at);
  return {user, std::string(local.substr(d + 1))};
}

std::string join_detail(std::string_view addr, char delimiter, std::string_view detail) {
  if (detail.empty()) return std::string(addr);
  size_t at = addr.rfind('@');
  std::string out(addr.substr(0, at));
  out += delimiter;
  out += detail;
  if (at != std::string_view::npos) out += addr.substr(at);
  return out;
}

std::string xtext_encode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string o;
  for (unsigned char c : s) {
    if (c < 33 || c > 126 || c == '+' || c == '=') {
      o += '+';
      o += hex[c >> 4];
      o += hex[c & 15];
    } else {
      o += static_cast<char>(c);
    }
  }
  return o;
}

std::string xtext_decode(std::string_view s) {
  auto val = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::string o;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+' && i + 2 < s.size() && val(s[i + 1]) >= 0 && val(s[i + 2]) >= 0) {
      o += static_cast<char>(val(s[i + 1]) * 16 + val(s[i + 2]));
      i += 2;
    } else {
      o += s[i];
    }
  }
  return o;
}

std::optional<std::vector<std::pair<std::string, std::string>>> parse_xclient(std::string_view arg) {
  if (has_ctl(arg)) return std::nullopt;
  std::vector<std::pair<std::string, std::string>> out;
  for (auto t : tokens(arg)) {
    size_t eq = t.find('=');
    if (eq == std::string_view::npos || eq == 0) return std::nullopt;
    std::string name = upper_str(t.substr(0, eq));
    if (!std::all_of(name.begin(), name.end(),
                     [](char c) { return (c >= 'A' && c <= 'Z') || c == '-' || c == '_'; }))
      return std::nullopt;
    out.emplace_back(std::move(name), xtext_decode(t.substr(eq + 1)));
  }
  if (out.empty()) return std::nullopt;
  return out;
}

std::vector<std::string> xclient_lines(const std::vector<std::pair<std::string, std::string>>& attrs,
                                       const std::vector<std::string>& advertised) {
  constexpr size_t kMax = 512;
  std::vector<std::string> out;
  std::string cur;
  for (const auto& [name, value] : attrs) {
    if (std::find(advertised.begin(), advertised.end(), name) == advertised.end()) continue;
    std::string item = " " + name + "=" + xtext_encode(value);
    if (!cur.empty() && cur.size() + item.size() + 2 > kMax) {
      out.push_back(cur + "\r\n");
      cur.clear();
    }
    if (cur.empty()) cur = "XCLIENT";
    if (cur.size() + item.size() + 2 > kMax) continue;  // a single oversized attribute: dropped
    cur += item;
  }
  if (!cur.empty()) out.push_back(cur + "\r\n");
  return out;
}

std::string clean_text(std::string_view s) {
  std::string o(s);
  for (auto& c : o)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return o;
}

}  // namespace portier::lmtp
