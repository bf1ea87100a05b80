#include "net/proxy_protocol.hpp"

#include <algorithm>
#include <array>
#include <cstring>

namespace portier::net::proxy {

namespace {

using asio::ip::tcp;

constexpr std::string_view kV1Prefix = "PROXY ";

// v2 constants (doc/proxy-protocol.txt).
constexpr uint8_t kCmdLocal = 0x0, kCmdProxy = 0x1;
constexpr uint8_t kFamUnspec = 0x0, kFamInet = 0x1, kFamInet6 = 0x2, kFamUnix = 0x3;
constexpr uint8_t kTransStream = 0x1;
constexpr uint8_t kTlvAlpn = 0x01, kTlvAuthority = 0x02, kTlvSsl = 0x20;
constexpr uint8_t kSubSslVersion = 0x21, kSubSslCn = 0x22;
constexpr uint8_t kClientSsl = 0x01, kClientCertConn = 0x02, kClientCertSess = 0x04;
constexpr size_t kPrelude = 16;

Result error(int version, std::string why) {
  Result r;
  r.status = Status::Error;
  r.version = version;
  r.error = std::move(why);
  return r;
}

Result need_more(int version) {
  Result r;
  r.version = version;
  return r;
}

unsigned be16(const unsigned char* p) { return (unsigned{p[0]} << 8) | p[1]; }

// ---- v1 -------------------------------------------------------------------

std::optional<uint16_t> v1_port(std::string_view s) {
  if (s.empty() || s.size() > 5) return std::nullopt;
  if (s.size() > 1 && s[0] == '0') return std::nullopt;  // no leading zeros
  unsigned v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v > 65535) return std::nullopt;
  return static_cast<uint16_t>(v);
}

std::optional<asio::ip::address> v1_addr(std::string_view s, bool v6) {
  if (s.empty() || s.size() > 45) return std::nullopt;
  asio::error_code ec;
  if (!v6) {
    // Dotted decimal, 1-3 digits per octet, no leading zeros.
    int dots = 0;
    size_t run = 0;
    for (size_t i = 0; i <= s.size(); ++i) {
      if (i == s.size() || s[i] == '.') {
        if (run == 0 || (run > 1 && s[i - run] == '0')) return std::nullopt;
        if (i < s.size()) ++dots;
        run = 0;
      } else if (s[i] >= '0' && s[i] <= '9' && run < 3) {
        ++run;
      } else {
        return std::nullopt;
      }
    }
    if (dots != 3) return std::nullopt;
    auto a = asio::ip::make_address_v4(std::string(s), ec);
    if (ec) return std::nullopt;
    return asio::ip::address(a);
  }
  if (s.find_first_not_of("0123456789abcdefABCDEF:.") != std::string_view::npos)
    return std::nullopt;
  auto a = asio::ip::make_address_v6(std::string(s), ec);
  if (ec) return std::nullopt;
  return asio::ip::address(a);
}

// `line` is the whole line without CRLF.
Result parse_v1_line(std::string_view line, size_t length) {
  std::array<std::string_view, 7> f;
  size_t n = 0;
  size_t pos = 0;
  for (;;) {
    size_t sp = line.find(' ', pos);
    if (n == f.size()) return error(1, "Too many fields");
    f[n++] = line.substr(pos, sp == std::string_view::npos ? sp : sp - pos);
    if (sp == std::string_view::npos) break;
    pos = sp + 1;
  }
  Result r;
  r.version = 1;
  r.header.version = 1;
  if (n >= 2 && f[1] == "UNKNOWN") {
    // Whatever follows UNKNOWN is ignored; the real endpoints stand.
    r.status = Status::Done;
    r.length = length;
    r.header.local = true;
    return r;
  }
  if (n < 2 || (f[1] != "TCP4" && f[1] != "TCP6")) return error(1, "Invalid protocol");
  if (n != 6) return error(1, n < 6 ? "Missing fields" : "Too many fields");
  const bool v6 = f[1] == "TCP6";
  auto src = v1_addr(f[2], v6);
  auto dst = v1_addr(f[3], v6);
  if (!src || !dst) return error(1, "Invalid address");
  auto sport = v1_port(f[4]);
  auto dport = v1_port(f[5]);
  if (!sport || !dport) return error(1, "Invalid port");
  r.status = Status::Done;
  r.length = length;
  r.header.source = tcp::endpoint(*src, *sport);
  r.header.destination = tcp::endpoint(*dst, *dport);
  return r;
}

Result parse_v1(std::string_view d) {
  // The prefix first: garbage is refused at its first wrong byte.
  const size_t pre = std::min(d.size(), kV1Prefix.size());
  if (d.substr(0, pre) != kV1Prefix.substr(0, pre)) return error(1, "Invalid header");
  // The CR must come early enough for CRLF to end within kV1MaxLength bytes.
  const size_t limit = std::min(d.size(), kV1MaxLength - 1);
  for (size_t i = pre; i < limit; ++i) {
    const char c = d[i];
    if (c == '\n') return error(1, "Line ends with a bare LF");
    if (c == '\r') {
      if (i + 1 >= d.size()) return need_more(1);
      if (d[i + 1] != '\n') return error(1, "Line ends with a bare CR");
      return parse_v1_line(d.substr(0, i), i + 2);
    }
    // Printable ASCII only (addresses, ports, the protocol name, spaces).
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e)
      return error(1, "Invalid character");
  }
  if (d.size() >= kV1MaxLength - 1) return error(1, "Too long header");
  return need_more(1);
}

// ---- v2 -------------------------------------------------------------------

bool dns_name(std::string_view s) {
  if (s.empty() || s.size() > 255) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '.' || c == '_';
    if (!ok) return false;
  }
  return true;
}

// Walks TLVs in [p, p+len): calls fn(type, value) for each; false on a truncated one.
template <typename Fn>
bool each_tlv(const unsigned char* p, size_t len, Fn&& fn) {
  size_t i = 0;
  while (i < len) {
    if (len - i < 3) return false;
    const uint8_t type = p[i];
    const size_t vlen = be16(p + i + 1);
    if (len - i - 3 < vlen) return false;
    if (!fn(type, std::string_view(reinterpret_cast<const char*>(p + i + 3), vlen))) return false;
    i += 3 + vlen;
  }
  return true;
}

Result parse_v2(std::string_view d) {
  const size_t pre = std::min(d.size(), kV2Signature.size());
  if (d.substr(0, pre) != kV2Signature.substr(0, pre)) return error(0, "Invalid header");
  if (d.size() < 13) return need_more(2);
  const auto* u = reinterpret_cast<const unsigned char*>(d.data());
  if ((u[12] >> 4) != 2) return error(2, "Unsupported version");
  const uint8_t cmd = u[12] & 0x0f;
  if (cmd != kCmdLocal && cmd != kCmdProxy) return error(2, "Unsupported command");
  if (d.size() < kPrelude) return need_more(2);
  const size_t len = be16(u + 14);
  const size_t total = kPrelude + len;
  if (total > kV2MaxLength) return error(2, "Too long header");
  if (d.size() < total) return need_more(2);

  Result r;
  r.version = 2;
  r.header.version = 2;
  r.status = Status::Done;
  r.length = total;
  const uint8_t fam = u[13] >> 4, trans = u[13] & 0x0f;
  size_t addr_len = 0;
  if (fam == kFamInet) addr_len = 12;
  else if (fam == kFamInet6) addr_len = 36;
  else if (fam == kFamUnix) addr_len = 216;
  else if (fam != kFamUnspec) return error(2, "Unsupported address family");
  const unsigned char* body = u + kPrelude;
  if (cmd == kCmdLocal) {
    // The proxy's own connection (health check): the real endpoints stand;
    // whatever the body holds is skipped.
    r.header.local = true;
    return r;
  }
  if (fam != kFamInet && fam != kFamInet6) return error(2, "Unsupported address family");
  if (trans != kTransStream) return error(2, "Unsupported transport protocol");
  if (len < addr_len) return error(2, "Invalid header length");
  if (fam == kFamInet) {
    asio::ip::address_v4::bytes_type s, t;
    std::memcpy(s.data(), body, 4);
    std::memcpy(t.data(), body + 4, 4);
    r.header.source = tcp::endpoint(asio::ip::address_v4(s), static_cast<uint16_t>(be16(body + 8)));
    r.header.destination =
        tcp::endpoint(asio::ip::address_v4(t), static_cast<uint16_t>(be16(body + 10)));
  } else {
    asio::ip::address_v6::bytes_type s, t;
    std::memcpy(s.data(), body, 16);
    std::memcpy(t.data(), body + 16, 16);
    r.header.source =
        tcp::endpoint(asio::ip::address_v6(s), static_cast<uint16_t>(be16(body + 32)));
    r.header.destination =
        tcp::endpoint(asio::ip::address_v6(t), static_cast<uint16_t>(be16(body + 34)));
  }
  Header& h = r.header;
  std::string why;
  const bool ok = each_tlv(body + addr_len, len - addr_len, [&](uint8_t type, std::string_view v) {
    switch (type) {
      case kTlvAlpn:
        h.alpn.assign(v);
        return true;
      case kTlvAuthority:
        if (!dns_name(v)) {
          why = "Invalid authority";
          return false;
        }
        h.authority.assign(v);
        return true;
      case kTlvSsl: {
        if (v.size() < 5) {
          why = "Truncated SSL TLV";
          return false;
        }
        const auto* sv = reinterpret_cast<const unsigned char*>(v.data());
        const uint8_t client = sv[0];
        const bool verified = sv[1] == 0 && sv[2] == 0 && sv[3] == 0 && sv[4] == 0;
        h.ssl = (client & kClientSsl) != 0;
        h.ssl_cert = (client & (kClientCertConn | kClientCertSess)) != 0;
        h.ssl_verified = h.ssl_cert && verified;
        const bool sub_ok = each_tlv(sv + 5, v.size() - 5, [&](uint8_t st, std::string_view sv2) {
          if (st == kSubSslVersion) h.ssl_version.assign(sv2);
          else if (st == kSubSslCn) h.ssl_cn.assign(sv2);
          return true;
        });
        if (!sub_ok) why = "Truncated SSL sub-TLV";
        return sub_ok;
      }
      default:
        return true;  // CRC32C is not verified (like Dovecot); NOOP, UNIQUE_ID, ... ignored
    }
  });
  if (!ok) return error(2, why.empty() ? "Truncated TLV" : why);
  return r;
}

// ---- serializer -------------------------------------------------------------

asio::ip::address unmapped(const asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
  return a;
}

asio::ip::address_v6 as_v6(const asio::ip::address& a) {
  return a.is_v6() ? a.to_v6() : asio::ip::make_address_v6(asio::ip::v4_mapped, a.to_v4());
}

void put16(std::string& out, size_t v) {
  out += static_cast<char>((v >> 8) & 0xff);
  out += static_cast<char>(v & 0xff);
}

template <typename Bytes>
void put_bytes(std::string& out, const Bytes& b) {
  out.append(reinterpret_cast<const char*>(b.data()), b.size());
}

void put_tlv(std::string& out, uint8_t type, std::string_view v) {
  out += static_cast<char>(type);
  put16(out, v.size());
  out += v;
}

}  // namespace

Result parse(std::string_view data) {
  if (data.empty()) return need_more(0);
  if (data[0] == 'P') return parse_v1(data);
  if (data[0] == '\r') return parse_v2(data);
  return error(0, "Invalid header");
}

const Result& Parser::feed(std::string_view bytes) {
  if (result_.status != Status::NeedMore) {
    consumed_ = 0;
    return result_;
  }
  // Never keep more than a header can be: what lies beyond is the caller's.
  const size_t before = buf_.size();
  const size_t take = std::min(bytes.size(), kMaxLength - before);
  buf_.append(bytes.substr(0, take));
  result_ = parse(buf_);
  if (result_.status == Status::Done) {
    consumed_ = result_.length - before;
    buf_.resize(result_.length);
  } else {
    consumed_ = take;
    // kMaxLength bytes and still incomplete cannot happen (both versions
    // bound themselves below it), but the buffer's bound must not rely on it.
    if (result_.status == Status::NeedMore && buf_.size() >= kMaxLength)
      result_ = error(result_.version, "Too long header");
  }
  return result_;
}

std::string serialize_v1(const tcp::endpoint& source, const tcp::endpoint& destination) {
  auto s = unmapped(source.address()), d = unmapped(destination.address());
  std::string out = "PROXY ";
  if (s.is_v4() && d.is_v4()) {
    out += "TCP4 " + s.to_string() + " " + d.to_string();
  } else {
    out += "TCP6 " + as_v6(s).to_string() + " " + as_v6(d).to_string();
  }
  out += " " + std::to_string(source.port()) + " " + std::to_string(destination.port()) + "\r\n";
  return out;
}

std::string serialize_v2(const tcp::endpoint& source, const tcp::endpoint& destination,
                         const std::optional<SslInfo>& ssl, std::string_view authority) {
  auto s = unmapped(source.address()), d = unmapped(destination.address());
  const bool v4 = s.is_v4() && d.is_v4();
  std::string body;
  if (v4) {
    put_bytes(body, s.to_v4().to_bytes());
    put_bytes(body, d.to_v4().to_bytes());
  } else {
    put_bytes(body, as_v6(s).to_bytes());
    put_bytes(body, as_v6(d).to_bytes());
  }
  put16(body, source.port());
  put16(body, destination.port());
  if (!authority.empty()) put_tlv(body, kTlvAuthority, authority.substr(0, 255));
  if (ssl) {
    std::string v;
    v += static_cast<char>(kClientSsl);
    v.append(4, '\0');  // verify: 0
    if (!ssl->version.empty()) put_tlv(v, kSubSslVersion, std::string_view(ssl->version).substr(0, 64));
    put_tlv(body, kTlvSsl, v);
  }
  std::string out(kV2Signature);
  out += static_cast<char>(0x20 | kCmdProxy);
  out += static_cast<char>(((v4 ? kFamInet : kFamInet6) << 4) | kTransStream);
  put16(out, body.size());
  out += body;
  return out;
}

std::string serialize_v2_local() {
  std::string out(kV2Signature);
  out += static_cast<char>(0x20 | kCmdLocal);
  out += static_cast<char>(kFamUnspec);
  put16(out, 0);
  return out;
}

}  // namespace portier::net::proxy
