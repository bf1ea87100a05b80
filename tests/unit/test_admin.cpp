// admin/: the HTTP request parser, user masks, delays, filters.
#include <gtest/gtest.h>

#include "admin/api.hpp"
#include "admin/http.hpp"

using namespace portier::admin;

TEST(AdminHttp, ParsesRequestInPiecesAndStopsAtItsEnd) {
  RequestParser p(4096);
  std::string req =
      "POST /doveadm/v1?x=1 HTTP/1.1\r\nHost: a\r\nAuthori";
  std::string rest = "zation: Bearer k\r\nContent-Length: 2\r\n\r\n[]GET /metrics HTTP/1.1\r\n\r\n";
  EXPECT_EQ(p.feed(req), req.size());
  EXPECT_EQ(p.state(), RequestParser::State::NeedMore);
  size_t used = p.feed(rest);
  ASSERT_EQ(p.state(), RequestParser::State::Complete);
  Request r = p.take();
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.path(), "/doveadm/v1");
  ASSERT_NE(r.header("authorization"), nullptr);
  EXPECT_EQ(*r.header("authorization"), "Bearer k");
  EXPECT_EQ(r.body, "[]");
  EXPECT_TRUE(r.keep_alive);
  p.reset();
  p.feed(std::string_view(rest).substr(used));
  ASSERT_EQ(p.state(), RequestParser::State::Complete);
  EXPECT_EQ(p.take().path(), "/metrics");
}

TEST(AdminHttp, RefusesGarbageOversizeAndChunked) {
  {
    RequestParser p(4096);
    p.feed("\x16\x03\x01 hello\r\n\r\n");
    EXPECT_EQ(p.state(), RequestParser::State::Error);
    EXPECT_EQ(p.error_status(), 400);
  }
  {
    RequestParser p(1024);
    p.feed("GET / HTTP/1.1\r\nX: " + std::string(2000, 'a'));
    EXPECT_EQ(p.state(), RequestParser::State::Error);
    EXPECT_EQ(p.error_status(), 413);
  }
  {
    RequestParser p(1024);
    p.feed("POST / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n");
    EXPECT_EQ(p.state(), RequestParser::State::Error);
    EXPECT_EQ(p.error_status(), 413);
  }
  {
    RequestParser p(1024);
    p.feed("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    EXPECT_EQ(p.error_status(), 411);
  }
  {
    RequestParser p(1024);
    p.feed("GET / HTTP/1.0\r\n\r\n");
    ASSERT_EQ(p.state(), RequestParser::State::Complete);
    EXPECT_FALSE(p.take().keep_alive);
  }
}

TEST(AdminApi, MasksDelaysFilters) {
  EXPECT_TRUE(mask_match("user*", "user1"));
  EXPECT_TRUE(mask_match("u?er1", "user1"));
  EXPECT_TRUE(mask_match("*", ""));
  EXPECT_TRUE(mask_match("*@example.org", "a@example.org"));
  EXPECT_FALSE(mask_match("user", "user1"));
  EXPECT_FALSE(mask_match("*x", "user1"));
  EXPECT_EQ(parse_delay(nlohmann::json("10s")), std::chrono::seconds(10));
  EXPECT_EQ(parse_delay(nlohmann::json("250ms")), std::chrono::milliseconds(250));
  EXPECT_EQ(parse_delay(nlohmann::json(1.5)), std::chrono::milliseconds(1500));
  EXPECT_EQ(parse_delay(nlohmann::json("2m")), std::chrono::minutes(2));
  EXPECT_FALSE(parse_delay(nlohmann::json("2h")));
  EXPECT_FALSE(parse_delay(nlohmann::json(-1)));
  EXPECT_FALSE(parse_delay(nlohmann::json("5000s")));

  portier::login::SessionRow r;
  r.user = "jane";
  r.src_ip = "10.1.2.3";
  portier::login::set_dest(r, "db1[10.0.0.5]:143");
  EXPECT_EQ(r.dest_ip, "10.0.0.5");
  EXPECT_EQ(r.dest_port, 143);
  Filter f;
  f.hosts = {"db1"};
  EXPECT_TRUE(f.matches(r));
  f.hosts = {"10.0.0.5"};
  EXPECT_TRUE(f.matches(r));
  f.net = portier::config::parse_cidr("10.1.0.0/16");
  EXPECT_TRUE(f.matches(r));
  f.net = portier::config::parse_cidr("10.2.0.0/16");
  EXPECT_FALSE(f.matches(r));
  portier::login::SessionRow v6;
  portier::login::set_dest(v6, "[::1]:993");
  EXPECT_EQ(v6.dest_ip, "::1");
  EXPECT_EQ(v6.dest_port, 993);
}

#include "app/registries.hpp"
#include "config/config.hpp"

namespace {
portier::config::LoadResult load_admin(const std::string& admin) {
  return portier::config::load_string(
      "[[listener]]\nprotocol = \"imap\"\nport = 143\n[[passdb]]\ndriver = \"passwd-file\"\n"
      "path = \"users\"\n[admin]\n" + admin,
      "/etc/portier/portier.toml", portier::app::registries());
}
}  // namespace

TEST(AdminConfig, ListenSocketAndErrors) {
  auto ok = load_admin("listen = \"[::1]:0\"\napi_key = \"0123456789abcdef\"\nsocket = \"a.sock\"\n"
                       "timeout = \"2s\"\n");
  ASSERT_TRUE(ok.config) << (ok.errors.empty() ? "" : ok.errors[0].to_string());
  EXPECT_EQ(ok.config->admin.listen_address, "::1");
  EXPECT_EQ(ok.config->admin.listen_port, 0);
  EXPECT_EQ(ok.config->admin.socket, "/etc/portier/a.sock");
  EXPECT_EQ(ok.config->admin.timeout, std::chrono::seconds(2));
  for (const char* bad : {"listen = \"127.0.0.1:9143\"\n",                        // no key
                          "listen = \"localhost:9143\"\napi_key = \"0123456789abcdef\"\n",
                          "listen = \"127.0.0.1:99999\"\napi_key = \"0123456789abcdef\"\n",
                          "listen = \"127.0.0.1:1\"\napi_key = \"short\"\n",
                          "cert = \"c.pem\"\n", "bogus = 1\n"}) {
    auto r = load_admin(bad);
    EXPECT_FALSE(r.config) << bad;
    ASSERT_FALSE(r.errors.empty()) << bad;
    EXPECT_EQ(r.errors[0].to_string().find("0123456789abcdef"), std::string::npos);
  }
}
