// IMAP BackendLogin: proxy → backend login, byte for byte against the spec
// (§3.1-§3.6, §14 I1-I19) and the Dovecot captures in
// ../shared/reference/transcripts/dovecot-imap.txt and dovecot-starttls-imap.txt.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/base64.hpp"
#include "protocols/imap/backend_login.hpp"

using namespace portier;
namespace imap = portier::protocols::imap;
using namespace std::string_literals;
using login::BackendEvent;
using login::FailureType;

namespace {

constexpr const char* kBanner =
    "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS "
    "AUTH=PLAIN AUTH=LOGIN] Dovecot (Debian) ready.";
constexpr const char* kBannerCaps =
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN AUTH=LOGIN";
constexpr const char* kPostLoginCaps =
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES "
    "THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN "
    "NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN "
    "CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE "
    "SAVEDATE LITERAL+ NOTIFY";
// The ID Dovecot 2.3 sent in dovecot-imap.txt, plus the 2.4 x-client-transport field.
constexpr const char* kId =
    "I ID (\"x-session-id\" \"y7/P7lthiNF/AAAB\" \"x-originating-ip\" \"127.0.0.1\" "
    "\"x-originating-port\" \"53640\" \"x-connected-ip\" \"127.0.0.1\" \"x-connected-port\" "
    "\"22143\" \"x-proxy-ttl\" \"4\" \"x-client-transport\" \"insecure\")\r\n";

struct Fixture {
  login::ClientInfo client;
  login::BackendLoginParams params;
  std::string tag = "IPFP2";
  bool client_sent_capability = false;
  std::unique_ptr<imap::BackendLogin> b;

  Fixture() {
    client.remote_ip = asio::ip::make_address("127.0.0.1");
    client.remote_port = 53640;
    client.local_ip = asio::ip::make_address("127.0.0.1");
    client.local_port = 22143;
    client.session_id = "y7/P7lthiNF/AAAB";
    client.proxy_ttl = 5;
    params.user = "user1";
    params.password = "pass";
    params.client = &client;
  }

  imap::BackendLogin& make() {
    b = std::make_unique<imap::BackendLogin>(params, tag, client_sent_capability);
    return *b;
  }

  BackendEvent line(std::string_view l) { return b->on_line(l); }

  std::string out() {
    std::string s = std::move(b->output());
    b->output().clear();
    return s;
  }
};

const char* name(BackendEvent e) {
  switch (e) {
    case BackendEvent::Continue:
      return "continue";
    case BackendEvent::StartTls:
      return "starttls";
    case BackendEvent::Success:
      return "success";
    case BackendEvent::Failure:
      return "failure";
  }
  return "?";
}

#define EXPECT_EVENT(expr, ev) EXPECT_STREQ(name(expr), name(BackendEvent::ev))

TEST(ImapBackend, InitialState) {
  Fixture f;
  EXPECT_EQ(f.make().state(), "/none");
}

// I1: banner with ID → ID + LOGIN in one write.
TEST(ImapBackend, PipelinedIdAndLogin) {
  Fixture f;
  f.make();
  EXPECT_EVENT(f.line(kBanner), Continue);
  EXPECT_EQ(f.out(), std::string(kId) + "L LOGIN \"user1\" \"pass\"\r\n");
  EXPECT_EQ(f.b->state(), "id+login/banner");
  EXPECT_EVENT(f.line("* ID (\"name\" \"Dovecot\")"), Continue);
  EXPECT_EQ(f.b->state(), "id+login/banner");
  EXPECT_EVENT(f.line("I OK ID completed."), Continue);
  EXPECT_EQ(f.b->state(), "login/id");
  EXPECT_EQ(f.out(), "");
  EXPECT_EVENT(f.line("L OK Logged in"), Success);
  EXPECT_EQ(f.b->state(), "/login");
  EXPECT_EQ(f.b->client_reply(), "IPFP2 OK [CAPABILITY "s + kBannerCaps + "] Logged in\r\n");
}

// The full backend leg of dovecot-imap.txt: the client had sent CAPABILITY.
TEST(ImapBackend, DovecotCaptureClientSentCapability) {
  Fixture f;
  f.client_sent_capability = true;
  f.make();
  EXPECT_EVENT(f.line(kBanner), Continue);
  EXPECT_EQ(f.out(), std::string(kId) + "C CAPABILITY\r\nL LOGIN \"user1\" \"pass\"\r\n");
  EXPECT_EQ(f.b->state(), "id+capability+login/banner");
  EXPECT_EVENT(f.line("* ID (\"name\" \"Dovecot\")"), Continue);
  EXPECT_EVENT(f.line("I OK ID completed."), Continue);
  EXPECT_EQ(f.b->state(), "capability+login/id");
  EXPECT_EVENT(f.line("* CAPABILITY "s + kBannerCaps), Continue);
  EXPECT_EVENT(f.line("C OK Pre-login capabilities listed, post-login capabilities have more."),
               Continue);
  EXPECT_EQ(f.b->state(), "login/capability");
  EXPECT_EVENT(f.line("* CAPABILITY "s + kPostLoginCaps), Continue);
  EXPECT_EQ(f.out(), "");
  EXPECT_EVENT(f.line("L OK Logged in"), Success);
  EXPECT_EQ(f.b->client_reply(), "* CAPABILITY "s + kPostLoginCaps + "\r\nIPFP2 OK Logged in\r\n");
}

// I2: banner without capabilities → CAPABILITY + LOGIN, no ID.
TEST(ImapBackend, BareBannerSendsCapabilityNoId) {
  Fixture f;
  f.make();
  EXPECT_EVENT(f.line("* OK Dovecot ready."), Continue);
  EXPECT_EQ(f.out(), "C CAPABILITY\r\nL LOGIN \"user1\" \"pass\"\r\n");
  EXPECT_EQ(f.b->state(), "capability+login/banner");
  EXPECT_EVENT(f.line("* CAPABILITY IMAP4rev1 IDLE ID"), Continue);
  EXPECT_EVENT(f.line("c ok done"), Continue);  // tags match case-insensitively
  EXPECT_EQ(f.b->state(), "login/capability");
  EXPECT_EQ(f.out(), "");  // a later ID capability never triggers an ID
  EXPECT_EVENT(f.line("L OK [READ-WRITE] Logged in"), Success);
  // Another resp-code is dropped in favour of CAPABILITY.
  EXPECT_EQ(f.b->client_reply(), "IPFP2 OK [CAPABILITY IMAP4rev1 IDLE ID] Logged in\r\n");
}

TEST(ImapBackend, NotTrustedSendsNoId) {
  Fixture f;
  f.params.not_trusted = true;
  f.make();
  EXPECT_EVENT(f.line(kBanner), Continue);
  EXPECT_EQ(f.out(), "L LOGIN \"user1\" \"pass\"\r\n");
  EXPECT_EQ(f.b->state(), "login/banner");
}

// I3: ID field order, TTL, transport, IPv6, forward fields.
TEST(ImapBackend, IdFields) {
  Fixture f;
  f.client.remote_ip = asio::ip::make_address("2001:db8::7");
  f.client.local_ip = asio::ip::make_address("::1");
  f.client.proxy_ttl = 7;
  f.client.end_client_tls = true;
  f.client.session_id = "a\"b";
  f.params.forward = {
      {"vip", "yes"},
      {"q", "say \"hi\" \\o/"},
      {"exactly20charsxxxxxx", "kept"},      // x-forward- + 20 = 30 bytes
      {"exactly21charsxxxxxxx", "dropped"},  // 31 bytes
      {"crlf", "a\r\nb"},
      {"ctl\x01", "x"},
      {"", "empty key"},
      {"utf8", "p\xc3\xa4"},
  };
  f.params.not_trusted = false;
  f.params.nopipelining = true;
  f.make();
  EXPECT_EVENT(f.line("* OK [CAPABILITY IMAP4rev1 ID] hi"), Continue);
  EXPECT_EQ(f.out(),
            "I ID (\"x-session-id\" \"a\\\"b\" \"x-originating-ip\" \"2001:db8::7\" "
            "\"x-originating-port\" \"53640\" \"x-connected-ip\" \"::1\" \"x-connected-port\" "
            "\"22143\" \"x-proxy-ttl\" \"6\" \"x-client-transport\" \"TLS\" "
            "\"x-forward-vip\" \"yes\" \"x-forward-q\" \"say \\\"hi\\\" \\\\o/\" "
            "\"x-forward-exactly20charsxxxxxx\" \"kept\" \"x-forward-utf8\" \"p\xc3\xa4\")\r\n");
}

// I5: nopipelining: ID → CAPABILITY → LOGIN, each after the previous reply.
TEST(ImapBackend, NoPipelining) {
  Fixture f;
  f.params.nopipelining = true;
  f.client_sent_capability = true;
  f.make();
  EXPECT_EVENT(f.line(kBanner), Continue);
  EXPECT_EQ(f.out(), kId);
  EXPECT_EQ(f.b->state(), "id/banner");
  EXPECT_EVENT(f.line("* ID NIL"), Continue);
  EXPECT_EQ(f.out(), "");
  EXPECT_EVENT(f.line("I OK ID completed."), Continue);
  EXPECT_EQ(f.out(), "C CAPABILITY\r\n");
  EXPECT_EQ(f.b->state(), "capability/id");
  EXPECT_EVENT(f.line("* CAPABILITY IMAP4rev1 X"), Continue);
  EXPECT_EVENT(f.line("C OK done"), Continue);
  EXPECT_EQ(f.out(), "L LOGIN \"user1\" \"pass\"\r\n");
  EXPECT_EQ(f.b->state(), "login/capability");
  EXPECT_EVENT(f.line("L OK Logged in"), Success);
  EXPECT_EQ(f.b->client_reply(), "* CAPABILITY IMAP4rev1 X\r\nIPFP2 OK Logged in\r\n");
}

TEST(ImapBackend, NoPipeliningWithoutId) {
  Fixture f;
  f.params.nopipelining = true;
  f.make();
  EXPECT_EVENT(f.line("* OK ready"), Continue);
  EXPECT_EQ(f.out(), "C CAPABILITY\r\n");
  EXPECT_EQ(f.b->state(), "capability/banner");
  EXPECT_EVENT(f.line("C NO whatever"), Continue);  // login follows any C reply
  EXPECT_EQ(f.out(), "L LOGIN \"user1\" \"pass\"\r\n");
}

TEST(ImapBackend, NoPipeliningStartTls) {
  Fixture f;
  f.params.nopipelining = true;
  f.params.starttls = true;
  f.params.tls = true;
  f.make();
  EXPECT_EVENT(f.line(kBanner), Continue);
  EXPECT_EQ(f.out(), kId);
  EXPECT_EVENT(f.line("I OK ID completed."), Continue);
  EXPECT_EQ(f.out(), "S STARTTLS\r\n");
  EXPECT_EQ(f.b->state(), "starttls/id");
  EXPECT_EVENT(f.line("S OK Begin TLS negotiation now."), StartTls);
  EXPECT_EQ(f.out(), "");
  EXPECT_EVENT(f.b->on_tls_ready(), Continue);
  // The banner's capabilities came over plaintext: asked again over TLS.
  EXPECT_EQ(f.out(), "C CAPABILITY\r\n");
  EXPECT_EQ(f.b->state(), "capability/starttls");
  EXPECT_EVENT(f.line("* CAPABILITY "s + kBannerCaps), Continue);
  EXPECT_EVENT(f.line("C OK Pre-login capabilities listed, post-login capabilities have more."),
               Continue);
  EXPECT_EQ(f.out(), "L LOGIN \"user1\" \"pass\"\r\n");
  EXPECT_EQ(f.b->state(), "login/capability");
}

// I6 and dovecot-starttls-imap.txt.
TEST(ImapBackend, StartTlsCapture) {
  Fixture f;
  f.params.starttls = true;
  f.params.tls = true;
  f.client_sent_capability = true;
  f.tag = "GNBI2";
  f.make();
  EXPECT_EVENT(f.line(kBanner), Continue);
  EXPECT_EQ(f.out(), std::string(kId) + "S STARTTLS\r\n");
  EXPECT_EQ(f.b->state(), "id+starttls/banner");
  EXPECT_EVENT(f.line("* ID (\"name\" \"Dovecot\")"), Continue);
  EXPECT_EVENT(f.line("I OK ID completed."), Continue);
  EXPECT_EQ(f.b->state(), "starttls/id");
  EXPECT_EVENT(f.line("S OK Begin TLS negotiation now."), StartTls);
  EXPECT_EQ(f.b->state(), "/starttls");
  EXPECT_EQ(f.out(), "");
  EXPECT_EVENT(f.b->on_tls_ready(), Continue);
  EXPECT_EQ(f.out(), "C CAPABILITY\r\nL LOGIN \"user1\" \"pass\"\r\n");
  EXPECT_EQ(f.b->state(), "capability+login/starttls");
  EXPECT_EVENT(f.line("* CAPABILITY "s + kBannerCaps), Continue);
  EXPECT_EVENT(f.line("C OK Pre-login capabilities listed, post-login capabilities have more."),
               Continue);
  EXPECT_EVENT(f.line("L OK [CAPABILITY "s + kPostLoginCaps + "] Logged in"), Success);
  EXPECT_EQ(f.b->client_reply(), "* CAPABILITY "s + kPostLoginCaps + "\r\nGNBI2 OK [CAPABILITY " +
                                     kPostLoginCaps + "] Logged in\r\n");
}

// Issue 8 item 8: what the backend sent before its STARTTLS OK travelled in
// plaintext; a man in the middle may have planted alerts or capabilities.
// None of it may reach the client; the capabilities come from the TLS leg.
TEST(ImapBackend, StartTlsForgetsPlaintextPhase) {
  for (bool client_cap : {false, true}) {
    SCOPED_TRACE(client_cap ? "client sent CAPABILITY" : "resp-code");
    Fixture f;
    f.params.starttls = true;
    f.params.tls = true;
    f.client_sent_capability = client_cap;
    f.make();
    EXPECT_EVENT(f.line("* OK [CAPABILITY IMAP4rev1 ID STARTTLS XFAKE-BANNER] evil ready."), Continue);
    EXPECT_EQ(f.out(), std::string(kId) + "S STARTTLS\r\n");
    EXPECT_EVENT(f.line("* OK [ALERT] evil: your password expired, mail it to x@example.org"), Continue);
    EXPECT_EVENT(f.line("* CAPABILITY IMAP4rev1 STARTTLS XFAKE-UNTAGGED"), Continue);
    EXPECT_EVENT(f.line("* BYE"), Continue);
    EXPECT_EVENT(f.line("I OK ID completed."), Continue);
    EXPECT_EVENT(f.line("S OK Begin TLS negotiation now."), StartTls);
    EXPECT_EVENT(f.b->on_tls_ready(), Continue);
    EXPECT_EQ(f.out(), "C CAPABILITY\r\nL LOGIN \"user1\" \"pass\"\r\n");
    // Over TLS: the real capabilities and a real alert.
    EXPECT_EVENT(f.line("* CAPABILITY "s + kBannerCaps), Continue);
    EXPECT_EVENT(f.line("* OK [ALERT] real alert"), Continue);
    EXPECT_EVENT(f.line("C OK done."), Continue);
    EXPECT_EVENT(f.line("L OK Logged in"), Success);
    const std::string& r = f.b->client_reply();
    EXPECT_EQ(r.find("evil"), std::string::npos) << r;
    EXPECT_EQ(r.find("XFAKE"), std::string::npos) << r;
    if (client_cap)
      EXPECT_EQ(r, "* OK [ALERT] real alert\r\n* CAPABILITY "s + kBannerCaps + "\r\nIPFP2 OK Logged in\r\n");
    else
      EXPECT_EQ(r, "* OK [ALERT] real alert\r\nIPFP2 OK [CAPABILITY "s + kBannerCaps + "] Logged in\r\n");
  }
}

// The same with proxy_nopipelining and a failed login: the planted alert must
// not travel with the failure reply either.
TEST(ImapBackend, StartTlsForgetsPlaintextPhaseNoPipelining) {
  Fixture f;
  f.params.starttls = true;
  f.params.tls = true;
  f.params.nopipelining = true;
  f.make();
  EXPECT_EVENT(f.line("* OK [CAPABILITY IMAP4rev1 STARTTLS XFAKE] ready."), Continue);
  EXPECT_EQ(f.out(), "S STARTTLS\r\n");
  EXPECT_EVENT(f.line("* OK [ALERT] evil"), Continue);
  EXPECT_EVENT(f.line("S OK go"), StartTls);
  EXPECT_EVENT(f.b->on_tls_ready(), Continue);
  EXPECT_EQ(f.out(), "C CAPABILITY\r\n");
  EXPECT_EVENT(f.line("* CAPABILITY IMAP4rev1 AUTH=PLAIN"), Continue);
  EXPECT_EVENT(f.line("C OK done."), Continue);
  EXPECT_EQ(f.out(), "L LOGIN \"user1\" \"pass\"\r\n");
  EXPECT_EVENT(f.line("L NO [UNAVAILABLE] try later"), Failure);
  EXPECT_EQ(f.b->failure().client_reply, "IPFP2 NO [UNAVAILABLE] try later\r\n");
}

TEST(ImapBackend, StartTlsNoCapsInBanner) {
  Fixture f;
  f.params.starttls = true;
  f.params.tls = true;
  f.make();
  EXPECT_EVENT(f.line("* OK ready"), Continue);
  EXPECT_EQ(f.out(), "S STARTTLS\r\n");
  EXPECT_EVENT(f.line("s ok"), StartTls);  // lower-case tag, OK at end of line
  EXPECT_EVENT(f.b->on_tls_ready(), Continue);
  EXPECT_EQ(f.out(), "C CAPABILITY\r\nL LOGIN \"user1\" \"pass\"\r\n");
}

TEST(ImapBackend, StartTlsFailures) {
  {
    Fixture f;
    f.params.starttls = true;
    f.make();
    EXPECT_EVENT(f.line("* OK [CAPABILITY IMAP4rev1 ID] x"), Failure);
    EXPECT_EQ(f.b->failure().type, FailureType::RemoteConfig);
    EXPECT_EQ(f.b->failure().reason, "STARTTLS not supported");
  }
  {
    Fixture f;
    f.params.starttls = true;
    f.make();
    f.line("* OK [CAPABILITY IMAP4rev1 STARTTLS] x");
    EXPECT_EQ(f.out(), "S STARTTLS\r\n");
    EXPECT_EVENT(f.line("S NO [UNAVAILABLE] not today"), Failure);
    EXPECT_EQ(f.b->failure().type, FailureType::Remote);
    EXPECT_EQ(f.b->failure().reason, "STARTTLS failed: NO [UNAVAILABLE] not today");
    EXPECT_EQ(f.b->state(), "/starttls");
  }
  {
    Fixture f;
    f.params.starttls = true;
    f.make();
    f.line("* OK x");
    EXPECT_EVENT(f.line("S OKAY"), Failure);  // OK must be followed by SP or EOL
  }
}

// I7: LOGINDISABLED with no TLS at all.
TEST(ImapBackend, LoginDisabled) {
  {
    Fixture f;
    f.make();
    EXPECT_EVENT(f.line("* OK [CAPABILITY IMAP4rev1 LOGINDISABLED] x"), Failure);
    EXPECT_EQ(f.b->failure().type, FailureType::RemoteConfig);
    EXPECT_EQ(f.b->failure().reason, "LOGINDISABLED advertised, but SSL/TLS not enabled");
  }
  {
    Fixture f;
    f.params.tls = true;  // implicit TLS: LOGIN is fine
    f.make();
    EXPECT_EVENT(f.line("* OK [CAPABILITY IMAP4rev1 LOGINDISABLED] x"), Continue);
    EXPECT_EQ(f.out(), "L LOGIN \"user1\" \"pass\"\r\n");
  }
  {
    Fixture f;
    f.params.mech = "PLAIN";  // AUTHENTICATE is not affected
    f.make();
    EXPECT_EVENT(f.line("* OK [CAPABILITY IMAP4rev1 LOGINDISABLED] x"), Continue);
    EXPECT_EQ(f.out(), "L AUTHENTICATE PLAIN\r\n");
  }
}

// I8: AUTHENTICATE PLAIN with SASL-IR.
TEST(ImapBackend, AuthenticatePlainSaslIr) {
  Fixture f;
  f.params.mech = "plain";
  f.params.not_trusted = true;
  f.make();
  EXPECT_EVENT(f.line(kBanner), Continue);
  EXPECT_EQ(f.out(), "L AUTHENTICATE PLAIN " + core::base64_encode("\0user1\0pass"s) + "\r\n");
  EXPECT_EQ(f.b->state(), "authenticate/banner");
  EXPECT_EVENT(f.line("L OK Logged in"), Success);
  EXPECT_EQ(f.b->state(), "authenticate/login");  // Dovecot clears only `login` on `L`
}

// I8 without SASL-IR: continuation "+ " then the response line.
TEST(ImapBackend, AuthenticatePlainNoSaslIr) {
  Fixture f;
  f.params.mech = "PLAIN";
  f.make();
  EXPECT_EVENT(f.line("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] x"), Continue);
  EXPECT_EQ(f.out(), "L AUTHENTICATE PLAIN\r\n");
  EXPECT_EQ(f.b->state(), "authenticate/banner");
  EXPECT_EVENT(f.line("+ "), Continue);
  EXPECT_EQ(f.out(), core::base64_encode("\0user1\0pass"s) + "\r\n");
  EXPECT_EQ(f.b->state(), "auth-continue/auth-continue");
  EXPECT_EVENT(f.line("L OK Logged in"), Success);
  EXPECT_EQ(f.b->state(), "auth-continue/login");
}

// I19: "+" without a space, and the LOGIN mechanism.
TEST(ImapBackend, AuthenticateLoginMechContinuations) {
  Fixture f;
  f.params.mech = "LOGIN";
  f.make();
  EXPECT_EVENT(f.line(kBanner), Continue);
  // SASL-IR is listed, but LOGIN has no initial response: none is sent.
  EXPECT_EQ(f.out(), std::string(kId) + "L AUTHENTICATE LOGIN\r\n");
  EXPECT_EVENT(f.line("+VXNlcm5hbWU6"), Continue);
  EXPECT_EQ(f.out(), "dXNlcjE=\r\n");
  EXPECT_EVENT(f.line("+ UGFzc3dvcmQ6"), Continue);
  EXPECT_EQ(f.out(), "cGFzcw==\r\n");
  EXPECT_EQ(f.b->state(), "id+auth-continue/auth-continue");
  EXPECT_EVENT(f.line("L OK Logged in"), Success);
}

TEST(ImapBackend, BareContinuation) {
  Fixture f;
  f.params.mech = "PLAIN";
  f.make();
  f.line("* OK x");
  EXPECT_EQ(f.out(), "C CAPABILITY\r\nL AUTHENTICATE PLAIN\r\n");
  EXPECT_EVENT(f.line("+"), Continue);
  EXPECT_EQ(f.out(), core::base64_encode("\0user1\0pass"s) + "\r\n");
}

TEST(ImapBackend, AuthenticateErrors) {
  {
    Fixture f;
    f.params.mech = "PLAIN";
    f.make();
    f.line("* OK x");
    EXPECT_EVENT(f.line("+ !!!"), Failure);
    EXPECT_EQ(f.b->failure().type, FailureType::Protocol);
    EXPECT_EQ(f.b->failure().reason, "Invalid base64 data in AUTHENTICATE response");
  }
  {
    Fixture f;
    f.params.mech = "PLAIN";
    f.make();
    f.line("* OK x");
    EXPECT_EVENT(f.line("+ "), Continue);
    EXPECT_EVENT(f.line("+ "), Failure);  // PLAIN has only one answer
    EXPECT_EQ(f.b->failure().type, FailureType::Protocol);
    EXPECT_TRUE(f.b->failure().reason.starts_with("Invalid authentication data"))
        << f.b->failure().reason;
  }
  {
    Fixture f;
    f.params.mech = "GSSAPI";
    f.make();
    EXPECT_EVENT(f.line("* OK x"), Failure);
    EXPECT_EQ(f.b->failure().type, FailureType::InternalConfig);
    EXPECT_EQ(f.b->failure().reason, "Unsupported SASL mechanism GSSAPI");
  }
}

// C30 / §11.8: master user → AUTHENTICATE PLAIN destuser\0master\0pass.
TEST(ImapBackend, MasterUser) {
  for (bool sasl_ir : {true, false}) {
    Fixture f;
    f.params.user = "destuser";
    f.params.master = "master";
    f.params.password = "masterpass";
    f.params.not_trusted = true;
    f.make();
    const std::string plain = core::base64_encode("destuser\0master\0masterpass"s);
    if (sasl_ir) {
      f.line("* OK [CAPABILITY IMAP4rev1 SASL-IR] x");
      EXPECT_EQ(f.out(), "L AUTHENTICATE PLAIN " + plain + "\r\n");
    } else {
      f.line("* OK [CAPABILITY IMAP4rev1] x");
      EXPECT_EQ(f.out(), "L AUTHENTICATE PLAIN\r\n");
      f.line("+ ");
      EXPECT_EQ(f.out(), plain + "\r\n");
    }
  }
}

// I9: quoting of user and password; the literal's "+" is ignored.
TEST(ImapBackend, LoginQuoting) {
  Fixture f;
  f.params.user = "a\"b\\c";
  f.params.password = "p\xc3\xa4ss";
  f.params.not_trusted = true;
  f.make();
  f.line("* OK [CAPABILITY IMAP4rev1] x");
  EXPECT_EQ(f.out(), "L LOGIN \"a\\\"b\\\\c\" {5}\r\np\xc3\xa4ss\r\n");
  EXPECT_EVENT(f.line("+ OK"), Continue);
  EXPECT_EQ(f.out(), "");
  EXPECT_EQ(f.b->state(), "login/banner");
  EXPECT_EVENT(f.line("L OK hi"), Success);
}

struct FailureCase {
  std::string line;
  FailureType type;
  std::string reason;
  std::string client_reply;
};

// I10-I14: the L reply table (§3.3).
TEST(ImapBackend, LoginFailureReplies) {
  const std::string generic = "IPFP2 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n";
  const std::vector<FailureCase> cases = {
      {"L NO [AUTHENTICATIONFAILED] No such user alice", FailureType::AuthReplied,
       "[AUTHENTICATIONFAILED] No such user alice", generic},
      {"L NO Password wrong for alice", FailureType::AuthReplied, "Password wrong for alice",
       generic},
      {"L BAD [AUTHENTICATIONFAILED] x", FailureType::AuthReplied, "BAD [AUTHENTICATIONFAILED] x",
       generic},
      {"L whatever", FailureType::AuthReplied, "whatever", generic},
      {"l no [unavailable] Backend busy", FailureType::AuthTempfail, "[unavailable] Backend busy",
       "IPFP2 no [unavailable] Backend busy\r\n"},
      {"L NO [UNAVAILABLE] Maintenance", FailureType::AuthTempfail, "[UNAVAILABLE] Maintenance",
       "IPFP2 NO [UNAVAILABLE] Maintenance\r\n"},
      {"L NO [SERVERBUG] Internal error", FailureType::RemoteConfig, "[SERVERBUG] Internal error",
       ""},
      {"L NO [LIMIT] Too many connections", FailureType::LimitReached,
       "[LIMIT] Too many connections", "IPFP2 NO [LIMIT] Too many connections\r\n"},
      {"L NO [REFERRAL imap://u@10.0.0.9/] Try there", FailureType::AuthRedirect,
       "[REFERRAL imap://u@10.0.0.9/] Try there", ""},
      {"L NO [EXPIRED] Password expired", FailureType::AuthReplied, "[EXPIRED] Password expired",
       "IPFP2 NO [EXPIRED] Password expired\r\n"},
      {"L NO [CONTACTADMIN]", FailureType::AuthReplied, "[CONTACTADMIN]",
       "IPFP2 NO [CONTACTADMIN]\r\n"},
      // Issue 8 item 10: a code that is not on the known list hides the
      // backend's text like a NO without a code (user enumeration).
      {"L NO [NONEXISTENT] No such user alice", FailureType::AuthReplied,
       "[NONEXISTENT] No such user alice", generic},
      {"L NO [X-UNKNOWN-USER alice] alice does not exist", FailureType::AuthReplied,
       "[X-UNKNOWN-USER alice] alice does not exist", generic},
      {"L NO [AUTHORIZATIONFAILED] Not allowed", FailureType::AuthReplied,
       "[AUTHORIZATIONFAILED] Not allowed", "IPFP2 NO [AUTHORIZATIONFAILED] Not allowed\r\n"},
      {"L NO [PRIVACYREQUIRED] Use TLS", FailureType::AuthReplied, "[PRIVACYREQUIRED] Use TLS",
       "IPFP2 NO [PRIVACYREQUIRED] Use TLS\r\n"},
      // Found by fuzz/imap_backend: control bytes never reach the log reason.
      {"L NO [UNAVAILABLE] a\rb\x1b[2Jc", FailureType::AuthTempfail, "[UNAVAILABLE] a?b?[2Jc",
       "IPFP2 NO [UNAVAILABLE] a\rb\x1b[2Jc\r\n"},
      {"L BAD [SERVEUG\rBxR] ", FailureType::AuthReplied, "BAD [SERVEUG?BxR] ", generic},
  };
  for (const auto& c : cases) {
    Fixture f;
    f.make();
    f.line(kBanner);
    f.line("I OK");
    EXPECT_EVENT(f.line(c.line), Failure) << c.line;
    EXPECT_EQ(f.b->failure().type, c.type) << c.line;
    EXPECT_EQ(f.b->failure().reason, c.reason) << c.line;
    EXPECT_EQ(f.b->failure().client_reply, c.client_reply) << c.line;
    EXPECT_EQ(f.b->state(), "/login");
    // A finished machine stays finished.
    EXPECT_EVENT(f.line("L OK late"), Failure);
  }
}

// I17: untagged lines during login.
TEST(ImapBackend, UntaggedLinesForwardedOrSwallowed) {
  {
    Fixture f;
    f.make();
    f.line(kBanner);
    EXPECT_EVENT(f.line("* OK [ALERT] Your password expires soon"), Continue);
    EXPECT_EVENT(f.line("* ID (\"name\" \"Dovecot\")"), Continue);
    EXPECT_EVENT(f.line("* BYE going"), Continue);
    EXPECT_EVENT(f.line("* BYE"), Continue);
    EXPECT_EVENT(f.line("X OK not ours"), Continue);
    EXPECT_EVENT(f.line("* 3 EXISTS"), Continue);
    EXPECT_EVENT(f.line("L OK [CAPABILITY IMAP4rev1 X] Logged in"), Success);
    EXPECT_EQ(f.b->client_reply(),
              "* OK [ALERT] Your password expires soon\r\n* 3 EXISTS\r\n"
              "IPFP2 OK [CAPABILITY IMAP4rev1 X] Logged in\r\n");
  }
  {
    Fixture f;
    f.make();
    f.line(kBanner);
    f.line("* OK [ALERT] Account locked");
    EXPECT_EVENT(f.line("L NO [AUTHENTICATIONFAILED] x"), Failure);
    EXPECT_EQ(f.b->failure().client_reply,
              "* OK [ALERT] Account locked\r\nIPFP2 NO [AUTHENTICATIONFAILED] Authentication "
              "failed.\r\n");
  }
}

// I18 and the IMAP4rev1 checks.
TEST(ImapBackend, BannerAndCapabilityErrors) {
  struct Case {
    std::vector<std::string> lines;
    FailureType type;
    std::string reason;
  };
  const std::vector<Case> cases = {
      {{"* BYE Too many connections"},
       FailureType::Protocol,
       "Invalid banner: * BYE Too many connections"},
      {{"* OK"}, FailureType::Protocol, "Invalid banner: * OK"},
      {{"+OK POP3 ready"}, FailureType::Protocol, "Invalid banner: +OK POP3 ready"},
      {{"\x01\x02garbage\x7f"}, FailureType::Protocol, "Invalid banner: ??garbage?"},
      {{std::string(150, 'x')},
       FailureType::Protocol,
       "Invalid banner: " + std::string(100, 'x') + "..."},
      {{"* OK [CAPABILITY IMAP4 ID] old"},
       FailureType::Protocol,
       "Remote server doesn't support IMAP4rev1"},
      {{"* OK x", "* CAPABILITY IMAP4rev2 IDLE"},
       FailureType::Protocol,
       "Remote server doesn't support IMAP4rev1"},
      {{kBanner, "I NO [SERVERBUG] Internal error"},
       FailureType::RemoteConfig,
       "ID command failed: [SERVERBUG] Internal error"},
  };
  for (const auto& c : cases) {
    Fixture f;
    f.make();
    BackendEvent ev = BackendEvent::Continue;
    for (const auto& l : c.lines) ev = f.line(l);
    EXPECT_EVENT(ev, Failure) << c.lines.back();
    EXPECT_EQ(f.b->failure().type, c.type) << c.lines.back();
    EXPECT_EQ(f.b->failure().reason, c.reason);
    EXPECT_EQ(f.b->failure().client_reply, "");
  }
}

TEST(ImapBackend, BannerCaseInsensitive) {
  Fixture f;
  f.params.not_trusted = true;
  f.make();
  EXPECT_EVENT(f.line("* ok [capability imap4rev1 sasl-ir] hello"), Continue);
  EXPECT_EQ(f.out(), "L LOGIN \"user1\" \"pass\"\r\n");
}

TEST(ImapBackend, IdNonOkIgnored) {
  Fixture f;
  f.make();
  f.line(kBanner);
  EXPECT_EVENT(f.line("I BAD Invalid ID parameters"), Continue);
  EXPECT_EQ(f.b->state(), "login/id");
}

// §3.5 success rendering variants.
TEST(ImapBackend, SuccessRendering) {
  struct Case {
    bool client_cap;
    std::string ok_line;
    std::string want;
  };
  const std::string caps =
      "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN AUTH=LOGIN";
  const std::vector<Case> cases = {
      {false, "L OK Logged in", "T OK [CAPABILITY " + caps + "] Logged in\r\n"},
      {false, "L OK", "T OK [CAPABILITY " + caps + "]\r\n"},
      {false, "L OK [READ-WRITE] done", "T OK [CAPABILITY " + caps + "] done\r\n"},
      {false, "L OK [CAPABILITY IMAP4rev1 Y] x", "T OK [CAPABILITY IMAP4rev1 Y] x\r\n"},
      {false, "l ok lower", "T OK [CAPABILITY " + caps + "] lower\r\n"},
      {true, "L OK Logged in", "* CAPABILITY " + caps + "\r\nT OK Logged in\r\n"},
      {true, "L OK [CAPABILITY IMAP4rev1 Y] x",
       "* CAPABILITY IMAP4rev1 Y\r\nT OK [CAPABILITY IMAP4rev1 Y] x\r\n"},
  };
  for (const auto& c : cases) {
    Fixture f;
    f.tag = "T";
    f.client_sent_capability = c.client_cap;
    f.params.not_trusted = true;
    f.make();
    f.line(kBanner);
    if (c.client_cap) f.line("C OK");
    EXPECT_EVENT(f.line(c.ok_line), Success) << c.ok_line;
    EXPECT_EQ(f.b->client_reply(), c.want) << c.ok_line;
  }
}

// OAuth pass-through (proxy_mech=%{mechanism}): the token in the mechanism's
// message, OAUTHBEARER with the backend's host and port.
const std::string kJson = R"({"status":"invalid_token","scope":"mail"})";

TEST(ImapBackend, OauthbearerSaslIrSuccess) {
  Fixture f;
  f.params.mech = "OAUTHBEARER";
  f.params.password = "tok";
  f.params.host = "imap.lab";
  f.params.port = 143;
  f.params.not_trusted = true;
  f.make();
  EXPECT_EVENT(f.line(kBanner), Continue);
  EXPECT_EQ(f.out(), "L AUTHENTICATE OAUTHBEARER " +
                         core::base64_encode("n,a=user1,\x01host=imap.lab\x01port=143\x01"
                                             "auth=Bearer tok\x01\x01"s) +
                         "\r\n");
  EXPECT_EVENT(f.line("L OK Logged in"), Success);
  EXPECT_TRUE(f.b->failure().sasl_challenge.empty());
}

TEST(ImapBackend, OauthFailureChallengeKeptAndAcknowledged) {
  for (std::string mech : {"OAUTHBEARER", "XOAUTH2"}) {
    Fixture f;
    f.params.mech = mech;
    f.params.password = "bad";
    f.params.not_trusted = true;
    f.make();
    EXPECT_EVENT(f.line(kBanner), Continue);
    (void)f.out();
    const std::string challenge = core::base64_encode(kJson);
    EXPECT_EVENT(f.line("+ " + challenge), Continue);
    EXPECT_EQ(f.out(), mech == "XOAUTH2" ? "\r\n" : "AQ==\r\n") << mech;
    EXPECT_EQ(f.b->state(), "auth-continue/auth-continue");
    EXPECT_EVENT(f.line("L NO [AUTHENTICATIONFAILED] Authentication failed."), Failure);
    EXPECT_EQ(f.b->failure().type, FailureType::AuthReplied);
    EXPECT_EQ(f.b->failure().sasl_challenge, challenge);
    EXPECT_EQ(f.b->failure().client_reply, "IPFP2 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
  }
}

TEST(ImapBackend, OauthLongTokenAnswersEmptyContinuation) {
  Fixture f;
  f.params.mech = "XOAUTH2";
  const std::string token(10 * 1024, 'x');
  f.params.password = token;
  f.params.not_trusted = true;
  f.make();
  EXPECT_EVENT(f.line(kBanner), Continue);
  EXPECT_EQ(f.out(), "L AUTHENTICATE XOAUTH2\r\n");  // SASL-IR, but too long for the line
  EXPECT_EVENT(f.line("+ "), Continue);
  EXPECT_EQ(f.out(), core::base64_encode("user=user1\x01" "auth=Bearer " + token + "\x01\x01") + "\r\n");
  EXPECT_EVENT(f.line("L OK Logged in"), Success);
}

}  // namespace
