#include <gtest/gtest.h>

#include "passdb/proxy_fields.hpp"

using namespace portier::passdb;
using namespace std::chrono_literals;
using Fields = std::vector<std::pair<std::string, std::string>>;

namespace {

Reply make(Fields f, std::string user = "alice") {
  Reply r;
  r.user = std::move(user);
  r.fields = std::move(f);
  return r;
}

ProxyFields ok(const Fields& f, const std::string& user = "alice") {
  auto r = parse_proxy_fields(make(f, user), 143, 993);
  EXPECT_TRUE(r.fields.has_value()) << r.error;
  EXPECT_TRUE(r.error.empty());
  return r.fields.value_or(ProxyFields{});
}

TEST(PassdbProxyFields, Minimal) {
  auto f = ok({{"proxy", ""}, {"host", "192.0.2.1"}});
  EXPECT_TRUE(f.proxy);
  EXPECT_EQ(f.host, "192.0.2.1");
  EXPECT_EQ(f.hostip, "");
  EXPECT_EQ(f.port, 143);
  EXPECT_EQ(f.tls, BackendTls::None);
  EXPECT_FALSE(f.any_cert);
  EXPECT_EQ(f.destuser, "alice");
  EXPECT_FALSE(f.pass);
  EXPECT_EQ(f.master, "");
  EXPECT_FALSE(f.proxy_timeout);
  EXPECT_FALSE(f.nopipelining || f.not_trusted || f.nologin || f.nopassword);
}

TEST(PassdbProxyFields, NotProxy) {
  auto f = ok({{"nologin", ""}, {"reason", "Go away"}});
  EXPECT_FALSE(f.proxy);
  EXPECT_TRUE(f.nologin);
  EXPECT_EQ(f.reason, "Go away");
  // No host needed without proxy.
  EXPECT_FALSE(ok({}).proxy);
  // proxy=n explicitly off.
  EXPECT_FALSE(ok({{"proxy", "n"}}).proxy);
  EXPECT_FALSE(ok({{"proxy", "no"}}).proxy);
  EXPECT_TRUE(ok({{"proxy", "y"}, {"host", "::1"}}).proxy);
}

TEST(PassdbProxyFields, AllFields) {
  auto f = ok({{"proxy", "y"},
               {"host", "backend.example.org"},
               {"hostip", "2001:db8::1"},
               {"port", "10143"},
               {"starttls", "any-cert"},
               {"destuser", "alice@example.org"},
               {"pass", "p w"},
               {"master", "admin"},
               {"proxy_mech", "PLAIN"},
               {"proxy_timeout", "500ms"},
               {"proxy_nopipelining", ""},
               {"proxy_not_trusted", ""},
               {"proxy_redirect_reauth", ""},
               {"proxy_noauth", ""},
               {"source_ip", "192.0.2.99"},
               {"nopassword", ""},
               {"forward_x_session", "abc"},
               {"forward_foo", ""},
               {"unrelated", "ignored"}});
  EXPECT_EQ(f.host, "backend.example.org");
  EXPECT_EQ(f.hostip, "2001:db8::1");
  EXPECT_EQ(f.port, 10143);
  EXPECT_EQ(f.tls, BackendTls::StartTls);
  EXPECT_TRUE(f.any_cert);
  EXPECT_EQ(f.destuser, "alice@example.org");
  EXPECT_EQ(f.pass, "p w");
  EXPECT_EQ(f.master, "admin");
  EXPECT_EQ(f.proxy_mech, "PLAIN");
  EXPECT_EQ(f.proxy_timeout, 500ms);
  EXPECT_TRUE(f.noauth);
  EXPECT_TRUE(f.nopipelining);
  EXPECT_TRUE(f.not_trusted);
  EXPECT_TRUE(f.redirect_reauth);
  EXPECT_EQ(f.source_ip, "192.0.2.99");
  EXPECT_TRUE(f.nopassword);
  EXPECT_EQ(f.forward, (Fields{{"x_session", "abc"}, {"foo", ""}}));
}

struct TlsCase {
  Fields f;
  BackendTls tls;
  bool any_cert;
  uint16_t port;
};

TEST(PassdbProxyFields, TlsAndDefaultPorts) {
  const TlsCase cases[] = {
      {{}, BackendTls::None, false, 143},
      {{{"ssl", "yes"}}, BackendTls::Implicit, false, 993},
      {{{"ssl", "any-cert"}}, BackendTls::Implicit, true, 993},
      {{{"ssl", "no"}}, BackendTls::None, false, 143},  // deliberately unlike Dovecot
      {{{"ssl", ""}}, BackendTls::None, false, 143},
      {{{"ssl", "maybe"}}, BackendTls::None, false, 143},
      {{{"starttls", "yes"}}, BackendTls::StartTls, false, 143},
      {{{"starttls", "any-cert"}}, BackendTls::StartTls, true, 143},
      {{{"starttls", "no"}}, BackendTls::None, false, 143},
      {{{"ssl", "yes"}, {"starttls", "yes"}}, BackendTls::StartTls, false, 143},
      {{{"starttls", "yes"}, {"ssl", "yes"}}, BackendTls::StartTls, false, 143},
      {{{"ssl", "yes"}, {"port", "1993"}}, BackendTls::Implicit, false, 1993},
      {{{"port", "1"}}, BackendTls::None, false, 1},
      {{{"port", "65535"}}, BackendTls::None, false, 65535},
  };
  for (const auto& c : cases) {
    Fields f = c.f;
    f.emplace_back("proxy", "");
    f.emplace_back("host", "10.0.0.1");
    auto p = ok(f);
    std::string trace;
    for (auto& [k, v] : c.f) trace += k + "=" + v + " ";
    EXPECT_EQ(p.tls, c.tls) << trace;
    EXPECT_EQ(p.any_cert, c.any_cert) << trace;
    EXPECT_EQ(p.port, c.port) << trace;
  }
}

TEST(PassdbProxyFields, ProxyTimeout) {
  auto t = [](const char* v) {
    return ok({{"proxy", ""}, {"host", "10.0.0.1"}, {"proxy_timeout", v}}).proxy_timeout;
  };
  EXPECT_EQ(t("30"), 30s);  // bare number = seconds
  EXPECT_EQ(t("30s"), 30s);
  EXPECT_EQ(t("1500ms"), 1500ms);
  EXPECT_EQ(t("2m"), 2min);
  EXPECT_EQ(t("0"), 0ms);
}

// Issue 8 item 10: a proxy_timeout near 2^63 ms overflowed `now + timeout`
// (undefined behaviour); it is clamped to kMaxProxyTimeout (one day).
TEST(PassdbProxyFields, ProxyTimeoutIsClamped) {
  auto t = [](const char* v) {
    return ok({{"proxy", ""}, {"host", "10.0.0.1"}, {"proxy_timeout", v}}).proxy_timeout;
  };
  EXPECT_EQ(t("9223372036854775807ms"), kMaxProxyTimeout);
  EXPECT_EQ(t("9223372036854775s"), kMaxProxyTimeout);
  EXPECT_EQ(t("2562047788015h"), kMaxProxyTimeout);
  EXPECT_EQ(t("86400"), kMaxProxyTimeout);  // exactly the limit
  EXPECT_EQ(t("86399"), 86399s);
  // The clamped value can be added to a steady_clock time point without overflow.
  auto now = std::chrono::steady_clock::now();
  EXPECT_GT(now + *t("9223372036854775807ms"), now);
}

struct ErrCase {
  Fields f;
  std::string error;
};

TEST(PassdbProxyFields, Errors) {
  const ErrCase cases[] = {
      {{{"proxy", ""}}, "proxy: host field not given"},
      {{{"proxy", ""}, {"host", ""}}, "proxy: host field not given"},
      {{{"proxy", ""}, {"host", "foo"}}, "proxy: host foo is not an IP (auth should have changed it)"},
      {{{"proxy", ""}, {"host", "foo"}, {"hostip", "bar"}}, "proxy: Invalid hostip in passdb: bar"},
      {{{"hostip", "999.1.1.1"}}, "proxy: Invalid hostip in passdb: 999.1.1.1"},
      {{{"proxy", ""}, {"host", "10.0.0.1"}, {"hostip", "10.0.0.2"}},
       "host and hostip are both IPs, but they don't match"},
      {{{"port", "70000"}}, "Auth service returned invalid port value '70000': must be 1..65535"},
      {{{"port", "0"}}, "Auth service returned invalid port value '0': must be 1..65535"},
      {{{"port", "abc"}}, "Auth service returned invalid port value 'abc': must be 1..65535"},
      {{{"port", ""}}, "Auth service returned invalid port value '': must be 1..65535"},
      {{{"port", "-1"}}, "Auth service returned invalid port value '-1': must be 1..65535"},
      {{{"proxy_timeout", "soon"}}, "Auth service returned invalid proxy_timeout value 'soon'"},
      {{{"proxy_timeout", "1.5s"}}, "Auth service returned invalid proxy_timeout value '1.5s'"},
      {{{"source_ip", "nope"}}, "proxy: Invalid source_ip in passdb: nope"},
      {{{"destuser", "a\r\nb"}}, "proxy: invalid characters in destuser"},
      {{{"pass", std::string("s3cr\0et", 7)}}, "proxy: invalid characters in pass"},
      {{{"pass", "top\nsecret"}}, "proxy: invalid characters in pass"},
      {{{"master", "m\r"}}, "proxy: invalid characters in master"},
  };
  for (const auto& c : cases) {
    auto r = parse_proxy_fields(make(c.f), 143, 993);
    EXPECT_FALSE(r.fields.has_value()) << c.error;
    EXPECT_EQ(r.error, c.error);
    EXPECT_EQ(r.error.find("secret"), std::string::npos);
  }
}

TEST(PassdbProxyFields, HostVariants) {
  // Name plus hostip: OK (host is used for SNI / certificate checks).
  auto f = ok({{"proxy", ""}, {"host", "imap.example.org"}, {"hostip", "192.0.2.5"}});
  EXPECT_EQ(f.host, "imap.example.org");
  EXPECT_EQ(f.hostip, "192.0.2.5");
  // Same IP in both.
  ok({{"proxy", ""}, {"host", "192.0.2.5"}, {"hostip", "192.0.2.5"}});
  ok({{"proxy", ""}, {"host", "2001:db8::1"}, {"hostip", "2001:db8:0::1"}});  // same address, other spelling
  ok({{"proxy", ""}, {"host", "::1"}});
  // Empty hostip counts as not given.
  auto r = parse_proxy_fields(make({{"proxy", ""}, {"host", "name"}, {"hostip", ""}}), 143, 993);
  EXPECT_EQ(r.error, "proxy: host name is not an IP (auth should have changed it)");
}

TEST(PassdbProxyFields, DestuserDefaultsToReplyUser) {
  EXPECT_EQ(ok({{"proxy", ""}, {"host", "::1"}}, "bob@x").destuser, "bob@x");
  EXPECT_EQ(ok({{"proxy", ""}, {"host", "::1"}, {"destuser", "carol"}}, "bob").destuser, "carol");
  EXPECT_EQ(ok({{"pass", ""}}).pass, "");  // present but empty != absent
}

}  // namespace

TEST(ProxyFieldsNoTlsPort, SslWithoutPortIsRefusedWhenProtocolHasNoTlsPort) {
  portier::passdb::Reply r;
  r.user = "u";
  r.fields = {{"proxy", ""}, {"host", "127.0.0.1"}, {"ssl", "yes"}};
  auto res = portier::passdb::parse_proxy_fields(r, 4190, 0);
  EXPECT_FALSE(res.fields);
  EXPECT_NE(res.error.find("explicit port"), std::string::npos);
  r.fields.push_back({"port", "4191"});
  EXPECT_TRUE(portier::passdb::parse_proxy_fields(r, 4190, 0).fields);
}
