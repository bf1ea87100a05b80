// POP3 BackendLogin (spec §4.1, §4.2, §7.3, §14 P1-P9): every state and its
// name, the pipelined batches byte for byte, STLS, XCLIENT contents, SASL
// with and without challenges, and every backend failure reply.

#include <gtest/gtest.h>

#include <string>

#include "core/base64.hpp"
#include "protocols/pop3/backend_login.hpp"
#include "protocols/pop3/frontend.hpp"

using namespace portier;
namespace pop3 = portier::protocols::pop3;
using namespace std::string_literals;
using login::BackendEvent;
using login::FailureType;

namespace {

struct Fixture {
  login::ClientInfo client;
  login::BackendLoginParams params;
  std::unique_ptr<pop3::BackendLogin> bl;

  Fixture() {
    client.remote_ip = asio::ip::make_address("127.0.0.2");
    client.remote_port = 48878;
    client.local_ip = asio::ip::make_address("127.0.0.1");
    client.local_port = 110;
    client.session_id = "AUDo7lth7r5/AAAB";
    client.proxy_ttl = 5;
    params.user = "user1";
    params.password = "pass";
    params.client = &client;
  }

  pop3::BackendLogin& make() {
    bl = std::make_unique<pop3::BackendLogin>(params);
    return *bl;
  }

  BackendEvent line(std::string_view l) { return bl->on_line(l); }

  std::string take() {
    std::string o = bl->output();
    bl->output().clear();
    return o;
  }
};

const std::string kXclient =
    "XCLIENT ADDR=127.0.0.2 PORT=48878 DESTADDR=127.0.0.1 DESTPORT=110 "
    "SESSION=AUDo7lth7r5/AAAB TTL=4 CLIENT-TRANSPORT=insecure\r\n";

TEST(Pop3Backend, StateNames) {
  Fixture f;
  f.make();
  EXPECT_EQ(f.bl->state(), "banner");
  using T = pop3::ProxyStateTraits;
  EXPECT_EQ(T::kNames[static_cast<size_t>(pop3::State::Starttls)], "starttls");
  EXPECT_EQ(T::kNames[static_cast<size_t>(pop3::State::Xclient)], "xclient");
  EXPECT_EQ(T::kNames[static_cast<size_t>(pop3::State::Login1)], "login1");
  EXPECT_EQ(T::kNames[static_cast<size_t>(pop3::State::Login2)], "login2");
}

// P1: XCLIENT and USER in one write, PASS only after USER's +OK.
TEST(Pop3Backend, XclientPipelinedWithUserThenPass) {
  Fixture f;
  f.make();
  EXPECT_EQ(f.line("+OK [XCLIENT] Dovecot (Debian) ready."), BackendEvent::Continue);
  EXPECT_EQ(f.take(), kXclient + "USER user1\r\n");
  EXPECT_EQ(f.bl->state(), "xclient");
  EXPECT_EQ(f.line("+OK Updated"), BackendEvent::Continue);
  EXPECT_EQ(f.take(), "");
  EXPECT_EQ(f.bl->state(), "login1");
  EXPECT_EQ(f.line("+OK"), BackendEvent::Continue);
  EXPECT_EQ(f.take(), "PASS pass\r\n");
  EXPECT_EQ(f.bl->state(), "login2");
  EXPECT_EQ(f.line("+OK Logged in."), BackendEvent::Success);
  EXPECT_EQ(f.bl->client_reply(), "+OK Logged in.\r\n");
}

// P2: no marker, or a marker not right after +OK: no XCLIENT.
TEST(Pop3Backend, NoXclientWithoutMarker) {
  for (const char* banner : {"+OK Dovecot ready.", "+OK", "+OK  [XCLIENT] x", "+OK hi [XCLIENT]"}) {
    Fixture f;
    f.make();
    EXPECT_EQ(f.line(banner), BackendEvent::Continue) << banner;
    EXPECT_EQ(f.take(), "USER user1\r\n") << banner;
    EXPECT_EQ(f.bl->state(), "login1");
    EXPECT_EQ(f.line("+OK"), BackendEvent::Continue);
    EXPECT_EQ(f.take(), "PASS pass\r\n");
    EXPECT_EQ(f.line("+OK Logged in."), BackendEvent::Success);
  }
}

TEST(Pop3Backend, NotTrustedSuppressesXclient) {
  Fixture f;
  f.params.not_trusted = true;
  f.make();
  f.line("+OK [XCLIENT] ready.");
  EXPECT_EQ(f.take(), "USER user1\r\n");
  EXPECT_EQ(f.bl->state(), "login1");
}

TEST(Pop3Backend, XclientContents) {
  Fixture f;
  f.client.tls = true;
  f.client.proxy_ttl = 7;
  f.client.remote_ip = asio::ip::make_address("2001:db8::7");
  f.client.local_ip = asio::ip::make_address("::ffff:192.0.2.1");
  f.params.forward = {{"a", "b c"}, {"x\ty", "1"}};
  f.make();
  const std::string fwd = core::base64_encode("a=b c\tx\001ty=1");
  EXPECT_EQ(f.bl->build_xclient(),
            "XCLIENT ADDR=2001:db8::7 PORT=48878 DESTADDR=192.0.2.1 DESTPORT=110 "
            "SESSION=AUDo7lth7r5/AAAB TTL=6 CLIENT-TRANSPORT=TLS FORWARD=" + fwd + "\r\n");
}

TEST(Pop3Backend, XclientDropsValuesThatWouldBreakTheLine) {
  for (const char* sid : {"a b", "a\r\nRSET", "", "x\001"}) {
    Fixture f;
    f.client.session_id = sid;
    f.make();
    EXPECT_EQ(f.bl->build_xclient(),
              "XCLIENT ADDR=127.0.0.2 PORT=48878 DESTADDR=127.0.0.1 DESTPORT=110 TTL=4 "
              "CLIENT-TRANSPORT=insecure\r\n");
  }
}

TEST(Pop3Backend, XclientEndClientTlsFromTrustedHop) {
  Fixture f;
  f.client.end_client_tls = true;
  f.make();
  EXPECT_NE(f.bl->build_xclient().find("CLIENT-TRANSPORT=TLS"), std::string::npos);
}

// P3: XCLIENT -ERR is a configuration failure (not retried).
TEST(Pop3Backend, XclientRefused) {
  Fixture f;
  f.make();
  f.line("+OK [XCLIENT] ready.");
  f.take();
  EXPECT_EQ(f.line("-ERR Not allowed"), BackendEvent::Failure);
  EXPECT_EQ(f.bl->failure().type, FailureType::RemoteConfig);
  EXPECT_EQ(f.bl->failure().reason, "XCLIENT failed: -ERR Not allowed");
  EXPECT_FALSE(login::failure_retryable(f.bl->failure().type));
}

// P4: STLS, +OK, TLS, then the login batch at once (no new banner).
TEST(Pop3Backend, StarttlsThenLogin) {
  Fixture f;
  f.params.starttls = true;
  f.params.tls = true;
  f.make();
  EXPECT_EQ(f.line("+OK [XCLIENT] Dovecot (Debian) ready."), BackendEvent::Continue);
  EXPECT_EQ(f.take(), "STLS\r\n");
  EXPECT_EQ(f.bl->state(), "starttls");
  EXPECT_EQ(f.line("+OK Begin TLS negotiation now."), BackendEvent::StartTls);
  EXPECT_EQ(f.take(), "");
  EXPECT_EQ(f.bl->on_tls_ready(), BackendEvent::Continue);
  EXPECT_EQ(f.take(), kXclient + "USER user1\r\n");
  EXPECT_EQ(f.bl->state(), "xclient");
  f.line("+OK Updated");
  f.line("+OK");
  EXPECT_EQ(f.take(), "PASS pass\r\n");
  EXPECT_EQ(f.line("+OK Logged in."), BackendEvent::Success);
}

TEST(Pop3Backend, StarttlsRefused) {
  Fixture f;
  f.params.starttls = true;
  f.make();
  f.line("+OK ready.");
  EXPECT_EQ(f.line("-ERR Unknown command."), BackendEvent::Failure);
  EXPECT_EQ(f.bl->failure().type, FailureType::Remote);
  EXPECT_EQ(f.bl->failure().reason, "STLS failed: -ERR Unknown command.");
}

TEST(Pop3Backend, InvalidBanner) {
  for (const char* b : {"-ERR go away", "", "* OK IMAP", "+Ok"}) {
    Fixture f;
    f.make();
    EXPECT_EQ(f.line(b), BackendEvent::Failure);
    EXPECT_EQ(f.bl->failure().type, FailureType::Protocol);
    EXPECT_EQ(f.bl->failure().reason, "Invalid banner: "s + b);
    EXPECT_EQ(f.take(), "");
  }
}

// P5: master login: AUTH PLAIN with authzid=destuser, authcid=master.
TEST(Pop3Backend, MasterUsesAuthPlainWithInitialResponse) {
  Fixture f;
  f.params.master = "m";
  f.params.password = "mp";
  f.make();
  f.line("+OK [XCLIENT] ready.");
  const std::string ir = core::base64_encode("user1\0m\0mp"s);
  EXPECT_EQ(f.take(), kXclient + "AUTH PLAIN " + ir + "\r\n");
  EXPECT_EQ(f.bl->state(), "xclient");
  f.line("+OK Updated");
  EXPECT_EQ(f.bl->state(), "login2");
  EXPECT_EQ(f.line("+OK Logged in."), BackendEvent::Success);
}

TEST(Pop3Backend, ProxyMechWithoutXclientGoesStraightToLogin2) {
  Fixture f;
  f.params.mech = "plain";
  f.make();
  f.line("+OK ready.");
  EXPECT_EQ(f.take(), "AUTH PLAIN " + core::base64_encode("\0user1\0pass"s) + "\r\n");
  EXPECT_EQ(f.bl->state(), "login2");
}

// LOGIN has an empty initial response: `=`, then `+ <b64>` challenges.
TEST(Pop3Backend, SaslContinuations) {
  Fixture f;
  f.params.mech = "LOGIN";
  f.make();
  f.line("+OK ready.");
  EXPECT_EQ(f.take(), "AUTH LOGIN =\r\n");
  EXPECT_EQ(f.line("+ " + core::base64_encode("Username:")), BackendEvent::Continue);
  EXPECT_EQ(f.take(), core::base64_encode("user1") + "\r\n");
  // Tolerated: no space after `+`.
  EXPECT_EQ(f.line("+" + core::base64_encode("Password:")), BackendEvent::Continue);
  EXPECT_EQ(f.take(), core::base64_encode("pass") + "\r\n");
  EXPECT_EQ(f.bl->state(), "login2");
  EXPECT_EQ(f.line("+OK Logged in."), BackendEvent::Success);
}

TEST(Pop3Backend, SaslInvalidBase64) {
  Fixture f;
  f.params.mech = "LOGIN";
  f.make();
  f.line("+OK ready.");
  EXPECT_EQ(f.line("+ !!!"), BackendEvent::Failure);
  EXPECT_EQ(f.bl->failure().type, FailureType::Protocol);
  EXPECT_EQ(f.bl->failure().reason, "Invalid base64 data in AUTH response");
}

TEST(Pop3Backend, SaslTooManyChallenges) {
  Fixture f;
  f.params.mech = "PLAIN";
  f.make();
  f.line("+OK ready.");
  f.take();
  // An empty challenge is answered once more with the same response...
  EXPECT_EQ(f.line("+ "), BackendEvent::Continue);
  EXPECT_EQ(f.take(), core::base64_encode("\0user1\0pass"s) + "\r\n");
  // ...a second one is a protocol error.
  EXPECT_EQ(f.line("+ "), BackendEvent::Failure);
  EXPECT_EQ(f.bl->failure().type, FailureType::Protocol);
}

// Without SASL a `+` line in login2 is just a bad reply.
TEST(Pop3Backend, PlusWithoutSaslIsAuthFailure) {
  Fixture f;
  f.make();
  f.line("+OK");
  f.line("+OK");
  EXPECT_EQ(f.line("+ abc"), BackendEvent::Failure);
  EXPECT_EQ(f.bl->failure().type, FailureType::AuthReplied);
  EXPECT_EQ(f.bl->failure().client_reply, "-ERR Authentication failed.\r\n");
}

TEST(Pop3Backend, CrLfInCredentialsFallsBackToAuthPlain) {
  Fixture f;
  f.params.password = "pa\r\nDELE 1";
  f.make();
  f.line("+OK ready.");
  EXPECT_EQ(f.take(), "AUTH PLAIN " + core::base64_encode("\0user1\0pa\r\nDELE 1"s) + "\r\n");
}

TEST(Pop3Backend, NulInPasswordIsNotSent) {
  Fixture f;
  f.params.password = "a\0b"s;
  f.make();
  EXPECT_EQ(f.line("+OK ready."), BackendEvent::Failure);
  EXPECT_EQ(f.bl->failure().type, FailureType::AuthNotReplied);
}

struct ReplyCase {
  const char* name;
  bool at_user;  // reply to USER (login1) instead of PASS (login2)
  std::string line;
  FailureType type;
  std::string client_reply;
  std::string reason;
};

// P6/P7 and §13.8: which backend texts reach the client.
TEST(Pop3Backend, LoginFailureReplies) {
  const std::vector<ReplyCase> cases = {
      {"auth", false, "-ERR [AUTH] Authentication failed.", FailureType::AuthReplied,
       "-ERR [AUTH] Authentication failed.\r\n", "[AUTH] Authentication failed."},
      {"auth-text-masked", false, "-ERR [AUTH] No such user bob", FailureType::AuthReplied,
       "-ERR [AUTH] Authentication failed.\r\n", "[AUTH] No such user bob"},
      {"plain-text-masked", true, "-ERR unknown user", FailureType::AuthReplied,
       "-ERR [AUTH] Authentication failed.\r\n", "unknown user"},
      {"not-err", false, "* what", FailureType::AuthReplied, "-ERR Authentication failed.\r\n",
       "* what"},
      {"bare-err", false, "-ERR", FailureType::AuthReplied, "-ERR Authentication failed.\r\n",
       "-ERR"},
      {"tempfail", false, "-ERR [SYS/TEMP] Try again later", FailureType::AuthTempfail,
       "-ERR [SYS/TEMP] Try again later\r\n", "[SYS/TEMP] Try again later"},
      {"in-use", false, "-ERR [IN-USE] Mailbox locked", FailureType::LimitReached,
       "-ERR [IN-USE] Mailbox locked\r\n", "[IN-USE] Mailbox locked"},
      {"sys-perm", false, "-ERR [SYS/PERM] Mailbox broken", FailureType::AuthReplied,
       "-ERR [SYS/PERM] Mailbox broken\r\n", "[SYS/PERM] Mailbox broken"},
      {"login-delay", false, "-ERR [LOGIN-DELAY] Wait", FailureType::AuthReplied,
       "-ERR [LOGIN-DELAY] Wait\r\n", "[LOGIN-DELAY] Wait"},
      {"control-bytes", false, "-ERR [SYS/TEMP] a\rb\x01", FailureType::AuthTempfail,
       "-ERR [SYS/TEMP] a b \r\n", "[SYS/TEMP] a b "},
  };
  for (const auto& c : cases) {
    Fixture f;
    f.make();
    f.line("+OK ready.");
    if (!c.at_user) f.line("+OK");
    EXPECT_EQ(f.bl->state(), c.at_user ? "login1" : "login2") << c.name;
    EXPECT_EQ(f.line(c.line), BackendEvent::Failure) << c.name;
    EXPECT_EQ(f.bl->failure().type, c.type) << c.name;
    EXPECT_EQ(f.bl->failure().client_reply, c.client_reply) << c.name;
    EXPECT_EQ(f.bl->failure().reason, c.reason) << c.name;
  }
}

TEST(Pop3Backend, Referral) {
  Fixture f;
  f.make();
  f.line("+OK ready.");
  f.line("+OK");
  EXPECT_EQ(f.line("-ERR [REFERRAL/user1@10.0.0.9] Moved"), BackendEvent::Failure);
  EXPECT_EQ(f.bl->failure().type, FailureType::AuthRedirect);
  EXPECT_TRUE(f.bl->failure().client_reply.empty());
}

TEST(Pop3Backend, NothingAfterFinish) {
  Fixture f;
  f.make();
  f.line("-ERR no");
  EXPECT_EQ(f.line("+OK"), BackendEvent::Failure);
  EXPECT_EQ(f.take(), "");
}

TEST(Pop3Backend, PasswordNeverInFailure) {
  Fixture f;
  f.params.password = "s3cret";
  f.make();
  f.line("+OK ready.");
  f.line("+OK");
  EXPECT_EQ(f.take(), "USER user1\r\nPASS s3cret\r\n");
  f.line("-ERR [AUTH] bad s3cret?");  // even a backend echoing it does not reach the client
  EXPECT_EQ(f.bl->failure().client_reply.find("s3cret"), std::string::npos);
}

// §4.2: the one switch, every failure type.
TEST(Pop3Backend, ProxyFailedReplies) {
  login::FrontendSettings s;
  login::ClientInfo ci;
  const std::string retry = "-ERR [SYS/TEMP] Account is temporarily unavailable.\r\n";
  const std::string config = "-ERR Account is temporarily unavailable.\r\n";
  struct C {
    FailureType t;
    std::string rendered;
    std::string expect;
  };
  const std::vector<C> cases = {
      {FailureType::Connect, "", retry},
      {FailureType::Internal, "", retry},
      {FailureType::Remote, "", retry},
      {FailureType::Protocol, "", retry},
      {FailureType::AuthRedirect, "", retry},
      {FailureType::InternalConfig, "", config},
      {FailureType::RemoteConfig, "", config},
      {FailureType::AuthNotReplied, "", config},
      {FailureType::AuthTempfail, "-ERR [SYS/TEMP] x\r\n", "-ERR [SYS/TEMP] x\r\n"},
      {FailureType::AuthTempfail, "", retry},
      {FailureType::AuthReplied, "-ERR [AUTH] Authentication failed.\r\n",
       "-ERR [AUTH] Authentication failed.\r\n"},
      {FailureType::AuthReplied, "", "-ERR [AUTH] Authentication failed.\r\n"},
      {FailureType::LimitReached, "-ERR [IN-USE] y\r\n", "-ERR [IN-USE] y\r\n"},
  };
  static_assert(static_cast<size_t>(FailureType::kCount) == 11, "add the new type above");
  for (const auto& c : cases) {
    pop3::Frontend fe(s, ci);
    fe.proxy_failed({c.t, "reason", c.rendered});
    EXPECT_EQ(fe.output(), c.expect) << login::failure_type_name(c.t);
  }
}

}  // namespace

// Issue 8 item 8: POP3 has no capabilities to re-read (no CAPA is sent, like
// Dovecot); nothing received before STLS reaches the client: its reply is the
// post-TLS PASS reply alone.
TEST(Pop3Backend, StarttlsForgetsPlaintextPhase) {
  Fixture f;
  f.params.starttls = true;
  f.params.tls = true;
  f.make();
  EXPECT_EQ(f.line("+OK evil: your password expired, mail it to x@example.org"), BackendEvent::Continue);
  EXPECT_EQ(f.take(), "STLS\r\n");
  EXPECT_EQ(f.line("+OK Begin TLS negotiation now."), BackendEvent::StartTls);
  EXPECT_EQ(f.bl->on_tls_ready(), BackendEvent::Continue);
  EXPECT_EQ(f.take(), "USER user1\r\n");
  EXPECT_EQ(f.line("+OK"), BackendEvent::Continue);
  EXPECT_EQ(f.take(), "PASS pass\r\n");
  EXPECT_EQ(f.line("+OK Logged in."), BackendEvent::Success);
  EXPECT_EQ(f.bl->client_reply(), "+OK Logged in.\r\n");
}

// OAuth pass-through: AUTH <MECH> <ir>; the failure JSON kept and acknowledged.
TEST(Pop3Backend, OauthbearerWithHostPortAndFailureChallenge) {
  Fixture f;
  f.params.mech = "OAUTHBEARER";
  f.params.password = "tok";
  f.params.host = "10.0.0.5";
  f.params.port = 110;
  f.make();
  EXPECT_EQ(f.line("+OK Dovecot ready."), BackendEvent::Continue);
  EXPECT_EQ(f.take(), "AUTH OAUTHBEARER " +
                          core::base64_encode("n,a=user1,\x01host=10.0.0.5\x01port=110\x01"
                                              "auth=Bearer tok\x01\x01"s) +
                          "\r\n");
  const std::string challenge = core::base64_encode(R"({"status":"invalid_token"})");
  EXPECT_EQ(f.line("+ " + challenge), BackendEvent::Continue);
  EXPECT_EQ(f.take(), "AQ==\r\n");
  EXPECT_EQ(f.line("-ERR [AUTH] Authentication failed."), BackendEvent::Failure);
  EXPECT_EQ(f.bl->failure().type, FailureType::AuthReplied);
  EXPECT_EQ(f.bl->failure().sasl_challenge, challenge);
  EXPECT_EQ(f.bl->failure().client_reply, "-ERR [AUTH] Authentication failed.\r\n");
}

TEST(Pop3Backend, Xoauth2SuccessAndEmptyAcknowledgement) {
  Fixture f;
  f.params.mech = "XOAUTH2";
  f.params.password = "t";
  f.make();
  f.line("+OK ready.");
  EXPECT_EQ(f.take(), "AUTH XOAUTH2 " + core::base64_encode("user=user1\x01" "auth=Bearer t\x01\x01"s) + "\r\n");
  EXPECT_EQ(f.line("+OK Logged in."), BackendEvent::Success);

  Fixture g;
  g.params.mech = "XOAUTH2";
  g.make();
  g.line("+OK ready.");
  (void)g.take();
  EXPECT_EQ(g.line("+ eyJzdGF0dXMiOiI0MDEifQ=="), BackendEvent::Continue);
  EXPECT_EQ(g.take(), "\r\n");
  EXPECT_EQ(g.line("-ERR [AUTH] Authentication failed."), BackendEvent::Failure);
  EXPECT_EQ(g.bl->failure().sasl_challenge, "eyJzdGF0dXMiOiI0MDEifQ==");
}

// RFC 5034 §4: an AUTH line over 255 octets goes without its initial
// response, which answers the empty challenge.
TEST(Pop3Backend, LongTokenAfterEmptyChallenge) {
  Fixture f;
  f.params.mech = "XOAUTH2";
  const std::string token(10 * 1024, 'x');
  f.params.password = token;
  f.make();
  f.line("+OK ready.");
  EXPECT_EQ(f.take(), "AUTH XOAUTH2\r\n");
  EXPECT_EQ(f.line("+ "), BackendEvent::Continue);
  EXPECT_EQ(f.take(), core::base64_encode("user=user1\x01" "auth=Bearer " + token + "\x01\x01") + "\r\n");
  EXPECT_EQ(f.line("+OK Logged in."), BackendEvent::Success);
}
