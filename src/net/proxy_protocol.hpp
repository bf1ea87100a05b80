#pragma once
// The PROXY protocol (HAProxy's doc/proxy-protocol.txt), v1 (text) and v2
// (binary), sans-I/O: a parser fed with the first bytes of a connection and
// a serializer for the header portier sends to backends.
//
// The parser never looks past the header: `Result::length` is the header's
// size, and bytes fed behind it are the caller's (a pipelining client's
// command, a TLS ClientHello). It is bounded: a v1 line without CRLF in
// kV1MaxLength bytes and a v2 header longer than kV2MaxLength are errors, so
// no input makes it wait or buffer for more than that.
//
// Owns: nothing but the bytes of one header being parsed. May use: asio
// (addresses), std.
// Threading: a Parser belongs to one thread; the free functions are pure.

#include <asio/ip/tcp.hpp>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace portier::net::proxy {

/// The longest v1 line, CRLF included ("PROXY UNKNOWN" + two full IPv6 + ports).
inline constexpr size_t kV1MaxLength = 107;
/// The longest v2 header accepted (16-byte prelude + addresses + TLVs);
/// Dovecot refuses longer ones too ("Too long header").
inline constexpr size_t kV2MaxLength = 1500;
/// The longest header of either version.
inline constexpr size_t kMaxLength = kV2MaxLength;
/// The v2 signature (the first 12 bytes of every v2 header).
inline constexpr std::string_view kV2Signature{"\r\n\r\n\0\r\nQUIT\n", 12};

/// What a complete header said.
struct Header {
  int version = 0;     ///< 1 or 2
  /// v2 LOCAL (a health check of the proxy itself) or v1 UNKNOWN: the real
  /// endpoints of the connection stand; source/destination are unset.
  bool local = false;
  std::optional<asio::ip::tcp::endpoint> source;       ///< the client
  std::optional<asio::ip::tcp::endpoint> destination;  ///< the address the client connected to
  // v2 TLVs
  bool ssl = false;           ///< PP2_TYPE_SSL with PP2_CLIENT_SSL: the client used TLS
  bool ssl_cert = false;      ///< PP2_CLIENT_CERT_CONN or _SESS: it presented a certificate
  bool ssl_verified = false;  ///< ... and `verify` was 0
  std::string ssl_version;    ///< PP2_SUBTYPE_SSL_VERSION, e.g. "TLSv1.3"
  std::string ssl_cn;         ///< PP2_SUBTYPE_SSL_CN
  std::string authority;      ///< PP2_TYPE_AUTHORITY: the TLS SNI host name
  std::string alpn;           ///< PP2_TYPE_ALPN
};

/// Where parsing stands.
enum class Status { NeedMore, Done, Error };

struct Result {
  Status status = Status::NeedMore;
  /// Done: the header's size in bytes (what follows is not the header's).
  size_t length = 0;
  /// The version, as soon as the first bytes tell it (0 = not known yet).
  int version = 0;
  Header header;       ///< Done
  std::string error;   ///< Error: why, for a log line ("Invalid signature", ...)
};

/// Parse the first `data.size()` bytes of a connection. Pure: the answer
/// depends on `data` only; NeedMore means every byte so far belongs to an
/// incomplete, still valid header (so a caller may consume all of them).
Result parse(std::string_view data);

/// The incremental form: keeps the header's bytes (at most kMaxLength).
class Parser {
 public:
  /// Feed the next bytes. Once Done, `consumed()` says how many bytes of the
  /// last feed belonged to the header (the rest is the caller's); once Done or
  /// Error, further feeds return the same result and consume nothing.
  const Result& feed(std::string_view bytes);
  const Result& result() const { return result_; }
  size_t consumed() const { return consumed_; }

 private:
  std::string buf_;
  Result result_;
  size_t consumed_ = 0;
};

/// TLS facts of the client connection for a v2 header (PP2_TYPE_SSL).
struct SslInfo {
  std::string version;  ///< e.g. "TLSv1.3"; empty = no SSL_VERSION sub-TLV
};

/// A v1 line for `source` → `destination` (TCP4, TCP6 when either is IPv6
/// and not v4-mapped; IPv4-mapped addresses are written as IPv4).
std::string serialize_v1(const asio::ip::tcp::endpoint& source,
                         const asio::ip::tcp::endpoint& destination);
/// A v2 PROXY header (STREAM over INET or INET6), with a PP2_TYPE_SSL TLV
/// (PP2_CLIENT_SSL, verify 0) when `ssl` is given and a PP2_TYPE_AUTHORITY
/// TLV when `authority` is not empty (cut at 255 bytes).
std::string serialize_v2(const asio::ip::tcp::endpoint& source,
                         const asio::ip::tcp::endpoint& destination,
                         const std::optional<SslInfo>& ssl = std::nullopt,
                         std::string_view authority = {});
/// A v2 LOCAL header (no addresses).
std::string serialize_v2_local();

}  // namespace portier::net::proxy
