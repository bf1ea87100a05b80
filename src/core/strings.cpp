#include "core/strings.hpp"

#include <array>
#include <limits>

namespace portier::core {

namespace {

constexpr char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; }
constexpr char upper(char c) noexcept { return (c >= 'a' && c <= 'z') ? char(c - 'a' + 'A') : c; }
constexpr bool is_ws(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

bool istarts_with(std::string_view s, std::string_view prefix) noexcept {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

std::string to_lower(std::string_view s) {
  std::string r(s);
  for (auto& c : r) c = lower(c);
  return r;
}

std::string to_upper(std::string_view s) {
  std::string r(s);
  for (auto& c : r) c = upper(c);
  return r;
}

std::vector<std::string_view> split_ws(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_ws(s[i])) ++i;
    size_t start = i;
    while (i < s.size() && !is_ws(s[i])) ++i;
    if (i > start) out.push_back(s.substr(start, i - start));
  }
  return out;
}

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && is_ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ws(s.back())) s.remove_suffix(1);
  return s;
}

std::optional<unsigned long long> parse_uint(std::string_view s) noexcept {
  if (s.empty()) return std::nullopt;
  unsigned long long v = 0;
  constexpr auto max = std::numeric_limits<unsigned long long>::max();
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    unsigned d = unsigned(c - '0');
    if (v > (max - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

std::optional<std::chrono::milliseconds> parse_duration(std::string_view s) noexcept {
  s = trim(s);
  size_t n = 0;
  while (n < s.size() && s[n] >= '0' && s[n] <= '9') ++n;
  auto num = parse_uint(s.substr(0, n));
  if (!num) return std::nullopt;
  std::string_view unit = trim(s.substr(n));
  unsigned long long mult = 0;
  struct U { std::string_view name; unsigned long long mult; };
  static constexpr std::array<U, 17> units{{
      {"", 1000},          {"ms", 1},          {"msec", 1},       {"msecs", 1},
      {"millisecond", 1},  {"milliseconds", 1}, {"s", 1000},       {"sec", 1000},
      {"secs", 1000},      {"second", 1000},   {"seconds", 1000}, {"m", 60000},
      {"min", 60000},      {"mins", 60000},    {"minute", 60000}, {"minutes", 60000},
      {"h", 3600000},
  }};
  for (const auto& u : units)
    if (iequals(unit, u.name)) { mult = u.mult; break; }
  if (mult == 0 && (iequals(unit, "hour") || iequals(unit, "hours"))) mult = 3600000;
  if (mult == 0) return std::nullopt;
  constexpr auto max = static_cast<unsigned long long>(std::numeric_limits<std::chrono::milliseconds::rep>::max());
  if (*num > max / mult) return std::nullopt;
  return std::chrono::milliseconds(static_cast<std::chrono::milliseconds::rep>(*num * mult));
}

}  // namespace portier::core
