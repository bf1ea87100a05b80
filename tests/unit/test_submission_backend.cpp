// Submission BackendLogin: proxy → backend login, byte for byte against the
// spec (§5.1-§5.4, §14 S1-S11) and the Dovecot captures in
// ../shared/reference/transcripts/dovecot-submission.txt and
// dovecot-starttls-submission.txt.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/base64.hpp"
#include "protocols/submission/backend_login.hpp"

using namespace portier;
namespace sub = portier::protocols::submission;
using namespace std::string_literals;
using login::BackendEvent;
using login::FailureType;
using sub::State;

namespace {

// The backend's EHLO reply in dovecot-submission.txt (Dovecot 2.3.19, trusted proxy).
const std::vector<std::string> kEhlo = {
    "250-backend.lab",     "250-8BITMIME",  "250-AUTH PLAIN LOGIN", "250-BURL imap",
    "250-CHUNKING",        "250-ENHANCEDSTATUSCODES", "250-SIZE",  "250-STARTTLS",
    "250-PIPELINING",
    "250 XCLIENT ADDR PORT PROTO HELO LOGIN SESSION TTL TIMEOUT FORWARD"};
// The same without XCLIENT (an untrusted proxy).
const std::vector<std::string> kEhloNoXclient = {
    "250-backend.lab", "250-8BITMIME", "250-AUTH PLAIN LOGIN", "250-ENHANCEDSTATUSCODES",
    "250-STARTTLS", "250 PIPELINING"};
// 2.4 advertises every attribute.
const std::vector<std::string> kEhlo24 = {
    "250-backend.lab", "250-AUTH PLAIN", "250-ENHANCEDSTATUSCODES",
    "250 XCLIENT ADDR PORT PROTO HELO LOGIN SESSION CLIENT-TRANSPORT TTL TIMEOUT DESTNAME "
    "DESTADDR DESTPORT FORWARD"};

constexpr const char* kXclient23 =
    "XCLIENT HELO=client.lab PROTO=ESMTP TTL=4 PORT=60318 ADDR=127.0.0.1 "
    "SESSION=UK0E71thnut/AAAB\r\n";
// base64("user1\0user1\0pass"), as in the capture.
constexpr const char* kAuthPlain = "AUTH PLAIN dXNlcjEAdXNlcjEAcGFzcw==\r\n";

struct Fixture {
  login::ClientInfo client;
  login::BackendLoginParams params;
  sub::ClientSmtpInfo smtp{"client.lab", "ESMTP", ""};
  std::unique_ptr<sub::BackendLogin> b;

  Fixture() {
    client.remote_ip = asio::ip::make_address("127.0.0.1");
    client.remote_port = 60318;
    client.local_ip = asio::ip::make_address("127.0.0.1");
    client.local_port = 22587;
    client.session_id = "UK0E71thnut/AAAB";
    client.proxy_ttl = 5;
    params.user = "user1";
    params.password = "pass";
    params.hostname = "proxy.lab";
    params.client = &client;
  }

  sub::BackendLogin& make() {
    b = std::make_unique<sub::BackendLogin>(params, smtp);
    return *b;
  }

  // Feeds lines; every one but the last must be Continue. Returns the last event.
  BackendEvent feed(const std::vector<std::string>& lines) {
    BackendEvent ev = BackendEvent::Continue;
    for (size_t i = 0; i < lines.size(); ++i) {
      ev = b->on_line(lines[i]);
      if (i + 1 < lines.size()) {
        EXPECT_EQ(ev, BackendEvent::Continue) << "line " << lines[i] << ": "
                                              << b->failure().reason;
        if (ev != BackendEvent::Continue) return ev;
      }
    }
    return ev;
  }

  std::string take() {
    std::string out = b->output();
    b->output().clear();
    return out;
  }

  // banner → EHLO → reply; returns what the machine wrote after the EHLO reply.
  std::string through_ehlo(const std::vector<std::string>& ehlo) {
    make();
    EXPECT_EQ(b->state(), "banner");
    EXPECT_EQ(b->on_line("220 backend.lab Dovecot (Debian) ready."), BackendEvent::Continue);
    EXPECT_EQ(take(), "EHLO proxy.lab\r\n");
    EXPECT_EQ(b->state(), "ehlo");
    EXPECT_EQ(feed(ehlo), BackendEvent::Continue) << b->failure().reason;
    return take();
  }
};

// ---------------------------------------------------------------- S1, S3, S7
TEST(SubmissionBackend, CaptureDialogueXclientThenAuth) {
  Fixture f;
  // XCLIENT with only the 2.3-advertised attributes, in Dovecot's order, and
  // the second EHLO pipelined in the same write.
  EXPECT_EQ(f.through_ehlo(kEhlo), kXclient23 + "EHLO proxy.lab\r\n"s);
  EXPECT_EQ(f.b->state(), "xclient");
  EXPECT_EQ(f.b->on_line("220 backend.lab Dovecot (Debian) ready."), BackendEvent::Continue);
  EXPECT_EQ(f.b->state(), "xclient-ehlo");
  EXPECT_EQ(f.take(), "");
  EXPECT_EQ(f.feed(kEhlo), BackendEvent::Continue);
  EXPECT_EQ(f.take(), kAuthPlain);
  EXPECT_EQ(f.b->state(), "authenticate");
  EXPECT_EQ(f.b->on_line("235 2.7.0 Logged in."), BackendEvent::Success);
  EXPECT_EQ(f.b->client_reply(), "235 2.7.0 Logged in.\r\n");
  EXPECT_EQ(f.take(), "");
}

TEST(SubmissionBackend, NoXclientAdvertisedGoesStraightToAuth) {
  Fixture f;
  EXPECT_EQ(f.through_ehlo(kEhloNoXclient), kAuthPlain);
  EXPECT_EQ(f.b->state(), "authenticate");
}

TEST(SubmissionBackend, NotTrustedSuppressesXclient) {  // C27
  Fixture f;
  f.params.not_trusted = true;
  EXPECT_EQ(f.through_ehlo(kEhlo), kAuthPlain);
}

TEST(SubmissionBackend, MultiLineBannerAccepted) {
  Fixture f;
  f.make();
  EXPECT_EQ(f.b->on_line("220-backend.lab first"), BackendEvent::Continue);
  EXPECT_EQ(f.take(), "");
  EXPECT_EQ(f.b->state(), "banner");
  EXPECT_EQ(f.b->on_line("220 backend.lab ready"), BackendEvent::Continue);
  EXPECT_EQ(f.take(), "EHLO proxy.lab\r\n");
}

// ---------------------------------------------------------------------- S3
TEST(SubmissionBackend, Xclient24AllAttributesInOrder) {
  Fixture f;
  f.client.end_client_tls = true;
  f.params.forward = {{"x", "y"}};
  std::string out = f.through_ehlo(kEhlo24);
  const std::string fwd = core::base64_encode("x=y");  // eD15
  EXPECT_EQ(out,
            "XCLIENT HELO=client.lab PROTO=ESMTP TTL=4 PORT=60318 ADDR=127.0.0.1 DESTPORT=22587 "
            "DESTADDR=127.0.0.1 SESSION=UK0E71thnut/AAAB CLIENT-TRANSPORT=TLS FORWARD=" +
                fwd + "\r\nEHLO proxy.lab\r\n");
}

TEST(SubmissionBackend, XclientIpv6GetsPrefixAndV4MappedDoesNot) {
  Fixture f;
  f.client.remote_ip = asio::ip::make_address("2001:db8::7");
  f.client.local_ip = asio::ip::make_address("::ffff:192.0.2.1");
  f.make();
  auto cmds = f.b->build_xclient({"ADDR", "DESTADDR"});
  ASSERT_EQ(cmds.size(), 1u);
  EXPECT_EQ(cmds[0], "XCLIENT ADDR=IPV6:2001:db8::7 DESTADDR=192.0.2.1\r\n");
}

TEST(SubmissionBackend, XclientUnavailableHeloAndProtoAndXtext) {
  Fixture f;
  f.smtp = {"", "", ""};
  f.client.session_id = "a+b=c";
  f.make();
  auto cmds = f.b->build_xclient({"helo", "proto", "session"});  // case-insensitive
  ASSERT_EQ(cmds.size(), 1u);
  EXPECT_EQ(cmds[0], "XCLIENT HELO=[UNAVAILABLE] PROTO=[UNAVAILABLE] SESSION=a+2Bb+3Dc\r\n");
}

TEST(SubmissionBackend, XclientNothingOfOursAdvertisedSendsNone) {
  Fixture f;
  EXPECT_EQ(f.through_ehlo({"250-backend.lab", "250-AUTH PLAIN", "250 XCLIENT NAME"}), kAuthPlain);
}

TEST(SubmissionBackend, XclientSplitAt512Bytes) {
  Fixture f;
  f.smtp.helo = std::string(450, 'h');
  f.params.forward = {{"k", std::string(340, 'v')}};
  std::string out = f.through_ehlo(kEhlo24);
  EXPECT_EQ(f.b->state(), "xclient");
  // Three commands: HELO..ADDR fill the first (509 bytes), FORWARD needs its own.
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < out.size()) {
    size_t e = out.find("\r\n", pos);
    lines.push_back(out.substr(pos, e + 2 - pos));
    pos = e + 2;
  }
  ASSERT_EQ(lines.size(), 4u) << out;
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(lines[i].starts_with("XCLIENT ")) << lines[i];
    EXPECT_LE(lines[i].size(), 512u) << lines[i];
  }
  EXPECT_TRUE(lines[0].starts_with("XCLIENT HELO=hhh"));
  EXPECT_TRUE(lines[0].ends_with(" ADDR=127.0.0.1\r\n"));
  EXPECT_EQ(lines[1],
            "XCLIENT DESTPORT=22587 DESTADDR=127.0.0.1 SESSION=UK0E71thnut/AAAB "
            "CLIENT-TRANSPORT=insecure\r\n");
  EXPECT_TRUE(lines[2].starts_with("XCLIENT FORWARD="));
  EXPECT_EQ(lines[3], "EHLO proxy.lab\r\n");
  // One reply per XCLIENT; only then the EHLO reply counts.
  EXPECT_EQ(f.b->on_line("220 backend.lab ready"), BackendEvent::Continue);
  EXPECT_EQ(f.b->state(), "xclient");
  EXPECT_EQ(f.b->on_line("220 backend.lab ready"), BackendEvent::Continue);
  EXPECT_EQ(f.b->state(), "xclient");
  EXPECT_EQ(f.b->on_line("220 backend.lab ready"), BackendEvent::Continue);
  EXPECT_EQ(f.b->state(), "xclient-ehlo");
  EXPECT_EQ(f.feed(kEhlo24), BackendEvent::Continue);
  EXPECT_TRUE(f.take().starts_with("AUTH PLAIN "));
}

TEST(SubmissionBackend, ForwardIsTabJoinedAndTabEscaped) {
  Fixture f;
  f.params.forward = {{"a", "1"}, {"b", "x\ty"}};
  f.make();
  auto cmds = f.b->build_xclient({"FORWARD"});
  ASSERT_EQ(cmds.size(), 1u);
  // The base64 is xtext-encoded too: its '=' padding becomes +3D.
  EXPECT_EQ(cmds[0], "XCLIENT FORWARD=YT0xCWI9eAF0eQ+3D+3D\r\n");
  EXPECT_EQ(core::base64_encode("a=1\tb=x\001ty"), "YT0xCWI9eAF0eQ==");
}

// ---------------------------------------------------------------------- S4
TEST(SubmissionBackend, XclientRefusedIsRemoteConfig) {
  Fixture f;
  f.through_ehlo(kEhlo);
  EXPECT_EQ(f.b->on_line("550 5.7.14 You are not from trusted IP"), BackendEvent::Failure);
  EXPECT_EQ(f.b->failure().type, FailureType::RemoteConfig);
  EXPECT_EQ(f.b->failure().reason, "XCLIENT failed: 550 5.7.14 You are not from trusted IP");
  EXPECT_FALSE(login::failure_retryable(f.b->failure().type));
  EXPECT_EQ(f.b->state(), "xclient");
}

// ---------------------------------------------------------------------- S2
TEST(SubmissionBackend, StartTlsThenEhloAgain) {
  Fixture f;
  f.params.starttls = true;
  f.params.tls = true;
  EXPECT_EQ(f.through_ehlo(kEhlo), "STARTTLS\r\n");
  EXPECT_EQ(f.b->state(), "starttls");
  EXPECT_EQ(f.b->on_line("220 2.0.0 Begin TLS negotiation now."), BackendEvent::StartTls);
  EXPECT_EQ(f.take(), "");
  EXPECT_EQ(f.b->on_tls_ready(), BackendEvent::Continue);
  EXPECT_EQ(f.take(), "EHLO proxy.lab\r\n");
  EXPECT_EQ(f.b->state(), "tls-ehlo");
  // Capabilities from before TLS are forgotten: this EHLO has no XCLIENT.
  EXPECT_EQ(f.feed(kEhloNoXclient), BackendEvent::Continue);
  EXPECT_EQ(f.take(), kAuthPlain);
}

TEST(SubmissionBackend, StartTlsThenXclient) {
  Fixture f;
  f.params.starttls = true;
  f.through_ehlo(kEhlo);
  EXPECT_EQ(f.b->on_line("220 2.0.0 Begin TLS negotiation now."), BackendEvent::StartTls);
  EXPECT_EQ(f.b->on_tls_ready(), BackendEvent::Continue);
  f.take();
  EXPECT_EQ(f.feed(kEhlo), BackendEvent::Continue);
  EXPECT_EQ(f.take(), kXclient23 + "EHLO proxy.lab\r\n"s);
  EXPECT_EQ(f.b->state(), "xclient");
}

TEST(SubmissionBackend, StartTlsNotAdvertisedIsRemoteConfig) {
  Fixture f;
  f.params.starttls = true;
  f.make();
  f.b->on_line("220 backend ready");
  EXPECT_EQ(f.feed({"250-backend", "250 AUTH PLAIN"}), BackendEvent::Failure);
  EXPECT_EQ(f.b->failure().type, FailureType::RemoteConfig);
  EXPECT_EQ(f.b->failure().reason, "STARTTLS not supported");
}

TEST(SubmissionBackend, StartTlsRefusedIsRemote) {
  Fixture f;
  f.params.starttls = true;
  f.through_ehlo(kEhlo);
  EXPECT_EQ(f.b->on_line("454 4.7.0 TLS not available"), BackendEvent::Failure);
  EXPECT_EQ(f.b->failure().type, FailureType::Remote);
  EXPECT_EQ(f.b->failure().reason, "STARTTLS failed: 454 4.7.0 TLS not available");
  EXPECT_TRUE(login::failure_retryable(f.b->failure().type));
}

// ---------------------------------------------------------------------- S5
TEST(SubmissionBackend, AuthNotAdvertisedIsRemoteConfig) {
  Fixture f;
  f.make();
  f.b->on_line("220 backend ready");
  EXPECT_EQ(f.feed({"250-backend", "250-AUTH", "250 STARTTLS"}), BackendEvent::Failure);
  EXPECT_EQ(f.b->failure().type, FailureType::RemoteConfig);
  EXPECT_EQ(f.b->failure().reason, "Authentication support not advertised (TLS required?)");
  EXPECT_EQ(f.take(), "EHLO proxy.lab\r\n");  // no credentials went out
}

// ---------------------------------------------------------------------- S6
TEST(SubmissionBackend, LongInitialResponseAfterEmpty334) {
  Fixture f;
  f.params.password = std::string(400, 'p');
  EXPECT_EQ(f.through_ehlo(kEhloNoXclient), "AUTH PLAIN\r\n");
  EXPECT_EQ(f.b->state(), "authenticate");
  EXPECT_EQ(f.b->on_line("334 "), BackendEvent::Continue);
  EXPECT_EQ(f.take(),
            core::base64_encode("user1\0user1\0"s + std::string(400, 'p')) + "\r\n");
  EXPECT_EQ(f.b->on_line("235 2.7.0 Logged in."), BackendEvent::Success);
}

TEST(SubmissionBackend, LongInitialResponseNonEmpty334IsProtocol) {
  Fixture f;
  f.params.password = std::string(400, 'p');
  f.through_ehlo(kEhloNoXclient);
  EXPECT_EQ(f.b->on_line("334 VXNlcm5hbWU6"), BackendEvent::Failure);
  EXPECT_EQ(f.b->failure().type, FailureType::Protocol);
  EXPECT_EQ(f.b->failure().reason,
            "Server sent unexpected server-first challenge: 334 VXNlcm5hbWU6");
}

TEST(SubmissionBackend, ExactLimitFitsOnOneLine) {
  // "AUTH PLAIN " (11) + base64 + CRLF (2) == 512 -> 499 base64 chars is not a
  // multiple of 4; 496 is: raw 372 bytes = "user1\0user1\0" (12) + 360.
  Fixture f;
  f.params.password = std::string(360, 'p');
  std::string out = f.through_ehlo(kEhloNoXclient);
  EXPECT_EQ(out.size(), 11u + 496u + 2u);
  EXPECT_TRUE(out.starts_with("AUTH PLAIN "));
}

TEST(SubmissionBackend, MasterUserAndLoginMech) {
  Fixture f;
  f.params.master = "admin";
  f.params.password = "mpass";
  EXPECT_EQ(f.through_ehlo(kEhloNoXclient),
            "AUTH PLAIN " + core::base64_encode("user1\0admin\0mpass"s) + "\r\n");

  Fixture g;
  g.params.mech = "login";
  EXPECT_EQ(g.through_ehlo(kEhloNoXclient), "AUTH LOGIN\r\n");
  EXPECT_EQ(g.b->on_line("334 VXNlcm5hbWU6"), BackendEvent::Continue);
  EXPECT_EQ(g.take(), core::base64_encode("user1") + "\r\n");
  EXPECT_EQ(g.b->on_line("334 UGFzc3dvcmQ6"), BackendEvent::Continue);
  EXPECT_EQ(g.take(), core::base64_encode("pass") + "\r\n");
  EXPECT_EQ(g.b->on_line("235 2.7.0 Authentication successful"), BackendEvent::Success);
  EXPECT_EQ(g.b->client_reply(), "235 2.7.0 Authentication successful\r\n");
}

TEST(SubmissionBackend, ChallengeErrors) {
  struct Case {
    std::vector<std::string> lines;
    std::string reason;
  };
  const std::vector<Case> cases = {
      {{"334-VXNlcm5hbWU6"}, "Server returned multi-line challenge: 334-VXNlcm5hbWU6"},
      {{"334 !!!"}, "Invalid base64 data in AUTH response"},
      {{"334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6", "334 UGFzc3dvcmQ6"},
       "Invalid authentication data: unexpected challenge"},
      {{"299x"}, "Invalid AUTH reply: 299x"},
  };
  for (const auto& c : cases) {
    Fixture f;
    f.params.mech = "LOGIN";
    f.through_ehlo(kEhloNoXclient);
    EXPECT_EQ(f.feed(c.lines), BackendEvent::Failure) << c.reason;
    EXPECT_EQ(f.b->failure().type, FailureType::Protocol) << c.reason;
    EXPECT_EQ(f.b->failure().reason, c.reason);
  }
}

// ---------------------------------------------------------------------- S8
TEST(SubmissionBackend, AuthReplies) {
  struct Case {
    std::vector<std::string> lines;
    BackendEvent ev;
    FailureType type;
    std::string client_reply;
    std::string reason;
  };
  const std::vector<Case> cases = {
      {{"535 5.7.8 Authentication failed."}, BackendEvent::Failure, FailureType::AuthReplied,
       "535 5.7.8 Authentication failed.\r\n", "Authentication failed."},
      {{"454 4.7.0 Temporary authentication failure."}, BackendEvent::Failure,
       FailureType::AuthTempfail, "454 4.7.0 Temporary authentication failure.\r\n",
       "Temporary authentication failure."},
      {{"421 4.3.2 Service shutting down"}, BackendEvent::Failure, FailureType::AuthTempfail,
       "421 4.3.2 Service shutting down\r\n", "Service shutting down"},
      // No enhanced code from the backend: the class default, as Dovecot's smtp-server.
      {{"535 Go away"}, BackendEvent::Failure, FailureType::AuthReplied, "535 5.0.0 Go away\r\n",
       "Go away"},
      {{"535-5.7.8 first", "535 5.7.8 second"}, BackendEvent::Failure, FailureType::AuthReplied,
       "535-5.7.8 first\r\n535 5.7.8 second\r\n", "first"},
      {{"550 5.2.900 user1@10.0.0.2:587 Referral"}, BackendEvent::Failure,
       FailureType::AuthRedirect, "", "user1@10.0.0.2:587 Referral"},
      {{"235-2.7.0 Hello", "235 2.7.0 Logged in."}, BackendEvent::Success, FailureType::Internal,
       "", ""},
  };
  for (const auto& c : cases) {
    Fixture f;
    f.through_ehlo(kEhloNoXclient);
    EXPECT_EQ(f.feed(c.lines), c.ev) << c.lines[0];
    if (c.ev == BackendEvent::Failure) {
      EXPECT_EQ(f.b->failure().type, c.type) << c.lines[0];
      EXPECT_EQ(f.b->failure().client_reply, c.client_reply) << c.lines[0];
      EXPECT_EQ(f.b->failure().reason, c.reason) << c.lines[0];
    } else {
      EXPECT_EQ(f.b->client_reply(), "235-2.7.0 Hello\r\n235 2.7.0 Logged in.\r\n");
    }
  }
  EXPECT_TRUE(login::failure_retryable(FailureType::AuthTempfail));
  EXPECT_FALSE(login::failure_retryable(FailureType::AuthReplied));
}

TEST(SubmissionBackend, TooManyAuthReplyLines) {
  Fixture f;
  f.through_ehlo(kEhloNoXclient);
  for (int i = 0; i < 128; ++i) ASSERT_EQ(f.b->on_line("535-5.7.8 x"), BackendEvent::Continue);
  EXPECT_EQ(f.b->on_line("535-5.7.8 x"), BackendEvent::Failure);
  EXPECT_EQ(f.b->failure().type, FailureType::Protocol);
  EXPECT_EQ(f.b->failure().reason, "Backend sent too many AUTH reply lines (>128)");
}

// ---------------------------------------------------------------------- S9
TEST(SubmissionBackend, NoauthSendsXclientLoginAndNoAuth) {
  Fixture f;
  f.params.noauth = true;
  EXPECT_EQ(f.through_ehlo(kEhlo),
            "XCLIENT HELO=client.lab PROTO=ESMTP LOGIN=user1 TTL=4 PORT=60318 ADDR=127.0.0.1 "
            "SESSION=UK0E71thnut/AAAB\r\nEHLO proxy.lab\r\n");
  EXPECT_EQ(f.b->on_line("220 backend.lab ready"), BackendEvent::Continue);
  EXPECT_EQ(f.feed(kEhlo), BackendEvent::Success);
  EXPECT_EQ(f.take(), "");  // no AUTH
  EXPECT_EQ(f.b->client_reply(), "235 2.7.0 Logged in.\r\n");
  EXPECT_EQ(f.b->state(), "xclient-ehlo");
}

// Issue 8 item 6: an upstream's XCLIENT LOGIN must not choose the identity
// the backend trusts; LOGIN= is always the authenticated (dest)user.
TEST(SubmissionBackend, NoauthIgnoresUpstreamLogin) {
  Fixture f;
  f.params.noauth = true;
  f.params.user = "user1";
  f.smtp.login = "someone-else";
  f.make();
  auto cmds = f.b->build_xclient({"LOGIN"});
  ASSERT_EQ(cmds.size(), 1u);
  EXPECT_EQ(cmds[0], "XCLIENT LOGIN=user1\r\n");
}

TEST(SubmissionBackend, NoauthWithoutXclientLoginRefuses) {
  // Without XCLIENT LOGIN the backend session would be unauthenticated.
  for (bool not_trusted : {false, true}) {
    Fixture f;
    f.params.noauth = true;
    f.params.not_trusted = not_trusted;
    f.make();
    f.b->on_line("220 ready");
    f.take();
    EXPECT_EQ(f.feed(not_trusted ? kEhlo : kEhloNoXclient), BackendEvent::Failure);
    EXPECT_EQ(f.b->failure().type, FailureType::RemoteConfig);
    EXPECT_EQ(f.b->failure().reason,
              "proxy_noauth set, but the backend did not accept XCLIENT LOGIN");
    EXPECT_EQ(f.take(), "");  // neither XCLIENT nor AUTH
  }
}

// --------------------------------------------------------- protocol errors
TEST(SubmissionBackend, InvalidLinesPerState) {
  struct Case {
    std::vector<std::string> before;  // after the banner
    std::string line;
    std::string state;
    FailureType type;
    std::string reason;
  };
  const std::vector<Case> cases = {
      {{}, "* OK IMAP here", "banner", FailureType::Protocol, "Invalid banner: * OK IMAP here"},
      {{}, "554 5.3.2 go away", "banner", FailureType::Protocol, "Invalid banner: 554 5.3.2 go away"},
      {{}, "600 nope", "banner", FailureType::Protocol, "Invalid banner: 600 nope"},
      {{}, "220x", "banner", FailureType::Protocol, "Invalid banner: 220x"},
      {{"220 ok"}, "502 5.5.1 no EHLO", "ehlo", FailureType::Protocol,
       "Invalid EHLO line: 502 5.5.1 no EHLO"},
      {{"220 ok", "250-backend"}, "251 x", "ehlo", FailureType::Protocol,
       "Inconsistent SMTP reply: 251 x (status != 250)"},
      {{"220 ok", "250-backend"}, "garbage", "ehlo", FailureType::Protocol,
       "Inconsistent SMTP reply: garbage (status != 250)"},
      {{"220-ok"}, "221 bye", "banner", FailureType::Protocol,
       "Inconsistent SMTP reply: 221 bye (status != 220)"},
  };
  for (const auto& c : cases) {
    Fixture f;
    f.make();
    if (c.before.empty()) {
      EXPECT_EQ(f.b->on_line(c.line), BackendEvent::Failure) << c.line;
    } else {
      f.feed(c.before);
      EXPECT_EQ(f.b->on_line(c.line), BackendEvent::Failure) << c.line;
    }
    EXPECT_EQ(f.b->failure().type, c.type) << c.line;
    EXPECT_EQ(f.b->failure().reason, c.reason) << c.line;
    EXPECT_EQ(f.b->state(), c.state) << c.line;
    EXPECT_TRUE(login::failure_retryable(c.type));
  }
}

TEST(SubmissionBackend, LongLineSanitizedAndCut) {
  Fixture f;
  f.make();
  std::string line = "999 " + std::string(300, 'x') + "\x01";
  EXPECT_EQ(f.b->on_line(line), BackendEvent::Failure);
  EXPECT_EQ(f.b->failure().reason, "Invalid banner: 999 " + std::string(156, 'x') + "...");
}

// ---------------------------------------------------------------------- S11
TEST(SubmissionBackend, EveryStateName) {
  // Walk all seven states with one dialogue.
  Fixture f;
  f.params.starttls = true;
  f.make();
  std::vector<std::string> seen{f.b->state()};
  f.b->on_line("220 ready");
  seen.push_back(f.b->state());
  f.feed(kEhlo);
  seen.push_back(f.b->state());
  f.b->on_line("220 go");
  f.b->on_tls_ready();
  seen.push_back(f.b->state());
  f.feed(kEhlo);
  seen.push_back(f.b->state());
  f.b->on_line("220 again");
  seen.push_back(f.b->state());
  f.feed(kEhlo);
  seen.push_back(f.b->state());
  EXPECT_EQ(seen, (std::vector<std::string>{"banner", "ehlo", "starttls", "tls-ehlo", "xclient",
                                            "xclient-ehlo", "authenticate"}));
}

TEST(SubmissionBackend, PasswordNotKeptInOutputAfterFailure) {
  Fixture f;
  f.params.password = "s3cret-pw";
  f.through_ehlo(kEhloNoXclient);
  EXPECT_EQ(f.b->on_line("535 5.7.8 Authentication failed."), BackendEvent::Failure);
  EXPECT_EQ(f.b->failure().reason.find("s3cret"), std::string::npos);
  EXPECT_EQ(f.b->failure().client_reply.find("s3cret"), std::string::npos);
}

}  // namespace

// Issue 8 item 8: the plaintext EHLO reply (XCLIENT, AUTH) is forgotten at the
// STARTTLS 220; only the EHLO over TLS counts, and the client reply is the
// backend's post-TLS AUTH reply alone.
TEST(SubmissionBackend, StartTlsForgetsPlaintextPhase) {
  Fixture f;
  f.params.starttls = true;
  f.params.tls = true;
  EXPECT_EQ(f.through_ehlo({"250-evil.lab", "250-AUTH PLAIN", "250-STARTTLS",
                            "250 XCLIENT ADDR PORT PROTO HELO LOGIN SESSION TTL"}),
            "STARTTLS\r\n");
  EXPECT_EQ(f.b->on_line("220 2.0.0 Begin TLS negotiation now."), BackendEvent::StartTls);
  EXPECT_EQ(f.b->on_tls_ready(), BackendEvent::Continue);
  EXPECT_EQ(f.take(), "EHLO proxy.lab\r\n");
  EXPECT_EQ(f.feed(kEhloNoXclient), BackendEvent::Continue);
  EXPECT_EQ(f.take(), kAuthPlain);  // no XCLIENT: it was only advertised in plaintext
  EXPECT_EQ(f.b->on_line("235 2.7.0 Logged in."), BackendEvent::Success);
  EXPECT_EQ(f.b->client_reply(), "235 2.7.0 Logged in.\r\n");

  // AUTH only in the plaintext EHLO: no AUTH over TLS.
  Fixture g;
  g.params.starttls = true;
  g.through_ehlo({"250-evil.lab", "250-AUTH PLAIN", "250 STARTTLS"});
  g.b->on_line("220 go");
  g.b->on_tls_ready();
  g.take();
  EXPECT_EQ(g.feed({"250-backend.lab", "250 PIPELINING"}), BackendEvent::Failure);
  EXPECT_EQ(g.b->failure().type, FailureType::RemoteConfig);
}

// Issue 9 drift resolved: an unknown SASL mechanism is InternalConfig in every
// protocol's BackendLogin (and so in the engine); it was Internal here.
TEST(SubmissionBackend, UnsupportedMechIsInternalConfig) {
  Fixture f;
  f.params.mech = "XYZZY";
  f.make();
  EXPECT_EQ(f.b->on_line("220 backend.lab ready."), BackendEvent::Continue);
  f.take();
  EXPECT_EQ(f.feed(kEhloNoXclient), BackendEvent::Failure);
  EXPECT_EQ(f.b->failure().type, FailureType::InternalConfig);
  EXPECT_EQ(f.b->failure().reason, "Unsupported SASL mechanism XYZZY");
}

// Issue 9: the AUTH line held the password; wipe_output() zeroes and clears it.
TEST(SubmissionBackend, WipeOutputClearsTheAuthLine) {
  Fixture f;
  EXPECT_NE(f.through_ehlo(kEhloNoXclient).find("AUTH PLAIN"), std::string::npos);
  f.b->on_line("334 ");  // nothing pending: ignored or answered
  f.b->output() = "AUTH PLAIN secret\r\n";
  const char* data = f.b->output().data();
  const size_t n = f.b->output().size();
  f.b->wipe_output();
  EXPECT_TRUE(f.b->output().empty());
  EXPECT_EQ(std::string(data, n), std::string(n, '\0'));  // same buffer, kept by clear()
}

// OAuth pass-through: no host/port pairs in Submission (as Dovecot 2.4).
TEST(SubmissionBackend, OauthbearerFailureChallengeKeptAndAcknowledged) {
  Fixture f;
  f.params.mech = "OAUTHBEARER";
  f.params.password = "tok";
  f.params.host = "smtp.lab";
  f.params.port = 587;
  const std::string out = f.through_ehlo(kEhloNoXclient);
  EXPECT_EQ(out, "AUTH OAUTHBEARER " +
                     core::base64_encode("n,a=user1,\x01" "auth=Bearer tok\x01\x01"s) + "\r\n");
  const std::string challenge = core::base64_encode(R"({"status":"invalid_token"})");
  EXPECT_EQ(f.b->on_line("334 " + challenge), BackendEvent::Continue);
  EXPECT_EQ(f.take(), "AQ==\r\n");
  EXPECT_EQ(f.b->on_line("535 5.7.8 Authentication failed"), BackendEvent::Failure);
  EXPECT_EQ(f.b->failure().type, FailureType::AuthReplied);
  EXPECT_EQ(f.b->failure().sasl_challenge, challenge);
  EXPECT_EQ(f.b->failure().client_reply, "535 5.7.8 Authentication failed\r\n");
}

TEST(SubmissionBackend, Xoauth2LongTokenAfterEmptyChallenge) {
  Fixture f;
  f.params.mech = "XOAUTH2";
  const std::string token(10 * 1024, 'x');
  f.params.password = token;
  EXPECT_EQ(f.through_ehlo(kEhloNoXclient), "AUTH XOAUTH2\r\n");
  EXPECT_EQ(f.b->on_line("334 "), BackendEvent::Continue);
  EXPECT_EQ(f.take(), core::base64_encode("user=user1\x01" "auth=Bearer " + token + "\x01\x01") + "\r\n");
  EXPECT_EQ(f.b->on_line("334 eyJzdGF0dXMiOiI0MDEifQ=="), BackendEvent::Continue);
  EXPECT_EQ(f.take(), "\r\n");  // XOAUTH2 acknowledges with an empty line
  EXPECT_EQ(f.b->on_line("535 5.7.8 Authentication failed"), BackendEvent::Failure);
  EXPECT_EQ(f.b->failure().sasl_challenge, "eyJzdGF0dXMiOiI0MDEifQ==");
}

TEST(SubmissionBackend, Xoauth2Success) {
  Fixture f;
  f.params.mech = "xoauth2";
  f.params.password = "t";
  EXPECT_EQ(f.through_ehlo(kEhloNoXclient),
            "AUTH XOAUTH2 " + core::base64_encode("user=user1\x01" "auth=Bearer t\x01\x01"s) + "\r\n");
  EXPECT_EQ(f.b->on_line("235 2.7.0 Logged in."), BackendEvent::Success);
}
