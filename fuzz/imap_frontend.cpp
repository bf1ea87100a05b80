// libFuzzer target: IMAP pre-login Frontend fed arbitrary client bytes.
#include "frontend_driver.hpp"
#include "protocols/imap/imap.hpp"

namespace {
const portier::fuzz::FrontendTarget kTarget{
    &portier::protocols::imap::kProtocol,
    true,
    {"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN "
     "AUTH=LOGIN] Dovecot (Debian) ready.",
     "* ID NIL", "I OK ID completed.", "+ ", "+ ",
     "* CAPABILITY IMAP4rev1 SASL-IR ID IDLE LITERAL+", "C OK Pre-login capabilities listed.",
     "L OK [CAPABILITY IMAP4rev1 IDLE] Logged in"},
    "a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return portier::fuzz::run_frontend(kTarget, data, size);
}
