// The PROXY protocol parser and serializer (net/proxy_protocol), sans-I/O.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "app/registries.hpp"
#include "config/config.hpp"
#include "login/backend_driver.hpp"
#include "net/proxy_protocol.hpp"
#include "passdb/proxy_fields.hpp"
#include "passdb/registry.hpp"

using namespace portier::net::proxy;
using asio::ip::make_address;
using asio::ip::tcp;

namespace {

std::string hex(std::string_view h) {
  std::string out;
  for (size_t i = 0; i + 1 < h.size(); i += 2) {
    if (h[i] == ' ') {
      --i;
      continue;
    }
    out += static_cast<char>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16));
  }
  return out;
}

// The spec's example: TCP4 192.0.2.7:51234 -> 198.51.100.1:993, no TLVs.
const std::string kV2Tcp4 = hex("0D0A0D0A000D0A515549540A 21 11 000C C0000207 C6336401 C822 03E1");

std::string v2(uint8_t ver_cmd, uint8_t fam, std::string body) {
  std::string out(kV2Signature);
  out += static_cast<char>(ver_cmd);
  out += static_cast<char>(fam);
  out += static_cast<char>(body.size() >> 8);
  out += static_cast<char>(body.size() & 0xff);
  return out + body;
}

std::string tlv(uint8_t type, std::string_view v) {
  std::string out(1, static_cast<char>(type));
  out += static_cast<char>(v.size() >> 8);
  out += static_cast<char>(v.size() & 0xff);
  return out + std::string(v);
}

std::string inet_block() { return hex("C0000207 C6336401 C822 03E1"); }

Result done(std::string_view data) {
  Result r = parse(data);
  EXPECT_EQ(r.status, Status::Done) << r.error;
  return r;
}

std::string error_of(std::string_view data) {
  Result r = parse(data);
  EXPECT_EQ(r.status, Status::Error);
  return r.error;
}

// ---- v1 -----------------------------------------------------------------------

TEST(ProxyProtocolV1, Tcp4) {
  const std::string line = "PROXY TCP4 192.0.2.7 198.51.100.1 51234 993\r\n";
  Result r = done(line + "a1 LOGIN x y\r\n");
  EXPECT_EQ(r.length, line.size());  // what follows is not the header's
  EXPECT_EQ(r.header.version, 1);
  EXPECT_FALSE(r.header.local);
  EXPECT_EQ(*r.header.source, tcp::endpoint(make_address("192.0.2.7"), 51234));
  EXPECT_EQ(*r.header.destination, tcp::endpoint(make_address("198.51.100.1"), 993));
}

TEST(ProxyProtocolV1, Tcp6) {
  Result r = done("PROXY TCP6 2001:db8::1 ::1 65535 0\r\n");
  EXPECT_EQ(*r.header.source, tcp::endpoint(make_address("2001:db8::1"), 65535));
  EXPECT_EQ(*r.header.destination, tcp::endpoint(make_address("::1"), 0));
}

TEST(ProxyProtocolV1, UnknownShortAndLongKeepRealAddresses) {
  Result s = done("PROXY UNKNOWN\r\n");
  EXPECT_TRUE(s.header.local);
  EXPECT_FALSE(s.header.source);
  EXPECT_EQ(s.length, 15u);
  Result l = done("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n");
  EXPECT_TRUE(l.header.local);
  EXPECT_FALSE(l.header.destination);
}

TEST(ProxyProtocolV1, LongestLineIsAccepted) {
  // 107 bytes exactly: UNKNOWN with two full IPv6 and ports.
  const std::string a = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
  const std::string line = "PROXY UNKNOWN " + a + " " + a + " 65535 65535\r\n";
  ASSERT_EQ(line.size(), kV1MaxLength);
  EXPECT_EQ(done(line).length, kV1MaxLength);
  // One byte more and the CRLF is past the limit.
  const std::string longer = "PROXY UNKNOWN " + a + " " + a + " 65535 655350\r\n";
  EXPECT_EQ(error_of(longer), "Too long header");
}

TEST(ProxyProtocolV1, NoCrlfWithin107BytesIsRefusedWithoutWaiting) {
  std::string junk = "PROXY TCP4 " + std::string(200, '1');
  EXPECT_EQ(error_of(junk), "Too long header");
  // ... and the verdict comes as soon as 106 bytes without CR are there.
  EXPECT_EQ(parse(junk.substr(0, 105)).status, Status::NeedMore);
  EXPECT_EQ(parse(junk.substr(0, 106)).status, Status::Error);
}

TEST(ProxyProtocolV1, Malformed) {
  EXPECT_EQ(error_of("PROXY TCP4 192.0.2.7 198.51.100.1 51234 993\n"), "Line ends with a bare LF");
  EXPECT_EQ(error_of("PROXY TCP4 192.0.2.7 198.51.100.1 51234 993\rX"), "Line ends with a bare CR");
  EXPECT_EQ(error_of("PROXY TCP4 192.0.2.07 198.51.100.1 51234 993\r\n"), "Invalid address");
  EXPECT_EQ(error_of("PROXY TCP4 192.0.2.7 198.51.100.1 051234 993\r\n"), "Invalid port");
  EXPECT_EQ(error_of("PROXY TCP4 192.0.2.7 198.51.100.1 65536 993\r\n"), "Invalid port");
  EXPECT_EQ(error_of("PROXY TCP4 192.0.2.7 198.51.100.1 51234 993 x\r\n"), "Too many fields");
  EXPECT_EQ(error_of("PROXY TCP4 192.0.2.7 198.51.100.1 51234\r\n"), "Missing fields");
  EXPECT_EQ(error_of("PROXY TCP4 192.0.2.7  198.51.100.1 51234 993\r\n"), "Too many fields");
  EXPECT_EQ(error_of("PROXY TCP4 ::1 ::1 1 2\r\n"), "Invalid address");
  EXPECT_EQ(error_of("PROXY TCP6 192.0.2.7 ::1 1 2\r\n"), "Invalid address");
  EXPECT_EQ(error_of("PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n"), "Invalid protocol");
  EXPECT_EQ(error_of("PROXY TCP4 1.2.3.4\x01 1.2.3.4 1 2\r\n"), "Invalid character");
  EXPECT_EQ(error_of("PROXY\r\n"), "Invalid header");
}

TEST(ProxyProtocol, GarbageIsRefusedAtTheFirstWrongByte) {
  EXPECT_EQ(error_of("a"), "Invalid header");
  EXPECT_EQ(error_of("a1 LOGIN user pass\r\n"), "Invalid header");
  EXPECT_EQ(error_of("PROXZ"), "Invalid header");
  EXPECT_EQ(error_of(std::string_view("\r\n\r\n\0X", 6)), "Invalid header");
  EXPECT_EQ(parse("PRO").status, Status::NeedMore);
  EXPECT_EQ(parse("").status, Status::NeedMore);
}

// ---- v2 -----------------------------------------------------------------------

TEST(ProxyProtocolV2, Tcp4SpecExample) {
  Result r = done(kV2Tcp4 + "* OK hi");
  EXPECT_EQ(r.length, 28u);
  EXPECT_EQ(r.header.version, 2);
  EXPECT_EQ(*r.header.source, tcp::endpoint(make_address("192.0.2.7"), 51234));
  EXPECT_EQ(*r.header.destination, tcp::endpoint(make_address("198.51.100.1"), 993));
  EXPECT_FALSE(r.header.ssl);
}

TEST(ProxyProtocolV2, Tcp6) {
  std::string body;
  auto a = make_address("2001:db8::7").to_v6().to_bytes();
  auto b = make_address("::1").to_v6().to_bytes();
  body.append(reinterpret_cast<const char*>(a.data()), 16);
  body.append(reinterpret_cast<const char*>(b.data()), 16);
  body += hex("0400 008F");
  Result r = done(v2(0x21, 0x21, body));
  EXPECT_EQ(*r.header.source, tcp::endpoint(make_address("2001:db8::7"), 1024));
  EXPECT_EQ(*r.header.destination, tcp::endpoint(make_address("::1"), 143));
}

TEST(ProxyProtocolV2, Tlvs) {
  std::string ssl = hex("01 00000000") + tlv(0x21, "TLSv1.3") + tlv(0x23, "TLS_AES_256_GCM_SHA384");
  std::string body = inet_block() + tlv(0x01, "imap") + tlv(0x02, "mail.example.org") +
                     tlv(0x04, std::string(10, '\0')) + tlv(0x20, ssl) + tlv(0x03, "\1\2\3\4") +
                     tlv(0xE0, "custom");
  Result r = done(v2(0x21, 0x11, body));
  EXPECT_TRUE(r.header.ssl);
  EXPECT_FALSE(r.header.ssl_cert);
  EXPECT_EQ(r.header.ssl_version, "TLSv1.3");
  EXPECT_EQ(r.header.authority, "mail.example.org");
  EXPECT_EQ(r.header.alpn, "imap");
}

TEST(ProxyProtocolV2, SslCnTrustedOnlyWithCertAndVerifyZero) {
  auto with = [](uint8_t client, std::string_view verify) {
    std::string ssl(1, static_cast<char>(client));
    ssl += hex(verify) + tlv(0x22, "alice");
    return done(v2(0x21, 0x11, inet_block() + tlv(0x20, ssl))).header;
  };
  Header ok = with(0x07, "00000000");
  EXPECT_TRUE(ok.ssl_cert && ok.ssl_verified);
  EXPECT_EQ(ok.ssl_cn, "alice");
  EXPECT_FALSE(with(0x07, "00000001").ssl_verified);
  EXPECT_FALSE(with(0x01, "00000000").ssl_verified);  // no certificate flag
  EXPECT_FALSE(with(0x00, "00000000").ssl);            // SSL TLV without CLIENT_SSL
}

TEST(ProxyProtocolV2, LocalKeepsRealAddresses) {
  Result r = done(v2(0x20, 0x00, ""));
  EXPECT_TRUE(r.header.local);
  EXPECT_FALSE(r.header.source);
  EXPECT_EQ(r.length, 16u);
  // LOCAL with an address block and TLVs: skipped, length honoured.
  Result t = done(v2(0x20, 0x11, inet_block() + tlv(0x04, "xx")) + "rest");
  EXPECT_TRUE(t.header.local);
  EXPECT_EQ(t.length, 16u + 12 + 5);
  EXPECT_EQ(serialize_v2_local(), v2(0x20, 0x00, ""));
}

TEST(ProxyProtocolV2, Malformed) {
  EXPECT_EQ(error_of(v2(0x11, 0x11, inet_block())), "Unsupported version");
  EXPECT_EQ(error_of(v2(0x31, 0x11, inet_block())), "Unsupported version");
  EXPECT_EQ(error_of(v2(0x22, 0x11, inet_block())), "Unsupported command");
  EXPECT_EQ(error_of(v2(0x21, 0x12, inet_block())), "Unsupported transport protocol");  // DGRAM
  EXPECT_EQ(error_of(v2(0x21, 0x31, std::string(216, 'a'))), "Unsupported address family");
  EXPECT_EQ(error_of(v2(0x21, 0x00, "")), "Unsupported address family");  // PROXY + UNSPEC
  EXPECT_EQ(error_of(v2(0x21, 0x41, inet_block())), "Unsupported address family");
  EXPECT_EQ(error_of(v2(0x21, 0x11, inet_block().substr(0, 8))), "Invalid header length");
  EXPECT_EQ(error_of(v2(0x21, 0x11, inet_block() + hex("04 00"))), "Truncated TLV");
  EXPECT_EQ(error_of(v2(0x21, 0x11, inet_block() + hex("04 0005 00"))), "Truncated TLV");
  EXPECT_EQ(error_of(v2(0x21, 0x11, inet_block() + tlv(0x20, hex("01 0000")))), "Truncated SSL TLV");
  EXPECT_EQ(error_of(v2(0x21, 0x11, inet_block() + tlv(0x20, hex("01 00000000 21 0009 41")))),
            "Truncated SSL sub-TLV");
  EXPECT_EQ(error_of(v2(0x21, 0x11, inet_block() + tlv(0x02, "bad host"))), "Invalid authority");
}

TEST(ProxyProtocolV2, LengthBeyondTheLimitIsRefusedFromThePrelude) {
  // The prelude alone tells: no need to wait for 64 KiB that will not be kept.
  std::string pre(kV2Signature);
  pre += "\x21\x11\xff\xff";
  EXPECT_EQ(error_of(pre), "Too long header");
  std::string max = v2(0x21, 0x11, inet_block() + tlv(0x04, std::string(kV2MaxLength - 16 - 12 - 3, 'x')));
  ASSERT_EQ(max.size(), kV2MaxLength);
  EXPECT_EQ(done(max).length, kV2MaxLength);
  std::string over = v2(0x21, 0x11, inet_block() + tlv(0x04, std::string(kV2MaxLength - 16 - 12 - 2, 'x')));
  EXPECT_EQ(error_of(over), "Too long header");
}

TEST(ProxyProtocolV2, TruncatedHeaderNeedsMore) {
  for (size_t n = 1; n < kV2Tcp4.size(); ++n) {
    Result r = parse(kV2Tcp4.substr(0, n));
    EXPECT_EQ(r.status, Status::NeedMore) << n;
  }
  EXPECT_EQ(parse(kV2Tcp4.substr(0, 13)).version, 2);
}

// ---- incremental ---------------------------------------------------------------

void split_delivery(const std::string& header, const std::string& after) {
  const std::string all = header + after;
  // One byte at a time.
  Parser p;
  size_t i = 0;
  for (; i < all.size(); ++i) {
    const Result& r = p.feed(all.substr(i, 1));
    if (r.status != Status::NeedMore) break;
    EXPECT_EQ(p.consumed(), 1u);
  }
  ASSERT_EQ(p.result().status, Status::Done);
  EXPECT_EQ(i + 1, header.size());
  EXPECT_EQ(p.consumed(), 1u);
  // Every split into two feeds: the leftover is exactly what follows the header.
  for (size_t cut = 0; cut <= all.size(); ++cut) {
    Parser q;
    q.feed(all.substr(0, cut));
    size_t used = q.consumed();
    std::string leftover;
    if (q.result().status == Status::Done) {
      leftover = all.substr(used);
    } else {
      q.feed(all.substr(cut));
      ASSERT_EQ(q.result().status, Status::Done) << cut;
      leftover = all.substr(cut + q.consumed());
    }
    EXPECT_EQ(leftover, after) << cut;
    EXPECT_EQ(q.result().length, header.size());
  }
}

TEST(ProxyProtocolParser, SplitDeliveryV1) {
  split_delivery("PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n", "a1 CAPABILITY\r\n");
}

TEST(ProxyProtocolParser, SplitDeliveryV2) {
  split_delivery(v2(0x21, 0x11, inet_block() + tlv(0x02, "a.example")), std::string("\x16\x03\x01", 3));
}

TEST(ProxyProtocolParser, AfterTheVerdictNothingMoreIsTaken) {
  Parser p;
  p.feed("garbage");
  EXPECT_EQ(p.result().status, Status::Error);
  p.feed("PROXY UNKNOWN\r\n");
  EXPECT_EQ(p.consumed(), 0u);
  EXPECT_EQ(p.result().status, Status::Error);
  Parser q;
  q.feed("PROXY UNKNOWN\r\nUSER x\r\n");
  EXPECT_EQ(q.consumed(), 15u);
  q.feed("more");
  EXPECT_EQ(q.consumed(), 0u);
}

// ---- serializer ----------------------------------------------------------------

TEST(ProxyProtocolSerializer, V1RoundTrips) {
  tcp::endpoint s(make_address("192.0.2.7"), 51234), d(make_address("198.51.100.1"), 993);
  EXPECT_EQ(serialize_v1(s, d), "PROXY TCP4 192.0.2.7 198.51.100.1 51234 993\r\n");
  tcp::endpoint s6(make_address("2001:db8::1"), 1), d6(make_address("::1"), 2);
  Result r = done(serialize_v1(s6, d6));
  EXPECT_EQ(*r.header.source, s6);
  EXPECT_EQ(*r.header.destination, d6);
  // Mixed families: IPv6 with the IPv4 one mapped.
  Result m = done(serialize_v1(s, d6));
  EXPECT_EQ(m.header.source->address(), make_address("::ffff:192.0.2.7"));
  // An IPv4-mapped address is written as IPv4.
  tcp::endpoint sm(make_address("::ffff:192.0.2.7"), 5);
  EXPECT_EQ(serialize_v1(sm, d), "PROXY TCP4 192.0.2.7 198.51.100.1 5 993\r\n");
}

TEST(ProxyProtocolSerializer, V2RoundTrips) {
  tcp::endpoint s(make_address("192.0.2.7"), 51234), d(make_address("198.51.100.1"), 993);
  EXPECT_EQ(serialize_v2(s, d), kV2Tcp4);
  Result r = done(serialize_v2(s, d, SslInfo{"TLSv1.3"}, "mail.example.org"));
  EXPECT_TRUE(r.header.ssl);
  EXPECT_EQ(r.header.ssl_version, "TLSv1.3");
  EXPECT_EQ(r.header.authority, "mail.example.org");
  EXPECT_EQ(*r.header.source, s);
  tcp::endpoint s6(make_address("2001:db8::1"), 1);
  Result r6 = done(serialize_v2(s6, d, SslInfo{}));
  EXPECT_EQ(*r6.header.source, s6);
  EXPECT_EQ(r6.header.destination->address(), make_address("::ffff:198.51.100.1"));
  EXPECT_TRUE(r6.header.ssl);
  EXPECT_EQ(r6.header.ssl_version, "");
}

// ---- configuration and the outbound header -------------------------------------

TEST(ProxyProtocolConfig, ListenerAndLoginKeys) {
  const std::string base = "[[listener]]\nprotocol = \"imap\"\nport = 143\nhaproxy = true\n"
                           "[[passdb]]\ndriver = \"passwd-file\"\npath = \"users\"\n";
  auto r = portier::config::load_string(
      base + "[login]\nhaproxy_trusted_networks = [\"10.0.0.0/24\", \"::1\"]\n"
             "haproxy_timeout = \"500ms\"\n[backend]\nproxy_protocol = \"v2\"\n",
      "/p.toml", portier::app::registries());
  ASSERT_TRUE(r.config) << (r.errors.empty() ? "" : r.errors[0].to_string());
  const auto& c = *r.config;
  EXPECT_TRUE(c.listeners[0].haproxy);
  ASSERT_EQ(c.login.haproxy_trusted_networks.size(), 2u);
  EXPECT_TRUE(c.login.haproxy_trusted_networks[0].contains(make_address("10.0.0.9")));
  EXPECT_FALSE(c.login.haproxy_trusted_networks[0].contains(make_address("10.0.1.9")));
  EXPECT_EQ(c.login.haproxy_timeout, std::chrono::milliseconds(500));
  EXPECT_EQ(c.backend.proxy_protocol, 2u);
  // Defaults.
  auto d = portier::config::load_string(base, "/p.toml", portier::app::registries());
  ASSERT_TRUE(d.config);
  EXPECT_EQ(d.config->login.haproxy_timeout, std::chrono::milliseconds(3000));
  EXPECT_TRUE(d.config->login.haproxy_trusted_networks.empty());
  EXPECT_EQ(d.config->backend.proxy_protocol, 0u);
  // Errors, each at its line.
  for (const auto& [text, needle] : std::vector<std::pair<std::string, std::string>>{
           {"[login]\nhaproxy_trusted_networks = [\"10.0.0.0/33\"]\n", "invalid network"},
           {"[login]\nhaproxy_timeout = \"soon\"\n", "haproxy_timeout"},
           {"[backend]\nproxy_protocol = \"v3\"\n", "expected v1, v2 or no"},
       }) {
    auto e = portier::config::load_string(base + text, "/p.toml", portier::app::registries());
    EXPECT_FALSE(e.config);
    ASSERT_EQ(e.errors.size(), 1u) << text;
    EXPECT_EQ(e.errors[0].line, 9) << e.errors[0].to_string();
    EXPECT_NE(e.errors[0].message.find(needle), std::string::npos) << e.errors[0].to_string();
  }
  auto b = portier::config::load_string(
      "[[listener]]\nprotocol = \"imap\"\nhaproxy = \"yes\"\n"
      "[[passdb]]\ndriver = \"passwd-file\"\npath = \"users\"\n",
      "/p.toml", portier::app::registries());
  EXPECT_FALSE(b.config);
}

TEST(ProxyProtocolConfig, PassdbField) {
  using portier::passdb::parse_proxy_fields;
  portier::passdb::Reply reply;
  reply.user = "u";
  reply.fields = {{"proxy", ""}, {"host", "192.0.2.1"}};
  EXPECT_FALSE(parse_proxy_fields(reply, 143, 993).fields->proxy_protocol);
  for (const auto& [v, want] :
       std::vector<std::pair<std::string, unsigned>>{{"v1", 1u}, {"v2", 2u}, {"no", 0u}}) {
    reply.fields = {{"proxy", ""}, {"host", "192.0.2.1"}, {"proxy_protocol", v}};
    auto r = parse_proxy_fields(reply, 143, 993);
    ASSERT_TRUE(r.fields) << r.error;
    EXPECT_EQ(r.fields->proxy_protocol, want);
  }
  reply.fields = {{"proxy", ""}, {"host", "192.0.2.1"}, {"proxy_protocol", "V2"}};
  auto bad = parse_proxy_fields(reply, 143, 993);
  EXPECT_FALSE(bad.fields);
  EXPECT_EQ(bad.error, "proxy: Invalid proxy_protocol value 'V2' (expected v1, v2 or no)");
}

TEST(ProxyProtocolOutbound, HeaderCarriesTheClientsAddressesAndTls) {
  portier::login::ClientInfo ci;
  ci.remote_ip = make_address("127.0.0.5");
  ci.remote_port = 40000;
  ci.local_ip = make_address("127.0.0.1");
  ci.local_port = 143;
  EXPECT_EQ(portier::login::proxy_header(1, ci), "PROXY TCP4 127.0.0.5 127.0.0.1 40000 143\r\n");
  EXPECT_EQ(portier::login::proxy_header(0, ci), "");
  Result plain = done(portier::login::proxy_header(2, ci));
  EXPECT_EQ(*plain.header.source, tcp::endpoint(ci.remote_ip, 40000));
  EXPECT_EQ(*plain.header.destination, tcp::endpoint(ci.local_ip, 143));
  EXPECT_FALSE(plain.header.ssl);
  EXPECT_EQ(plain.header.authority, "");
  // A TLS client (here or at an upstream hop) and its SNI name.
  ci.end_client_tls = true;
  ci.local_name = "imap.example.org";
  Result tls = done(portier::login::proxy_header(2, ci));
  EXPECT_TRUE(tls.header.ssl);
  EXPECT_EQ(tls.header.authority, "imap.example.org");
}

}  // namespace
