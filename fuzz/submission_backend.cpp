// libFuzzer target: Submission BackendLogin fed arbitrary backend lines.
// Variant: the client's EHLO/HELO domain, protocol and upstream XCLIENT LOGIN.
#include "backend_driver.hpp"
#include "protocols/submission/backend_login.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace sub = portier::protocols::submission;
  return portier::fuzz::run_backend(
      [](const portier::login::BackendLoginParams& p, unsigned v) {
        static const sub::ClientSmtpInfo kInfo[4] = {
            {},
            {"client.example.org", "ESMTP", ""},
            {"[192.0.2.7]", "SMTP", "upstream-user"},
            {"weird helo\twith=chars+", "LMTP", "user@example.org"},
        };
        return std::make_unique<sub::BackendLogin>(p, kInfo[v & 3]);
      },
      false, data, size);
}
