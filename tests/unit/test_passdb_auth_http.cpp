// auth_http and static passdb drivers (issue 10): nginx's request (header
// order, escaping), its response parser and decision rules, URL forms,
// config keys; the static driver's answers.
#include <gtest/gtest.h>

#include "result_helpers.hpp"

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>

#include "app/registries.hpp"
#include "login/auth_flow.hpp"
#include "passdb/drivers/auth_http/auth_http.hpp"
#include "passdb/drivers/static/static.hpp"
#include "passdb/registry.hpp"

using namespace portier;
using namespace portier::passdb;
namespace ah = portier::passdb::auth_http;

namespace {

config::LoadResult load(const std::string& passdb) {
  return config::load_string("[[listener]]\nprotocol = \"imap\"\nport = 0\n[[passdb]]\n" + passdb,
                             "/t/portier.toml", app::registries());
}

ah::Settings settings(std::string url = "http://127.0.0.1:9000/auth") {
  ah::Settings s;
  std::string err;
  s.url = *ah::parse_url(url);
  s.url_text = url;
  return s;
}

Request request(std::string_view user, std::string_view pass, std::string_view proto = "imap") {
  Request r;
  r.user = user;
  r.password = pass;
  r.protocol = proto;
  r.mechanism = "PLAIN";
  r.remote_ip = "192.0.2.7";
  r.login_attempt = 1;
  return r;
}

Lookup run(Passdb& db, const Request& r) {
  if (auto l = db.lookup_inline(r)) return *l;
  asio::io_context io;
  Lookup out;
  asio::co_spawn(io, db.lookup(r), [&](std::exception_ptr, Lookup l) { out = std::move(l); });
  io.run();
  return out;
}

}  // namespace

TEST(AuthHttpRequest, EscapesLikeNginx) {
  EXPECT_EQ(ah::escape("a b%c"), "a%20b%25c");
  EXPECT_EQ(ah::escape("x\r\ny\t\x01"), "x%0D%0Ay%09%01");
  EXPECT_EQ(ah::escape("\xc3\xbc\x7f+:/\"'"), "\xc3\xbc\x7f+:/\"'");  // raw above 0x20
  EXPECT_EQ(ah::escape(std::string_view("\0", 1)), "%00");
}

TEST(AuthHttpRequest, HeaderSetAndOrderAsNginx) {
  auto s = settings();
  s.headers = {{"X-Auth-Key", "k1"}, {"X-Other", "v"}};
  auto r = request("alice@example.com", "s3cret pass");
  EXPECT_EQ(ah::build_request(r, s),
            "GET /auth HTTP/1.0\r\n"
            "Host: 127.0.0.1\r\n"
            "Auth-Method: plain\r\n"
            "Auth-User: alice@example.com\r\n"
            "Auth-Pass: s3cret%20pass\r\n"
            "Auth-Protocol: imap\r\n"
            "Auth-Login-Attempt: 1\r\n"
            "Client-IP: 192.0.2.7\r\n"
            "X-Auth-Key: k1\r\n"
            "X-Other: v\r\n"
            "\r\n");
}

TEST(AuthHttpRequest, SmtpTlsAndAttempt) {
  auto s = settings("unix:/run/auth.sock:/mail/auth");
  auto r = request("bob", "pw", "submission");
  r.mechanism = "LOGIN";
  r.login_attempt = 3;
  r.tls = true;
  r.tls_protocol = "TLSv1.3";
  r.tls_cipher = "TLS_AES_256_GCM_SHA384";
  EXPECT_EQ(ah::build_request(r, s),
            "GET /mail/auth HTTP/1.0\r\n"
            "Host: localhost\r\n"
            "Auth-Method: plain\r\n"
            "Auth-User: bob\r\n"
            "Auth-Pass: pw\r\n"
            "Auth-Protocol: smtp\r\n"
            "Auth-Login-Attempt: 3\r\n"
            "Client-IP: 192.0.2.7\r\n"
            "Client-Host: [UNAVAILABLE]\r\n"
            "Auth-SSL: on\r\n"
            "Auth-SSL-Protocol: TLSv1.3\r\n"
            "Auth-SSL-Cipher: TLS_AES_256_GCM_SHA384\r\n"
            "\r\n");
}

TEST(AuthHttpRequest, ProtocolNames) {
  auto s = settings();
  EXPECT_EQ(ah::auth_protocol("imap", s), "imap");
  EXPECT_EQ(ah::auth_protocol("pop3", s), "pop3");
  EXPECT_EQ(ah::auth_protocol("submission", s), "smtp");
  EXPECT_EQ(ah::auth_protocol("managesieve", s), "managesieve");
  s.protocol_managesieve = "sieve";
  EXPECT_EQ(ah::auth_protocol("managesieve", s), "sieve");
}

TEST(AuthHttpUrl, Forms) {
  std::string err;
  auto u = ah::parse_url("127.0.0.1:9000/auth");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, 9000);
  EXPECT_EQ(u->uri, "/auth");
  u = ah::parse_url("http://auth.internal");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "auth.internal");
  EXPECT_EQ(u->port, 80);
  EXPECT_EQ(u->uri, "/");
  u = ah::parse_url("http://[::1]:81/a?b=c");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "[::1]");
  EXPECT_EQ(u->port, 81);
  EXPECT_EQ(u->uri, "/a?b=c");
  u = ah::parse_url("unix:/tmp/a.sock");
  ASSERT_TRUE(u);
  EXPECT_TRUE(u->unix_socket);
  EXPECT_EQ(u->path, "/tmp/a.sock");
  EXPECT_EQ(u->uri, "/");
  EXPECT_FALSE(ah::parse_url("https://x/"));
  EXPECT_FALSE(ah::parse_url("http://x:0/"));
  EXPECT_FALSE(ah::parse_url("http://x:99999/"));
  EXPECT_FALSE(ah::parse_url("http://:80/"));
  EXPECT_FALSE(ah::parse_url("unix:relative"));
  EXPECT_FALSE(ah::parse_url("http://x/a b"));
}

TEST(AuthHttpResponse, ParsesLikeNginx) {
  auto r = ah::parse_response("HTTP/1.0 500 Oops\r\nAuth-Status: OK\r\nauth-server:  10.0.0.5  \n"
                              "Auth-Port: 143\r\nX-Unknown: y\r\n\r\nbody ignored");
  ASSERT_EQ(r.state, ah::Response::State::Complete);
  EXPECT_EQ(*r.get("auth-status"), "OK");
  EXPECT_EQ(*r.get("auth-server"), "10.0.0.5");
  // No status line at all is tolerated.
  EXPECT_EQ(ah::parse_response("Auth-Status: OK\n\n").state, ah::Response::State::Complete);
  // Incomplete until the blank line.
  EXPECT_EQ(ah::parse_response("HTTP/1.0 200 OK\r\nAuth-Status: OK\r\n").state,
            ah::Response::State::Incomplete);
  EXPECT_EQ(ah::parse_response("HTTP/1.0 200").state, ah::Response::State::Incomplete);
  // nginx's header-name alphabet: '_' (or a folded line) makes it invalid.
  EXPECT_EQ(ah::parse_response("Auth_Status: OK\r\n\r\n").state, ah::Response::State::Invalid);
  EXPECT_EQ(ah::parse_response("Auth-Status: OK\r\n  folded\r\n\r\n").state,
            ah::Response::State::Invalid);
  EXPECT_EQ(ah::parse_response("garbage\r\n\r\n").state, ah::Response::State::Invalid);
  EXPECT_EQ(ah::parse_response(std::string_view("A: \0\r\n\r\n", 7)).state, ah::Response::State::Invalid);
  // Over-long header block (1 KiB, as nginx's buffer).
  std::string big = "HTTP/1.0 200 OK\r\nX-Pad: " + std::string(1100, 'a');
  EXPECT_EQ(ah::parse_response(big).state, ah::Response::State::Invalid);
  EXPECT_EQ(ah::parse_response(big.substr(0, ah::kMaxResponse)).state, ah::Response::State::Invalid);
}

TEST(AuthHttpResponse, Decisions) {
  using K = ah::Decision::Kind;
  auto d = ah::decide(ah::parse_response(
      "Auth-Status: OK\r\nAuth-Server: ::1\r\nAuth-Port: 1143\r\nAuth-User: bob\r\nAuth-Pass: x y\r\n\r\n"));
  EXPECT_EQ(d.kind, K::Ok);
  EXPECT_EQ(d.server, "::1");
  EXPECT_EQ(d.port, 1143);
  EXPECT_EQ(*d.user, "bob");
  EXPECT_EQ(*d.pass, "x y");  // verbatim, as nginx
  d = ah::decide(ah::parse_response("Auth-Status: Invalid login or password\r\nAuth-Wait: 3\r\n\r\n"));
  EXPECT_EQ(d.kind, K::Fail);
  EXPECT_EQ(d.text, "Invalid login or password");
  EXPECT_EQ(d.wait.count(), 3);
  EXPECT_EQ(d.error_code, "");
  d = ah::decide(ah::parse_response("Auth-Status: Later\r\nAuth-Error-Code: 451 4.3.0\r\n\r\n"));
  EXPECT_EQ(d.error_code, "451 4.3.0");
  d = ah::decide(ah::parse_response("Auth-Status: Later\r\nAuth-Error-Code: 235 2.7.0\r\n\r\n"));
  EXPECT_EQ(d.error_code, "");  // never a success code
  d = ah::decide(ah::parse_response("Auth-Status: Later\r\nAuth-Error-Code: 451 5.3.0\r\n\r\n"));
  EXPECT_EQ(d.error_code, "");
  d = ah::decide(ah::parse_response("Auth-Status: ok\r\n\r\n"));  // case-sensitive OK
  EXPECT_EQ(d.kind, K::Fail);
  d = ah::decide(ah::parse_response("Auth-Status: No\r\nAuth-Wait: 100000\r\n\r\n"));
  EXPECT_EQ(d.wait, ah::kMaxAuthWait);
  d = ah::decide(ah::parse_response("Auth-Status: WAIT\r\nAuth-Wait: 1\r\n\r\n"));
  EXPECT_EQ(d.kind, K::Wait);
  EXPECT_EQ(d.wait.count(), 1);
  EXPECT_EQ(ah::decide(ah::parse_response("Auth-Status: OK\r\nAuth-Server: 10.0.0.1\r\n\r\n")).kind, K::Error);
  EXPECT_EQ(ah::decide(ah::parse_response("Auth-Status: OK\r\nAuth-Port: 143\r\n\r\n")).kind, K::Error);
  EXPECT_EQ(ah::decide(ah::parse_response(
                "Auth-Status: OK\r\nAuth-Server: backend.example\r\nAuth-Port: 143\r\n\r\n")).kind,
            K::Error);
  EXPECT_EQ(ah::decide(ah::parse_response(
                "Auth-Status: OK\r\nAuth-Server: 10.0.0.1\r\nAuth-Port: 0\r\n\r\n")).kind,
            K::Error);
  EXPECT_EQ(ah::decide(ah::parse_response("X: y\r\n\r\n")).kind, K::Error);
}

TEST(AuthHttpConfig, KeysAndErrors) {
  auto r = load("driver = \"auth_http\"\nurl = \"http://127.0.0.1:9/auth\"\n"
                "headers = { \"X-Auth-Key\" = \"secret-key\" }\ntimeout = \"2s\"\n"
                "protocol_managesieve = \"sieve\"\n");
  ASSERT_TRUE(r.errors.empty()) << r.errors[0].to_string();
  const auto& s = dynamic_cast<const ah::Settings&>(*r.config->passdbs[0].settings);
  EXPECT_EQ(s.url.port, 9);
  EXPECT_EQ(s.timeout.count(), 2000);
  EXPECT_EQ(s.protocol_managesieve, "sieve");
  ASSERT_EQ(s.headers.size(), 1u);
  EXPECT_EQ(s.describe(), "http://127.0.0.1:9/auth");  // no header values
  EXPECT_EQ(ah::kDefaultTimeout.count(), 60000);       // nginx's auth_http_timeout

  r = load("driver = \"auth_http\"\n");
  ASSERT_FALSE(r.errors.empty());
  EXPECT_NE(r.errors[0].to_string().find("missing required key 'url'"), std::string::npos);
  r = load("driver = \"auth_http\"\nurl = \"https://x/\"\n");
  ASSERT_FALSE(r.errors.empty());
  r = load("driver = \"auth_http\"\nurl = \"http://x/\"\nheaders = { \"Bad_Name\" = \"v\" }\n");
  ASSERT_FALSE(r.errors.empty());
  r = load("driver = \"auth_http\"\nurl = \"http://x/\"\nheaders = { \"X\" = \"a\\r\\nEvil: 1\" }\n");
  ASSERT_FALSE(r.errors.empty());
  EXPECT_EQ(r.errors[0].to_string().find("Evil"), std::string::npos);
}

TEST(AuthHttpLookup, ConnectionRefusedIsTempFail) {
  // Port 1 on loopback: nothing listens (connect fails at once).
  auto r = load("driver = \"auth_http\"\nurl = \"http://127.0.0.1:1/auth\"\ntimeout = \"2s\"\n");
  ASSERT_TRUE(r.errors.empty());
  std::string err;
  auto db = portier::testing_util::made(ah::make(r.config->passdbs[0]), err);
  ASSERT_TRUE(db);
  auto l = run(*db, request("u", "p"));
  EXPECT_EQ(l.result, Result::TempFail);
  EXPECT_NE(l.error.find("connect() failed"), std::string::npos) << l.error;
  EXPECT_EQ(l.error.find("p\r"), std::string::npos);
}

TEST(StaticPassdb, Answers) {
  auto r = load("driver = \"static\"\nfields = \"proxy host=10.0.0.5 port=143 nopassword\"\n");
  ASSERT_TRUE(r.errors.empty()) << r.errors[0].to_string();
  std::string err;
  auto db = portier::testing_util::made(static_db::make(r.config->passdbs[0]), err);
  ASSERT_TRUE(db);
  auto l = db->lookup_inline(request("anyone", "whatever"));
  ASSERT_TRUE(l);
  EXPECT_EQ(l->result, Result::Ok);
  EXPECT_EQ(l->passdb, "static");
  EXPECT_EQ(l->reply.user, "anyone");
  EXPECT_EQ(*l->reply.get("host"), "10.0.0.5");
  EXPECT_EQ(*l->reply.get("port"), "143");
  EXPECT_TRUE(l->reply.has("proxy"));

  // A password: verified (cleartext inline, hashed on the pool / this thread).
  r = load("driver = \"static\"\nfields = \"proxy host=10.0.0.5\"\npassword = \"{PLAIN}sesame\"\n");
  ASSERT_TRUE(r.errors.empty());
  db = portier::testing_util::made(static_db::make(r.config->passdbs[0]), err);
  EXPECT_EQ(db->lookup_inline(request("u", "sesame"))->result, Result::Ok);
  EXPECT_EQ(db->lookup_inline(request("u", "wrong"))->result, Result::Mismatch);
  auto lo = request("u", "");
  lo.lookup_only = true;
  EXPECT_EQ(db->lookup_inline(lo)->result, Result::Ok);

  // Dovecot's args form: password= inside fields, and a hashed one.
  r = load("driver = \"static\"\nfields = \"proxy host=10.0.0.5 password={SHA256-CRYPT}"
           "$5$saltsalt$eSB8Gpd0yAcJaGTA3YL4Yb5q2Cnvmht6pJJUXQW7Ap7\"\n");
  ASSERT_TRUE(r.errors.empty());
  db = portier::testing_util::made(static_db::make(r.config->passdbs[0]), err);
  ASSERT_TRUE(db);
  EXPECT_FALSE(db->lookup_inline(request("u", "x")));  // needs hashing
  auto hashed = run(*db, request("u", "wrong"));
  EXPECT_EQ(hashed.result, Result::Mismatch);
  EXPECT_FALSE(hashed.reply.has("password"));

  // Neither password nor nopassword: nobody gets in.
  r = load("driver = \"static\"\nfields = \"proxy host=10.0.0.5\"\n");
  db = portier::testing_util::made(static_db::make(r.config->passdbs[0]), err);
  EXPECT_EQ(db->lookup_inline(request("u", "x"))->result, Result::Mismatch);
}

// The engine shows a failed lookup's `reason` (auth_http's Auth-Status text)
// to the client and still counts it as a failed login.
TEST(AuthHttpVerdict, FailureTextReachesTheClientReply) {
  const login::Protocol imap{"imap", "imap-login", 143, 993, nullptr};
  Lookup l;
  l.result = Result::Mismatch;
  l.reply.set("reason", "Invalid login or password");
  auto v = login::judge(l, imap);
  EXPECT_FALSE(v.proxy);
  EXPECT_TRUE(v.failed_login);
  EXPECT_EQ(v.reply, login::AuthFailure::Failed);
  EXPECT_EQ(v.reason, "Invalid login or password");
  EXPECT_FALSE(v.disconnect);
  l.disconnect = true;  // auth_http failure without Auth-Wait
  EXPECT_TRUE(login::judge(l, imap).disconnect);
  l.reply.fields.clear();
  EXPECT_EQ(login::judge(l, imap).reason, "");
}

// OK answers become proxy fields the engine proxies with, and a non-empty
// Auth-Pass replaces the client's password towards the backend.
TEST(AuthHttpVerdict, OkBecomesProxyFields) {
  auto r = load("driver = \"auth_http\"\nurl = \"http://127.0.0.1:9/auth\"\n"
                "override_fields = \"starttls=yes\"\n");
  ASSERT_TRUE(r.errors.empty());
  std::string err;
  auto db = portier::testing_util::made(ah::make(r.config->passdbs[0]), err);
  auto* http = dynamic_cast<ah::AuthHttp*>(db.get());
  ASSERT_TRUE(http);
  ah::Decision d = ah::decide(ah::parse_response(
      "Auth-Status: OK\r\nAuth-Server: 10.1.2.3\r\nAuth-Port: 1143\r\nAuth-User: real\r\nAuth-Pass: tok\r\n\r\n"));
  ah::Decision fail_now = ah::decide(ah::parse_response("Auth-Status: No\r\n\r\n"));
  EXPECT_TRUE(http->answer_for_test(request("u", "p"), fail_now).disconnect);
  ah::Decision fail_wait = ah::decide(ah::parse_response("Auth-Status: No\r\nAuth-Wait: 1\r\n\r\n"));
  EXPECT_FALSE(http->answer_for_test(request("u", "p"), fail_wait).disconnect);
  Lookup l = http->answer_for_test(request("alias", "pw"), d);
  EXPECT_EQ(l.result, Result::Ok);
  const login::Protocol imap{"imap", "imap-login", 143, 993, nullptr};
  auto v = login::judge(l, imap);
  ASSERT_TRUE(v.proxy);
  EXPECT_EQ(v.fields.host, "10.1.2.3");
  EXPECT_EQ(v.fields.port, 1143);
  EXPECT_EQ(v.fields.destuser, "real");
  EXPECT_EQ(*v.fields.pass, "tok");
  EXPECT_EQ(v.fields.tls, BackendTls::StartTls);
}

TEST(AuthHttpLookup, HostNameIsResolvedOffTheLoop) {
  auto r = load("driver = \"auth_http\"\nurl = \"http://localhost:1/auth\"\ntimeout = \"2s\"\n");
  ASSERT_TRUE(r.errors.empty());
  std::string err;
  auto db = portier::testing_util::made(ah::make(r.config->passdbs[0]), err);
  auto l = run(*db, request("u", "p"));
  EXPECT_EQ(l.result, Result::TempFail);
  // Resolved (to a loopback address), then refused: the connect step failed.
  EXPECT_NE(l.error.find("connect() failed"), std::string::npos) << l.error;
}
