// ManageSieve BackendLogin: proxy → backend login, byte for byte against the
// spec (§6.1, §6.2, §14 M1-M8) and the captures dovecot-sieve.txt /
// dovecot-starttls-sieve.txt.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/base64.hpp"
#include "protocols/managesieve/backend_login.hpp"
#include "protocols/managesieve/frontend.hpp"

using namespace portier;
namespace ms = portier::protocols::managesieve;
using namespace std::string_literals;
using login::BackendEvent;
using login::FailureType;

namespace {

// The greeting the Dovecot 2.3 backend sent in dovecot-sieve.txt.
const std::vector<std::string> kGreeting = {
    R"("IMPLEMENTATION" "Dovecot (Debian) Pigeonhole")",
    R"("SIEVE" "fileinto reject envelope encoded-character vacation subaddress comparator-i;ascii-numeric relational regex imap4flags copy include variables body enotify environment mailbox date index ihave duplicate mime foreverypart extracttext")",
    R"("NOTIFY" "mailto")",
    R"("SASL" "PLAIN LOGIN")",
    R"("STARTTLS")",
    R"("VERSION" "1.0")",
    R"("XCLIENT")",
    R"(OK "Dovecot (Debian) ready.")",
};
const std::string kXclient =
    "XCLIENT ADDR=127.0.0.1 PORT=52060 DESTADDR=127.0.0.1 DESTPORT=24191 "
    "SESSION=tvAc71thXMt/AAAB TTL=4 CLIENT-TRANSPORT=insecure\r\n";
// PLAIN "\0user3\0pass".
const std::string kAuthPlain = "AUTHENTICATE \"PLAIN\" \"AHVzZXIzAHBhc3M=\"\r\n";

std::vector<std::string> greeting_without(std::string_view cap) {
  std::vector<std::string> g;
  for (const auto& l : kGreeting)
    if (l.find("\""s + std::string(cap) + "\"") != 0) g.push_back(l);
  return g;
}

struct Fixture {
  login::ClientInfo client;
  login::BackendLoginParams params;
  std::unique_ptr<ms::BackendLogin> b;

  Fixture() {
    client.remote_ip = asio::ip::make_address("127.0.0.1");
    client.remote_port = 52060;
    client.local_ip = asio::ip::make_address("127.0.0.1");
    client.local_port = 24191;
    client.session_id = "tvAc71thXMt/AAAB";
    client.proxy_ttl = 5;
    params.user = "user3";
    params.password = "pass";
    params.client = &client;
  }

  ms::BackendLogin& make() {
    b = std::make_unique<ms::BackendLogin>(params);
    return *b;
  }

  BackendEvent line(std::string_view l) { return b->on_line(l); }

  // Feeds lines; every one but the last must give Continue.
  BackendEvent lines(const std::vector<std::string>& ls) {
    BackendEvent ev = BackendEvent::Continue;
    for (size_t i = 0; i < ls.size(); ++i) {
      ev = b->on_line(ls[i]);
      if (i + 1 < ls.size()) EXPECT_EQ(ev, BackendEvent::Continue) << ls[i];
    }
    return ev;
  }

  std::string out() {
    std::string s = std::move(b->output());
    b->output().clear();
    return s;
  }
};

}  // namespace

TEST(ManagesieveBackend, StateNames) {
  Fixture f;
  f.make();
  EXPECT_EQ(f.b->state(), "none");
  for (size_t i = 0; i + 1 < kGreeting.size(); ++i) {
    EXPECT_EQ(f.line(kGreeting[i]), BackendEvent::Continue);
    EXPECT_EQ(f.b->state(), "none");
    EXPECT_EQ(f.out(), "");
  }
}

TEST(ManagesieveBackend, XclientThenAuthenticate) {
  Fixture f;
  f.make();
  EXPECT_EQ(f.lines(kGreeting), BackendEvent::Continue);
  EXPECT_EQ(f.out(), kXclient);
  EXPECT_EQ(f.b->state(), "xclient");
  EXPECT_EQ(f.line(R"(OK "Updated")"), BackendEvent::Continue);
  EXPECT_EQ(f.out(), kAuthPlain);
  EXPECT_EQ(f.b->state(), "auth");
  EXPECT_EQ(f.line(R"(OK "Logged in.")"), BackendEvent::Success);
  EXPECT_EQ(f.b->client_reply(), "OK \"Logged in.\"\r\n");
}

TEST(ManagesieveBackend, WithoutXclientCapabilityAuthenticatesAtOnce) {
  Fixture f;
  f.make();
  EXPECT_EQ(f.lines(greeting_without("XCLIENT")), BackendEvent::Continue);
  EXPECT_EQ(f.out(), kAuthPlain);
  EXPECT_EQ(f.b->state(), "auth");
}

TEST(ManagesieveBackend, ProxyNotTrustedSuppressesXclient) {
  // A deliberate difference from Dovecot (§13.3, docs/DIFFERENCES.md).
  Fixture f;
  f.params.not_trusted = true;
  f.make();
  EXPECT_EQ(f.lines(kGreeting), BackendEvent::Continue);
  EXPECT_EQ(f.out(), kAuthPlain);
}

TEST(ManagesieveBackend, XclientContents) {
  Fixture f;
  f.client.remote_ip = asio::ip::make_address("2001:db8::7");
  f.client.local_ip = asio::ip::make_address("::ffff:192.0.2.1");
  f.client.end_client_tls = true;
  f.client.proxy_ttl = 7;
  f.params.forward = {{"k", "v"}, {"tab", "a\tb"}};
  f.make();
  EXPECT_EQ(f.b->build_xclient_command(),
            "XCLIENT ADDR=2001:db8::7 PORT=52060 DESTADDR=192.0.2.1 DESTPORT=24191 "
            "SESSION=tvAc71thXMt/AAAB TTL=6 CLIENT-TRANSPORT=TLS FORWARD=" +
                core::base64_encode("k=v\ttab=a\001tb") + "\r\n");
  // A session id that is not an atom is left out rather than sent broken.
  f.client.session_id = "a b";
  EXPECT_EQ(f.b->build_xclient_command().find("SESSION="), std::string::npos);
}

TEST(ManagesieveBackend, XclientRefusedIsConfigFailure) {
  Fixture f;
  f.make();
  f.lines(kGreeting);
  f.out();
  EXPECT_EQ(f.line(R"(NO "You are not from trusted IP")"), BackendEvent::Failure);
  EXPECT_EQ(f.b->failure().type, FailureType::RemoteConfig);
  EXPECT_EQ(f.b->failure().reason, R"(Remote XCLIENT failed: NO "You are not from trusted IP")");
  EXPECT_EQ(f.b->state(), "xclient");
}

TEST(ManagesieveBackend, StarttlsSequence) {
  Fixture f;
  f.params.starttls = true;
  f.params.tls = true;
  f.make();
  EXPECT_EQ(f.lines(kGreeting), BackendEvent::Continue);
  EXPECT_EQ(f.out(), "STARTTLS\r\n");
  EXPECT_EQ(f.b->state(), "tls-start");
  EXPECT_EQ(f.line(R"(OK "Begin TLS negotiation now.")"), BackendEvent::StartTls);
  EXPECT_EQ(f.b->state(), "tls-ready");
  EXPECT_EQ(f.b->on_tls_ready(), BackendEvent::Continue);
  EXPECT_EQ(f.out(), "");
  // The capabilities come again after TLS; the pre-TLS ones are forgotten.
  EXPECT_EQ(f.lines(greeting_without("STARTTLS")), BackendEvent::Continue);
  EXPECT_EQ(f.out(), kXclient);
  EXPECT_EQ(f.line(R"(OK "Updated")"), BackendEvent::Continue);
  EXPECT_EQ(f.out(), kAuthPlain);
  EXPECT_EQ(f.line(R"(OK "Logged in.")"), BackendEvent::Success);
}

TEST(ManagesieveBackend, StarttlsForgetsPreTlsCapabilities) {
  Fixture f;
  f.params.starttls = true;
  f.make();
  f.lines(kGreeting);
  f.out();
  f.line("OK");
  f.b->on_tls_ready();
  // After TLS the backend lists no SASL: authentication is disabled.
  EXPECT_EQ(f.lines({R"("IMPLEMENTATION" "x")", R"(OK "TLS negotiation successful.")"}),
            BackendEvent::Failure);
  EXPECT_EQ(f.b->failure().type, FailureType::RemoteConfig);
  EXPECT_EQ(f.b->failure().reason, "Server has disabled authentication (TLS required?)");
}

TEST(ManagesieveBackend, StarttlsNotAdvertised) {
  Fixture f;
  f.params.starttls = true;
  f.make();
  EXPECT_EQ(f.lines(greeting_without("STARTTLS")), BackendEvent::Failure);
  EXPECT_EQ(f.b->failure().type, FailureType::RemoteConfig);
  EXPECT_EQ(f.b->failure().reason, "Remote doesn't support STARTTLS");
  EXPECT_EQ(f.out(), "");
}

TEST(ManagesieveBackend, StarttlsRefused) {
  for (std::string reply : {R"(NO "no")", "OKAY", "BYE"}) {
    Fixture f;
    f.params.starttls = true;
    f.make();
    f.lines(kGreeting);
    EXPECT_EQ(f.line(reply), BackendEvent::Failure) << reply;
    EXPECT_EQ(f.b->failure().type, FailureType::Remote);
    EXPECT_EQ(f.b->failure().reason, "Remote refused STARTTLS command: " + reply);
  }
}

TEST(ManagesieveBackend, StarttlsCapabilitiesNoOrBye) {
  Fixture f;
  f.params.starttls = true;
  f.make();
  f.lines(kGreeting);
  f.line("OK");
  EXPECT_EQ(f.line(R"(BYE "TLS broke")"), BackendEvent::Failure);
  EXPECT_EQ(f.b->failure().type, FailureType::Remote);
  EXPECT_EQ(f.b->failure().reason, R"(Remote STARTTLS failed: BYE "TLS broke")");
  EXPECT_EQ(f.b->state(), "tls-ready");
}

TEST(ManagesieveBackend, GreetingErrors) {
  struct Case {
    std::vector<std::string> lines;
    std::string reason_prefix;
  };
  const std::vector<Case> cases = {
      {{R"(NO "go away")"}, "Remote sent unexpected NO/BYE instead of capability response"},
      {{R"("IMPLEMENTATION" "x")", R"(BYE "shutting down")"},
       "Remote sent unexpected NO/BYE instead of capability response"},
      {{"* OK IMAP server ready"}, "Remote returned with invalid capability/greeting line: "},
      {{"+OK POP3 ready"}, "Remote returned with invalid capability/greeting line: "},
      {{R"("SIEVE" "x)"}, "Remote returned with invalid capability/greeting line: "},
      {{R"("SASL")"}, "Server returned erroneous SASL capability"},
      {{"\x01\x02garbage"}, "Remote returned with invalid capability/greeting line: ??garbage"},
  };
  for (const auto& c : cases) {
    Fixture f;
    f.make();
    EXPECT_EQ(f.lines(c.lines), BackendEvent::Failure) << c.lines.back();
    EXPECT_EQ(f.b->failure().type, FailureType::Protocol) << c.lines.back();
    EXPECT_EQ(f.b->failure().reason.rfind(c.reason_prefix, 0), 0u) << f.b->failure().reason;
    EXPECT_EQ(f.b->state(), "none");
    EXPECT_EQ(f.out(), "");
  }
}

TEST(ManagesieveBackend, EmptySaslMeansAuthDisabled) {
  Fixture f;
  f.make();
  EXPECT_EQ(f.lines({R"("SASL" "")", "OK"}), BackendEvent::Failure);
  EXPECT_EQ(f.b->failure().type, FailureType::RemoteConfig);
  EXPECT_EQ(f.b->failure().reason, "Server has disabled authentication (TLS required?)");
}

TEST(ManagesieveBackend, CapabilityNamesCaseInsensitiveAndLiteralValues) {
  Fixture f;
  f.make();
  // A capability value sent as a literal spans lines.
  EXPECT_EQ(f.line(R"("sasl" {11})"), BackendEvent::Continue);
  EXPECT_EQ(f.line("PLAIN LOGIN"), BackendEvent::Continue);
  EXPECT_EQ(f.line("OK"), BackendEvent::Continue);
  EXPECT_EQ(f.out(), kAuthPlain);
}

TEST(ManagesieveBackend, MasterUserAndProxyMech) {
  Fixture f;
  f.params.master = "master";
  f.params.password = "mpw";
  f.make();
  f.lines(greeting_without("XCLIENT"));
  EXPECT_EQ(f.out(), "AUTHENTICATE \"PLAIN\" \"" + core::base64_encode("user3\0master\0mpw"s) +
                         "\"\r\n");
}

TEST(ManagesieveBackend, LoginMechChallengesAsQuotedStrings) {
  Fixture f;
  f.params.mech = "login";
  f.make();
  f.lines(greeting_without("XCLIENT"));
  // No initial response: it is left out entirely (§6.1 step 6).
  EXPECT_EQ(f.out(), "AUTHENTICATE \"LOGIN\"\r\n");
  EXPECT_EQ(f.line("\"" + core::base64_encode("Username:") + "\""), BackendEvent::Continue);
  EXPECT_EQ(f.out(), "\"" + core::base64_encode("user3") + "\"\r\n");
  // A challenge may also come as a literal.
  const std::string pw = core::base64_encode("Password:");
  EXPECT_EQ(f.line("{" + std::to_string(pw.size()) + "}"), BackendEvent::Continue);
  EXPECT_EQ(f.line(pw), BackendEvent::Continue);
  EXPECT_EQ(f.out(), "\"" + core::base64_encode("pass") + "\"\r\n");
  EXPECT_EQ(f.b->state(), "auth");
  EXPECT_EQ(f.line(R"(OK "Logged in.")"), BackendEvent::Success);
}

TEST(ManagesieveBackend, PlainEmptyChallengeIsAnsweredWithTheResponse) {
  // A server that ignores the initial response and sends an empty challenge
  // gets the PLAIN response as a quoted base64 string.
  Fixture f;
  f.make();
  f.lines(greeting_without("XCLIENT"));
  f.out();
  EXPECT_EQ(f.line(R"("")"), BackendEvent::Continue);
  EXPECT_EQ(f.out(), "\"AHVzZXIzAHBhc3M=\"\r\n");
  EXPECT_EQ(f.b->state(), "auth");
}

TEST(ManagesieveBackend, InvalidChallenges) {
  struct Case {
    std::string line;
    std::string reason;
  };
  const std::vector<Case> cases = {
      {R"("not base64!")", "Server sent invalid base64 data in AUTHENTICATE response"},
      {R"("a" "b")", R"(Server sent invalid SASL challenge line: "a" "b")"},
      {R"(BYE "bye")", R"(Remote sent invalid response: BYE "bye")"},
      {"garbage", "Remote sent invalid response: garbage"},
  };
  for (const auto& c : cases) {
    Fixture f;
    f.params.mech = "LOGIN";
    f.make();
    f.lines(greeting_without("XCLIENT"));
    EXPECT_EQ(f.line(c.line), BackendEvent::Failure) << c.line;
    EXPECT_EQ(f.b->failure().type, FailureType::Protocol);
    EXPECT_EQ(f.b->failure().reason, c.reason);
  }
}

TEST(ManagesieveBackend, AuthReplies) {
  struct Case {
    std::string line;
    FailureType type;
    std::string client_reply;
    bool retryable;
  };
  const std::vector<Case> cases = {
      {R"(NO "Authentication failed.")", FailureType::AuthReplied,
       "NO \"Authentication failed.\"\r\n", false},
      {R"(NO "user3 does not exist here")", FailureType::AuthReplied,
       "NO \"Authentication failed.\"\r\n", false},
      {R"(NO (AUTH-TOO-WEAK) "weak")", FailureType::AuthReplied,
       "NO \"Authentication failed.\"\r\n", false},
      {"NO", FailureType::AuthReplied, "NO \"Authentication failed.\"\r\n", false},
      {R"(NO (TRYLATER) "Maintenance, try later.")", FailureType::AuthTempfail,
       "NO (TRYLATER) \"Maintenance, try later.\"\r\n", true},
      {R"(no (trylater) "lower case")", FailureType::AuthTempfail,
       "no (trylater) \"lower case\"\r\n", true},
      {R"(NO (TRYLATER/NORETRY) "Broken.")", FailureType::RemoteConfig, "", false},
      {R"(NO (LIMIT/CONNECTIONS) "Too many connections.")", FailureType::LimitReached,
       "NO (LIMIT/CONNECTIONS) \"Too many connections.\"\r\n", false},
      {R"(NO (REFERRAL sieve://other.test) "Try there.")", FailureType::AuthRedirect, "", false},
  };
  for (const auto& c : cases) {
    Fixture f;
    f.make();
    f.lines(greeting_without("XCLIENT"));
    f.out();
    EXPECT_EQ(f.line(c.line), BackendEvent::Failure) << c.line;
    EXPECT_EQ(f.b->failure().type, c.type) << c.line;
    EXPECT_EQ(f.b->failure().client_reply, c.client_reply) << c.line;
    EXPECT_EQ(login::failure_retryable(c.type), c.retryable) << c.line;
    EXPECT_EQ(f.b->failure().reason.find("pass"), std::string::npos);
    // Finished: further lines change nothing.
    EXPECT_EQ(f.line("OK"), BackendEvent::Failure);
  }
}

TEST(ManagesieveBackend, SuccessLineIsForwardedVerbatim) {
  Fixture f;
  f.make();
  f.lines(greeting_without("XCLIENT"));
  EXPECT_EQ(f.line(R"(OK (SASL "cnNwYXV0aD0=") "Logged in.")"), BackendEvent::Success);
  EXPECT_EQ(f.b->client_reply(), "OK (SASL \"cnNwYXV0aD0=\") \"Logged in.\"\r\n");
}

TEST(ManagesieveBackend, NoReplyWithLiteralText) {
  Fixture f;
  f.make();
  f.lines(greeting_without("XCLIENT"));
  EXPECT_EQ(f.line("NO (TRYLATER) {9}"), BackendEvent::Continue);
  EXPECT_EQ(f.line("two"), BackendEvent::Continue);   // 5 bytes with CRLF
  EXPECT_EQ(f.line("line"), BackendEvent::Failure);  // 4 more: done
  EXPECT_EQ(f.b->failure().type, FailureType::AuthTempfail);
  EXPECT_EQ(f.b->failure().client_reply, "NO (TRYLATER) {9}\r\ntwo\r\nline\r\n");
}

TEST(ManagesieveBackend, HugeLiteralIsProtocolError) {
  Fixture f;
  f.make();
  EXPECT_EQ(f.line(R"("SIEVE" {99999999})"), BackendEvent::Failure);
  EXPECT_EQ(f.b->failure().type, FailureType::Protocol);
}

TEST(ManagesieveBackend, UnsupportedMechIsInternalConfig) {
  Fixture f;
  f.params.mech = "SCRAM-SHA-1";
  f.make();
  EXPECT_EQ(f.lines(greeting_without("XCLIENT")), BackendEvent::Failure);
  EXPECT_EQ(f.b->failure().type, FailureType::InternalConfig);
  EXPECT_EQ(f.b->failure().reason, "Unsupported SASL mechanism SCRAM-SHA-1");
}

TEST(ManagesieveBackend, DovecotCaptureByteForByte) {
  // dovecot-sieve.txt (2.3 sends the short XCLIENT; we send the 2.4 form).
  Fixture f;
  f.params.password = "pass";
  f.make();
  std::string sent;
  for (const auto& l : kGreeting) {
    f.line(l);
    sent += f.out();
  }
  f.line(R"(OK "Updated")");
  sent += f.out();
  EXPECT_EQ(sent, kXclient + kAuthPlain);
  EXPECT_EQ(f.line(R"(OK "Logged in.")"), BackendEvent::Success);
  EXPECT_EQ(f.b->client_reply(), "OK \"Logged in.\"\r\n");
}

// Issue 8 item 8: capabilities planted in the plaintext greeting (XCLIENT,
// SASL) are not used after STARTTLS, and nothing of the plaintext phase
// reaches the client: its reply is the backend's post-TLS AUTHENTICATE OK.
TEST(ManagesieveBackend, StarttlsForgetsPlaintextPhase) {
  Fixture f;
  f.params.starttls = true;
  f.params.tls = true;
  f.make();
  EXPECT_EQ(f.lines({R"("IMPLEMENTATION" "evil")", R"("SASL" "PLAIN")", R"("STARTTLS")",
                     R"("XCLIENT")", R"("NOTIFY" "mailto")", R"(OK "evil ready.")"}),
            BackendEvent::Continue);
  EXPECT_EQ(f.out(), "STARTTLS\r\n");
  EXPECT_EQ(f.line(R"(OK "Begin TLS negotiation now.")"), BackendEvent::StartTls);
  EXPECT_EQ(f.b->on_tls_ready(), BackendEvent::Continue);
  // Over TLS: no XCLIENT advertised, so none is sent.
  EXPECT_EQ(f.lines({R"("IMPLEMENTATION" "Dovecot (Debian) Pigeonhole")", R"("SASL" "PLAIN LOGIN")",
                     R"("VERSION" "1.0")", R"(OK "ready.")"}),
            BackendEvent::Continue);
  EXPECT_EQ(f.out(), kAuthPlain);
  EXPECT_EQ(f.line(R"(OK "Logged in.")"), BackendEvent::Success);
  EXPECT_EQ(f.b->client_reply(), "OK \"Logged in.\"\r\n");

  // SASL only in the plaintext greeting: no authentication over TLS.
  Fixture g;
  g.params.starttls = true;
  g.make();
  g.lines({R"("SASL" "PLAIN")", R"("STARTTLS")", R"(OK "x")"});
  g.line("OK");
  g.b->on_tls_ready();
  EXPECT_EQ(g.lines({R"("VERSION" "1.0")", "OK"}), BackendEvent::Failure);
  EXPECT_EQ(g.b->failure().type, FailureType::RemoteConfig);
}

// OAuth pass-through: quoted initial response, failure challenge as a string.
TEST(ManagesieveBackend, OauthbearerFailureChallengeKeptAndAcknowledged) {
  Fixture f;
  f.params.mech = "OAUTHBEARER";
  f.params.password = "tok";
  f.params.host = "sieve.lab";
  f.params.port = 4190;
  f.make();
  EXPECT_EQ(f.lines(greeting_without("XCLIENT")), BackendEvent::Continue);
  EXPECT_EQ(f.out(), "AUTHENTICATE \"OAUTHBEARER\" \"" +
                         core::base64_encode("n,a=user3,\x01" "auth=Bearer tok\x01\x01"s) + "\"\r\n");
  const std::string challenge = core::base64_encode(R"({"status":"invalid_token"})");
  EXPECT_EQ(f.line("\"" + challenge + "\""), BackendEvent::Continue);
  EXPECT_EQ(f.out(), "\"AQ==\"\r\n");
  EXPECT_EQ(f.line(R"(NO "Authentication failed.")"), BackendEvent::Failure);
  EXPECT_EQ(f.b->failure().type, FailureType::AuthReplied);
  EXPECT_EQ(f.b->failure().sasl_challenge, challenge);
  EXPECT_EQ(f.b->failure().client_reply, "NO \"Authentication failed.\"\r\n");
}

TEST(ManagesieveBackend, Xoauth2LongTokenAsLiteral) {
  Fixture f;
  f.params.mech = "XOAUTH2";
  const std::string token(10 * 1024, 'x');
  f.params.password = token;
  f.make();
  EXPECT_EQ(f.lines(greeting_without("XCLIENT")), BackendEvent::Continue);
  const std::string b64 = core::base64_encode("user=user3\x01" "auth=Bearer " + token + "\x01\x01");
  EXPECT_EQ(f.out(), "AUTHENTICATE \"XOAUTH2\" {" + std::to_string(b64.size()) + "+}\r\n" + b64 + "\r\n");
  // XOAUTH2's acknowledgement of a failure challenge is an empty string.
  EXPECT_EQ(f.line(R"("eyJzdGF0dXMiOiI0MDEifQ==")"), BackendEvent::Continue);
  EXPECT_EQ(f.out(), "\"\"\r\n");
  EXPECT_EQ(f.line(R"(OK "Logged in.")"), BackendEvent::Success);
}
