// OAUTHBEARER (RFC 7628) and XOAUTH2 server mechanisms, and their failure JSON.

#include <gtest/gtest.h>

#include "sasl/exchange.hpp"
#include "sasl/oauth.hpp"
#include "sasl/sasl.hpp"

using namespace portier::sasl;
using namespace std::string_literals;

namespace {

Step run(std::string_view mech, const std::string& msg, Credentials* out = nullptr) {
  auto m = make_server_mech(mech);
  EXPECT_NE(m, nullptr);
  Step s = m->start(std::string_view(msg));
  if (out && s.status == Status::Done) *out = m->take_credentials();
  return s;
}

TEST(SaslOAuth, Registered) {
  EXPECT_TRUE(is_known_mech("OAUTHBEARER"));
  EXPECT_TRUE(is_known_mech("xoauth2"));
  EXPECT_TRUE(is_oauth_mech("oauthbearer"));
  EXPECT_FALSE(is_oauth_mech("PLAIN"));
  // Cleartext-class: hidden and refused on insecure connections like PLAIN.
  EXPECT_TRUE(is_cleartext_mech("OAUTHBEARER"));
  EXPECT_TRUE(is_cleartext_mech("XOAUTH2"));
}

TEST(SaslOAuth, Valid) {
  struct Case {
    const char* mech;
    std::string msg;
    const char* user;
    const char* token;
  };
  const Case cases[] = {
      {"OAUTHBEARER", "n,a=alice@example.com,\x01" "auth=Bearer tok.en-1\x01\x01", "alice@example.com", "tok.en-1"},
      {"XOAUTH2", "user=alice@example.com\x01" "auth=Bearer ya29.tok\x01\x01", "alice@example.com", "ya29.tok"},
  };
  for (const Case& c : cases) {
    Credentials cr;
    auto s = run(c.mech, c.msg, &cr);
    ASSERT_EQ(s.status, Status::Done) << s.error;
    EXPECT_EQ(cr.mech, c.mech);
    EXPECT_EQ(cr.authcid, c.user);
    EXPECT_EQ(cr.password, c.token);
  }
}

TEST(SaslOAuthBearer, HostPortAndSchemeCase) {
  Credentials c;
  auto s = run("oauthbearer",
               "y,a=bob,\x01host=imap.example.com\x01port=993\x01" "auth=bearer abc==\x01\x01", &c);
  ASSERT_EQ(s.status, Status::Done) << s.error;
  EXPECT_EQ(c.authcid, "bob");
  EXPECT_EQ(c.password, "abc==");
}

TEST(SaslOAuthBearer, AuthzidEscapes) {
  Credentials c;
  ASSERT_EQ(run("OAUTHBEARER", "n,a=a=2Cb=3Dc,\x01" "auth=Bearer t\x01\x01", &c).status, Status::Done);
  EXPECT_EQ(c.authcid, "a,b=c");
  EXPECT_EQ(run("OAUTHBEARER", "n,a=a=41b,\x01" "auth=Bearer t\x01\x01").status, Status::Failed);
  EXPECT_EQ(run("OAUTHBEARER", "n,a=ab=,\x01" "auth=Bearer t\x01\x01").status, Status::Failed);
}

TEST(SaslOAuthBearer, Refused) {
  const char* bad[] = {
      "p=tls-unique,a=u,\x01" "auth=Bearer t\x01\x01",  // channel binding
      "n,a=u,\x01host=h\x01\x01",                        // no auth=
      "n,a=u,\x01" "auth=Basic dTpw\x01\x01",            // not a bearer token
      "n,a=u,\x01" "auth=Bearer \x01\x01",               // empty token
      "n,a=u,\x01" "auth=Bearer a b\x01\x01",            // space in token
      "n,a=u,\x01" "auth=Bearer t\x01",                  // not ^A^A-terminated
      "n,a=u,\x01" "auth=Bearer t",                      // no terminator
      "n,a=u,auth=Bearer t\x01\x01",                     // no ^A after the gs2 header
      "n,,\x01" "auth=Bearer t\x01\x01",                 // empty authzid: nobody to route
      "x,a=u,\x01" "auth=Bearer t\x01\x01",              // bad cb flag
      "n,a=u,\x01" "auth=Bearer t\x01" "auth=Bearer u\x01\x01",  // auth twice
      "n,a=u,\x01=x\x01" "auth=Bearer t\x01\x01",        // empty key
      "",
  };
  for (const char* m : bad) {
    auto s = run("OAUTHBEARER", m);
    EXPECT_EQ(s.status, Status::Failed) << m;
    // The reason never holds the token ("t").
    EXPECT_EQ(s.error.find("Bearer t"), std::string::npos) << s.error;
  }
}

TEST(SaslOAuthBearer, EmptyChallengeThenMessage) {
  auto m = make_server_mech("OAUTHBEARER");
  auto s = m->start(std::nullopt);
  ASSERT_EQ(s.status, Status::Continue);
  EXPECT_EQ(s.challenge, "");
  const std::string token(10 * 1024, 'x');
  s = m->step("n,a=u,\x01" "auth=Bearer " + token + "\x01\x01");
  ASSERT_EQ(s.status, Status::Done) << s.error;
  EXPECT_EQ(m->credentials().password, token);
  EXPECT_EQ(m->step("again").status, Status::Failed);
}

TEST(SaslXOAuth2, Refused) {
  const char* bad[] = {
      "auth=Bearer t\x01\x01",                   // no user
      "user=\x01" "auth=Bearer t\x01\x01",       // empty user
      "user=u\x01\x01",                          // no auth
      "user=u\x01" "auth=Bearer t\x01",          // framing
      "user=u\x01" "auth=Bearer t",
      "user=u\x01" "auth=OAuth t\x01\x01",
      "",
  };
  for (const char* m : bad) EXPECT_EQ(run("XOAUTH2", m).status, Status::Failed) << m;
}

TEST(SaslOAuthJson, OAuthBearer) {
  OAuthFailureInfo info;
  EXPECT_EQ(oauth_failure_json("OAUTHBEARER", info), R"({"status":"invalid_token","scope":"mail"})");
  info.status = "insufficient_scope";
  info.scope = "imap smtp";
  info.openid_configuration = "https://idp.example/.well-known/openid-configuration";
  EXPECT_EQ(oauth_failure_json("OAUTHBEARER", info),
            R"({"status":"insufficient_scope","scope":"imap smtp",)"
            R"("openid-configuration":"https://idp.example/.well-known/openid-configuration"})");
}

TEST(SaslOAuthJson, XOAuth2StatusCodes) {
  OAuthFailureInfo info;
  EXPECT_EQ(oauth_failure_json("XOAUTH2", info),
            R"({"status":"401","schemes":"bearer","scope":"mail"})");
  info.status = "insufficient_scope";
  EXPECT_EQ(oauth_failure_json("xoauth2", info),
            R"({"status":"403","schemes":"bearer","scope":"mail"})");
  info.status = "invalid_request";
  EXPECT_EQ(oauth_failure_json("XOAUTH2", info),
            R"({"status":"400","schemes":"bearer","scope":"mail"})");
}

TEST(SaslOAuthJson, Escaping) {
  OAuthFailureInfo info;
  info.scope = "a\"b\\c\nd\x01";
  EXPECT_EQ(oauth_failure_json("OAUTHBEARER", info),
            R"({"status":"invalid_token","scope":"a\"b\\c\nd\u0001"})");
}

}  // namespace
