// Dovecot %variables (passdb/vars.hpp): 2.3 and 2.4 forms expand alike,
// unknown variables are rejected at compile time, every value goes through
// the driver's escaper (hostile user names cannot change the template's
// literal text), the used variables are exposed for a cache key.
#include <gtest/gtest.h>

#include <unistd.h>

#include "passdb/vars.hpp"

using namespace portier::passdb;

namespace {

Request sample() {
  Request r;
  r.user = "Alice.Smith@Example.ORG";
  r.password = "s3cret";
  r.protocol = "imap";
  r.service = "imap-login";
  r.mechanism = "PLAIN";
  r.remote_ip = "192.0.2.7";
  r.remote_port = 51234;
  r.local_ip = "198.51.100.1";
  r.local_port = 143;
  r.session_id = "abcDEF123";
  r.local_name = "mail.example.org";
  r.tls = true;
  return r;
}

void raw(std::string& out, std::string_view v) { out.append(v); }
// SQL-literal style: double single quotes.
void sql(std::string& out, std::string_view v) {
  for (char c : v) {
    if (c == '\'') out += '\'';
    out += c;
  }
}

std::string expand(std::string_view t, const Request& r = sample(), const Escaper& e = raw) {
  auto tpl = Template::compile(t);
  EXPECT_TRUE(tpl) << t << ": " << (tpl ? "" : tpl.error().message);
  if (!tpl) return "<error>";
  std::string out;
  EXPECT_TRUE(tpl->expand(r, e, out));
  return out;
}

std::string compile_error(std::string_view t) {
  auto tpl = Template::compile(t);
  EXPECT_FALSE(tpl) << t;
  return tpl ? std::string() : tpl.error().message;
}

}  // namespace

TEST(PassdbVars, Dovecot23ShortForms) {
  EXPECT_EQ(expand("%u|%n|%d|%s|%r|%l|%a|%b|%m|%c|%w"),
            "Alice.Smith@Example.ORG|Alice.Smith|Example.ORG|imap|192.0.2.7|198.51.100.1|143|51234|PLAIN|TLS|s3cret");
  EXPECT_EQ(expand("%Lu %Ln %Ld %Uu"), "alice.smith@example.org alice.smith example.org ALICE.SMITH@EXAMPLE.ORG");
  EXPECT_EQ(expand("100%% of %u"), "100% of Alice.Smith@Example.ORG");
  EXPECT_EQ(expand("%p"), std::to_string(::getpid()));
}

TEST(PassdbVars, LongAndDovecot24FormsMatchShortOnes) {
  EXPECT_EQ(expand("%{user}"), expand("%u"));
  EXPECT_EQ(expand("%{username}"), expand("%n"));
  EXPECT_EQ(expand("%{user | username}"), expand("%n"));
  EXPECT_EQ(expand("%{user|domain}"), expand("%d"));
  EXPECT_EQ(expand("%{domain}"), expand("%d"));
  EXPECT_EQ(expand("%{user | lower}"), expand("%Lu"));
  EXPECT_EQ(expand("%L{user}"), expand("%Lu"));
  EXPECT_EQ(expand("%{user | username | lower}"), expand("%Ln"));
  EXPECT_EQ(expand("%{service}"), expand("%s"));
  EXPECT_EQ(expand("%{protocol}"), expand("%s"));
  EXPECT_EQ(expand("%{remote_ip}/%{rip}"), "192.0.2.7/192.0.2.7");
  EXPECT_EQ(expand("%{local_ip}/%{lip}"), "198.51.100.1/198.51.100.1");
  EXPECT_EQ(expand("%{remote_port} %{local_port}"), "51234 143");
  EXPECT_EQ(expand("%{session} %{local_name} %{mechanism} %{secured}"), "abcDEF123 mail.example.org PLAIN TLS");
  EXPECT_EQ(expand("%{password}"), expand("%w"));
}

TEST(PassdbVars, ServiceNamesAndEdgeValues) {
  Request r = sample();
  r.protocol = "managesieve";
  EXPECT_EQ(expand("%s", r), "sieve");  // Dovecot's service name
  r.protocol = "submission";
  EXPECT_EQ(expand("%{protocol}", r), "submission");
  r.user = "nodomain";
  EXPECT_EQ(expand("[%n][%d]", r), "[nodomain][]");
  r.user = "a@b@c";
  EXPECT_EQ(expand("[%n][%d]", r), "[a][b@c]");
  r.tls = false;
  r.secured = true;
  EXPECT_EQ(expand("%c", r), "secured");
  r.secured = false;
  EXPECT_EQ(expand("[%c]", r), "[]");
}

TEST(PassdbVars, UnknownVariablesAreCompileErrors) {
  EXPECT_NE(compile_error("x = '%{nosuch}'").find("unknown variable '%{nosuch}'"), std::string::npos);
  EXPECT_NE(compile_error("%q").find("unknown variable '%q'"), std::string::npos);
  EXPECT_NE(compile_error("%{user | md5}").find("unsupported filter 'md5'"), std::string::npos);
  EXPECT_NE(compile_error("%{user").find("unterminated"), std::string::npos);
  EXPECT_NE(compile_error("trailing %").find("end of the template"), std::string::npos);
  EXPECT_NE(compile_error("%L").find("end of the template"), std::string::npos);
}

TEST(PassdbVars, VariablesUsedAndKey) {
  auto t = Template::compile("SELECT '%u', '%{user}', '%{remote_ip}', '%w'");
  ASSERT_TRUE(t);
  ASSERT_EQ(t->variables().size(), 3u);
  EXPECT_EQ(t->variables()[0], Var::User);
  EXPECT_EQ(t->variables()[1], Var::RemoteIp);
  EXPECT_TRUE(t->uses_password());
  EXPECT_EQ(var_name(Var::RemoteIp), "remote_ip");
  // The key never holds the password.
  EXPECT_EQ(t->key(sample()), "Alice.Smith@Example.ORG\x1f" "192.0.2.7");
  auto none = Template::compile("SELECT 1");
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->variables().empty());
}

TEST(PassdbVars, HostileUserNamesOnlyReachTheEscaper) {
  const std::string tpl = "SELECT password FROM users WHERE userid = '%u' AND d = '%d'";
  const std::string hostile[] = {
      "x' OR '1'='1",       "a\"b",         "back\\slash'", "100%u%%",   "*)(uid=*",  "a,b=c",
      "line\r\nbreak'",    std::string(1024, '\''),         "%{user}",   "' ; DROP TABLE users; --@x'y",
  };
  for (const auto& h : hostile) {
    Request r = sample();
    r.user = h;
    std::string out = expand(tpl, r, sql);
    // Undo the escaping: what is between the quotes must be exactly the value.
    std::string expect = "SELECT password FROM users WHERE userid = '";
    sql(expect, h);
    expect += "' AND d = '";
    auto at = h.find('@');
    sql(expect, at == std::string::npos ? std::string() : h.substr(at + 1));
    expect += "'";
    EXPECT_EQ(out, expect) << h;
  }
}

TEST(PassdbVars, NulInAValueIsRefused) {
  auto t = Template::compile("'%u'");
  ASSERT_TRUE(t);
  Request r = sample();
  const std::string nul("a\0' OR 1=1 --", 13);
  r.user = nul;
  std::string out = "junk";
  EXPECT_FALSE(t->expand(r, sql, out));
  EXPECT_TRUE(out.empty());
}

// proxy_redirect_reauth: the referral's destination and the destinations
// tried, empty on an ordinary login; an owning copy keeps them.
TEST(PassdbVars, RedirectReauthVariables) {
  Request r = sample();
  EXPECT_EQ(expand("[%{proxy_redirect_host_next}][%{proxy_redirect_host_attempts}]", r), "[][]");
  r.redirect_host_next = "imap2.example.org:143";
  r.redirect_host_attempts = "10.0.0.1:143,10.0.0.2:143";
  const std::string t = "%{proxy_redirect_host_next} %{proxy_redirect_host_attempts}";
  EXPECT_EQ(expand(t, r), "imap2.example.org:143 10.0.0.1:143,10.0.0.2:143");
  RequestCopy copy(r);
  EXPECT_EQ(expand(t, copy.view()), "imap2.example.org:143 10.0.0.1:143,10.0.0.2:143");
  auto tpl = Template::compile(t);
  ASSERT_TRUE(tpl);
  EXPECT_EQ(tpl->key(r), "imap2.example.org:143\x1f" "10.0.0.1:143,10.0.0.2:143");
}
