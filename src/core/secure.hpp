#pragma once
// Wiping secrets from memory. Header-only; does not depend on OpenSSL.

#include <cstddef>
#include <string>

namespace portier::core {

/// Overwrites `len` bytes at `p` with zeros in a way the optimizer cannot
/// elide (volatile stores).
inline void secure_zero(void* p, std::size_t len) noexcept {
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
