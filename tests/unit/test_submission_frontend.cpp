// Submission Frontend: the pre-login server dialogue (spec §5.5), byte for
// byte, plus the SMTP helpers (reply lines, enhanced codes, xtext).

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/base64.hpp"
#include "protocols/submission/frontend.hpp"
#include "protocols/submission/smtp.hpp"
#include "protocols/submission/submission.hpp"

using namespace portier;
namespace sub = portier::protocols::submission;
using namespace std::string_literals;
using login::AuthFailure;
using login::FailureType;
using login::FrontendEvent;

namespace {

struct Fixture {
  login::FrontendSettings settings;
  login::ClientInfo client;
  std::unique_ptr<sub::Frontend> fe;

  Fixture() {
    settings.hostname = "proxy.lab";
    settings.greeting = "portier ready.";
    settings.mechanisms = {"PLAIN", "LOGIN"};
    settings.max_invalid_commands = 3;
    client.remote_ip = asio::ip::make_address("192.0.2.7");
    client.remote_port = 40000;
    client.local_ip = asio::ip::make_address("192.0.2.1");
    client.local_port = 587;
    client.session_id = "sess";
    client.tls_configured = true;
  }

  sub::Frontend& make() {
    fe = std::make_unique<sub::Frontend>(settings, client);
    fe->start();
    return *fe;
  }

  std::string take() {
    std::string o = fe->output();
    fe->output().clear();
    return o;
  }

  // Feeds input and runs next(); returns the event.
  FrontendEvent send(std::string_view in) {
    fe->feed(in);
    return fe->next();
  }
};

const std::string kEhloInsecure =
    "250-proxy.lab\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250-SIZE\r\n250-STARTTLS\r\n"
    "250 PIPELINING\r\n";

TEST(SubmissionFrontend, ProtocolEntry) {
  EXPECT_EQ(sub::kProtocol.name, "submission");
  EXPECT_EQ(sub::kProtocol.service, "submission-login");
  EXPECT_EQ(sub::kProtocol.default_port, 587);
  EXPECT_EQ(sub::kProtocol.default_tls_port, 465);
  ASSERT_NE(sub::kProtocol.make_frontend, nullptr);
}

TEST(SubmissionFrontend, BannerAndEhloOnInsecureConnection) {
  Fixture f;
  f.make();
  EXPECT_EQ(f.take(), "220 proxy.lab portier ready.\r\n");
  EXPECT_EQ(f.send("EHLO client.lab\r\n"), FrontendEvent::NeedInput);
  // No AUTH: cleartext mechanisms are not allowed here (§5.5).
  EXPECT_EQ(f.take(), kEhloInsecure);
}

TEST(SubmissionFrontend, EhloCapabilityMatrix) {
  struct Case {
    bool tls, trusted, allow_cleartext, tls_configured;
    std::string expect;
  };
  const std::string auth = "250-AUTH PLAIN LOGIN\r\n";
  const std::vector<Case> cases = {
      {true, false, false, true,
       "250-proxy.lab\r\n250-8BITMIME\r\n" + auth +
           "250-ENHANCEDSTATUSCODES\r\n250-SIZE\r\n250 PIPELINING\r\n"},
      {false, false, true, true,
       "250-proxy.lab\r\n250-8BITMIME\r\n" + auth +
           "250-ENHANCEDSTATUSCODES\r\n250-SIZE\r\n250-STARTTLS\r\n250 PIPELINING\r\n"},
      {false, false, false, false,
       "250-proxy.lab\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250-SIZE\r\n"
       "250 PIPELINING\r\n"},
      {false, true, false, true,
       "250-proxy.lab\r\n250-8BITMIME\r\n" + auth +
           "250-ENHANCEDSTATUSCODES\r\n250-SIZE\r\n250-STARTTLS\r\n250-PIPELINING\r\n"
           "250 XCLIENT " + std::string(sub::kXclientAttributes) + "\r\n"},
  };
  for (const auto& c : cases) {
    Fixture f;
    f.client.tls = c.tls;
    f.client.trusted = c.trusted;
    f.client.tls_configured = c.tls_configured;
    f.settings.allow_cleartext = c.allow_cleartext;
    f.make();
    f.take();
    f.send("ehlo client.lab\r\n");
    EXPECT_EQ(f.take(), c.expect);
  }
}

TEST(SubmissionFrontend, HeloAndSimpleCommands) {
  Fixture f;
  f.make();
  f.take();
  f.send("HELO client.lab\r\nNOOP\r\nRSET\r\n");
  EXPECT_EQ(f.take(), "250 proxy.lab\r\n250 2.0.0 OK\r\n250 2.0.0 OK\r\n");
  EXPECT_EQ(f.fe->smtp_info().proto, "");  // filled in by make_backend_login
  EXPECT_EQ(f.send("QUIT\r\n"), FrontendEvent::Close);
  EXPECT_EQ(f.take(), "221 2.0.0 Bye\r\n");
}

TEST(SubmissionFrontend, MailCommandsBeforeAuth) {
  Fixture f;
  f.make();
  f.take();
  f.send("EHLO c\r\n");
  f.take();
  for (std::string cmd : {"MAIL FROM:<a@b>", "RCPT TO:<c@d>", "DATA", "BDAT 10 LAST",
                          "BURL imap://x LAST", "mail from:<a@b>"}) {
    EXPECT_EQ(f.send(cmd + "\r\n"), FrontendEvent::NeedInput);
    EXPECT_EQ(f.take(), "530 5.7.0 Authentication required.\r\n") << cmd;
  }
}

TEST(SubmissionFrontend, AuthPlainWithInitialResponse) {
  Fixture f;
  f.client.tls = true;
  f.make();
  f.take();
  f.send("EHLO client.lab\r\n");
  f.take();
  const std::string ir = core::base64_encode("\0user1\0pass"s);
  EXPECT_EQ(f.send("AUTH PLAIN " + ir + "\r\nMAIL FROM:<user1@lab>\r\n"),
            FrontendEvent::Authenticate);
  EXPECT_EQ(f.take(), "");
  auto c = f.fe->take_credentials();
  EXPECT_EQ(c.mech, "PLAIN");
  EXPECT_EQ(c.authcid, "user1");
  EXPECT_EQ(c.password, "pass");
  // Pipelined input stays for the backend.
  EXPECT_EQ(f.fe->next(), FrontendEvent::NeedInput);
  EXPECT_EQ(f.fe->take_pending_input(), "MAIL FROM:<user1@lab>\r\n");
  auto bl = f.fe->make_backend_login(login::BackendLoginParams{.client = &f.client});
  EXPECT_EQ(f.fe->smtp_info().helo, "client.lab");
  EXPECT_EQ(f.fe->smtp_info().proto, "ESMTP");
  EXPECT_EQ(bl->state(), "banner");
}

TEST(SubmissionFrontend, AuthPlainWithoutInitialResponse) {
  Fixture f;
  f.client.tls = true;
  f.make();
  f.take();
  f.send("EHLO c\r\n");
  f.take();
  EXPECT_EQ(f.send("AUTH PLAIN\r\n"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), "334 \r\n");
  EXPECT_EQ(f.send(core::base64_encode("\0u\0p"s) + "\r\n"), FrontendEvent::Authenticate);
  EXPECT_EQ(f.fe->take_credentials().authcid, "u");
}

TEST(SubmissionFrontend, AuthLoginWithAndWithoutInitialResponse) {
  for (bool with_ir : {false, true}) {
    Fixture f;
    f.client.tls = true;
    f.make();
    f.take();
    f.send("EHLO c\r\n");
    f.take();
    if (with_ir) {
      EXPECT_EQ(f.send("AUTH LOGIN " + core::base64_encode("user1") + "\r\n"),
                FrontendEvent::NeedInput);
      EXPECT_EQ(f.take(), "334 UGFzc3dvcmQ6\r\n");
    } else {
      EXPECT_EQ(f.send("auth login\r\n"), FrontendEvent::NeedInput);
      EXPECT_EQ(f.take(), "334 VXNlcm5hbWU6\r\n");
      EXPECT_EQ(f.send(core::base64_encode("user1") + "\r\n"), FrontendEvent::NeedInput);
      EXPECT_EQ(f.take(), "334 UGFzc3dvcmQ6\r\n");
    }
    EXPECT_EQ(f.send(core::base64_encode("pass") + "\r\n"), FrontendEvent::Authenticate);
    auto c = f.fe->take_credentials();
    EXPECT_EQ(c.mech, "LOGIN");
    EXPECT_EQ(c.authcid, "user1");
    EXPECT_EQ(c.password, "pass");
  }
}

TEST(SubmissionFrontend, AuthErrors) {
  struct Case {
    std::string input;
    std::string reply;
  };
  const std::vector<Case> cases = {
      {"AUTH PLAIN\r\n*\r\n", "334 \r\n501 5.5.2 Authentication aborted by client.\r\n"},
      {"AUTH PLAIN\r\n!!\r\n", "334 \r\n501 5.5.2 Invalid base64 data in continued response\r\n"},
      {"AUTH PLAIN !!\r\n", "501 5.5.2 Invalid base64 data in initial response\r\n"},
      {"AUTH PLAIN =\r\n", "535 5.7.8 Authentication failed.\r\n"},
      {"AUTH CRAM-MD5\r\n", "504 5.5.4 Unsupported authentication mechanism.\r\n"},
      {"AUTH\r\n", "501 5.5.4 Invalid parameters\r\n"},
  };
  for (const auto& c : cases) {
    Fixture f;
    f.client.tls = true;
    f.make();
    f.take();
    f.send("EHLO c\r\n");
    f.take();
    EXPECT_EQ(f.send(c.input), FrontendEvent::NeedInput) << c.input;
    EXPECT_EQ(f.take(), c.reply) << c.input;
    // Back at the command level.
    f.send("NOOP\r\n");
    EXPECT_EQ(f.take(), "250 2.0.0 OK\r\n") << c.input;
  }
}

TEST(SubmissionFrontend, AuthBeforeEhloAndCleartextDenied) {
  Fixture f;
  f.make();
  f.take();
  f.send("AUTH PLAIN " + core::base64_encode("\0u\0p"s) + "\r\n");
  EXPECT_EQ(f.take(), "503 5.5.1 Send EHLO first.\r\n");
  f.send("EHLO c\r\nAUTH PLAIN " + core::base64_encode("\0u\0p"s) + "\r\n");
  EXPECT_EQ(f.take(), kEhloInsecure +
                          "523 5.7.10 Plaintext authentication disallowed on non-secure "
                          "(SSL/TLS) connections.\r\n");
}

TEST(SubmissionFrontend, LocalAuthFailureReplies) {
  struct Case {
    AuthFailure kind;
    std::string reason;
    std::string reply;
  };
  const std::vector<Case> cases = {
      {AuthFailure::Failed, "", "535 5.7.8 Authentication failed.\r\n"},
      {AuthFailure::Failed, "Go\r\naway", "535 5.7.8 Go  away\r\n"},
      {AuthFailure::TempFail, "", "454 4.7.0 Temporary authentication failure.\r\n"},
      {AuthFailure::Disabled, "", "525 5.7.13 Login disabled for this user.\r\n"},
      {AuthFailure::Disabled, "Moved", "525 5.7.13 Moved\r\n"},
      {AuthFailure::CleartextDenied, "",
       "523 5.7.10 Plaintext authentication disallowed on non-secure (SSL/TLS) "
       "connections.\r\n"},
  };
  for (const auto& c : cases) {
    Fixture f;
    f.client.tls = true;
    f.make();
    f.take();
    f.send("EHLO c\r\n");
    f.take();
    ASSERT_EQ(f.send("AUTH PLAIN " + core::base64_encode("\0u\0p"s) + "\r\n"),
              FrontendEvent::Authenticate);
    f.fe->take_credentials();
    f.fe->auth_failed(c.kind, c.reason);
    EXPECT_EQ(f.take(), c.reply);
    EXPECT_EQ(f.send("NOOP\r\n"), FrontendEvent::NeedInput);
    EXPECT_EQ(f.take(), "250 2.0.0 OK\r\n");
  }
}

TEST(SubmissionFrontend, ProxyFailureReplies) {
  const std::string unavailable = "454 4.7.0 Account is temporarily unavailable.\r\n";
  for (size_t i = 0; i < static_cast<size_t>(FailureType::kCount); ++i) {
    auto t = static_cast<FailureType>(i);
    Fixture f;
    f.make();
    f.take();
    login::ProxyFailure pf{t, "reason", ""};
    bool carries_reply = t == FailureType::AuthTempfail || t == FailureType::AuthReplied ||
                         t == FailureType::LimitReached;
    if (carries_reply) pf.client_reply = "5xx from backend\r\n";
    f.fe->proxy_failed(pf);
    EXPECT_EQ(f.take(), carries_reply ? pf.client_reply : unavailable)
        << login::failure_type_name(t);
  }
  // Without a rendered reply: a safe default.
  Fixture f;
  f.make();
  f.take();
  f.fe->proxy_failed({FailureType::AuthReplied, "x", ""});
  EXPECT_EQ(f.take(), "535 5.7.8 Authentication failed.\r\n");
  f.fe->proxy_failed({FailureType::AuthTempfail, "x", ""});
  EXPECT_EQ(f.take(), unavailable);
}

TEST(SubmissionFrontend, StartTlsDiscardsPipelinedInputAndNeedsEhloAgain) {
  Fixture f;
  f.make();
  f.take();
  EXPECT_EQ(f.send("EHLO c\r\nSTARTTLS\r\nAUTH PLAIN injected\r\n"), FrontendEvent::StartTls);
  EXPECT_EQ(f.take(), kEhloInsecure + "220 2.0.0 Begin TLS negotiation now.\r\n");
  f.client.tls = true;
  f.fe->tls_started();
  EXPECT_TRUE(f.client.end_client_tls);
  EXPECT_EQ(f.fe->next(), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), "");  // the injected AUTH was dropped
  f.send("AUTH PLAIN " + core::base64_encode("\0u\0p"s) + "\r\n");
  EXPECT_EQ(f.take(), "503 5.5.1 Send EHLO first.\r\n");
  f.send("EHLO c\r\n");
  EXPECT_EQ(f.take(),
            "250-proxy.lab\r\n250-8BITMIME\r\n250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n"
            "250-SIZE\r\n250 PIPELINING\r\n");
  f.send("STARTTLS\r\n");
  EXPECT_EQ(f.take(), "503 5.5.1 TLS is already active.\r\n");
}

TEST(SubmissionFrontend, StartTlsNotConfigured) {
  Fixture f;
  f.client.tls_configured = false;
  f.make();
  f.take();
  EXPECT_EQ(f.send("STARTTLS\r\n"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), "502 5.5.1 TLS support isn't enabled.\r\n");
}

TEST(SubmissionFrontend, ImplicitTlsMarksEndClientTls) {
  Fixture f;
  f.client.tls = true;
  f.make();
  EXPECT_TRUE(f.client.end_client_tls);
}

TEST(SubmissionFrontend, InvalidCommandsDisconnect) {
  Fixture f;  // max_invalid_commands = 3
  f.make();
  f.take();
  EXPECT_EQ(f.send("FOO\r\n"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.send("\r\n"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.send("BAR baz\r\nNOOP\r\n"), FrontendEvent::Close);
  EXPECT_EQ(f.take(),
            "500 5.5.1 Unknown command\r\n500 5.5.2 Invalid command syntax\r\n"
            "500 5.5.1 Unknown command\r\n421 4.7.0 proxy.lab Too many invalid commands.\r\n");
}

TEST(SubmissionFrontend, LineTooLong) {
  Fixture f;
  f.settings.max_line_length = 100;
  f.make();
  f.take();
  EXPECT_EQ(f.send(std::string(101, 'A')), FrontendEvent::Close);
  EXPECT_EQ(f.take(), "500 5.5.2 Line too long\r\n");
  Fixture g;
  g.settings.max_line_length = 100;
  g.make();
  g.take();
  EXPECT_EQ(g.send(std::string(99, 'A') + "\r\n"), FrontendEvent::NeedInput);  // fits
  EXPECT_EQ(g.take(), "500 5.5.1 Unknown command\r\n");
}

TEST(SubmissionFrontend, ByteByByteFeedGivesSameResult) {
  Fixture f;
  f.client.tls = true;
  f.make();
  f.take();
  const std::string input =
      "EHLO c\r\nAUTH PLAIN " + core::base64_encode("\0u\0p"s) + "\r\n";
  FrontendEvent ev = FrontendEvent::NeedInput;
  for (char ch : input) {
    f.fe->feed(std::string_view(&ch, 1));
    ev = f.fe->next();
    if (ev != FrontendEvent::NeedInput) break;
  }
  EXPECT_EQ(ev, FrontendEvent::Authenticate);
  EXPECT_EQ(f.fe->take_credentials().password, "p");
}

TEST(SubmissionFrontend, TimeoutReplies) {
  Fixture f;
  f.make();
  f.take();
  f.fe->timed_out();
  EXPECT_EQ(f.take(), "421 4.4.2 proxy.lab Disconnected for inactivity.\r\n");
  EXPECT_EQ(f.fe->next(), FrontendEvent::Close);
}

// ---------------------------------------------------------------- XCLIENT
TEST(SubmissionFrontend, XclientFromUntrustedRefused) {
  Fixture f;
  f.make();
  f.take();
  f.send("XCLIENT ADDR=10.0.0.1\r\n");
  EXPECT_EQ(f.take(), "550 5.7.14 You are not from trusted IP\r\n");
  EXPECT_EQ(f.client.remote_ip.to_string(), "192.0.2.7");
}

TEST(SubmissionFrontend, XclientFromTrustedUpdatesClientInfo) {
  Fixture f;
  f.client.trusted = true;
  f.make();
  f.take();
  f.send("EHLO upstream.lab\r\n");
  f.take();
  f.send(
      "XCLIENT HELO=end.client PROTO=ESMTP LOGIN=someone TTL=4 PORT=5555 ADDR=IPV6:2001:db8::9 "
      "DESTPORT=465 DESTADDR=198.51.100.1 SESSION=abc+2Bdef CLIENT-TRANSPORT=TLS TIMEOUT=300 "
      "FORWARD=eD15 DESTNAME=mx.lab\r\n");
  EXPECT_EQ(f.take(), "220 proxy.lab portier ready.\r\n");
  EXPECT_EQ(f.client.remote_ip.to_string(), "2001:db8::9");
  EXPECT_EQ(f.client.remote_port, 5555);
  EXPECT_EQ(f.client.local_ip.to_string(), "198.51.100.1");
  EXPECT_EQ(f.client.local_port, 465);
  EXPECT_EQ(f.client.session_id, "abc+def");
  EXPECT_EQ(f.client.proxy_ttl, 4u);
  EXPECT_TRUE(f.client.end_client_tls);
  // EHLO needed again; the upstream's HELO/PROTO win over its own EHLO.
  f.send("AUTH PLAIN x\r\n");
  EXPECT_EQ(f.take(), "503 5.5.1 Send EHLO first.\r\n");
  f.send("EHLO upstream.lab\r\n");
  f.take();
  f.fe->make_backend_login(login::BackendLoginParams{.client = &f.client});
  EXPECT_EQ(f.fe->smtp_info().helo, "end.client");
  EXPECT_EQ(f.fe->smtp_info().proto, "ESMTP");
  EXPECT_EQ(f.fe->smtp_info().login, "someone");
  // Issue 8 item 6: the upstream's LOGIN differs from the login user (empty
  // here): the engine is told, to log it; the backend never gets it.
  EXPECT_NE(f.fe->take_log_note().find("Ignoring XCLIENT LOGIN=<someone>"), std::string::npos);
  EXPECT_EQ(f.fe->take_log_note(), "");
}

TEST(SubmissionFrontend, XclientBadAttributeChangesNothing) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"XCLIENT ADDR=10.0.0.9 PORT=99999", "501 5.5.4 Invalid PORT parameter\r\n"},
      {"XCLIENT ADDR=10.0.0.9 ADDR=nope", "501 5.5.4 Invalid ADDR parameter\r\n"},
      {"XCLIENT ADDR=IPV6:10.0.0.9", "501 5.5.4 Invalid ADDR parameter\r\n"},
      {"XCLIENT ADDR=10.0.0.9 PROTO=UUCP", "501 5.5.4 Invalid PROTO parameter\r\n"},
      {"XCLIENT ADDR=10.0.0.9 TTL=x", "501 5.5.4 Invalid TTL parameter\r\n"},
      {"XCLIENT ADDR=10.0.0.9 SESSION=+zz", "501 5.5.4 Invalid SESSION parameter\r\n"},
      {"XCLIENT ADDR", "501 5.5.4 Invalid parameter: ADDR\r\n"},
      {"XCLIENT", "501 5.5.4 Invalid parameters\r\n"},
  };
  for (const auto& [cmd, reply] : cases) {
    Fixture f;
    f.client.trusted = true;
    f.make();
    f.take();
    f.send(cmd + "\r\n");
    EXPECT_EQ(f.take(), reply) << cmd;
    EXPECT_EQ(f.client.remote_ip.to_string(), "192.0.2.7") << cmd;
  }
  Fixture g;
  g.client.trusted = true;
  g.make();
  g.take();
  g.send("XCLIENT ADDR=[UNAVAILABLE] PORT=[TEMPUNAVAIL] HELO=[UNAVAILABLE]\r\n");
  EXPECT_EQ(g.take(), "220 proxy.lab portier ready.\r\n");
  EXPECT_EQ(g.client.remote_ip.to_string(), "192.0.2.7");
  EXPECT_EQ(g.client.remote_port, 40000);
}

// ------------------------------------------------------------- SMTP helpers
TEST(SubmissionSmtp, ParseReplyLine) {
  auto r = sub::parse_reply_line("250-PIPELINING");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 250u);
  EXPECT_FALSE(r->last);
  EXPECT_EQ(r->text, "PIPELINING");
  r = sub::parse_reply_line("559 x");
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->last);
  r = sub::parse_reply_line("220");
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->last);
  EXPECT_EQ(r->text, "");
  for (const char* bad : {"", "22", "199 x", "560 x", "2a0 x", "220x", "+OK", "220\tx"})
    EXPECT_FALSE(sub::parse_reply_line(bad)) << bad;
}

TEST(SubmissionSmtp, EnhancedCode) {
  std::string_view code;
  EXPECT_EQ(sub::split_enhanced_code("5.7.8 Authentication failed.", code),
            "Authentication failed.");
  EXPECT_EQ(code, "5.7.8");
  EXPECT_EQ(sub::split_enhanced_code("2.0.0", code), "");
  EXPECT_EQ(code, "2.0.0");
  EXPECT_EQ(sub::split_enhanced_code("4.123.456 x", code), "x");
  EXPECT_EQ(code, "4.123.456");
  for (const char* none : {"3.0.0 x", "5.7 x", "5.7.8x", "5.1234.1 x", "hello", "5..8 x"}) {
    EXPECT_EQ(sub::split_enhanced_code(none, code), none);
    EXPECT_EQ(code, "") << none;
  }
}

TEST(SubmissionSmtp, Xtext) {
  EXPECT_EQ(sub::xtext_encode("a b+c=d\x01~"), "a+20b+2Bc+3Dd+01~");
  EXPECT_EQ(sub::xtext_decode("a+20b+2bc+3Dd"), "a b+c=d");
  for (const char* bad : {"+", "+2", "+zz", "a b", "a=b", "\x7f"})
    EXPECT_FALSE(sub::xtext_decode(bad)) << bad;
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  EXPECT_EQ(sub::xtext_decode(sub::xtext_encode(all)), all);
}

}  // namespace

// Issue 9: one SASL exchange for all protocols. `AUTH LOGIN =` (an empty
// initial response) asks for the user name, as without one (it failed before).
TEST(SubmissionFrontend, AuthLoginEmptyInitialResponseAsksForUser) {
  Fixture f;
  f.client.tls = true;
  f.make();
  f.take();
  f.send("EHLO c\r\n");
  f.take();
  EXPECT_EQ(f.send("AUTH LOGIN =\r\n"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), "334 VXNlcm5hbWU6\r\n");
  EXPECT_EQ(f.send(core::base64_encode("user1") + "\r\n"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), "334 UGFzc3dvcmQ6\r\n");
  EXPECT_EQ(f.send(core::base64_encode("pass") + "\r\n"), FrontendEvent::Authenticate);
  auto c = f.fe->take_credentials();
  EXPECT_EQ(c.authcid, "user1");
  EXPECT_EQ(c.password, "pass");
}

// Issue 9 drift: a trusted XCLIENT session id may hold a space (as IMAP's ID
// and the other protocols accept); an empty one is ignored, not an error.
TEST(SubmissionFrontend, XclientSessionRulesAreTheSharedOnes) {
  Fixture f;
  f.client.trusted = true;
  f.make();
  f.take();
  f.send("XCLIENT SESSION=a+20b\r\n");
  EXPECT_EQ(f.take(), "220 proxy.lab portier ready.\r\n");
  EXPECT_EQ(f.client.session_id, "a b");
  f.send("XCLIENT ADDR=10.0.0.9 SESSION=\r\n");
  EXPECT_EQ(f.take(), "220 proxy.lab portier ready.\r\n");
  EXPECT_EQ(f.client.session_id, "a b");
  EXPECT_EQ(f.client.remote_ip.to_string(), "10.0.0.9");
}
