#pragma once
// Wiping secrets from memory. Header-only; does not depend on OpenSSL.

#include <cstddef>
#include <cstdlib>
#include <string>

namespace portier::core {

/// Test hook: with PORTIER_TEST_NO_WIPE set in portier's environment, wiping
/// is disabled so that the memory-scan test (tests/integration/
/// test_secret_memory.py) can show it finds secrets when they are left
/// behind. portier logs a warning at start when it is set.
inline bool wiping_disabled() noexcept {
  static const bool off = std::getenv("PORTIER_TEST_NO_WIPE") != nullptr;
  return off;
}

/// Overwrites `len` bytes at `p` with zeros in a way the optimizer cannot
/// elide (volatile stores).
inline void secure_zero(void* p, std::size_t len) noexcept {
  if (wiping_disabled()) return;
  volatile unsigned char* v = static_cast<volatile unsigned char*>(p);
  while (len--) *v++ = 0;
}

/// Zeros the whole capacity-visible contents of `s` (its current size) and
/// then clears it. The string's buffer is wiped before being released, so
/// the secret does not linger in freed memory.
inline void secure_zero(std::string& s) noexcept {
  if (!s.empty()) secure_zero(s.data(), s.size());
  s.clear();
}

}  // namespace portier::core
