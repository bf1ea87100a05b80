// libFuzzer target: POP3 pre-login Frontend fed arbitrary client bytes.
#include "frontend_driver.hpp"
#include "protocols/pop3/pop3.hpp"

namespace {
const portier::fuzz::FrontendTarget kTarget{
    &portier::protocols::pop3::kProtocol,
    false,
    {"+OK [XCLIENT] Dovecot (Debian) ready.", "+OK Updated", "+OK", "+ ", "+ ",
     "+OK Logged in."},
    "-ERR [AUTH] Authentication failed.\r\n",
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return portier::fuzz::run_frontend(kTarget, data, size);
}
