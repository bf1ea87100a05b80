// login::PreloginInput and login::ClientUpdate (issue 9: the shared pre-login
// input and the one rule for trusted client-address updates), core/text.
#include <gtest/gtest.h>

#include <asio/ip/address.hpp>
#include <string>

#include "core/text.hpp"
#include "login/client_update.hpp"
#include "login/prelogin_input.hpp"

using namespace portier;
using login::ClientField;
using login::ClientUpdate;
using login::PreloginInput;

TEST(PreloginInput, LinesConsumeAndRest) {
  PreloginInput in;
  in.append("USER a\r\nPA");
  EXPECT_EQ(in.take_line(100), PreloginInput::Line::Ready);
  EXPECT_EQ(in.line(), "USER a");
  EXPECT_EQ(in.take_line(100), PreloginInput::Line::NeedMore);
  in.append("SS p\nNOOP\r\n");
  EXPECT_EQ(in.take_line(100), PreloginInput::Line::Ready);
  EXPECT_EQ(in.line(), "PASS p");
  in.forget_line();
  EXPECT_EQ(in.line(), "");
  EXPECT_EQ(in.take_rest(), "NOOP\r\n");
  EXPECT_EQ(in.avail(), "");
}

TEST(PreloginInput, LineLimitWithAndWithoutLf) {
  PreloginInput in;
  in.append("abcd\n");
  EXPECT_EQ(in.take_line(4, /*lf_counts=*/true), PreloginInput::Line::TooLong);
  EXPECT_EQ(in.take_line(4), PreloginInput::Line::Ready);
  in.append("abcde");
  EXPECT_EQ(in.take_line(4), PreloginInput::Line::TooLong);
}

TEST(PreloginInput, CompactsAndWipes) {
  PreloginInput in;
  std::string big(5000, 'x');
  in.append(big + "tail");
  in.consume(5000);
  EXPECT_EQ(in.avail(), "tail");
  in.append("more");
  EXPECT_EQ(in.avail(), "tailmore");
  in.wipe();
  EXPECT_EQ(in.avail(), "");
}

namespace {
login::ClientInfo base_client() {
  login::ClientInfo c;
  c.remote_ip = asio::ip::make_address("192.0.2.7");
  c.remote_port = 40000;
  c.session_id = "sess";
  return c;
}
}  // namespace

TEST(ClientUpdate, AllOrNothing) {
  auto c = base_client();
  ClientUpdate u(c);
  EXPECT_TRUE(u.set(ClientField::RemoteIp, "10.0.0.1"));
  EXPECT_FALSE(u.set(ClientField::RemotePort, "0"));
  EXPECT_FALSE(u.apply(c));
  EXPECT_EQ(c.remote_ip.to_string(), "192.0.2.7");
  EXPECT_EQ(c.remote_port, 40000);

  ClientUpdate ok(c);
  EXPECT_TRUE(ok.set(ClientField::RemoteIp, "[2001:db8::1]"));
  EXPECT_TRUE(ok.set(ClientField::LocalIp, "IPV6:2001:db8::2"));
  EXPECT_TRUE(ok.set(ClientField::Ttl, "0"));
  EXPECT_TRUE(ok.set(ClientField::Transport, "tls"));
  EXPECT_TRUE(ok.apply(c));
  EXPECT_EQ(c.remote_ip.to_string(), "2001:db8::1");
  EXPECT_EQ(c.local_ip.to_string(), "2001:db8::2");
  EXPECT_EQ(c.proxy_ttl, 0u);
  EXPECT_TRUE(c.end_client_tls);
}

TEST(ClientUpdate, Rules) {
  auto c = base_client();
  EXPECT_FALSE(ClientUpdate(c).set(ClientField::LocalIp, "IPV6:10.0.0.1"));
  EXPECT_FALSE(ClientUpdate(c).set(ClientField::RemotePort, "65536"));
  EXPECT_FALSE(ClientUpdate(c).set(ClientField::Ttl, "4294967296"));
  EXPECT_FALSE(ClientUpdate(c).set(ClientField::SessionId, std::string("a\0b", 3)));
  // Empty or over-long session ids are ignored, not errors (Dovecot).
  ClientUpdate u(c);
  EXPECT_TRUE(u.set(ClientField::SessionId, std::string(65, 'a')));
  EXPECT_TRUE(u.set(ClientField::SessionId, ""));
  EXPECT_TRUE(u.apply(c));
  EXPECT_EQ(c.session_id, "sess");
  EXPECT_EQ(ClientUpdate::xclient_field("destport"), ClientField::LocalPort);
  EXPECT_EQ(ClientUpdate::xclient_field("HELO"), std::nullopt);
}

// Issue 9 drift resolved: printable_ascii means one thing everywhere
// (0x20..0x7e); the IMAP backend's looser rule for x-forward-* values (UTF-8
// allowed) is a different, named check.
TEST(CoreText, PrintableVisibleAndNoControls) {
  EXPECT_TRUE(core::printable_ascii("a b~"));
  EXPECT_FALSE(core::printable_ascii("p\xc3\xa4"));
  EXPECT_FALSE(core::printable_ascii("a\x7f"));
  EXPECT_TRUE(core::no_control_chars("p\xc3\xa4 x"));
  EXPECT_FALSE(core::no_control_chars("a\r"));
  EXPECT_FALSE(core::visible_ascii("a b"));
  EXPECT_TRUE(core::visible_ascii("a\"b\\c"));
  EXPECT_EQ(core::one_line("a\r\nb", 3), "a  ");
  EXPECT_EQ(core::sanitize_for_log("a\nbcdef", 4), "a?bc...");
}
