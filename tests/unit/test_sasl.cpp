#include <gtest/gtest.h>

#include <type_traits>

#include "sasl/sasl.hpp"

using namespace portier::sasl;
using namespace std::string_literals;

namespace {

TEST(SaslFactory, KnownMechs) {
  EXPECT_TRUE(is_known_mech("PLAIN"));
  EXPECT_TRUE(is_known_mech("login"));
  EXPECT_TRUE(is_known_mech("Plain"));
  EXPECT_FALSE(is_known_mech("CRAM-MD5"));
  EXPECT_FALSE(is_known_mech(""));
  EXPECT_NE(make_server_mech("plain"), nullptr);
  EXPECT_NE(make_server_mech("LOGIN"), nullptr);
  EXPECT_NE(make_server_mech("XOAUTH2"), nullptr);
  EXPECT_EQ(make_server_mech("SCRAM-SHA-1"), nullptr);
  EXPECT_NE(make_client_mech("PLAIN", "", "u", "p"), nullptr);
  EXPECT_NE(make_client_mech("login", "", "u", "p"), nullptr);
  EXPECT_EQ(make_client_mech("GSSAPI", "", "u", "p"), nullptr);
}

TEST(SaslPlainServer, InitialResponse) {
  auto m = make_server_mech("PLAIN");
  auto s = m->start("\0alice\0secret"s);
  ASSERT_EQ(s.status, Status::Done) << s.error;
  EXPECT_EQ(m->credentials().mech, "PLAIN");
  EXPECT_EQ(m->credentials().authzid, "");
  EXPECT_EQ(m->credentials().authcid, "alice");
  EXPECT_EQ(m->credentials().password, "secret");
  EXPECT_EQ(m->step("x").status, Status::Failed);  // nothing after Done
}

TEST(SaslPlainServer, NoInitialResponse) {
  auto m = make_server_mech("PLAIN");
  auto s = m->start(std::nullopt);
  EXPECT_EQ(s.status, Status::Continue);
  EXPECT_EQ(s.challenge, "");
  s = m->step("bob\0master\0pw"s);
  ASSERT_EQ(s.status, Status::Done);
  EXPECT_EQ(m->credentials().authzid, "bob");
  EXPECT_EQ(m->credentials().authcid, "master");
  EXPECT_EQ(m->credentials().password, "pw");
}

TEST(SaslPlainServer, EmptyPasswordAllowed) {
  auto m = make_server_mech("PLAIN");
  EXPECT_EQ(m->start("\0alice\0"s).status, Status::Done);
  EXPECT_EQ(m->credentials().password, "");
}

struct BadPlain { std::string msg; const char* what; };

TEST(SaslPlainServer, Malformed) {
  const BadPlain cases[] = {
      {"alicesecret", "no NULs"},
      {"alice\0secret"s, "one NUL"},
      {"\0alice\0sec\0ret"s, "three NULs"},
      {"\0\0secret"s, "empty authcid"},
      {""s, "empty message"},
      {"\0\0"s, "all empty"},
  };
  for (const auto& c : cases) {
    auto m = make_server_mech("PLAIN");
    auto s = m->start(std::string_view(c.msg));
    EXPECT_EQ(s.status, Status::Failed) << c.what;
    EXPECT_FALSE(s.error.empty()) << c.what;
    EXPECT_EQ(s.error.find("secret"), std::string::npos) << "error leaks secret: " << s.error;
    // Same through step().
    auto m2 = make_server_mech("PLAIN");
    ASSERT_EQ(m2->start(std::nullopt).status, Status::Continue);
    EXPECT_EQ(m2->step(c.msg).status, Status::Failed) << c.what;
  }
}

TEST(SaslPlainServer, StepBeforeStartFails) {
  auto m = make_server_mech("PLAIN");
  EXPECT_EQ(m->step("\0a\0b"s).status, Status::Failed);
}

TEST(SaslLoginServer, NoInitialResponse) {
  auto m = make_server_mech("LOGIN");
  auto s = m->start(std::nullopt);
  ASSERT_EQ(s.status, Status::Continue);
  EXPECT_EQ(s.challenge, "Username:");
  s = m->step("alice");
  ASSERT_EQ(s.status, Status::Continue);
  EXPECT_EQ(s.challenge, "Password:");
  s = m->step("secret");
  ASSERT_EQ(s.status, Status::Done);
  EXPECT_EQ(m->credentials().mech, "LOGIN");
  EXPECT_EQ(m->credentials().authcid, "alice");
  EXPECT_EQ(m->credentials().authzid, "");
  EXPECT_EQ(m->credentials().password, "secret");
  EXPECT_EQ(m->step("more").status, Status::Failed);
}

TEST(SaslLoginServer, InitialResponseIsUsername) {
  auto m = make_server_mech("LOGIN");
  auto s = m->start("alice");
  ASSERT_EQ(s.status, Status::Continue);
  EXPECT_EQ(s.challenge, "Password:");
  EXPECT_EQ(m->step("").status, Status::Done);  // empty password allowed here
  EXPECT_EQ(m->credentials().password, "");
}

TEST(SaslLoginServer, Malformed) {
  {
    // An empty initial response is no initial response: the user name is
    // asked for (Dovecot's LOGIN; all four protocols alike).
    auto m = make_server_mech("LOGIN");
    auto s = m->start("");
    EXPECT_EQ(s.status, Status::Continue);
    EXPECT_EQ(s.challenge, "Username:");
  }
  {
    auto m = make_server_mech("LOGIN");
    m->start(std::nullopt);
    EXPECT_EQ(m->step("").status, Status::Failed);
  }
  {
    auto m = make_server_mech("LOGIN");
    m->start(std::nullopt);
    EXPECT_EQ(m->step("al\0ice"s).status, Status::Failed);
  }
  {
    auto m = make_server_mech("LOGIN");
    m->start(std::nullopt);
    m->step("alice");
    auto s = m->step("sec\0ret"s);
    EXPECT_EQ(s.status, Status::Failed);
    EXPECT_EQ(s.error.find("sec"), std::string::npos);
  }
  {
    auto m = make_server_mech("LOGIN");
    EXPECT_EQ(m->step("alice").status, Status::Failed);  // step before start
  }
}

TEST(SaslPlainClient, InitialResponse) {
  auto c = make_client_mech("PLAIN", "", "alice", "secret");
  EXPECT_EQ(c->initial_response(), "\0alice\0secret"s);
  auto m = make_client_mech("PLAIN", "bob", "master", "mpw");
  EXPECT_EQ(m->initial_response(), "bob\0master\0mpw"s);
}

TEST(SaslPlainClient, AnswersEmptyChallengeOnce) {
  auto c = make_client_mech("PLAIN", "", "alice", "secret");
  auto r = c->step("");
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, "\0alice\0secret"s);
  EXPECT_FALSE(c->step(""));
  auto c2 = make_client_mech("PLAIN", "", "alice", "secret");
  EXPECT_FALSE(c2->step("unexpected"));
}

TEST(SaslLoginClient, Sequence) {
  auto c = make_client_mech("LOGIN", "ignored", "alice", "secret");
  EXPECT_EQ(c->initial_response(), "");
  EXPECT_EQ(c->step("Username:"), "alice");
  EXPECT_EQ(c->step("Password:"), "secret");
  EXPECT_FALSE(c->step("What?"));
}

// Client <-> server round trips, with and without initial response.
TEST(SaslRoundTrip, AllMechs) {
  struct Case { const char* mech; const char* authzid; bool use_ir; };
  const Case cases[] = {
      {"PLAIN", "", true}, {"PLAIN", "", false}, {"PLAIN", "target", true},
      {"LOGIN", "", false}, {"login", "", true},
  };
  for (const auto& tc : cases) {
    SCOPED_TRACE(std::string(tc.mech) + (tc.use_ir ? " IR" : " no-IR"));
    auto client = make_client_mech(tc.mech, tc.authzid, "user@example.org", "p4ss w:rd");
    auto server = make_server_mech(tc.mech);
    ASSERT_TRUE(client && server);
    std::string ir = client->initial_response();
    Step s = (tc.use_ir && !ir.empty()) ? server->start(std::string_view(ir))
                                        : server->start(std::nullopt);
    int rounds = 0;
    while (s.status == Status::Continue && rounds++ < 5) {
      auto resp = client->step(s.challenge);
      ASSERT_TRUE(resp);
      s = server->step(*resp);
    }
    ASSERT_EQ(s.status, Status::Done) << s.error;
    EXPECT_EQ(server->credentials().authcid, "user@example.org");
    EXPECT_EQ(server->credentials().password, "p4ss w:rd");
    if (std::string_view(tc.mech) == "PLAIN") {
      EXPECT_EQ(server->credentials().authzid, tc.authzid);
    }
  }
}

// Credentials are move-only (the password is a core::Secret): a move leaves
// no copy behind.
TEST(SaslCredentials, MoveOnly) {
  static_assert(!std::is_copy_constructible_v<Credentials>);
  Credentials a;
  a.authcid = "u";
  a.password = "pw";
  Credentials c = std::move(a);
  EXPECT_EQ(c.password, "pw");
  EXPECT_TRUE(a.password.empty());
}

}  // namespace
