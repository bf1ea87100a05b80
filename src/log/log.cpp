#include "log/log.hpp"

#include "core/result.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <chrono>
#include <cstring>
#include <ctime>
#include <mutex>

namespace portier::log {

namespace {
std::atomic<int> g_level{static_cast<int>(Level::Info)};
constexpr std::string_view kLevelNames[] = {"Debug", "Info", "Warning", "Error", "Fatal"};
constexpr std::string_view kJsonLevels[] = {"debug", "info", "warning", "error", "fatal"};
// syslog severities (debug, info, warning, err, crit) with facility mail (2 << 3).
constexpr int kSyslogSeverity[] = {7, 6, 4, 3, 2};
constexpr int kFacilityMail = 2 << 3;
std::atomic<Format> g_format{Format::Text};
std::atomic<Target> g_target{Target::Stderr};
// stderr is systemd's journal (JOURNAL_STREAM names it): no date (the journal
// stamps each line) and a "<N>" severity prefix, which journald turns into
// the entry's priority (`journalctl -p warning` works).
std::atomic<bool> g_journal{false};

/// The syslog target's socket. The mutex is held for one send(), which never
/// blocks (MSG_DONTWAIT), and around reconnects.
struct Syslog {
  std::mutex mu;
  int fd = -1;
  std::string path;
  std::string ident;
  std::atomic<unsigned long long> dropped{0};
  unsigned long long reported = 0;
} g_syslog;
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

namespace {

/// A JSON string: append_clean's replacements, then '"' and '\\' escaped.
void append_json_string(std::string& out, std::string_view s) {
  std::string clean;
  append_clean(clean, s);
  out += '"';
  for (char c : clean) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}

void append_local_time(std::string& out, const char* fmt) {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char date[32];
  out.append(date, std::strftime(date, sizeof date, fmt, &tm));
}

/// The text line's date, formatted once a second per thread (localtime_r
/// and strftime cost more than the rest of the line).
std::string_view cached_date() {
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
  return {date, dl};
}

void render_text(std::string& line, bool with_date, Level level, std::string_view service,
                 std::string_view message) {
  if (with_date) {
    line += cached_date();
    line += ' ';
  }
  line += service;
  line += ": ";
  line += kLevelNames[static_cast<int>(level)];
  line += ": ";
  append_clean(line, message);
}

void render_json(std::string& line, Level level, std::string_view service,
                 std::string_view message, const Fields* fields) {
  using namespace std::chrono;
  auto now = system_clock::now();
  std::time_t t = system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char date[32];
  size_t dl = std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
  auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  line += fmt::format("{{\"time\":\"{}.{:03}Z\",\"level\":\"{}\",\"service\":",
                      std::string_view(date, dl), ms, kJsonLevels[static_cast<int>(level)]);
  append_json_string(line, service);
  if (fields) {
    for (const auto& f : *fields) {
      line += ',';
      append_json_string(line, f.key);
      line += ':';
      if (f.literal) line += f.value;
      else append_json_string(line, f.value);
    }
  }
  line += ",\"message\":";
  append_json_string(line, message);
  line += '}';
}

void write_stderr(const std::string& line) {
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

core::Result<void> syslog_connect_locked() {
  if (g_syslog.fd >= 0) ::close(g_syslog.fd);
  g_syslog.fd = -1;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (g_syslog.path.empty() || g_syslog.path.size() >= sizeof sa.sun_path)
    return core::fail("log.syslog_socket: path empty or too long");
  std::memcpy(sa.sun_path, g_syslog.path.data(), g_syslog.path.size());
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    auto err = core::fail("cannot connect to syslog socket " + g_syslog.path + ": " +
                          std::strerror(errno));
    if (fd >= 0) ::close(fd);
    return err;
  }
  g_syslog.fd = fd;
  return {};
}

/// One datagram, never blocking. False: not sent (and not counted as dropped).
bool syslog_send_locked(int severity, std::string_view body, bool& dropped) {
  std::string msg = fmt::format("<{}>", kFacilityMail | severity);
  append_local_time(msg, "%b %e %H:%M:%S");
  msg += fmt::format(" {}[{}]: ", g_syslog.ident, ::getpid());
  msg += body;
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (g_syslog.fd >= 0 &&
        ::send(g_syslog.fd, msg.data(), msg.size(), MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
      return true;
    if (g_syslog.fd >= 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
      dropped = true;
      return false;
    }
    // The receiver went away (journald/rsyslog restarted): reconnect once.
    if (!syslog_connect_locked()) break;
  }
  return false;
}

void write_syslog(Level level, const std::string& body) {
  std::lock_guard lock(g_syslog.mu);
  unsigned long long lost = g_syslog.dropped.load();
  if (lost > g_syslog.reported) {
    std::string note;
    render_text(note, false, Level::Warning, "portier",
                fmt::format("{} log lines dropped: the syslog socket's queue was full",
                            lost - g_syslog.reported));
    bool d = false;
    if (syslog_send_locked(kSyslogSeverity[static_cast<int>(Level::Warning)], note, d))
      g_syslog.reported = lost;
  }
  bool dropped = false;
  if (syslog_send_locked(kSyslogSeverity[static_cast<int>(level)], body, dropped)) return;
  if (dropped) {
    ++g_syslog.dropped;
    return;
  }
  // No syslog daemon at all: the line goes to stderr rather than nowhere.
  write_stderr(body + "\n");
}

}  // namespace

static bool stderr_is_journal() {
  const char* js = std::getenv("JOURNAL_STREAM");
  unsigned long long dev = 0, ino = 0;
  struct stat st {};
  return js && std::sscanf(js, "%llu:%llu", &dev, &ino) == 2 && ::fstat(STDERR_FILENO, &st) == 0 &&
         static_cast<unsigned long long>(st.st_dev) == dev &&
         static_cast<unsigned long long>(st.st_ino) == ino;
}

core::Result<void> configure(const SinkOptions& opts) {
  g_format.store(opts.format);
  g_journal.store(stderr_is_journal());
  if (opts.target != Target::Syslog) {
    g_target.store(Target::Stderr);
    return {};
  }
  std::lock_guard lock(g_syslog.mu);
  g_syslog.path = opts.syslog_socket;
  g_syslog.ident = opts.syslog_ident;
  if (auto r = syslog_connect_locked(); !r) return r;
  g_target.store(Target::Syslog);
  return {};
}

bool json() { return g_format.load(std::memory_order_relaxed) == Format::Json; }

unsigned long long dropped() { return g_syslog.dropped.load(); }

void write(Level level, std::string_view service, std::string_view message,
           const Fields* fields) {
  if (!enabled(level)) return;
  const bool syslog = g_target.load(std::memory_order_relaxed) == Target::Syslog;
  std::string line;
  line.reserve(service.size() + message.size() + 48);
  const bool journal = !syslog && g_journal.load(std::memory_order_relaxed);
  static constexpr std::string_view kPrefix[] = {"<7>", "<6>", "<4>", "<3>", "<2>"};  // = kSyslogSeverity
  if (journal) line += kPrefix[static_cast<int>(level)];
  if (json()) render_json(line, level, service, message, fields);
  else render_text(line, !syslog && !journal, level, service, message);
  if (syslog) {
    write_syslog(level, line);
    return;
  }
  line += '\n';
  write_stderr(line);
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
