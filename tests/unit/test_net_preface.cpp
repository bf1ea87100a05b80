// The haproxy preface (net/haproxy_preface.cpp) on loopback sockets: it takes
// exactly the header from the socket, refuses untrusted senders and bad
// headers, and its deadline ends a trickled header.

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/write.hpp>
#include <chrono>
#include <optional>
#include <string>

#include <gtest/gtest.h>

#include "net/preface.hpp"

using namespace portier;
using asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

struct Pair {
  asio::io_context io;
  tcp::acceptor acc{io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
  tcp::socket client{io};
  tcp::socket server{io};
  Pair() {
    client.connect(acc.local_endpoint());
    server = acc.accept();
  }
  net::Endpoints eps() { return {server.remote_endpoint(), server.local_endpoint()}; }
};

net::PrefaceResult run(Pair& p, bool trusted, std::chrono::milliseconds timeout = 2000ms) {
  net::PrefaceSettings s;
  s.trusted = [trusted](const asio::ip::address&) { return trusted; };
  s.timeout = timeout;
  auto pre = net::make_preface("haproxy", std::move(s));
  EXPECT_TRUE(pre);
  std::optional<net::PrefaceResult> out;
  asio::co_spawn(
      p.io,
      [&]() -> net::Task<void> {
        out = co_await pre->run(p.server, p.eps());
        p.io.stop();  // the worker's deadline timer may stay armed (net/deadline.hpp)
      },
      asio::detached);
  p.io.run();
  EXPECT_TRUE(out);
  return out.value_or(net::PrefaceResult{});
}

std::string rest_of(tcp::socket& s) {
  std::string got(256, '\0');
  asio::error_code ec;
  size_t n = s.read_some(asio::buffer(got), ec);
  got.resize(ec ? 0 : n);
  return got;
}

TEST(NetPreface, TakesExactlyTheHeader) {
  Pair p;
  asio::write(p.client, asio::buffer(std::string("PROXY TCP4 192.0.2.7 198.51.100.1 51234 993\r\n"
                                                 "a1 CAPABILITY\r\n")));
  auto r = run(p, true);
  ASSERT_EQ(r.outcome, net::PrefaceResult::Outcome::Proceed) << r.log;
  EXPECT_EQ(r.endpoints.remote, tcp::endpoint(asio::ip::make_address("192.0.2.7"), 51234));
  EXPECT_EQ(*r.endpoints.local, tcp::endpoint(asio::ip::make_address("198.51.100.1"), 993));
  EXPECT_TRUE(r.leftover.empty());
  EXPECT_EQ(rest_of(p.server), "a1 CAPABILITY\r\n");  // still in the socket
}

TEST(NetPreface, SslAndAuthorityTlvs) {
  Pair p;
  const std::string sig("\r\n\r\n\0\r\nQUIT\n", 12);
  std::string body = std::string("\xC0\x00\x02\x07\x7F\x00\x00\x01\xC8\x22\x00\x8F", 12);
  body += std::string("\x02\x00\x04mail", 7);
  body += std::string("\x20\x00\x05\x01\x00\x00\x00\x00", 8);
  std::string hdr = sig + "\x21\x11" + std::string(1, '\0') + static_cast<char>(body.size()) + body;
  asio::write(p.client, asio::buffer(hdr));
  auto r = run(p, true);
  ASSERT_EQ(r.outcome, net::PrefaceResult::Outcome::Proceed) << r.log;
  EXPECT_TRUE(r.tls);
  EXPECT_EQ(r.local_name, "mail");
  EXPECT_FALSE(r.health_check);
}

TEST(NetPreface, LocalIsAHealthCheckWithTheRealEndpoints) {
  Pair p;
  const std::string local("\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00", 16);
  asio::write(p.client, asio::buffer(local));
  auto r = run(p, true);
  ASSERT_EQ(r.outcome, net::PrefaceResult::Outcome::Proceed);
  EXPECT_TRUE(r.health_check);
  EXPECT_EQ(r.endpoints.remote, p.client.local_endpoint());
}

TEST(NetPreface, UntrustedSenderIsRefusedBeforeReading) {
  Pair p;
  asio::write(p.client, asio::buffer(std::string("PROXY UNKNOWN\r\n")));
  auto r = run(p, false);
  EXPECT_EQ(r.outcome, net::PrefaceResult::Outcome::Refused);
  EXPECT_EQ(r.log, "haproxy: Client not trusted (rip=127.0.0.1)");
  EXPECT_EQ(rest_of(p.server), "PROXY UNKNOWN\r\n");
}

// What the preface says to `bytes` (then, with `eof`, the end of the stream).
std::string refusal(const std::string& bytes, bool eof) {
  Pair p;
  asio::write(p.client, asio::buffer(bytes));
  if (eof) p.client.shutdown(tcp::socket::shutdown_send);
  auto r = run(p, true);
  EXPECT_EQ(r.outcome, net::PrefaceResult::Outcome::Refused);
  return r.log;
}

TEST(NetPreface, GarbageAndEof) {
  EXPECT_EQ(refusal("a1 LOGIN x y\r\n", false),
            "haproxy: Client disconnected: Invalid header (rip=127.0.0.1)");
  EXPECT_EQ(refusal("PROXY TCP4 1.2", true),
            "haproxy(v1): Client disconnected: Truncated header (rip=127.0.0.1)");
  EXPECT_EQ(refusal("", true), "haproxy: Client disconnected: Connection closed (rip=127.0.0.1)");
}

TEST(NetPreface, TrickledHeaderTimesOut) {
  Pair p;
  asio::write(p.client, asio::buffer(std::string("PROXY TCP4 ")));
  const auto start = std::chrono::steady_clock::now();
  auto r = run(p, true, 200ms);
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.outcome, net::PrefaceResult::Outcome::Refused);
  EXPECT_EQ(r.log, "haproxy: Client timed out (rip=127.0.0.1)");
  EXPECT_GE(took, 200ms);
  EXPECT_LT(took, 1500ms);
}

}  // namespace
