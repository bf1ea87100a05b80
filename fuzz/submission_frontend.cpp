// libFuzzer target: Submission (SMTP) pre-login Frontend fed arbitrary client bytes.
#include "frontend_driver.hpp"
#include "protocols/submission/submission.hpp"

namespace {
const portier::fuzz::FrontendTarget kTarget{
    &portier::protocols::submission::kProtocol,
    false,
    {"220 backend.lab Dovecot (Debian) ready.", "250-backend.lab", "250-AUTH PLAIN LOGIN",
     "250-ENHANCEDSTATUSCODES", "250 XCLIENT ADDR PORT PROTO HELO LOGIN SESSION TTL FORWARD",
     "220 backend.lab Dovecot (Debian) ready.", "250-backend.lab", "250-AUTH PLAIN LOGIN",
     "250 XCLIENT ADDR PORT PROTO HELO LOGIN SESSION TTL FORWARD", "334 ", "334 ",
     "235 2.7.0 Logged in."},
    "535 5.7.8 Authentication failed.\r\n",
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return portier::fuzz::run_frontend(kTarget, data, size);
}
