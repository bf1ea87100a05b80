#pragma once
// Dovecot password schemes: verification and hashing.

#include <string>
#include <string_view>

namespace portier::passdb {

/// Outcome of verify_password().
enum class VerifyResult {
  Match,          ///< the password is correct
  Mismatch,       ///< the password is wrong
  UnknownScheme,  ///< "{FOO}..." with an unsupported scheme
  Malformed,      ///< the stored value cannot be used (bad base64, bad crypt string, ...)
};

/// Verifies `plain` against a stored password in Dovecot syntax:
/// "{SCHEME}data". Without a "{SCHEME}" prefix the value is treated as CRYPT
/// when it starts with '$', else as PLAIN.
/// Supported schemes (case-insensitive):
///   PLAIN, CLEAR, CLEARTEXT                                 plain text
///   CRYPT, SHA512-CRYPT, SHA256-CRYPT, BLF-CRYPT, MD5-CRYPT  libcrypt crypt_rn
///   SSHA256, SSHA512, SSHA (SHA1)                           base64(digest || salt)
///   SHA256, SHA512, SHA, SHA1                               base64(digest)
/// All comparisons are constant-time. A plaintext containing NUL never
/// matches a crypt hash. Thread-safe.
VerifyResult verify_password(std::string_view stored, std::string_view plain);

/// Hashes `plain` with `scheme` (case-insensitive) and returns it with the
/// "{SCHEME}" prefix, e.g. "{SHA512-CRYPT}$6$...". Supported: SHA512-CRYPT,
/// SHA256-CRYPT, BLF-CRYPT, MD5-CRYPT, CRYPT (libcrypt's preferred method),
/// SSHA256, SSHA512 (random 8-byte salt), PLAIN. Returns "" for an unknown
/// scheme or on failure (e.g. no entropy). Thread-safe.
std::string hash_password(std::string_view scheme, std::string_view plain);

}  // namespace portier::passdb
