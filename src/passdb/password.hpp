#pragma once
// Dovecot password schemes: verification and hashing.

#include <string>
#include <string_view>

namespace portier::passdb {

/// The scheme of an entry without a "{SCHEME}" prefix, as in Dovecot.
inline constexpr std::string_view kDefaultPassScheme = "CRYPT";

/// Outcome of verify_password().
enum class VerifyResult {
  Match,          ///< the password is correct
  Mismatch,       ///< the password is wrong
  UnknownScheme,  ///< "{FOO}..." with an unsupported scheme
  Malformed,      ///< the stored value cannot be used (bad base64, bad crypt string, ...)
};

/// Verifies `plain` against a stored password in Dovecot syntax:
/// "{SCHEME}data". Without a "{SCHEME}" prefix the value is in
/// `default_scheme` (Dovecot's passwd-file default: CRYPT, which libcrypt
/// resolves from the hash itself: `$6$`, `$2y$`, DES, ...). A value starting
/// with '$' is CRYPT whatever the default: a stored hash never doubles as a
/// plaintext password.
/// Supported schemes (case-insensitive):
///   PLAIN, CLEAR, CLEARTEXT                                 plain text
///   CRYPT, SHA512-CRYPT, SHA256-CRYPT, BLF-CRYPT, MD5-CRYPT  libcrypt crypt_rn
///   SSHA256, SSHA512, SSHA (SHA1)                           base64(digest || salt)
///   SHA256, SHA512, SHA, SHA1                               base64(digest)
/// All comparisons are constant-time. A plaintext containing NUL never
/// matches a crypt hash. Thread-safe.
VerifyResult verify_password(std::string_view stored, std::string_view plain,
                             std::string_view default_scheme = kDefaultPassScheme);

/// True when verify_password() knows `scheme` (case-insensitive).
bool known_scheme(std::string_view scheme);

/// True when checking against `stored` is a plain comparison (PLAIN, CLEAR,
/// CLEARTEXT, also through `default_scheme` for an unprefixed value), i.e.
/// no deliberate hashing cost.
bool cleartext_scheme(std::string_view stored, std::string_view default_scheme = kDefaultPassScheme);

/// Hashes `plain` with `scheme` (case-insensitive) and returns it with the
/// "{SCHEME}" prefix, e.g. "{SHA512-CRYPT}$6$...". Supported: SHA512-CRYPT,
/// SHA256-CRYPT, BLF-CRYPT, MD5-CRYPT, CRYPT (libcrypt's preferred method),
/// SSHA256, SSHA512 (random 8-byte salt), PLAIN. Returns "" for an unknown
/// scheme or on failure (e.g. no entropy). Thread-safe.
std::string hash_password(std::string_view scheme, std::string_view plain);

}  // namespace portier::passdb
