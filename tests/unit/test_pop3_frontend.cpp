// POP3 Frontend: the pre-login server dialogue (spec §4.3), byte for byte.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/base64.hpp"
#include "protocols/pop3/frontend.hpp"
#include "protocols/pop3/pop3.hpp"

using namespace portier;
namespace pop3 = portier::protocols::pop3;
using namespace std::string_literals;
using login::AuthFailure;
using login::FrontendEvent;

namespace {

struct Fixture {
  login::FrontendSettings settings;
  login::ClientInfo client;
  std::unique_ptr<pop3::Frontend> fe;

  Fixture() {
    settings.hostname = "proxy.lab";
    settings.greeting = "portier ready.";
    settings.mechanisms = {"PLAIN", "LOGIN"};
    settings.max_invalid_commands = 3;
    client.remote_ip = asio::ip::make_address("192.0.2.7");
    client.remote_port = 40000;
    client.local_ip = asio::ip::make_address("192.0.2.1");
    client.local_port = 110;
    client.session_id = "sess";
    client.tls_configured = true;
  }

  pop3::Frontend& make() {
    fe = std::make_unique<pop3::Frontend>(settings, client);
    fe->start();
    return *fe;
  }

  std::string take() {
    std::string o = fe->output();
    fe->output().clear();
    return o;
  }

  FrontendEvent send(std::string_view in) {
    fe->feed(in);
    return fe->next();
  }
};

const std::string kCapaHead =
    "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n";
const std::string kPlaintextDisabled =
    "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.\r\n";

TEST(Pop3Frontend, ProtocolEntry) {
  EXPECT_EQ(pop3::kProtocol.name, "pop3");
  EXPECT_EQ(pop3::kProtocol.service, "pop3-login");
  EXPECT_EQ(pop3::kProtocol.default_port, 110);
  EXPECT_EQ(pop3::kProtocol.default_tls_port, 995);
  ASSERT_NE(pop3::kProtocol.make_frontend, nullptr);
  login::FrontendSettings s;
  login::ClientInfo c;
  EXPECT_NE(pop3::kProtocol.make_frontend(s, c), nullptr);
}

TEST(Pop3Frontend, Banner) {
  Fixture f;
  f.make();
  EXPECT_EQ(f.take(), "+OK portier ready.\r\n");
  Fixture t;
  t.client.trusted = true;
  t.make();
  EXPECT_EQ(t.take(), "+OK [XCLIENT] portier ready.\r\n");
}

struct CapaCase {
  const char* name;
  bool tls, tls_configured, trusted, allow_cleartext;
  std::string tail;
};

TEST(Pop3Frontend, Capa) {
  const std::vector<CapaCase> cases = {
      {"insecure", false, true, false, false, "STLS\r\nSASL\r\n.\r\n"},
      {"insecure-cleartext-allowed", false, true, false, true,
       "STLS\r\nUSER\r\nSASL PLAIN LOGIN\r\n.\r\n"},
      {"tls", true, true, false, false, "USER\r\nSASL PLAIN LOGIN\r\n.\r\n"},
      {"no-tls-configured", false, false, false, false, "SASL\r\n.\r\n"},
      {"trusted", false, false, true, false, "USER\r\nSASL PLAIN LOGIN\r\n.\r\n"},
  };
  for (const auto& c : cases) {
    Fixture f;
    f.client.tls = c.tls;
    f.client.tls_configured = c.tls_configured;
    f.client.trusted = c.trusted;
    f.settings.allow_cleartext = c.allow_cleartext;
    f.make();
    f.take();
    EXPECT_EQ(f.send("CAPA\r\n"), FrontendEvent::NeedInput) << c.name;
    EXPECT_EQ(f.take(), kCapaHead + c.tail) << c.name;
  }
}

TEST(Pop3Frontend, UserPassAuthenticates) {
  Fixture f;
  f.client.tls = true;
  f.make();
  f.take();
  EXPECT_EQ(f.send("USER user1\r\n"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), "+OK\r\n");
  EXPECT_EQ(f.send("PASS pa ss \r\nSTAT\r\n"), FrontendEvent::Authenticate);
  EXPECT_EQ(f.take(), "");
  auto cr = f.fe->take_credentials();
  EXPECT_EQ(cr.mech, "PLAIN");
  EXPECT_EQ(cr.authcid, "user1");
  EXPECT_EQ(cr.password, "pa ss ");  // spaces are part of the password
  // While the engine logs in, nothing more is parsed; pipelined input waits.
  EXPECT_EQ(f.fe->next(), FrontendEvent::NeedInput);
  EXPECT_EQ(f.fe->take_pending_input(), "STAT\r\n");
}

TEST(Pop3Frontend, PassWithoutUser) {
  Fixture f;
  f.client.tls = true;
  f.make();
  f.take();
  EXPECT_EQ(f.send("PASS x\r\n"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), "-ERR No username given.\r\n");
}

TEST(Pop3Frontend, UserIsConsumedByPass) {
  Fixture f;
  f.client.tls = true;
  f.make();
  f.take();
  f.send("USER a\r\nPASS b\r\n");
  f.fe->take_credentials();
  f.fe->auth_failed(AuthFailure::Failed, {});
  EXPECT_EQ(f.take(), "+OK\r\n-ERR [AUTH] Authentication failed.\r\n");
  EXPECT_EQ(f.send("PASS c\r\n"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), "-ERR No username given.\r\n");
}

TEST(Pop3Frontend, CleartextRefusedOnInsecureConnection) {
  Fixture f;
  f.make();
  f.take();
  EXPECT_EQ(f.send("USER a\r\n"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), kPlaintextDisabled);
  EXPECT_EQ(f.send("PASS b\r\n"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), kPlaintextDisabled);
  EXPECT_EQ(f.send("AUTH PLAIN " + core::base64_encode("\0a\0b"s) + "\r\n"),
            FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), kPlaintextDisabled);
}

TEST(Pop3Frontend, AuthPlainWithInitialResponse) {
  Fixture f;
  f.client.tls = true;
  f.make();
  f.take();
  EXPECT_EQ(f.send("AUTH PLAIN " + core::base64_encode("\0user1\0pass"s) + "\r\n"),
            FrontendEvent::Authenticate);
  auto cr = f.fe->take_credentials();
  EXPECT_EQ(cr.authcid, "user1");
  EXPECT_EQ(cr.password, "pass");
}

TEST(Pop3Frontend, AuthPlainWithContinuation) {
  Fixture f;
  f.client.tls = true;
  f.make();
  f.take();
  EXPECT_EQ(f.send("auth plain\r\n"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), "+ \r\n");
  EXPECT_EQ(f.send(core::base64_encode("\0user1\0pass"s) + "\r\n"), FrontendEvent::Authenticate);
  EXPECT_EQ(f.fe->take_credentials().authcid, "user1");
}

TEST(Pop3Frontend, AuthLoginWithContinuations) {
  Fixture f;
  f.client.tls = true;
  f.make();
  f.take();
  EXPECT_EQ(f.send("AUTH LOGIN\r\n"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), "+ " + core::base64_encode("Username:") + "\r\n");
  EXPECT_EQ(f.send(core::base64_encode("user1") + "\r\n"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), "+ " + core::base64_encode("Password:") + "\r\n");
  EXPECT_EQ(f.send(core::base64_encode("pass") + "\r\n"), FrontendEvent::Authenticate);
  auto cr = f.fe->take_credentials();
  EXPECT_EQ(cr.mech, "LOGIN");
  EXPECT_EQ(cr.password, "pass");
}

TEST(Pop3Frontend, AuthEmptyInitialResponse) {
  Fixture f;
  f.client.tls = true;
  f.make();
  f.take();
  // PLAIN with an empty response is malformed: a local auth failure.
  EXPECT_EQ(f.send("AUTH PLAIN =\r\n"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), "-ERR [AUTH] Authentication failed.\r\n");
}

TEST(Pop3Frontend, AuthCancelAndBadBase64) {
  Fixture f;
  f.client.tls = true;
  f.make();
  f.take();
  f.send("AUTH PLAIN\r\n");
  f.take();
  EXPECT_EQ(f.send("*\r\n"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), "-ERR Authentication aborted by client.\r\n");
  f.send("AUTH PLAIN\r\n");
  f.take();
  EXPECT_EQ(f.send("%%%\r\n"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), "-ERR [AUTH] Invalid base64 data in continued response\r\n");
  EXPECT_EQ(f.send("AUTH PLAIN %%%\r\n"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), "-ERR [AUTH] Invalid base64 data in initial response\r\n");
  EXPECT_EQ(f.send("AUTH CRAM-MD5\r\n"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), "-ERR [AUTH] Unsupported authentication mechanism.\r\n");
  // Back in command mode.
  EXPECT_EQ(f.send("CAPA\r\n"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take().substr(0, 5), "+OK\r\n");
}

TEST(Pop3Frontend, BareAuthListsMechanisms) {
  Fixture f;
  f.client.tls = true;
  f.make();
  f.take();
  EXPECT_EQ(f.send("AUTH\r\n"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), "+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n");
  Fixture g;  // insecure: cleartext mechanisms are not offered
  g.make();
  g.take();
  g.send("AUTH\r\n");
  EXPECT_EQ(g.take(), "+OK\r\n.\r\n");
}

TEST(Pop3Frontend, StlsDiscardsPipelinedInput) {
  Fixture f;
  f.make();
  f.take();
  EXPECT_EQ(f.send("STLS\r\nUSER injected\r\nPASS x\r\n"), FrontendEvent::StartTls);
  EXPECT_EQ(f.take(), "+OK Begin TLS negotiation now.\r\n");
  f.client.tls = true;
  f.fe->tls_started();
  EXPECT_TRUE(f.client.end_client_tls);
  EXPECT_EQ(f.fe->next(), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), "");
  EXPECT_EQ(f.send("PASS x\r\n"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), "-ERR No username given.\r\n");
  EXPECT_EQ(f.send("STLS\r\n"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), "-ERR TLS is already active.\r\n");
}

TEST(Pop3Frontend, UserBeforeStlsDoesNotSurviveIt) {
  Fixture f;
  f.settings.allow_cleartext = true;
  f.make();
  f.take();
  f.send("USER a\r\n");
  EXPECT_EQ(f.send("STLS\r\n"), FrontendEvent::StartTls);
  f.client.tls = true;
  f.fe->tls_started();
  f.take();
  EXPECT_EQ(f.send("PASS b\r\n"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), "-ERR No username given.\r\n");
}

TEST(Pop3Frontend, StlsNotConfigured) {
  Fixture f;
  f.client.tls_configured = false;
  f.make();
  f.take();
  EXPECT_EQ(f.send("STLS\r\n"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), "-ERR TLS support isn't enabled.\r\n");
}

TEST(Pop3Frontend, ImplicitTls) {
  Fixture f;
  f.client.tls = true;
  f.make();
  EXPECT_TRUE(f.client.end_client_tls);
  f.take();
  f.send("CAPA\r\n");
  EXPECT_EQ(f.take(), kCapaHead + "USER\r\nSASL PLAIN LOGIN\r\n.\r\n");
}

TEST(Pop3Frontend, Quit) {
  Fixture f;
  f.make();
  f.take();
  EXPECT_EQ(f.send("QUIT\r\nCAPA\r\n"), FrontendEvent::Close);
  EXPECT_EQ(f.take(), "+OK Logging out\r\n");
}

TEST(Pop3Frontend, ApopNotEnabled) {
  Fixture f;
  f.make();
  f.take();
  EXPECT_EQ(f.send("APOP a 0123456789abcdef0123456789abcdef\r\n"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), "-ERR APOP not enabled.\r\n");
}

TEST(Pop3Frontend, ThirdBadCommandInARowDisconnects) {
  Fixture f;
  f.make();
  f.take();
  EXPECT_EQ(f.send("FOO\r\n\r\n"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), "-ERR Unknown command.\r\n-ERR Unknown command.\r\n");
  // A good command resets the count (Dovecot).
  f.send("CAPA\r\n");
  f.take();
  EXPECT_EQ(f.send("A\r\nB\r\n"), FrontendEvent::NeedInput);
  f.take();
  EXPECT_EQ(f.send("C\r\nCAPA\r\n"), FrontendEvent::Close);
  EXPECT_EQ(f.take(), "-ERR Unknown command.\r\n-ERR Too many invalid bad commands.\r\n");
  EXPECT_EQ(f.fe->next(), FrontendEvent::Close);
}

TEST(Pop3Frontend, OverlongLineDisconnects) {
  Fixture f;
  f.settings.max_line_length = 64;
  f.make();
  f.take();
  EXPECT_EQ(f.send(std::string(100, 'A')), FrontendEvent::Close);
  EXPECT_EQ(f.take(), "-ERR Input buffer full, aborting\r\n");
  Fixture g;
  g.settings.max_line_length = 64;
  g.make();
  g.take();
  EXPECT_EQ(g.send(std::string(80, 'A') + "\r\n"), FrontendEvent::Close);
}

TEST(Pop3Frontend, BytesArrivingSplit) {
  Fixture f;
  f.client.tls = true;
  f.make();
  f.take();
  EXPECT_EQ(f.send("US"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.send("ER u\r"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), "");
  EXPECT_EQ(f.send("\n"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), "+OK\r\n");
  EXPECT_EQ(f.send("PASS p\n"), FrontendEvent::Authenticate);  // bare LF tolerated
}

TEST(Pop3Frontend, XclientUntrustedIgnored) {
  Fixture f;
  f.make();
  f.take();
  EXPECT_EQ(f.send("XCLIENT ADDR=10.9.9.9 PORT=1\r\n"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), "+OK You are not from trusted IP - ignoring\r\n");
  EXPECT_EQ(f.client.remote_ip.to_string(), "192.0.2.7");
}

TEST(Pop3Frontend, XclientTrustedUpdatesClientInfo) {
  Fixture f;
  f.client.trusted = true;
  f.make();
  f.take();
  EXPECT_EQ(f.send("XCLIENT ADDR=127.0.0.2 PORT=5555 DESTADDR=10.0.0.1 DESTPORT=995 "
                   "SESSION=abcDEF TTL=3 CLIENT-TRANSPORT=TLS FORWARD=" +
                   core::base64_encode("k=v") + " UNKNOWN=x\r\n"),
            FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), "+OK Updated\r\n");
  EXPECT_EQ(f.client.remote_ip.to_string(), "127.0.0.2");
  EXPECT_EQ(f.client.remote_port, 5555);
  EXPECT_EQ(f.client.local_ip.to_string(), "10.0.0.1");
  EXPECT_EQ(f.client.local_port, 995);
  EXPECT_EQ(f.client.session_id, "abcDEF");
  EXPECT_EQ(f.client.proxy_ttl, 3u);
  EXPECT_TRUE(f.client.end_client_tls);
}

TEST(Pop3Frontend, XclientInvalidChangesNothing) {
  for (const char* args : {"ADDR=127.0.0.2 PORT=99999", "ADDR=not-an-ip", "TTL=-1",
                           "PORT=5 DESTPORT=x", "FORWARD=%%%"}) {
    Fixture f;
    f.client.trusted = true;
    f.make();
    f.take();
    EXPECT_EQ(f.send("XCLIENT "s + args + "\r\n"), FrontendEvent::NeedInput) << args;
    EXPECT_EQ(f.take(), "-ERR Invalid parameters\r\n") << args;
    EXPECT_EQ(f.client.remote_ip.to_string(), "192.0.2.7") << args;
    EXPECT_EQ(f.client.remote_port, 40000) << args;
  }
}

TEST(Pop3Frontend, XclientSessionThatCannotBeForwardedIsIgnored) {
  Fixture f;
  f.client.trusted = true;
  f.make();
  f.take();
  f.send("XCLIENT SESSION=" + std::string(65, 'a') + "\r\n");
  EXPECT_EQ(f.take(), "+OK Updated\r\n");
  EXPECT_EQ(f.client.session_id, "sess");
}

TEST(Pop3Frontend, Xoip) {
  Fixture f;
  f.client.trusted = true;
  f.make();
  f.take();
  EXPECT_EQ(f.send("XOIP 2001:db8::1\r\n"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), "+OK Updated\r\n");
  EXPECT_EQ(f.client.remote_ip.to_string(), "2001:db8::1");
}

struct AuthFailCase {
  AuthFailure kind;
  std::string reason;
  std::string expect;
};

TEST(Pop3Frontend, LocalAuthFailures) {
  const std::vector<AuthFailCase> cases = {
      {AuthFailure::Failed, "", "-ERR [AUTH] Authentication failed.\r\n"},
      {AuthFailure::TempFail, "", "-ERR [SYS/TEMP] Temporary authentication failure.\r\n"},
      {AuthFailure::Disabled, "", "-ERR [AUTH] Authentication failed.\r\n"},
      {AuthFailure::Disabled, "Account\r\nlocked", "-ERR [AUTH] Account  locked\r\n"},
      {AuthFailure::Disabled, "[IN-USE] busy", "-ERR [IN-USE] busy\r\n"},
      {AuthFailure::CleartextDenied, "", kPlaintextDisabled},
  };
  for (const auto& c : cases) {
    Fixture f;
    f.client.tls = true;
    f.make();
    f.take();
    ASSERT_EQ(f.send("USER u\r\nPASS p\r\n"), FrontendEvent::Authenticate);
    f.take();
    f.fe->take_credentials();
    f.fe->auth_failed(c.kind, c.reason);
    EXPECT_EQ(f.take(), c.expect);
    // Parsing resumes.
    EXPECT_EQ(f.send("QUIT\r\n"), FrontendEvent::Close);
  }
}

TEST(Pop3Frontend, ProxyFailureResumesCommands) {
  Fixture f;
  f.client.tls = true;
  f.make();
  f.take();
  ASSERT_EQ(f.send("USER u\r\nPASS p\r\nQUIT\r\n"), FrontendEvent::Authenticate);
  f.take();
  f.fe->take_credentials();
  f.fe->proxy_failed({login::FailureType::Connect, "connect failed", {}});
  EXPECT_EQ(f.take(), "-ERR [SYS/TEMP] Account is temporarily unavailable.\r\n");
  EXPECT_EQ(f.fe->next(), FrontendEvent::Close);
  EXPECT_EQ(f.take(), "+OK Logging out\r\n");
}

TEST(Pop3Frontend, Timeouts) {
  Fixture f;
  f.make();
  f.take();
  f.fe->timed_out();
  EXPECT_EQ(f.take(), "-ERR Disconnected for inactivity.\r\n");
  EXPECT_EQ(f.fe->next(), FrontendEvent::Close);

  Fixture g;
  g.client.tls = true;
  g.make();
  g.take();
  g.send("USER u\r\nPASS p\r\n");
  g.fe->timed_out();
  EXPECT_EQ(g.take(), "+OK\r\n-ERR Timeout while finishing login.\r\n");
}

}  // namespace

namespace {

TEST(Pop3Frontend, Goodbye) {
  Fixture f;
  f.make();
  f.take();
  f.fe->goodbye("Server shutting down.");
  EXPECT_EQ(f.take(), "-ERR Server shutting down.\r\n");
  EXPECT_EQ(f.fe->next(), FrontendEvent::Close);
}

}  // namespace

// Issue 9: one SASL exchange for all protocols. `AUTH LOGIN =` (an empty
// initial response) asks for the user name, as without one (it failed before).
TEST(Pop3Frontend, AuthLoginEmptyInitialResponseAsksForUser) {
  Fixture f;
  f.client.tls = true;
  f.make();
  f.take();
  EXPECT_EQ(f.send("AUTH LOGIN =\r\n"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), "+ " + core::base64_encode("Username:") + "\r\n");
  EXPECT_EQ(f.send(core::base64_encode("user1") + "\r\n"), FrontendEvent::NeedInput);
  EXPECT_EQ(f.take(), "+ " + core::base64_encode("Password:") + "\r\n");
  EXPECT_EQ(f.send(core::base64_encode("pass") + "\r\n"), FrontendEvent::Authenticate);
  auto cr = f.fe->take_credentials();
  EXPECT_EQ(cr.authcid, "user1");
  EXPECT_EQ(cr.password, "pass");
}
