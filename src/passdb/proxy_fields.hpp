#pragma once
// Interpretation of the proxy-related extra fields of a passdb reply,
// following Dovecot's login-proxy semantics.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "passdb/reply.hpp"

namespace portier::passdb {

/// The largest proxy_timeout honoured (a larger value is clamped to it): one
/// day, far from overflowing a steady_clock deadline.
inline constexpr std::chrono::milliseconds kMaxProxyTimeout{24LL * 3600 * 1000};

/// TLS towards the backend.
enum class BackendTls { None, Implicit, StartTls };

/// Where and how to proxy a login.
struct ProxyFields {
  bool proxy = false;         ///< "proxy" field present (and not n/no/false/0)
  std::string host;           ///< "host": backend host (IP, or name when hostip is set)
  std::string hostip;         ///< "hostip": backend IP ("" = use host)
  uint16_t port = 0;          ///< "port", or the default port (see parse_proxy_fields)
  BackendTls tls = BackendTls::None;  ///< from "ssl" / "starttls"
  bool any_cert = false;      ///< ssl=any-cert / starttls=any-cert: don't verify the backend cert
  std::string destuser;       ///< "destuser"; defaults to the reply's user
  std::optional<std::string> pass;  ///< "pass"; nullopt = forward the client's password
  std::string master;         ///< "master": master user for the backend login ("" = none)
  std::string proxy_mech;     ///< "proxy_mech": SASL mechanism towards the backend ("" = default)
  std::optional<std::chrono::milliseconds> proxy_timeout;  ///< "proxy_timeout"
  bool nopipelining = false;  ///< "proxy_nopipelining"
  bool not_trusted = false;   ///< "proxy_not_trusted": don't send ID/XCLIENT forwarding
  bool redirect_reauth = false;  ///< "proxy_redirect_reauth": a backend referral asks the passdb again
  bool noauth = false;        ///< "proxy_noauth": Submission only, XCLIENT LOGIN= instead of AUTH
  std::string source_ip;      ///< "source_ip": local IP to connect from ("" = any)
  /// "proxy_protocol": v1 | v2 | no — the PROXY header to send first to the
  /// backend (0 = none); nullopt = the [backend] setting.
  std::optional<unsigned> proxy_protocol;
  bool nologin = false;       ///< "nologin": refuse the login (with "reason", and maybe referral)
  std::string reason;         ///< "reason": text shown to the client
  bool nopassword = false;    ///< "nopassword"
  /// "forward_<k>=<v>" fields in order, key without the "forward_" prefix.
  std::vector<std::pair<std::string, std::string>> forward;
};

/// Result of parse_proxy_fields(): `fields` set on success, else `error`.
struct ProxyFieldsResult {
  std::optional<ProxyFields> fields;
  std::string error;  ///< Dovecot-style message; never contains "pass"'s value
};

/// Interprets `reply`'s fields.
/// - Boolean fields (proxy, proxy_nopipelining, proxy_not_trusted, nologin,
///   nopassword) are true when present, unless their value is n/no/false/0.
/// - ssl=yes|any-cert -> Implicit; starttls=yes|any-cert -> StartTls (wins
///   over ssl). Any other value (including "no") leaves TLS off — unlike
///   Dovecot, which enables TLS for any value.
/// - port defaults to `default_tls_port` for implicit TLS, else `default_port`.
/// - proxy_timeout: a bare number is seconds; units as core::parse_duration;
///   values above kMaxProxyTimeout are clamped to it.
/// Host checks (only when proxy is set):
///   "proxy: host field not given",
///   "proxy: host <h> is not an IP (auth should have changed it)" (no hostip),
///   "host and hostip are both IPs, but they don't match".
/// Other errors: "proxy: Invalid hostip in passdb: <v>",
///   "Auth service returned invalid port value '<v>': ...",
///   "Auth service returned invalid proxy_timeout value '<v>'",
///   "proxy: Invalid source_ip in passdb: <v>",
///   "proxy: invalid characters in destuser|pass|master" (CR, LF or NUL),
///   "proxy: Invalid proxy_protocol value '<v>' (expected v1, v2 or no)".
ProxyFieldsResult parse_proxy_fields(const Reply& reply, uint16_t default_port, uint16_t default_tls_port);

}  // namespace portier::passdb
