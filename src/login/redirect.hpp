#pragma once
// Backend referrals (Dovecot 2.4; dovecot-proxy-reference.md §11.6 b): what a
// referral's target says, the loop and TTL checks before following it, and —
// with [login] proxy_redirect_reauth — the verdict on the passdb chain's
// second answer. Pure functions, unit-tested without sockets; BackendDriver
// runs them, AuthFlow asks the passdb (RedirectAuth).
//
// Owns: nothing. Uses: passdb (lookups, proxy fields), the login failure and
// referral types.

#include <asio/ip/tcp.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "login/failure.hpp"
#include "login/protocol.hpp"
#include "net/awaitable.hpp"
#include "passdb/passdb.hpp"
#include "passdb/proxy_fields.hpp"

namespace portier::login {

/// A referral's `[user@]host[:port]`, split.
struct RedirectTarget {
  std::string user;  ///< "" when the referral names none
  std::string host;  ///< a host name or an IP literal (without IPv6 brackets)
  uint16_t port = 0;
  /// "host:port" ("[v6]:port"): %{proxy_redirect_host_next}.
  std::string host_port() const;
};

/// Split `target` (an IPv6 host in brackets); the port defaults to
/// `current_port`. InternalConfig `Redirect to <t>: Failed to parse host:port`
/// when malformed.
std::variant<RedirectTarget, ProxyFailure> parse_redirect_target(std::string_view target,
                                                                 uint16_t current_port);

/// The checks before following a referral to `next`: a destination this
/// login already tried is a loop; a TTL that allows no further hop (`hops` =
/// redirects followed so far) ends it.
std::optional<ProxyFailure> redirect_loop(const asio::ip::tcp::endpoint& next,
                                          const std::vector<asio::ip::tcp::endpoint>& visited,
                                          unsigned proxy_ttl, unsigned hops);

/// "ip:port,ip:port": %{proxy_redirect_host_attempts}.
std::string attempts_text(const std::vector<asio::ip::tcp::endpoint>& visited);

/// "127.0.0.1:143" / "[::1]:143".
std::string endpoint_text(const asio::ip::tcp::endpoint& ep);

/// What the passdb's second answer (proxy_redirect_reauth) says: connect to
/// `fields` (its hostip/host and port), refer the client to `Referral`
/// (`nologin` + `host`), or fail (anything else is an internal failure).
/// The referral's user is the default destuser of both.
using ReauthVerdict = std::variant<passdb::ProxyFields, Referral, ProxyFailure>;
ReauthVerdict judge_reauth(const passdb::Lookup& lookup, const Protocol& protocol,
                           const RedirectTarget& target);

/// Asks the passdb chain again about a referral (AuthFlow implements it:
/// the login's request with mechanism EXTERNAL, lookup only, and the
/// redirect variables set).
class RedirectAuth {
 public:
  virtual net::Task<passdb::Lookup> redirect_lookup(std::string_view host_next,
                                                    std::string_view host_attempts) = 0;
  virtual const Protocol& protocol() const = 0;

 protected:
  ~RedirectAuth() = default;
};

}  // namespace portier::login
