// IMAP Frontend: the pre-login server dialogue, driven by byte transcripts.

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "protocols/imap/frontend.hpp"
#include "protocols/imap/imap.hpp"
#include "protocols/registry.hpp"

using namespace portier;
namespace imap = portier::protocols::imap;
using namespace std::string_literals;
using login::FrontendEvent;

namespace {

constexpr const char* kCapsInsecure =
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS LOGINDISABLED";
constexpr const char* kCapsSecure =
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN AUTH=LOGIN";

const char* name(FrontendEvent e) {
  switch (e) {
    case FrontendEvent::NeedInput:
      return "need-input";
    case FrontendEvent::StartTls:
      return "starttls";
    case FrontendEvent::Authenticate:
      return "authenticate";
    case FrontendEvent::Close:
      return "close";
  }
  return "?";
}

struct Harness {
  login::FrontendSettings settings;
  login::ClientInfo client;
  std::unique_ptr<login::Frontend> fe;

  explicit Harness(bool secure = true, bool tls_configured = false) {
    settings.greeting = "Dovecot (Debian) ready.";
    settings.mechanisms = {"PLAIN", "LOGIN"};
    client.remote_ip = asio::ip::make_address("192.0.2.7");
    client.remote_port = 53640;
    client.local_ip = asio::ip::make_address(secure ? "192.0.2.7" : "192.0.2.1");
    client.local_port = 143;
    client.tls_configured = tls_configured;
    client.session_id = "y7/P7lthiNF/AAAB";
  }

  login::Frontend& start() {
    fe = imap::kProtocol.make_frontend(settings, client);
    fe->start();
    return *fe;
  }

  std::string take_output() {
    std::string s = std::move(fe->output());
    fe->output().clear();
    return s;
  }

  /// Feeds `bytes`, then calls next() until it asks for input or hands control
  /// to the engine; returns the event and leaves the output for take_output().
  FrontendEvent feed(std::string_view bytes) {
    fe->feed(bytes);
    return fe->next();
  }

  /// Feed and return "event|output".
  std::string exchange(std::string_view bytes) {
    FrontendEvent ev = feed(bytes);
    return std::string(name(ev)) + "|" + take_output();
  }
};

TEST(ImapFrontend, RegistryEntry) {
  const login::Protocol* p = protocols::find("imap");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p, &imap::kProtocol);
  EXPECT_EQ(p->service, "imap-login");
  EXPECT_EQ(p->default_port, 143);
  EXPECT_EQ(p->default_tls_port, 993);
}

TEST(ImapFrontend, GreetingMatchesDovecotCapture) {
  // dovecot-imap.txt: a secured (localhost) connection with STARTTLS configured.
  Harness h(/*secure=*/true, /*tls_configured=*/true);
  h.start();
  EXPECT_EQ(h.take_output(),
            "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS "
            "AUTH=PLAIN AUTH=LOGIN] Dovecot (Debian) ready.\r\n");
  EXPECT_EQ(h.exchange("IPFP0 CAPABILITY\r\n"),
            "need-input|* CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ "
            "STARTTLS AUTH=PLAIN AUTH=LOGIN\r\n"
            "IPFP0 OK Pre-login capabilities listed, post-login capabilities have more.\r\n");
}

TEST(ImapFrontend, CapabilityVariants) {
  {
    Harness h(false, true);  // insecure, STARTTLS possible, no cleartext
    h.start();
    EXPECT_EQ(h.take_output(),
              "* OK [CAPABILITY "s + kCapsInsecure + "] Dovecot (Debian) ready.\r\n");
  }
  {
    Harness h(false, false);
    h.settings.allow_cleartext = true;
    h.start();
    EXPECT_EQ(h.take_output(),
              "* OK [CAPABILITY "s + kCapsSecure + "] Dovecot (Debian) ready.\r\n");
  }
  {
    Harness h(false, false);
    h.client.tls = true;  // implicit TLS
    h.start();
    EXPECT_EQ(h.take_output(),
              "* OK [CAPABILITY "s + kCapsSecure + "] Dovecot (Debian) ready.\r\n");
    EXPECT_TRUE(h.client.end_client_tls);
  }
  {
    Harness h(false, false);
    h.client.trusted = true;
    h.settings.mechanisms = {"PLAIN"};
    h.settings.greeting.clear();
    h.start();
    EXPECT_EQ(h.take_output(),
              "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ "
              "AUTH=PLAIN] portier ready.\r\n");
  }
}

TEST(ImapFrontend, NoopEnableLogout) {
  Harness h;
  h.start();
  h.take_output();
  EXPECT_EQ(h.exchange("a NOOP\r\n"), "need-input|a OK NOOP completed.\r\n");
  EXPECT_EQ(h.exchange("b enable CONDSTORE\r\n"),
            "need-input|* ENABLED\r\nb OK ENABLE ignored in non-authenticated state.\r\n");
  EXPECT_EQ(h.exchange("c LOGOUT\r\nd NOOP\r\n"),
            "close|* BYE Logging out\r\nc OK Logout completed.\r\n");
  EXPECT_EQ(h.fe->next(), FrontendEvent::Close);
}

TEST(ImapFrontend, IdUntrusted) {
  Harness h;
  h.start();
  h.take_output();
  EXPECT_EQ(h.exchange("IPFP1 ID (\"name\" \"lab-client\" \"version\" \"1.0\")\r\n"),
            "need-input|* ID NIL\r\nIPFP1 OK ID completed.\r\n");
  EXPECT_EQ(h.exchange("a ID NIL\r\n"), "need-input|* ID NIL\r\na OK ID completed.\r\n");
  // x-* keys from an untrusted client change nothing.
  EXPECT_EQ(h.exchange("b ID (\"x-originating-ip\" \"10.1.1.1\" \"x-proxy-ttl\" \"2\")\r\n"),
            "need-input|* ID NIL\r\nb OK ID completed.\r\n");
  EXPECT_EQ(h.client.remote_ip.to_string(), "192.0.2.7");
  EXPECT_EQ(h.client.proxy_ttl, 5u);
  // As Dovecot's imap-login: a key without a value is ignored; an atom key,
  // a nested list or a key over 30 bytes make the ID invalid.
  EXPECT_EQ(h.exchange("c ID (\"a\")\r\n"), "need-input|* ID NIL\r\nc OK ID completed.\r\n");
  EXPECT_EQ(h.exchange("d ID (a b)\r\n"), "need-input|d BAD Invalid ID parameters\r\n");
}

TEST(ImapFrontend, IdTrustedUpdatesClientInfo) {
  Harness h(false);
  h.client.trusted = true;
  h.start();
  h.take_output();
  EXPECT_EQ(h.exchange("a ID (\"x-session-id\" \"abcDEF123\" \"x-originating-ip\" \"2001:db8::7\" "
                       "\"x-originating-port\" \"40000\" \"X-Connected-IP\" \"10.0.0.1\" "
                       "\"x-connected-port\" \"993\" \"x-proxy-ttl\" \"3\" "
                       "\"x-client-transport\" \"TLS\" \"name\" NIL)\r\n"),
            "need-input|* ID NIL\r\na OK Trusted ID completed.\r\n");
  EXPECT_EQ(h.client.session_id, "abcDEF123");
  EXPECT_EQ(h.client.remote_ip.to_string(), "2001:db8::7");
  EXPECT_EQ(h.client.remote_port, 40000);
  EXPECT_EQ(h.client.local_ip.to_string(), "10.0.0.1");
  EXPECT_EQ(h.client.local_port, 993);
  EXPECT_EQ(h.client.proxy_ttl, 3u);
  EXPECT_TRUE(h.client.end_client_tls);
  // Only the first ID counts.
  EXPECT_EQ(h.exchange("b ID (\"x-proxy-ttl\" \"9\")\r\n"),
            "need-input|* ID NIL\r\nb OK Trusted ID completed.\r\n");
  EXPECT_EQ(h.client.proxy_ttl, 3u);
}

TEST(ImapFrontend, IdTrustedRejectsBadValues) {
  Harness h(false);
  h.client.trusted = true;
  h.start();
  h.take_output();
  h.exchange("a ID (\"x-session-id\" \"" + std::string(65, 'x') +
             "\" \"x-originating-ip\" \"not-an-ip\" \"x-originating-port\" \"0\" "
             "\"x-proxy-ttl\" \"0\" \"x-connected-port\" \"70000\" \"x-client-transport\" "
             "\"insecure\")\r\n");
  EXPECT_EQ(h.client.session_id, "y7/P7lthiNF/AAAB");
  EXPECT_EQ(h.client.remote_ip.to_string(), "192.0.2.7");
  EXPECT_EQ(h.client.remote_port, 53640);
  EXPECT_EQ(h.client.local_port, 143);
  EXPECT_EQ(h.client.proxy_ttl, 5u);
  EXPECT_FALSE(h.client.end_client_tls);
}

TEST(ImapFrontend, StartTlsDiscardsPipelinedInput) {
  Harness h(false, true);
  h.start();
  h.take_output();
  // Command injection attempt: LOGIN pipelined in plaintext after STARTTLS.
  EXPECT_EQ(h.exchange("a STARTTLS\r\nb LOGIN user pass\r\n"),
            "starttls|a OK Begin TLS negotiation now.\r\n");
  h.client.tls = true;
  h.fe->tls_started();
  EXPECT_EQ(h.fe->next(), FrontendEvent::NeedInput);
  EXPECT_EQ(h.take_output(), "");
  EXPECT_EQ(h.fe->take_pending_input(), "");
  // Now secured: LOGINDISABLED and STARTTLS gone, AUTH= listed.
  EXPECT_EQ(h.exchange("c CAPABILITY\r\n"),
            "need-input|* CAPABILITY "s + kCapsSecure +
                "\r\nc OK Pre-login capabilities listed, post-login capabilities have more.\r\n");
  EXPECT_EQ(h.exchange("d STARTTLS\r\n"), "need-input|d BAD TLS is already active.\r\n");
  // CAPABILITY after STARTTLS does not set the resp-code workaround.
  auto* fe = static_cast<imap::Frontend*>(h.fe.get());
  EXPECT_FALSE(fe->client_sent_capability());
}

TEST(ImapFrontend, StartTlsNotConfigured) {
  Harness h(false, false);
  h.start();
  h.take_output();
  EXPECT_EQ(h.exchange("a STARTTLS\r\n"), "need-input|a BAD TLS support isn't enabled.\r\n");
}

TEST(ImapFrontend, LoginGivesCredentials) {
  Harness h;
  h.start();
  h.take_output();
  EXPECT_EQ(h.exchange("IPFP2 LOGIN user1 \"pass\"\r\nIPFP3 SELECT INBOX\r\n"), "authenticate|");
  auto c = h.fe->take_credentials();
  EXPECT_EQ(c.mech, "PLAIN");
  EXPECT_EQ(c.authzid, "");
  EXPECT_EQ(c.authcid, "user1");
  EXPECT_EQ(c.password, "pass");
  // Nothing more is parsed while the engine works on the login.
  EXPECT_EQ(h.fe->next(), FrontendEvent::NeedInput);
  h.fe->feed("IPFP4 LOGOUT\r\n");
  EXPECT_EQ(h.fe->next(), FrontendEvent::NeedInput);
  EXPECT_EQ(h.take_output(), "");
  EXPECT_EQ(h.fe->take_pending_input(), "IPFP3 SELECT INBOX\r\nIPFP4 LOGOUT\r\n");
}

TEST(ImapFrontend, LoginWithLiterals) {
  Harness h;
  h.start();
  h.take_output();
  EXPECT_EQ(h.exchange("a LOGIN {5}\r\n"), "need-input|+ OK\r\n");
  EXPECT_EQ(h.exchange("alice {8}\r\n"), "need-input|+ OK\r\n");
  EXPECT_EQ(h.exchange("se\"c ret"), "need-input|");
  EXPECT_EQ(h.exchange("\r\n"), "authenticate|");
  auto c = h.fe->take_credentials();
  EXPECT_EQ(c.authcid, "alice");
  EXPECT_EQ(c.password, "se\"c ret");
}

TEST(ImapFrontend, LoginLiteralPlus) {
  Harness h;
  h.start();
  h.take_output();
  EXPECT_EQ(h.exchange("a LOGIN {5+}\r\nalice {3+}\r\np\xc3\xa4\r\n"), "authenticate|");
  EXPECT_EQ(h.fe->take_credentials().password, "p\xc3\xa4");
}

TEST(ImapFrontend, LoginOnInsecureConnection) {
  Harness h(false, true);
  h.start();
  h.take_output();
  EXPECT_EQ(h.exchange("a LOGIN user pass\r\n"),
            "need-input|* BAD [ALERT] Plaintext authentication not allowed without SSL/TLS, but "
            "your client did it anyway. If anyone was listening, the password was exposed.\r\n"
            "a NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS) "
            "connections.\r\n");
  EXPECT_EQ(h.exchange("b AUTHENTICATE PLAIN\r\n"),
            "need-input|b NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure "
            "(SSL/TLS) connections.\r\n");
  // Third strike.
  std::string out = h.exchange("c LOGIN user pass\r\n");
  EXPECT_TRUE(out.starts_with("close|")) << out;
  EXPECT_TRUE(out.ends_with("* BYE Too many invalid IMAP commands.\r\n")) << out;
}

TEST(ImapFrontend, LoginBadArguments) {
  Harness h;
  h.start();
  h.take_output();
  EXPECT_EQ(h.exchange("a LOGIN onlyuser\r\n"),
            "need-input|a BAD Error in IMAP command received by server.\r\n");
  EXPECT_EQ(h.exchange("b LOGIN (x) y\r\n"),
            "need-input|b BAD Error in IMAP command received by server.\r\n");
}

TEST(ImapFrontend, AuthenticatePlainWithInitialResponse) {
  Harness h;
  h.start();
  h.take_output();
  // "\0alice\0secret"
  EXPECT_EQ(h.exchange("a AUTHENTICATE plain AGFsaWNlAHNlY3JldA==\r\n"), "authenticate|");
  auto c = h.fe->take_credentials();
  EXPECT_EQ(c.mech, "PLAIN");
  EXPECT_EQ(c.authcid, "alice");
  EXPECT_EQ(c.password, "secret");
}

TEST(ImapFrontend, AuthenticatePlainContinuation) {
  Harness h;
  h.start();
  h.take_output();
  EXPECT_EQ(h.exchange("a AUTHENTICATE PLAIN\r\n"), "need-input|+ \r\n");
  EXPECT_EQ(h.exchange("Ym9iAG1hc3RlcgBwdw"), "need-input|");  // line not complete yet
  EXPECT_EQ(h.exchange("==\r\n"), "authenticate|");
  auto c = h.fe->take_credentials();
  EXPECT_EQ(c.authzid, "bob");
  EXPECT_EQ(c.authcid, "master");
  EXPECT_EQ(c.password, "pw");
}

TEST(ImapFrontend, AuthenticateEmptyInitialResponse) {
  Harness h;
  h.start();
  h.take_output();
  // "=" is an empty initial response: PLAIN rejects the empty message.
  EXPECT_EQ(h.exchange("a AUTHENTICATE PLAIN =\r\n"),
            "need-input|a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
  // LOGIN with "=" still asks for the user name.
  EXPECT_EQ(h.exchange("b AUTHENTICATE LOGIN =\r\n"), "need-input|+ VXNlcm5hbWU6\r\n");
}

TEST(ImapFrontend, AuthenticateLoginMechanism) {
  Harness h;
  h.start();
  h.take_output();
  EXPECT_EQ(h.exchange("a AUTHENTICATE LOGIN\r\n"), "need-input|+ VXNlcm5hbWU6\r\n");
  EXPECT_EQ(h.exchange("YWxpY2U=\r\n"), "need-input|+ UGFzc3dvcmQ6\r\n");
  EXPECT_EQ(h.exchange("c2VjcmV0\nb NOOP\r\n"), "authenticate|");
  auto c = h.fe->take_credentials();
  EXPECT_EQ(c.mech, "LOGIN");
  EXPECT_EQ(c.authcid, "alice");
  EXPECT_EQ(c.password, "secret");
  EXPECT_EQ(h.fe->take_pending_input(), "b NOOP\r\n");
}

TEST(ImapFrontend, AuthenticateAbortAndBadBase64) {
  Harness h;
  h.start();
  h.take_output();
  EXPECT_EQ(h.exchange("a AUTHENTICATE PLAIN\r\n"), "need-input|+ \r\n");
  EXPECT_EQ(h.exchange("*\r\n"), "need-input|a BAD Authentication aborted by client.\r\n");
  EXPECT_EQ(h.exchange("b AUTHENTICATE PLAIN\r\n"), "need-input|+ \r\n");
  EXPECT_EQ(
      h.exchange("!!notbase64\r\nc NOOP\r\n"),
      "need-input|b BAD Invalid base64 data in continued response\r\nc OK NOOP completed.\r\n");
  EXPECT_EQ(h.exchange("d AUTHENTICATE PLAIN !!!\r\n"),
            "need-input|d BAD Invalid base64 data in initial response\r\n");
}

TEST(ImapFrontend, AuthenticateUnsupportedMechanism) {
  Harness h;
  h.settings.mechanisms = {"PLAIN"};
  h.start();
  h.take_output();
  EXPECT_EQ(h.exchange("a AUTHENTICATE CRAM-MD5\r\n"),
            "need-input|a NO Unsupported authentication mechanism.\r\n");
  EXPECT_EQ(h.exchange("b AUTHENTICATE LOGIN\r\n"),  // known but not configured
            "need-input|b NO Unsupported authentication mechanism.\r\n");
  EXPECT_EQ(h.exchange("c AUTHENTICATE\r\n"),
            "need-input|c BAD Error in IMAP command received by server.\r\n");
}

TEST(ImapFrontend, AuthFailedReplies) {
  struct Case {
    login::AuthFailure kind;
    std::string reason;
    std::string want;
  };
  const std::vector<Case> cases = {
      {login::AuthFailure::Failed, "", "t NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"},
      {login::AuthFailure::Failed, "Go away", "t NO [ALERT] Go away\r\n"},
      {login::AuthFailure::Failed, "[EXPIRED] Old\r\npass", "t NO [EXPIRED] Old  pass\r\n"},
      {login::AuthFailure::TempFail, "db down",
       "t NO [UNAVAILABLE] Temporary authentication failure.\r\n"},
      {login::AuthFailure::Disabled, "", "t NO [CONTACTADMIN] Login disabled for this user\r\n"},
      {login::AuthFailure::Disabled, "Moved to mars", "t NO [ALERT] Moved to mars\r\n"},
      {login::AuthFailure::CleartextDenied, "",
       "t NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS) "
       "connections.\r\n"},
  };
  for (const auto& c : cases) {
    Harness h;
    h.start();
    h.take_output();
    ASSERT_EQ(h.exchange("t LOGIN u p\r\nn NOOP\r\n"), "authenticate|");
    h.fe->auth_failed(c.kind, c.reason);
    EXPECT_EQ(h.take_output(), c.want);
    // Parsing resumes with the pipelined input.
    EXPECT_EQ(h.fe->next(), FrontendEvent::NeedInput);
    EXPECT_EQ(h.take_output(), "n OK NOOP completed.\r\n");
  }
}

TEST(ImapFrontend, ProxyFailedReplies) {
  using login::FailureType;
  struct Case {
    FailureType type;
    std::string client_reply;
    std::string want;
  };
  const std::string unavailable = "t NO [UNAVAILABLE] Account is temporarily unavailable.\r\n";
  const std::string serverbug = "t NO [SERVERBUG] Account is temporarily unavailable.\r\n";
  const std::vector<Case> cases = {
      {FailureType::Connect, "", unavailable},
      {FailureType::Internal, "", unavailable},
      {FailureType::Remote, "", unavailable},
      {FailureType::Protocol, "", unavailable},
      {FailureType::AuthRedirect, "", unavailable},
      {FailureType::RemoteConfig, "", serverbug},
      {FailureType::InternalConfig, "", serverbug},
      {FailureType::AuthNotReplied, "", serverbug},
      {FailureType::AuthTempfail, "t NO [UNAVAILABLE] Maintenance\r\n",
       "t NO [UNAVAILABLE] Maintenance\r\n"},
      {FailureType::AuthReplied,
       "* OK [ALERT] hi\r\nt NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
       "* OK [ALERT] hi\r\nt NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"},
      {FailureType::LimitReached, "t NO [LIMIT] Too many\r\n", "t NO [LIMIT] Too many\r\n"},
      {FailureType::AuthReplied, "", "t NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"},
  };
  for (const auto& c : cases) {
    Harness h;
    h.start();
    h.take_output();
    ASSERT_EQ(h.exchange("t LOGIN u p\r\n"), "authenticate|");
    login::ProxyFailure f;
    f.type = c.type;
    f.reason = "whatever";
    f.client_reply = c.client_reply;
    h.fe->proxy_failed(f);
    EXPECT_EQ(h.take_output(), c.want) << login::failure_type_name(c.type);
    EXPECT_EQ(h.exchange("n NOOP\r\n"), "need-input|n OK NOOP completed.\r\n");
  }
}

TEST(ImapFrontend, TimedOut) {
  {
    Harness h;
    h.start();
    h.take_output();
    h.fe->timed_out();
    EXPECT_EQ(h.take_output(), "* BYE Disconnected for inactivity.\r\n");
    EXPECT_EQ(h.fe->next(), FrontendEvent::Close);
  }
  {
    Harness h;
    h.start();
    h.take_output();
    ASSERT_EQ(h.exchange("t LOGIN u p\r\n"), "authenticate|");
    h.fe->timed_out();
    EXPECT_EQ(h.take_output(), "* BYE Timeout while finishing login.\r\n");
  }
}

TEST(ImapFrontend, InvalidCommandsDisconnectOnThird) {
  Harness h;
  h.start();
  h.take_output();
  EXPECT_EQ(h.exchange("a FOO\r\n"),
            "need-input|a BAD Error in IMAP command received by server.\r\n");
  EXPECT_EQ(h.exchange("\x01\x02garbage\r\n"),
            "need-input|* BAD Error in IMAP command received by server.\r\n");
  EXPECT_EQ(h.exchange("\r\n\r\n"), "need-input|");  // empty lines are not errors
  EXPECT_EQ(h.exchange("c SELECT INBOX\r\nd NOOP\r\n"),
            "close|* BYE Too many invalid IMAP commands.\r\n");
  EXPECT_EQ(h.fe->next(), FrontendEvent::Close);
}

TEST(ImapFrontend, LimitsCloseTheConnection) {
  {
    Harness h;
    h.settings.max_line_length = 64;
    h.start();
    h.take_output();
    EXPECT_EQ(h.exchange("a LOGIN " + std::string(100, 'x')),
              "close|* BYE Too long command line.\r\n");
  }
  {
    Harness h;
    h.settings.max_literal_size = 16;
    h.start();
    h.take_output();
    EXPECT_EQ(h.exchange("a LOGIN {17}\r\n"), "need-input|a BAD Literal too large.\r\n");
    EXPECT_EQ(h.exchange("b LOGIN {17+}\r\n"),
              "close|b BAD Literal too large.\r\n* BYE Too long literal.\r\n");
  }
  {
    Harness h;
    h.settings.max_line_length = 64;
    h.start();
    h.take_output();
    ASSERT_EQ(h.exchange("a AUTHENTICATE PLAIN\r\n"), "need-input|+ \r\n");
    EXPECT_EQ(h.exchange(std::string(100, 'A')), "close|* BYE Too long command line.\r\n");
  }
}

TEST(ImapFrontend, BackendLoginCarriesTagAndCapabilityFlag) {
  Harness h;
  h.start();
  h.take_output();
  h.exchange("x0 CAPABILITY\r\n");
  h.take_output();
  ASSERT_EQ(h.exchange("x1 LOGIN u p\r\n"), "authenticate|");
  login::BackendLoginParams p;
  p.user = "u";
  p.password = "p";
  p.client = &h.client;
  auto b = h.fe->make_backend_login(p);
  EXPECT_EQ(b->on_line("* OK Dovecot ready."), login::BackendEvent::Continue);
  EXPECT_EQ(b->output(), "C CAPABILITY\r\nL LOGIN \"u\" \"p\"\r\n");
  EXPECT_EQ(b->on_line("* CAPABILITY IMAP4rev1 IDLE"), login::BackendEvent::Continue);
  EXPECT_EQ(b->on_line("L OK Logged in"), login::BackendEvent::Success);
  EXPECT_EQ(b->client_reply(), "* CAPABILITY IMAP4rev1 IDLE\r\nx1 OK Logged in\r\n");
}

// The same client transcript fed at once and byte by byte gives the same
// output and the same sequence of events.
TEST(ImapFrontend, ByteByByteEqualsAllAtOnce) {
  const std::string transcript =
      "a0 CAPABILITY\r\n\r\na1 ID (\"name\" \"x\")\r\nbad\x01\r\na2 NOOP\r\n"
      "a3 LOGIN {5}\r\nalice \"pw\"\r\nafter login\r\n";
  auto drive = [&](size_t chunk) {
    Harness h;
    h.start();
    std::string log;
    for (size_t i = 0; i < transcript.size(); i += chunk) {
      h.fe->feed(std::string_view(transcript).substr(i, chunk));
      FrontendEvent ev = h.fe->next();
      if (ev != FrontendEvent::NeedInput) log += std::string("<") + name(ev) + ">";
      if (ev == FrontendEvent::Authenticate) {
        auto c = h.fe->take_credentials();
        log += c.authcid + "/" + std::string(c.password.view());
        // The rest of the transcript is pending input, untouched.
        std::string rest(
            transcript.substr(i + chunk < transcript.size() ? i + chunk : transcript.size()));
        h.fe->feed(rest);
        log += "[" + h.fe->take_pending_input() + "]";
        break;
      }
    }
    return log + h.take_output();
  };
  const std::string all = drive(transcript.size());
  EXPECT_NE(all.find("<authenticate>alice/pw[after login\r\n]"), std::string::npos) << all;
  EXPECT_NE(all.find("+ OK\r\n"), std::string::npos);
  for (size_t chunk : {1, 2, 3, 5, 7, 11}) EXPECT_EQ(drive(chunk), all) << chunk;
}

// Fuzz-style property: random token soup (valid commands, literals, garbage,
// NUL and 8-bit bytes, SASL lines) must never crash, and splitting the input
// at random points must not change a single output byte or event.
TEST(ImapFrontend, RandomTranscriptsAreChunkingInvariant) {
  const std::vector<std::string> tokens = {"a CAPABILITY\r\n",
                                           "b NOOP\r\n",
                                           "c ID NIL\r\n",
                                           "d ID (\"k\" \"v\")\r\n",
                                           "e LOGIN u p\r\n",
                                           "f LOGIN {3}\r\nabc {1+}\r\nx\r\n",
                                           "g AUTHENTICATE PLAIN\r\n",
                                           "h AUTHENTICATE PLAIN AHUAcA==\r\n",
                                           "AHUAcA==\r\n",
                                           "*\r\n",
                                           "i STARTTLS\r\n",
                                           "j ENABLE X\r\n",
                                           "\r\n",
                                           "\n",
                                           "k FOO\r\n",
                                           "{5}\r\n",
                                           "\"",
                                           "(",
                                           ")",
                                           " ",
                                           "\x00"s,
                                           "\xff\xfe",
                                           "l LOGIN \"a\\\"b\" c\r\n",
                                           "m LOGIN {4+}\r\n\r\n\r\n \"x\"\r\n",
                                           "n AUTHENTICATE LOGIN\r\n",
                                           "dXNlcg==\r\n",
                                           "!!\r\n",
                                           "o LOGOUT\r\n"};
  std::mt19937 rng(4242);
  for (int round = 0; round < 300; ++round) {
    std::string transcript;
    const int n = 1 + static_cast<int>(rng() % 25);
    for (int i = 0; i < n; ++i) transcript += tokens[rng() % tokens.size()];

    auto drive = [&](bool split) {
      Harness h(/*secure=*/true, /*tls_configured=*/false);
      h.settings.max_line_length = 64;
      h.settings.max_literal_size = 8;
      h.settings.max_invalid_commands = 50;
      h.start();
      std::string log;
      size_t pos = 0;
      bool closed = false;
      while (pos < transcript.size() && !closed) {
        size_t len = split ? 1 + rng() % 9 : transcript.size();
        h.fe->feed(std::string_view(transcript).substr(pos, len));
        pos += len;
        for (;;) {
          FrontendEvent ev = h.fe->next();
          if (ev == FrontendEvent::NeedInput) break;
          log += std::string("<") + name(ev) + ">";
          if (ev == FrontendEvent::Close) {
            closed = true;
            break;
          }
          if (ev == FrontendEvent::Authenticate) {
            auto c = h.fe->take_credentials();
            log += c.authcid + "/" + std::string(c.password.view());
            h.fe->auth_failed(login::AuthFailure::Failed, "");
          }
        }
      }
      return log + "\n" + h.take_output();
    };
    const std::string whole = drive(false);
    EXPECT_EQ(drive(true), whole) << "round " << round;
  }
}

}  // namespace

// Issue 9 drift resolved: a trusted ID is validated as a whole, like XCLIENT
// in the other protocols - one bad value and no field changes.
TEST(ImapFrontend, IdTrustedBadAttributeChangesNothing) {
  Harness h(false);
  h.client.trusted = true;
  h.start();
  h.take_output();
  EXPECT_EQ(h.exchange("a ID (\"x-originating-ip\" \"10.1.2.3\" \"x-session-id\" \"good\" "
                       "\"x-originating-port\" \"70000\")\r\n"),
            "need-input|* ID NIL\r\na OK Trusted ID completed.\r\n");
  EXPECT_EQ(h.client.remote_ip.to_string(), "192.0.2.7");
  EXPECT_EQ(h.client.session_id, "y7/P7lthiNF/AAAB");
  EXPECT_EQ(h.client.remote_port, 53640);
}
