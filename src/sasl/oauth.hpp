#pragma once
// The OAuth 2.0 SASL mechanisms on the server side (portier is the server):
// OAUTHBEARER (RFC 7628) and XOAUTH2 (Google/Microsoft). Sans-I/O like the
// other mechanisms: raw decoded messages in, Credentials out. The bearer
// token becomes the password (a core::Secret); the user comes from the
// message (OAUTHBEARER: the gs2 authzid; XOAUTH2: `user=`). The failure JSON
// a refused client gets as a last challenge is rendered here too.
//
// Owns: nothing beyond one exchange. Uses: sasl (ServerMech), core.

#include <memory>
#include <string>
#include <string_view>

#include "sasl/sasl.hpp"

namespace portier::sasl {

/// OAUTHBEARER or XOAUTH2 (case-insensitive).
bool is_oauth_mech(std::string_view mech);

/// Server mechanisms (registered in the mechanism table of sasl.cpp).
std::unique_ptr<ServerMech> make_oauthbearer_server();
std::unique_ptr<ServerMech> make_xoauth2_server();

/// What the failure JSON says (the engine fills it from a passdb's
/// passdb::OAuthFailure, or leaves the defaults).
struct OAuthFailureInfo {
  std::string status = "invalid_token";  ///< RFC 6750 error: invalid_token, insufficient_scope, ...
  std::string scope;                     ///< "" = Dovecot's default "mail"
  std::string openid_configuration;      ///< "" = omitted
};

/// The failure JSON for `mech` (not base64): OAUTHBEARER
/// `{"status":"invalid_token","scope":"mail"[,"openid-configuration":"..."]}`;
/// XOAUTH2 `{"status":"401","schemes":"bearer","scope":"mail"}` (401 for
/// invalid_token, 403 for insufficient_scope, else 400).
std::string oauth_failure_json(std::string_view mech, const OAuthFailureInfo& info);

}  // namespace portier::sasl
