#pragma once
// Shared helpers for the libFuzzer targets in fuzz/ (see docs/FUZZING.md).
//
// Every target checks invariants beyond "does not crash": a violated one
// prints what and why and abort()s, which libFuzzer records as a crash.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace portier::fuzz {

[[noreturn]] inline void fail(const char* what, std::string_view detail) {
  std::string shown;
  for (char c : detail.substr(0, 2000)) {
    auto u = static_cast<unsigned char>(c);
    if (u == '\\') {
      shown += "\\\\";
    } else if (u >= 0x20 && u < 0x7f) {
      shown += c;
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      shown += buf;
    }
  }
  std::fprintf(stderr, "\n*** fuzz invariant violated: %s\n*** %s\n", what, shown.c_str());
  std::abort();
}

#define FUZZ_CHECK(cond, what, detail)                   \
  do {                                                   \
    if (!(cond)) ::portier::fuzz::fail((what), (detail)); \
  } while (0)

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

inline bool contains(std::string_view hay, std::string_view needle) {
  return !needle.empty() && hay.find(needle) != std::string_view::npos;
}

inline size_t count(std::string_view hay, std::string_view needle) {
  size_t n = 0;
  if (needle.empty()) return 0;
  for (size_t p = hay.find(needle); p != std::string_view::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

/// Protocol text: CR and LF appear only as CRLF pairs, and a non-empty
/// buffer ends with CRLF. If `literals` is set, IMAP/ManageSieve literal
/// bodies announced by a line ending in `{N}` or `{N+}` are skipped.
inline bool wire_clean(std::string_view s, bool literals, std::string* why = nullptr) {
  size_t i = 0, line_start = 0;
  while (i < s.size()) {
    char c = s[i];
    if (c == '\n') {
      if (why) *why = "bare LF at offset " + std::to_string(i);
      return false;
    }
    if (c != '\r') {
      ++i;
      continue;
    }
    if (i + 1 >= s.size() || s[i + 1] != '\n') {
      if (why) *why = "bare CR at offset " + std::to_string(i);
      return false;
    }
    std::string_view line = s.substr(line_start, i - line_start);
    i += 2;
    line_start = i;
    if (literals && !line.empty() && line.back() == '}') {
      size_t open = line.rfind('{');
      if (open != std::string_view::npos) {
        std::string_view num = line.substr(open + 1, line.size() - open - 2);
        if (!num.empty() && num.back() == '+') num.remove_suffix(1);
        if (!num.empty() && num.size() < 10 &&
            std::all_of(num.begin(), num.end(), [](char d) { return d >= '0' && d <= '9'; })) {
          size_t n = std::stoul(std::string(num));
          if (n > s.size() - i) {
            // The literal body follows in a later write (synchronizing literal).
            return true;
          }
          i += n;
          line_start = i;
        }
      }
    }
  }
  if (line_start != s.size()) {
    if (why) *why = "output does not end with CRLF";
    return false;
  }
  return true;
}

/// Splits `in` into lines the way the engine reads backend lines: on LF,
/// dropping one CR before it; a final unterminated piece is returned too.
inline std::vector<std::string_view> split_lines(std::string_view in) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos < in.size()) {
    size_t nl = in.find('\n', pos);
    size_t end = nl == std::string_view::npos ? in.size() : nl;
    size_t stop = (end > pos && in[end - 1] == '\r') ? end - 1 : end;
    out.push_back(in.substr(pos, stop - pos));
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  return out;
}

}  // namespace portier::fuzz
