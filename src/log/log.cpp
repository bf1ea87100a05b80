#include "log/log.hpp"

#include <unistd.h>

#include <ctime>

namespace portier::log {

namespace {
std::atomic<int> g_level{static_cast<int>(Level::Info)};
constexpr std::string_view kLevelNames[] = {"Debug", "Info", "Warning", "Error", "Fatal"};
}  // namespace

void set_level(Level level) { g_level.store(static_cast<int>(level)); }

bool parse_level(std::string_view name, Level& out) {
  if (name == "debug" || name == "trace") out = Level::Debug;
  else if (name == "info") out = Level::Info;
  else if (name == "warning" || name == "warn") out = Level::Warning;
  else if (name == "error") out = Level::Error;
  else if (name == "off") out = Level::Fatal;
  else return false;
  return true;
}

bool enabled(Level level) { return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed); }

namespace {
/// Append `s` with every invalid UTF-8 byte and every control character
/// replaced by '?': peer bytes that reached a message (a backend's
/// garbage banner, say) must not break log parsers or forge lines.
void append_clean(std::string& out, std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    // Clean printable ASCII (nearly every message) is copied a run at a time.
    size_t run = i;
    while (run < s.size() && static_cast<unsigned char>(s[run]) >= 0x20 &&
           static_cast<unsigned char>(s[run]) < 0x7f)
      ++run;
    if (run > i) {
      out.append(s.data() + i, run - i);
      i = run;
      continue;
    }
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out += (c < 0x20 || c == 0x7f) ? '?' : static_cast<char>(c);
      ++i;
      continue;
    }
    size_t len = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c <= 0xdf ? 2 : 0;
    bool ok = len > 0 && c < 0xf5 && i + len <= s.size();
    for (size_t k = 1; ok && k < len; ++k)
      ok = (static_cast<unsigned char>(s[i + k]) & 0xc0) == 0x80;
    if (ok && len == 3) {
      unsigned char c1 = static_cast<unsigned char>(s[i + 1]);
      ok = !(c == 0xe0 && c1 < 0xa0) && !(c == 0xed && c1 >= 0xa0);  // overlong, surrogates
    } else if (ok && len == 4) {
      unsigned char c1 = static_cast<unsigned char>(s[i + 1]);
      ok = !(c == 0xf0 && c1 < 0x90) && !(c == 0xf4 && c1 >= 0x90);
    }
    if (ok) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out += '?';
      ++i;
    }
  }
}
}  // namespace

void write(Level level, std::string_view service, std::string_view message) {
  if (!enabled(level)) return;
  // The date is formatted once a second per thread (localtime_r and
  // strftime cost more than the rest of the line).
  thread_local std::time_t last = -1;
  thread_local char date[32];
  thread_local size_t dl = 0;
  std::time_t now = std::time(nullptr);
  if (now != last) {
    std::tm tm{};
    localtime_r(&now, &tm);
    dl = std::strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S", &tm);
    last = now;
  }
  std::string line;
  line.reserve(dl + service.size() + message.size() + 16);
  line.append(date, dl);
  line += ' ';
  line += service;
  line += ": ";
  line += kLevelNames[static_cast<int>(level)];
  line += ": ";
  append_clean(line, message);
  line += '\n';
  // A single write keeps lines whole even with several worker threads.
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n <= 0) break;
    p += n;
    left -= static_cast<size_t>(n);
  }
}

std::string sanitize(std::string_view s, size_t max) {
  std::string out;
  out.reserve(std::min(s.size(), max));
  for (char c : s) {
    if (out.size() >= max) break;
    unsigned char u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? '?' : c;
  }
  return out;
}

}  // namespace portier::log
