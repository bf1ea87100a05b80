// OAuth client mechanisms (sasl/oauth_client.hpp): the exact messages
// (RFC 7628 §3.1, Google's XOAUTH2), gs2 escaping, the answer to a failure
// challenge, and make_client_mech / is_client_mech reaching them.

#include <gtest/gtest.h>

#include "sasl/oauth_client.hpp"
#include "sasl/sasl.hpp"

using namespace portier::sasl;
using namespace std::string_literals;

namespace {

TEST(SaslOAuthClient, OauthbearerMessageWithHostPort) {
  auto m = make_client_mech("oauthbearer", "", "alice@example.com", "tok.en", {"imap.lab", 993});
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->initial_response(),
            "n,a=alice@example.com,\x01host=imap.lab\x01port=993\x01"
            "auth=Bearer tok.en\x01\x01"s);
}

TEST(SaslOAuthClient, OauthbearerWithoutHostPortAndEscapedAuthzid) {
  auto m = make_client_mech("OAUTHBEARER", "", "a,b=c", "t", {});
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->initial_response(), "n,a=a=2Cb=3Dc,\x01" "auth=Bearer t\x01\x01"s);
  EXPECT_EQ(gs2_escape("x=,y"), "x=3D=2Cy");
  EXPECT_EQ(gs2_escape(""), "");
}

TEST(SaslOAuthClient, Xoauth2MessageIgnoresHostPort) {
  auto m = make_client_mech("XOAUTH2", "authz", "bob", "ya29.x", {"h", 1});
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->initial_response(), "user=bob\x01" "auth=Bearer ya29.x\x01\x01"s);
}

TEST(SaslOAuthClient, EmptyChallengeGetsTheMessageOnce) {
  auto m = make_client_mech("XOAUTH2", "", "bob", "t");
  auto r = m->step("");
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, "user=bob\x01" "auth=Bearer t\x01\x01"s);
  EXPECT_FALSE(m->failure_reported());
  // The next challenge is the failure report: XOAUTH2 answers it empty.
  r = m->step(R"({"status":"401","schemes":"bearer","scope":"mail"})");
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, "");
  EXPECT_TRUE(m->failure_reported());
  EXPECT_FALSE(m->step("more"));  // nothing after the acknowledgement
}

TEST(SaslOAuthClient, OauthbearerAcknowledgesFailureWithCtrlA) {
  auto m = make_client_mech("OAUTHBEARER", "", "u", "t", {"h", 143});
  (void)m->initial_response();
  EXPECT_FALSE(m->failure_reported());
  auto r = m->step(R"({"status":"invalid_token","scope":"mail"})");
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, "\x01");
  EXPECT_TRUE(m->failure_reported());
  EXPECT_FALSE(m->step(""));
}

TEST(SaslOAuthClient, LongToken) {
  const std::string token(64 * 1024, 'A');
  auto m = make_client_mech("XOAUTH2", "", "u", token);
  EXPECT_EQ(m->initial_response().size(), 5 + 1 + 1 + 12 + token.size() + 2);
}

TEST(SaslOAuthClient, Factory) {
  EXPECT_TRUE(is_client_mech("OAUTHBEARER"));
  EXPECT_TRUE(is_client_mech("xoauth2"));
  EXPECT_TRUE(is_client_mech("PLAIN"));
  EXPECT_FALSE(is_client_mech("EXTERNAL"));
  EXPECT_FALSE(is_client_mech("%{mechanism}"));
  EXPECT_TRUE(is_oauth_client_mech("XOAuth2"));
  EXPECT_FALSE(is_oauth_client_mech("PLAIN"));
  EXPECT_EQ(make_oauth_client("PLAIN", "u", "t", {}), nullptr);
  // Other client mechanisms never report a failure challenge.
  auto plain = make_client_mech("PLAIN", "", "u", "p");
  (void)plain->step("");
  EXPECT_FALSE(plain->failure_reported());
}

}  // namespace
