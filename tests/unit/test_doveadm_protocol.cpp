// doveadm/protocol: the sans-I/O doveadm server protocol pieces. The byte
// strings are what Dovecot 2.3.19's doveadm CLI and server exchanged on the
// wire (captured while writing this module).
#include <gtest/gtest.h>

#include "core/base64.hpp"
#include "doveadm/protocol.hpp"

namespace dv = portier::doveadm;
using namespace std::string_literals;

TEST(DoveadmProtocol, VersionLine) {
  EXPECT_EQ(dv::parse_version("VERSION\tdoveadm-server\t1\t2"), 2u);
  EXPECT_EQ(dv::parse_version("VERSION\tdoveadm-server\t1\t0"), 0u);
  EXPECT_FALSE(dv::parse_version("VERSION\tdoveadm-server\t2\t0"));
  EXPECT_FALSE(dv::parse_version("VERSION\tdoveadm-client\t1\t0"));
  EXPECT_FALSE(dv::parse_version("VERSION\tdoveadm-server\t1\t"));
  EXPECT_FALSE(dv::parse_version("VERSION\tdoveadm-server\t1\t1x"));
  EXPECT_FALSE(dv::parse_version("PLAIN\tAA=="));
  EXPECT_EQ(dv::server_greeting(0), "-\n");
  EXPECT_EQ(dv::server_greeting(1), "VERSION\tdoveadm-client\t1\t1\n-\n");
  EXPECT_EQ(dv::client_version(1), "VERSION\tdoveadm-server\t1\t1\n");
}

TEST(DoveadmProtocol, PlainAuth) {
  // The CLI's line for doveadm_password=secretpw.
  EXPECT_TRUE(dv::check_plain("PLAIN\tAGRvdmVhZG0Ac2VjcmV0cHc=", "secretpw"));
  EXPECT_FALSE(dv::check_plain("PLAIN\tAGRvdmVhZG0Ac2VjcmV0cHc=", "secretpX"));
  EXPECT_FALSE(dv::check_plain("PLAIN\tAGRvdmVhZG0Ac2VjcmV0cHc=", ""));
  EXPECT_FALSE(dv::check_plain("PLAIN\tAGRvdmVhZG0Ad3Jvbmc=", "secretpw"));  // "wrong"
  const std::string other = portier::core::base64_encode("\0admin\0secretpw"s);
  EXPECT_FALSE(dv::check_plain("PLAIN\t" + other, "secretpw"));  // authcid must be doveadm
  const std::string authz = portier::core::base64_encode("x\0doveadm\0secretpw"s);
  EXPECT_FALSE(dv::check_plain("PLAIN\t" + authz, "secretpw"));
  EXPECT_FALSE(dv::check_plain("PLAIN\tnot base64!", "secretpw"));
  EXPECT_FALSE(dv::check_plain("LOGIN\tAGRvdmVhZG0Ac2VjcmV0cHc=", "secretpw"));
  EXPECT_EQ(dv::plain_line("secretpw").view(), "PLAIN\tAGRvdmVhZG0Ac2VjcmV0cHc=\n");
}

TEST(DoveadmProtocol, CommandLineRoundTrip) {
  auto c = dv::parse_command("\tuser1\tmailbox list\t-u\tuser1\t--");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->flags, "");
  EXPECT_EQ(c->user, "user1");
  EXPECT_EQ(c->name, "mailbox list");
  EXPECT_EQ(c->args, (std::vector<std::string>{"-u", "user1", "--"}));
  EXPECT_EQ(dv::render_command(*c, "user1"), "\tuser1\tmailbox list\t-u\tuser1\t--\n");
  EXPECT_EQ(dv::render_command(*c, "other"), "\tother\tmailbox list\t-u\tuser1\t--\n");
  auto e = dv::parse_command("D\ta\001tb\tsearch\tsubject\tx\001ny");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->flags, "D");
  EXPECT_EQ(e->user, "a\tb");
  EXPECT_EQ(e->args[1], "x\ny");
  EXPECT_EQ(dv::render_command(*e, e->user), "D\ta\001tb\tsearch\tsubject\tx\001ny\n");
  EXPECT_FALSE(dv::parse_command("\tuser1"));
  EXPECT_EQ(dv::tab_unescape("\0010\0011\001r\001q"), "\0\001\rq"s);
}

TEST(DoveadmProtocol, ScannerPlainReply) {
  dv::ReplyScanner s(false);
  EXPECT_EQ(s.feed("INBOX\tSent\t"), 11u);
  EXPECT_FALSE(s.done());
  EXPECT_TRUE(s.can_append());
  EXPECT_EQ(s.feed("\n+"), 2u);
  EXPECT_FALSE(s.done());
  EXPECT_FALSE(s.can_append());
  EXPECT_EQ(s.feed("\nEXTRA"), 1u);
  EXPECT_TRUE(s.done());
  EXPECT_EQ(s.status(), "+");
  dv::ReplyScanner n(false);
  EXPECT_EQ(n.feed("\n-NOUSER\n"), 9u);
  EXPECT_EQ(n.status(), "-NOUSER");
  EXPECT_EQ(dv::exit_code(n.status()), 67);
}

TEST(DoveadmProtocol, ScannerMultiplexedReplyByteByByte) {
  // A log packet, then the output and the status in two channel-0 packets.
  const std::string wire =
      "L\0\0\0\x2f\x04"s + "doveadm(127.0.0.1,nosuch): User doesn't exist\n" +
      "\0\0\0\0\x06INBOX\t"s + "\0\0\0\0\x09\n-NOUSER\n"s;
  dv::ReplyScanner s(true);
  size_t used = 0;
  for (size_t i = 0; i < wire.size() && !s.done(); ++i) used += s.feed(wire.substr(i, 1));
  EXPECT_TRUE(s.done());
  EXPECT_FALSE(s.failed());
  EXPECT_EQ(used, wire.size());
  EXPECT_EQ(s.status(), "-NOUSER");
  // Whole, with trailing bytes after the reply: they are not part of it.
  dv::ReplyScanner w(true);
  EXPECT_EQ(w.feed(wire + "\0\0\0\0\x01x"s), wire.size());
  EXPECT_TRUE(w.done());
  // A log line holding LF+"+"+LF does not end the reply (other channels are not scanned).
  dv::ReplyScanner l(true);
  l.feed("L\0\0\0\x04\x04\n+\n"s);
  EXPECT_FALSE(l.done());
  EXPECT_TRUE(l.can_append());
}

TEST(DoveadmProtocol, ScannerStatusTooLongFails) {
  dv::ReplyScanner s(false);
  s.feed("\n-");
  s.feed(std::string(5000, 'x'));
  EXPECT_TRUE(s.failed());
  EXPECT_FALSE(s.done());
}

TEST(DoveadmProtocol, ErrorReplies) {
  EXPECT_EQ(dv::error_reply(false, "ignored without multiplexing", "NOUSER"), "\n-NOUSER\n");
  const std::string m = dv::error_reply(true, "portier: backend down", "TEMPFAIL");
  const std::string log = "\x04portier: backend down\n";
  EXPECT_EQ(m, "L\0\0\0"s + char(log.size()) + log + "\0\0\0\0\x0b\n-TEMPFAIL\n"s);
  dv::ReplyScanner s(true);
  EXPECT_EQ(s.feed(m), m.size());
  EXPECT_EQ(s.status(), "-TEMPFAIL");
  EXPECT_EQ(dv::exit_code("-TEMPFAIL"), 75);
  EXPECT_EQ(dv::exit_code("+"), 0);
  EXPECT_EQ(dv::exit_code("-"), 75);
  EXPECT_EQ(dv::exit_code("-68"), 68);
}
