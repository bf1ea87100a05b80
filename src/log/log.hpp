#pragma once
// The log line writer. Two formats, two targets ([log] format / target):
//  text (default), Dovecot's shape, so fail2ban filters and log parsers keep working:
//    2026-11-28 20:37:23 imap-login: Info: proxy(user1,127.0.0.1:21143): Started proxying ...
//  json: one JSON object per line with the same message plus the event's typed
//    fields: {"time":"…","level":"info","service":"imap-login","event":"proxy_started",…,"message":"…"}
//  stderr (default): one write(2) per line, so lines from worker threads never interleave;
//  syslog: one RFC 3164 datagram per line (facility mail, ident "portier") to
//    [log] syslog_socket (default /dev/log, the socket syslog(3) uses), sent
//    without blocking: when the socket's queue is full the line is dropped and
//    counted, and the next line that gets through reports the count.
// Thread-safe. Secrets must never be passed in.
//
// Owns: the process-wide sink settings and the line formats. Uses: core.

#include <fmt/format.h>

#include "core/result.hpp"

#include <atomic>
#include <string>
#include <string_view>
#include <vector>

namespace portier::log {

enum class Level { Debug = 0, Info, Warning, Error, Fatal };
enum class Format { Text, Json };
enum class Target { Stderr, Syslog };

/// Set the minimum level written (default Info).
void set_level(Level level);
/// Parse "debug" | "info" | "warning" | "error".
bool parse_level(std::string_view name, Level& out);
bool enabled(Level level);

/// One typed field of a JSON line. `literal` values (numbers, true/false) are
/// written as they are; all others as JSON strings (escaped, control
/// characters and invalid UTF-8 replaced by '?').
struct Field {
  std::string_view key;
  std::string value;
  bool literal = false;
};
using Fields = std::vector<Field>;
inline Field num(std::string_view key, long long v) { return {key, std::to_string(v), true}; }
inline Field flag(std::string_view key, bool v) { return {key, v ? "true" : "false", true}; }

struct SinkOptions {
  Format format = Format::Text;
  Target target = Target::Stderr;
  std::string syslog_socket = "/dev/log";
  std::string syslog_ident = "portier";
};
/// Switch format and target (at start, before the workers run). For syslog
/// the socket is connected now (reconnected later when needed); on failure
/// `error` is set and stderr stays the target.
core::Result<void> configure(const SinkOptions& opts);
/// True when lines are JSON: callers then build the typed fields.
bool json();

/// Write one line: text `<date> <time> <service>: <Level>: <message>`, or a
/// JSON object with `fields` (may be null) between service and message.
void write(Level level, std::string_view service, std::string_view message,
           const Fields* fields = nullptr);

template <typename... Args>
void logf(Level level, std::string_view service, fmt::format_string<Args...> f, Args&&... args) {
  if (!enabled(level)) return;
  write(level, service, fmt::format(f, std::forward<Args>(args)...));
}

/// Make a value safe for one log line: control characters become '?', and
/// the result is cut at `max` bytes.
std::string sanitize(std::string_view s, size_t max = 256);

/// Lines the syslog target dropped so far (its socket's queue was full).
unsigned long long dropped();

}  // namespace portier::log
