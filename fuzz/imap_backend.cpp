// libFuzzer target: IMAP BackendLogin fed arbitrary backend lines.
// Variant bits: bit0 the client sent CAPABILITY before logging in, bit1 tag style.
#include "backend_driver.hpp"
#include "protocols/imap/backend_login.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return portier::fuzz::run_backend(
      [](const portier::login::BackendLoginParams& p, unsigned v) {
        return std::make_unique<portier::protocols::imap::BackendLogin>(
            p, (v & 2) ? "A0001.x" : "a", v & 1);
      },
      true, data, size);
}
