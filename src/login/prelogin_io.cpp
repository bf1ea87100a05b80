#include "login/prelogin_io.hpp"

#include "core/secure.hpp"

namespace portier::login {

char* read_buffer() {
  thread_local char buf[kReadChunk];
  return buf;
}

void wipe_read_buffer(size_t n) { core::secure_zero(read_buffer(), n < kReadChunk ? n : kReadChunk); }

}  // namespace portier::login
