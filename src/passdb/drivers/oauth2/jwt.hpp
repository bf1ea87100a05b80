#pragma once
// OAuth 2.0 token checks of the oauth2 passdb, free of I/O except key files:
// strict base64url, local JWT signature verification (OpenSSL EVP) against a
// key directory in Dovecot's local-validation layout, and the claim checks
// shared by local validation and RFC 7662 introspection answers.
//
// Key directory (`local_keys`): <dir>/<azp or "default">/<ALG upper-case, e.g. EDDSA>/<kid or "default">,
// azp and kid escaped as Dovecot does ('%' -> "%25", '/' -> "%2f"; a leading
// '.' doubled). A file holds a PEM public key (SubjectPublicKeyInfo), or for
// HS256/384/512 the raw shared secret. Keys are read once and kept until
// restart (rotate by publishing a new kid), as Dovecot does.
// Algorithms: RS256/384/512, PS256/384/512, ES256/384/512 (P-256/384/521),
// EdDSA (Ed25519/Ed448), HS256/384/512. The header's alg must match the
// key's type; "none" and anything else is refused.
// May use: core, nlohmann-json, OpenSSL. Thread-safe (KeyStore locks).

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/result.hpp"

namespace portier::passdb::oauth2 {

/// Strict base64url (RFC 4648 §5) without padding: any other character,
/// '=' padding, a length of 4n+1 or non-zero trailing bits fail.
bool base64url_decode(std::string_view in, std::string& out);

/// One published key (opaque; OpenSSL inside).
struct Key;

/// The key directory: keys loaded on first use and cached.
class KeyStore {
 public:
  explicit KeyStore(std::string dir);
  ~KeyStore();
  /// The key for (azp, alg, kid); an error when absent, unreadable or of the
  /// wrong type for `alg`. Empty azp/kid mean "default".
  core::Result<std::shared_ptr<const Key>> find(std::string_view azp, std::string_view alg,
                                                std::string_view kid);
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<const Key>> keys_;  // by relative path
};

/// Why a token was refused (→ Lookup::oauth_failure) — never contains the token.
struct Refusal {
  std::string status;  ///< invalid_token | insufficient_scope | invalid_request
  std::string reason;  ///< for the log
};

/// Verifies a compact JWS (header.payload.signature) with `keys` and returns
/// its claims (a JSON object). Claims are not checked here (check_claims).
/// A refusal for every malformed or unverifiable token.
std::variant<nlohmann::json, Refusal> verify_jwt(std::string_view token, KeyStore& keys);

/// What check_claims() requires of a token's claims.
struct ClaimRules {
  std::string username_attribute = "email";  ///< must equal the login user ("" = not checked)
  std::string active_attribute;              ///< "" = not checked
  std::string active_value = "true";
  std::vector<std::string> issuers;          ///< accepted `iss` (empty = any)
  std::string client_id;                     ///< `aud` must contain it (when set)
  std::vector<std::string> scopes;           ///< one of them in `scope`/`scp` (empty = any)
  std::chrono::seconds grace{60};            ///< token_expire_grace for exp/nbf/iat
  bool require_exp = false;                  ///< local JWTs: `exp` must be present
  bool require_aud = false;                  ///< local JWTs: `aud` must be present when client_id is set
};

/// Checks `claims` for a login as `user` at `now` (seconds since the epoch).
std::optional<Refusal> check_claims(const nlohmann::json& claims, const ClaimRules& rules,
                                    std::string_view user, long long now);

/// A claim as text for fields/templates: a string as is, numbers and
/// booleans in JSON form, arrays of strings space-joined; nullopt when
/// absent or an object.
std::optional<std::string> claim_text(const nlohmann::json& claims, std::string_view name);

}  // namespace portier::passdb::oauth2
