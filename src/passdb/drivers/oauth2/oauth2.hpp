#pragma once
// OAuth 2.0 passdb driver (registry name and log name "oauth2"): Dovecot's
// `passdb oauth2` token validation. The Request's password is the token,
// whatever the mechanism (PLAIN/LOGIN with a token as password, OAUTHBEARER,
// XOAUTH2).
//
// Keys ([[passdb]] driver = "oauth2"; docs/PASSDB.md has the reference;
// names as in Dovecot's dovecot-oauth2.conf.ext):
//   introspection_url   RFC 7662 endpoint
//   introspection_mode  "post" (form body token=; default) | "get" (token
//                       appended to the URL) | "auth" (GET with
//                       Authorization: Bearer) | "local" (JWT checked here
//                       with the keys of `local_keys`, no HTTP)
//   tokeninfo_url       GET with the token appended; used instead of
//                       introspection_url when that is absent
//   local_keys          key directory for "local" (jwt.hpp has the layout)
//   client_id, client_secret   HTTP Basic auth of post/get requests;
//                       client_id is also the required `aud`
//   username_attribute  claim that must equal the login user (default "email")
//   active_attribute, active_value   extra "enabled" check
//   scope               list; a token needs one of them (insufficient_scope)
//   issuers             list of accepted `iss`
//   token_expire_grace  clock skew allowance for exp/nbf/iat (default 60s)
//   openid_configuration_url   reported to OAUTHBEARER/XOAUTH2 clients
//   timeout             per HTTP request (default 5s, also bounded by the
//                       login's passdb deadline)
//   fields              { name = "text with %{oauth2:claim}" } reply fields
//   cache_size, cache_ttl   positive cache (entries, default 1000; life,
//                       default 60s, never beyond the token's exp); 0 = off
//   connections         pool threads = concurrent HTTP requests (default 8)
//
// Results: valid token → Ok (reply user = login user, the `fields`);
// refused token → Mismatch with Lookup::oauth_failure; HTTP failure, 5xx,
// invalid JSON → TempFail; lookup_only/fetch (no token) → UnknownUser.
// The driver gives no proxy fields itself: routing comes from `fields` or
// a later passdb of the chain (result_success = "continue-ok").
//
// Owns: config parsing, the HTTP exchange (libcurl), the cache. Threading:
// cache hits answer inline on the worker; HTTP and JWT checks run on a
// BlockingPassdb pool of `connections` threads. Never logs the token or
// the client_secret.
// May use: passdb.hpp, blocking.hpp, jwt.hpp, config, core.

#include <memory>

#include "config/config.hpp"
#include "core/result.hpp"
#include "passdb/passdb.hpp"

namespace portier::passdb::oauth2 {

/// The driver's config parser (registry).
std::shared_ptr<const config::PassdbSettings> parse_settings(config::PassdbSection& section);

/// Creates the passdb.
core::Result<std::shared_ptr<Passdb>> make(const config::Passdb& cfg);

}  // namespace portier::passdb::oauth2
