#pragma once
// Log lines in Dovecot's shape, so fail2ban filters and log parsers keep working:
//   2026-11-28 20:37:23 imap-login: Info: proxy(user1,127.0.0.1:21143): Started proxying ...
// One write(2) per line, so lines from worker threads never interleave.
// Thread-safe. Secrets must never be passed in.

#include <fmt/format.h>

#include <atomic>
#include <string>
#include <string_view>

namespace portier::log {

enum class Level { Debug = 0, Info, Warning, Error, Fatal };

/// Set the minimum level written (default Info).
void set_level(Level level);
/// Parse "debug" | "info" | "warning" | "error".
bool parse_level(std::string_view name, Level& out);
bool enabled(Level level);

/// Write one line: `<date> <time> <service>: <Level>: <message>`.
void write(Level level, std::string_view service, std::string_view message);

template <typename... Args>
void logf(Level level, std::string_view service, fmt::format_string<Args...> f, Args&&... args) {
  if (!enabled(level)) return;
  write(level, service, fmt::format(f, std::forward<Args>(args)...));
}

/// Make a value safe for one log line: control characters become '?', and
/// the result is cut at `max` bytes.
std::string sanitize(std::string_view s, size_t max = 256);

}  // namespace portier::log
