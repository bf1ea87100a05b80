// log: the text and JSON line formats, and the syslog target's datagrams
// (format, facility, never blocking when the socket's queue is full).
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <regex>
#include <string>

#include "log/log.hpp"

using namespace portier;

namespace {

struct SinkReset {
  ~SinkReset() {
    (void)log::configure({});  // text on stderr
  }
};

std::string capture(log::Level lvl, std::string_view service, std::string_view msg,
                    const log::Fields* f = nullptr) {
  testing::internal::CaptureStderr();
  log::write(lvl, service, msg, f);
  return testing::internal::GetCapturedStderr();
}

}  // namespace

TEST(Log, TextLineUnchanged) {
  SinkReset reset;
  std::string line = capture(log::Level::Info, "imap-login", "Login: user=<a\x01>");
  EXPECT_TRUE(std::regex_match(line, std::regex(R"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d imap-login: Info: Login: user=<a\?>\n)")))
      << line;
}

TEST(Log, JsonLineWithTypedFields) {
  SinkReset reset;
  log::SinkOptions o;
  o.format = log::Format::Json;
  ASSERT_TRUE(log::configure(o));
  EXPECT_TRUE(log::json());
  log::Fields f{{"event", "auth_refused"}, {"user", "we\"ird\\\x02\xff"}, log::num("limit", 3),
                log::flag("tls", true)};
  std::string line = capture(log::Level::Warning, "auth", "msg \"q\"", &f);
  std::smatch m;
  ASSERT_TRUE(std::regex_match(
      line, m,
      std::regex(R"(\{"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z","level":"warning","service":"auth",(.*)\}\n)")))
      << line;
  EXPECT_EQ(m[1].str(),
            R"("event":"auth_refused","user":"we\"ird\\??","limit":3,"tls":true,"message":"msg \"q\"")");
  // Not an event: only time, level, service, message.
  line = capture(log::Level::Info, "portier", "Ready");
  EXPECT_NE(line.find(R"("level":"info","service":"portier","message":"Ready"})"), std::string::npos)
      << line;
}

TEST(Log, SyslogDatagramsNeverBlock) {
  SinkReset reset;
  char dir[] = "/tmp/portier-logtest.XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string path = std::string(dir) + "/log";
  int s = ::socket(AF_UNIX, SOCK_DGRAM, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path.c_str());
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);

  log::SinkOptions o;
  o.target = log::Target::Syslog;
  o.syslog_socket = path;
  o.syslog_ident = "portier-test";
  ASSERT_TRUE(log::configure(o));
  log::write(log::Level::Error, "imap-login", "boom");
  char buf[512];
  ssize_t n = ::recv(s, buf, sizeof buf, 0);
  ASSERT_GT(n, 0);
  std::string d(buf, static_cast<size_t>(n));
  // <19> = mail (2 << 3) | err (3); RFC 3164 date; tag[pid]; the text line without a date.
  EXPECT_TRUE(std::regex_match(
      d, std::regex(R"(<19>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d portier-test\[\d+\]: imap-login: Error: boom)")))
      << d;

  // Nobody reads: the queue fills, writes return at once, lines are counted.
  auto before = log::dropped();
  for (int i = 0; i < 2000; ++i) log::write(log::Level::Info, "portier", "filler");
  EXPECT_GT(log::dropped(), before);
  // Drain, then the next line is preceded by the drop report.
  while (::recv(s, buf, sizeof buf, MSG_DONTWAIT) > 0) {
  }
  log::write(log::Level::Info, "portier", "after");
  n = ::recv(s, buf, sizeof buf, 0);
  ASSERT_GT(n, 0);
  EXPECT_NE(std::string(buf, static_cast<size_t>(n)).find("log lines dropped"), std::string::npos);
  n = ::recv(s, buf, sizeof buf, 0);
  ASSERT_GT(n, 0);
  EXPECT_NE(std::string(buf, static_cast<size_t>(n)).find("portier: Info: after"), std::string::npos);

  // The receiver is gone: the line goes to stderr rather than nowhere.
  ::close(s);
  ::unlink(path.c_str());
  std::string line = capture(log::Level::Info, "portier", "no daemon");
  EXPECT_NE(line.find("portier: Info: no daemon"), std::string::npos) << line;
  ::rmdir(dir);
}

TEST(Log, SyslogSocketMissingIsAnError) {
  SinkReset reset;
  log::SinkOptions o;
  o.target = log::Target::Syslog;
  o.syslog_socket = "/nonexistent/portier.sock";
  auto r = log::configure(o);
  ASSERT_FALSE(r);
  const std::string& err = r.error().message;
  EXPECT_NE(err.find("cannot connect to syslog socket /nonexistent/portier.sock"), std::string::npos)
      << err;
}
