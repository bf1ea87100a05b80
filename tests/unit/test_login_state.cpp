// The proxy state renders exactly as the seed describes, and the failure
// taxonomy decides retries as in Dovecot's §2.4.
#include <gtest/gtest.h>

#include "login/failure.hpp"
#include "login/proxy_state.hpp"

namespace {

struct ImapLike {
  enum class Sent { Id, StartTls, Capability, Authenticate, AuthContinue, Login, kCount };
  enum class Received { None, Banner, Id, StartTls, Capability, AuthContinue, Login, kCount };
  static constexpr std::array<std::string_view, 6> kSentNames{
      "id", "starttls", "capability", "authenticate", "auth-continue", "login"};
  static constexpr std::array<std::string_view, 7> kReceivedNames{
      "none", "banner", "id", "starttls", "capability", "auth-continue", "login"};
};

struct Pop3Like {
  enum class State { Banner, StartTls, Xclient, Login1, Login2, kCount };
  static constexpr std::array<std::string_view, 5> kNames{"banner", "starttls", "xclient",
                                                          "login1", "login2"};
};

using portier::login::FailureType;
using portier::login::SentReceivedState;
using portier::login::SingleState;

TEST(ProxyState, EmptyRendersSlashNone) {
  SentReceivedState<ImapLike> s;
  EXPECT_EQ(s.render(), "/none");
}

TEST(ProxyState, PipelinedBatchInFixedOrder) {
  SentReceivedState<ImapLike> s;
  s.set_received(ImapLike::Received::Banner);
  s.set_sent(ImapLike::Sent::Login);  // set out of order: rendering order is fixed
  s.set_sent(ImapLike::Sent::Capability);
  EXPECT_EQ(s.render(), "capability+login/banner");
  s.set_sent(ImapLike::Sent::Id);
  EXPECT_EQ(s.render(), "id+capability+login/banner");
  s.clear_sent(ImapLike::Sent::Id);
  s.clear_sent(ImapLike::Sent::Capability);
  s.set_received(ImapLike::Received::Id);
  EXPECT_EQ(s.render(), "login/id");
}

TEST(ProxyState, NoDoublePlusBetweenSparseBits) {
  // Dovecot < 2.3.8 printed `authenticate++`; we never emit runs of '+'.
  SentReceivedState<ImapLike> s;
  s.set_sent(ImapLike::Sent::Authenticate);
  s.set_received(ImapLike::Received::Capability);
  EXPECT_EQ(s.render(), "authenticate/capability");
  s.set_sent(ImapLike::Sent::Id);
  s.set_sent(ImapLike::Sent::Login);
  EXPECT_EQ(s.render(), "id+authenticate+login/capability");
}

TEST(ProxyState, SingleStateNames) {
  SingleState<Pop3Like> s;
  EXPECT_EQ(s.render(), "banner");
  s.set(Pop3Like::State::Login2);
  EXPECT_EQ(s.render(), "login2");
}

TEST(Failure, RetryRules) {
  using portier::login::failure_retryable;
  EXPECT_TRUE(failure_retryable(FailureType::Connect));
  EXPECT_TRUE(failure_retryable(FailureType::Remote));
  EXPECT_TRUE(failure_retryable(FailureType::Protocol));
  EXPECT_TRUE(failure_retryable(FailureType::AuthTempfail));
  EXPECT_FALSE(failure_retryable(FailureType::Internal));
  EXPECT_FALSE(failure_retryable(FailureType::InternalConfig));
  EXPECT_FALSE(failure_retryable(FailureType::RemoteConfig));
  EXPECT_FALSE(failure_retryable(FailureType::AuthReplied));
  EXPECT_FALSE(failure_retryable(FailureType::AuthNotReplied));
  EXPECT_FALSE(failure_retryable(FailureType::LimitReached));
}

TEST(Failure, LogPrefixes) {
  using portier::login::failure_log_prefix;
  EXPECT_EQ(failure_log_prefix(FailureType::Internal), "Aborting due to internal error: ");
  EXPECT_EQ(failure_log_prefix(FailureType::RemoteConfig), "Aborting due to remote server: ");
  EXPECT_EQ(failure_log_prefix(FailureType::Protocol), "Remote server sent invalid input: ");
  EXPECT_EQ(failure_log_prefix(FailureType::Connect), "");
  EXPECT_EQ(portier::login::failure_type_name(FailureType::LimitReached), "limit-reached");
}

}  // namespace

// Log lines stay valid UTF-8 without control characters, whatever a peer sent.
#include <unistd.h>

#include <cstdio>

#include "log/log.hpp"

TEST(Log, InvalidUtf8AndControlsAreReplaced) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  int saved = dup(STDERR_FILENO);
  dup2(fds[1], STDERR_FILENO);
  portier::log::write(portier::log::Level::Error, "imap-login",
                      std::string("Invalid banner: a\xff" "b\xc3\xa9" "c\r\nd\xed\xa0\x80"));
  dup2(saved, STDERR_FILENO);
  close(saved);
  close(fds[1]);
  char buf[512];
  ssize_t n = read(fds[0], buf, sizeof buf);
  close(fds[0]);
  ASSERT_GT(n, 0);
  std::string line(buf, static_cast<size_t>(n));
  EXPECT_NE(line.find("Invalid banner: a?b\xc3\xa9" "c??d???"), std::string::npos)
      << line;
  EXPECT_EQ(line.back(), '\n');
}
