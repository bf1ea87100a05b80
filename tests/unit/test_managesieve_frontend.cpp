// ManageSieve Frontend: the pre-login server dialogue, driven by byte
// transcripts (spec §6.2, §6.3, RFC 5804).

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/base64.hpp"
#include "protocols/managesieve/frontend.hpp"
#include "protocols/managesieve/managesieve.hpp"
#include "protocols/registry.hpp"

using namespace portier;
namespace ms = portier::protocols::managesieve;
using namespace std::string_literals;
using login::FailureType;
using login::FrontendEvent;

namespace {

const std::string kSieveLine =
    "\"SIEVE\" \"fileinto reject envelope encoded-character vacation subaddress "
    "comparator-i;ascii-numeric relational regex imap4flags copy include variables body enotify "
    "environment mailbox date index ihave duplicate mime foreverypart extracttext\"\r\n";

std::string caps(std::string_view sasl, bool starttls, bool xclient) {
  std::string s = "\"IMPLEMENTATION\" \"portier\"\r\n" + kSieveLine +
                  "\"NOTIFY\" \"mailto\"\r\n\"SASL\" \"" + std::string(sasl) + "\"\r\n";
  if (starttls) s += "\"STARTTLS\"\r\n";
  s += "\"VERSION\" \"1.0\"\r\n";
  if (xclient) s += "\"XCLIENT\"\r\n";
  return s;
}

struct Harness {
  login::FrontendSettings settings;
  login::ClientInfo client;
  std::unique_ptr<login::Frontend> fe;

  explicit Harness(bool secure = true, bool tls_configured = false) {
    settings.greeting = "portier ready.";
    settings.mechanisms = {"PLAIN", "LOGIN"};
    client.remote_ip = asio::ip::make_address("192.0.2.7");
    client.remote_port = 53640;
    client.local_ip = asio::ip::make_address(secure ? "192.0.2.7" : "192.0.2.1");
    client.local_port = 4190;
    client.tls_configured = tls_configured;
    client.session_id = "y7/P7lthiNF/AAAB";
  }

  login::Frontend& start() {
    fe = ms::kProtocol.make_frontend(settings, client);
    fe->start();
    return *fe;
  }

  std::string out() {
    std::string s = std::move(fe->output());
    fe->output().clear();
    return s;
  }

  // Feed bytes, run next() once; return the event and the output.
  std::pair<FrontendEvent, std::string> send(std::string_view bytes) {
    fe->feed(bytes);
    FrontendEvent ev = fe->next();
    return {ev, out()};
  }
};

}  // namespace

TEST(ManagesieveFrontend, RegistryEntry) {
  const login::Protocol* p = protocols::find("managesieve");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p, &ms::kProtocol);
  EXPECT_EQ(p->service, "managesieve-login");
  EXPECT_EQ(p->default_port, 4190);
  EXPECT_EQ(p->default_tls_port, 0);
}

TEST(ManagesieveFrontend, GreetingVariants) {
  {
    Harness h(/*secure=*/true, /*tls_configured=*/true);
    h.start();
    EXPECT_EQ(h.out(), caps("PLAIN LOGIN", true, false) + "OK \"portier ready.\"\r\n");
  }
  {
    // Insecure without allow_cleartext: no cleartext mechanisms listed.
    Harness h(/*secure=*/false, /*tls_configured=*/true);
    h.start();
    EXPECT_EQ(h.out(), caps("", true, false) + "OK \"portier ready.\"\r\n");
  }
  {
    Harness h(false, false);
    h.settings.allow_cleartext = true;
    h.client.trusted = true;
    h.settings.greeting = "say \"hi\"";
    h.start();
    EXPECT_EQ(h.out(), caps("PLAIN LOGIN", false, true) + "OK \"say \\\"hi\\\"\"\r\n");
  }
}

TEST(ManagesieveFrontend, CapabilityNoopLogout) {
  Harness h;
  h.start();
  h.out();
  auto [ev, out] = h.send("CAPABILITY\r\n");
  EXPECT_EQ(ev, FrontendEvent::NeedInput);
  EXPECT_EQ(out, caps("PLAIN LOGIN", false, false) + "OK \"Capability completed.\"\r\n");
  EXPECT_EQ(h.send("noop\r\n").second, "OK \"NOOP Completed\"\r\n");
  EXPECT_EQ(h.send("NOOP \"STARTTLS-SYNC-42\"\r\n").second,
            "OK (TAG \"STARTTLS-SYNC-42\") \"Done\"\r\n");
  EXPECT_EQ(h.send("NOOP {3+}\r\na\"b\r\n").second, "OK (TAG \"a\\\"b\") \"Done\"\r\n");
  auto [ev2, out2] = h.send("LOGOUT\r\n");
  EXPECT_EQ(ev2, FrontendEvent::Close);
  EXPECT_EQ(out2, "OK \"Logout completed.\"\r\n");
}

TEST(ManagesieveFrontend, StarttlsFlow) {
  Harness h(true, true);
  h.start();
  h.out();
  // Pipelined plaintext after STARTTLS must be discarded.
  auto [ev, out] = h.send("STARTTLS\r\nAUTHENTICATE \"PLAIN\" \"AGEAYg==\"\r\n");
  EXPECT_EQ(ev, FrontendEvent::StartTls);
  EXPECT_EQ(out, "OK \"Begin TLS negotiation now.\"\r\n");
  h.client.tls = true;
  h.fe->tls_started();
  EXPECT_EQ(h.out(), caps("PLAIN LOGIN", false, false) + "OK \"TLS negotiation successful.\"\r\n");
  EXPECT_EQ(h.fe->next(), FrontendEvent::NeedInput);
  EXPECT_EQ(h.out(), "");
  EXPECT_TRUE(h.client.end_client_tls);
  EXPECT_EQ(h.send("STARTTLS\r\n").second, "NO \"TLS is already active.\"\r\n");
}

TEST(ManagesieveFrontend, StarttlsNotConfigured) {
  Harness h(true, false);
  h.start();
  h.out();
  EXPECT_EQ(h.send("STARTTLS\r\n").second, "NO \"TLS support isn't enabled.\"\r\n");
}

TEST(ManagesieveFrontend, AuthenticatePlainWithInitialResponse) {
  Harness h;
  h.start();
  h.out();
  auto [ev, out] =
      h.send("AUTHENTICATE \"PLAIN\" \"AHVzZXIzAHBhc3M=\"\r\nLISTSCRIPTS\r\nLOGOUT\r\n");
  EXPECT_EQ(ev, FrontendEvent::Authenticate);
  EXPECT_EQ(out, "");
  auto c = h.fe->take_credentials();
  EXPECT_EQ(c.mech, "PLAIN");
  EXPECT_EQ(c.authcid, "user3");
  EXPECT_EQ(c.password, "pass");
  // Pipelined commands stay for the backend.
  EXPECT_EQ(h.fe->next(), FrontendEvent::NeedInput);
  EXPECT_EQ(h.fe->take_pending_input(), "LISTSCRIPTS\r\nLOGOUT\r\n");
}

TEST(ManagesieveFrontend, AuthenticateWithoutInitialResponse) {
  Harness h;
  h.start();
  h.out();
  auto [ev, out] = h.send("Authenticate PLAIN\r\n");  // atom mechanism is accepted
  EXPECT_EQ(ev, FrontendEvent::NeedInput);
  EXPECT_EQ(out, "\"\"\r\n");
  // The response as a literal.
  const std::string b64 = core::base64_encode("\0user3\0pass"s);
  auto [ev2, out2] = h.send("{" + std::to_string(b64.size()) + "+}\r\n" + b64 + "\r\n");
  EXPECT_EQ(ev2, FrontendEvent::Authenticate);
  EXPECT_EQ(h.fe->take_credentials().password, "pass");
}

TEST(ManagesieveFrontend, AuthenticateLoginChallenges) {
  Harness h;
  h.start();
  h.out();
  auto [ev, out] = h.send("AUTHENTICATE \"LOGIN\" \"\"\r\n");
  EXPECT_EQ(out, "\"" + core::base64_encode("Username:") + "\"\r\n");
  auto [ev2, out2] = h.send("\"" + core::base64_encode("user3") + "\"\r\n");
  EXPECT_EQ(out2, "\"" + core::base64_encode("Password:") + "\"\r\n");
  auto [ev3, out3] = h.send("\"" + core::base64_encode("pw") + "\"\r\n");
  EXPECT_EQ(ev3, FrontendEvent::Authenticate);
  auto c = h.fe->take_credentials();
  EXPECT_EQ(c.mech, "LOGIN");
  EXPECT_EQ(c.authcid, "user3");
}

TEST(ManagesieveFrontend, AuthenticateAbortAndErrors) {
  Harness h;
  h.start();
  h.out();
  h.send("AUTHENTICATE \"PLAIN\"\r\n");
  EXPECT_EQ(h.send("\"*\"\r\n").second, "NO \"Authentication aborted by client.\"\r\n");
  h.send("AUTHENTICATE \"PLAIN\"\r\n");
  EXPECT_EQ(h.send("\"!!\"\r\n").second, "NO \"Invalid base64 data in continued response.\"\r\n");
  h.send("AUTHENTICATE \"PLAIN\"\r\n");
  EXPECT_EQ(h.send("bare\r\n").second, "NO \"Invalid SASL response: expected a string.\"\r\n");
  EXPECT_EQ(h.send("AUTHENTICATE \"PLAIN\" \"!!\"\r\n").second,
            "NO \"Invalid base64 data in initial response.\"\r\n");
  EXPECT_EQ(h.send("AUTHENTICATE \"CRAM-MD5\"\r\n").second,
            "NO \"Unsupported authentication mechanism.\"\r\n");
  EXPECT_EQ(h.send("AUTHENTICATE \"PLAIN\" \"" + core::base64_encode("nonul") + "\"\r\n").second,
            "NO \"Authentication failed.\"\r\n");
  // Still usable afterwards.
  EXPECT_EQ(h.send("NOOP\r\n").second, "OK \"NOOP Completed\"\r\n");
}

TEST(ManagesieveFrontend, CleartextDeniedOnInsecureConnection) {
  Harness h(/*secure=*/false);
  h.start();
  h.out();
  EXPECT_EQ(h.send("AUTHENTICATE \"PLAIN\" \"AHVzZXIzAHBhc3M=\"\r\n").second,
            "NO (ENCRYPT-NEEDED) \"Plaintext authentication disallowed on non-secure (SSL/TLS) "
            "connections.\"\r\n");
}

TEST(ManagesieveFrontend, UnauthenticatedAndInvalidCommandsThenBye) {
  Harness h;
  h.settings.max_invalid_commands = 3;
  h.start();
  h.out();
  EXPECT_EQ(h.send("PUTSCRIPT \"s\" {5+}\r\nkeep;\r\n").second,
            "NO \"Authentication required.\"\r\n");
  EXPECT_EQ(h.send("FROB\r\n").second, "NO \"Unknown command.\"\r\n");
  auto [ev, out] = h.send("NOOP \"unterminated\r\n");
  EXPECT_EQ(ev, FrontendEvent::Close);
  EXPECT_EQ(out,
            "NO \"Error in MANAGESIEVE command: Invalid string argument.\"\r\n"
            "BYE \"Too many invalid commands.\"\r\n");
}

TEST(ManagesieveFrontend, TooLongLineAndLiteral) {
  {
    Harness h;
    h.settings.max_line_length = 64;
    h.start();
    h.out();
    auto [ev, out] = h.send(std::string(100, 'A'));
    EXPECT_EQ(ev, FrontendEvent::Close);
    EXPECT_EQ(out, "BYE \"Too long command line.\"\r\n");
  }
  {
    Harness h;
    h.settings.max_literal_size = 10;
    h.start();
    h.out();
    auto [ev, out] = h.send("PUTSCRIPT \"a\" {11+}\r\n");
    EXPECT_EQ(ev, FrontendEvent::Close);
    EXPECT_EQ(out, "BYE \"Too long literal.\"\r\n");
  }
}

TEST(ManagesieveFrontend, XclientTrustedOnly) {
  {
    Harness h;
    h.start();
    h.out();
    EXPECT_EQ(h.send("XCLIENT ADDR=10.0.0.1\r\n").second,
              "NO \"You are not from trusted IP.\"\r\n");
    EXPECT_EQ(h.client.remote_ip.to_string(), "192.0.2.7");
  }
  Harness h;
  h.client.trusted = true;
  h.start();
  h.out();
  EXPECT_EQ(h.send("XCLIENT ADDR=10.0.0.1 PORT=4711 DESTADDR=10.0.0.2 DESTPORT=4190 "
                   "SESSION=abcDEF TTL=3 CLIENT-TRANSPORT=TLS FORWARD=eD15\r\n")
                .second,
            "OK \"Updated\"\r\n");
  EXPECT_EQ(h.client.remote_ip.to_string(), "10.0.0.1");
  EXPECT_EQ(h.client.remote_port, 4711);
  EXPECT_EQ(h.client.local_ip.to_string(), "10.0.0.2");
  EXPECT_EQ(h.client.local_port, 4190);
  EXPECT_EQ(h.client.session_id, "abcDEF");
  EXPECT_EQ(h.client.proxy_ttl, 3u);
  EXPECT_TRUE(h.client.end_client_tls);
  EXPECT_EQ(h.send("XCLIENT \"ADDR=1.1.1.1\"\r\n").second, "NO \"Invalid XCLIENT arguments.\"\r\n");
  EXPECT_EQ(h.send("XCLIENT ADDR=IPV6:2001:db8::1\r\n").second, "OK \"Updated\"\r\n");
  EXPECT_EQ(h.client.remote_ip.to_string(), "2001:db8::1");
}

TEST(ManagesieveFrontend, LocalAuthFailures) {
  struct Case {
    login::AuthFailure kind;
    std::string reason;
    std::string reply;
  };
  const std::vector<Case> cases = {
      {login::AuthFailure::Failed, "", "NO \"Authentication failed.\"\r\n"},
      {login::AuthFailure::Failed, "Go away", "NO \"Go away\"\r\n"},
      {login::AuthFailure::TempFail, "", "NO (TRYLATER) \"Temporary authentication failure.\"\r\n"},
      {login::AuthFailure::Disabled, "", "NO \"Login disabled for this user\"\r\n"},
      {login::AuthFailure::Disabled, "Moved\r\naway", "NO \"Moved  away\"\r\n"},
      {login::AuthFailure::Limit, "",
       "NO (LIMIT/CONNECTIONS) \"Too many connections for this user.\"\r\n"},
      {login::AuthFailure::CleartextDenied, "",
       "NO (ENCRYPT-NEEDED) \"Plaintext authentication disallowed on non-secure (SSL/TLS) "
       "connections.\"\r\n"},
  };
  for (const auto& c : cases) {
    Harness h;
    h.start();
    h.out();
    h.send("AUTHENTICATE \"PLAIN\" \"AHVzZXIzAHBhc3M=\"\r\n");
    h.fe->auth_failed(c.kind, c.reason);
    EXPECT_EQ(h.out(), c.reply);
    EXPECT_EQ(h.send("NOOP\r\n").second, "OK \"NOOP Completed\"\r\n");
  }
}

TEST(ManagesieveFrontend, ProxyFailureReplies) {
  const std::string temp = "NO (TRYLATER) \"Account is temporarily unavailable.\"\r\n";
  const std::string conf = "NO (TRYLATER/NORETRY) \"Account is temporarily unavailable.\"\r\n";
  struct Case {
    FailureType type;
    std::string client_reply;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {FailureType::Connect, "", temp},
      {FailureType::Internal, "", temp},
      {FailureType::Remote, "", temp},
      {FailureType::Protocol, "", temp},
      {FailureType::AuthRedirect, "", temp},
      {FailureType::InternalConfig, "", conf},
      {FailureType::RemoteConfig, "", conf},
      {FailureType::AuthNotReplied, "", conf},
      {FailureType::AuthTempfail, "NO (TRYLATER) \"busy\"\r\n", "NO (TRYLATER) \"busy\"\r\n"},
      {FailureType::AuthTempfail, "", temp},
      {FailureType::AuthReplied, "NO \"Authentication failed.\"\r\n",
       "NO \"Authentication failed.\"\r\n"},
      {FailureType::AuthReplied, "", "NO \"Authentication failed.\"\r\n"},
      {FailureType::LimitReached, "NO (LIMIT/CONNECTIONS) \"x\"\r\n",
       "NO (LIMIT/CONNECTIONS) \"x\"\r\n"},
  };
  static_assert(static_cast<int>(FailureType::kCount) == 11, "new failure type: add a case");
  for (const auto& c : cases) {
    Harness h;
    h.start();
    h.out();
    h.send("AUTHENTICATE \"PLAIN\" \"AHVzZXIzAHBhc3M=\"\r\nNOOP\r\n");
    h.fe->proxy_failed({c.type, "reason", c.client_reply});
    EXPECT_EQ(h.out(), c.expected) << login::failure_type_name(c.type);
    // Back in the pre-login state: pipelined input is parsed again.
    EXPECT_EQ(h.fe->next(), FrontendEvent::NeedInput);
    EXPECT_EQ(h.out(), "OK \"NOOP Completed\"\r\n");
  }
}

TEST(ManagesieveFrontend, TimeoutGoodbyes) {
  Harness h;
  h.start();
  h.out();
  h.fe->timed_out();
  EXPECT_EQ(h.out(), "BYE \"Disconnected for inactivity.\"\r\n");
  EXPECT_EQ(h.fe->next(), FrontendEvent::Close);
  Harness h2;
  h2.start();
  h2.out();
  h2.send("AUTHENTICATE \"PLAIN\" \"AHVzZXIzAHBhc3M=\"\r\n");
  h2.fe->timed_out();
  EXPECT_EQ(h2.out(), "BYE \"Timeout while finishing login.\"\r\n");
}

TEST(ManagesieveFrontend, EngineGoodbye) {
  Harness h;
  h.start();
  h.out();
  h.fe->goodbye("Server shutting down.");
  EXPECT_EQ(h.out(), "BYE \"Server shutting down.\"\r\n");
  EXPECT_EQ(h.fe->next(), FrontendEvent::Close);
}

TEST(ManagesieveFrontend, ByteAtATime) {
  Harness h;
  h.start();
  h.out();
  const std::string in = "NOOP\r\nAUTHENTICATE \"PLAIN\" {16+}\r\nAHVzZXIzAHBhc3M=\r\n";
  std::string out;
  FrontendEvent ev = FrontendEvent::NeedInput;
  for (char c : in) {
    h.fe->feed(std::string_view(&c, 1));
    ev = h.fe->next();
    out += h.out();
  }
  EXPECT_EQ(ev, FrontendEvent::Authenticate);
  EXPECT_EQ(out, "OK \"NOOP Completed\"\r\n");
  EXPECT_EQ(h.fe->take_credentials().authcid, "user3");
}

// Issue 9 drift resolved: XCLIENT is validated as a whole (it was field by
// field here) - one bad value and no field changes.
TEST(ManagesieveFrontend, XclientBadAttributeChangesNothing) {
  Harness h;
  h.client.trusted = true;
  h.start();
  h.out();
  EXPECT_EQ(h.send("XCLIENT ADDR=10.0.0.1 PORT=99999\r\n").second,
            "NO \"Invalid XCLIENT arguments.\"\r\n");
  EXPECT_EQ(h.client.remote_ip.to_string(), "192.0.2.7");
  EXPECT_EQ(h.send("XCLIENT ADDR=10.0.0.1 TTL=x\r\n").second,
            "NO \"Invalid XCLIENT arguments.\"\r\n");
  EXPECT_EQ(h.client.remote_ip.to_string(), "192.0.2.7");
}
