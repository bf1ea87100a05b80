// The OAuth mechanisms in every protocol's Frontend: offered only where
// cleartext is allowed, 64 KiB initial responses and responses, and the
// failure challenge that precedes the final failure reply.

#include <gtest/gtest.h>

#include <string>

#include "core/base64.hpp"
#include "protocols/registry.hpp"

using namespace portier;
using namespace std::string_literals;
using namespace std::string_view_literals;
using login::FrontendEvent;

namespace {

/// One protocol's wire forms.
struct Proto {
  const char* name;
  const char* hello;      // sent first (SMTP: EHLO), "" = nothing
  const char* auth;       // the AUTH command up to the mechanism name
  const char* after_mech; // between the mechanism and the IR
  const char* ir_close;   // after the IR
  const char* cont;       // continuation prefix
  const char* cont_end;   // after the challenge
  const char* resp_open;  // around a response
  const char* resp_close;
  const char* failed;     // the final failure line
};

const Proto kProtos[] = {
    {"imap", "", "a1 AUTHENTICATE ", " ", "", "+ ", "", "", "",
     "a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"},
    {"pop3", "", "AUTH ", " ", "", "+ ", "", "", "", "-ERR [AUTH] Authentication failed.\r\n"},
    {"submission", "EHLO c\r\n", "AUTH ", " ", "", "334 ", "", "", "",
     "535 5.7.8 Authentication failed.\r\n"},
    {"managesieve", "", "AUTHENTICATE \"", "\" \"", "\"", "\"", "\"", "\"", "\"",
     "NO \"Authentication failed.\"\r\n"},
};

struct Harness {
  const Proto& p;
  login::FrontendSettings settings;
  login::ClientInfo client;
  std::unique_ptr<login::Frontend> fe;

  Harness(const Proto& proto, bool secure) : p(proto) {
    settings.mechanisms = {"PLAIN", "OAUTHBEARER", "XOAUTH2"};
    client.remote_ip = asio::ip::make_address("192.0.2.7");
    client.local_ip = asio::ip::make_address("192.0.2.1");
    client.tls = secure;
    fe = protocols::find(p.name)->make_frontend(settings, client);
    fe->start();
    if (*p.hello) send(p.hello);
    take();
  }
  std::string take() { return std::exchange(fe->output(), {}); }
  FrontendEvent send(std::string_view in) {
    fe->feed(in);
    return fe->next();
  }
  std::string auth_line(std::string_view mech, std::optional<std::string_view> ir) {
    std::string l = p.auth;
    l += mech;
    if (ir) {
      l += p.after_mech;
      l += *ir;
      l += p.ir_close;
    } else if (std::string_view(p.after_mech) == "\" \"") {
      l += '"';
    }
    return l + "\r\n";
  }
  std::string response(std::string_view b64) {
    return std::string(p.resp_open) + std::string(b64) + p.resp_close + "\r\n";
  }
  std::string continuation(std::string_view b64) {
    return std::string(p.cont) + std::string(b64) + p.cont_end + "\r\n";
  }
};

std::string bearer(std::string_view user, std::string_view token) {
  return core::base64_encode("n,a=" + std::string(user) + ",\x01" "auth=Bearer " +
                             std::string(token) + "\x01\x01");
}

TEST(OAuthFrontends, HiddenAndRefusedOnInsecureConnections) {
  for (const Proto& p : kProtos) {
    Harness h(p, false);
    h.fe = protocols::find(p.name)->make_frontend(h.settings, h.client);
    h.fe->start();
    const std::string banner = h.take();
    EXPECT_EQ(banner.find("OAUTHBEARER"), std::string::npos) << p.name;
    EXPECT_EQ(banner.find("XOAUTH2"), std::string::npos) << p.name;
    if (*p.hello) {
      h.send(p.hello);
      EXPECT_EQ(h.take().find("XOAUTH2"), std::string::npos) << p.name;
    }
    EXPECT_NE(h.send(h.auth_line("XOAUTH2", std::nullopt)), FrontendEvent::Authenticate) << p.name;
    EXPECT_NE(h.take().find(p.name == "imap"s ? "PRIVACYREQUIRED" : "isallowed"), std::string::npos) << p.name;
  }
}

TEST(OAuthFrontends, LongTokenInInitialResponseAndAfterEmptyChallenge) {
  const std::string token(60 * 1024, 't');  // longer than every ordinary line limit
  for (const Proto& p : kProtos) {
    Harness h(p, true);
    ASSERT_EQ(h.send(h.auth_line("OAUTHBEARER", bearer("alice", token))), FrontendEvent::Authenticate)
        << p.name << ": " << h.take();
    auto c = h.fe->take_credentials();
    EXPECT_EQ(c.mech, "OAUTHBEARER");
    EXPECT_EQ(c.authcid, "alice");
    EXPECT_EQ(c.password, token);
    h.fe->auth_failed(login::AuthFailure::Failed, "");
    h.take();

    EXPECT_EQ(h.send(h.auth_line("XOAUTH2", std::nullopt)), FrontendEvent::NeedInput) << p.name;
    EXPECT_EQ(h.take(), h.continuation("")) << p.name;
    const std::string msg =
        core::base64_encode("user=bob\x01" "auth=Bearer " + token + "\x01\x01");
    ASSERT_EQ(h.send(h.response(msg)), FrontendEvent::Authenticate) << p.name << ": " << h.take();
    c = h.fe->take_credentials();
    EXPECT_EQ(c.authcid, "bob");
    EXPECT_EQ(c.password, token);
  }
}

TEST(OAuthFrontends, OverlongSaslLineIsBounded) {
  const std::string huge(100 * 1024, 'A');  // more than 64 KiB decoded
  for (const Proto& p : kProtos) {
    Harness h(p, true);
    EXPECT_EQ(h.send(h.auth_line("OAUTHBEARER", huge)), FrontendEvent::Close) << p.name;
  }
  // Other mechanisms and other commands keep the ordinary limit.
  for (const Proto& p : kProtos) {
    Harness h(p, true);
    EXPECT_EQ(h.send(h.auth_line("PLAIN", std::string(20 * 1024, 'A'))), FrontendEvent::Close)
        << p.name;
    Harness r(p, true);
    r.send(r.auth_line("PLAIN", std::nullopt));
    EXPECT_EQ(r.send(r.response(std::string(20 * 1024, 'A'))), FrontendEvent::Close) << p.name;
  }
  for (const Proto& p : kProtos) {
    Harness h(p, true);
    EXPECT_EQ(h.send(std::string(p.auth).substr(0, 2) + std::string(20 * 1024, 'x') + "\r\n"),
              FrontendEvent::Close)
        << p.name;
  }
}

TEST(OAuthFrontends, FailureChallengeThenFinalReply) {
  const std::string json_b64 = core::base64_encode(R"({"status":"invalid_token","scope":"mail"})");
  for (const Proto& p : kProtos) {
    for (std::string_view answer : {"AQ=="sv, ""sv, "*"sv}) {
      Harness h(p, true);
      ASSERT_EQ(h.send(h.auth_line("OAUTHBEARER", bearer("alice", "t"))), FrontendEvent::Authenticate);
      h.fe->take_credentials();
      h.fe->auth_failed(login::AuthFailure::Failed, "", json_b64);
      EXPECT_TRUE(h.fe->failure_answer_pending());
      EXPECT_EQ(h.take(), h.continuation(json_b64)) << p.name;
      EXPECT_EQ(h.send(h.response(answer)), FrontendEvent::NeedInput) << p.name;
      EXPECT_FALSE(h.fe->failure_answer_pending());
      EXPECT_EQ(h.take(), p.failed) << p.name << " answer " << answer;
    }
  }
}

TEST(OAuthFrontends, BackendFailureChallengeIsRelayed) {
  const std::string json_b64 = core::base64_encode(R"({"status":"401","schemes":"bearer","scope":"x"})");
  for (const Proto& p : kProtos) {
    Harness h(p, true);
    ASSERT_EQ(h.send(h.auth_line("XOAUTH2", core::base64_encode("user=u\x01" "auth=Bearer t\x01\x01"))),
              FrontendEvent::Authenticate);
    h.fe->take_credentials();
    login::ProxyFailure f(login::FailureType::AuthReplied, "refused", "BACKEND SAYS NO\r\n");
    f.sasl_challenge = json_b64;
    h.fe->proxy_failed(f);
    EXPECT_EQ(h.take(), h.continuation(json_b64)) << p.name;
    // The answer (and a pipelined command after it) are read in order.
    EXPECT_EQ(h.send(h.response("")), FrontendEvent::NeedInput) << p.name;
    EXPECT_EQ(h.take(), "BACKEND SAYS NO\r\n") << p.name;
  }
}

}  // namespace

namespace {

TEST(OAuthFrontends, MalformedMessageGetsInvalidRequestChallenge) {
  for (const Proto& p : kProtos) {
    Harness h(p, true);
    const std::string bad = core::base64_encode("n,a=alice,\x01host=h\x01\x01"s);  // no auth=
    EXPECT_EQ(h.send(h.auth_line("OAUTHBEARER", bad)), FrontendEvent::NeedInput) << p.name;
    EXPECT_EQ(h.take(), h.continuation(core::base64_encode(
                            R"({"status":"invalid_request","scope":"mail"})"s)))
        << p.name;
    EXPECT_EQ(h.send(h.response("AQ==")), FrontendEvent::NeedInput);
    EXPECT_EQ(h.take(), p.failed) << p.name;
  }
}

}  // namespace
