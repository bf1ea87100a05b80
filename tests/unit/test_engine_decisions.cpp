// The login engine's decisions, without sockets: the auth verdict on a passdb
// answer, the backend parameters, the checks before connecting, the retry
// rule, the deadline, the hand-off's first bytes, the `Disconnected:` summary
// and the counters fed by events.
#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <string>

#include "login/auth_flow.hpp"
#include "login/backend_driver.hpp"
#include "login/counters.hpp"
#include "login/frontend_driver.hpp"
#include "login/handoff.hpp"
#include "login/log_sink.hpp"

using namespace portier;
using namespace portier::login;
using namespace std::chrono_literals;

namespace {
const Protocol kImap{"imap", "imap-login", 143, 993, nullptr};

passdb::Lookup lookup(passdb::Result r, std::string fields = "") {
  passdb::Lookup l;
  l.result = r;
  l.reply.user = "alice";
  l.reply.fields = passdb::parse_extra_fields(fields);
  if (r == passdb::Result::TempFail) l.error = "db down";
  return l;
}

passdb::ProxyFields fields(std::string text) {
  auto l = lookup(passdb::Result::Ok, std::move(text));
  auto r = passdb::parse_proxy_fields(l.reply, 143, 993);
  if (!r.fields) throw std::runtime_error("bad test fields: " + r.error);
  return *r.fields;
}

ClientInfo client() {
  ClientInfo ci;
  ci.remote_ip = asio::ip::make_address("192.0.2.7");
  ci.local_ip = asio::ip::make_address("127.0.0.1");
  ci.local_port = 143;
  ci.proxy_ttl = 5;
  return ci;
}
}  // namespace

// ---- auth flow ----------------------------------------------------------------
TEST(AuthVerdict, ProxyFieldsGoToTheBackend) {
  auto v = judge(lookup(passdb::Result::Ok, "proxy host=10.0.0.5 port=1143"), kImap);
  ASSERT_TRUE(v.proxy);
  EXPECT_FALSE(v.refused);
  EXPECT_EQ(v.fields.host, "10.0.0.5");
  EXPECT_EQ(v.fields.port, 1143);
}

TEST(AuthVerdict, MismatchAndUnknownUserAreFailedLogins) {
  for (auto r : {passdb::Result::Mismatch, passdb::Result::UnknownUser}) {
    auto v = judge(lookup(r), kImap);
    EXPECT_FALSE(v.proxy);
    EXPECT_TRUE(v.failed_login);  // delay, penalty, max_auth_attempts
    EXPECT_EQ(v.reply, AuthFailure::Failed);
    ASSERT_TRUE(v.refused);
    EXPECT_EQ(*v.refused, r == passdb::Result::Mismatch ? events::AuthRefused::Why::Mismatch
                                                        : events::AuthRefused::Why::UnknownUser);
  }
}

TEST(AuthVerdict, TempFailIsNoFailedLogin) {
  auto v = judge(lookup(passdb::Result::TempFail), kImap);
  EXPECT_FALSE(v.failed_login);
  EXPECT_EQ(v.reply, AuthFailure::TempFail);
  EXPECT_EQ(v.log_error, "db down");
}

TEST(AuthVerdict, NoProxyFieldIsAConfigurationError) {
  auto v = judge(lookup(passdb::Result::Ok, "port=1143"), kImap);
  EXPECT_FALSE(v.proxy);
  EXPECT_TRUE(v.config_error);
  EXPECT_FALSE(v.failed_login);
  EXPECT_EQ(v.reply, AuthFailure::TempFail);
  EXPECT_NE(v.log_error.find("no proxy field"), std::string::npos);
}

TEST(AuthVerdict, NologinIsDisabledWithItsReason) {
  auto v = judge(lookup(passdb::Result::Ok, "nologin reason=moved"), kImap);
  EXPECT_FALSE(v.proxy);
  EXPECT_EQ(v.reply, AuthFailure::Disabled);
  EXPECT_EQ(v.reason, "moved");
  EXPECT_FALSE(v.config_error);
}

TEST(AuthVerdict, HostWithoutProxyIsAReferral) {
  auto v = judge(lookup(passdb::Result::Ok, "host=imap2.example.org nologin"), kImap);
  EXPECT_FALSE(v.proxy);
  EXPECT_FALSE(v.config_error);
  ASSERT_TRUE(v.referral);
  EXPECT_EQ(v.referral->host, "imap2.example.org");
  EXPECT_EQ(v.referral->port, 143);  // the protocol's default
  EXPECT_TRUE(v.referral->nologin);
  EXPECT_EQ(v.referral->user, "alice");  // destuser defaults to the passdb's user
  EXPECT_EQ(v.referral->reason, "Try this server instead.");
  v = judge(lookup(passdb::Result::Ok, "host=10.1.1.1 port=1143 destuser=bob reason=moved"), kImap);
  ASSERT_TRUE(v.referral);
  EXPECT_FALSE(v.referral->nologin);
  EXPECT_EQ(v.referral->user, "bob");
  EXPECT_EQ(v.referral->port, 1143);
  EXPECT_EQ(v.referral->reason, "moved");
  // proxy beats host
  EXPECT_TRUE(judge(lookup(passdb::Result::Ok, "proxy host=10.1.1.1 nologin"), kImap).proxy);
  // a failed login is never referred
  EXPECT_FALSE(judge(lookup(passdb::Result::Mismatch, "host=10.1.1.1 nologin"), kImap).referral);
}

TEST(AuthVerdict, ReferralHostThatWouldBreakTheReplyIsAConfigurationError) {
  for (const char* h : {"a]b", "a)b", "a/b", "a@b", "a\"b"}) {
    auto v = judge(lookup(passdb::Result::Ok, std::string("nologin host=") + h), kImap);
    EXPECT_FALSE(v.referral) << h;
    EXPECT_TRUE(v.config_error) << h;
    EXPECT_EQ(v.reply, AuthFailure::TempFail) << h;
  }
}

TEST(AuthVerdict, AuthorizationAsAnotherUserIsRefused) {
  sasl::Credentials c;
  c.authcid = "alice";
  EXPECT_FALSE(check_identity(c));
  c.authzid = "alice";
  EXPECT_FALSE(check_identity(c));
  c.authzid = "bob";
  auto v = check_identity(c);
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->failed_login);
  EXPECT_EQ(*v->refused, events::AuthRefused::Why::AuthzDenied);
}

TEST(AuthVerdict, BackendParamsTakeDestuserPassAndWipeTheClientPassword) {
  auto ci = client();
  sasl::Credentials c;
  c.authcid = "alice";
  c.password = "client-pw";
  auto p = backend_params(fields("proxy host=10.0.0.5 proxy_mech=plain starttls=yes"), c,
                          "proxy.test", ci);
  EXPECT_EQ(p.user, "alice");
  EXPECT_TRUE(p.password == "client-pw");
  EXPECT_TRUE(c.password.empty());
  EXPECT_EQ(p.mech, "PLAIN");
  EXPECT_TRUE(p.starttls);
  EXPECT_TRUE(p.tls);
  EXPECT_EQ(p.client, &ci);
  c.password = "client-pw";
  auto q = backend_params(fields("proxy host=10.0.0.5 destuser=al pass=backend-pw master=m"), c,
                          "proxy.test", ci);
  EXPECT_EQ(q.user, "al");
  EXPECT_TRUE(q.password == "backend-pw");
  EXPECT_EQ(q.master, "m");
  EXPECT_FALSE(q.tls);
}

// ---- backend driver -------------------------------------------------------------
TEST(BackendDecisions, PrecheckInDovecotsOrder) {
  auto ci = client();
  BackendLoginParams p;
  p.user = "alice";
  auto f = fields("proxy host=10.0.0.5");
  auto ip = asio::ip::make_address("10.0.0.5");
  EXPECT_FALSE(precheck(f, true, ip, ci, p, "alice"));
  passdb::ProxyFields named = f;
  named.host = "not-an-ip";
  auto bad = precheck(named, false, {}, ci, p, "alice");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->type, FailureType::Internal);
  EXPECT_EQ(bad->reason, "Invalid host IP not-an-ip");
  ci.proxy_ttl = 1;
  auto ttl = precheck(f, true, ip, ci, p, "alice");
  ASSERT_TRUE(ttl);
  EXPECT_EQ(ttl->type, FailureType::RemoteConfig);
  ci.proxy_ttl = 5;
  auto self = fields("proxy host=127.0.0.1 port=143");
  auto loop = precheck(self, true, asio::ip::make_address("127.0.0.1"), ci, p, "alice");
  ASSERT_TRUE(loop);
  EXPECT_EQ(loop->reason, "Proxying loops to itself");
  EXPECT_FALSE(precheck(self, true, asio::ip::make_address("127.0.0.1"), ci, p, "bob"))
      << "another user on the same address is no loop (destuser)";
  p.mech = "CRAM-MD5";
  auto mech = precheck(f, true, ip, ci, p, "alice");
  ASSERT_TRUE(mech);
  EXPECT_EQ(mech->reason, "Unsupported SASL mechanism CRAM-MD5");
}

TEST(BackendDecisions, RetryOnlyRetryableWithinBudgetAndTime) {
  EXPECT_EQ(next_after_failure(FailureType::Connect, 0, 3, 5s), AfterFailure::Retry);
  EXPECT_EQ(next_after_failure(FailureType::Connect, 3, 3, 5s), AfterFailure::GiveUp);
  EXPECT_EQ(next_after_failure(FailureType::Connect, 0, 3, 1100ms), AfterFailure::GiveUp)
      << "a retry 1 s later must still have time to log in";
  EXPECT_EQ(next_after_failure(FailureType::AuthReplied, 0, 3, 5s), AfterFailure::GiveUp);
  EXPECT_EQ(next_after_failure(FailureType::InternalConfig, 0, 3, 5s), AfterFailure::GiveUp);
}

TEST(BackendDecisions, DeadlineIsThePassdbsOrTheConfiguredOneClamped) {
  EXPECT_EQ(login_timeout(fields("proxy host=1.2.3.4"), 30s), Clock::duration(30s));
  EXPECT_EQ(login_timeout(fields("proxy host=1.2.3.4 proxy_timeout=5"), 30s),
            Clock::duration(5s));
  passdb::ProxyFields huge = fields("proxy host=1.2.3.4");
  huge.proxy_timeout = std::chrono::milliseconds(std::chrono::milliseconds::max());
  EXPECT_EQ(login_timeout(huge, 30s), Clock::duration(passdb::kMaxProxyTimeout));
}

TEST(BackendDecisions, DestinationText) {
  EXPECT_EQ(dest_text(fields("proxy host=10.0.0.5 port=143"), asio::ip::make_address("10.0.0.5")),
            "10.0.0.5:143");
  EXPECT_EQ(dest_text(fields("proxy host=::1 port=143"), asio::ip::make_address("::1")),
            "[::1]:143");
  EXPECT_EQ(dest_text(fields("proxy host=mail.test hostip=10.0.0.6 port=993"),
                      asio::ip::make_address("10.0.0.6")),
            "mail.test[10.0.0.6]:993");
}

// ---- hand-off ---------------------------------------------------------------------
TEST(Handoff, BackendBytesBehindTheSuccessLineFollowTheReply) {
  std::string leftover = "* 1 EXISTS\r\n";
  EXPECT_EQ(client_first_bytes("a OK Logged in\r\n", leftover),
            "a OK Logged in\r\n* 1 EXISTS\r\n");
  EXPECT_TRUE(leftover.empty());
}

// ---- summaries and counters ----------------------------------------------------------
TEST(LoginSummary, DovecotWording) {
  LoginStats s;
  EXPECT_EQ(s.summary(), "no auth attempts in 0 secs");
  s.attempts = 2;
  EXPECT_EQ(s.summary(), "auth failed, 2 attempts in 0 secs");
  s.last_failure = ProxyFailure{FailureType::AuthReplied, "x", {}};
  EXPECT_EQ(s.summary(), "proxy dest auth failed");
  s.last_failure = ProxyFailure{FailureType::Connect, "connect(10.0.0.5, 143) failed", {}};
  EXPECT_EQ(s.summary(),
            "proxy dest connection failed, 2 attempts in 0 secs, last failure: "
            "connect(10.0.0.5, 143) failed (proxy_dest_connect_failed)");
}

TEST(Counters, FedByEvents) {
  auto& c = Counters::local();
  ProxyFailure f{FailureType::Connect, "x", {}};
  relay::Result r;
  r.in = 10;
  r.out = 20;
  c.count("test-login", events::ProxyStarted{});
  c.count("test-login", events::ProxyFailed{&f, true}, "login/banner");
  c.count("test-login", events::AuthRefused{events::AuthRefused::Why::Mismatch, "x", {}, true});
  c.count("test-login", events::RelayEnded{&r});
  auto all = Counters::sum();
  const auto& s = all.at("test-login");
  EXPECT_EQ(s.logins, 1u);
  EXPECT_EQ(s.auth_failed, 1u);
  EXPECT_EQ(s.relays_ended, 1u);
  EXPECT_EQ(s.bytes_in, 10u);
  EXPECT_EQ(s.bytes_out, 20u);
  EXPECT_EQ((s.proxy_failures.at({"connect", "login/banner"})), 1u);
}

TEST(BackendDecisions, LinesAreCutOnLfWithOneCrDroppedAndLimited) {
  std::string buf = "* OK hi\r\nL OK\npart";
  std::string line;
  EXPECT_EQ(next_backend_line(buf, line), LineCut::Line);
  EXPECT_EQ(line, "* OK hi");
  EXPECT_EQ(next_backend_line(buf, line), LineCut::Line);
  EXPECT_EQ(line, "L OK");
  EXPECT_EQ(next_backend_line(buf, line), LineCut::NeedMore);
  EXPECT_EQ(buf, "part");
  std::string exact(kBackendMaxLine, 'x');
  std::string b2 = exact + "\r\n";
  EXPECT_EQ(next_backend_line(b2, line), LineCut::Line);
  EXPECT_EQ(line.size(), kBackendMaxLine);
  std::string b3 = exact + "y\n";
  EXPECT_EQ(next_backend_line(b3, line), LineCut::TooLong);
  std::string b4(kBackendMaxLine + 2, 'z');  // no LF yet, already too long
  EXPECT_EQ(next_backend_line(b4, line), LineCut::TooLong);
}

TEST(BackendDecisions, RedirectEndpoint) {
  const asio::ip::tcp::endpoint cur(asio::ip::make_address("10.0.0.1"), 143);
  std::vector<asio::ip::tcp::endpoint> visited{cur};
  ClientInfo ci = client();  // TTL 5
  auto ep = [&](std::string_view t, unsigned hops = 0) {
    return redirect_endpoint(t, cur, visited, ci, hops);
  };
  auto ok = [](const auto& r) { return std::get<asio::ip::tcp::endpoint>(r); };
  auto err = [](const auto& r) { return std::get<ProxyFailure>(r); };
  EXPECT_EQ(ok(ep("user1;AUTH=PLAIN@10.0.0.2:1143")),
            asio::ip::tcp::endpoint(asio::ip::make_address("10.0.0.2"), 1143));
  EXPECT_EQ(ok(ep("10.0.0.3")).port(), 143);  // the current port
  EXPECT_EQ(ok(ep("a%40b@[2001:db8::1]:993")),
            asio::ip::tcp::endpoint(asio::ip::make_address("2001:db8::1"), 993));
  EXPECT_EQ(ok(ep("2001:db8::2")).address(), asio::ip::make_address("2001:db8::2"));
  EXPECT_EQ(err(ep("imap.example.org:143")).reason,
            "Redirect to imap.example.org:143: Failed to parse IP 'imap.example.org' (DNS lookups "
            "not supported)");
  EXPECT_EQ(err(ep("imap.example.org")).type, FailureType::InternalConfig);
  for (auto bad : {"", "u@", "10.0.0.2:0", "10.0.0.2:65536", "10.0.0.2:x", "[::1", "[::1]x"})
    EXPECT_EQ(err(ep(bad)).type, FailureType::InternalConfig) << bad;
  EXPECT_EQ(err(ep("10.0.0.1:143")).reason, "Proxying loops - already connected to 10.0.0.1:143");
  // TTL 5: four hops are allowed, the fifth is a loop.
  EXPECT_NO_THROW(ok(ep("10.0.0.9", 3)));
  EXPECT_EQ(err(ep("10.0.0.9", 4)).type, FailureType::RemoteConfig);
}

// ---- proxy_redirect_reauth (§11.6 b 4) ----

TEST(Redirect, TargetParsing) {
  auto ok = [](std::string_view t) { return std::get<RedirectTarget>(parse_redirect_target(t, 143)); };
  RedirectTarget t = ok("user1;AUTH=PLAIN@imap2.example.org:1143");
  EXPECT_EQ(t.user, "user1");
  EXPECT_EQ(t.host, "imap2.example.org");
  EXPECT_EQ(t.port, 1143);
  EXPECT_EQ(t.host_port(), "imap2.example.org:1143");
  t = ok("[2001:db8::1]");
  EXPECT_EQ(t.user, "");
  EXPECT_EQ(t.host_port(), "[2001:db8::1]:143");
  EXPECT_EQ(ok("bob@host").user, "bob");
  EXPECT_EQ(std::get<ProxyFailure>(parse_redirect_target("host:0", 143)).reason,
            "Redirect to host:0: Failed to parse host:port");
  std::vector<asio::ip::tcp::endpoint> v{{asio::ip::make_address("10.0.0.1"), 143},
                                         {asio::ip::make_address("::1"), 993}};
  EXPECT_EQ(attempts_text(v), "10.0.0.1:143,[::1]:993");
}

TEST(Redirect, ReauthVerdict) {
  RedirectTarget t{"bob", "imap2.example.org", 143};
  // proxy: its host/hostip and port; the referral's user is the default destuser.
  auto v = judge_reauth(lookup(passdb::Result::Ok, "proxy host=imap2.example.org hostip=10.0.0.2 port=1143"),
                        kImap, t);
  auto& f = std::get<passdb::ProxyFields>(v);
  EXPECT_EQ(f.hostip, "10.0.0.2");
  EXPECT_EQ(f.port, 1143);
  EXPECT_EQ(f.destuser, "bob");
  v = judge_reauth(lookup(passdb::Result::Ok, "proxy host=10.0.0.2 destuser=carol"), kImap, t);
  EXPECT_EQ(std::get<passdb::ProxyFields>(v).destuser, "carol");
  // A referral without a user: the login user (the passdb's).
  v = judge_reauth(lookup(passdb::Result::Ok, "proxy host=10.0.0.2"), kImap,
                   RedirectTarget{"", "10.0.0.2", 143});
  EXPECT_EQ(std::get<passdb::ProxyFields>(v).destuser, "alice");
  // nologin + host: a referral for the client.
  v = judge_reauth(lookup(passdb::Result::Ok, "nologin host=imap3.example.org port=1993"), kImap, t);
  auto& r = std::get<Referral>(v);
  EXPECT_EQ(r.host, "imap3.example.org");
  EXPECT_EQ(r.port, 1993);
  EXPECT_EQ(r.user, "bob");
  EXPECT_TRUE(r.nologin);
  // Anything else: an internal failure.
  for (const char* reply : {"", "nologin", "host=imap3.example.org", "reason=x"}) {
    v = judge_reauth(lookup(passdb::Result::Ok, reply), kImap, t);
    auto& e = std::get<ProxyFailure>(v);
    EXPECT_EQ(e.type, FailureType::Internal) << reply;
    EXPECT_EQ(e.reason, "Redirect authentication is missing proxy or nologin field") << reply;
  }
  v = judge_reauth(lookup(passdb::Result::TempFail), kImap, t);
  EXPECT_EQ(std::get<ProxyFailure>(v).reason, "Redirect authentication failed: db down");
  v = judge_reauth(lookup(passdb::Result::UnknownUser), kImap, t);
  EXPECT_EQ(std::get<ProxyFailure>(v).reason, "Redirect authentication failed");
  v = judge_reauth(lookup(passdb::Result::Ok, "nologin host=a/b"), kImap, t);
  EXPECT_EQ(std::get<ProxyFailure>(v).type, FailureType::InternalConfig);
}
