#pragma once
// The per-thread read buffer of pre-login I/O. Pre-login reads (client and
// backend) land here and are copied into the frontend's bounded input buffer
// or the backend line buffer at once, so no session owns a read buffer of its
// own. Safe: nothing suspends between the read and the copy. What was read is
// wiped after the copy: a LOGIN line carries a password.
//
// Owns: one 4 KiB buffer per worker thread. Uses: core/secure.

#include <cstddef>

namespace portier::login {

inline constexpr size_t kReadChunk = 4096;

char* read_buffer();
/// Zero the first `n` bytes of this thread's read buffer.
void wipe_read_buffer(size_t n);

}  // namespace portier::login
