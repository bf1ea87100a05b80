// sasl::ServerExchange: the one server side of SASL all four protocols use.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/base64.hpp"
#include "sasl/exchange.hpp"

using namespace portier::sasl;
using namespace std::string_literals;
using namespace std::string_view_literals;

namespace {
const std::vector<std::string> kBoth{"PLAIN", "LOGIN"};
const std::vector<std::string> kPlainOnly{"PLAIN"};
ExchangePolicy open_policy() { return {kBoth, true}; }
std::string b64(const std::string& s) { return portier::core::base64_encode(s); }
}  // namespace

TEST(SaslExchange, PlainWithInitialResponse) {
  ServerExchange x;
  EXPECT_EQ(x.begin("plain", b64("\0alice\0pw"s), open_policy()), Outcome::Done);
  EXPECT_FALSE(x.active());
  auto c = x.take_credentials();
  EXPECT_EQ(c.mech, "PLAIN");
  EXPECT_EQ(c.authcid, "alice");
  EXPECT_EQ(c.password, "pw");
  EXPECT_EQ(x.mech_name(), "PLAIN");
}

TEST(SaslExchange, PlainWithoutInitialResponseAsksWithEmptyChallenge) {
  ServerExchange x;
  EXPECT_EQ(x.begin("PLAIN", std::nullopt, open_policy()), Outcome::Challenge);
  EXPECT_TRUE(x.active());
  EXPECT_EQ(x.challenge(), "");
  EXPECT_EQ(x.respond(b64("\0bob\0secret"s)), Outcome::Done);
  EXPECT_EQ(x.take_credentials().authcid, "bob");
}

TEST(SaslExchange, EqualsIsAnEmptyInitialResponse) {
  ServerExchange x;
  // PLAIN with an empty message fails; "=" is not base64 garbage.
  EXPECT_EQ(x.begin("PLAIN", std::string_view("="), open_policy()), Outcome::Failed);
}

TEST(SaslExchange, LoginEmptyInitialResponseAsksForTheUserInEverySyntax) {
  for (auto syntax : {IrSyntax::EqualsIsEmpty, IrSyntax::Base64Only}) {
    ServerExchange x;
    std::string_view ir = syntax == IrSyntax::EqualsIsEmpty ? "=" : "";
    ASSERT_EQ(x.begin("LOGIN", ir, open_policy(), syntax), Outcome::Challenge);
    EXPECT_EQ(x.challenge(), b64("Username:"));
    ASSERT_EQ(x.respond(b64("carol")), Outcome::Challenge);
    EXPECT_EQ(x.challenge(), b64("Password:"));
    ASSERT_EQ(x.respond(b64("pw3")), Outcome::Done);
    auto c = x.take_credentials();
    EXPECT_EQ(c.authcid, "carol");
    EXPECT_EQ(c.password, "pw3");
  }
}

TEST(SaslExchange, EqualsIsBase64GarbageWhereTheProtocolHasNoSuchForm) {
  ServerExchange x;
  EXPECT_EQ(x.begin("PLAIN", std::string_view("="), open_policy(), IrSyntax::Base64Only),
            Outcome::BadInitialBase64);
}

TEST(SaslExchange, PolicyChecksComeBeforeTheInitialResponse) {
  ServerExchange x;
  EXPECT_EQ(x.begin("CRAM-MD5", std::nullopt, open_policy()), Outcome::Unsupported);
  EXPECT_EQ(x.begin("LOGIN", std::nullopt, {kPlainOnly, true}), Outcome::Unsupported);
  EXPECT_EQ(x.begin("PLAIN", std::string_view("!!!"), {kBoth, false}), Outcome::CleartextDenied);
  EXPECT_FALSE(x.active());
}

TEST(SaslExchange, BadBase64AndAbortEndTheExchange) {
  ServerExchange x;
  EXPECT_EQ(x.begin("PLAIN", std::string_view("not base64!"), open_policy()),
            Outcome::BadInitialBase64);
  ASSERT_EQ(x.begin("LOGIN", std::nullopt, open_policy()), Outcome::Challenge);
  EXPECT_EQ(x.respond("%%%"), Outcome::BadBase64);
  EXPECT_FALSE(x.active());
  ASSERT_EQ(x.begin("LOGIN", std::nullopt, open_policy()), Outcome::Challenge);
  EXPECT_EQ(x.respond("*"), Outcome::Aborted);
  EXPECT_FALSE(x.active());
  EXPECT_EQ(x.respond(b64("late")), Outcome::Failed);  // nothing in progress
}

TEST(SaslExchange, MalformedMessageFails) {
  ServerExchange x;
  EXPECT_EQ(x.begin("PLAIN", b64("no-nuls"), open_policy()), Outcome::Failed);
  EXPECT_FALSE(x.active());
}

TEST(SaslExchange, HelpersAreCaseInsensitive) {
  EXPECT_TRUE(is_cleartext_mech("plain"));
  EXPECT_TRUE(is_cleartext_mech("Login"));
  EXPECT_TRUE(is_cleartext_mech("XOAUTH2"));  // a bearer token is a password
  EXPECT_TRUE(mech_offered(kBoth, "login"));
  EXPECT_FALSE(mech_offered(kPlainOnly, "LOGIN"));
}

// ---- EXTERNAL (issue 13): the identity of a verified client certificate ----

namespace {
const std::vector<std::string> kWithExternal{"PLAIN", "LOGIN", "EXTERNAL"};
}  // namespace

TEST(SaslExchange, ExternalNeedsAVerifiedIdentity) {
  ServerExchange x;
  EXPECT_EQ(x.begin("EXTERNAL", "="sv, ExchangePolicy{kWithExternal, true, ""}), Outcome::Unsupported);
  EXPECT_FALSE(x.active());
  // Not configured: unsupported even with a certificate.
  EXPECT_EQ(x.begin("EXTERNAL", "="sv, ExchangePolicy{kBoth, true, "alice"}), Outcome::Unsupported);
}

TEST(SaslExchange, ExternalEmptyOrSameAuthzid) {
  const ExchangePolicy p{kWithExternal, false, "alice"};
  ServerExchange x;
  EXPECT_EQ(x.begin("external", "="sv, p), Outcome::Done);
  auto c = x.take_credentials();
  EXPECT_EQ(c.mech, "EXTERNAL");
  EXPECT_EQ(c.authcid, "alice");
  EXPECT_EQ(c.authzid, "");
  EXPECT_TRUE(c.password.empty());
  EXPECT_EQ(x.begin("EXTERNAL", b64("alice"), p), Outcome::Done);
  EXPECT_EQ(x.take_credentials().authzid, "alice");
  // Another identity is refused.
  EXPECT_EQ(x.begin("EXTERNAL", b64("bob"), p), Outcome::Failed);
}

TEST(SaslExchange, ExternalWithoutInitialResponseAsksOnce) {
  const ExchangePolicy p{kWithExternal, false, "alice"};
  ServerExchange x;
  EXPECT_EQ(x.begin("EXTERNAL", std::nullopt, p), Outcome::Challenge);
  EXPECT_EQ(x.challenge(), "");
  EXPECT_EQ(x.respond(""), Outcome::Done);
  EXPECT_EQ(x.take_credentials().authcid, "alice");
  // ManageSieve: an empty string is the empty initial response.
  EXPECT_EQ(x.begin("EXTERNAL", ""sv, p, IrSyntax::Base64Only), Outcome::Done);
  EXPECT_EQ(x.begin("EXTERNAL", std::nullopt, p), Outcome::Challenge);
  EXPECT_EQ(x.respond("*"), Outcome::Aborted);
}

TEST(SaslMechanisms, ExternalIsServerOnly) {
  EXPECT_TRUE(is_known_mech("EXTERNAL"));
  EXPECT_FALSE(is_client_mech("EXTERNAL"));
  EXPECT_TRUE(is_client_mech("plain"));
  EXPECT_TRUE(needs_external_id("external"));
  EXPECT_FALSE(needs_external_id("PLAIN"));
}
