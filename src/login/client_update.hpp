#pragma once
// A trusted upstream's word about the end client (IMAP ID x-* keys, XCLIENT
// in POP3, Submission and ManageSieve), validated as a whole: values are set
// on a copy of the ClientInfo, and apply() copies them back only when every
// one was valid - a bad attribute changes nothing, in every protocol.
//
// The rules (the same for all four protocols):
//   addresses   IPv4 or IPv6, optionally in [brackets] or with an `IPV6:`
//               prefix (then it must be IPv6)
//   ports       1..65535
//   TTL         0..4294967295
//   session id  printable ASCII (space included); an empty or over-long
//               (> 64 bytes) one is ignored, not an error (as Dovecot)
//   transport   `TLS...` (any case) = TLS, anything else = insecure
//
// Owns: the pending copy. Uses: login/protocol.hpp (ClientInfo), core.
// Threading: the session's worker only.

#include <optional>
#include <string_view>

#include "login/protocol.hpp"

namespace portier::login {

enum class ClientField { RemoteIp, RemotePort, LocalIp, LocalPort, SessionId, Ttl, Transport };

class ClientUpdate {
 public:
  explicit ClientUpdate(const ClientInfo& current) : next_(current) {}

  /// Set one field from its text; false (and the whole update void) when the
  /// value breaks the field's rule.
  bool set(ClientField field, std::string_view value);
  /// A protocol-specific attribute was invalid: the update is void.
  void invalidate() { ok_ = false; }
  /// No value so far was invalid.
  bool ok() const { return ok_; }
  /// Copy the updated fields into `client` when ok(); returns ok().
  bool apply(ClientInfo& client) const;

  /// XCLIENT attribute names (ADDR, PORT, DESTADDR, DESTPORT, SESSION, TTL,
  /// CLIENT-TRANSPORT; any case); nullopt for the others.
  static std::optional<ClientField> xclient_field(std::string_view name);

 private:
  ClientInfo next_;
  bool ok_ = true;
};

/// Longest session id taken from an upstream (Dovecot LOGIN_MAX_SESSION_ID_LEN).
inline constexpr size_t kMaxSessionIdLength = 64;

}  // namespace portier::login
